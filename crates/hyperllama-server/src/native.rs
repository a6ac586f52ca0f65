//! The one native request model both APIs translate into, and [`generate`], which runs it.
//!
//! A [`NativeRequest`] names a model, carries either a conversation or a prompt, and typed
//! options. [`generate`] takes a residency lease on the model, renders and tokenizes the
//! prompt (the model's SYSTEM and MESSAGEs first, its chat template unless `raw`), builds the
//! sampling parameters (server defaults, then the model's params layer, then the request),
//! submits to the engine and returns a [`Generation`]: a stream of [`NativeEvent`]s.
//!
//! Tools and thinking: a request's tools are rendered through the chat template (a model
//! whose template does not use tools refuses them, as Ollama does), and the answer is then
//! parsed for tool calls ([`crate::tools`]). A model whose template supports thinking gets
//! `enable_thinking` from the request's `think`, and its answer is split into thinking and
//! content ([`crate::think`]); `think: true` for any other model is refused. When such a
//! model thinks (its template supports it, `think` is not false and the prompt did not close
//! the thinking), an output constraint (format, grammar, forced tool call) applies only to
//! the answer after the thinking, within a thinking budget
//! ([`crate::structured::after_thinking`]).
//!
//! # Invariants
//! - Handlers never touch the engine: they see only [`Generation`] and [`NativeEvent`].
//! - A generation's stream holds its lease: dropping the stream (a client that left)
//!   cancels the engine request and ends the lease.
//! - The stream ends after exactly one [`NativeEvent::Done`] or [`NativeEvent::Error`].
//! - Tool calls are parsed only when the request has tools; thinking is split only when the
//!   template supports thinking and the chat template is used (not `raw`). Everything the
//!   parsers hold back is released before the final [`NativeEvent::Done`] or
//!   [`NativeEvent::Error`].

use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_core::sampling::SamplingParams;
use hyperllama_core::TokenId;
use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::{Completion, Event, FinishReason, GenerateRequest, TokenLogprob};
use hyperllama_models::name::ModelName;
use hyperllama_models::resolve::ModelOptions;
use hyperllama_models::template::ChatMessage;
use serde_json::Value;

use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;
use crate::options::{GenerateOptions, KeepAlive};
use crate::residency::{Lease, LoadedModel, Residency};
use crate::think::{ThinkPiece, ThinkSplitter};
use crate::tools::{ParsedToolCall, ToolCallParser, ToolChoice, ToolOutput};

/// What to generate from.
#[derive(Clone, Debug)]
pub enum PromptInput {
    /// A conversation, rendered with the chat template.
    Chat(Vec<ChatMessage>),
    /// A single prompt: with the chat template as one user message, or as-is when `raw`.
    Text {
        /// The prompt.
        prompt: String,
        /// Skip the chat template (and the model's SYSTEM and MESSAGEs).
        raw: bool,
    },
}

/// A generation request in HyperLlama's own terms.
#[derive(Clone, Debug)]
pub struct NativeRequest {
    /// The model's name, as the client wrote it.
    pub model: String,
    /// The prompt.
    pub input: PromptInput,
    /// A system message replacing the model's SYSTEM.
    pub system: Option<String>,
    /// Options over the model's defaults.
    pub options: GenerateOptions,
    /// How long the model stays loaded afterwards; `None` is the server's default.
    pub keep_alive: Option<KeepAlive>,
    /// Tool specs (checked by [`crate::tools::validate_tools`]); `None` or empty: no tools,
    /// and the answer is not parsed for calls.
    pub tools: Option<Vec<Value>>,
    /// Whether the model should think (`None`: the template's default). `Some(true)` is
    /// refused for a model whose template does not support thinking.
    pub think: Option<bool>,
    /// Whether a tool must be called (with `tools`): forced by a grammar.
    pub tool_choice: ToolChoice,
    /// A chat template (Jinja) for this request instead of the model's (Ollama's `template`).
    pub template: Option<String>,
    /// What the output must match (JSON, a schema, a grammar); an invalid one is a 400.
    pub constraint: Option<ConstraintSpec>,
    /// Report each token's log-probability with this many alternatives; `None`: none.
    pub logprobs: Option<usize>,
}

/// The statistics of a finished generation.
#[derive(Clone, Debug)]
pub struct Done {
    /// Why it ended.
    pub reason: FinishReason,
    /// The engine's numbers.
    pub completion: Completion,
    /// Every prompt token (evaluated or taken from the cache).
    pub n_prompt_tokens: usize,
    /// From the request's arrival to the end, load included.
    pub total_duration: Duration,
    /// Time spent loading the model for this request.
    pub load_duration: Duration,
}

/// What a generation's stream carries.
#[derive(Clone, Debug)]
pub enum NativeEvent {
    /// Generated text (never empty): the answer proper.
    Text(String),
    /// Generated reasoning (never empty), split from the answer.
    Thinking(String),
    /// Tool calls parsed from the answer (never empty).
    ToolCalls(Vec<ParsedToolCall>),
    /// Log-probabilities of the tokens whose text comes next (when the request asked for
    /// them); a token whose text is held back (an incomplete character) reports here anyway.
    Logprobs(Vec<TokenLogprob>),
    /// The end, with statistics.
    Done(Done),
    /// A failure; the end.
    Error(ApiError),
}

/// The event stream of a generation.
pub type EventStream = Pin<Box<dyn Stream<Item = NativeEvent> + Send>>;

/// A generation under way.
pub struct Generation {
    /// The model's name as the client wrote it (echoed in responses).
    pub model: String,
    /// The model's name as stored.
    pub name: ModelName,
    /// Prompt tokens after rendering.
    pub n_prompt_tokens: usize,
    /// The events; dropping this cancels the generation.
    pub events: EventStream,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// Parses a model name from a request; paths to files are not accepted over HTTP.
pub fn parse_model_name(model: &str) -> Result<ModelName, ApiError> {
    let not_found = || ApiError::not_found(format!("model '{model}' not found"));
    if model.trim().is_empty() {
        return Err(ApiError::bad_request("model is required"));
    }
    if model.to_ascii_lowercase().ends_with(".gguf") {
        return Err(not_found());
    }
    ModelName::parse(model).map_err(|_| not_found())
}

/// Rewrites a not-found error to name the model as the client wrote it.
pub fn as_written(model: &str) -> impl Fn(ApiError) -> ApiError + '_ {
    move |e| {
        if e.kind == ErrorKind::NotFound {
            ApiError::not_found(format!("model '{model}' not found"))
        } else {
            e
        }
    }
}

/// Loads the model (if needed) without generating: Ollama's empty-prompt request. Returns
/// the load duration.
pub async fn load_only(
    residency: &Residency,
    model: &str,
    options: &GenerateOptions,
    keep_alive: Option<KeepAlive>,
) -> Result<Duration, ApiError> {
    let name = parse_model_name(model)?;
    check_num_ctx(residency, &name, options.num_ctx)
        .await
        .map_err(as_written(model))?;
    let lease = residency
        .acquire(&name, options.num_ctx, keep_alive)
        .await
        .map_err(as_written(model))?;
    Ok(lease.load_duration)
}

/// A `num_ctx` above the context length the model was trained with is refused (llama.cpp
/// would extrapolate positions it never saw, and the answers degrade silently).
async fn check_num_ctx(
    residency: &Residency,
    name: &ModelName,
    num_ctx: Option<usize>,
) -> Result<(), ApiError> {
    let Some(n) = num_ctx else {
        return Ok(());
    };
    let resolved = residency.resolve(name).await?;
    match residency.trained_context(&resolved).await {
        Some(t) if n as u64 > t => Err(ApiError::bad_request(format!(
            "num_ctx {n} is larger than the {t} tokens {} was trained with",
            resolved.name.display_shortest()
        ))),
        _ => Ok(()),
    }
}

/// Unloads the model (Ollama's empty prompt with `keep_alive: 0`); 404 when not in the store.
pub async fn unload(residency: &Residency, model: &str) -> Result<(), ApiError> {
    let name = parse_model_name(model)?;
    let resolved = residency.resolve(&name).await.map_err(as_written(model))?;
    residency.unload(&resolved.name);
    Ok(())
}

/// Starts a generation.
pub async fn generate(residency: &Residency, req: NativeRequest) -> Result<Generation, ApiError> {
    let started = Instant::now();
    let name = parse_model_name(&req.model)?;
    check_num_ctx(residency, &name, req.options.num_ctx)
        .await
        .map_err(as_written(&req.model))?;
    let lease = residency
        .acquire(&name, req.options.num_ctx, req.keep_alive)
        .await
        .map_err(as_written(&req.model))?;
    let loaded = lease
        .model()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "the model is not loaded"))?;
    if let Some(sup) = loaded.serving() {
        let rx = sup.generate(serving_body(loaded, &req)?);
        let name = loaded.resolved.name.clone();
        return Ok(stream_generation(
            residency, req.model, name, lease, started, 0, rx,
        ));
    }
    let engine = loaded
        .engine()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "the model's engine is gone"))?;
    let Rendered {
        tokens: prompt,
        mut parser,
        forced,
        thinking,
    } = prompt_tokens(loaded, &req)?;
    let answer = match (forced, &req.constraint) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "a forced tool call (tool_choice) cannot be combined with format or a grammar",
            ))
        }
        (Some(grammar), None) => Some(ConstraintSpec::Lark(grammar)),
        (None, c) => c.clone(),
    };
    let n_prompt_tokens = prompt.len();
    if n_prompt_tokens >= loaded.n_ctx {
        return Err(ApiError::bad_request(format!(
            "the prompt has {n_prompt_tokens} tokens, but the context holds {} (prompt plus at least one new token); shorten the prompt or raise num_ctx",
            loaded.n_ctx
        )));
    }
    let model_opts = loaded.resolved.options();
    let num_predict = match req.options.num_predict.or(model_opts.num_predict) {
        Some(n) if n >= 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => None,
    };
    // Room for new tokens: the answer limit, else what the context has left.
    let room = num_predict
        .unwrap_or(usize::MAX)
        .min(loaded.n_ctx - n_prompt_tokens);
    let constraint =
        crate::structured::after_thinking(answer, thinking, req.options.think_budget, room);
    let engine_req = GenerateRequest {
        prompt,
        sampling: sampling_params(&model_opts, &req.options),
        num_predict,
        stop: req.options.stop.clone().unwrap_or(model_opts.stop),
        ignore_eos: req.options.ignore_eos.unwrap_or(false),
        logprobs: req.logprobs,
        constraint,
    };
    let rx = engine.submit(engine_req).map_err(|e| match e {
        hyperllama_engine::Error::InvalidRequest(m) => ApiError::bad_request(m),
        e @ hyperllama_engine::Error::Overloaded { .. } => {
            ApiError::new(ErrorKind::Overloaded, e.to_string())
        }
        e => {
            // A stopped engine (after a failed step) never recovers: the next request loads
            // the model afresh, even under steady traffic.
            lease.discard();
            ApiError::internal("the engine refused the request", &e)
        }
    })?;
    let name = loaded.resolved.name.clone();
    let mut generation = stream_generation(
        residency,
        req.model,
        name,
        lease,
        started,
        n_prompt_tokens,
        rx,
    );
    if !parser.is_passthrough() {
        let events = std::mem::replace(
            &mut generation.events,
            Box::pin(futures_util::stream::empty()),
        );
        generation.events = Box::pin(
            events.flat_map(move |event| futures_util::stream::iter(parser.handle(event))),
        );
    }
    Ok(generation)
}

/// The generation that streams `rx` under `lease`.
fn stream_generation(
    residency: &Residency,
    model: String,
    stored_name: ModelName,
    lease: Lease,
    started: Instant,
    n_prompt_tokens: usize,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
) -> Generation {
    let state = StreamState {
        rx,
        lease,
        started,
        n_prompt_tokens,
        pending_text: None,
        metrics: std::sync::Arc::clone(residency.metrics()),
        model: stored_name.display_shortest(),
        last_token: None,
    };
    Generation {
        model,
        name: stored_name,
        n_prompt_tokens,
        events: Box::pin(futures_util::stream::unfold(Some(state), next_event)),
    }
}

/// The OpenAI chat body for a model served by an external engine: the model's SYSTEM and
/// MESSAGEs, then the request's; sampling options mapped by name. What only the in-process
/// engine does (raw prompts, tools, thinking, constraints, log-probabilities) is refused.
fn serving_body(loaded: &LoadedModel, req: &NativeRequest) -> Result<Value, ApiError> {
    let engine = &loaded.choice.engine;
    let refuse = |what: &str| {
        Err(ApiError::bad_request(format!(
            "{what} is not supported for models served by {engine}"
        )))
    };
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return refuse("tools");
    }
    if req.think == Some(true) {
        return refuse("think");
    }
    if req.constraint.is_some() {
        return refuse("format/grammar");
    }
    if req.logprobs.is_some() {
        return refuse("logprobs");
    }
    let user = match &req.input {
        PromptInput::Text { raw: true, .. } => return refuse("raw"),
        PromptInput::Text { prompt, .. } => vec![ChatMessage::new("user", prompt.clone())],
        PromptInput::Chat(m) => m.clone(),
    };
    let resolved = &loaded.resolved;
    let mut messages = Vec::new();
    if !user.iter().any(|m| m.role == "system") {
        if let Some(system) = req.system.as_ref().or(resolved.system.as_ref()) {
            messages.push(serde_json::json!({"role": "system", "content": system}));
        }
    }
    for m in &resolved.messages {
        messages.push(serde_json::json!({"role": m.role, "content": m.content}));
    }
    for m in &user {
        messages.push(serde_json::json!({"role": m.role, "content": m.content}));
    }
    let model_opts = resolved.options();
    let sp = sampling_params(&model_opts, &req.options);
    let mut body = serde_json::json!({
        "messages": messages,
        "temperature": sp.temperature,
        "top_p": sp.top_p,
        "top_k": sp.top_k,
        "seed": sp.seed,
    });
    if let Some(n) = req.options.num_predict.or(model_opts.num_predict) {
        if n >= 0 {
            body["max_tokens"] = n.into();
        }
    }
    let stop = req.options.stop.clone().unwrap_or(model_opts.stop);
    if !stop.is_empty() {
        body["stop"] = stop.into();
    }
    Ok(body)
}

/// Parses a generation's text: thinking apart, then tool calls (see the module docs).
struct OutputParser {
    /// Splits thinking from content, when the template thinks.
    think: Option<ThinkSplitter>,
    /// Whether thinking is passed on (`think: false` drops it).
    keep_thinking: bool,
    /// Finds tool calls in the content, when the request has tools.
    tools: Option<ToolCallParser>,
}

impl OutputParser {
    fn is_passthrough(&self) -> bool {
        self.think.is_none() && self.tools.is_none()
    }

    /// The events one engine event becomes; a final event first releases what is held.
    fn handle(&mut self, event: NativeEvent) -> Vec<NativeEvent> {
        let mut out = Vec::new();
        match event {
            NativeEvent::Text(text) => {
                let pieces = match &mut self.think {
                    Some(s) => s.feed(&text),
                    None => vec![ThinkPiece::Content(text)],
                };
                self.pieces(pieces, &mut out);
            }
            end @ (NativeEvent::Done(_) | NativeEvent::Error(_)) => {
                if let Some(s) = self.think.take() {
                    self.pieces(s.finish(), &mut out);
                }
                if let Some(p) = self.tools.take() {
                    tool_events(p.finish(), &mut out);
                }
                out.push(end);
            }
            other => out.push(other),
        }
        out
    }

    fn pieces(&mut self, pieces: Vec<ThinkPiece>, out: &mut Vec<NativeEvent>) {
        for piece in pieces {
            match piece {
                ThinkPiece::Thinking(t) => {
                    if self.keep_thinking {
                        out.push(NativeEvent::Thinking(t));
                    }
                }
                ThinkPiece::Content(t) => match &mut self.tools {
                    Some(p) => tool_events(p.feed(&t), out),
                    None => out.push(NativeEvent::Text(t)),
                },
            }
        }
    }
}

/// The events of a tool parser's output; consecutive calls become one event.
fn tool_events(outputs: Vec<ToolOutput>, out: &mut Vec<NativeEvent>) {
    for o in outputs {
        match o {
            ToolOutput::Text(t) => out.push(NativeEvent::Text(t)),
            ToolOutput::Call(c) => match out.last_mut() {
                Some(NativeEvent::ToolCalls(calls)) => calls.push(c),
                _ => out.push(NativeEvent::ToolCalls(vec![c])),
            },
        }
    }
}

struct StreamState {
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    lease: Lease,
    started: Instant,
    n_prompt_tokens: usize,
    /// A token's text, sent right after its log-probabilities.
    pending_text: Option<String>,
    metrics: std::sync::Arc<Metrics>,
    /// The model's name for metrics and logs.
    model: String,
    /// When the last token arrived.
    last_token: Option<Instant>,
}

async fn next_event(state: Option<StreamState>) -> Option<(NativeEvent, Option<StreamState>)> {
    let mut s = state?;
    if let Some(text) = s.pending_text.take() {
        return Some((NativeEvent::Text(text), Some(s)));
    }
    loop {
        match s.rx.recv().await {
            Some(Event::Token { text, logprobs, .. }) => {
                let now = Instant::now();
                match s.last_token.replace(now) {
                    Some(last) => s.metrics.record_inter_token(now - last),
                    None => s.metrics.record_first_token(now - s.started),
                }
                if let Some(lp) = logprobs {
                    s.pending_text = Some(text).filter(|t| !t.is_empty());
                    return Some((NativeEvent::Logprobs(vec![*lp]), Some(s)));
                }
                if !text.is_empty() {
                    return Some((NativeEvent::Text(text), Some(s)));
                }
            }
            Some(Event::Text(text)) => {
                if !text.is_empty() {
                    return Some((NativeEvent::Text(text), Some(s)));
                }
            }
            Some(Event::Done(completion)) => {
                s.metrics.record_generation(
                    &s.model,
                    completion.n_prompt,
                    completion.n_cached,
                    completion.n_eval,
                );
                tracing::info!(
                    model = %s.model,
                    prompt_eval_count = completion.n_prompt,
                    cached_prompt_tokens = completion.n_cached,
                    eval_count = completion.n_eval,
                    done_reason = completion.reason.as_str(),
                    total_ms = s.started.elapsed().as_secs_f64() * 1e3,
                    "generation finished"
                );
                let done = Done {
                    reason: completion.reason,
                    // An external engine reports the prompt's size only at the end.
                    n_prompt_tokens: if s.n_prompt_tokens == 0 {
                        completion.n_prompt + completion.n_cached
                    } else {
                        s.n_prompt_tokens
                    },
                    total_duration: s.started.elapsed(),
                    load_duration: s.lease.load_duration,
                    completion,
                };
                return Some((NativeEvent::Done(done), None));
            }
            Some(Event::Error(message)) => {
                return Some((
                    NativeEvent::Error(ApiError::new(ErrorKind::Internal, message)),
                    None,
                ));
            }
            None => {
                return Some((
                    NativeEvent::Error(ApiError::new(
                        ErrorKind::Internal,
                        "the engine stopped before the answer ended",
                    )),
                    None,
                ));
            }
        }
    }
}

/// A rendered prompt and what the answer to it needs.
struct Rendered {
    /// The prompt's tokens.
    tokens: Vec<TokenId>,
    /// Parses the answer.
    parser: OutputParser,
    /// The grammar of a forced tool call.
    forced: Option<String>,
    /// Whether the model thinks before its answer (`Some`), and whether the prompt already
    /// opened the thinking (`Some(true)`).
    thinking: Option<bool>,
}

/// Renders and tokenizes the request's prompt, and sets up the parsing of the answer; when a
/// tool call is forced, also returns its grammar.
fn prompt_tokens(loaded: &LoadedModel, req: &NativeRequest) -> Result<Rendered, ApiError> {
    let engine = loaded
        .engine()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "the model's engine is gone"))?;
    let model = engine.model();
    // The request's own template, else the model's.
    let own = match req.template.as_deref().filter(|t| !t.trim().is_empty()) {
        None => None,
        Some(t) if is_go_template(t) => {
            return Err(ApiError::bad_request(
                "template: Ollama's Go templates cannot run here; give the chat template in Jinja (as in the model's GGUF)",
            ))
        }
        Some(t) => Some(
            ChatFormatter::with_template(model, t)
                .map_err(|e| ApiError::bad_request(format!("template: {e}")))?,
        ),
    };
    let formatter = match &own {
        Some(f) => Ok(f),
        None => loaded.formatter.as_ref(),
    };
    let caps = formatter
        .as_ref()
        .map(|f| f.capabilities())
        .unwrap_or_default();
    if req.think == Some(true) && !caps.thinking {
        return Err(ApiError::bad_request(format!(
            "\"{}\" does not support thinking",
            req.model
        )));
    }
    let tools = req.tools.as_ref().filter(|t| !t.is_empty());
    if tools.is_some() && !caps.tools {
        return Err(ApiError::bad_request(format!(
            "{} does not support tools",
            loaded.resolved.name
        )));
    }
    let mut parser = OutputParser {
        think: None,
        keep_thinking: req.think != Some(false),
        tools: None,
    };
    let user_messages = match &req.input {
        PromptInput::Text { prompt, raw: true } => {
            return Ok(Rendered {
                tokens: model.tokenize(prompt, true, true),
                parser,
                forced: None,
                thinking: None,
            });
        }
        PromptInput::Text { prompt, raw: false } => vec![ChatMessage::new("user", prompt.clone())],
        PromptInput::Chat(messages) => messages.clone(),
    };
    let resolved = &loaded.resolved;
    let mut messages = Vec::with_capacity(user_messages.len() + resolved.messages.len() + 1);
    let has_system = user_messages.iter().any(|m| m.role == "system");
    if !has_system {
        if let Some(system) = req.system.as_ref().or(resolved.system.as_ref()) {
            messages.push(ChatMessage::new("system", system.clone()));
        }
    }
    messages.extend(
        resolved
            .messages
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone())),
    );
    messages.extend(user_messages);
    let formatter = formatter.map_err(|e| {
        ApiError::bad_request(format!("the model's chat template is unusable: {e}"))
    })?;
    let tools_json = tools.map(|t| Value::Array(t.clone()));
    let extra = match req.think {
        Some(think) if caps.thinking => Some(serde_json::json!({ "enable_thinking": think })),
        _ => None,
    };
    let text = formatter
        .render_with(&messages, tools_json.as_ref(), extra.as_ref())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let tokens = formatter.tokenize_rendered(model, &text);
    if tokens.is_empty() {
        return Err(ApiError::bad_request("the prompt is empty"));
    }
    // A generation prompt may already open the thinking (or close it: thinking off) or a
    // tool call.
    let tail = text.trim_end();
    let opened = tail.ends_with(crate::think::OPEN);
    if caps.thinking {
        parser.think = Some(if opened {
            ThinkSplitter::inside_thinking()
        } else {
            ThinkSplitter::new()
        });
    }
    let thinking =
        (caps.thinking && req.think != Some(false) && !tail.ends_with(crate::think::CLOSE))
            .then_some(opened);
    let mut forced = None;
    if let Some(tools) = tools {
        parser.tools = Some(if tail.ends_with(crate::tools::OPEN) {
            ToolCallParser::inside_call()
        } else {
            ToolCallParser::new()
        });
        // Whether the vocabulary has a tag as one control token (its text then renders empty).
        let special_token = |tag: &str| match model.tokenize(tag, false, true).as_slice() {
            [t] => model.token_bytes(*t).is_empty(),
            _ => false,
        };
        forced = crate::tools::forced_call_grammar(tools, &req.tool_choice, &text, &special_token)?;
    }
    Ok(Rendered {
        tokens,
        parser,
        forced,
        thinking,
    })
}

/// Whether a template is written in Go's template language (Ollama's `{{ .Prompt }}`).
fn is_go_template(t: &str) -> bool {
    [
        "{{ .",
        "{{- .",
        "{{.",
        "{{ if .",
        "{{- if .",
        "{{ range .",
        "{{- range .",
    ]
    .iter()
    .any(|m| t.contains(m))
}

/// Sampling parameters: Ollama's defaults, then the model's params layer, then the request.
pub fn sampling_params(model: &ModelOptions, req: &GenerateOptions) -> SamplingParams {
    let mut s = SamplingParams::default();
    let pick = |r: Option<f32>, m: Option<f32>, d: f32| r.or(m).unwrap_or(d);
    s.temperature = pick(req.temperature, model.temperature, s.temperature);
    s.top_p = pick(req.top_p, model.top_p, s.top_p);
    s.min_p = pick(req.min_p, model.min_p, s.min_p);
    s.repeat_penalty = pick(req.repeat_penalty, model.repeat_penalty, s.repeat_penalty);
    s.presence_penalty = pick(
        req.presence_penalty,
        model.presence_penalty,
        s.presence_penalty,
    );
    s.frequency_penalty = pick(
        req.frequency_penalty,
        model.frequency_penalty,
        s.frequency_penalty,
    );
    s.top_k = req.top_k.or(model.top_k).unwrap_or(s.top_k);
    s.repeat_last_n = req
        .repeat_last_n
        .or(model.repeat_last_n)
        .unwrap_or(s.repeat_last_n);
    // A negative seed means random, as Ollama's -1.
    s.seed = req.seed.or(model.seed).and_then(|n| u64::try_from(n).ok());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_options_win_over_model_options() {
        let model = ModelOptions {
            temperature: Some(0.2),
            top_k: Some(10),
            seed: Some(7),
            ..ModelOptions::default()
        };
        let req = GenerateOptions {
            temperature: Some(0.0),
            seed: Some(-1),
            ..GenerateOptions::default()
        };
        let s = sampling_params(&model, &req);
        assert_eq!(s.temperature, 0.0);
        assert_eq!(s.top_k, 10);
        assert_eq!(s.seed, None);
        assert_eq!(s.top_p, SamplingParams::default().top_p);
    }

    #[test]
    fn file_paths_are_not_model_names() {
        let e = parse_model_name("/tmp/model.gguf").expect_err("a path");
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert!(parse_model_name("smollm2:135m").is_ok());
    }
}

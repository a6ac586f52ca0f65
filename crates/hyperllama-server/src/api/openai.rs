//! OpenAI's API: `/v1/chat/completions`, `/v1/completions` (SSE streams ending in
//! `data: [DONE]`, `stream` defaults to false), `/v1/models`, `/v1/models/{id}`.
//!
//! Requests become native requests as Ollama's `openai` middleware does: `max_tokens` (or
//! `max_completion_tokens`) is `num_predict`, `stop` a string or a list, `seed`,
//! `temperature`, `top_p`, `frequency_penalty`, `presence_penalty` as they are. Three
//! extensions: `ignore_eos`, `num_ctx` (Ollama offers no way to set the context length
//! through this API), and `think_budget` (the most tokens a thinking model thinks before its
//! answer; see docs/tools-and-thinking.md).
//!
//! Tools: `tools` and `tool_choice` (`"none"` drops the tools; `"auto"` renders and parses
//! them; `"required"` and a named function also force one call whose arguments validate
//! against the tool's `parameters`, by a grammar); messages may carry `tool_calls` (arguments as JSON strings)
//! and `tool` messages their `tool_call_id`. Parsed calls come back as `message.tool_calls`
//! (`[{id, type, function: {name, arguments: STRING}}]`, `content` null when there is no
//! text, `finish_reason: "tool_calls"`), or when streaming as `delta.tool_calls` with their
//! `index`, one complete call per delta. A thinking model's reasoning comes back as
//! `reasoning_content` (vLLM's and llama-server's field); `reasoning_effort` is ignored.
//!
//! Structured output: `response_format` `json_object` (any JSON object) or `json_schema`
//! (always enforced, `strict` or not), or the `grammar` extension (llama.cpp's GBNF, or
//! llguidance's Lark); see [`crate::structured`]. `logprobs` (chat: `true` with
//! `top_logprobs` 0 to 20; completions: 0 to 5) are the model's raw log-probabilities. `n`
//! (1 to 16) runs the choices as separate sequences in the same batches (they share the
//! prompt's KV through the prefix cache); choice `i` samples with seed `seed + i`; usage
//! counts the prompt once.
//!
//! # Invariants
//! - Errors are OpenAI's error object, also as the last `data:` event of a failed stream
//!   (which then ends without `[DONE]`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_engine::{FinishReason, TokenLogprob};
use hyperllama_models::template::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use super::sse;
use crate::error::{ApiError, OpenAiError, OpenAiJson};
use crate::native::{
    self, parse_model_name, Done, Generation, NativeEvent, NativeRequest, PromptInput,
};
use crate::options::{stop_list, GenerateOptions};
use crate::structured;
use crate::tools::{self, ParsedToolCall, ToolChoice};
use crate::AppState;

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// A chat message; `content` may be a string or a list of text parts.
#[derive(Debug, Deserialize)]
pub struct MessageBody {
    role: String,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

/// The sampling fields both endpoints share.
#[derive(Debug, Default, Deserialize)]
pub struct CommonBody {
    model: String,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    max_completion_tokens: Option<i64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    seed: Option<i64>,
    #[serde(default)]
    stop: Option<Value>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    num_ctx: Option<usize>,
    #[serde(default)]
    think_budget: Option<usize>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    top_logprobs: Option<i64>,
}

/// The most choices one request may ask for: each is a sequence with its own KV.
const MAX_CHOICES: u32 = 16;

impl CommonBody {
    /// `n`, the number of choices (1 to [`MAX_CHOICES`]).
    fn n(&self) -> Result<usize, ApiError> {
        match self.n.unwrap_or(1) {
            n @ 1..=MAX_CHOICES => Ok(n as usize),
            n => Err(ApiError::bad_request(format!(
                "n must be between 1 and {MAX_CHOICES}, not {n}"
            ))),
        }
    }

    /// `response_format` or `grammar`.
    fn constraint(&self) -> Result<Option<ConstraintSpec>, ApiError> {
        structured::one_constraint([
            structured::openai_response_format(self.response_format.as_ref())?,
            structured::grammar(self.grammar.as_deref()),
        ])
    }

    /// Chat's `logprobs: bool` + `top_logprobs`, or completions' `logprobs: int` (0 to 5
    /// alternatives, OpenAI's limit there).
    fn logprobs(&self, kind: Kind) -> Result<Option<usize>, ApiError> {
        match (kind, &self.logprobs) {
            (_, None | Some(Value::Null)) => structured::logprobs(false, self.top_logprobs),
            (Kind::Chat, Some(Value::Bool(on))) => structured::logprobs(*on, self.top_logprobs),
            (Kind::Completion, Some(Value::Number(n))) => match n.as_u64() {
                Some(k @ 0..=5) => Ok(Some(k as usize)),
                _ => Err(ApiError::bad_request("logprobs must be between 0 and 5")),
            },
            (Kind::Chat, Some(_)) => Err(ApiError::bad_request("logprobs must be a boolean")),
            (Kind::Completion, Some(_)) => {
                Err(ApiError::bad_request("logprobs must be an integer"))
            }
        }
    }

    fn options(&self) -> Result<GenerateOptions, ApiError> {
        Ok(GenerateOptions {
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            num_predict: self.max_completion_tokens.or(self.max_tokens),
            stop: self
                .stop
                .as_ref()
                .map(|v| stop_list("stop", v))
                .transpose()?,
            ignore_eos: self.ignore_eos,
            num_ctx: self.num_ctx,
            think_budget: self.think_budget,
            ..GenerateOptions::default()
        })
    }

    fn write_options(&self, kind: Kind, logprobs: bool) -> WriteOptions {
        WriteOptions {
            kind,
            stream: self.stream,
            include_usage: self
                .stream_options
                .as_ref()
                .is_some_and(|o| o.include_usage),
            logprobs,
        }
    }
}

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatCompletionBody {
    #[serde(flatten)]
    common: CommonBody,
    messages: Vec<MessageBody>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
}

/// The tools a chat request renders and parses, and whether a call is forced, after
/// `tool_choice` (see the module docs).
fn chosen_tools(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
) -> Result<(Option<Vec<Value>>, ToolChoice), ApiError> {
    let tools = match tools.filter(|t| !t.is_null()) {
        Some(t) => tools::validate_tools(t)?,
        None => return Ok((None, ToolChoice::Auto)),
    };
    match tool_choice {
        None | Some(Value::Null) => Ok((Some(tools), ToolChoice::Auto)),
        Some(Value::String(s)) if s == "none" => Ok((None, ToolChoice::Auto)),
        Some(Value::String(s)) if s == "auto" => Ok((Some(tools), ToolChoice::Auto)),
        Some(Value::String(s)) if s == "required" => Ok((Some(tools), ToolChoice::Required)),
        Some(v @ Value::Object(_)) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::bad_request("tool_choice must name a function: {\"type\": \"function\", \"function\": {\"name\": ...}}")
                })?;
            if !tools::tool_names(&tools).contains(&name) {
                return Err(ApiError::bad_request(format!(
                    "tool_choice names '{name}', which is not in tools"
                )));
            }
            let name = name.to_owned();
            Ok((Some(tools), ToolChoice::Function(name)))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid tool_choice {other}: use \"none\", \"auto\", \"required\" or a function"
        ))),
    }
}

/// OpenAI's tool call: `{index, id, type, function: {name, arguments}}`, the arguments as a
/// JSON string; `index` counts the answer's calls from 0 (streamed deltas need it).
fn openai_tool_call(index: usize, call: &ParsedToolCall) -> Value {
    json!({
        "index": index,
        "id": tools::new_call_id(),
        "type": "function",
        "function": {
            "name": call.name,
            "arguments": Value::Object(call.arguments.clone()).to_string(),
        },
    })
}

/// The body of `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionBody {
    #[serde(flatten)]
    common: CommonBody,
    prompt: Value,
}

fn content_text(content: &Value) -> Result<String, ApiError> {
    match content {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        text.push_str(p.get("text").and_then(Value::as_str).unwrap_or_default());
                    }
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "content parts of type '{other}' are not supported"
                        )))
                    }
                    None => return Err(ApiError::bad_request("a content part has no type")),
                }
            }
            Ok(text)
        }
        _ => Err(ApiError::bad_request(
            "message content must be a string or a list of parts",
        )),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id with `prefix` (unique within the process, and across restarts in practice).
fn new_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{t:08x}{n:x}")
}

fn finish_reason(r: FinishReason, tool_calls: bool) -> &'static str {
    match r {
        _ if tool_calls => "tool_calls",
        FinishReason::Length => "length",
        _ => "stop",
    }
}

/// Which endpoint's object shapes to write.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
}

impl Meta {
    fn object(&self, stream: bool) -> &'static str {
        match (self.kind, stream) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        }
    }

    fn envelope(&self, stream: bool, choices: Value) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("object".into(), json!(self.object(stream)));
        m.insert("created".into(), json!(self.created));
        m.insert("model".into(), json!(self.model));
        m.insert("system_fingerprint".into(), json!("fp_hyperllama"));
        m.insert("choices".into(), choices);
        m
    }

    /// One choice. In a chat stream only the first delta names the role, as OpenAI sends it.
    fn choice(
        &self,
        index: usize,
        text: Option<&str>,
        finish: Option<&str>,
        stream: bool,
        first: bool,
    ) -> Value {
        match (self.kind, stream) {
            (Kind::Chat, false) => json!({
                "index": index,
                "message": { "role": "assistant", "content": text.unwrap_or_default() },
                "finish_reason": finish,
            }),
            (Kind::Chat, true) => {
                let mut delta = serde_json::Map::new();
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                self.delta_choice(index, delta, finish, first)
            }
            (Kind::Completion, _) => json!({
                "index": index,
                "text": text.unwrap_or_default(),
                "logprobs": null,
                "finish_reason": finish,
            }),
        }
    }

    /// A chat stream's choice with `delta`; the first names the role.
    fn delta_choice(
        &self,
        index: usize,
        mut delta: serde_json::Map<String, Value>,
        finish: Option<&str>,
        first: bool,
    ) -> Value {
        if first && !delta.is_empty() {
            delta.insert("role".into(), json!("assistant"));
        }
        json!({ "index": index, "delta": delta, "finish_reason": finish })
    }
}

/// What the response writer needs beyond the generations.
#[derive(Clone, Copy)]
struct WriteOptions {
    kind: Kind,
    stream: bool,
    include_usage: bool,
    /// Whether the request asked for log-probabilities.
    logprobs: bool,
}

/// Starts `n` generations of `req` (choice `i` with seed `seed + i`, so that sampled choices
/// differ; the engine batches them and they share the prompt's KV) and writes them.
async fn respond(state: &AppState, req: NativeRequest, n: usize, opts: WriteOptions) -> Response {
    let mut generations = Vec::with_capacity(n);
    for i in 0..n {
        let mut req = req.clone();
        if i > 0 {
            let seed = req.options.seed.unwrap_or_else(random_seed);
            req.options.seed = Some(seed.wrapping_add(i as i64));
        } else if n > 1 && req.options.seed.is_none() {
            req.options.seed = Some(random_seed());
        }
        match native::generate(state.residency(), req).await {
            Ok(generation) => {
                super::touch(state, &generation.name);
                generations.push(generation);
            }
            Err(e) => return e.into_openai(),
        }
    }
    write(generations, opts).await
}

/// A seed for a request that gave none but needs several different choices.
fn random_seed() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(unix_now());
    (h.finish() >> 1) as i64
}

/// One choice's answer as it accumulates.
#[derive(Default)]
struct ChoiceState {
    first: bool,
    text: String,
    thinking: String,
    calls: Vec<Value>,
    n_calls: usize,
    /// Log-probabilities not yet written (streaming) or all of them (not streaming).
    logprobs: Vec<TokenLogprob>,
    /// Bytes of text written before the pending log-probabilities (legacy `text_offset`).
    text_offset: usize,
    done: Option<Done>,
}

impl ChoiceState {
    fn new() -> Self {
        Self {
            first: true,
            ..Self::default()
        }
    }
}

/// Writes the choices' events: SSE chunks, or one object.
async fn write(generations: Vec<Generation>, opts: WriteOptions) -> Response {
    let Some(model) = generations.first().map(|g| g.model.clone()) else {
        return ApiError::bad_request("n must be at least 1").into_openai();
    };
    let meta = Meta {
        id: new_id(match opts.kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        }),
        created: unix_now(),
        model,
        kind: opts.kind,
    };
    let n = generations.len();
    let merged = futures_util::stream::select_all(
        generations
            .into_iter()
            .enumerate()
            .map(|(i, g)| g.events.map(move |e| (i, e)).boxed()),
    );
    let mut writer = Writer {
        meta,
        opts,
        choices: (0..n).map(|_| ChoiceState::new()).collect(),
    };
    if opts.stream {
        let items = futures_util::stream::unfold(Some((writer, merged)), |state| async move {
            let (mut w, mut merged) = state?;
            loop {
                match merged.next().await {
                    Some((i, NativeEvent::Error(e))) => {
                        let _ = i;
                        return Some((vec![e.openai_body().to_string()], None));
                    }
                    Some((i, event)) => {
                        let out = w.stream_event(i, event);
                        if !out.is_empty() {
                            return Some((out, Some((w, merged))));
                        }
                    }
                    None => return Some((w.stream_end(), None)),
                }
            }
        })
        .flat_map(futures_util::stream::iter);
        return sse(items);
    }
    let mut merged = merged;
    while let Some((i, event)) = merged.next().await {
        if let NativeEvent::Error(e) = event {
            return e.into_openai();
        }
        writer.collect(i, event);
    }
    writer.whole()
}

/// Turns the choices' events into OpenAI's objects.
struct Writer {
    meta: Meta,
    opts: WriteOptions,
    choices: Vec<ChoiceState>,
}

impl Writer {
    /// The `logprobs` of a choice for the tokens pending in `c` (and clears them).
    fn take_logprobs(&mut self, i: usize) -> Value {
        let c = &mut self.choices[i];
        if !self.opts.logprobs {
            return Value::Null;
        }
        let lps = std::mem::take(&mut c.logprobs);
        match self.opts.kind {
            Kind::Chat => {
                json!({ "content": lps.iter().map(structured::logprob_json).collect::<Vec<_>>() })
            }
            Kind::Completion => {
                let v = structured::completion_logprobs(&lps, c.text_offset);
                c.text_offset += lps
                    .iter()
                    .map(|l| String::from_utf8_lossy(&l.bytes).len())
                    .sum::<usize>();
                v
            }
        }
    }

    fn chunk(&self, choice: Value) -> String {
        Value::Object(self.meta.envelope(true, json!([choice]))).to_string()
    }

    /// The SSE data items one event of choice `i` becomes.
    fn stream_event(&mut self, i: usize, event: NativeEvent) -> Vec<String> {
        match event {
            NativeEvent::Logprobs(list) => {
                self.choices[i].logprobs.extend(list);
                Vec::new()
            }
            NativeEvent::Text(t) => {
                let logprobs = self.take_logprobs(i);
                let first = std::mem::take(&mut self.choices[i].first);
                let mut choice = self.meta.choice(i, Some(&t), None, true, first);
                set_logprobs(&mut choice, logprobs);
                vec![self.chunk(choice)]
            }
            NativeEvent::Thinking(t) => {
                let mut delta = serde_json::Map::new();
                delta.insert("reasoning_content".into(), json!(t));
                let first = std::mem::take(&mut self.choices[i].first);
                vec![self.chunk(self.meta.delta_choice(i, delta, None, first))]
            }
            NativeEvent::ToolCalls(list) => list
                .iter()
                .map(|call| {
                    let c = &mut self.choices[i];
                    let mut delta = serde_json::Map::new();
                    delta.insert(
                        "tool_calls".into(),
                        json!([openai_tool_call(c.n_calls, call)]),
                    );
                    c.n_calls += 1;
                    let first = std::mem::take(&mut c.first);
                    self.chunk(self.meta.delta_choice(i, delta, None, first))
                })
                .collect(),
            NativeEvent::Done(d) => {
                let reason = finish_reason(d.reason, self.choices[i].n_calls > 0);
                let logprobs = self.take_logprobs(i);
                let mut choice = match self.meta.kind {
                    Kind::Chat => self.meta.choice(i, None, Some(reason), true, false),
                    Kind::Completion => self.meta.choice(i, Some(""), Some(reason), true, false),
                };
                if !logprobs.is_null()
                    && logprobs
                        .get("content")
                        .and_then(Value::as_array)
                        .is_none_or(|c| !c.is_empty())
                    && logprobs
                        .get("tokens")
                        .and_then(Value::as_array)
                        .is_none_or(|t| !t.is_empty())
                {
                    set_logprobs(&mut choice, logprobs);
                }
                self.choices[i].done = Some(d);
                vec![self.chunk(choice)]
            }
            NativeEvent::Error(e) => vec![e.openai_body().to_string()],
        }
    }

    /// The usage chunk (when asked) and `[DONE]`, after every choice ended.
    fn stream_end(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        if self.choices.iter().any(|c| c.done.is_none()) {
            let e = ApiError::new(
                crate::ErrorKind::Internal,
                "the generation ended without a result",
            );
            return vec![e.openai_body().to_string()];
        }
        if self.opts.include_usage {
            let mut m = self.meta.envelope(true, json!([]));
            m.insert("usage".into(), self.usage());
            out.push(Value::Object(m).to_string());
        }
        out.push("[DONE]".to_owned());
        out
    }

    /// Prompt tokens once (the choices share the prompt), completion tokens of all choices.
    fn usage(&self) -> Value {
        let dones: Vec<&Done> = self
            .choices
            .iter()
            .filter_map(|c| c.done.as_ref())
            .collect();
        let n_prompt = dones.first().map_or(0, |d| d.n_prompt_tokens);
        let n_eval: usize = dones.iter().map(|d| d.completion.n_eval).sum();
        json!({
            "prompt_tokens": n_prompt,
            "completion_tokens": n_eval,
            "total_tokens": n_prompt + n_eval,
        })
    }

    /// Accumulates one event of choice `i` for the whole answer.
    fn collect(&mut self, i: usize, event: NativeEvent) {
        let c = &mut self.choices[i];
        match event {
            NativeEvent::Text(t) => c.text.push_str(&t),
            NativeEvent::Thinking(t) => c.thinking.push_str(&t),
            NativeEvent::Logprobs(list) => c.logprobs.extend(list),
            NativeEvent::ToolCalls(list) => {
                for call in &list {
                    let mut v = openai_tool_call(c.calls.len(), call);
                    if let Some(o) = v.as_object_mut() {
                        // `index` belongs to streamed deltas only.
                        o.remove("index");
                    }
                    c.calls.push(v);
                }
            }
            NativeEvent::Done(d) => c.done = Some(d),
            NativeEvent::Error(_) => {}
        }
    }

    /// The whole answer as one object.
    fn whole(mut self) -> Response {
        let mut choices = Vec::with_capacity(self.choices.len());
        for i in 0..self.choices.len() {
            let Some(reason) = self.choices[i]
                .done
                .as_ref()
                .map(|d| finish_reason(d.reason, !self.choices[i].calls.is_empty()))
            else {
                return ApiError::new(
                    crate::ErrorKind::Internal,
                    "the generation ended without a result",
                )
                .into_openai();
            };
            let logprobs = self.take_logprobs(i);
            let c = &self.choices[i];
            let mut choice = self
                .meta
                .choice(i, Some(&c.text), Some(reason), false, true);
            if let Some(message) = choice.get_mut("message") {
                if !c.calls.is_empty() {
                    if c.text.is_empty() {
                        message["content"] = Value::Null;
                    }
                    message["tool_calls"] = json!(c.calls);
                }
                if !c.thinking.is_empty() {
                    message["reasoning_content"] = json!(c.thinking);
                }
            }
            set_logprobs(&mut choice, logprobs);
            choices.push(choice);
        }
        let mut m = self.meta.envelope(false, json!(choices));
        m.insert("usage".into(), self.usage());
        Json(Value::Object(m)).into_response()
    }
}

/// Sets a choice's `logprobs` (always present on completions, on chat when asked).
fn set_logprobs(choice: &mut Value, logprobs: Value) {
    if let Some(o) = choice.as_object_mut() {
        if !logprobs.is_null() || o.contains_key("logprobs") {
            o.insert("logprobs".into(), logprobs);
        }
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<ChatCompletionBody>,
) -> Response {
    let build = || -> Result<(NativeRequest, usize), ApiError> {
        let messages = body
            .messages
            .iter()
            .map(|m| {
                let mut msg = ChatMessage::new(m.role.clone(), content_text(&m.content)?);
                msg.name.clone_from(&m.name);
                msg.tool_call_id.clone_from(&m.tool_call_id);
                msg.reasoning_content = m.reasoning_content.clone().filter(|t| !t.is_empty());
                if let Some(calls) = &m.tool_calls {
                    msg.tool_calls = tools::message_tool_calls(calls)?;
                }
                Ok(msg)
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        if messages.is_empty() {
            return Err(ApiError::bad_request("messages must not be empty"));
        }
        let c = &body.common;
        let (tools, tool_choice) = chosen_tools(body.tools.as_ref(), body.tool_choice.as_ref())?;
        let req = NativeRequest {
            model: c.model.clone(),
            input: PromptInput::Chat(messages),
            system: None,
            options: c.options()?,
            keep_alive: None,
            tools,
            think: None,
            tool_choice,
            template: None,
            constraint: c.constraint()?,
            logprobs: c.logprobs(Kind::Chat)?,
        };
        Ok((req, c.n()?))
    };
    match build() {
        Ok((req, n)) => {
            let opts = body
                .common
                .write_options(Kind::Chat, req.logprobs.is_some());
            respond(&state, req, n, opts).await
        }
        Err(e) => e.into_openai(),
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<CompletionBody>,
) -> Response {
    let prompt = match &body.prompt {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() == 1 && items[0].is_string() => {
            items[0].as_str().unwrap_or_default().to_owned()
        }
        _ => {
            return ApiError::bad_request("prompt must be a string (or a list of one string)")
                .into_openai()
        }
    };
    let c = &body.common;
    let build = || -> Result<(NativeRequest, usize), ApiError> {
        let req = NativeRequest {
            model: c.model.clone(),
            input: PromptInput::Text { prompt, raw: false },
            system: None,
            options: c.options()?,
            keep_alive: None,
            tools: None,
            think: None,
            tool_choice: ToolChoice::Auto,
            template: None,
            constraint: c.constraint()?,
            logprobs: c.logprobs(Kind::Completion)?,
        };
        Ok((req, c.n()?))
    };
    match build() {
        Ok((req, n)) => {
            let opts = c.write_options(Kind::Completion, req.logprobs.is_some());
            respond(&state, req, n, opts).await
        }
        Err(e) => e.into_openai(),
    }
}

fn model_object(name: &str, created: SystemTime, owner: &str) -> Value {
    let created = created
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    json!({ "id": name, "object": "model", "created": created, "owned_by": owner })
}

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>) -> Result<Json<Value>, OpenAiError> {
    let registry = state.registry();
    registry
        .sync(state.store())
        .await
        .map_err(|e| ApiError::internal("cannot read the model index", &e))?;
    let records = registry
        .list()
        .await
        .map_err(|e| ApiError::internal("cannot read the model index", &e))?;
    let data: Vec<Value> = records
        .iter()
        .map(|r| {
            model_object(
                &r.name.display_shortest(),
                r.modified_at,
                r.name.namespace(),
            )
        })
        .collect();
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// `GET /v1/models/{id}`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(model): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    let name = parse_model_name(&model)?;
    let resolved = state
        .residency()
        .resolve(&name)
        .await
        .map_err(native::as_written(&model))?;
    Ok(Json(model_object(
        &model,
        resolved.modified,
        resolved.name.namespace(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_mid_stream_is_the_last_event_without_done() {
        let events = futures_util::stream::iter([
            NativeEvent::Text("Hi".into()),
            NativeEvent::Error(ApiError::new(
                crate::ErrorKind::Internal,
                "the engine failed",
            )),
        ]);
        let generation = Generation {
            model: "m".into(),
            name: hyperllama_models::name::ModelName::parse("m").expect("name"),
            n_prompt_tokens: 3,
            events: Box::pin(events),
        };
        let opts = WriteOptions {
            kind: Kind::Chat,
            stream: true,
            include_usage: true,
            logprobs: false,
        };
        let resp = write(vec![generation], opts).await;
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8");
        let data: Vec<&str> = text
            .split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .collect();
        assert_eq!(data.len(), 2, "{text}");
        let first: Value = serde_json::from_str(data[0]).expect("chunk");
        assert_eq!(first["choices"][0]["delta"]["content"], "Hi");
        let last: Value = serde_json::from_str(data[1]).expect("error");
        assert_eq!(last["error"]["message"], "the engine failed");
        assert_eq!(last["error"]["type"], "api_error");
    }
}

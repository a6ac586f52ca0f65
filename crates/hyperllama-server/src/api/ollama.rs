//! Ollama's API: `/api/generate`, `/api/chat` (NDJSON streams, `stream` defaults to true),
//! `/api/version`, `/`; its model endpoints are in [`super::models`].
//!
//! Field names and shapes follow Ollama's `api/types.go`; durations are nanoseconds and
//! `created_at` is RFC 3339. An empty prompt (or no messages) only loads the model
//! (`done_reason: "load"`), and with `keep_alive: 0` unloads it (`"unload"`).
//!
//! Tools and thinking: `/api/chat` takes `tools` and messages with `tool_calls` (arguments
//! as objects) and `tool_name`; parsed calls come back as `message.tool_calls`
//! (`[{id, function: {index, name, arguments}}]`, in a chunk of their own when streaming).
//! `think` (a bool, or a level, read as `true`) on `/api/chat` and `/api/generate` sets the
//! template's `enable_thinking`; reasoning comes back as `message.thinking` (`thinking` on
//! `/api/generate`), streamed before the content.
//!
//! Structured output: `format` (`"json"` or a JSON schema) is enforced token by token (never
//! just asked for in the prompt), and so is our `grammar` extension (GBNF or Lark).
//! `logprobs` with `top_logprobs` (0 to 20) add `logprobs: [{token, logprob, bytes,
//! top_logprobs}]` to the chunks that carry the tokens' text.
//!
//! # Invariants
//! - Errors are Ollama's `{"error": "..."}`, also as the last line of a failed stream.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_models::template::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{nanos, ndjson, now_rfc3339};
use crate::error::{ApiError, OllamaJson};
use crate::native::{self, Done, Generation, NativeEvent, NativeRequest, PromptInput};
use crate::options::{GenerateOptions, KeepAlive};
use crate::structured;
use crate::tools::{self, ParsedToolCall, ToolChoice};
use crate::AppState;

/// `GET /` and `HEAD /`.
pub async fn root() -> &'static str {
    "Ollama is running"
}

/// `GET /api/version`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

/// The body of `POST /api/generate`.
#[derive(Debug, Deserialize)]
pub struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(flatten)]
    common: CommonBody,
}

/// The fields `/api/generate` and `/api/chat` share.
#[derive(Debug, Deserialize)]
pub struct CommonBody {
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
    #[serde(default)]
    ignore_eos: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<i64>,
}

/// What the shared fields say about how to generate.
struct OutputControls {
    think: Option<bool>,
    template: Option<String>,
    constraint: Option<ConstraintSpec>,
    logprobs: Option<usize>,
}

impl CommonBody {
    /// `options`, `ignore_eos` and `keep_alive`: all a load-only request needs.
    fn load_controls(&self) -> Result<(GenerateOptions, Option<KeepAlive>), ApiError> {
        request_controls(
            self.options.as_ref(),
            self.ignore_eos,
            self.keep_alive.as_ref(),
        )
    }

    /// `think`, `template`, `format` (or `grammar`) and `logprobs`.
    fn output_controls(&self) -> Result<OutputControls, ApiError> {
        let think = parse_think(self.think.as_ref())?;
        let constraint = structured::one_constraint([
            structured::ollama_format(self.format.as_ref())?,
            structured::grammar(self.grammar.as_deref()),
        ])?;
        Ok(OutputControls {
            think,
            template: self.template.clone(),
            constraint,
            logprobs: structured::logprobs(self.logprobs.unwrap_or(false), self.top_logprobs)?,
        })
    }
}

/// One message of `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct MessageBody {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_name: Option<String>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    images: Option<Vec<Value>>,
}

/// The body of `POST /api/chat`.
#[derive(Debug, Deserialize)]
pub struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Vec<MessageBody>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(flatten)]
    common: CommonBody,
}

/// Ollama's `think`: a bool, or a level (`"high"`, `"medium"`, `"low"`, `"max"`) that turns
/// thinking on (levels are not told apart: templates only know on and off).
fn parse_think(think: Option<&Value>) -> Result<Option<bool>, ApiError> {
    match think {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if matches!(s.as_str(), "high" | "medium" | "low" | "max") => {
            Ok(Some(true))
        }
        Some(Value::String(s)) if matches!(s.as_str(), "true" | "false") => Ok(Some(s == "true")),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid think value {other}: use true, false, \"high\", \"medium\" or \"low\""
        ))),
    }
}

/// Images need a vision model, which no model has here yet.
fn no_images(model: &str, images: Option<&Vec<Value>>) -> Result<(), ApiError> {
    match images {
        Some(list) if !list.is_empty() => Err(ApiError::bad_request(format!(
            "model '{model}' does not support images"
        ))),
        _ => Ok(()),
    }
}

/// The controls `/api/generate` and `/api/chat` share: `options` (with our `ignore_eos`
/// extension) and `keep_alive`.
fn request_controls(
    options: Option<&Map<String, Value>>,
    ignore_eos: Option<bool>,
    keep_alive: Option<&Value>,
) -> Result<(GenerateOptions, Option<KeepAlive>), ApiError> {
    let mut o = match options {
        Some(map) => GenerateOptions::from_ollama(map)?,
        None => GenerateOptions::default(),
    };
    if ignore_eos.is_some() {
        o.ignore_eos = ignore_eos;
    }
    Ok((o, KeepAlive::parse_opt(keep_alive)?))
}

/// Which endpoint's chunk shape to write.
#[derive(Clone, Copy)]
enum Shape {
    Generate,
    Chat,
}

/// What one chunk (or the whole answer) carries.
#[derive(Default)]
struct Reply {
    content: String,
    thinking: String,
    /// Tool calls in Ollama's shape.
    tool_calls: Vec<Value>,
    /// Log-probabilities of the tokens this chunk (or answer) carries.
    logprobs: Vec<Value>,
}

impl Reply {
    fn text(text: &str) -> Self {
        Self {
            content: text.to_owned(),
            ..Self::default()
        }
    }
}

/// Ollama's tool call: `{id, function: {index, name, arguments}}`, `index` counting the
/// answer's calls from 0.
fn ollama_tool_call(index: usize, call: &ParsedToolCall) -> Value {
    json!({
        "id": tools::new_call_id(),
        "function": { "index": index, "name": call.name, "arguments": call.arguments },
    })
}

impl Shape {
    fn chunk(self, model: &str, reply: &Reply, done: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("model".into(), json!(model));
        m.insert("created_at".into(), json!(now_rfc3339()));
        match self {
            Shape::Generate => {
                m.insert("response".into(), json!(reply.content));
                if !reply.thinking.is_empty() {
                    m.insert("thinking".into(), json!(reply.thinking));
                }
            }
            Shape::Chat => {
                let mut msg = json!({ "role": "assistant", "content": reply.content });
                if !reply.thinking.is_empty() {
                    msg["thinking"] = json!(reply.thinking);
                }
                if !reply.tool_calls.is_empty() {
                    msg["tool_calls"] = json!(reply.tool_calls);
                }
                m.insert("message".into(), msg);
            }
        }
        if !reply.logprobs.is_empty() {
            m.insert("logprobs".into(), json!(reply.logprobs));
        }
        m.insert("done".into(), json!(done));
        m
    }

    fn done(self, model: &str, reply: &Reply, d: &Done) -> Value {
        let mut m = self.chunk(model, reply, true);
        let c = &d.completion;
        m.insert("done_reason".into(), json!(d.reason.as_str()));
        m.insert("total_duration".into(), json!(nanos(d.total_duration)));
        m.insert("load_duration".into(), json!(nanos(d.load_duration)));
        m.insert("prompt_eval_count".into(), json!(c.n_prompt));
        m.insert(
            "prompt_eval_duration".into(),
            json!(nanos(c.prompt_eval_duration)),
        );
        m.insert("eval_count".into(), json!(c.n_eval));
        m.insert("eval_duration".into(), json!(nanos(c.eval_duration)));
        if c.n_drafted > 0 {
            // Speculative decoding's statistics, named as llama-server's timings name them.
            m.insert("draft_n".into(), json!(c.n_drafted));
            m.insert("draft_n_accepted".into(), json!(c.n_accepted));
        }
        Value::Object(m)
    }

    /// The answer to an empty request: load or unload.
    fn load_reply(self, model: &str, reason: &str) -> Value {
        let mut m = self.chunk(model, &Reply::default(), true);
        m.insert("done_reason".into(), json!(reason));
        Value::Object(m)
    }
}

/// Runs a native request and answers in `shape`, streamed or not.
async fn respond(state: &AppState, req: NativeRequest, stream: bool, shape: Shape) -> Response {
    match native::generate(state.residency(), req).await {
        Ok(generation) => {
            super::touch(state, &generation.name);
            write(generation, stream, shape).await
        }
        Err(e) => e.into_ollama(),
    }
}

/// Writes a generation's events: NDJSON chunks, or one object.
async fn write(generation: Generation, stream: bool, shape: Shape) -> Response {
    let model = generation.model;
    let mut n_calls = 0;
    let mut calls = move |list: Vec<ParsedToolCall>| -> Vec<Value> {
        list.iter()
            .map(|c| {
                n_calls += 1;
                ollama_tool_call(n_calls - 1, c)
            })
            .collect()
    };
    if stream {
        // Log-probabilities ride on the next chunk that carries text (or on the last one).
        let mut pending: Vec<Value> = Vec::new();
        let lines = generation.events.filter_map(move |event| {
            let line = match event {
                NativeEvent::Logprobs(list) => {
                    pending.extend(list.iter().map(structured::logprob_json));
                    None
                }
                NativeEvent::Text(t) => {
                    let mut reply = Reply::text(&t);
                    reply.logprobs = std::mem::take(&mut pending);
                    Some(Value::Object(shape.chunk(&model, &reply, false)))
                }
                NativeEvent::Thinking(t) => {
                    let reply = Reply {
                        thinking: t,
                        logprobs: std::mem::take(&mut pending),
                        ..Reply::default()
                    };
                    Some(Value::Object(shape.chunk(&model, &reply, false)))
                }
                NativeEvent::ToolCalls(list) => {
                    let reply = Reply {
                        tool_calls: calls(list),
                        logprobs: std::mem::take(&mut pending),
                        ..Reply::default()
                    };
                    Some(Value::Object(shape.chunk(&model, &reply, false)))
                }
                NativeEvent::Done(d) => {
                    let reply = Reply {
                        logprobs: std::mem::take(&mut pending),
                        ..Reply::default()
                    };
                    Some(shape.done(&model, &reply, &d))
                }
                NativeEvent::Error(e) => Some(e.ollama_body()),
            };
            std::future::ready(line)
        });
        return ndjson(lines);
    }
    let mut reply = Reply::default();
    let mut events = generation.events;
    while let Some(event) = events.next().await {
        match event {
            NativeEvent::Text(t) => reply.content.push_str(&t),
            NativeEvent::Thinking(t) => reply.thinking.push_str(&t),
            NativeEvent::ToolCalls(list) => reply.tool_calls.extend(calls(list)),
            NativeEvent::Logprobs(list) => reply
                .logprobs
                .extend(list.iter().map(structured::logprob_json)),
            NativeEvent::Done(d) => return Json(shape.done(&model, &reply, &d)).into_response(),
            NativeEvent::Error(e) => return e.into_ollama(),
        }
    }
    ApiError::new(
        crate::ErrorKind::Internal,
        "the generation ended without a result",
    )
    .into_ollama()
}

/// An empty request: load the model, or unload it with `keep_alive: 0`.
async fn load_or_unload(
    state: &AppState,
    model: &str,
    options: &GenerateOptions,
    keep_alive: Option<KeepAlive>,
    shape: Shape,
) -> Response {
    if keep_alive.is_some_and(KeepAlive::is_zero) {
        return match native::unload(state.residency(), model).await {
            Ok(()) => Json(shape.load_reply(model, "unload")).into_response(),
            Err(e) => e.into_ollama(),
        };
    }
    match native::load_only(state.residency(), model, options, keep_alive).await {
        Ok(_) => Json(shape.load_reply(model, "load")).into_response(),
        Err(e) => e.into_ollama(),
    }
}

/// `POST /api/generate`.
pub async fn generate(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<GenerateBody>,
) -> Response {
    let (options, keep_alive) = match body.common.load_controls() {
        Ok(c) => c,
        Err(e) => return e.into_ollama(),
    };
    if let Err(e) = no_images(&body.model, body.images.as_ref()) {
        return e.into_ollama();
    }
    let out = match body.common.output_controls() {
        Ok(o) => o,
        Err(e) => return e.into_ollama(),
    };
    let prompt = body.prompt.unwrap_or_default();
    if prompt.is_empty() {
        return load_or_unload(&state, &body.model, &options, keep_alive, Shape::Generate).await;
    }
    let req = NativeRequest {
        model: body.model,
        input: PromptInput::Text {
            prompt,
            raw: body.raw.unwrap_or(false),
        },
        system: body.system,
        options,
        keep_alive,
        tools: None,
        think: out.think,
        tool_choice: ToolChoice::Auto,
        template: out.template,
        constraint: out.constraint,
        logprobs: out.logprobs,
    };
    respond(
        &state,
        req,
        body.common.stream.unwrap_or(true),
        Shape::Generate,
    )
    .await
}

/// `POST /api/chat`.
pub async fn chat(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<ChatBody>,
) -> Response {
    let (options, keep_alive) = match body.common.load_controls() {
        Ok(c) => c,
        Err(e) => return e.into_ollama(),
    };
    if body.messages.is_empty() {
        return load_or_unload(&state, &body.model, &options, keep_alive, Shape::Chat).await;
    }
    for m in &body.messages {
        if let Err(e) = no_images(&body.model, m.images.as_ref()) {
            return e.into_ollama();
        }
    }
    let out = match body.common.output_controls() {
        Ok(o) => o,
        Err(e) => return e.into_ollama(),
    };
    let tools = match body.tools.as_ref().filter(|t| !t.is_null()) {
        Some(t) => match tools::validate_tools(t) {
            Ok(list) => Some(list),
            Err(e) => return e.into_ollama(),
        },
        None => None,
    };
    let messages = body
        .messages
        .into_iter()
        .map(|m| {
            let mut msg = ChatMessage::new(m.role, m.content.unwrap_or_default());
            msg.reasoning_content = m.thinking.filter(|t| !t.is_empty());
            msg.name = m.tool_name;
            msg.tool_call_id = m.tool_call_id;
            if let Some(calls) = &m.tool_calls {
                msg.tool_calls = tools::message_tool_calls(calls)?;
            }
            Ok(msg)
        })
        .collect::<Result<Vec<_>, ApiError>>();
    let messages = match messages {
        Ok(m) => m,
        Err(e) => return e.into_ollama(),
    };
    let req = NativeRequest {
        model: body.model,
        input: PromptInput::Chat(messages),
        system: None,
        options,
        keep_alive,
        tools,
        think: out.think,
        tool_choice: ToolChoice::Auto,
        template: out.template,
        constraint: out.constraint,
        logprobs: out.logprobs,
    };
    respond(&state, req, body.common.stream.unwrap_or(true), Shape::Chat).await
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn failing_generation() -> Generation {
        let events = futures_util::stream::iter([
            NativeEvent::Text("Hello".into()),
            NativeEvent::Error(ApiError::new(
                crate::ErrorKind::Internal,
                "the engine failed",
            )),
        ]);
        Generation {
            model: "m".into(),
            name: hyperllama_models::name::ModelName::parse("m").expect("name"),
            n_prompt_tokens: 3,
            events: Box::pin(events),
        }
    }

    async fn body_text(resp: Response) -> String {
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    #[tokio::test]
    async fn an_error_mid_stream_is_the_last_line() {
        let resp = write(failing_generation(), true, Shape::Chat).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let text = body_text(resp).await;
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["message"]["content"], "Hello");
        assert_eq!(lines[0]["done"], false);
        assert_eq!(lines[1], json!({"error": "the engine failed"}));
    }

    #[tokio::test]
    async fn an_error_without_streaming_is_an_error_response() {
        let resp = write(failing_generation(), false, Shape::Generate).await;
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body_text(resp).await, r#"{"error":"the engine failed"}"#);
    }
}

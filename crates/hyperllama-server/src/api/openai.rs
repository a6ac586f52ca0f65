//! OpenAI's API: `/v1/chat/completions`, `/v1/completions` (SSE streams ending in
//! `data: [DONE]`, `stream` defaults to false), `/v1/models`, `/v1/models/{id}`.
//!
//! Requests become native requests as Ollama's `openai` middleware does: `max_tokens` (or
//! `max_completion_tokens`) is `num_predict`, `stop` a string or a list, `seed`,
//! `temperature`, `top_p`, `frequency_penalty`, `presence_penalty` as they are. Two
//! extensions: `ignore_eos`, and `num_ctx` (Ollama offers no way to set the context length
//! through this API).
//!
//! Tools: `tools` and `tool_choice` (`"none"` drops the tools; `"auto"`, `"required"` and a
//! named function render and parse them, without forcing a call: that needs constrained
//! decoding, a later issue); messages may carry `tool_calls` (arguments as JSON strings)
//! and `tool` messages their `tool_call_id`. Parsed calls come back as `message.tool_calls`
//! (`[{id, type, function: {name, arguments: STRING}}]`, `content` null when there is no
//! text, `finish_reason: "tool_calls"`), or when streaming as `delta.tool_calls` with their
//! `index`, one complete call per delta. A thinking model's reasoning comes back as
//! `reasoning_content` (vLLM's and llama-server's field); `reasoning_effort` is ignored.
//!
//! # Invariants
//! - Errors are OpenAI's error object, also as the last `data:` event of a failed stream
//!   (which then ends without `[DONE]`).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hyperllama_engine::FinishReason;
use hyperllama_models::template::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use super::sse;
use crate::error::{ApiError, OpenAiError, OpenAiJson};
use crate::native::{
    self, parse_model_name, Done, Generation, NativeEvent, NativeRequest, PromptInput,
};
use crate::options::{stop_list, GenerateOptions};
use crate::tools::{self, ParsedToolCall};
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
    n: Option<u32>,
}

impl CommonBody {
    fn options(&self) -> Result<GenerateOptions, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported"));
        }
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
            ..GenerateOptions::default()
        })
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
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

/// The tools a chat request renders and parses, after `tool_choice` (see the module docs).
fn chosen_tools(
    tools: Option<&Value>,
    tool_choice: Option<&Value>,
) -> Result<Option<Vec<Value>>, ApiError> {
    let tools = match tools.filter(|t| !t.is_null()) {
        Some(t) => tools::validate_tools(t)?,
        None => return Ok(None),
    };
    match tool_choice {
        None | Some(Value::Null) => Ok(Some(tools)),
        Some(Value::String(s)) if s == "none" => Ok(None),
        Some(Value::String(s)) if s == "auto" || s == "required" => Ok(Some(tools)),
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
            Ok(Some(tools))
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

fn usage(d: &Done) -> Value {
    let n_prompt = d.n_prompt_tokens;
    let n_eval = d.completion.n_eval;
    json!({
        "prompt_tokens": n_prompt,
        "completion_tokens": n_eval,
        "total_tokens": n_prompt + n_eval,
    })
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
    fn choice(&self, text: Option<&str>, finish: Option<&str>, stream: bool, first: bool) -> Value {
        match (self.kind, stream) {
            (Kind::Chat, false) => json!({
                "index": 0,
                "message": { "role": "assistant", "content": text.unwrap_or_default() },
                "finish_reason": finish,
            }),
            (Kind::Chat, true) => {
                let mut delta = serde_json::Map::new();
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                self.delta_choice(delta, finish, first)
            }
            (Kind::Completion, _) => json!({
                "index": 0,
                "text": text.unwrap_or_default(),
                "logprobs": null,
                "finish_reason": finish,
            }),
        }
    }

    /// A chat stream's choice with `delta`; the first names the role.
    fn delta_choice(
        &self,
        mut delta: serde_json::Map<String, Value>,
        finish: Option<&str>,
        first: bool,
    ) -> Value {
        if first && !delta.is_empty() {
            delta.insert("role".into(), json!("assistant"));
        }
        json!({ "index": 0, "delta": delta, "finish_reason": finish })
    }

    /// One chunk of a chat stream with `delta`.
    fn delta_chunk(&self, delta: serde_json::Map<String, Value>, first: bool) -> String {
        let choice = self.delta_choice(delta, None, first);
        Value::Object(self.envelope(true, json!([choice]))).to_string()
    }
}

async fn respond(
    state: &AppState,
    req: NativeRequest,
    kind: Kind,
    stream: bool,
    include_usage: bool,
) -> Response {
    match native::generate(state.residency(), req).await {
        Ok(generation) => {
            super::touch(state, &generation.name);
            write(generation, kind, stream, include_usage).await
        }
        Err(e) => e.into_openai(),
    }
}

/// Writes a generation's events: SSE chunks, or one object.
async fn write(generation: Generation, kind: Kind, stream: bool, include_usage: bool) -> Response {
    let meta = Meta {
        id: new_id(match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        }),
        created: unix_now(),
        model: generation.model.clone(),
        kind,
    };
    if stream {
        let mut first = true;
        let mut n_calls = 0;
        let items = generation.events.flat_map(move |event| {
            let items: Vec<String> = match event {
                NativeEvent::Text(t) => {
                    let choice = meta.choice(Some(&t), None, true, first);
                    first = false;
                    vec![Value::Object(meta.envelope(true, json!([choice]))).to_string()]
                }
                NativeEvent::Thinking(t) => {
                    let mut delta = serde_json::Map::new();
                    delta.insert("reasoning_content".into(), json!(t));
                    let chunk = meta.delta_chunk(delta, first);
                    first = false;
                    vec![chunk]
                }
                NativeEvent::ToolCalls(list) => list
                    .iter()
                    .map(|c| {
                        let mut delta = serde_json::Map::new();
                        delta.insert("tool_calls".into(), json!([openai_tool_call(n_calls, c)]));
                        n_calls += 1;
                        let chunk = meta.delta_chunk(delta, first);
                        first = false;
                        chunk
                    })
                    .collect(),
                NativeEvent::Done(d) => {
                    let reason = finish_reason(d.reason, n_calls > 0);
                    let choice = match meta.kind {
                        Kind::Chat => meta.choice(None, Some(reason), true, false),
                        Kind::Completion => meta.choice(Some(""), Some(reason), true, false),
                    };
                    let mut out =
                        vec![Value::Object(meta.envelope(true, json!([choice]))).to_string()];
                    if include_usage {
                        let mut m = meta.envelope(true, json!([]));
                        m.insert("usage".into(), usage(&d));
                        out.push(Value::Object(m).to_string());
                    }
                    out.push("[DONE]".to_owned());
                    out
                }
                NativeEvent::Error(e) => vec![e.openai_body().to_string()],
            };
            futures_util::stream::iter(items)
        });
        return sse(items);
    }
    let mut text = String::new();
    let mut thinking = String::new();
    let mut calls: Vec<Value> = Vec::new();
    let mut events = generation.events;
    while let Some(event) = events.next().await {
        match event {
            NativeEvent::Text(t) => text.push_str(&t),
            NativeEvent::Thinking(t) => thinking.push_str(&t),
            NativeEvent::ToolCalls(list) => {
                for c in &list {
                    let mut call = openai_tool_call(calls.len(), c);
                    if let Some(o) = call.as_object_mut() {
                        // `index` belongs to streamed deltas only.
                        o.remove("index");
                    }
                    calls.push(call);
                }
            }
            NativeEvent::Done(d) => {
                let reason = finish_reason(d.reason, !calls.is_empty());
                let mut choice = meta.choice(Some(&text), Some(reason), false, true);
                if let Some(message) = choice.get_mut("message") {
                    if !calls.is_empty() {
                        if text.is_empty() {
                            message["content"] = Value::Null;
                        }
                        message["tool_calls"] = json!(calls);
                    }
                    if !thinking.is_empty() {
                        message["reasoning_content"] = json!(thinking);
                    }
                }
                let mut m = meta.envelope(false, json!([choice]));
                m.insert("usage".into(), usage(&d));
                return Json(Value::Object(m)).into_response();
            }
            NativeEvent::Error(e) => return e.into_openai(),
        }
    }
    ApiError::new(
        crate::ErrorKind::Internal,
        "the generation ended without a result",
    )
    .into_openai()
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<ChatCompletionBody>,
) -> Response {
    let build = || -> Result<NativeRequest, ApiError> {
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
        Ok(NativeRequest {
            model: body.common.model.clone(),
            input: PromptInput::Chat(messages),
            system: None,
            options: body.common.options()?,
            keep_alive: None,
            tools: chosen_tools(body.tools.as_ref(), body.tool_choice.as_ref())?,
            think: None,
        })
    };
    match build() {
        Ok(req) => {
            let c = &body.common;
            respond(&state, req, Kind::Chat, c.stream, c.include_usage()).await
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
    let options = match body.common.options() {
        Ok(o) => o,
        Err(e) => return e.into_openai(),
    };
    let req = NativeRequest {
        model: body.common.model.clone(),
        input: PromptInput::Text { prompt, raw: false },
        system: None,
        options,
        keep_alive: None,
        tools: None,
        think: None,
    };
    let c = &body.common;
    respond(&state, req, Kind::Completion, c.stream, c.include_usage()).await
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
        let resp = write(generation, Kind::Chat, true, true).await;
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

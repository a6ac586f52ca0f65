//! OpenAI's API: `/v1/chat/completions`, `/v1/completions` (SSE streams ending in
//! `data: [DONE]`, `stream` defaults to false), `/v1/models`, `/v1/models/{id}`. This module
//! reads the requests; `write` writes the responses.
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
use axum::response::Response;
use axum::Json;
use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_models::template::ChatMessage;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{ApiError, OpenAiError, OpenAiJson};
use crate::native::{self, parse_model_name, NativeRequest, PromptInput};
use crate::options::{stop_list, GenerateOptions};
use crate::structured;
use crate::tools::{self, ParsedToolCall, ToolChoice};
use crate::AppState;

mod write;

use write::{respond, Kind, WriteOptions};

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
    use crate::native::{Generation, NativeEvent};

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
        let resp = write::write(vec![generation], opts).await;
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

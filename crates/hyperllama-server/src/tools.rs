//! Tool calling: checking a request's tool specs, and parsing tool calls out of a model's
//! answer (pure code, no IO).
//!
//! [`validate_tools`] checks the `tools` both APIs take (`[{type: "function", function:
//! {name, description, parameters}}]`). [`ToolCallParser`] reads an answer as it streams and
//! splits it into text and [`ParsedToolCall`]s. It knows two families of formats:
//!
//! - **Tagged** (Hermes, Qwen 2.5/3, SmolLM, many fine-tunes): `<tool_call>` JSON
//!   `</tool_call>`, where the JSON is `{"name": ..., "arguments": {...}}` (or several such
//!   objects, or a list of them); several blocks may follow each other, with text around
//!   them. A template whose generation prompt already opens `<tool_call>` is handled by
//!   [`ToolCallParser::inside_call`].
//! - **Llama 3 JSON**: the whole answer (optionally after `<|python_tag|>`) is one JSON object
//!   `{"name": ..., "parameters": {...}}` (also with `"type": "function"` or `"arguments"`),
//!   or several separated by `;`.
//!
//! Callers parse only when the request has tools (and `tool_choice` is not `"none"`).
//! `tool_choice: "required"` or a named function forces a call: [`forced_call_grammar`]
//! builds a grammar (llguidance's Lark with embedded JSON schemas) that admits exactly one
//! call, in the template's format, of an allowed tool with arguments that validate against
//! its `parameters`; the engine enforces it token by token. Where the vocabulary has the call
//! tags as special tokens, the grammar accepts those tokens for the tags too.
//!
//! # Invariants
//! - Parsing never fails and never panics: a block whose JSON is not a tool call is returned
//!   as text, tags included, exactly as the model wrote it.
//! - Feeding an answer in one piece or split at any byte position gives the same text (once
//!   concatenated) and the same calls in the same order.
//! - Text is released as soon as it cannot be the start of a tool call; only a possible
//!   opening tag (or, for the JSON form, an answer that starts with `{`) is held back.
//! - Whitespace between calls, and right after a call, is not text.

use hyperllama_models::template::ToolCall;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// The tag that opens a tagged tool call.
pub const OPEN: &str = "<tool_call>";
/// The tag that closes a tagged tool call.
pub const CLOSE: &str = "</tool_call>";
/// Llama 3's marker before a JSON tool call.
pub const PYTHON_TAG: &str = "<|python_tag|>";

/// A tool call read from the model's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedToolCall {
    /// The function's name.
    pub name: String,
    /// The arguments, always a JSON object.
    pub arguments: Map<String, Value>,
}

/// What the parser releases: text, or one tool call.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolOutput {
    /// Answer text (never empty).
    Text(String),
    /// A complete tool call.
    Call(ParsedToolCall),
}

/// Checks a request's `tools`: a list of `{type: "function", function: {name, description,
/// parameters}}` where `type` may be left out, `name` is a non-empty string and
/// `parameters`, when given, is a JSON object. Returns the list unchanged.
pub fn validate_tools(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let Value::Array(list) = tools else {
        return Err(ApiError::bad_request("tools must be a list"));
    };
    for (i, tool) in list.iter().enumerate() {
        let bad = |what: &str| ApiError::bad_request(format!("tools[{i}]: {what}"));
        let Value::Object(t) = tool else {
            return Err(bad("a tool must be an object"));
        };
        match t.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "function" => {}
            Some(other) => return Err(bad(&format!("type must be \"function\", not {other}"))),
        }
        let Some(Value::Object(f)) = t.get("function") else {
            return Err(bad("function must be an object with a name"));
        };
        match f.get("name") {
            Some(Value::String(n)) if !n.trim().is_empty() => {}
            _ => return Err(bad("function.name is missing or empty")),
        }
        match f.get("parameters") {
            None | Some(Value::Null | Value::Object(_)) => {}
            Some(_) => return Err(bad("function.parameters must be a JSON object (a schema)")),
        }
    }
    Ok(list.clone())
}

/// The tool calls of an input (assistant) message, in either API's shape: `{id?, type?,
/// function: {name, arguments}}` with `arguments` a JSON object (Ollama) or a string holding
/// one (OpenAI). Templates get the arguments as an object, as Hugging Face templates expect.
pub fn message_tool_calls(list: &[Value]) -> Result<Vec<ToolCall>, ApiError> {
    list.iter()
        .enumerate()
        .map(|(i, v)| {
            let bad = |what: &str| ApiError::bad_request(format!("tool_calls[{i}]: {what}"));
            let f = v
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| bad("function must be an object"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("function.name is missing"))?;
            let arguments = match f.get("arguments") {
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
                Some(Value::String(s)) => serde_json::from_str::<Value>(s)
                    .ok()
                    .filter(Value::is_object)
                    .ok_or_else(|| bad("function.arguments must hold a JSON object"))?,
                Some(v @ Value::Object(_)) => v.clone(),
                Some(_) => return Err(bad("function.arguments must be a JSON object")),
            };
            let mut call = ToolCall::function(name, arguments);
            call.id = v.get("id").and_then(Value::as_str).map(str::to_owned);
            Ok(call)
        })
        .collect()
}

/// Whether the model must call a tool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (`"auto"`).
    #[default]
    Auto,
    /// Some tool must be called (`"required"`).
    Required,
    /// This function must be called.
    Function(String),
}

/// The grammar of one forced call to a tool allowed by `choice`, in the format the rendered
/// prompt shows: tagged (`<tool_call>` JSON `</tool_call>`, the opening tag left out when the
/// prompt already opened it) when the prompt mentions the tag, else Llama 3's JSON form
/// (`{"name": ..., "parameters": {...}}`). `None` for [`ToolChoice::Auto`].
///
/// `special_token(tag)` says whether the model's vocabulary has `tag` as one special
/// (control) token, as Qwen's may: the grammar then accepts that token for the tag, as well
/// as the tag written as text.
pub fn forced_call_grammar(
    tools: &[Value],
    choice: &ToolChoice,
    prompt: &str,
    special_token: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, ApiError> {
    let allowed: Vec<&Value> = match choice {
        ToolChoice::Auto => return Ok(None),
        ToolChoice::Required => tools.iter().collect(),
        ToolChoice::Function(name) => tools
            .iter()
            .filter(|t| t.pointer("/function/name").and_then(Value::as_str) == Some(name))
            .collect(),
    };
    if allowed.is_empty() {
        return Err(ApiError::bad_request("tool_choice names no tool in tools"));
    }
    let tagged = prompt.contains(OPEN);
    let args_key = if tagged { "arguments" } else { "parameters" };
    let shapes: Vec<Value> = allowed
        .iter()
        .map(|t| {
            let name = t.pointer("/function/name").cloned().unwrap_or(Value::Null);
            let params = t
                .pointer("/function/parameters")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({ "type": "object" }));
            serde_json::json!({
                "type": "object",
                "properties": { "name": { "const": name }, args_key: params },
                "required": ["name", args_key],
                "additionalProperties": false,
            })
        })
        .collect();
    let schema = serde_json::json!({
        "oneOf": shapes,
        "x-guidance": { "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " },
    });
    let call = format!("call: %json {schema}");
    // A tag as text, or also as the vocabulary's special token (`<tag>` in Lark).
    let tag = |t: &str| {
        if special_token(t) {
            format!(r#"("{t}" | {t})"#)
        } else {
            format!(r#""{t}""#)
        }
    };
    let grammar = if !tagged {
        "start: call".to_owned()
    } else if prompt.trim_end().ends_with(OPEN) {
        format!(r#"start: /\n?/ call /\n?/ {}"#, tag(CLOSE))
    } else {
        format!(r#"start: {} /\n?/ call /\n?/ {}"#, tag(OPEN), tag(CLOSE))
    };
    let grammar = format!("{grammar}\n{call}\n");
    Ok(Some(grammar))
}

/// The names of the functions in validated tool specs.
pub fn tool_names(tools: &[Value]) -> Vec<&str> {
    tools
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect()
}

/// A fresh tool call id, `call_` and 24 hex digits (unique within the process).
pub fn new_call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Mix so that consecutive ids do not share a visible prefix.
    let mixed =
        (t as u64 ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    format!("call_{mixed:016x}{:08x}", n as u32)
}

/// Where the parser is in the answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace (or the start of a marker) seen yet.
    Start,
    /// Ordinary text, looking for an opening tag.
    Text,
    /// Inside a `<tool_call>` block, waiting for its end.
    InCall,
    /// The answer started like Llama 3's JSON form: held until the end.
    Json,
}

/// Splits a streamed answer into text and tool calls (see the module docs).
#[derive(Clone, Debug)]
pub struct ToolCallParser {
    state: State,
    /// Text not yet released.
    buf: String,
    /// Whitespace after a call, released only if more text follows.
    pending_ws: String,
    /// Whether a call was found (whitespace around calls is then dropped).
    saw_call: bool,
    /// Whether text was released since the last call.
    text_since_call: bool,
    /// Whether the current block was opened by the prompt (its tag is not in the answer).
    opened_by_prompt: bool,
}

impl Default for ToolCallParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ToolCallParser {
    /// A parser for an answer that starts afresh.
    pub fn new() -> Self {
        Self {
            state: State::Start,
            buf: String::new(),
            pending_ws: String::new(),
            saw_call: false,
            text_since_call: false,
            opened_by_prompt: false,
        }
    }

    /// A parser for an answer whose prompt already ended with `<tool_call>`: the answer
    /// starts inside a call block.
    pub fn inside_call() -> Self {
        Self {
            state: State::InCall,
            opened_by_prompt: true,
            ..Self::new()
        }
    }

    /// Takes the next piece of the answer and returns what can be released.
    pub fn feed(&mut self, text: &str) -> Vec<ToolOutput> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.advance(&mut out);
        out
    }

    /// Ends the answer and returns everything still held.
    pub fn finish(mut self) -> Vec<ToolOutput> {
        let mut out = Vec::new();
        let buf = std::mem::take(&mut self.buf);
        match self.state {
            State::Start => push_text(&mut out, buf),
            State::Text => self.emit_text(&mut out, &buf),
            State::InCall => match parse_block(&buf) {
                // The model ended (EOS or a stop) before the closing tag.
                Some(calls) => self.emit_calls(&mut out, calls),
                None => {
                    let raw = self.block_text(&buf, false);
                    self.emit_text(&mut out, &raw);
                }
            },
            State::Json => match parse_json_form(&buf) {
                Some(calls) => self.emit_calls(&mut out, calls),
                None => push_text(&mut out, buf),
            },
        }
        out
    }

    /// Releases what the buffer allows, changing state as markers appear.
    fn advance(&mut self, out: &mut Vec<ToolOutput>) {
        loop {
            match self.state {
                State::Start => {
                    let t = self.buf.trim_start();
                    if t.is_empty() {
                        return;
                    }
                    if t.starts_with(OPEN) {
                        self.buf = t.to_owned();
                        self.state = State::Text;
                    } else if t.starts_with('{') || t.starts_with(PYTHON_TAG) {
                        self.state = State::Json;
                        return;
                    } else if OPEN.starts_with(t) || PYTHON_TAG.starts_with(t) {
                        return;
                    } else {
                        self.state = State::Text;
                    }
                }
                State::Text => {
                    if let Some(at) = self.buf.find(OPEN) {
                        let before: String = self.buf[..at].to_owned();
                        self.emit_text(out, &before);
                        // Whitespace between calls is not text.
                        self.pending_ws.clear();
                        self.buf.drain(..at + OPEN.len());
                        self.state = State::InCall;
                        self.opened_by_prompt = false;
                    } else {
                        let keep = partial_suffix(&self.buf, OPEN);
                        let release = self.buf.len() - keep;
                        let text: String = self.buf.drain(..release).collect();
                        self.emit_text(out, &text);
                        return;
                    }
                }
                State::InCall => {
                    let Some(at) = self.buf.find(CLOSE) else {
                        return;
                    };
                    let inner: String = self.buf[..at].to_owned();
                    self.buf.drain(..at + CLOSE.len());
                    match parse_block(&inner) {
                        Some(calls) => self.emit_calls(out, calls),
                        None => {
                            let raw = self.block_text(&inner, true);
                            self.emit_text(out, &raw);
                        }
                    }
                    self.opened_by_prompt = false;
                    self.state = State::Text;
                }
                State::Json => return,
            }
        }
    }

    /// A block's text as the model wrote it (the opening tag only if the answer holds it).
    fn block_text(&self, inner: &str, closed: bool) -> String {
        let open = if self.opened_by_prompt { "" } else { OPEN };
        let close = if closed { CLOSE } else { "" };
        format!("{open}{inner}{close}")
    }

    fn emit_calls(&mut self, out: &mut Vec<ToolOutput>, calls: Vec<ParsedToolCall>) {
        self.saw_call = true;
        self.text_since_call = false;
        self.pending_ws.clear();
        out.extend(calls.into_iter().map(ToolOutput::Call));
    }

    /// Releases text; right after a call, leading whitespace is dropped.
    fn emit_text(&mut self, out: &mut Vec<ToolOutput>, text: &str) {
        if text.is_empty() {
            return;
        }
        if !self.saw_call || self.text_since_call {
            push_text(out, text.to_owned());
            return;
        }
        self.pending_ws.push_str(text);
        let rest = self.pending_ws.trim_start();
        if !rest.is_empty() {
            let rest = rest.to_owned();
            self.pending_ws.clear();
            self.text_since_call = true;
            push_text(out, rest);
        }
    }
}

fn push_text(out: &mut Vec<ToolOutput>, text: String) {
    if text.is_empty() {
        return;
    }
    if let Some(ToolOutput::Text(last)) = out.last_mut() {
        last.push_str(&text);
    } else {
        out.push(ToolOutput::Text(text));
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `marker`.
fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len().min(text.len() + 1))
        .rev()
        .find(|&n| text.is_char_boundary(text.len() - n) && text.ends_with(&marker[..n]))
        .unwrap_or(0)
}

/// The calls in one tagged block: JSON values (objects or lists of objects), one after the
/// other. `None` when anything in it is not a call.
fn parse_block(inner: &str) -> Option<Vec<ParsedToolCall>> {
    let mut calls = Vec::new();
    let mut n_values = 0;
    for value in serde_json::Deserializer::from_str(inner).into_iter::<Value>() {
        n_values += 1;
        match value.ok()? {
            Value::Array(items) => {
                for item in items {
                    calls.push(call_from_value(&item)?);
                }
            }
            v => calls.push(call_from_value(&v)?),
        }
    }
    (n_values > 0).then_some(calls)
}

/// The calls of Llama 3's JSON form: the answer, after `<|python_tag|>`, is one or more
/// call objects separated by `;` (or a list of them). `None` when it is anything else.
fn parse_json_form(answer: &str) -> Option<Vec<ParsedToolCall>> {
    let mut rest = answer.trim_start();
    rest = rest.strip_prefix(PYTHON_TAG).unwrap_or(rest);
    let mut calls = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if rest.is_empty() {
            break;
        }
        let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        let value = values.next()?.ok()?;
        let used = values.byte_offset();
        match value {
            Value::Array(items) => {
                for item in items {
                    calls.push(call_from_value(&item)?);
                }
            }
            v => calls.push(call_from_value(&v)?),
        }
        rest = &rest[used..];
    }
    (!calls.is_empty()).then_some(calls)
}

/// One call object: `{"name", "arguments" | "parameters"}`, optionally with `"type":
/// "function"`, or OpenAI's `{"type": "function", "function": {...}}`. Arguments given as
/// a string must hold a JSON object.
fn call_from_value(v: &Value) -> Option<ParsedToolCall> {
    let obj = v.as_object()?;
    match obj.get("type") {
        None => {}
        Some(Value::String(s)) if s == "function" => {}
        Some(_) => return None,
    }
    if let Some(inner @ Value::Object(_)) = obj.get("function") {
        return call_from_value(inner);
    }
    let name = obj.get("name")?.as_str()?.trim();
    if name.is_empty() {
        return None;
    }
    let arguments = match obj.get("arguments").or_else(|| obj.get("parameters")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s).ok()? {
            Value::Object(m) => m,
            _ => return None,
        },
        Some(_) => return None,
    };
    Some(ParsedToolCall {
        name: name.to_owned(),
        arguments,
    })
}

#[cfg(test)]
mod tests;

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
mod tests {
    use super::*;
    use hyperllama_core::constraint::{
        ConstraintCompiler, ConstraintSpec, Vocabulary, SPECIAL_TOKEN_MARKER,
    };
    use hyperllama_core::TokenId;
    use serde_json::json;

    /// The text (concatenated) and the calls of an answer fed in `pieces`.
    fn run(mut parser: ToolCallParser, pieces: &[&str]) -> (String, Vec<ParsedToolCall>) {
        let mut outs = Vec::new();
        for p in pieces {
            outs.extend(parser.feed(p));
        }
        outs.extend(parser.finish());
        let mut text = String::new();
        let mut calls = Vec::new();
        for o in outs {
            match o {
                ToolOutput::Text(t) => {
                    assert!(!t.is_empty(), "empty text released");
                    text.push_str(&t);
                }
                ToolOutput::Call(c) => calls.push(c),
            }
        }
        (text, calls)
    }

    /// Parses `answer` whole, then split at every byte position (and byte by byte), and
    /// checks that all agree; returns the whole-answer result.
    fn parse_all_ways(make: fn() -> ToolCallParser, answer: &str) -> (String, Vec<ParsedToolCall>) {
        let whole = run(make(), &[answer]);
        for at in 0..=answer.len() {
            if !answer.is_char_boundary(at) {
                continue;
            }
            let split = run(make(), &[&answer[..at], &answer[at..]]);
            assert_eq!(split, whole, "split at {at} of {answer:?}");
        }
        let chars: Vec<String> = answer.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(run(make(), &refs), whole, "char by char: {answer:?}");
        whole
    }

    fn call(name: &str, args: Value) -> ParsedToolCall {
        ParsedToolCall {
            name: name.into(),
            arguments: args.as_object().expect("object").clone(),
        }
    }

    #[test]
    fn a_tagged_call_is_parsed() {
        let (text, calls) = parse_all_ways(
            ToolCallParser::new,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        );
        assert_eq!(text, "");
        assert_eq!(calls, vec![call("get_weather", json!({"city": "Paris"}))]);
    }

    #[test]
    fn several_calls_with_text_before_and_after() {
        let answer = "Let me check.\n<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>\n\
                      <tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": [1, 2]}\"}</tool_call>\n\nDone ü.";
        let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
        assert_eq!(text, "Let me check.\nDone ü.");
        assert_eq!(
            calls,
            vec![call("a", json!({"x": 1})), call("b", json!({"y": [1, 2]}))]
        );
    }

    #[test]
    fn a_list_and_several_objects_in_one_block() {
        let (text, calls) = parse_all_ways(
            ToolCallParser::new,
            "  <tool_call>[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\"}]\n{\"name\": \"c\", \"parameters\": {\"k\": \"v\"}}</tool_call>  \n",
        );
        assert_eq!(text, "");
        assert_eq!(
            calls,
            vec![
                call("a", json!({})),
                call("b", json!({})),
                call("c", json!({"k": "v"}))
            ]
        );
    }

    #[test]
    fn malformed_blocks_are_text() {
        for answer in [
            "<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call> after",
            "x <tool_call>not json</tool_call>",
            "<tool_call>{\"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>",
            "<tool_call></tool_call>",
            "<tool_call>{\"name\": \"a\"",
            "<tool_ca",
            "text <tool_call",
        ] {
            let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
            assert_eq!(text, answer, "{answer:?}");
            assert!(calls.is_empty(), "{answer:?}");
        }
    }

    #[test]
    fn a_good_block_and_a_bad_one() {
        let answer = "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>oops</tool_call>";
        let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
        assert_eq!(text, "<tool_call>oops</tool_call>");
        assert_eq!(calls, vec![call("a", json!({}))]);
    }

    #[test]
    fn an_unclosed_block_at_the_end_is_a_call_if_its_json_is() {
        let (text, calls) = parse_all_ways(
            ToolCallParser::new,
            "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"q\": \"<x>\"}}\n",
        );
        assert_eq!(text, "");
        assert_eq!(calls, vec![call("a", json!({"q": "<x>"}))]);
    }

    #[test]
    fn a_prompt_that_opened_the_block() {
        let (text, calls) = parse_all_ways(
            ToolCallParser::inside_call,
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\nThis will return it.",
        );
        assert_eq!(text, "This will return it.");
        assert_eq!(calls, vec![call("get_weather", json!({"city": "Paris"}))]);
        let (text, calls) = parse_all_ways(ToolCallParser::inside_call, "Paris is nice.");
        assert_eq!(text, "Paris is nice.");
        assert!(calls.is_empty());
        let (text, _) = parse_all_ways(ToolCallParser::inside_call, "bad</tool_call> x");
        assert_eq!(text, "bad</tool_call> x");
    }

    #[test]
    fn llama3_json_forms() {
        for answer in [
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            " \n{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
        ] {
            let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
            assert_eq!(text, "", "{answer:?}");
            assert_eq!(
                calls,
                vec![call("get_weather", json!({"city": "Paris"}))],
                "{answer:?}"
            );
        }
        let (_, calls) = parse_all_ways(
            ToolCallParser::new,
            "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"n\": 2}}",
        );
        assert_eq!(
            calls,
            vec![call("a", json!({})), call("b", json!({"n": 2}))]
        );
    }

    #[test]
    fn json_that_is_not_a_call_is_text() {
        for answer in [
            "{\"answer\": 42}",
            "{\"name\": \"a\", \"parameters\": {}} and more",
            "{\"type\": \"object\", \"name\": \"a\"}",
            "{not json",
            "<|python_tag|>print(1)",
            "<|python",
            "   ",
            "",
        ] {
            let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
            assert_eq!(text, answer, "{answer:?}");
            assert!(calls.is_empty(), "{answer:?}");
        }
    }

    #[test]
    fn plain_text_passes_through_at_once() {
        let mut p = ToolCallParser::new();
        assert_eq!(p.feed("Hello"), vec![ToolOutput::Text("Hello".into())]);
        assert_eq!(
            p.feed(" world <tool"),
            vec![ToolOutput::Text(" world ".into())]
        );
        assert_eq!(p.feed("s>"), vec![ToolOutput::Text("<tools>".into())]);
        assert!(p.finish().is_empty());
    }

    #[test]
    fn tool_specs_are_checked() {
        let ok = json!([{"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object", "properties": {}}}}, {"function": {"name": "g"}}]);
        assert_eq!(validate_tools(&ok).expect("valid").len(), 2);
        assert_eq!(
            tool_names(&validate_tools(&ok).expect("valid")),
            vec!["f", "g"]
        );
        for (bad, says) in [
            (json!({"function": {"name": "f"}}), "must be a list"),
            (
                json!([{"type": "function", "function": {"description": "x"}}]),
                "name",
            ),
            (
                json!([{"type": "function", "function": {"name": ""}}]),
                "name",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
                "parameters",
            ),
            (
                json!([{"type": "function", "function": {"name": "f", "parameters": []}}]),
                "parameters",
            ),
            (json!([{"type": "code", "function": {"name": "f"}}]), "type"),
            (json!([{"type": "function"}]), "function"),
            (json!(["f"]), "object"),
        ] {
            let e = validate_tools(&bad).expect_err("invalid");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn input_tool_calls_in_both_shapes() {
        let calls = message_tool_calls(&[
            json!({"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}),
            json!({"id": "call_1", "type": "function", "function": {"name": "g", "arguments": "{\"b\": 2}"}}),
        ])
        .expect("valid");
        assert_eq!(calls[0].function.arguments, json!({"a": 1}));
        assert_eq!(calls[1].function.arguments, json!({"b": 2}));
        assert_eq!(calls[1].id.as_deref(), Some("call_1"));
        for bad in [
            json!({"function": {"name": "f", "arguments": "{oops"}}),
            json!({"function": {"arguments": {}}}),
            json!({"name": "f"}),
        ] {
            assert!(
                message_tool_calls(std::slice::from_ref(&bad)).is_err(),
                "{bad}"
            );
        }
    }

    /// A byte-level vocabulary; with `special`, `<tool_call>` and `</tool_call>` are also
    /// special (control) tokens, as in some Qwen conversions.
    fn vocabulary(special: bool) -> Vocabulary {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        let marked = |text: &str| {
            let mut t = vec![SPECIAL_TOKEN_MARKER];
            t.extend_from_slice(text.as_bytes());
            t
        };
        if special {
            tokens.push(marked(OPEN));
            tokens.push(marked(CLOSE));
        }
        tokens.push(marked("<|im_end|>"));
        let n = tokens.len() as TokenId;
        Vocabulary {
            tokens,
            eos: n - 1,
            eog: vec![n - 1],
        }
    }

    #[test]
    fn a_forced_call_accepts_special_call_tokens_where_the_vocabulary_has_them() {
        let tools = json!([{"function": {"name": "f", "parameters": {"type": "object",
            "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}]);
        let tools = validate_tools(&tools).expect("valid");
        let prompt = "Call tools in <tool_call></tool_call> tags.";
        let call = r#"{"name": "f", "arguments": {"x": 1}}"#;
        let bytes = |t: &str| t.bytes().map(TokenId::from).collect::<Vec<_>>();
        for special in [false, true] {
            let is_special = |t: &str| special && (t == OPEN || t == CLOSE);
            let grammar = forced_call_grammar(&tools, &ToolChoice::Required, prompt, &is_special)
                .expect("builds")
                .expect("forced");
            let compiler = ConstraintCompiler::new(&vocabulary(special)).expect("vocabulary");
            let spec = ConstraintSpec::Lark(grammar);
            // The tags as text always work.
            let mut c = compiler.compile(&spec).expect("compiles");
            let text = bytes(&format!("{OPEN}\n{call}\n{CLOSE}"));
            assert_eq!(c.valid_prefix(&text), text.len(), "special {special}");
            for t in text {
                c.commit(t).expect("accepted");
            }
            assert!(c.is_complete());
            if special {
                // And so do the special tokens.
                let mut c = compiler.compile(&spec).expect("compiles");
                let mut tokens = vec![256];
                tokens.extend(bytes(call));
                tokens.push(257);
                assert_eq!(c.valid_prefix(&tokens), tokens.len());
                for t in tokens {
                    c.commit(t).expect("accepted");
                }
                assert!(c.is_complete());
            }
        }
    }

    #[test]
    fn call_ids_differ() {
        let a = new_call_id();
        let b = new_call_id();
        assert!(a.starts_with("call_") && a.len() == 29, "{a}");
        assert_ne!(a, b);
    }
}

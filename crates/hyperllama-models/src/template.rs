//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! This module owns the Jinja side of prompt construction. A GGUF file carries the model's
//! Hugging Face chat template in `tokenizer.chat_template`; [`ChatTemplate`] compiles it once
//! with minijinja and renders it the way `transformers`' `apply_chat_template` does:
//!
//! - the template sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and
//!   `tools` (`none` when the request has no tools, as in transformers) and `documents`
//!   (always `none`), plus any extra variables the caller passes (e.g. `enable_thinking`);
//! - the environment is configured like transformers' (`trim_blocks`, `lstrip_blocks`, no
//!   trailing newline, no autoescaping, lenient undefined values, `{% break %}` and
//!   `{% continue %}`), and provides `raise_exception`, `strftime_now`, transformers' own
//!   `tojson` filter (see the `python` submodule) and Python's string and dict methods
//!   (`.strip()`, `.startswith()`, `.split()`, `.items()`, `.get()`, ...);
//! - values print as Python's `str()` prints them (`True`, `None`, `['a', 1]`, `1e+20`),
//!   not in minijinja's own style (`true`, `none`, `["a", 1]`), through `{{ ... }}`, `~`,
//!   `join` and the `string` filter;
//! - the `{% generation %}` block tag that transformers adds (it only marks assistant text
//!   for training masks) is accepted and renders its body unchanged.
//!
//! For models whose GGUF has no template, [`builtin_for_architecture`] supplies the official
//! template of the architectures we know (the Gemma family), and [`CHATML`] is a generic
//! fallback callers may choose. [`detect_capabilities`] guesses from a template's source
//! whether the model was trained for tool calls and for thinking.
//!
//! # Invariants
//!
//! - Compiling and rendering never panic, whatever the input (messages, tools and extra
//!   variables are plain JSON) and whatever the template source, with one exception that
//!   minijinja owns: a template that stores a namespace inside itself
//!   (`{% set ns.me = ns %}`) and then passes it to one of minijinja's own filters that
//!   print or compare values (`lower`, `pprint`, `sort`, ...) recurses without bound and
//!   overflows the stack. Our own printing (`{{ ... }}`, `string`, `tojson`) detects such
//!   cycles and fails with an error. No real chat template does this.
//! - A template that fails to compile yields [`TemplateError::Compile`], one that fails to
//!   render yields [`TemplateError::Render`]; both carry minijinja's message, which names
//!   the template line (and `raise_exception`'s message verbatim).
//! - Rendering always terminates: every render has [`FUEL_LIMIT`] units of minijinja fuel
//!   (about one per executed instruction), minijinja's recursion limit applies, `range()`
//!   refuses more than 100 000 items, and the rendered text is capped at
//!   [`MAX_OUTPUT_BYTES`]. Memory used by intermediate values is bounded only by minijinja's
//!   own limits (a single string repetition is capped at 100 MB); templates come from model
//!   files the user chose, not from remote requests.
//! - A compiled [`ChatTemplate`] is immutable; rendering it from several threads is safe.

mod python;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Deserializer, Serialize};

/// The fuel each render gets; a render that uses it up fails with a [`TemplateError::Render`].
///
/// Real templates use on the order of a hundred units per message (Qwen3's about 110), so
/// this allows conversations of over a hundred thousand messages, while a runaway loop
/// stops after about half a second.
pub const FUEL_LIMIT: u64 = 20_000_000;

/// The largest prompt a render may produce, in bytes; a render writing more fails.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// The name the compiled template has inside its environment; errors cite it with the line.
const TEMPLATE_NAME: &str = "chat_template";

/// A generic ChatML template, for callers that need a template and have none.
///
/// ChatML (`<|im_start|>{role}\n{content}<|im_end|>\n`, generation prompt
/// `<|im_start|>assistant\n`) is the format of Qwen, SmolLM and many fine-tunes.
/// [`builtin_for_architecture`] never returns it: it is only right for models trained on
/// it, so using it for an unknown model is the caller's explicit choice.
pub const CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Google's official Gemma 3 chat template (also right for Gemma, Gemma 2 and Gemma 3n text).
///
/// The system message, if any, is prepended to the first user turn followed by a blank line;
/// the assistant role is called `model`; turns must alternate user/model, as upstream.
const GEMMA: &str = r#"{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"#;

/// The built-in template for a GGUF `general.architecture`, for files without a template.
///
/// Returns Gemma's official template for `gemma`, `gemma2`, `gemma3` and `gemma3n`, and
/// `None` for every other architecture: guessing a format the model was not trained on
/// gives worse output than an honest error. Callers that want a last resort anyway can use
/// [`CHATML`].
pub fn builtin_for_architecture(arch: &str) -> Option<&'static str> {
    match arch {
        "gemma" | "gemma2" | "gemma3" | "gemma3n" => Some(GEMMA),
        _ => None,
    }
}

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// The template source is not valid Jinja (minijinja's message, with the line).
    #[error("chat template does not compile: {0}")]
    Compile(String),
    /// Rendering failed: `raise_exception`, a type error, fuel or output limits, bad input.
    #[error("chat template failed to render: {0}")]
    Render(String),
}

/// The special tokens a template may print, as transformers passes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialTokens {
    /// The beginning-of-sequence token's text, passed as `bos_token` (e.g. `<bos>`).
    pub bos_token: String,
    /// The end-of-sequence token's text, passed as `eos_token` (e.g. `<eos>`).
    pub eos_token: String,
}

/// One message of a conversation, shaped like the dicts transformers hands to templates.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool` (templates may know others, e.g. `ipython`).
    pub role: String,
    /// The message text; a JSON `null` or a missing field reads as empty.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// The tool calls an assistant message makes; absent from the template when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For a `tool` message, the id of the call it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For a `tool` message, the name of the tool that produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An assistant message's reasoning, apart from its content. Templates see it both as
    /// `reasoning_content` (Qwen3, DeepSeek) and as `thinking` (gpt-oss, Ollama's name).
    #[serde(default, alias = "thinking", skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl ChatMessage {
    /// A plain message with a role and text and nothing else.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// Deserializes a string that may be `null`, reading `null` as the empty string.
fn null_as_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d).map(Option::unwrap_or_default)
}

/// One tool call, as templates read it: `{"type": "function", "function": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolCall {
    /// The call's kind; always `function` today.
    #[serde(rename = "type", default = "function_kind")]
    pub kind: String,
    /// The id the model or client gave the call, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The function called and its arguments.
    pub function: ToolCallFunction,
}

/// The default `type` of a tool call.
fn function_kind() -> String {
    "function".to_owned()
}

impl ToolCall {
    /// A function call with the given name and arguments (normally a JSON object).
    pub fn function(name: impl Into<String>, arguments: serde_json::Value) -> Self {
        Self {
            kind: function_kind(),
            id: None,
            function: ToolCallFunction {
                name: name.into(),
                arguments,
            },
        }
    }
}

/// The function part of a [`ToolCall`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolCallFunction {
    /// The function's name.
    pub name: String,
    /// The arguments: a JSON object, which templates print with `tojson`.
    #[serde(default)]
    pub arguments: serde_json::Value,
}

/// What one render needs besides the template.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderRequest<'a> {
    /// The conversation, oldest message first.
    pub messages: &'a [ChatMessage],
    /// A JSON array of tool specs, passed as `tools`; without it `tools` is `none`.
    pub tools: Option<&'a serde_json::Value>,
    /// Whether to end the prompt with the opening of an assistant turn.
    pub add_generation_prompt: bool,
    /// A JSON object of extra variables (e.g. `{"enable_thinking": false}`). They cannot
    /// replace `messages`, `tools` or `add_generation_prompt`, but can replace the tokens
    /// and `documents`.
    pub extra: Option<&'a serde_json::Value>,
}

/// What a template's source suggests the model was trained to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TemplateCapabilities {
    /// The template renders tool specs or tool calls.
    pub tools: bool,
    /// The template knows about reasoning (`<think>`, `enable_thinking`, ...).
    pub thinking: bool,
}

/// Guesses a template's capabilities from its source text.
///
/// `tools` is set when the source uses `tools` or `tool_calls` as a whole word; `thinking`
/// when it mentions `<think>`, `enable_thinking`, `reasoning_content` or a message's
/// `thinking` field. This is a heuristic: it reads text, it does not run the template.
pub fn detect_capabilities(source: &str) -> TemplateCapabilities {
    let thinking = ["<think>", "enable_thinking", "reasoning_content"]
        .iter()
        .any(|needle| source.contains(needle))
        || [".thinking", "['thinking']", "[\"thinking\"]"]
            .iter()
            .any(|needle| source.contains(needle));
    TemplateCapabilities {
        tools: contains_word(source, "tools") || contains_word(source, "tool_calls"),
        thinking,
    }
}

/// Whether `word` occurs in `haystack` not as part of a longer identifier.
fn contains_word(haystack: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    haystack.match_indices(word).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

/// A chat template compiled once, ready to render any number of conversations.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    /// The environment holding the compiled template under [`TEMPLATE_NAME`].
    env: Environment<'static>,
    /// The special tokens passed to every render.
    special: SpecialTokens,
    /// What the source suggests the model can do.
    capabilities: TemplateCapabilities,
}

impl ChatTemplate {
    /// Compiles `source` in a transformers-compatible environment.
    pub fn new(source: &str, special: SpecialTokens) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_fuel(Some(FUEL_LIMIT));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", python::tojson_filter);
        env.add_filter("string", python::string_filter);
        env.set_formatter(|out, _state, value| {
            let written = match value.as_str() {
                Some(s) => out.write_str(s),
                None => {
                    let mut text = String::new();
                    python::write_str_value(&mut text, value)?;
                    out.write_str(&text)
                }
            };
            written.map_err(|_| Error::from(ErrorKind::WriteFailure))
        });
        env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(source))
            .map_err(|e| TemplateError::Compile(describe(&e)))?;
        Ok(Self {
            env,
            special,
            capabilities: detect_capabilities(source),
        })
    }

    /// The capabilities [`detect_capabilities`] found in this template's source.
    pub fn capabilities(&self) -> TemplateCapabilities {
        self.capabilities
    }

    /// The special tokens this template renders with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Renders a conversation into prompt text.
    pub fn render(&self, req: &RenderRequest<'_>) -> Result<String, TemplateError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert(
            "bos_token".into(),
            Value::from(self.special.bos_token.as_str()),
        );
        ctx.insert(
            "eos_token".into(),
            Value::from(self.special.eos_token.as_str()),
        );
        // Transformers always passes `documents` (for retrieval templates); we have none.
        ctx.insert("documents".into(), Value::from(()));
        if let Some(extra) = req.extra {
            let Some(map) = extra.as_object() else {
                return Err(TemplateError::Render(
                    "extra template variables must be a JSON object".to_owned(),
                ));
            };
            for (key, value) in map {
                ctx.insert(key.clone(), Value::from_serialize(value));
            }
        }
        let messages: Vec<MessageView<'_>> = req.messages.iter().map(MessageView::new).collect();
        ctx.insert("messages".into(), Value::from_serialize(&messages));
        ctx.insert(
            "tools".into(),
            req.tools.map_or(Value::from(()), Value::from_serialize),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(req.add_generation_prompt),
        );

        let render_err = |e: Error| TemplateError::Render(describe(&e));
        let template = self.env.get_template(TEMPLATE_NAME).map_err(render_err)?;
        let mut out = CappedWriter::default();
        template
            .render_captured_to(ctx, &mut out)
            .map_err(render_err)?;
        String::from_utf8(out.buf)
            .map_err(|_| TemplateError::Render("rendered text is not valid UTF-8".to_owned()))
    }
}

/// How a message is presented to templates: its fields, plus its reasoning under both names.
#[derive(Serialize)]
struct MessageView<'a> {
    /// The message's role.
    role: &'a str,
    /// The message's text.
    content: &'a str,
    /// The tool calls, omitted when there are none so that `'tool_calls' in message` works.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    tool_calls: &'a [ToolCall],
    /// The id of the call a tool message answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
    /// The tool's name, for tool messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// The reasoning, under the name Qwen and DeepSeek templates use.
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    /// The reasoning again, under the name gpt-oss templates and Ollama use.
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a str>,
}

impl<'a> MessageView<'a> {
    /// The view of one message.
    fn new(m: &'a ChatMessage) -> Self {
        Self {
            role: &m.role,
            content: &m.content,
            tool_calls: &m.tool_calls,
            tool_call_id: m.tool_call_id.as_deref(),
            name: m.name.as_deref(),
            reasoning_content: m.reasoning_content.as_deref(),
            thinking: m.reasoning_content.as_deref(),
        }
    }
}

/// An output buffer that refuses to grow past [`MAX_OUTPUT_BYTES`].
#[derive(Default)]
struct CappedWriter {
    /// What has been rendered so far.
    buf: Vec<u8>,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > MAX_OUTPUT_BYTES {
            return Err(io::Error::other(format!(
                "rendered prompt exceeds {MAX_OUTPUT_BYTES} bytes"
            )));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One line describing a minijinja error: its message, template line and any causes.
fn describe(err: &Error) -> String {
    let mut msg = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let _ = write!(msg, ": {cause}");
        source = cause.source();
    }
    msg
}

/// `raise_exception(message)`: fails the render with the template's own message.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the local time formatted with a C `strftime` format string.
fn strftime_now(format: &str) -> Result<String, Error> {
    let mut out = String::new();
    // Writing a `DelayedFormat` reports an invalid format as an error instead of panicking,
    // which `to_string()` would do.
    write!(out, "{}", chrono::Local::now().format(format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format string {format:?}"),
        )
    })?;
    Ok(out)
}

/// Rewrites transformers' `{% generation %}`/`{% endgeneration %}` tags, which minijinja
/// does not know, into an always-true `if` block, keeping their whitespace-control marks.
fn rewrite_generation_tags(source: &str) -> String {
    if !source.contains("generation") {
        return source.to_owned();
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start..start + len + 2];
        let inner = &tag[2..tag.len() - 2];
        let open = inner.strip_prefix(['-', '+']).map_or("", |_| &inner[..1]);
        let close = inner
            .strip_suffix(['-', '+'])
            .map_or("", |_| &inner[inner.len() - 1..]);
        let replacement = match inner.trim_matches(['-', '+']).trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        out.push_str(&rest[..start]);
        match replacement {
            Some(body) => {
                let _ = write!(out, "{{%{open} {body} {close}%}}");
            }
            None => out.push_str(tag),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks() {
        assert_eq!(
            rewrite_generation_tags(
                "a{% generation %}b{%- endgeneration -%}c{% if x %}{% endif %}"
            ),
            "a{% if true %}b{%- endif -%}c{% if x %}{% endif %}"
        );
        assert_eq!(rewrite_generation_tags("{% generation"), "{% generation");
    }

    #[test]
    fn words_are_matched_whole() {
        assert!(contains_word("{% if tools %}", "tools"));
        assert!(!contains_word("tools_in_user_message", "tools"));
        assert!(!contains_word("mytools", "tools"));
        assert!(contains_word("tools", "tools"));
    }
}

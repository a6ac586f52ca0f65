//! Tests of chat template rendering against golden prompts.
//!
//! The golden strings were produced by rendering the same templates and messages with
//! Python's Jinja2 configured exactly as transformers' `apply_chat_template` configures it.

mod errors;
mod golden;

pub(crate) use std::time::{Duration, Instant};

pub(crate) use hyperllama_models::template::{
    builtin_for_architecture, detect_capabilities, ChatMessage, ChatTemplate, RenderRequest,
    SpecialTokens, TemplateCapabilities, TemplateError, ToolCall, CHATML,
};
pub(crate) use serde_json::{json, Value};

pub(crate) const SMOLLM2: &str = include_str!("../fixtures/templates/smollm2.jinja");
pub(crate) const QWEN25: &str = include_str!("../fixtures/templates/qwen2.5.jinja");
pub(crate) const QWEN3: &str = include_str!("../fixtures/templates/qwen3.jinja");
pub(crate) const LLAMA32: &str = include_str!("../fixtures/templates/llama3.2.jinja");

pub(crate) fn tokens(bos: &str, eos: &str) -> SpecialTokens {
    SpecialTokens {
        bos_token: bos.to_owned(),
        eos_token: eos.to_owned(),
    }
}

pub(crate) fn compile(source: &str, bos: &str) -> ChatTemplate {
    match ChatTemplate::new(source, tokens(bos, "")) {
        Ok(t) => t,
        Err(e) => panic!("template should compile: {e}"),
    }
}

pub(crate) fn render(template: &ChatTemplate, req: &RenderRequest<'_>) -> String {
    match template.render(req) {
        Ok(text) => text,
        Err(e) => panic!("template should render: {e}"),
    }
}

pub(crate) fn render_err(template: &ChatTemplate, req: &RenderRequest<'_>) -> TemplateError {
    match template.render(req) {
        Ok(text) => panic!("render should fail, got {text:?}"),
        Err(e) => e,
    }
}

pub(crate) fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect()
}

pub(crate) fn prompt(messages: &[ChatMessage]) -> RenderRequest<'_> {
    RenderRequest {
        messages,
        add_generation_prompt: true,
        ..RenderRequest::default()
    }
}

pub(crate) fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "The city name, e.g. Zürich"}
                },
                "required": ["city"]
            }
        }
    }])
}

/// A question, a tool call, its result, the answer and a follow-up question.
pub(crate) fn tool_history() -> Vec<ChatMessage> {
    let mut call = ChatMessage::new("assistant", "");
    call.tool_calls = vec![ToolCall::function("get_weather", json!({"city": "Paris"}))];
    let mut result = ChatMessage::new("tool", r#"{"temperature": 18.5, "unit": "celsius"}"#);
    result.tool_call_id = Some("call_1".to_owned());
    result.name = Some("get_weather".to_owned());
    vec![
        ChatMessage::new("user", "What's the weather in Paris?"),
        call,
        result,
        ChatMessage::new("assistant", "It is 18.5 °C in Paris."),
        ChatMessage::new("user", "And in Rome?"),
    ]
}

//! Turning a conversation into prompt tokens with the model's own chat template.
//!
//! The template is the GGUF's `tokenizer.chat_template`; a model without one gets the
//! built-in template for its architecture (Gemma's for `gemma*`), else ChatML. A caller may
//! give its own Jinja template instead ([`ChatFormatter::with_template`]).
//!
//! # Invariants
//! - The prompt starts with at most one BOS token: when the rendered text already begins
//!   with the BOS text, tokenization does not add another.

use hyperllama_core::TokenId;
use hyperllama_models::template::{
    builtin_for_architecture, ChatMessage, ChatTemplate, RenderRequest, SpecialTokens,
    TemplateCapabilities, CHATML,
};

use crate::llama::Model;
use crate::Error;

/// Where a model's template came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateSource {
    /// The GGUF's `tokenizer.chat_template`.
    Gguf,
    /// HyperLlama's built-in template for the model's architecture.
    Builtin,
    /// The generic ChatML fallback.
    ChatMl,
    /// A template given by the caller (a model's Jinja `TEMPLATE` layer).
    Custom,
}

/// A model's chat template, compiled once.
#[derive(Debug)]
pub struct ChatFormatter {
    template: ChatTemplate,
    source: TemplateSource,
    bos_text: String,
}

impl ChatFormatter {
    /// Compiles the template `model` should use.
    pub fn for_model(model: &Model) -> Result<Self, Error> {
        let info = model.info();
        let (text, source) = match info.chat_template.as_deref() {
            Some(t) if !t.trim().is_empty() => (t, TemplateSource::Gguf),
            _ => match builtin_for_architecture(&info.architecture) {
                Some(t) => (t, TemplateSource::Builtin),
                None => (CHATML, TemplateSource::ChatMl),
            },
        };
        Self::compile(model, text, source)
    }

    /// Compiles `source`, a Jinja chat template given by the caller (a model's `TEMPLATE`
    /// layer), with `model`'s special tokens.
    pub fn with_template(model: &Model, source: &str) -> Result<Self, Error> {
        Self::compile(model, source, TemplateSource::Custom)
    }

    fn compile(model: &Model, text: &str, source: TemplateSource) -> Result<Self, Error> {
        let info = model.info();
        let special = SpecialTokens {
            bos_token: info.bos_text.clone(),
            eos_token: info.eos_text.clone(),
        };
        let template = ChatTemplate::new(text, special)
            .map_err(|e| Error::InvalidRequest(format!("the model's {e}")))?;
        Ok(Self {
            template,
            source,
            bos_text: info.bos_text.clone(),
        })
    }

    /// Where the template came from.
    pub fn source(&self) -> TemplateSource {
        self.source
    }

    /// What the template's source suggests the model can do (tools, thinking).
    pub fn capabilities(&self) -> TemplateCapabilities {
        self.template.capabilities()
    }

    /// Renders the conversation, ending with the opening of the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<String, Error> {
        self.render_with(messages, tools, None)
    }

    /// Renders like [`ChatFormatter::render`], with extra template variables (a JSON
    /// object, e.g. `{"enable_thinking": false}`).
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        extra: Option<&serde_json::Value>,
    ) -> Result<String, Error> {
        self.template
            .render(&RenderRequest {
                messages,
                tools,
                add_generation_prompt: true,
                extra,
            })
            .map_err(|e| Error::InvalidRequest(e.to_string()))
    }

    /// Tokenizes text this formatter rendered (adding BOS unless the text starts with it).
    pub fn tokenize_rendered(&self, model: &Model, text: &str) -> Vec<TokenId> {
        let has_bos = !self.bos_text.is_empty() && text.starts_with(&self.bos_text);
        model.tokenize(text, !has_bos, true)
    }

    /// Renders and tokenizes the conversation.
    pub fn tokenize(
        &self,
        model: &Model,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
    ) -> Result<Vec<TokenId>, Error> {
        let text = self.render(messages, tools)?;
        Ok(self.tokenize_rendered(model, &text))
    }
}

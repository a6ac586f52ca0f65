//! `hyperllama run NAME` through a running server: `/api/chat` (or `/api/generate` with
//! `--raw`), streamed, so that the model the server already holds answers, batched with the
//! server's other users, instead of a second copy loaded in this process.
//!
//! # Invariants
//! - The server applies the model's SYSTEM, MESSAGEs and parameters, exactly as for any
//!   client; this side sends only what the flags set.
//! - The history sent is the session's own (user and assistant turns), so the server's prefix
//!   cache reuses the previous turns' KV.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use hyperllama_engine::{Completion, FinishReason};
use hyperllama_models::template::ChatMessage;
use serde_json::{json, Map, Value};

use crate::client::Client;
use crate::run::{print_stats, Answer, RunArgs};

/// A chat with a model held by a running server.
pub(crate) struct RemoteSession {
    client: Client,
    model: String,
    system: Option<String>,
    raw: bool,
    options: Map<String, Value>,
    verbose: bool,
}

impl RemoteSession {
    /// A session for `args.model` on the server behind `client`.
    pub(crate) fn new(client: Client, args: &RunArgs) -> anyhow::Result<Self> {
        let mut options = Map::new();
        let mut set = |key: &str, value: Option<Value>| {
            if let Some(v) = value {
                options.insert(key.to_owned(), v);
            }
        };
        set("temperature", args.temperature.map(|v| json!(v)));
        set("seed", args.seed.map(|v| json!(v)));
        set("num_predict", args.num_predict.map(|v| json!(v)));
        set("num_ctx", args.num_ctx.map(|v| json!(v)));
        set("top_k", args.top_k.map(|v| json!(v)));
        set("top_p", args.top_p.map(|v| json!(v)));
        set("repeat_penalty", args.repeat_penalty.map(|v| json!(v)));
        if !args.stop.is_empty() {
            set("stop", Some(json!(args.stop)));
        }
        let session = Self {
            client,
            model: args.model.clone(),
            system: args.system.clone(),
            raw: args.raw,
            options,
            verbose: args.verbose,
        };
        // Load the model now (an empty request), so that a wrong name fails before a chat opens.
        session.client.send(
            reqwest::Method::POST,
            "/api/generate",
            &json!({ "model": session.model, "stream": false }),
        )?;
        Ok(session)
    }

    fn body(&self, history: &[ChatMessage], prompt: &str) -> (&'static str, Value) {
        if self.raw {
            let body = json!({
                "model": self.model, "prompt": prompt, "raw": true, "stream": true,
                "options": self.options,
            });
            return ("/api/generate", body);
        }
        let mut messages = Vec::with_capacity(history.len() + 2);
        if let Some(system) = &self.system {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.extend(
            history
                .iter()
                .map(|m| json!({ "role": m.role, "content": m.content })),
        );
        messages.push(json!({ "role": "user", "content": prompt }));
        let body = json!({
            "model": self.model, "messages": messages, "stream": true, "options": self.options,
        });
        ("/api/chat", body)
    }
}

impl Answer for RemoteSession {
    fn initial_history(&self) -> Vec<ChatMessage> {
        Vec::new()
    }

    fn answer(&self, history: &mut Vec<ChatMessage>, prompt: &str) -> anyhow::Result<()> {
        let (path, body) = self.body(history, prompt);
        let mut stdout = std::io::stdout().lock();
        let mut answer = String::new();
        let mut last: Option<Value> = None;
        self.client.stream(path, &body, |chunk| {
            let text = chunk
                .pointer("/message/content")
                .or_else(|| chunk.get("response"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !text.is_empty() {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
                answer.push_str(text);
            }
            if chunk.get("done").and_then(Value::as_bool) == Some(true) {
                last = Some(chunk);
            }
            Ok(())
        })?;
        writeln!(stdout)?;
        let done = last.context("the server's answer ended without its final chunk")?;
        history.push(ChatMessage::new("user", prompt));
        history.push(ChatMessage::new("assistant", answer));
        if self.verbose {
            let (completion, load) = stats(&done);
            // Ollama's final chunk does not say how much of the prompt came from the cache.
            print_stats(&completion, load, false);
        }
        Ok(())
    }
}

/// The final chunk's statistics (nanoseconds) as the engine's [`Completion`] and the load time.
fn stats(done: &Value) -> (Completion, Duration) {
    let ns = |key: &str| Duration::from_nanos(done.get(key).and_then(Value::as_u64).unwrap_or(0));
    let count = |key: &str| {
        done.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
    };
    let load = ns("load_duration");
    let completion = Completion {
        reason: match done.get("done_reason").and_then(Value::as_str) {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        },
        n_prompt: count("prompt_eval_count"),
        n_cached: 0,
        prompt_eval_duration: ns("prompt_eval_duration"),
        n_eval: count("eval_count"),
        eval_duration: ns("eval_duration"),
        total_duration: ns("total_duration").saturating_sub(load),
        n_drafted: count("draft_n"),
        n_accepted: count("draft_n_accepted"),
    };
    (completion, load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_chunk_statistics_are_read_in_nanoseconds() {
        let (c, load) = stats(&json!({
            "done": true, "done_reason": "length", "total_duration": 3_000_000_000u64,
            "load_duration": 1_000_000_000u64, "prompt_eval_count": 12,
            "prompt_eval_duration": 500_000_000u64, "eval_count": 7, "eval_duration": 1_000_000_000u64,
        }));
        assert_eq!(load, Duration::from_secs(1));
        assert_eq!(c.total_duration, Duration::from_secs(2));
        assert_eq!((c.n_prompt, c.n_eval), (12, 7));
        assert_eq!(c.reason, FinishReason::Length);
        assert_eq!(c.prompt_eval_duration, Duration::from_millis(500));
    }
}

//! Writing OpenAI responses from native generations: one object, or an SSE stream of chunks
//! ending in `data: [DONE]`; `n` choices interleaved as their events come; ids, timestamps,
//! finish reasons, tool calls, logprobs and usage in OpenAI's shapes. Part of
//! [`super`]'s handlers; see its invariants.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use hyperllama_engine::{FinishReason, TokenLogprob};
use serde_json::{json, Value};

use super::super::sse;
use super::openai_tool_call;
use crate::error::ApiError;
use crate::native::{self, Done, Generation, NativeEvent, NativeRequest};
use crate::structured;
use crate::AppState;

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
pub(super) enum Kind {
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
pub(super) struct WriteOptions {
    pub(super) kind: Kind,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    /// Whether the request asked for log-probabilities.
    pub(super) logprobs: bool,
}

/// Starts `n` generations of `req` (choice `i` with seed `seed + i`, so that sampled choices
/// differ; the engine batches them and they share the prompt's KV) and writes them.
pub(super) async fn respond(
    state: &AppState,
    req: NativeRequest,
    n: usize,
    opts: WriteOptions,
) -> Response {
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
                super::super::touch(state, &generation.name);
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
pub(super) async fn write(generations: Vec<Generation>, opts: WriteOptions) -> Response {
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

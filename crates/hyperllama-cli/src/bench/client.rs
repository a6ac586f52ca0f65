//! One streamed chat request against an OpenAI- or Ollama-compatible server, timed chunk by
//! chunk.
//!
//! `--api openai` posts to `{url}/v1/chat/completions` (SSE, `stream_options.include_usage`),
//! `--api ollama` to `{url}/api/chat` (NDJSON). Both ask for greedy sampling, the run's seed,
//! `max_tokens`/`num_predict` and `ignore_eos`, so every answer has the asked length on servers
//! that honour `ignore_eos` (ours, llama-server, vLLM; Ollama ignores it).
//!
//! # Invariants
//! - A request never fails the benchmark: every problem (HTTP status, connection, timeout, an
//!   error in the stream) becomes a [`Failure`] with a short `kind` that workloads count.
//! - Only chunks with non-empty text are timed: role-only, usage and final chunks are not
//!   tokens.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::stats::Chunk;

/// Which API the target speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// OpenAI's `/v1/chat/completions`.
    Openai,
    /// Ollama's `/api/chat`.
    Ollama,
}

impl Api {
    /// The name used on the command line and in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Openai => "openai",
            Api::Ollama => "ollama",
        }
    }
}

/// One chat message.
#[derive(Clone, Debug)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

impl Message {
    /// A message with `role` and `content`.
    pub fn new(role: &'static str, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// A finished request.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Time to the first chunk with text, ms.
    pub ttft_ms: Option<f64>,
    /// The chunks with text.
    pub chunks: Vec<Chunk>,
    /// Output tokens: the server's count when it gave one, else the chunk count.
    pub output_tokens: u64,
    /// Prompt tokens, as the server counted them.
    pub prompt_tokens: Option<u64>,
    /// The answer's text.
    pub text: String,
}

/// A failed request.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What kind of failure, for counting: `HTTP 503`, `connect`, `timeout`, `stream`, `body`.
    pub kind: String,
    /// The whole message.
    pub detail: String,
}

/// Where a streaming request records the arrival of each chunk with text, as it happens (the
/// long-prompt workload reads these while the requests still run).
pub type Progress = Arc<Mutex<Vec<Instant>>>;

/// The server under test.
#[derive(Clone, Debug)]
pub struct Target {
    client: reqwest::Client,
    /// The base URL, without a trailing slash.
    pub url: String,
    /// The API.
    pub api: Api,
    /// The model name.
    pub model: String,
    /// The seed sent with every request.
    pub seed: u64,
}

impl Target {
    /// A target; `timeout` bounds each whole request, connecting bounds itself at 5 s.
    pub fn new(
        url: &str,
        api: Api,
        model: &str,
        seed: u64,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .timeout(timeout)
            .build()?;
        Ok(Target {
            client,
            url: url.trim_end_matches('/').to_owned(),
            api,
            model: model.to_owned(),
            seed,
        })
    }

    fn endpoint(&self) -> String {
        match self.api {
            Api::Openai => format!("{}/v1/chat/completions", self.url),
            Api::Ollama => format!("{}/api/chat", self.url),
        }
    }

    /// The request body. The seed is sent as a non-negative JSON integer below 2^63 (servers
    /// read it as a signed 64-bit number).
    fn body(&self, messages: &[Message], max_tokens: u32) -> Value {
        let seed = self.seed & (i64::MAX as u64);
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect();
        match self.api {
            Api::Openai => json!({
                "model": self.model,
                "messages": messages,
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": max_tokens,
                "temperature": 0,
                "seed": seed,
                "ignore_eos": true,
            }),
            Api::Ollama => json!({
                "model": self.model,
                "messages": messages,
                "stream": true,
                "options": {
                    "num_predict": max_tokens,
                    "temperature": 0,
                    "seed": seed,
                    "ignore_eos": true,
                },
            }),
        }
    }

    /// Sends one chat request and reads its stream to the end; `progress`, when given, gets
    /// the arrival time of each chunk with text.
    pub async fn chat(
        &self,
        messages: &[Message],
        max_tokens: u32,
        progress: Option<&Progress>,
    ) -> Result<Outcome, Failure> {
        let start = Instant::now();
        let resp = self
            .client
            .post(self.endpoint())
            .json(&self.body(messages, max_tokens))
            .send()
            .await
            .map_err(|e| self.transport_failure(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            return Err(Failure {
                kind: format!("HTTP {}", status.as_u16()),
                detail: format!("HTTP {status}: {}", error_text(&text)),
            });
        }
        let mut out = Outcome {
            ttft_ms: None,
            chunks: Vec::new(),
            output_tokens: 0,
            prompt_tokens: None,
            text: String::new(),
        };
        let mut completion_tokens = None;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        let mut finished = false;
        while !finished {
            let line = match buf.iter().position(|&b| b == b'\n') {
                Some(pos) => buf.drain(..=pos).collect::<Vec<u8>>(),
                None => match stream.next().await {
                    Some(Ok(bytes)) => {
                        buf.extend_from_slice(&bytes);
                        continue;
                    }
                    Some(Err(e)) => return Err(self.transport_failure(&e)),
                    None => {
                        finished = true;
                        std::mem::take(&mut buf)
                    }
                },
            };
            let now = Instant::now();
            let line = String::from_utf8_lossy(&line);
            let Some(event) = parse_line(self.api, line.trim()) else {
                continue;
            };
            if let Some(msg) = event.error {
                return Err(Failure {
                    kind: "stream".to_owned(),
                    detail: format!("error in the stream: {msg}"),
                });
            }
            if let Some(text) = event.content.filter(|t| !t.is_empty()) {
                let at_ms = ms(now - start);
                out.ttft_ms.get_or_insert(at_ms);
                out.chunks.push(Chunk {
                    at_ms,
                    n_tokens: None,
                });
                out.text.push_str(&text);
                if let Some(p) = progress {
                    if let Ok(mut v) = p.lock() {
                        v.push(now);
                    }
                }
            }
            if event.prompt_tokens.is_some() {
                out.prompt_tokens = event.prompt_tokens;
            }
            if event.completion_tokens.is_some() {
                completion_tokens = event.completion_tokens;
            }
            finished |= event.done;
        }
        out.output_tokens = completion_tokens.unwrap_or(out.chunks.len() as u64);
        Ok(out)
    }

    fn transport_failure(&self, e: &reqwest::Error) -> Failure {
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else if e.is_body() || e.is_decode() {
            "body"
        } else {
            "request"
        };
        let mut detail = format!("cannot reach {}", self.url);
        let mut source: Option<&dyn std::error::Error> = Some(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Failure {
            kind: kind.to_owned(),
            detail,
        }
    }
}

impl Target {
    /// KV cells in use, summed over models, from the server's Prometheus `/metrics`
    /// (`hyperllama_kv_cells_used`); `None` when the server has no such metric.
    pub async fn kv_cells_used(&self) -> Option<f64> {
        metric_sum(&self.metrics().await?, "hyperllama_kv_cells_used")
    }

    /// Draft tokens verified and accepted by speculative decoding since the models loaded,
    /// summed over models (`hyperllama_draft_tokens`, `hyperllama_draft_tokens_accepted`);
    /// `None` when the server has no such metrics (llama-server).
    pub async fn draft_tokens(&self) -> Option<(f64, f64)> {
        let text = self.metrics().await?;
        Some((
            metric_sum(&text, "hyperllama_draft_tokens")?,
            metric_sum(&text, "hyperllama_draft_tokens_accepted")?,
        ))
    }

    /// The server's Prometheus `/metrics` text; `None` when it has none.
    async fn metrics(&self) -> Option<String> {
        let resp = self
            .client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }
}

/// The sum of the samples of metric `name` (any labels) in a Prometheus text exposition;
/// `None` when there is none.
pub fn metric_sum(exposition: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())?;
        *found.get_or_insert(0.0) += value;
    }
    found
}

/// Milliseconds in a duration.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The error message of an error body (`{"error": "..."}` or `{"error": {"message": ...}}`),
/// else the body itself, shortened.
fn error_text(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let msg = v.as_ref().and_then(|v| {
        let e = v.get("error")?;
        e.as_str()
            .or_else(|| e.get("message").and_then(Value::as_str))
            .map(str::to_owned)
    });
    let text = msg.unwrap_or_else(|| body.trim().to_owned());
    text.chars().take(200).collect()
}

/// What one line of a stream said.
#[derive(Debug, Default, PartialEq)]
pub struct StreamEvent {
    /// Text the line carried.
    pub content: Option<String>,
    /// Prompt tokens, from usage or the final chunk.
    pub prompt_tokens: Option<u64>,
    /// Output tokens, from usage or the final chunk.
    pub completion_tokens: Option<u64>,
    /// An error reported in the stream.
    pub error: Option<String>,
    /// The end of the stream (`[DONE]`, or `"done": true`).
    pub done: bool,
}

/// Reads one line of an SSE (OpenAI) or NDJSON (Ollama) stream; `None` for lines that say
/// nothing (blank lines, SSE comments and fields other than `data`).
pub fn parse_line(api: Api, line: &str) -> Option<StreamEvent> {
    let json = match api {
        Api::Openai => {
            let data = line.strip_prefix("data:")?.trim();
            if data == "[DONE]" {
                return Some(StreamEvent {
                    done: true,
                    ..StreamEvent::default()
                });
            }
            data
        }
        Api::Ollama => line,
    };
    if json.is_empty() {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(json) else {
        return Some(StreamEvent {
            error: Some(format!(
                "not JSON: {}",
                json.chars().take(100).collect::<String>()
            )),
            ..StreamEvent::default()
        });
    };
    let mut ev = StreamEvent::default();
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        ev.error = Some(error_text(&json!({ "error": e }).to_string()));
        return Some(ev);
    }
    let text = |m: Option<&Value>, keys: &[&str]| -> Option<String> {
        let m = m?;
        let s: String = keys
            .iter()
            .filter_map(|k| m.get(*k).and_then(Value::as_str))
            .collect();
        Some(s)
    };
    match api {
        Api::Openai => {
            let delta = v.pointer("/choices/0/delta");
            // Reasoning models stream their thinking as `reasoning_content`: tokens too.
            ev.content = text(delta, &["reasoning_content", "content"]);
            if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                ev.prompt_tokens = u.get("prompt_tokens").and_then(Value::as_u64);
                ev.completion_tokens = u.get("completion_tokens").and_then(Value::as_u64);
            }
        }
        Api::Ollama => {
            ev.content = text(v.get("message"), &["thinking", "content"]);
            ev.done = v.get("done").and_then(Value::as_bool).unwrap_or(false);
            if ev.done {
                ev.prompt_tokens = v.get("prompt_eval_count").and_then(Value::as_u64);
                ev.completion_tokens = v.get("eval_count").and_then(Value::as_u64);
            }
        }
    }
    Some(ev)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-trick HTTP server on 127.0.0.1: it reads each request and answers with `head`,
    /// then `parts` 10 ms apart, then closes. Returns its base URL.
    pub(crate) async fn canned_server(
        head: &'static str,
        parts: &'static [&'static str],
    ) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    // Headers, then a body of Content-Length bytes.
                    loop {
                        let n = sock.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        req.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&req).to_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if req.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    let _ = sock.write_all(head.as_bytes()).await;
                    for part in parts {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        let _ = sock.write_all(part.as_bytes()).await;
                        let _ = sock.flush().await;
                    }
                    let _ = sock.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    pub(crate) const BUSY: &str = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 23\r\nconnection: close\r\n\r\n{\"error\":\"server busy\"}";

    #[test]
    fn kv_usage_is_read_from_metrics() {
        let text = "# TYPE hyperllama_kv_cells_used gauge\nhyperllama_kv_cells_used{model=\"a\"} 32\nhyperllama_kv_cells_used{model=\"b\"} 16\nhyperllama_kv_cells_used_total 5\n";
        assert_eq!(metric_sum(text, "hyperllama_kv_cells_used"), Some(48.0));
        assert_eq!(metric_sum("other 1\n", "hyperllama_kv_cells_used"), None);
        let text = "hyperllama_draft_tokens{model=\"a\"} 10\nhyperllama_draft_tokens_accepted{model=\"a\"} 7\n";
        assert_eq!(metric_sum(text, "hyperllama_draft_tokens"), Some(10.0));
        assert_eq!(
            metric_sum(text, "hyperllama_draft_tokens_accepted"),
            Some(7.0)
        );
    }

    #[tokio::test]
    async fn a_stream_is_timed_chunk_by_chunk() {
        const SSE: &str =
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
        const PARTS: &[&str] = &[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wor\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"con",
            "tent\":\"ld!\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":4}}\n\ndata: [DONE]\n\n",
        ];
        let url = canned_server(SSE, PARTS).await;
        let t = Target::new(&url, Api::Openai, "m", 1, Duration::from_secs(10)).expect("client");
        let progress: Progress = Arc::default();
        let o = t
            .chat(&[Message::new("user", "hi")], 4, Some(&progress))
            .await
            .expect("a stream");
        assert_eq!(o.text, "Hello world!");
        assert_eq!(o.chunks.len(), 3);
        assert_eq!(progress.lock().expect("lock").len(), 3);
        // The server's count wins over the chunk count.
        assert_eq!((o.output_tokens, o.prompt_tokens), (4, Some(5)));
        // The role-only chunk came 10 ms before the first text: TTFT is at least 20 ms.
        assert!(o.ttft_ms.is_some_and(|t| t >= 19.0), "{:?}", o.ttft_ms);
        assert!(o.chunks[1].at_ms > o.chunks[0].at_ms);
    }

    #[tokio::test]
    async fn failures_are_values_with_a_kind() {
        let url = canned_server(BUSY, &[]).await;
        let t = Target::new(&url, Api::Ollama, "m", 1, Duration::from_secs(10)).expect("client");
        let f = t
            .chat(&[Message::new("user", "hi")], 4, None)
            .await
            .expect_err("503");
        assert_eq!(f.kind, "HTTP 503");
        assert!(f.detail.contains("server busy"), "{}", f.detail);
        // An error line in a stream.
        const OK: &str = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
        let url = canned_server(
            OK,
            &["{\"message\":{\"content\":\"a\"},\"done\":false}\n{\"error\":\"boom\"}\n"],
        )
        .await;
        let t = Target::new(&url, Api::Ollama, "m", 1, Duration::from_secs(10)).expect("client");
        let f = t
            .chat(&[Message::new("user", "hi")], 4, None)
            .await
            .expect_err("error line");
        assert_eq!(f.kind, "stream");
        assert!(f.detail.contains("boom"), "{}", f.detail);
    }

    #[test]
    fn openai_lines() {
        let l = r#"data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
        let ev = parse_line(Api::Openai, l).expect("an event");
        assert_eq!(ev.content.as_deref(), Some("Hi"));
        let l = r#"data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":8,"total_tokens":20}}"#;
        let ev = parse_line(Api::Openai, l).expect("an event");
        assert_eq!(
            (ev.prompt_tokens, ev.completion_tokens),
            (Some(12), Some(8))
        );
        assert!(parse_line(Api::Openai, "data: [DONE]").expect("done").done);
        assert_eq!(parse_line(Api::Openai, ""), None);
        assert_eq!(parse_line(Api::Openai, ": keep-alive"), None);
        let l = r#"data: {"error":{"message":"overloaded","type":"server_error"}}"#;
        assert_eq!(
            parse_line(Api::Openai, l)
                .expect("an event")
                .error
                .as_deref(),
            Some("overloaded")
        );
    }

    #[test]
    fn ollama_lines() {
        let l = r#"{"model":"m","message":{"role":"assistant","content":"Hi"},"done":false}"#;
        let ev = parse_line(Api::Ollama, l).expect("an event");
        assert_eq!(ev.content.as_deref(), Some("Hi"));
        assert!(!ev.done);
        let l = r#"{"model":"m","message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":30,"eval_count":8}"#;
        let ev = parse_line(Api::Ollama, l).expect("an event");
        assert!(ev.done);
        assert_eq!(
            (ev.prompt_tokens, ev.completion_tokens),
            (Some(30), Some(8))
        );
        let ev = parse_line(Api::Ollama, r#"{"error":"model not found"}"#).expect("an event");
        assert_eq!(ev.error.as_deref(), Some("model not found"));
        assert!(parse_line(Api::Ollama, "garbage")
            .expect("an event")
            .error
            .is_some());
    }
}

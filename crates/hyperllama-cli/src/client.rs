//! Talking to a running server, as Ollama's CLI does.
//!
//! When something listens on `HYPERLLAMA_HOST`, the model commands (`list`, `show`, `ps`,
//! `stop`, `rm`, `cp`, `pull`, `create`, `run NAME`) go through its HTTP API, so that a loaded model is
//! shared instead of loaded a second time beside the server (two llama.cpp contexts busy at
//! once slow each other down badly) and the server's view of the store stays the only one.
//! Without a server, `list`, `show`, `rm`, `cp`, `pull` and `run` work on the store directly;
//! `ps` and `stop` need a server and say so.
//!
//! # Invariants
//! - Detection is a TCP connect with a short timeout: nothing listening means local mode,
//!   never an error and never a wait longer than the timeout.
//! - Every request carries `Authorization: Bearer $HYPERLLAMA_API_KEY` when the variable is set.
//! - A non-2xx answer becomes an error carrying the server's own `error` message.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde_json::Value;

use crate::env;

/// How long detection waits for a TCP connection.
const DETECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A client for the server at `HYPERLLAMA_HOST`.
pub struct Client {
    base: String,
    http: reqwest::Client,
    key: Option<String>,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// The client for the running server, or `None` when nothing listens on `HYPERLLAMA_HOST`.
    pub fn detect() -> anyhow::Result<Option<Self>> {
        let host = connect_host(&env::client_host());
        let reachable = host
            .to_socket_addrs()
            .ok()
            .into_iter()
            .flatten()
            .any(|addr: SocketAddr| TcpStream::connect_timeout(&addr, DETECT_TIMEOUT).is_ok());
        if !reachable {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("cannot create the HTTP client")?;
        Ok(Some(Self {
            base: format!("http://{host}"),
            http,
            key: env::api_key(),
            rt,
        }))
    }

    /// The client for the running server; an error saying how to start one when none runs.
    pub fn require() -> anyhow::Result<Self> {
        Self::detect()?.with_context(|| {
            format!(
                "no server is running on {}: start one with `hyperllama serve`",
                env::client_host()
            )
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// `GET path`, the answer as JSON.
    pub fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.rt.block_on(async {
            let resp = self.request(reqwest::Method::GET, path).send().await;
            json_answer(resp.with_context(|| self.unreachable())?).await
        })
    }

    /// `method path` with a JSON body, the answer as JSON (`null` for an empty body).
    pub fn send(&self, method: reqwest::Method, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.rt.block_on(async {
            let resp = self.request(method, path).json(body).send().await;
            json_answer(resp.with_context(|| self.unreachable())?).await
        })
    }

    /// `POST path` with a JSON body whose answer is NDJSON: `on_line` sees each object in
    /// order. An object with an `error` field ends the stream with that error.
    pub fn stream(
        &self,
        path: &str,
        body: &Value,
        mut on_line: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.rt.block_on(async {
            let resp = self
                .request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .await
                .with_context(|| self.unreachable())?;
            let resp = check_status(resp).await?;
            let mut body = resp.bytes_stream();
            let mut buf: Vec<u8> = Vec::new();
            while let Some(chunk) = body.next().await {
                buf.extend_from_slice(&chunk.context("the server closed the connection")?);
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    handle_line(&line, &mut on_line)?;
                }
            }
            handle_line(&buf, &mut on_line)
        })
    }

    /// Uploads the file at `path` as blob `digest` (`sha256:<hex>`) unless the server has it
    /// already; the file is streamed, never read into memory whole.
    pub fn upload_blob(&self, digest: &str, path: &std::path::Path) -> anyhow::Result<()> {
        let url = format!("/api/blobs/{digest}");
        self.rt.block_on(async {
            let head = self
                .request(reqwest::Method::HEAD, &url)
                .send()
                .await
                .with_context(|| self.unreachable())?;
            if head.status().is_success() {
                return Ok(());
            }
            let file = std::fs::File::open(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            let chunks = futures_util::stream::unfold(Some(file), |file| async move {
                let mut file = file?;
                let mut buf = vec![0u8; 1 << 20];
                match std::io::Read::read(&mut file, &mut buf) {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok::<_, std::io::Error>(buf), Some(file)))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
            let resp = self
                .request(reqwest::Method::POST, &url)
                .header(reqwest::header::CONTENT_LENGTH, len)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .with_context(|| self.unreachable())?;
            check_status(resp).await.map(drop)
        })
    }

    fn unreachable(&self) -> String {
        format!("cannot reach the server at {}", self.base)
    }
}

fn handle_line(
    line: &[u8],
    on_line: &mut impl FnMut(Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if text.is_empty() {
        return Ok(());
    }
    let value: Value = serde_json::from_str(text)
        .with_context(|| format!("the server sent a line that is not JSON: {text}"))?;
    if let Some(e) = value.get("error") {
        bail!(
            "{}",
            e.as_str().map_or_else(|| e.to_string(), str::to_owned)
        );
    }
    on_line(value)
}

/// The server's answer if its status is 2xx, else an error with its `error` message.
async fn check_status(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| {
            if text.trim().is_empty() {
                format!("the server answered {status}")
            } else {
                text.trim().to_owned()
            }
        });
    bail!("{message}")
}

/// The message of `{"error": "..."}` (Ollama) or `{"error": {"message": "..."}}` (OpenAI).
fn error_message(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    Some(match e {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    })
}

async fn json_answer(resp: reqwest::Response) -> anyhow::Result<Value> {
    let resp = check_status(resp).await?;
    let text = resp
        .text()
        .await
        .context("cannot read the server's answer")?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).context("the server's answer is not JSON")
}

/// Where a client connects for a server bound to `host`: a wildcard address means this machine.
fn connect_host(host: &str) -> String {
    match host.rsplit_once(':') {
        Some(("0.0.0.0", port)) => format!("127.0.0.1:{port}"),
        Some(("[::]", port)) => format!("[::1]:{port}"),
        _ => host.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcard_hosts_connect_to_this_machine() {
        assert_eq!(connect_host("0.0.0.0:11434"), "127.0.0.1:11434");
        assert_eq!(connect_host("[::]:8080"), "[::1]:8080");
        assert_eq!(connect_host("example.org:80"), "example.org:80");
    }

    #[test]
    fn error_messages_of_both_dialects() {
        assert_eq!(
            error_message(&json!({"error": "model 'x' not found"})).as_deref(),
            Some("model 'x' not found")
        );
        assert_eq!(
            error_message(&json!({"error": {"message": "bad", "type": "invalid_request_error"}}))
                .as_deref(),
            Some("bad")
        );
        assert_eq!(error_message(&json!({"ok": true})), None);
    }

    #[test]
    fn stream_lines_with_an_error_end_the_stream() {
        let mut seen = Vec::new();
        handle_line(b"{\"status\":\"ok\"}\n", &mut |v| {
            seen.push(v);
            Ok(())
        })
        .expect("a good line");
        assert_eq!(seen.len(), 1);
        let err = handle_line(b"{\"error\":\"boom\"}", &mut |_| Ok(())).expect_err("an error");
        assert_eq!(err.to_string(), "boom");
        assert!(handle_line(b"not json", &mut |_| Ok(())).is_err());
        assert!(handle_line(b"  \n", &mut |_| panic!("no line")).is_ok());
    }
}

//! The serving engine: a whole inference server (vLLM, MAX, SGLang, llama.cpp's
//! `llama-server`, or any OpenAI-compatible server) run as a supervised child process.
//!
//! [`Supervisor::start`] picks a free port on 127.0.0.1, substitutes `{port}` and `{model}`
//! into the configured command, runs it through `sh -c 'exec …'` in its own process group,
//! and waits until one of the health paths answers 200 (or fails with the tail of the
//! child's output after the timeout). [`Supervisor::generate`] forwards one OpenAI chat
//! request with `stream: true` and turns the server-sent events into the step engine's
//! [`Event`] stream: [`Event::Text`] per delta, then [`Event::Done`] with the usage the
//! server reports, or [`Event::Error`].
//!
//! # Invariants
//! - The child runs in its own process group (`process_group(0)`), and that whole group is
//!   killed when the last [`Supervisor`] handle is dropped or [`Supervisor::shutdown`] runs:
//!   no server outlives the supervisor. Where util-linux's `setpriv` is installed the child
//!   also gets SIGKILL as its parent-death signal, so that even SIGKILL of this process
//!   takes the server with it (the signal follows the thread that spawned the child, a
//!   runtime worker; the server's own children are covered only by the group kill).
//! - The last [`TAIL_BYTES`] of the child's stderr and stdout are kept for error messages.
//! - A child that exits while not shutting down is restarted (on a new port) by the monitor
//!   task; requests in flight end with [`Event::Error`]; requests that arrive meanwhile wait
//!   for the restart. After [`MAX_RESTARTS`] failed starts in a row it stays failed.

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hyperllama_core::sched::FinishReason;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::engine::{Completion, Event};

/// How many bytes of the child's output are kept for error messages.
pub const TAIL_BYTES: usize = 8 * 1024;

/// Failed starts in a row after which the supervisor gives up restarting.
pub const MAX_RESTARTS: u32 = 3;

/// How to run one serving engine for one model.
#[derive(Clone, Debug)]
pub struct ServingConfig {
    /// The command line, run by `sh -c`; `{port}` and `{model}` are substituted.
    pub command: String,
    /// The model argument (`{model}`): a file, a folder or a Hugging Face id.
    pub model: String,
    /// Paths polled until one answers 200.
    pub health_paths: Vec<String>,
    /// How long the server may take to become healthy.
    pub startup_timeout: Duration,
}

impl ServingConfig {
    /// A configuration with the default health paths (`/health`, `/v1/models`) and a
    /// 120-second start-up timeout.
    pub fn new(command: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            command: command.into(),
            model: model.into(),
            health_paths: vec!["/health".into(), "/v1/models".into()],
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// Why a serving engine cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// The command could not be started at all.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// No free port.
    #[error("no free port on 127.0.0.1: {0}")]
    Port(std::io::Error),
    /// The child exited before it became healthy.
    #[error("`{command}` exited ({status}) before it became healthy; its last output:\n{tail}")]
    Exited {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// The last output.
        tail: String,
    },
    /// The child did not become healthy in time.
    #[error("`{command}` did not become healthy within {timeout:?}; its last output:\n{tail}")]
    Timeout {
        /// The command line.
        command: String,
        /// The start-up timeout.
        timeout: Duration,
        /// The last output.
        tail: String,
    },
    /// The supervisor gave up or was shut down.
    #[error("the serving engine is not running: {0}")]
    Stopped(String),
}

/// The supervisor's view of the child.
#[derive(Clone, Debug)]
enum State {
    Starting,
    Ready { base_url: String },
    Failed(String),
}

/// The last bytes of the child's output.
#[derive(Default)]
struct Tail(VecDeque<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend(bytes);
        let excess = self.0.len().saturating_sub(TAIL_BYTES);
        self.0.drain(..excess);
    }
    fn text(&self) -> String {
        let (a, b) = self.0.as_slices();
        let mut v = a.to_vec();
        v.extend_from_slice(b);
        String::from_utf8_lossy(&v).into_owned()
    }
}

struct Inner {
    cfg: ServingConfig,
    http: reqwest::Client,
    state: watch::Sender<State>,
    tail: Arc<Mutex<Tail>>,
    /// Process group of the current child (its pid); 0 when none.
    pgid: AtomicU32,
    stopping: AtomicBool,
}

impl Inner {
    fn tail(&self) -> String {
        self.tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .text()
    }

    fn kill_group(&self, signal: &str) {
        let pgid = self.pgid.load(Ordering::SeqCst);
        if pgid != 0 {
            kill_group(pgid, signal);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.kill_group("KILL");
    }
}

/// Sends `signal` to process group `pgid` (through `kill(1)`: the workspace has no unsafe
/// code for `kill(2)`).
fn kill_group(pgid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A handle on a supervised server; clones share it. Dropping the last one kills the child.
#[derive(Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("command", &self.inner.cfg.command)
            .field("pid", &self.pid())
            .finish()
    }
}

fn free_port() -> Result<u16, ServingError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(ServingError::Port)?;
    Ok(l.local_addr().map_err(ServingError::Port)?.port())
}

async fn pump(mut from: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0 {
            break;
        }
        tail.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(&buf[..n]);
    }
}

impl Supervisor {
    /// Starts the server and waits until it is healthy. Must be called inside a tokio
    /// runtime; the monitor task lives as long as the supervisor.
    pub async fn start(cfg: ServingConfig) -> Result<Self, ServingError> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| ServingError::Stopped(e.to_string()))?;
        let (state, _) = watch::channel(State::Starting);
        let inner = Arc::new(Inner {
            cfg,
            http,
            state,
            tail: Arc::default(),
            pgid: AtomicU32::new(0),
            stopping: AtomicBool::new(false),
        });
        let (child, base_url) = launch(&inner).await?;
        inner.state.send_replace(State::Ready { base_url });
        tokio::spawn(monitor(Arc::downgrade(&inner), child));
        Ok(Self { inner })
    }

    /// The pid (and process group) of the current child, when one runs.
    pub fn pid(&self) -> Option<u32> {
        Some(self.inner.pgid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }

    /// The last [`TAIL_BYTES`] of the child's output.
    pub fn output_tail(&self) -> String {
        self.inner.tail()
    }

    /// The base URL (`http://127.0.0.1:PORT`) once the server is ready, waiting for a
    /// (re)start in progress.
    pub async fn ready(&self) -> Result<String, ServingError> {
        self.ready_except(None).await
    }

    /// As [`Self::ready`], but a server still shown at `stale` (known dead) does not count.
    async fn ready_except(&self, stale: Option<&str>) -> Result<String, ServingError> {
        let mut rx = self.inner.state.subscribe();
        loop {
            match rx.borrow_and_update().clone() {
                State::Ready { base_url } if Some(base_url.as_str()) != stale => {
                    return Ok(base_url)
                }
                State::Ready { .. } => {}
                State::Failed(why) => return Err(ServingError::Stopped(why)),
                State::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err(ServingError::Stopped("shut down".into()));
            }
        }
    }

    /// Whether the child `pid` serving at `base` is gone (or replaced) within a second: a
    /// process killed outright closes its sockets a moment before it is reaped.
    async fn died(&self, pid: Option<u32>, base: &str) -> bool {
        for _ in 0..20 {
            let replaced = !matches!(&*self.inner.state.borrow(), State::Ready { base_url } if base_url == base);
            if replaced || !pid.is_some_and(process_alive) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops the child: SIGTERM to its group, SIGKILL after `grace`.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let pgid = self.inner.pgid.load(Ordering::SeqCst);
        if pgid == 0 {
            return;
        }
        kill_group(pgid, "TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && process_alive(pgid) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill_group(pgid, "KILL");
        self.inner
            .state
            .send_replace(State::Failed("shut down".into()));
    }

    /// Forwards an OpenAI chat-completions body (`messages`, sampling options; `model`,
    /// `stream` and `stream_options` are set here) and streams the answer back.
    pub fn generate(&self, mut body: serde_json::Value) -> mpsc::UnboundedReceiver<Event> {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(obj) = body.as_object_mut() {
            obj.insert("stream".into(), true.into());
            obj.insert(
                "stream_options".into(),
                serde_json::json!({"include_usage": true}),
            );
            obj.entry("model")
                .or_insert_with(|| self.inner.cfg.model.clone().into());
        }
        let this = self.clone();
        tokio::spawn(async move {
            let last = match this.stream(body, &tx).await {
                Ok(c) => Event::Done(c),
                Err(e) => Event::Error(e),
            };
            let _ = tx.send(last);
        });
        rx
    }

    async fn stream(
        &self,
        body: serde_json::Value,
        tx: &mpsc::UnboundedSender<Event>,
    ) -> Result<Completion, String> {
        let start = Instant::now();
        let base = self.ready().await.map_err(|e| e.to_string())?;
        let fail = |what: String| {
            let tail = self.inner.tail();
            let tail = tail.lines().rev().take(5).collect::<Vec<_>>();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "serving engine: {what}; its last output: {}",
                tail.join(" | ")
            )
        };
        let pid = self.pid();
        let post = |base: &str| {
            self.inner
                .http
                .post(format!("{base}/v1/chat/completions"))
                .json(&body)
                .send()
        };
        let resp = match post(&base).await {
            Ok(r) => r,
            // The child died before the request reached it (a refused connection, or a pooled
            // one it left closed): wait for the restart, try once more.
            Err(e) if self.died(pid, &base).await => {
                let wait = self.ready_except(Some(&base));
                let base = tokio::time::timeout(self.inner.cfg.startup_timeout, wait)
                    .await
                    .map_err(|_| fail(format!("{e}; no restart within the start-up timeout")))?
                    .map_err(|e| e.to_string())?;
                post(&base).await.map_err(|e| fail(e.to_string()))?
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        if !resp.status().is_success() {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("serving engine answered {status}: {text}"));
        }
        let mut bytes = resp.bytes_stream();
        let mut buf = Vec::new();
        let mut first: Option<Instant> = None;
        let mut reason = FinishReason::Stop;
        let mut usage = None;
        let mut n_chunks = 0usize;
        let mut done = false;
        while !done {
            let Some(chunk) = bytes.next().await else {
                break;
            };
            let chunk = chunk.map_err(|e| fail(format!("the stream broke: {e}")))?;
            buf.extend_from_slice(&chunk);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    done = true;
                    break;
                }
                let v: serde_json::Value = serde_json::from_str(data)
                    .map_err(|e| format!("serving engine sent bad JSON ({e}): {data}"))?;
                if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                    usage = Some(u.clone());
                }
                let Some(choice) = v.get("choices").and_then(|c| c.get(0)) else {
                    continue;
                };
                if let Some(text) = choice
                    .pointer("/delta/content")
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                {
                    first.get_or_insert_with(Instant::now);
                    n_chunks += 1;
                    if tx.send(Event::Text(text.to_owned())).is_err() {
                        return Err("cancelled".into());
                    }
                }
                match choice.get("finish_reason").and_then(|r| r.as_str()) {
                    Some("length") => reason = FinishReason::Length,
                    Some(_) => reason = FinishReason::Stop,
                    None => {}
                }
            }
        }
        if !done {
            return Err(fail("the stream ended before [DONE]".into()));
        }
        let end = Instant::now();
        let first = first.unwrap_or(end);
        let field = |k: &str| {
            usage
                .as_ref()
                .and_then(|u| u.get(k))
                .and_then(serde_json::Value::as_u64)
                .map(|n| n as usize)
        };
        Ok(Completion {
            reason,
            n_prompt: field("prompt_tokens").unwrap_or(0),
            n_cached: 0,
            prompt_eval_duration: first - start,
            n_eval: field("completion_tokens").unwrap_or(n_chunks),
            eval_duration: end - first,
            total_duration: end - start,
            n_drafted: 0,
            n_accepted: 0,
        })
    }
}

/// Whether a process (or group leader) `pid` still exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `setpriv` when it is installed.
fn setpriv() -> Option<std::path::PathBuf> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

/// Starts one child and waits for health.
async fn launch(inner: &Inner) -> Result<(tokio::process::Child, String), ServingError> {
    let port = free_port()?;
    let command = inner
        .cfg
        .command
        .replace("{port}", &port.to_string())
        .replace("{model}", &inner.cfg.model);
    // With util-linux's `setpriv`, the child also dies with this process when it is killed
    // outright (SIGKILL leaves no time to kill the group): the parent-death signal.
    let mut cmd = match setpriv() {
        Some(setpriv) => {
            let mut c = tokio::process::Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--", "sh", "-c"]);
            c
        }
        None => {
            let mut c = tokio::process::Command::new("sh");
            c.arg("-c");
            c
        }
    };
    let mut child = cmd
        .arg(format!("exec {command}"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ServingError::Spawn {
            command: command.clone(),
            source,
        })?;
    inner.pgid.store(child.id().unwrap_or(0), Ordering::SeqCst);
    if let Some(out) = child.stderr.take() {
        tokio::spawn(pump(out, inner.tail.clone()));
    }
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, inner.tail.clone()));
    }
    let base_url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + inner.cfg.startup_timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Let the pumps drain what the child wrote last.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(ServingError::Exited {
                command,
                status: status.to_string(),
                tail: inner.tail(),
            });
        }
        for path in &inner.cfg.health_paths {
            let ok = inner
                .http
                .get(format!("{base_url}{path}"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok((child, base_url));
            }
        }
        if Instant::now() >= deadline {
            kill_group(child.id().unwrap_or(0), "KILL");
            let _ = child.wait().await;
            return Err(ServingError::Timeout {
                command,
                timeout: inner.cfg.startup_timeout,
                tail: inner.tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits on the child; restarts it when it dies unless the supervisor is stopping or gone.
async fn monitor(inner: std::sync::Weak<Inner>, mut child: tokio::process::Child) {
    let mut failures = 0;
    loop {
        let status = child.wait().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.stopping.load(Ordering::SeqCst) {
            return;
        }
        tracing::warn!(
            command = %inner.cfg.command,
            ?status,
            "the serving engine exited; restarting it"
        );
        // Whatever else is left in its group goes too.
        inner.kill_group("KILL");
        inner.state.send_replace(State::Starting);
        loop {
            match launch(&inner).await {
                Ok((c, base_url)) => {
                    failures = 0;
                    child = c;
                    inner.state.send_replace(State::Ready { base_url });
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures >= MAX_RESTARTS || inner.stopping.load(Ordering::SeqCst) {
                        inner.state.send_replace(State::Failed(e.to_string()));
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

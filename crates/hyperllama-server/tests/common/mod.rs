//! Test helpers: the shared test-model helpers, and a real server on 127.0.0.1:0 with a
//! temporary store that holds SmolLM2 as `smol`.

include!("../../../hyperllama-engine/tests/common/mod.rs");

use hyperllama_models::create::create_model;
use hyperllama_models::modelfile::Modelfile;
use hyperllama_models::name::ModelName;
use hyperllama_models::store::Store;
use hyperllama_server::{AppState, ServerConfig};

/// The test model's name in the store.
#[allow(dead_code)]
pub const MODEL: &str = "smol";

/// A running server; dropping it stops the server.
#[allow(dead_code)]
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The server's state (for residency checks).
    pub state: AppState,
    /// A client.
    pub client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

#[allow(dead_code)]
impl TestServer {
    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// POSTs JSON and returns the status and the body as JSON.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .post(self.at(path))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body read");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body of {path} is not JSON ({e}): {text}"));
        (status, value)
    }

    /// GETs JSON.
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .client
            .get(self.at(path))
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        let value = resp.json().await.expect("JSON body");
        (status, value)
    }

    /// POSTs JSON and returns the status and the raw body text.
    pub async fn post_text(&self, path: &str, body: serde_json::Value) -> (u16, String) {
        let resp = self
            .client
            .post(self.at(path))
            .json(&body)
            .send()
            .await
            .expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body read"))
    }

    /// Creates `name` from the test model with a chat `template` (Jinja) through
    /// `/api/create`.
    pub async fn create_with_template(&self, name: &str, template: &str) {
        let (status, body) = self
            .post(
                "/api/create",
                serde_json::json!({"model": name, "from": MODEL, "template": template, "stream": false}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A store in `dir` with SmolLM2 as [`MODEL`].
#[allow(dead_code)]
pub fn store_with_model(dir: &std::path::Path) -> Store {
    let gguf = model_path(SMOLLM2);
    let store = Store::open(dir.join("models")).expect("store");
    let modelfile = Modelfile::parse(&format!("FROM {}\n", gguf.display())).expect("Modelfile");
    let name = ModelName::parse(MODEL).expect("name");
    create_model(&store, &name, &modelfile, dir, &mut |_| {}).expect("model created");
    store
}

/// A test configuration: small context, two sequences, two threads.
#[allow(dead_code)]
pub fn test_config(dir: &std::path::Path) -> ServerConfig {
    let mut cfg = ServerConfig::new(dir.join("models"), dir.join("index.db"));
    cfg.default_num_ctx = 1024;
    cfg.num_parallel = 2;
    cfg.n_threads = Some(test_threads());
    cfg
}

/// Starts a server whose store holds [`MODEL`]; `tweak` adjusts the configuration.
#[allow(dead_code)]
pub async fn start_server(tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().to_owned();
    tokio::task::spawn_blocking(move || store_with_model(&path))
        .await
        .expect("store task");
    let mut cfg = test_config(dir.path());
    tweak(&mut cfg);
    let state = AppState::open(cfg).await.expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let addr = listener.local_addr().expect("address");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve_state = state.clone();
    let task = tokio::spawn(async move {
        hyperllama_server::serve(listener, serve_state, async {
            let _ = rx.await;
        })
        .await
        .expect("server ran");
    });
    TestServer {
        url: format!("http://{addr}"),
        state,
        client: reqwest::Client::new(),
        shutdown: Some(tx),
        task: Some(task),
        _dir: dir,
    }
}

/// The NDJSON lines of a body.
#[allow(dead_code)]
pub fn ndjson_lines(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}

/// The `data:` payloads of an SSE body.
#[allow(dead_code)]
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| event.trim().strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

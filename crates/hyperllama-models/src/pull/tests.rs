//! Pull tests against a registry served on 127.0.0.1 by a small HTTP/1.1 server that speaks
//! the real protocol and can misbehave on demand.

use super::*;

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::gguf::{GgmlType, GgufBuilder};
use crate::manifest::{media_type, Layer, Manifest, ModelConfig, CONFIG_MEDIA_TYPE};

/// Ways the test registry misbehaves; each `Option` fires once.
#[derive(Default)]
struct Faults {
    /// Close the connection after this many body bytes of the next blob response.
    cut_after: Option<usize>,
    /// Answer the next blob request with headers, then wait this long before the body.
    stall: Option<Duration>,
    /// Answer this many blob requests with HTTP 500.
    n_errors: u32,
    /// Answer blob requests with a 307 to `/cdn/<digest>`.
    redirect: bool,
    /// Ignore `Range` headers.
    ignore_range: bool,
}

/// What the test registry serves and what it saw.
#[derive(Default)]
struct State {
    /// Bodies by request path.
    manifests: HashMap<String, Vec<u8>>,
    /// Blob bodies by digest text (may deliberately not match the digest).
    blobs: HashMap<String, Vec<u8>>,
    faults: Faults,
    /// `"<path> <range>"` of every request.
    log: Vec<String>,
}

/// A registry on 127.0.0.1.
struct TestRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Starts serving.
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream, Arc::clone(&shared), addr));
            }
        });
        TestRegistry { addr, state }
    }

    /// Runs `f` on the state.
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("state"))
    }

    /// Serves `model` as `name` (namespace/model, tag).
    fn serve(&self, repo: &str, tag: &str, model: &TestModel) {
        self.with(|s| {
            s.manifests.insert(
                format!("/v2/{repo}/manifests/{tag}"),
                model.manifest.clone(),
            );
            for (digest, bytes) in &model.blobs {
                s.blobs.insert(digest.to_string(), bytes.clone());
            }
        });
    }

    /// The requests seen whose path contains `part`.
    fn requests(&self, part: &str) -> Vec<String> {
        self.with(|s| s.log.iter().filter(|l| l.contains(part)).cloned().collect())
    }
}

/// Answers one request.
async fn handle(stream: TcpStream, state: Arc<Mutex<State>>, addr: SocketAddr) {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).await.is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut range = None;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("range: bytes=") {
                    range = v.trim().trim_end_matches('-').parse::<usize>().ok();
                }
            }
        }
    }
    let mut stream = reader.into_inner();
    enum Reply {
        Status(u16),
        Redirect(String),
        Body {
            body: Vec<u8>,
            start: usize,
            cut: Option<usize>,
            stall: Option<Duration>,
        },
    }
    let reply = {
        let mut s = state.lock().expect("state");
        s.log.push(format!("{path} {range:?}"));
        if let Some(body) = s.manifests.get(&path) {
            Reply::Body {
                body: body.clone(),
                start: 0,
                cut: None,
                stall: None,
            }
        } else if let Some(digest) = path
            .rsplit('/')
            .next()
            .filter(|_| path.contains("/blobs/") || path.starts_with("/cdn/"))
        {
            if s.faults.redirect && path.contains("/blobs/") {
                Reply::Redirect(format!("http://{addr}/cdn/{digest}"))
            } else if s.faults.n_errors > 0 {
                s.faults.n_errors -= 1;
                Reply::Status(500)
            } else if let Some(body) = s.blobs.get(digest).cloned() {
                let start = if s.faults.ignore_range {
                    0
                } else {
                    range.unwrap_or(0)
                };
                Reply::Body {
                    body,
                    start,
                    cut: s.faults.cut_after.take(),
                    stall: s.faults.stall.take(),
                }
            } else {
                Reply::Status(404)
            }
        } else {
            Reply::Status(404)
        }
    };
    let _ = match reply {
        Reply::Status(code) => {
            stream
                .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                .await
        }
        Reply::Redirect(location) => {
            stream
                .write_all(format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                .await
        }
        Reply::Body { body, start, cut, stall } => {
            let part = &body[start.min(body.len())..];
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
                    part.len(),
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", part.len())
            };
            let mut result = stream.write_all(head.as_bytes()).await;
            if let Some(stall) = stall {
                let _ = stream.flush().await;
                tokio::time::sleep(stall).await;
            }
            if result.is_ok() {
                let n = cut.unwrap_or(part.len()).min(part.len());
                result = stream.write_all(&part[..n]).await;
            }
            result
        }
    };
    let _ = stream.shutdown().await;
}

/// A model as the registry holds it.
struct TestModel {
    /// The manifest bytes, compact as the registry sends them.
    manifest: Vec<u8>,
    /// Every blob.
    blobs: Vec<(BlobDigest, Vec<u8>)>,
    /// The model layer's digest.
    weights: BlobDigest,
}

/// A real small GGUF model with a config and a template layer.
fn test_model(seed: u32) -> TestModel {
    let weights = GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv("general.file_type", 15u32)
        .kv("llama.context_length", 2048u32)
        .kv("test.seed", seed)
        .tensor(
            "token_embd.weight",
            vec![64, 64],
            GgmlType::F32,
            (0..64 * 64 * 4).map(|i| (i % 251) as u8).collect(),
        )
        .to_bytes();
    let config = ModelConfig {
        model_format: "gguf".into(),
        model_family: "llama".into(),
        ..ModelConfig::default()
    }
    .to_json();
    let template = b"{{ .Prompt }}".to_vec();
    let blobs = vec![
        (BlobDigest::of_bytes(&weights), weights),
        (BlobDigest::of_bytes(&template), template),
        (BlobDigest::of_bytes(&config), config),
    ];
    let layer = |media, i: usize| Layer::new(media, blobs[i].0, blobs[i].1.len() as u64);
    let manifest = Manifest::new(
        layer(CONFIG_MEDIA_TYPE, 2),
        vec![layer(media_type::MODEL, 0), layer(media_type::TEMPLATE, 1)],
    );
    let mut bytes = manifest.to_json();
    bytes.pop();
    TestModel {
        manifest: bytes,
        weights: blobs[0].0,
        blobs,
    }
}

/// A store, a registry and a puller pointed at it for `registry.ollama.ai` and `hf.co`.
async fn setup() -> (tempfile::TempDir, Store, TestRegistry, Puller) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("models")).expect("store");
    let registry = TestRegistry::start().await;
    let base = format!("http://{}", registry.addr);
    let config = PullConfig {
        registries: [
            ("registry.ollama.ai".to_owned(), base.clone()),
            ("hf.co".to_owned(), base),
        ]
        .into(),
        insecure: true,
        stall_timeout: Duration::from_millis(300),
        max_retries: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(5),
    };
    let puller = Puller::new(store.clone(), config).expect("puller");
    (dir, store, registry, puller)
}

/// Pulls and collects the statuses.
async fn pull(puller: &Puller, name: &str) -> (Result<StoredManifest, PullError>, Vec<String>) {
    let mut events = Vec::new();
    let name = ModelName::parse(name).expect("name");
    let result = puller
        .pull(&name, &mut |e: PullEvent| events.push(e.status()))
        .await;
    (result, events)
}

/// Asserts that the store holds the model exactly and nothing half-written.
fn assert_pulled(store: &Store, name: &str, model: &TestModel) {
    let name = ModelName::parse(name).expect("name");
    assert_eq!(
        store.read_manifest_bytes(&name).expect("manifest"),
        model.manifest
    );
    for (digest, bytes) in &model.blobs {
        assert_eq!(
            &std::fs::read(store.blob_path(digest)).expect("blob"),
            bytes
        );
    }
    assert_no_partials(store);
}

/// Asserts that no temporary or partial file is left in `blobs/`.
fn assert_no_partials(store: &Store) {
    for entry in std::fs::read_dir(store.blobs_dir()).expect("blobs") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(
            BlobDigest::from_file_name(&name).is_some(),
            "left behind: {name}"
        );
    }
}

#[tokio::test]
async fn pulls_a_model_with_ollama_progress() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(1);
    registry.serve("library/tiny", "latest", &model);
    let (result, events) = pull(&puller, "tiny").await;
    let stored = result.expect("pull");
    assert_eq!(stored.digest, BlobDigest::of_bytes(&model.manifest));
    assert_pulled(&store, "tiny", &model);
    assert_eq!(events.first().map(String::as_str), Some("pulling manifest"));
    assert!(events.contains(&format!("pulling {}", model.weights.short())));
    assert!(events.contains(&"verifying sha256 digest".to_owned()));
    let tail: Vec<&str> = events.iter().rev().take(2).map(String::as_str).collect();
    assert_eq!(tail, vec!["success", "writing manifest"]);
    // The result is a real GGUF the reader accepts.
    let file = crate::gguf::read_file(&store.blob_path(&model.weights)).expect("gguf");
    assert_eq!(file.architecture(), Some("llama"));
    // A second pull downloads nothing.
    let blob_requests = registry.requests("/blobs/").len();
    let (again, _) = pull(&puller, "tiny:latest").await;
    again.expect("pull again");
    assert_eq!(registry.requests("/blobs/").len(), blob_requests);
}

#[tokio::test]
async fn hugging_face_names_use_their_registry() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(2);
    registry.serve("bartowski/Tiny-GGUF", "Q4_K_M", &model);
    let (result, _) = pull(&puller, "hf.co/bartowski/Tiny-GGUF:Q4_K_M").await;
    result.expect("pull");
    assert_pulled(&store, "hf.co/bartowski/Tiny-GGUF:Q4_K_M", &model);
}

#[tokio::test]
async fn missing_manifest_is_not_found() {
    let (_dir, store, _registry, puller) = setup().await;
    let (result, _) = pull(&puller, "nope:1b").await;
    let err = result.expect_err("404");
    assert!(matches!(err, PullError::ManifestNotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "model 'nope:1b' not found in the registry");
    assert!(store.manifest_names().expect("names").is_empty());
}

#[tokio::test]
async fn wrong_digest_leaves_nothing_visible() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(3);
    registry.serve("library/bad", "latest", &model);
    registry.with(|s| {
        if let Some(b) = s.blobs.get_mut(&model.weights.to_string()) {
            b[100] ^= 0xff;
        }
    });
    let (result, _) = pull(&puller, "bad").await;
    match result.expect_err("mismatch") {
        PullError::DigestMismatch { expected, .. } => assert_eq!(expected, model.weights),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!store.has_blob(&model.weights));
    assert!(store.manifest_names().expect("names").is_empty());
    assert_no_partials(&store);
}

#[tokio::test]
async fn cut_connection_resumes_with_range() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(4);
    registry.serve("library/cut", "latest", &model);
    registry.with(|s| s.faults.cut_after = Some(5000));
    let (result, _) = pull(&puller, "cut").await;
    result.expect("pull");
    assert_pulled(&store, "cut", &model);
    assert!(
        registry
            .requests("/blobs/")
            .iter()
            .any(|l| l.ends_with("Some(5000)")),
        "{:?}",
        registry.requests("/blobs/")
    );
}

#[tokio::test]
async fn resumes_a_partial_file_left_on_disk() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(5);
    registry.serve("library/resume", "latest", &model);
    let partial = store
        .blobs_dir()
        .join(format!("{}-hlpartial", model.weights.file_name()));
    std::fs::write(&partial, &model.blobs[0].1[..7000]).expect("partial");
    let (result, _) = pull(&puller, "resume").await;
    result.expect("pull");
    assert_pulled(&store, "resume", &model);
    let weights_requests = registry.requests(&model.weights.to_string());
    assert_eq!(weights_requests.len(), 1);
    assert!(weights_requests[0].ends_with("Some(7000)"));
}

#[tokio::test]
async fn server_ignoring_range_starts_over() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(6);
    registry.serve("library/norange", "latest", &model);
    registry.with(|s| s.faults.ignore_range = true);
    let partial = store
        .blobs_dir()
        .join(format!("{}-hlpartial", model.weights.file_name()));
    std::fs::write(&partial, &model.blobs[0].1[..7000]).expect("partial");
    let (result, _) = pull(&puller, "norange").await;
    result.expect("pull");
    assert_pulled(&store, "norange", &model);
}

#[tokio::test]
async fn follows_redirects() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(7);
    registry.serve("library/moved", "latest", &model);
    registry.with(|s| s.faults.redirect = true);
    let (result, _) = pull(&puller, "moved").await;
    result.expect("pull");
    assert_pulled(&store, "moved", &model);
    assert_eq!(registry.requests("/cdn/").len(), model.blobs.len());
}

#[tokio::test]
async fn stalled_server_is_retried() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(8);
    registry.serve("library/slow", "latest", &model);
    registry.with(|s| s.faults.stall = Some(Duration::from_secs(2)));
    let (result, _) = pull(&puller, "slow").await;
    result.expect("pull");
    assert_pulled(&store, "slow", &model);
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(9);
    registry.serve("library/flaky", "latest", &model);
    registry.with(|s| s.faults.n_errors = 2);
    let (result, _) = pull(&puller, "flaky").await;
    result.expect("pull after two 500s");
    assert_pulled(&store, "flaky", &model);

    let other = test_model(10);
    registry.serve("library/down", "latest", &other);
    registry.with(|s| s.faults.n_errors = 100);
    let (result, _) = pull(&puller, "down").await;
    assert!(
        matches!(result, Err(PullError::Status { status: 500, .. })),
        "{result:?}"
    );
    assert!(store
        .read_manifest(&ModelName::parse("down").expect("name"))
        .is_err());
}

#[tokio::test]
async fn concurrent_pulls_download_once() {
    let (_dir, store, registry, puller) = setup().await;
    let model = test_model(11);
    registry.serve("library/same", "latest", &model);
    let (a, b) = tokio::join!(pull(&puller, "same"), pull(&puller, "same:latest"));
    a.0.expect("first");
    b.0.expect("second");
    assert_pulled(&store, "same", &model);
    assert_eq!(registry.requests(&model.weights.to_string()).len(), 1);
}

#[tokio::test]
async fn plain_http_needs_insecure() {
    let (_dir, store, registry, _puller) = setup().await;
    let config = PullConfig {
        registries: [(
            "registry.ollama.ai".to_owned(),
            format!("http://{}", registry.addr),
        )]
        .into(),
        ..PullConfig::default()
    };
    let puller = Puller::new(store, config).expect("puller");
    let (result, events) = pull(&puller, "tiny").await;
    assert!(
        matches!(result, Err(PullError::Insecure { .. })),
        "{result:?}"
    );
    assert!(events.is_empty());
    assert_eq!(
        PullConfig::default().base_url("hf.co").expect("url"),
        "https://hf.co"
    );
    assert_eq!(
        PullConfig::default()
            .base_url("example.com:5000")
            .expect("url"),
        "https://example.com:5000"
    );
}

//! A registry served on 127.0.0.1 by a small HTTP/1.1 server that speaks the real protocol
//! (manifests, blobs, redirects, `Range` with `206` answers) and can misbehave on demand,
//! plus the fixtures the pull tests share.

use super::super::*;

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::gguf::{GgmlType, GgufBuilder};
use crate::manifest::{media_type, Layer, Manifest, ModelConfig, CONFIG_MEDIA_TYPE};

/// Ways the test registry misbehaves; each `Option` fires once unless said otherwise.
#[derive(Default)]
pub(super) struct Faults {
    /// Close the connection after this many body bytes of the next blob response.
    pub(super) cut_after: Option<usize>,
    /// Close the connection of the next blob response whose range starts at `.0` after
    /// `.1` body bytes.
    pub(super) cut_range: Option<(usize, usize)>,
    /// Wait this long before each KiB of every blob body (not once).
    pub(super) throttle: Option<Duration>,
    /// Answer the next blob request with headers, then wait this long before the body.
    pub(super) stall: Option<Duration>,
    /// Answer this many blob requests with HTTP 500.
    pub(super) n_errors: u32,
    /// Answer blob requests with a 307 to `/cdn/<digest>`.
    pub(super) redirect: bool,
    /// Ignore `Range` headers.
    pub(super) ignore_range: bool,
}

/// What the test registry serves and what it saw.
#[derive(Default)]
pub(super) struct State {
    /// Bodies by request path.
    pub(super) manifests: HashMap<String, Vec<u8>>,
    /// Blob bodies by digest text (may deliberately not match the digest).
    pub(super) blobs: HashMap<String, Vec<u8>>,
    /// What to get wrong.
    pub(super) faults: Faults,
    /// `"<path> bytes=<first>-[<last>]"` (or `"<path> -"` without `Range`) of every request.
    pub(super) log: Vec<String>,
    /// Blob body bytes sent, by digest text.
    pub(super) served: HashMap<String, usize>,
}

/// A registry on 127.0.0.1.
pub(super) struct TestRegistry {
    pub(super) addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl TestRegistry {
    /// Starts serving.
    pub(super) async fn start() -> Self {
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
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().expect("state"))
    }

    /// Serves `model` as `name` (namespace/model, tag).
    pub(super) fn serve(&self, repo: &str, tag: &str, model: &TestModel) {
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
    pub(super) fn requests(&self, part: &str) -> Vec<String> {
        self.with(|s| s.log.iter().filter(|l| l.contains(part)).cloned().collect())
    }

    /// The body bytes sent of the blob `digest`.
    pub(super) fn served(&self, digest: &BlobDigest) -> usize {
        self.with(|s| s.served.get(&digest.to_string()).copied().unwrap_or(0))
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
                    range = v.trim().split_once('-').and_then(|(first, last)| {
                        Some((first.parse::<usize>().ok()?, last.parse::<usize>().ok()))
                    });
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
            /// The range to send as a `206`: first and last byte.
            range: Option<(usize, usize)>,
            cut: Option<usize>,
            stall: Option<Duration>,
            throttle: Option<Duration>,
            /// The digest text, for counting served bytes.
            digest: Option<String>,
        },
    }
    let reply = {
        let mut s = state.lock().expect("state");
        let range_text = match range {
            Some((first, Some(last))) => format!("bytes={first}-{last}"),
            Some((first, None)) => format!("bytes={first}-"),
            None => "-".to_owned(),
        };
        s.log.push(format!("{path} {range_text}"));
        if let Some(body) = s.manifests.get(&path) {
            Reply::Body {
                body: body.clone(),
                range: None,
                cut: None,
                stall: None,
                throttle: None,
                digest: None,
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
                let range = range
                    .filter(|_| !s.faults.ignore_range)
                    .map(|(first, last)| {
                        let end = body.len().saturating_sub(1);
                        (first, last.unwrap_or(end).min(end))
                    });
                let start = range.map_or(0, |(first, _)| first);
                let mut cut = s.faults.cut_after.take();
                if let Some((at, after)) = s.faults.cut_range {
                    if range.is_some() && at == start {
                        s.faults.cut_range = None;
                        cut = Some(after);
                    }
                }
                Reply::Body {
                    body,
                    range,
                    cut,
                    stall: s.faults.stall.take(),
                    throttle: s.faults.throttle,
                    digest: Some(digest.to_owned()),
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
        Reply::Body {
            body,
            range,
            cut,
            stall,
            throttle,
            digest,
        } => {
            let head = match range {
                Some((first, last)) => format!(
                    "HTTP/1.1 206 Partial Content\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\nContent-Range: bytes {first}-{last}/{}\r\nConnection: close\r\n\r\n",
                    (last + 1).saturating_sub(first),
                    body.len()
                ),
                None => format!(
                    "HTTP/1.1 200 OK\r\nAccept-Ranges: bytes\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
            };
            let part = match range {
                Some((first, last)) => body.get(first..=last).unwrap_or(&[]),
                None => &body[..],
            };
            let mut result = stream.write_all(head.as_bytes()).await;
            if let Some(stall) = stall {
                let _ = stream.flush().await;
                tokio::time::sleep(stall).await;
            }
            let n = cut.unwrap_or(part.len()).min(part.len());
            for chunk in part[..n].chunks(1024) {
                if result.is_err() {
                    break;
                }
                if let Some(throttle) = throttle {
                    let _ = stream.flush().await;
                    tokio::time::sleep(throttle).await;
                }
                result = stream.write_all(chunk).await;
                if let (Ok(()), Some(digest)) = (&result, &digest) {
                    let mut s = state.lock().expect("state");
                    *s.served.entry(digest.clone()).or_default() += chunk.len();
                }
            }
            result
        }
    };
    let _ = stream.shutdown().await;
}

/// A model as the registry holds it.
pub(super) struct TestModel {
    /// The manifest bytes, compact as the registry sends them.
    pub(super) manifest: Vec<u8>,
    /// Every blob.
    pub(super) blobs: Vec<(BlobDigest, Vec<u8>)>,
    /// The model layer's digest.
    pub(super) weights: BlobDigest,
}

/// A real small GGUF model with a config and a template layer.
pub(super) fn test_model(seed: u32) -> TestModel {
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

/// A store, a registry and a puller pointed at it for `registry.ollama.ai` and `hf.co`,
/// downloading in one stream.
pub(super) async fn setup() -> (tempfile::TempDir, Store, TestRegistry, Puller) {
    setup_with(|_| {}).await
}

/// As [`setup`], with `tweak` applied to the configuration.
pub(super) async fn setup_with(
    tweak: impl FnOnce(&mut PullConfig),
) -> (tempfile::TempDir, Store, TestRegistry, Puller) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("models")).expect("store");
    let registry = TestRegistry::start().await;
    let mut config = test_config(&format!("http://{}", registry.addr));
    tweak(&mut config);
    let puller = Puller::new(store.clone(), config).expect("puller");
    (dir, store, registry, puller)
}

/// The test configuration for a registry at `base`: quick retries, one stream per blob.
pub(super) fn test_config(base: &str) -> PullConfig {
    PullConfig {
        registries: [
            ("registry.ollama.ai".to_owned(), base.to_owned()),
            ("hf.co".to_owned(), base.to_owned()),
        ]
        .into(),
        insecure: true,
        stall_timeout: Duration::from_millis(300),
        max_retries: 3,
        backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(5),
        parallel_threshold: u64::MAX,
        n_parts: 4,
    }
}

/// Splits blobs of 1 KiB and more into four parts.
pub(super) fn parallel(config: &mut PullConfig) {
    config.parallel_threshold = 1024;
    config.n_parts = 4;
}

/// Pulls and collects the statuses.
pub(super) async fn pull(
    puller: &Puller,
    name: &str,
) -> (Result<StoredManifest, PullError>, Vec<String>) {
    let mut events = Vec::new();
    let name = ModelName::parse(name).expect("name");
    let result = puller
        .pull(&name, &mut |e: PullEvent| events.push(e.status()))
        .await;
    (result, events)
}

/// Pulls and collects the events.
pub(super) async fn pull_events(
    puller: &Puller,
    name: &str,
) -> (Result<StoredManifest, PullError>, Vec<PullEvent>) {
    let mut events = Vec::new();
    let name = ModelName::parse(name).expect("name");
    let result = puller.pull(&name, &mut |e: PullEvent| events.push(e)).await;
    (result, events)
}

/// Asserts that the store holds the model exactly and nothing half-written.
pub(super) fn assert_pulled(store: &Store, name: &str, model: &TestModel) {
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

/// Asserts that no temporary, partial, sidecar or lock file is left in `blobs/`.
pub(super) fn assert_no_partials(store: &Store) {
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

//! `hyperllama pull` against a registry started by the test on 127.0.0.1 that speaks the
//! real protocol: `GET /v2/<ns>/<model>/manifests/<tag>` and `GET /v2/<ns>/<model>/blobs/<digest>`.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::stderr;
use hyperllama_models::digest::BlobDigest;
use hyperllama_models::gguf::{GgmlType, GgufBuilder};

/// Every request a registry answered: its path and the start of its `Range`, if any.
type RequestLog = Mutex<Vec<(String, Option<usize>)>>;

/// A registry serving fixed paths; anything else is a 404. Serves until the test ends.
struct Registry {
    url: String,
    /// Every request: its path and the start of its `Range`, if any.
    requests: Arc<RequestLog>,
}

impl Registry {
    fn start(routes: HashMap<String, Vec<u8>>) -> Self {
        Self::start_with(routes, false)
    }

    /// With `slow`, bodies trickle out in 64 KiB pieces, 20 ms apart.
    fn start_with(routes: HashMap<String, Vec<u8>>, slow: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let routes = Arc::new(routes);
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = Arc::clone(&routes);
                let log = Arc::clone(&log);
                std::thread::spawn(move || serve(stream, &routes, &log, slow));
            }
        });
        Registry { url, requests }
    }
}

/// Answers one request (with `Range` support), then closes the connection.
fn serve(stream: TcpStream, routes: &HashMap<String, Vec<u8>>, log: &RequestLog, slow: bool) {
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(spec) = lower.strip_prefix("range: bytes=") {
            let (start, end) = spec.trim().split_once('-').unwrap_or((spec.trim(), ""));
            range = Some((
                start.parse::<usize>().unwrap_or(0),
                end.parse::<usize>().ok(),
            ));
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    if let Ok(mut log) = log.lock() {
        log.push((path.clone(), range.map(|r| r.0)));
    }
    let mut out = &stream;
    let Some(body) = routes.get(&path) else {
        let _ = out
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let (status, part) = match range {
        Some((start, end)) if start < body.len() => {
            let end = end.map_or(body.len(), |e| (e + 1).min(body.len()));
            ("206 Partial Content", &body[start..end])
        }
        _ => ("200 OK", &body[..]),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
        part.len()
    );
    let _ = out.write_all(head.as_bytes());
    if slow {
        for piece in part.chunks(64 << 10) {
            if out.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    } else {
        let _ = out.write_all(part);
    }
}

/// The routes of one model `<repo>:<tag>` made of a small GGUF and its config.
fn model_routes(repo: &str, tag: &str) -> (HashMap<String, Vec<u8>>, BlobDigest) {
    model_routes_padded(repo, tag, 0)
}

/// Like `model_routes`, with `padding` zero bytes after the GGUF's data (still a valid file).
fn model_routes_padded(
    repo: &str,
    tag: &str,
    padding: usize,
) -> (HashMap<String, Vec<u8>>, BlobDigest) {
    let mut weights = GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv("general.file_type", 0u32)
        .kv("llama.context_length", 128u32)
        .kv("llama.embedding_length", 8u32)
        .tensor(
            "token_embd.weight",
            vec![8, 4],
            GgmlType::F32,
            vec![0; 8 * 4 * 4],
        )
        .to_bytes();
    weights.resize(weights.len() + padding, 0);
    let config = br#"{"model_format":"gguf","model_family":"llama","model_families":["llama"],"model_type":"32","file_type":"F32","architecture":"amd64","os":"linux"}"#.to_vec();
    let w = BlobDigest::of_bytes(&weights);
    let c = BlobDigest::of_bytes(&config);
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"digest\":\"{c}\",\"size\":{}}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.ollama.image.model\",\"digest\":\"{w}\",\"size\":{}}}]}}",
        config.len(),
        weights.len()
    );
    let manifest_digest = BlobDigest::of_bytes(manifest.as_bytes());
    let mut routes = HashMap::new();
    routes.insert(format!("/v2/{repo}/manifests/{tag}"), manifest.into_bytes());
    routes.insert(format!("/v2/{repo}/blobs/{w}"), weights);
    routes.insert(format!("/v2/{repo}/blobs/{c}"), config);
    (routes, manifest_digest)
}

fn hyperllama(dir: &Path, registry: &Registry) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
    cmd.env_remove("HYPERLLAMA_LOG")
        .env("HYPERLLAMA_HOST", common::NO_SERVER)
        .env_remove("HYPERLLAMA_DEBUG")
        .env("HOME", dir)
        .env("HYPERLLAMA_MODELS", dir.join("models"))
        .env("HYPERLLAMA_DB", dir.join("index.db"))
        .env("HYPERLLAMA_REGISTRY_URL", &registry.url)
        .env("HYPERLLAMA_HF_URL", &registry.url)
        .stdin(Stdio::null());
    cmd
}

fn assert_failure_ends_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("Error: ") && last.contains(needle),
        "{err}"
    );
    assert_eq!(err.matches("Error").count(), 1, "{err}");
}

#[test]
fn pulls_from_a_local_registry_then_lists_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (routes, manifest_digest) = model_routes("library/tiny", "latest");
    let registry = Registry::start(routes);

    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "tiny", "--insecure"])
        .output()
        .expect("runs");
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for line in [
        "pulling manifest",
        "verifying sha256 digest",
        "writing manifest",
        "success",
    ] {
        assert!(err.lines().any(|l| l == line), "missing {line:?} in {err}");
    }
    assert!(err.contains(" 100% "), "{err}");

    let o = hyperllama(dir.path(), &registry)
        .arg("list")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = out.lines().nth(1).unwrap_or_default();
    assert!(row.starts_with("tiny:latest "), "{out}");
    assert!(
        row.contains(&manifest_digest.short()),
        "the registry's manifest digest: {out}"
    );
    let o = hyperllama(dir.path(), &registry)
        .args(["show", "tiny"])
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&o.stdout).contains("architecture        llama"));
}

#[test]
fn pull_errors_are_clear() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (routes, _) = model_routes("library/tiny", "latest");
    let registry = Registry::start(routes);
    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "nosuch", "--insecure"])
        .output()
        .expect("runs");
    assert_failure_ends_with(&o, "model 'nosuch:latest' not found in the registry");
    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "tiny"])
        .output()
        .expect("runs");
    assert_failure_ends_with(&o, "refusing plain http");
    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "a//b", "--insecure"])
        .output()
        .expect("runs");
    assert_failure_ends_with(&o, "invalid model name");
    assert!(
        std::fs::read_dir(dir.path().join("models/manifests"))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true),
        "nothing was written"
    );
}

#[test]
fn hugging_face_names_use_the_hf_registry_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (routes, _) = model_routes("someone/Tiny-GGUF", "Q4_K_M");
    let registry = Registry::start(routes);
    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "hf.co/someone/Tiny-GGUF:Q4_K_M", "--insecure"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hyperllama(dir.path(), &registry)
        .arg("list")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.lines()
            .any(|l| l.starts_with("hf.co/someone/Tiny-GGUF:Q4_K_M ")),
        "{out}"
    );
}

#[test]
fn a_killed_pull_leaves_nothing_visible_and_the_next_pull_resumes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (routes, _) = model_routes_padded("library/big", "latest", 6 << 20);
    let weights_path = routes
        .iter()
        .max_by_key(|(_, body)| body.len())
        .map(|(path, _)| path.clone())
        .expect("a weights route");
    let registry = Registry::start_with(routes, true);
    let blobs = dir.path().join("models/blobs");
    let partial_len = || -> u64 {
        std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-hlpartial"))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    let mut child = hyperllama(dir.path(), &registry)
        .args(["pull", "big", "--insecure"])
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while partial_len() < (1 << 20) {
        assert!(
            child.try_wait().expect("status").is_none(),
            "the pull finished too soon"
        );
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("killed");
    child.wait().expect("reaped");
    assert!(
        walkdir(&dir.path().join("models/manifests"))
            .iter()
            .all(|p| !p.is_file()),
        "no manifest after a killed pull"
    );
    let weights_file = weights_path
        .rsplit('/')
        .next()
        .expect("a digest")
        .replace(':', "-");
    let visible: Vec<String> = std::fs::read_dir(&blobs)
        .expect("blobs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !visible.contains(&weights_file),
        "the half-downloaded blob is not visible: {visible:?}"
    );
    let on_disk = partial_len();
    assert!(
        on_disk >= 1 << 20,
        "the partial download stays for resuming"
    );

    let o = hyperllama(dir.path(), &registry)
        .args(["pull", "big", "--insecure"])
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let requests = registry.requests.lock().expect("log").clone();
    let resumed = requests
        .iter()
        .filter(|(path, _)| *path == weights_path)
        .any(|(_, start)| start.is_some_and(|s| s > 0));
    assert!(
        resumed,
        "the second pull asked for the rest only: {requests:?}"
    );
    let o = hyperllama(dir.path(), &registry)
        .arg("list")
        .output()
        .expect("runs");
    assert!(String::from_utf8_lossy(&o.stdout).contains("big:latest"));
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        }
        out.push(path);
    }
    out
}

//! `hyperllama bench` as a user runs it: against a real `hyperllama serve` with a real model,
//! over both APIs, then `bench compare` on the results.
//!
//! Tests named `model_*` load a model and run one at a time (see `.config/nextest.toml`).

mod common;

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{model_path, stderr, stdout, test_threads, SMOLLM2};
use serde_json::Value;

fn hyperllama(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
    cmd.env_remove("HYPERLLAMA_LOG")
        .env_remove("HYPERLLAMA_DEBUG")
        .env("HOME", home)
        .env("HYPERLLAMA_MODELS", home.join("models"))
        .env("HYPERLLAMA_DB", home.join("index.db"))
        .stdin(Stdio::null());
    cmd
}

/// `hyperllama bench` against the server at `url` over `api`, with the test model.
fn bench(home: &Path, url: &str, api: &str) -> Command {
    let mut cmd = hyperllama(home);
    cmd.args(["bench", "--url", url, "--api", api, "--model", "smol"]);
    cmd
}

/// A `hyperllama serve` child, killed when dropped (also when the test fails).
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates model `smol` (SmolLM2) in the store at `home` and starts a server on it.
fn serve(home: &Path) -> Server {
    let modelfile = home.join("Modelfile");
    std::fs::write(
        &modelfile,
        format!("FROM {}\n", model_path(SMOLLM2).display()),
    )
    .expect("Modelfile written");
    let o = hyperllama(home)
        .args(["create", "smol", "-f"])
        .arg(&modelfile)
        .output()
        .expect("create runs");
    assert!(o.status.success(), "create failed: {}", stderr(&o));
    let mut child = hyperllama(home)
        .arg("serve")
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .env("HYPERLLAMA_NUM_THREADS", test_threads().to_string())
        .env("HYPERLLAMA_CONTEXT_LENGTH", "1024")
        .env("HYPERLLAMA_NUM_PARALLEL", "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let addr = common::listening_address(&mut BufReader::new(child.stderr.take().expect("piped")));
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let url = format!("http://{addr}");
    Server { child, url }
}

#[test]
fn model_bench_measures_our_server_over_both_apis_and_compares() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let server = serve(home);
    let mut files = Vec::new();
    for api in ["openai", "ollama"] {
        let json = home.join(format!("{api}.json"));
        let svg = home.join(format!("{api}.svg"));
        let o = bench(home, &server.url, api)
            .args(["--workload", "single,shared-prefix", "--requests", "2"])
            .args(["--users", "2", "--system-tokens", "60", "--max-tokens", "8"])
            .args(["--label", api, "--timeout", "120", "--json"])
            .arg(&json)
            .arg("--plot")
            .arg(&svg)
            .output()
            .expect("bench runs");
        assert!(o.status.success(), "{api}: {}", stderr(&o));
        let table = stdout(&o);
        assert!(table.starts_with("workload"), "{table}");
        assert!(table.contains("shared-prefix"), "{table}");

        let r: Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("json"))
            .expect("valid JSON");
        assert_eq!(r["format"], "hyperllama-bench/1");
        assert_eq!(r["api"], api);
        assert_eq!(r["label"], api);
        assert_eq!(r["model"], "smol");
        assert_eq!(r["params"]["max_tokens"], 8);
        let results = r["results"].as_array().expect("results");
        let names: Vec<&str> = results
            .iter()
            .map(|m| m["workload"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["single", "shared-prefix"], "{api}");
        for m in results {
            let name = &m["workload"];
            assert_eq!(m["requests"], 2, "{api} {name}");
            assert_eq!(m["errors"], 0, "{api} {name}: {m}");
            // ignore_eos: every answer has exactly max_tokens tokens.
            assert_eq!(m["output_tokens"], 16, "{api} {name}: {m}");
            let ttft = &m["ttft_ms"];
            let (p50, p99) = (ttft["p50"].as_f64(), ttft["p99"].as_f64());
            assert!(p50.is_some_and(|t| t > 0.0), "{api} {name}: {m}");
            assert!(p99 >= p50, "{api} {name}: {m}");
            assert!(m["itl_ms"]["p50"].as_f64().is_some_and(|t| t > 0.0), "{m}");
            assert!(m["wall_s"].as_f64().is_some_and(|t| t > 0.0), "{m}");
            assert!(m["output_tok_s"].as_f64().is_some_and(|t| t > 0.0), "{m}");
        }
        // The OpenAI API counts the whole prompt: the 60-token system prompt at least.
        if api == "openai" {
            let tokens = results[1]["prompt_tokens"].as_u64().expect("prompt tokens");
            assert!(tokens >= 2 * 60, "{tokens}");
        }
        let svg = std::fs::read_to_string(&svg).expect("the plot is written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        files.push(json);
    }

    // --prompt-tokens sizes the sweep's prompts as the server counts them, template included;
    // a level given twice is measured twice.
    let json = home.join("sweep.json");
    let o = bench(home, &server.url, "openai")
        .args([
            "--workload",
            "sweep",
            "--concurrency",
            "2,2",
            "--requests",
            "2",
        ])
        .args(["--prompt-tokens", "100", "--max-tokens", "4", "--json"])
        .arg(&json)
        .output()
        .expect("bench runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid JSON");
    let results = r["results"].as_array().expect("results");
    assert_eq!(results.len(), 2, "{r}");
    for level in results {
        assert_eq!(level["concurrency"], 2, "{level}");
        assert_eq!(level["errors"], 0, "{level}");
        let mean = level["extras"]["prompt_tokens_mean"].as_f64();
        assert!(mean.is_some_and(|m| (96.0..=104.0).contains(&m)), "{level}");
    }

    let o = hyperllama(home)
        .args(["bench", "compare", "--markdown", "--baseline", "ollama"])
        .args(&files)
        .output()
        .expect("compare runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    let mut lines = md.lines();
    assert_eq!(lines.next(), Some("| metric | openai | ollama |"), "{md}");
    assert_eq!(lines.next(), Some("| --- | ---: | ---: |"), "{md}");
    let row = md
        .lines()
        .find(|l| l.starts_with("| single: output tok/s |"))
        .unwrap_or_else(|| panic!("{md}"));
    assert!(row.contains("x) |"), "a ratio against the baseline: {row}");
    drop(server);
}

#[test]
fn bench_reports_an_unreachable_url_in_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let o = hyperllama(dir.path())
        .args(["bench", "--url", &url, "--model", "smol"])
        .output()
        .expect("bench runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("Error: "), "{err}");
    assert!(err.contains(&url), "{err}");
    assert!(started.elapsed().as_secs() < 30, "no hang");

    // A file that is not a result.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"results\": []}").expect("written");
    let o = hyperllama(dir.path())
        .args(["bench", "compare"])
        .arg(&bad)
        .output()
        .expect("compare runs");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is not a hyperllama bench result"), "{err}");

    // An unknown workload is a usage error.
    let o = hyperllama(dir.path())
        .args(["bench", "--model", "smol", "--workload", "single,nope"])
        .output()
        .expect("bench runs");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

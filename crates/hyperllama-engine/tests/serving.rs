//! The serving-engine supervisor against real `llama-server` processes (llama.cpp's own
//! server, built by scripts/build-llama-server.sh).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use hyperllama_engine::serving::{process_alive, ServingConfig, ServingError, Supervisor};
use hyperllama_engine::Event;

/// `HYPERLLAMA_LLAMA_SERVER`, else the build beside the main checkout; missing → fail with
/// the script that builds it.
fn llama_server() -> PathBuf {
    let path = std::env::var_os("HYPERLLAMA_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let built = common::repo_root().join("build/llama.cpp/bin/llama-server");
            if built.is_file() {
                built
            } else {
                PathBuf::from("/work/main/build/llama.cpp/bin/llama-server")
            }
        });
    assert!(
        path.is_file(),
        "llama-server not found at {}: build it with scripts/build-llama-server.sh or set HYPERLLAMA_LLAMA_SERVER",
        path.display()
    );
    path
}

fn config() -> ServingConfig {
    let model = common::model_path(common::SMOLLM2);
    let mut cfg = ServingConfig::new(
        format!(
            "{} -m {{model}} --port {{port}} --host 127.0.0.1 -t 1 -c 512 -np 1",
            llama_server().display()
        ),
        model.display().to_string(),
    );
    cfg.startup_timeout = Duration::from_secs(120);
    cfg
}

fn request(max_tokens: u32) -> serde_json::Value {
    serde_json::json!({
        "messages": [{"role": "user", "content": "Count from one to twenty."}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// Collects a stream: the text, and the last event.
async fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> (String, Event) {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            Event::Text(t) => text.push_str(&t),
            Event::Token { text: t, .. } => text.push_str(&t),
            last => return (text, last),
        }
    }
    panic!("stream ended without Done or Error");
}

async fn wait_gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !process_alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_serving_streams_an_answer_with_usage() {
    let sup = Supervisor::start(config())
        .await
        .expect("llama-server starts");
    let (text, last) = collect(sup.generate(request(16))).await;
    let Event::Done(c) = last else {
        panic!("expected Done, got {last:?}");
    };
    assert!(!text.trim().is_empty());
    assert!(c.n_prompt > 0, "{c:?}");
    assert!(c.n_eval > 0 && c.n_eval <= 16, "{c:?}");
    let pid = sup.pid().expect("a child runs");
    drop(sup);
    assert!(
        wait_gone(pid).await,
        "llama-server {pid} outlived its supervisor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_serving_restarts_a_crashed_child() {
    let sup = Supervisor::start(config())
        .await
        .expect("llama-server starts");
    let pid = sup.pid().expect("a child runs");
    let mut rx = sup.generate(request(400));
    // Wait for the first text, then kill -9 the child mid-stream.
    let first = rx.recv().await.expect("an event");
    assert!(matches!(first, Event::Text(_)), "{first:?}");
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill runs");
    let (_, last) = collect(rx).await;
    let Event::Error(msg) = last else {
        panic!("expected an error event after the crash, got {last:?}");
    };
    assert!(msg.contains("serving engine"), "{msg}");
    // The supervisor restarts it; the next request is answered by the new child.
    let (text, last) = collect(sup.generate(request(8))).await;
    assert!(matches!(last, Event::Done(_)), "{last:?}");
    assert!(!text.is_empty());
    let new_pid = sup.pid().expect("a child runs");
    assert_ne!(new_pid, pid);
    sup.shutdown(Duration::from_secs(5)).await;
    assert!(wait_gone(new_pid).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_healthy_child_fails_with_its_output() {
    let mut cfg = ServingConfig::new(
        "sh -c 'echo loading weights from {model} >&2; exec sleep 1000'",
        "some-model",
    );
    cfg.startup_timeout = Duration::from_secs(2);
    let err = Supervisor::start(cfg).await.expect_err("never healthy");
    assert!(matches!(err, ServingError::Timeout { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("did not become healthy within 2s"), "{msg}");
    assert!(msg.contains("loading weights from some-model"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_that_exits_early_fails_with_its_output() {
    let cfg = ServingConfig::new("sh -c 'echo bad flag --port {port} >&2; exit 3'", "m");
    let err = Supervisor::start(cfg).await.expect_err("exits");
    let msg = err.to_string();
    assert!(
        msg.contains("exited") && msg.contains("bad flag --port"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_supervisor_kills_the_whole_group() {
    // A "server" that answers /health (python's http.server serves the directory) and
    // has a grandchild: both must go when the supervisor is dropped.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("health"), "ok").expect("write");
    let cfg = ServingConfig::new(
        format!(
            "sh -c 'sleep 1000 & exec python3 -m http.server {{port}} --bind 127.0.0.1 --directory {}'",
            dir.path().display()
        ),
        "m",
    );
    let sup = Supervisor::start(cfg).await.expect("starts");
    let pid = sup.pid().expect("pid");
    let group: Vec<u32> = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    rest.split_whitespace().nth(2)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect();
    assert!(group.len() >= 2, "server and its sleep: {group:?}");
    drop(sup);
    for p in group {
        assert!(wait_gone(p).await, "process {p} of the group survived");
    }
}

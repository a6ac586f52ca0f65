//! The official `ollama` and `openai` Python clients against the real server (issue 4:
//! clients of Ollama or of an OpenAI-compatible server work unchanged).
//!
//! The test starts a server holding SmolLM2, makes sure `.venv/clients` at the repository
//! root has both packages (`tests/clients/ensure_venv.sh` creates it with pip on first use,
//! so the first run needs the package index), and runs `tests/clients/check_clients.py`,
//! which calls generate, chat, list, show, ps, create, chat completions (with tools, and
//! streamed with usage), completions and models through the clients and asserts the fields
//! they parse. A failure shows the script's output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{start_server, MODEL};

/// The repository root (two levels above this crate).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("repository root")
        .to_owned()
}

/// Runs a command to its end; panics with its output unless it succeeds. Returns stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_python_clients() {
    let root = repo_root();
    let clients = root.join("tests/clients");
    let venv_root = root.clone();
    let python = tokio::task::spawn_blocking(move || {
        let out = run(
            Command::new("bash")
                .arg(venv_root.join("tests/clients/ensure_venv.sh"))
                .current_dir(&venv_root),
            "tests/clients/ensure_venv.sh",
        );
        PathBuf::from(out.trim())
    })
    .await
    .expect("venv task");

    let server = start_server(|_| {}).await;
    let url = server.url.clone();
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tools_template.jinja");
    let output = tokio::task::spawn_blocking(move || {
        run(
            Command::new(&python)
                .arg(clients.join("check_clients.py"))
                .arg(&url)
                .arg(MODEL)
                .arg(&template)
                // The clients must reach the local server directly.
                .env("NO_PROXY", "127.0.0.1,localhost")
                .env("no_proxy", "127.0.0.1,localhost"),
            "tests/clients/check_clients.py",
        )
    })
    .await
    .expect("client task");
    assert!(output.contains("all client checks passed"), "{output}");
    println!("{output}");
    server.stop().await;
}

//! `hyperllama serve` as a user starts it: it listens on `HYPERLLAMA_HOST`, answers, and
//! shuts down cleanly on SIGTERM.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn serve_listens_on_hyperllama_host_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperllama"))
        .arg("serve")
        .env_remove("HYPERLLAMA_LOG")
        .env("HOME", dir.path())
        .env("HYPERLLAMA_MODELS", dir.path().join("models"))
        .env("HYPERLLAMA_DB", dir.path().join("index.db"))
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let addr = common::listening_address(&mut stderr);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");

    let mut stream = TcpStream::connect(&addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("Ollama is running"), "{response}");

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = child.wait().expect("exits");
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).expect("stderr read");
    assert!(rest.contains("shutting down"), "{rest}");
}

#[test]
fn serve_rejects_a_bad_setting_with_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = Command::new(env!("CARGO_BIN_EXE_hyperllama"))
        .arg("serve")
        .env_remove("HYPERLLAMA_LOG")
        .env("HOME", dir.path())
        .env("HYPERLLAMA_MODELS", dir.path().join("models"))
        .env("HYPERLLAMA_DB", dir.path().join("index.db"))
        .env("HYPERLLAMA_MAX_LOADED_MODELS", "many")
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = common::stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("HYPERLLAMA_MAX_LOADED_MODELS"), "{err}");
}

/// One HTTP/1.1 exchange on a fresh connection; returns the whole response.
fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout set");
    stream.write_all(request.as_bytes()).expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    response
}

#[test]
fn serve_requires_hyperllama_api_key_and_env_hides_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hyperllama"))
        .arg("serve")
        .env_remove("HYPERLLAMA_LOG")
        .env("HOME", dir.path())
        .env("HYPERLLAMA_MODELS", dir.path().join("models"))
        .env("HYPERLLAMA_DB", dir.path().join("index.db"))
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .env("HYPERLLAMA_API_KEY", "cli-secret")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
    let addr = common::listening_address(&mut stderr);

    let plain = "GET /api/tags HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let response = http(&addr, plain);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let keyed = "GET /api/tags HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer cli-secret\r\nConnection: close\r\n\r\n";
    let response = http(&addr, keyed);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let probe = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert!(http(&addr, probe).starts_with("HTTP/1.1 200"));

    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    assert!(child.wait().expect("exits").success());

    let o = Command::new(env!("CARGO_BIN_EXE_hyperllama"))
        .arg("env")
        .env("HYPERLLAMA_API_KEY", "cli-secret")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("HYPERLLAMA_API_KEY"), "{out}");
    assert!(
        !out.contains("cli-secret"),
        "the key is never printed: {out}"
    );
}

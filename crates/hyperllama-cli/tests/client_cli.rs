//! The model commands with a running server: `list`, `show`, `ps`, `stop`, `cp`, `rm`,
//! `create` and `run NAME` go through its API, as Ollama's CLI does; `ps` and `stop` without a server fail
//! with one line.

mod common;

use std::io::BufReader;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use common::{model_path, stderr, stdout, NO_SERVER, SMOLLM2};

/// `hyperllama` with the sandbox's store and index, talking to `host`.
fn hyperllama(dir: &Path, host: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
    cmd.env_remove("HYPERLLAMA_LOG")
        .env_remove("HYPERLLAMA_DEBUG")
        .env_remove("HYPERLLAMA_API_KEY")
        .env("HOME", dir.join("home"))
        .env("HYPERLLAMA_MODELS", dir.join("models"))
        .env("HYPERLLAMA_DB", dir.join("index.db"))
        .env("HYPERLLAMA_HOST", host)
        .env("HYPERLLAMA_NUM_THREADS", common::test_threads().to_string())
        .stdin(Stdio::null());
    cmd
}

fn run(dir: &Path, host: &str, args: &[&str]) -> Output {
    hyperllama(dir, host)
        .args(args)
        .output()
        .expect("binary runs")
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(o));
    stdout(o)
}

/// A running `hyperllama serve`; killed when dropped.
struct Server {
    child: Child,
    host: String,
}

impl Server {
    fn start(dir: &Path) -> Self {
        let mut child = hyperllama(dir, "127.0.0.1:0")
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let mut stderr = BufReader::new(child.stderr.take().expect("piped"));
        let host = common::listening_address(&mut stderr);
        // Keep draining the server's log so that it never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server { child, host }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ps_and_stop_need_a_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [&["ps"][..], &["stop", "smollm2"][..]] {
        let o = run(dir.path(), NO_SERVER, args);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("no server is running"), "{err}");
        assert!(err.contains("hyperllama serve"), "{err}");
    }
}

#[test]
fn model_commands_talk_to_a_running_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let modelfile = d.join("Modelfile");
    std::fs::write(
        &modelfile,
        format!(
            "FROM {}\nPARAMETER temperature 0\n",
            model_path(SMOLLM2).display()
        ),
    )
    .expect("Modelfile written");
    let created = run(
        d,
        NO_SERVER,
        &["create", "smollm2", "-f", &modelfile.to_string_lossy()],
    );
    ok(&created);

    let server = Server::start(d);
    let host = server.host.as_str();

    let list = ok(&run(d, host, &["list"]));
    assert!(list.starts_with("NAME"), "{list}");
    assert!(list.contains("smollm2:latest"), "{list}");
    let ps = ok(&run(d, host, &["ps"]));
    assert_eq!(ps.lines().count(), 1, "nothing loaded yet: {ps}");

    // `run` answers through the server, which then holds the model.
    let answer = run(
        d,
        host,
        &[
            "run",
            "smollm2",
            "--num-predict",
            "8",
            "What is the capital of France?",
        ],
    );
    let text = ok(&answer);
    assert!(!text.trim().is_empty(), "an answer: {}", stderr(&answer));
    let ps = ok(&run(d, host, &["ps"]));
    assert!(ps.contains("smollm2:latest"), "{ps}");
    assert!(ps.contains("100% CPU"), "{ps}");
    assert!(ps.contains("minutes from now"), "{ps}");

    // The same answer again (temperature 0): the server's answer, not a second model's.
    let again = ok(&run(
        d,
        host,
        &[
            "run",
            "smollm2",
            "--num-predict",
            "8",
            "What is the capital of France?",
        ],
    ));
    assert_eq!(again, text);

    let show = ok(&run(d, host, &["show", "smollm2"]));
    assert!(show.contains("architecture"), "{show}");
    assert!(show.contains("llama"), "{show}");
    let params = ok(&run(d, host, &["show", "smollm2", "--parameters"]));
    assert!(params.contains("temperature"), "{params}");

    ok(&run(d, host, &["stop", "smollm2"]));
    let ps = ok(&run(d, host, &["ps"]));
    assert!(!ps.contains("smollm2"), "unloaded: {ps}");
    let o = run(d, host, &["stop", "smollm2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("couldn't find a running model"),
        "{}",
        stderr(&o)
    );

    // `create` through the server: a GGUF file (its blob is uploaded unless the server has
    // it), and a model derived from a stored one.
    let other = d.join("other");
    std::fs::create_dir_all(&other).expect("dir");
    std::fs::copy(model_path(SMOLLM2), other.join("weights.gguf")).expect("copied");
    std::fs::write(
        other.join("Modelfile"),
        "FROM ./weights.gguf\nSYSTEM Be brief.\n",
    )
    .expect("Modelfile");
    let made = run(
        d,
        host,
        &[
            "create",
            "fromfile",
            "-f",
            &other.join("Modelfile").to_string_lossy(),
        ],
    );
    ok(&made);
    assert!(stderr(&made).contains("success"), "{}", stderr(&made));
    std::fs::write(
        d.join("Derived"),
        "FROM smollm2\nPARAMETER stop <end>\nPARAMETER stop <stop>\nPARAMETER num_ctx 512\n",
    )
    .expect("Modelfile");
    ok(&run(
        d,
        host,
        &[
            "create",
            "derived",
            "-f",
            &d.join("Derived").to_string_lossy(),
        ],
    ));
    let list = ok(&run(d, host, &["list"]));
    assert!(
        list.contains("fromfile:latest") && list.contains("derived:latest"),
        "{list}"
    );
    let params = ok(&run(d, host, &["show", "derived", "--parameters"]));
    assert!(
        params.contains("<end>") && params.contains("<stop>") && params.contains("512"),
        "{params}"
    );
    let system = ok(&run(d, host, &["show", "fromfile", "--system"]));
    assert_eq!(system.trim(), "Be brief.");

    ok(&run(d, host, &["cp", "smollm2", "copy"]));
    assert!(ok(&run(d, host, &["list"])).contains("copy:latest"));
    ok(&run(d, host, &["rm", "copy"]));
    assert!(!ok(&run(d, host, &["list"])).contains("copy:latest"));

    // A model the server does not have: the server's own message, one line.
    let o = run(d, host, &["run", "nosuchmodel", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// POSTs `body` to `path` on `host` (one HTTP/1.1 exchange) and returns the status and the
/// body as JSON.
fn post_json(host: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(host).expect("connects");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response read");
    let (head, payload) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let json = serde_json::from_str(payload).unwrap_or_else(|e| panic!("{e}: {payload}"));
    (status, json)
}

/// `DRAFT` in a Modelfile: a draft model with another vocabulary is refused by `create` with
/// one line; SmolLM2 as its own draft model is created, and the server's answer at
/// temperature 0 carries the draft statistics with nearly every draft accepted.
#[test]
fn model_create_with_a_draft_model_then_generate_through_the_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let smol = model_path(SMOLLM2);
    let bad = d.join("Modelfile.bad");
    let gemma = model_path(common::GEMMA3);
    std::fs::write(
        &bad,
        format!("FROM {}\nDRAFT {}\n", smol.display(), gemma.display()),
    )
    .expect("written");
    let o = run(
        d,
        NO_SERVER,
        &["create", "bad", "-f", &bad.to_string_lossy()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("Error: DRAFT "), "{err}");
    assert!(last.contains("cannot draft for FROM"), "{err}");
    assert!(last.contains("262144 tokens, the model's 49152"), "{err}");

    let good = d.join("Modelfile");
    std::fs::write(&good, format!("FROM {0}\nDRAFT {0}\n", smol.display())).expect("written");
    ok(&run(
        d,
        NO_SERVER,
        &["create", "drafted", "-f", &good.to_string_lossy()],
    ));
    let server = Server::start(d);
    let (status, v) = post_json(
        &server.host,
        "/api/generate",
        &serde_json::json!({ "model": "drafted", "stream": false,
            "prompt": "Write a short poem about the sea.",
            "options": { "temperature": 0, "num_predict": 32 } }),
    );
    assert_eq!(status, 200, "{v}");
    let n = v["draft_n"].as_u64().expect("drafts were verified");
    let accepted = v["draft_n_accepted"].as_u64().expect("accepted count");
    assert!(accepted > 0 && accepted * 10 >= n * 9, "{v}");
}

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

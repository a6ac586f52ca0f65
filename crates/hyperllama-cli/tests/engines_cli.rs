//! The one configuration, hardware detection without a driver, and a model routed to
//! llama.cpp's `llama-server` through a real `hyperllama serve`, down to SIGTERM leaving no
//! orphan.
//!
//! Tests named `model_*` load a model and run one at a time (see `.config/nextest.toml`).

mod common;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{model_path, stderr, stdout, test_threads, SMOLLM2};
use serde_json::{json, Value};

fn hyperllama(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
    cmd.env_remove("HYPERLLAMA_LOG")
        .env_remove("HYPERLLAMA_DEBUG")
        .env_remove("HYPERLLAMA_CONFIG")
        .env_remove("HYPERLLAMA_NUM_PARALLEL")
        .env("HOME", home)
        .env("HYPERLLAMA_MODELS", home.join("models"))
        .env("HYPERLLAMA_DB", home.join("index.db"))
        .stdin(Stdio::null());
    cmd
}

/// `HYPERLLAMA_LLAMA_SERVER`, else the build beside the main checkout.
fn llama_server() -> PathBuf {
    let path = std::env::var_os("HYPERLLAMA_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/main/build/llama.cpp/bin/llama-server"));
    assert!(
        path.is_file(),
        "llama-server not found at {}: build it with scripts/build-llama-server.sh or set HYPERLLAMA_LLAMA_SERVER",
        path.display()
    );
    path
}

#[test]
fn config_prints_each_value_with_its_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("hl.toml");
    std::fs::write(&cfg, "[server]\nmax_queue = 64\n").expect("written");
    let o = hyperllama(dir.path())
        .arg("config")
        .env("HYPERLLAMA_CONFIG", &cfg)
        .env("HYPERLLAMA_NUM_PARALLEL", "3")
        .output()
        .expect("runs");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} in {out}"))
            .to_owned()
    };
    let q = line("server.max_queue ");
    assert!(
        q.contains("64") && q.ends_with(&format!("{}:2", cfg.display())),
        "{q}"
    );
    let p = line("server.num_parallel ");
    assert!(
        p.contains('3') && p.ends_with("env HYPERLLAMA_NUM_PARALLEL"),
        "{p}"
    );
    let c = line("server.context_length ");
    assert!(c.contains("4096") && c.ends_with("default"), "{c}");
    assert!(out.contains("llama-server"), "{out}");
}

#[test]
fn bad_config_is_one_line_with_key_and_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("hl.toml");
    std::fs::write(&cfg, "[server]\n# queue\nmax_queue = \"many\"\n").expect("written");
    let o = hyperllama(dir.path())
        .arg("list")
        .env("HYPERLLAMA_CONFIG", &cfg)
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(
        err.trim(),
        format!(
            "Error: {}:3: `server.max_queue`: must be a positive integer, not \"many\"",
            cfg.display()
        )
    );
    // The default file is read too.
    std::fs::create_dir_all(dir.path().join(".hyperllama")).expect("dir");
    std::fs::write(dir.path().join(".hyperllama/config.toml"), "[sever]\n").expect("written");
    let o = hyperllama(dir.path()).arg("config").output().expect("runs");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("config.toml:1: unknown field `sever`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn info_works_without_an_nvidia_driver() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = hyperllama(dir.path()).arg("info").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("CPU:") && out.contains("Memory:"), "{out}");
    if !Path::new("/proc/driver/nvidia").exists() {
        assert!(out.contains("GPUs:             none found"), "{out}");
        assert!(out.contains("NVML:"), "{out}");
    }
}

/// A `hyperllama serve` child, killed when dropped (also when the test fails).
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first: a failing test must not leave the engine behind either.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(pid)
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

/// Creates `smol` from SmolLM2 in the store under `home`.
fn create_smol(home: &Path) {
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
}

#[test]
fn model_serve_routes_a_gguf_model_to_llama_server_and_sigterm_leaves_no_orphan() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let cfg = home.join("hl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engines.llama-server]\ncommand = \"{} -m {{model}} --host 127.0.0.1 --port {{port}} -t 1 -c 1024 -np 1\"\nstartup_timeout_secs = 120\n\n[[routes]]\nmodel = \"smol*\"\nengine = \"llama-server\"\n",
            llama_server().display()
        ),
    )
    .expect("written");
    create_smol(home);
    // `show` says which engine serves it and why.
    let o = hyperllama(home)
        .args(["show", "smol"])
        .env("HYPERLLAMA_CONFIG", &cfg)
        .env("HYPERLLAMA_HOST", "127.0.0.1:1")
        .output()
        .expect("show runs");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.contains("Engine") && out.contains("llama-server    route at"),
        "{out}"
    );
    let mut child = hyperllama(home)
        .arg("serve")
        .env("HYPERLLAMA_CONFIG", &cfg)
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .env("HYPERLLAMA_NUM_THREADS", test_threads().to_string())
        .env("HYPERLLAMA_CONTEXT_LENGTH", "1024")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let addr = common::listening_address(&mut err);
    let server = Server {
        url: format!("http://{addr}"),
        child,
    };
    // Drain the rest of stderr so the server never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{}{path}", server.url)).json(&body);
        rt.block_on(async move {
            let resp = req.send().await.expect("sent");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("body"))
        })
    };
    let (status, body) = post(
        "/api/chat",
        json!({"model": "smol", "stream": false, "messages": [{"role": "user", "content": "Say hi."}], "options": {"num_predict": 8, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        !v["message"]["content"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
    assert!(v["eval_count"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["prompt_eval_count"].as_u64().unwrap_or(0) > 0, "{v}");

    let (status, body) = post(
        "/api/generate",
        json!({"model": "smol", "prompt": "Count to five.", "options": {"num_predict": 8}}),
    );
    assert_eq!(status, 200, "{body}");
    let lines: Vec<Value> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert!(lines.len() >= 2, "streamed: {body}");
    let last = lines.last().expect("a line");
    assert_eq!(last["done"], true, "{last}");
    assert!(last["eval_count"].as_u64().unwrap_or(0) > 0, "{last}");

    let (status, body) = post(
        "/v1/chat/completions",
        json!({"model": "smol", "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{v}");

    let ps: Value = rt
        .block_on(async {
            http.get(format!("{}/api/ps", server.url))
                .send()
                .await
                .expect("sent")
                .json()
                .await
        })
        .expect("JSON");
    let m = &ps["models"][0];
    assert_eq!(m["engine"], "llama-server", "{ps}");
    assert!(
        m["engine_reason"]
            .as_str()
            .unwrap_or("")
            .contains("hl.toml:5"),
        "{ps}"
    );
    assert!(m["size"].as_u64().unwrap_or(0) > 0, "{ps}");

    // Unloading the model (empty prompt, keep_alive 0) stops its engine; the next request
    // starts a new one.
    let pid = server.child.id();
    let first = children_of(pid);
    assert_eq!(first.len(), 1, "one llama-server child: {first:?}");
    let (status, body) = post("/api/generate", json!({"model": "smol", "keep_alive": 0}));
    assert_eq!(status, 200, "{body}");
    for _ in 0..100 {
        if !alive(first[0]) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(first[0]),
        "llama-server {} outlived the unload",
        first[0]
    );
    let (status, body) = post("/api/generate", json!({"model": "smol"}));
    assert_eq!(status, 200, "{body}");

    // The engine is a child of the server; SIGTERM to the server leaves none behind.
    let engines = children_of(pid);
    assert_eq!(engines.len(), 1, "one llama-server child: {engines:?}");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let mut server = server;
    let exit = server.child.wait().expect("server exits");
    assert!(exit.success(), "{exit:?}");
    for _ in 0..100 {
        if !engines.iter().any(|p| alive(*p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !engines.iter().any(|p| alive(*p)),
        "llama-server {engines:?} outlived hyperllama serve"
    );
}

#[test]
fn model_sigkill_of_serve_takes_the_engine_with_it() {
    if !Path::new("/usr/bin/setpriv").is_file() && !Path::new("/bin/setpriv").is_file() {
        panic!("this test needs util-linux's setpriv (the parent-death signal)");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let cfg = home.join("hl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engines.llama-server]\ncommand = \"{} -m {{model}} --host 127.0.0.1 --port {{port}} -t 1 -c 512 -np 1\"\n\n[[routes]]\nengine = \"llama-server\"\n",
            llama_server().display()
        ),
    )
    .expect("written");
    create_smol(home);
    let mut child = hyperllama(home)
        .arg("serve")
        .env("HYPERLLAMA_CONFIG", &cfg)
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let addr = common::listening_address(&mut err);
    let mut server = Server {
        url: format!("http://{addr}"),
        child,
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    // An empty prompt loads the model (starts the engine).
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/generate", server.url))
            .json(&json!({"model": "smol"}))
            .send()
            .await
            .expect("sent")
            .status()
    });
    assert!(status.is_success(), "{status}");
    let engines = children_of(server.child.id());
    assert_eq!(engines.len(), 1, "one llama-server child: {engines:?}");
    server.child.kill().expect("SIGKILL");
    server.child.wait().expect("reaped");
    for _ in 0..100 {
        if !engines.iter().any(|p| alive(*p)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !engines.iter().any(|p| alive(*p)),
        "llama-server {engines:?} outlived a SIGKILLed hyperllama serve"
    );
}

/// A Hugging Face style checkout in `dir/name`: `config.json`, a small but valid
/// `model.safetensors`, and SmolLM2's GGUF linked in as `smol.gguf` for the stand-in engine.
fn checkout(dir: &Path, name: &str) -> PathBuf {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).expect("folder");
    std::fs::write(
        folder.join("config.json"),
        r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":576,"max_position_embeddings":8192}"#,
    )
    .expect("config written");
    let header = br#"{"model.norm.weight":{"dtype":"BF16","shape":[576],"data_offsets":[0,1152]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + 1152, 0);
    std::fs::write(folder.join("model.safetensors"), bytes).expect("safetensors written");
    std::os::unix::fs::symlink(model_path(SMOLLM2), folder.join("smol.gguf")).expect("linked");
    folder
}

/// A safetensors folder and a Hugging Face id created through `hyperllama create` against a
/// running `hyperllama serve`, the folder served by the engine its format is routed to, and
/// the id refused with 400 because no configured engine serves `hf` here.
///
/// vLLM, SGLang and MAX cannot run on this machine (2 CPU cores, no GPU, offline), so the
/// engine routed for `safetensors` is llama.cpp's own `llama-server` standing in for them: it
/// is a real OpenAI-compatible server process under the same supervisor, started with the
/// folder path substituted for `{model}` exactly as `vllm serve {model}` would be. It cannot
/// read safetensors, so its command loads the GGUF placed inside the folder
/// (`{model}/smol.gguf`); everything on HyperLlama's side (the reference layer, routing by
/// format, substitution, health, forwarding, `/api/ps`) is what a vLLM-served model goes
/// through.
#[test]
fn model_safetensors_folder_is_created_through_the_server_and_served_by_its_engine() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let folder = checkout(home, "checkout");
    std::fs::create_dir(home.join("broken")).expect("dir");
    std::fs::write(home.join("broken/model.safetensors"), b"").expect("written");
    let cfg = home.join("hl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[engines.stand-in]\ncommand = \"{} --model {{model}}/smol.gguf --host 127.0.0.1 --port {{port}} -t 1 -c 1024 -np 1\"\nformats = [\"safetensors\"]\nstartup_timeout_secs = 120\n\n[[routes]]\nformat = \"safetensors\"\nengine = \"stand-in\"\n",
            llama_server().display()
        ),
    )
    .expect("written");
    let mut child = hyperllama(home)
        .arg("serve")
        .env("HYPERLLAMA_CONFIG", &cfg)
        .env("HYPERLLAMA_HOST", "127.0.0.1:0")
        .env("HYPERLLAMA_NUM_THREADS", test_threads().to_string())
        .env("HYPERLLAMA_CONTEXT_LENGTH", "1024")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut err = BufReader::new(child.stderr.take().expect("piped"));
    let addr = common::listening_address(&mut err);
    let server = Server {
        url: format!("http://{addr}"),
        child,
    };
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    // `create` posts to the server: the folder as its absolute path, the id as written.
    let create = |model: &str, from: &str| {
        let modelfile = home.join(format!("Modelfile.{model}"));
        std::fs::write(&modelfile, format!("FROM {from}\n")).expect("Modelfile written");
        hyperllama(home)
            .args(["create", model, "-f"])
            .arg(&modelfile)
            .env("HYPERLLAMA_HOST", &addr)
            .output()
            .expect("create runs")
    };
    let o = create("st", "checkout");
    assert!(o.status.success(), "create failed: {}", stderr(&o));
    assert!(stderr(&o).contains("success"), "{}", stderr(&o));
    let o = create("hfm", "hf:HuggingFaceTB/SmolLM2-135M-Instruct");
    assert!(o.status.success(), "create failed: {}", stderr(&o));
    let o = create("bad", "broken");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("has no config.json"), "{}", stderr(&o));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{}{path}", server.url)).json(&body);
        rt.block_on(async move {
            let resp = req.send().await.expect("sent");
            let status = resp.status().as_u16();
            (status, resp.text().await.expect("body"))
        })
    };
    let get = |path: &str| -> Value {
        let req = http.get(format!("{}{path}", server.url));
        rt.block_on(async move { req.send().await.expect("sent").json().await.expect("JSON") })
    };

    // list and show: the format, no GGUF metadata, the engine and why.
    let tags = get("/api/tags");
    let st = tags["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "st:latest"))
        .unwrap_or_else(|| panic!("st in {tags}"));
    assert_eq!(st["details"]["format"], "safetensors", "{st}");
    assert_eq!(st["details"]["family"], "llama", "{st}");
    assert!(st["size"].as_u64().unwrap_or(0) > 1152, "{st}");
    let hfm = tags["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "hfm:latest"))
        .unwrap_or_else(|| panic!("hfm in {tags}"));
    assert_eq!(hfm["details"]["format"], "huggingface", "{hfm}");
    let (status, body) = post("/api/show", json!({"model": "st"}));
    assert_eq!(status, 200, "{body}");
    let show: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(show["engine"], "stand-in", "{show}");
    assert!(
        show["engine_reason"]
            .as_str()
            .unwrap_or("")
            .contains("hl.toml:6"),
        "{show}"
    );
    let canonical = std::fs::canonicalize(&folder).expect("canonical");
    assert_eq!(
        show["model_info"]["hyperllama.reference"],
        canonical.display().to_string(),
        "{show}"
    );
    assert!(
        show["modelfile"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("FROM {}\n", canonical.display())),
        "{show}"
    );
    let o = hyperllama(home)
        .args(["show", "st"])
        .env("HYPERLLAMA_HOST", &addr)
        .output()
        .expect("show runs");
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("format ") && l.ends_with(" safetensors"))
            && out.contains("stand-in    route at"),
        "{out}"
    );

    // A real answer through both APIs, from the engine routed for the format.
    let (status, body) = post(
        "/api/chat",
        json!({"model": "st", "stream": false, "messages": [{"role": "user", "content": "Say hi."}], "options": {"num_predict": 8, "temperature": 0}}),
    );
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert!(
        !v["message"]["content"].as_str().unwrap_or("").is_empty(),
        "{v}"
    );
    assert!(v["eval_count"].as_u64().unwrap_or(0) > 0, "{v}");
    let (status, body) = post(
        "/v1/chat/completions",
        json!({"model": "st", "stream": true, "max_tokens": 8, "messages": [{"role": "user", "content": "Hello"}]}),
    );
    assert_eq!(status, 200, "{body}");
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let text: String = data
        .iter()
        .filter(|d| **d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk JSON"))
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(!text.is_empty(), "{body}");

    let ps = get("/api/ps");
    let m = &ps["models"][0];
    assert_eq!(m["name"], "st:latest", "{ps}");
    assert_eq!(m["engine"], "stand-in", "{ps}");
    assert!(
        m["engine_reason"]
            .as_str()
            .unwrap_or("")
            .contains("hl.toml:6"),
        "{ps}"
    );
    assert_eq!(m["details"]["format"], "safetensors", "{ps}");
    assert_eq!(m["size_vram"], 0, "no GPU here: {ps}");
    assert_eq!(children_of(server.child.id()).len(), 1, "one engine");

    // No configured engine serves a Hugging Face id here: 400 naming the format and the key.
    let (status, body) = post(
        "/api/chat",
        json!({"model": "hfm", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 400, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    let message = v["error"].as_str().unwrap_or("");
    assert!(
        message.contains("huggingface model") && message.contains("formats = [\"hf\"]"),
        "{message}"
    );
    let (status, body) = post(
        "/v1/chat/completions",
        json!({"model": "hfm", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = post("/api/show", json!({"model": "hfm"}));
    assert_eq!(status, 200, "{body}");
    let show: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(show["engine"], "none", "{show}");
    assert_eq!(show["details"]["format"], "huggingface", "{show}");
}

/// Without a server, `create`, `list`, `show` and `run` work on the store: the folder is
/// referenced, listed with its size, shown with its format and engine, and `run` says that it
/// needs an engine under `hyperllama serve`.
#[test]
fn a_safetensors_folder_is_created_listed_and_shown_without_a_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let home = dir.path();
    let folder = checkout(home, "checkout");
    let modelfile = home.join("Modelfile");
    std::fs::write(&modelfile, "FROM checkout\nSYSTEM Be brief.\n").expect("written");
    let run = |args: &[&str]| {
        hyperllama(home)
            .args(args)
            .env("HYPERLLAMA_HOST", common::NO_SERVER)
            .output()
            .expect("runs")
    };
    let o = run(&["create", "st", "-f", &modelfile.display().to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["list"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = out
        .lines()
        .find(|l| l.starts_with("st:latest"))
        .unwrap_or_else(|| panic!("st in {out}"));
    assert!(line.contains(" KB") || line.contains(" MB"), "{line}");
    let o = run(&["show", "st"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let canonical = std::fs::canonicalize(&folder).expect("canonical");
    for needle in [
        "safetensors".to_owned(),
        canonical.display().to_string(),
        "llama".to_owned(),
        "8192".to_owned(),
        "BF16".to_owned(),
        "Be brief.".to_owned(),
    ] {
        assert!(out.contains(&needle), "{needle} in {out}");
    }
    // No engine for safetensors is installed here: show says so and what to configure.
    assert!(
        out.contains("none") && out.contains("formats = [\"safetensors\"]"),
        "{out}"
    );
    let o = run(&["show", "st", "--modelfile"]);
    assert!(
        stdout(&o).contains(&format!("FROM {}\n", canonical.display())),
        "{}",
        stdout(&o)
    );
    let o = run(&["run", "st", "hi"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is a safetensors model, which runs in an external engine"),
        "{}",
        stderr(&o)
    );
}

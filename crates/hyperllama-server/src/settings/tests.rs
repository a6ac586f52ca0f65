//! Tests of the settings: sources and precedence, validation, engine routes.

use super::engines::glob;
use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(a, b)| ((*a).into(), (*b).into()))
        .collect();
    move |k| map.get(k).cloned()
}

const FILE: &str = r#"
[server]
max_queue = 64
origins = ["http://a.example", "http://b.example"]
keep_alive = "10m"

[engines.llama-server]
command = "/opt/llama-server -m {model} --port {port} -t 1"

[[routes]]
model = "smol*"
engine = "llama-server"
"#;

#[test]
fn env_overrides_file_overrides_default_with_sources() {
    let path = Path::new("/etc/hl.toml");
    let s = Settings::load(
        Some((path, FILE)),
        env_of(&[("HYPERLLAMA_KEEP_ALIVE", "-1")]),
    )
    .expect("valid");
    assert_eq!(s.positive("server.max_queue"), Some(64));
    assert_eq!(
        s.value("server.max_queue")
            .map(|v| v.source.to_string())
            .as_deref(),
        Some("/etc/hl.toml:3")
    );
    assert_eq!(s.list("server.origins").len(), 2);
    assert_eq!(s.get("server.keep_alive"), Some("-1"));
    assert_eq!(
        s.value("server.keep_alive").map(|v| v.source.clone()),
        Some(Source::Env("HYPERLLAMA_KEEP_ALIVE".into()))
    );
    assert_eq!(
        s.value("server.num_parallel").map(|v| v.source.clone()),
        Some(Source::Default)
    );
    assert_eq!(
        s.engine("llama-server")
            .expect("defined")
            .source
            .to_string(),
        "/etc/hl.toml:7"
    );
}

#[test]
fn bad_values_name_key_and_line() {
    let path = Path::new("c.toml");
    let err =
        Settings::load(Some((path, "[server]\n\nmax_queue = 0\n")), env_of(&[])).expect_err("bad");
    assert_eq!(
        err.to_string(),
        "c.toml:3: `server.max_queue`: must be a positive integer, not \"0\""
    );
    let err =
        Settings::load(Some((path, "[server]\nmax_qeue = 3\n")), env_of(&[])).expect_err("unknown");
    assert!(
        err.to_string()
            .starts_with("c.toml:2: `server.max_qeue`: unknown key"),
        "{err}"
    );
    let err = Settings::load(Some((path, "[server\n")), env_of(&[])).expect_err("syntax");
    assert!(err.to_string().starts_with("c.toml:1: "), "{err}");
    let err = Settings::load(Some((path, "[[routes]]\nengine = \"nope\"\n")), env_of(&[]))
        .expect_err("engine");
    assert!(
        err.to_string()
            .starts_with("c.toml:2: `routes.engine`: no engine \"nope\""),
        "{err}"
    );
    let err = Settings::load(None, env_of(&[("HYPERLLAMA_MAX_MEMORY", "lots")])).expect_err("env");
    assert!(
        err.to_string().starts_with("HYPERLLAMA_MAX_MEMORY: "),
        "{err}"
    );
}

#[test]
fn engine_choice_follows_routes_format_installation_and_hardware() {
    let s = Settings::load(Some((Path::new("c.toml"), FILE)), env_of(&[])).expect("valid");
    let all = |_: &str| true;
    let none = |_: &str| false;
    let cpu = Machine { n_gpus: 0 };
    let gpu = Machine { n_gpus: 1 };
    let c = s
        .choose_engine("smollm2:135m", ModelFormat::Gguf, all, cpu)
        .expect("routed");
    assert_eq!(c.engine, "llama-server");
    assert!(c.reason.contains("c.toml:10"), "{c:?}");
    let c = s
        .choose_engine("smollm2:135m", ModelFormat::Gguf, none, cpu)
        .expect("fallback");
    assert_eq!(c.engine, LLAMA_CPP);
    assert!(c.reason.contains("not on PATH"), "{c:?}");
    assert_eq!(
        s.choose_engine("gemma3", ModelFormat::Gguf, all, cpu)
            .expect("gguf")
            .engine,
        LLAMA_CPP
    );
    // safetensors: vllm first; it needs a GPU, so on CPU the first installed one that does not.
    assert_eq!(
        s.choose_engine("org/m", ModelFormat::HuggingFace, all, gpu)
            .expect("hf")
            .engine,
        "vllm"
    );
    assert_eq!(
        s.choose_engine("org/m", ModelFormat::HuggingFace, all, cpu)
            .expect("hf")
            .engine,
        "max"
    );
    let only_vllm = |p: &str| p == "vllm";
    assert_eq!(
        s.choose_engine("org/m", ModelFormat::HuggingFace, only_vllm, gpu)
            .expect("hf")
            .engine,
        "vllm"
    );
    let err = s
        .choose_engine("org/m", ModelFormat::HuggingFace, only_vllm, cpu)
        .expect_err("no gpu");
    assert!(err.contains("vllm needs an NVIDIA GPU"), "{err}");
}

#[test]
fn sizes_and_globs() {
    assert_eq!(parse_bytes("8GiB"), Ok(8 << 30));
    assert_eq!(parse_bytes("1.5 GB"), Ok(1_500_000_000));
    assert_eq!(parse_bytes("4096"), Ok(4096));
    assert!(parse_bytes("-1").is_err());
    assert!(glob("smol*", "SmolLM2:135m"));
    assert!(glob("*:q4*", "x:q4_k"));
    assert!(!glob("gemma*", "smollm"));
}

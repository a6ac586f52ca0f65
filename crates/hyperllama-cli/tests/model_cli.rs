//! `hyperllama` as a user runs it: real binary, real models, real standard streams.
//!
//! Tests named `model_*` load a model and run one at a time (see `.config/nextest.toml`).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{model_path, repo_root, stderr, stdout, GEMMA3, SMOLLM2};
use hyperllama_models::gguf::{GgmlType, GgufBuilder};

fn hyperllama() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hyperllama"));
    cmd.env_remove("HYPERLLAMA_LOG")
        .env("HYPERLLAMA_HOST", common::NO_SERVER)
        .env_remove("HYPERLLAMA_DEBUG");
    cmd
}

fn run_with_stdin(cmd: &mut Command, stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("binary finishes")
}

/// A failure is one `Error: ...` line on stderr and exit status 1.
fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("Error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[derive(serde::Deserialize)]
struct Golden {
    prompt: String,
    n_predict: usize,
    output: String,
}

#[test]
fn model_run_raw_streams_llama_cpps_greedy_answer() {
    // scripts/test.sh records llama.cpp's output on the machine that runs the tests (CPU
    // kernels round differently on other CPUs); else the committed recording.
    let dir = std::env::var_os("HYPERLLAMA_GOLDENS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/golden/fidelity"));
    let text = std::fs::read_to_string(dir.join("smollm2-capital.json")).expect("golden present");
    let g: Golden = serde_json::from_str(&text).expect("valid golden");
    let o = hyperllama()
        .arg("run")
        .arg(model_path(SMOLLM2))
        .args(["--raw", "--temperature", "0", "--num-predict"])
        .arg(g.n_predict.to_string())
        .arg(&g.prompt)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", g.output));
}

#[test]
fn model_run_answers_a_chat_prompt_with_both_models_and_verbose_stats() {
    for file in [SMOLLM2, GEMMA3] {
        let o = hyperllama()
            .arg("run")
            .arg(model_path(file))
            .args([
                "--temperature",
                "0",
                "--num-predict",
                "12",
                "--verbose",
                "--system",
                "Answer briefly.",
            ])
            .arg("What is the capital of France?")
            .output()
            .expect("runs");
        assert!(o.status.success(), "{file}: {}", stderr(&o));
        assert!(!stdout(&o).trim().is_empty(), "{file}: empty answer");
        let err = stderr(&o);
        for key in [
            "total duration:",
            "load duration:",
            "prompt eval count:",
            "prompt cache count:",
            "prompt eval duration:",
            "prompt eval rate:",
            "eval count:",
            "eval duration:",
            "eval rate:",
        ] {
            assert!(err.contains(key), "{file}: missing {key:?} in {err}");
        }
    }
}

#[test]
fn model_run_reads_a_piped_prompt() {
    let o = run_with_stdin(
        hyperllama().arg("run").arg(model_path(SMOLLM2)).args([
            "--raw",
            "--temperature",
            "0",
            "--num-predict",
            "8",
        ]),
        "The capital of France is",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Paris"), "{}", stdout(&o));
}

#[test]
fn model_interactive_chat_keeps_history_and_handles_multiline_and_bye() {
    let o = run_with_stdin(
        hyperllama().arg("run").arg(model_path(SMOLLM2)).args([
            "--interactive",
            "--verbose",
            "--temperature",
            "0",
            "--num-predict",
            "6",
        ]),
        "My name is Ada.\n\"\"\"\nWhat is\nmy name?\n\"\"\"\n/unknown\n/bye\nnever read\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.matches(">>> ").count() >= 3, "{out}");
    assert!(
        out.contains("... "),
        "multi-line continuation prompt expected: {out}"
    );
    assert!(out.contains("Unknown command '/unknown'"), "{out}");
    // The second turn's prompt holds the first exchange (evaluated or taken from the cache).
    let field = |name: &str| -> Vec<usize> {
        stderr(&o)
            .lines()
            .filter_map(|l| l.strip_prefix(name))
            .map(|l| {
                l.trim()
                    .trim_end_matches(" token(s)")
                    .parse()
                    .expect("a count")
            })
            .collect()
    };
    let evaluated = field("prompt eval count:");
    let cached = field("prompt cache count:");
    assert_eq!(evaluated.len(), 2, "{}", stderr(&o));
    let totals: Vec<usize> = evaluated.iter().zip(&cached).map(|(e, c)| e + c).collect();
    assert!(totals[1] > totals[0] + 6, "history not kept: {totals:?}");
    assert!(
        cached[1] > 0,
        "the first turn was not reused from the prefix cache: {cached:?}"
    );
}

#[test]
fn model_prompt_longer_than_the_context_fails_cleanly() {
    let o = hyperllama()
        .arg("run")
        .arg(model_path(SMOLLM2))
        .args(["--raw", "--num-ctx", "64"])
        .arg("word ".repeat(200))
        .output()
        .expect("runs");
    assert_clean_failure(&o, "context holds 64");
}

#[test]
fn model_unsupported_architecture_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alien.gguf");
    GgufBuilder::new(3)
        .kv("general.architecture", "alienformer")
        .kv("alienformer.context_length", 128u32)
        .tensor(
            "token_embd.weight",
            vec![4, 4],
            GgmlType::F32,
            vec![0u8; 64],
        )
        .write(&path)
        .expect("fixture written");
    let o = hyperllama()
        .arg("run")
        .arg(&path)
        .arg("hi")
        .output()
        .expect("runs");
    assert_clean_failure(&o, "architecture 'alienformer'");
}

fn run_bad_file(path: &Path, needle: &str) {
    let o = hyperllama()
        .arg("run")
        .arg(path)
        .arg("hi")
        .output()
        .expect("runs");
    assert_clean_failure(&o, needle);
}

#[test]
fn bad_model_files_fail_with_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_bad_file(&dir.path().join("missing.gguf"), "not found");
    let text = dir.path().join("text.gguf");
    std::fs::write(&text, "hello, this is not a model").expect("written");
    run_bad_file(&text, "not a GGUF file");
    let truncated = dir.path().join("truncated.gguf");
    let bytes = GgufBuilder::new(3)
        .kv("general.architecture", "llama")
        .kv("general.name", "truncated on purpose")
        .to_bytes();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("written");
    run_bad_file(&truncated, "truncated");
    run_bad_file(dir.path(), "is not a usable GGUF file");
}

#[test]
fn bad_flags_are_usage_errors() {
    let o = hyperllama()
        .args(["run", "x.gguf", "--temperature", "hot"])
        .output()
        .expect("runs");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("invalid value 'hot'"));
}

#[test]
fn info_describes_the_machine() {
    let o = hyperllama().arg("info").output().expect("runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for key in [
        "CPU:",
        "Cores:",
        "SIMD:",
        "Memory:",
        "GPUs:",
        "Compute devices:",
    ] {
        assert!(out.contains(key), "missing {key} in {out}");
    }
    let o = hyperllama()
        .args(["info", "--json"])
        .output()
        .expect("runs");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(v["n_logical_cores"].as_u64().expect("a number") >= 1);
}

// Shared helpers for tests that use the real test models. The CLI's tests include this file
// too, so it holds items only (no inner attributes).

use std::path::PathBuf;

/// SmolLM2-135M-Instruct, Q4_1 (llama architecture).
#[allow(dead_code)]
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M, Q4_K_M (gemma3 architecture, sliding-window attention, no chat template).
#[allow(dead_code)]
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// Path of a test model; a missing model fails the test with the command that fetches it.
#[allow(dead_code)]
pub fn model_path(file: &str) -> PathBuf {
    let dir = std::env::var_os("HYPERLLAMA_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/hyperllama/test-models")
        });
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: run scripts/fetch-models.sh (it downloads, verifies and caches the test models)",
        path.display()
    );
    path
}

/// The repository root (for golden files).
#[allow(dead_code)]
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Threads for a test's llama.cpp context: `HYPERLLAMA_TEST_THREADS`, else every core.
/// Set it to 1 while other work shares the machine: llama.cpp's spinning worker threads slow
/// down a hundredfold when they compete for the cores, a single thread only proportionally.
#[allow(dead_code)]
pub fn test_threads() -> usize {
    std::env::var("HYPERLLAMA_TEST_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Each position's most likely tokens with their log-probabilities.
#[allow(dead_code)]
pub type TopLogprobs = Vec<Vec<(hyperllama_core::TokenId, f32)>>;

/// A greedy stream's tokens with each position's top log-probabilities (asked for), until
/// its `Done`; an error event fails the test.
#[allow(dead_code)]
pub fn collect_logprobs(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<hyperllama_engine::Event>,
) -> (
    Vec<hyperllama_core::TokenId>,
    TopLogprobs,
    hyperllama_engine::Completion,
) {
    use hyperllama_engine::Event;
    let (mut tokens, mut top) = (Vec::new(), Vec::new());
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token {
                token, logprobs, ..
            } => {
                tokens.push(token);
                let lp = logprobs.expect("asked for");
                top.push(lp.top.iter().map(|a| (a.token, a.logprob)).collect());
            }
            Event::Text(_) => {}
            Event::Done(c) => return (tokens, top, c),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("stream ended without Done");
}

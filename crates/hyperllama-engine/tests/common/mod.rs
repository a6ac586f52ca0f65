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

/// How far, in nats, `other` trails `reference` among one position's top log-probabilities
/// (`top`, from the run that chose `reference`): infinite when `other` is not among them.
/// Runs that batch differently round differently in llama.cpp (docs/fidelity.md), so their
/// greedy answers may part, but only at a near tie: under 0.5 nats here.
#[allow(dead_code)]
pub fn tie_gap(
    top: &[(hyperllama_core::TokenId, f32)],
    reference: hyperllama_core::TokenId,
    other: hyperllama_core::TokenId,
) -> f32 {
    let lp = |t| top.iter().find(|a| a.0 == t).map(|a| a.1);
    lp(reference).expect("the chosen token is among its own run's top")
        - lp(other).unwrap_or(f32::NEG_INFINITY)
}

/// A test model, loaded with the default options.
#[allow(dead_code)]
pub fn load(file: &str) -> std::sync::Arc<hyperllama_engine::Model> {
    hyperllama_engine::Model::load(
        &model_path(file),
        &hyperllama_engine::LoadOptions::default(),
    )
    .expect("test model loads")
}

/// An engine configuration with the test's thread count.
#[allow(dead_code)]
pub fn config(n_ctx: usize, max_seqs: usize) -> hyperllama_engine::EngineConfig {
    let mut cfg = hyperllama_engine::EngineConfig::new(n_ctx, max_seqs);
    cfg.n_threads = test_threads();
    cfg
}

/// A greedy request for `num_predict` tokens of `prompt`.
#[allow(dead_code)]
pub fn greedy(
    prompt: Vec<hyperllama_core::TokenId>,
    num_predict: usize,
) -> hyperllama_engine::GenerateRequest {
    hyperllama_engine::GenerateRequest {
        prompt,
        sampling: hyperllama_core::sampling::SamplingParams::greedy(),
        num_predict: Some(num_predict),
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        constraint: None,
    }
}

/// Collects a whole answer: tokens, text, completion; an error event fails the test.
#[allow(dead_code)]
pub fn collect(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<hyperllama_engine::Event>,
) -> (
    Vec<hyperllama_core::TokenId>,
    String,
    hyperllama_engine::Completion,
) {
    use hyperllama_engine::Event;
    let mut tokens = Vec::new();
    let mut text = String::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { token, text: t, .. } => {
                tokens.push(token);
                text.push_str(&t);
            }
            Event::Text(t) => text.push_str(&t),
            Event::Done(c) => return (tokens, text, c),
            Event::Error(e) => panic!("request failed: {e}"),
        }
    }
    panic!("stream ended without Done");
}

/// Waits until the engine holds no sequence and no KV; fails after ten seconds.
#[allow(dead_code)]
pub fn wait_for_idle(e: &hyperllama_engine::Engine) -> hyperllama_engine::EngineStats {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stats = e.stats();
        if stats.n_running == 0 && stats.n_waiting == 0 && stats.n_kv_used == 0 {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "KV not freed: {stats:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

//! Embeddings against the real SmolLM2 model: vector length, batch independence,
//! normalization, truncation, and that a semantically closer pair is closer.
//!
//! Every test is named `model_*` so that nextest runs them one at a time.

mod common;

use std::sync::Arc;

use common::{model_path, test_threads, GEMMA3, SMOLLM2};
use hyperllama_core::sampling::SamplingParams;
use hyperllama_engine::embed::{cosine, prepare_text};
use hyperllama_engine::{
    EmbedRequest, Engine, EngineConfig, Error, Event, GenerateRequest, LoadOptions, Model,
};

const N_CTX: usize = 256;

fn engine() -> Engine {
    let model = Model::load(&model_path(SMOLLM2), &LoadOptions::default()).expect("model loads");
    let mut cfg = EngineConfig::new(N_CTX, 2);
    cfg.n_threads = test_threads();
    Engine::start(model, cfg).expect("engine starts")
}

fn embed(engine: &Engine, texts: &[&str], normalize: bool) -> Vec<Vec<f32>> {
    let model = Arc::clone(engine.model());
    let inputs = texts
        .iter()
        .map(|t| prepare_text(&model, t, N_CTX, true).expect("tokenized"))
        .collect();
    let rx = engine
        .embed(EmbedRequest { inputs, normalize })
        .expect("queued");
    let answer = rx.blocking_recv().expect("answered").expect("embedded");
    assert_eq!(answer.vectors.len(), texts.len());
    answer.vectors
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn model_embeddings_are_batch_independent_normalized_and_semantic() {
    let engine = engine();
    let n_embd = engine.embedding_length();
    assert_eq!(n_embd, 576, "SmolLM2-135M's hidden size");

    let cat = "The cat sat on the mat.";
    let alone = embed(&engine, &[cat], false).remove(0);
    assert_eq!(alone.len(), n_embd);
    assert!(alone.iter().all(|x| x.is_finite()));
    assert!(
        (norm(&alone) - 1.0).abs() > 1e-3,
        "raw vectors are not unit length"
    );

    // The same text in a batch with others, in two positions: the same vector.
    let batch = embed(
        &engine,
        &[
            "Quarterly revenue grew by eight percent.",
            cat,
            "A kitten was sleeping on the rug.",
            cat,
        ],
        false,
    );
    for v in [&batch[1], &batch[3]] {
        let max_diff = v
            .iter()
            .zip(&alone)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("batched max diff {max_diff}");
        assert!(max_diff < 1e-4, "batched vector differs by {max_diff}");
    }

    // Normalized on request.
    let unit = embed(&engine, &[cat], true).remove(0);
    assert!((norm(&unit) - 1.0).abs() < 1e-4);
    assert!(cosine(&unit, &alone) > 0.9999);

    // A closer pair has a higher cosine than a far pair.
    let v = embed(
        &engine,
        &[
            "The cat sat on the mat.",
            "A cat was sitting on the mat.",
            "Quarterly revenue grew by eight percent.",
        ],
        true,
    );
    let close = cosine(&v[0], &v[1]);
    let far = cosine(&v[0], &v[2]);
    eprintln!("cosine: close {close}, far {far}");
    assert!(close > far, "close pair {close} should beat far pair {far}");
}

#[test]
fn model_embedding_inputs_are_truncated_or_refused() {
    let engine = engine();
    let model = Arc::clone(engine.model());
    let long = "word ".repeat(2 * N_CTX);
    let cut = prepare_text(&model, &long, N_CTX, true).expect("truncated");
    assert_eq!(cut.len(), N_CTX);
    let err = prepare_text(&model, &long, N_CTX, false).expect_err("too long");
    assert!(
        matches!(err, Error::InvalidRequest(ref m) if m.contains("truncate")),
        "{err}"
    );

    // A truncated input fills the whole embedding context and still embeds.
    let rx = engine
        .embed(EmbedRequest {
            inputs: vec![cut, vec![1, 2, 3]],
            normalize: true,
        })
        .expect("queued");
    let answer = rx.blocking_recv().expect("answered").expect("embedded");
    assert_eq!(answer.n_tokens, N_CTX + 3);
    assert_eq!(answer.vectors.len(), 2);

    // Too long or empty inputs given directly are refused on submit.
    let err = engine
        .embed(EmbedRequest {
            inputs: vec![vec![1; N_CTX + 1]],
            normalize: false,
        })
        .expect_err("too long");
    assert!(matches!(err, Error::InvalidRequest(_)));
    assert!(engine
        .embed(EmbedRequest {
            inputs: vec![],
            normalize: false
        })
        .is_err());
}

#[test]
fn model_embeddings_work_on_a_sliding_window_model() {
    let model = Model::load(&model_path(GEMMA3), &LoadOptions::default()).expect("model loads");
    let mut cfg = EngineConfig::new(N_CTX, 2);
    cfg.n_threads = test_threads();
    let engine = Engine::start(model, cfg).expect("engine starts");
    let v = embed(
        &engine,
        &[
            "The cat sat on the mat.",
            "A cat was sitting on the mat.",
            "Quarterly revenue grew by eight percent.",
        ],
        true,
    );
    assert!(v
        .iter()
        .all(|v| v.len() == engine.embedding_length() && !v.is_empty()));
    assert!(v.iter().flatten().all(|x| x.is_finite()));
    assert!(cosine(&v[0], &v[1]) > cosine(&v[0], &v[2]));
}

#[test]
fn model_requests_beyond_running_plus_queued_are_refused() {
    let model = Model::load(&model_path(SMOLLM2), &LoadOptions::default()).expect("model loads");
    let mut cfg = EngineConfig::new(N_CTX, 1);
    cfg.n_threads = test_threads();
    cfg.queue_capacity = 1;
    let engine = Engine::start(Arc::clone(&model), cfg).expect("engine starts");
    let long = || GenerateRequest {
        prompt: model.tokenize("Count to one hundred.", true, false),
        sampling: SamplingParams::greedy(),
        num_predict: Some(64),
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        constraint: None,
    };
    let mut first = engine.submit(long()).expect("runs");
    // Once it streams, the engine has taken it off the queue: the queue has room for one.
    assert!(matches!(first.blocking_recv(), Some(Event::Token { .. })));
    let second = engine.submit(long()).expect("queued");
    assert_eq!(engine.n_requests(), 2);
    let err = engine.submit(long()).expect_err("full");
    assert!(matches!(err, Error::Overloaded { queued: 1 }), "{err}");
    let inputs = vec![model.tokenize("hi", true, false)];
    let err = engine
        .embed(EmbedRequest {
            inputs: inputs.clone(),
            normalize: true,
        })
        .expect_err("embeddings share the bound");
    assert!(matches!(err, Error::Overloaded { .. }));

    // A cancelled request frees its place; a finished one too.
    drop(second);
    while let Some(ev) = first.blocking_recv() {
        if matches!(ev, Event::Done(_) | Event::Error(_)) {
            break;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.n_requests() > 0 {
        assert!(std::time::Instant::now() < deadline, "places are released");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let rx = engine
        .embed(EmbedRequest {
            inputs,
            normalize: true,
        })
        .expect("room again");
    assert!(rx.blocking_recv().expect("answered").is_ok());
}

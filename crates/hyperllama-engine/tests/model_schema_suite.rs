//! Constrained output against a suite of real-world JSON schemas (tests/schemas/suite.json:
//! nested objects, arrays with bounds, enums, required and optional fields, numbers with
//! bounds, strings with patterns, `$ref`, `oneOf`, `anyOf`, nullable fields): every answer,
//! on both test models, greedy and sampled, must parse and validate.

mod common;

use std::sync::Arc;

use common::{model_path, repo_root, test_threads, GEMMA3, SMOLLM2};
use hyperllama_core::constraint::ConstraintSpec;
use hyperllama_core::sampling::SamplingParams;
use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::llama::LoadOptions;
use hyperllama_engine::{Engine, EngineConfig, Event, FinishReason, GenerateRequest, Model};
use hyperllama_models::template::ChatMessage;
use serde_json::Value;

struct Case {
    name: String,
    prompt: String,
    schema: Value,
}

fn suite() -> Vec<Case> {
    let path = repo_root().join("tests/schemas/suite.json");
    let text = std::fs::read_to_string(&path).expect("the schema suite exists");
    let list: Vec<Value> = serde_json::from_str(&text).expect("the suite is JSON");
    list.into_iter()
        .map(|c| Case {
            name: c["name"].as_str().expect("name").to_owned(),
            prompt: c["prompt"].as_str().expect("prompt").to_owned(),
            schema: c["schema"].clone(),
        })
        .collect()
}

/// Runs every case at temperature 0 and 0.8 on `file`; returns the failures.
fn run_suite(file: &str, cases: &[Case]) -> Vec<String> {
    let model = Model::load(&model_path(file), &LoadOptions::default()).expect("model loads");
    let formatter = ChatFormatter::for_model(&model).expect("a chat template");
    let mut cfg = EngineConfig::new(1024, 8);
    cfg.n_threads = test_threads();
    let engine = Engine::start(Arc::clone(&model), cfg).expect("engine starts");
    let mut streams = Vec::new();
    for case in cases {
        let messages = [ChatMessage::new(
            "user",
            format!("{} Answer in JSON.", case.prompt),
        )];
        let prompt = formatter
            .tokenize(&model, &messages, None)
            .expect("prompt renders");
        for (i, temperature) in [0.0f32, 0.8].into_iter().enumerate() {
            let mut sampling = SamplingParams::greedy();
            sampling.temperature = temperature;
            sampling.seed = Some(42 + i as u64);
            let req = GenerateRequest {
                prompt: prompt.clone(),
                sampling,
                num_predict: Some(600),
                stop: Vec::new(),
                ignore_eos: false,
                logprobs: None,
                constraint: Some(ConstraintSpec::JsonSchema(case.schema.clone())),
            };
            let rx = engine.submit(req).expect("the schema compiles");
            streams.push((case, temperature, rx));
        }
    }
    let mut failures = Vec::new();
    for (case, temperature, mut rx) in streams {
        let mut text = String::new();
        let mut reason = None;
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Token { text: t, .. } | Event::Text(t) => text.push_str(&t),
                Event::Done(c) => {
                    reason = Some(c.reason);
                    break;
                }
                Event::Error(e) => panic!("{}: request failed: {e}", case.name),
            }
        }
        let label = format!("{file} {} t={temperature}", case.name);
        if reason != Some(FinishReason::Stop) {
            failures.push(format!("{label}: ended with {reason:?}: {text}"));
            continue;
        }
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{label}: not JSON ({e}): {text}"));
                continue;
            }
        };
        let validator = jsonschema::validator_for(&case.schema).expect("the schema is valid");
        if let Err(e) = validator.validate(&value) {
            failures.push(format!("{label}: does not validate ({e}): {text}"));
        }
    }
    failures
}

#[test]
fn model_every_constrained_answer_parses_and_validates() {
    let cases = suite();
    assert!(cases.len() >= 30, "at least 30 schemas");
    let mut failures = run_suite(SMOLLM2, &cases);
    failures.extend(run_suite(GEMMA3, &cases));
    assert!(
        failures.is_empty(),
        "{} of {} answers failed:\n{}",
        failures.len(),
        cases.len() * 4,
        failures.join("\n")
    );
}

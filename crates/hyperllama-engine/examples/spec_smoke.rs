//! A smoke run of speculative decoding: one stream at a time, greedy, with speculation off and
//! on, on an input-grounded prompt (copy a text) and an open one (write a story). Prints the
//! decode rate, the drafts verified and accepted, and whether the outputs agree. Not a
//! benchmark: on a shared machine the timings are indicative only.
//!
//! `cargo run --example spec_smoke -p hyperllama-engine -- MODEL.gguf [N_TOKENS] [THREADS]`

use std::sync::Arc;
use std::time::Instant;

use hyperllama_core::sampling::SamplingParams;
use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::{Engine, EngineConfig, Event, GenerateRequest, LoadOptions, Model};
use hyperllama_models::template::ChatMessage;

const GROUNDED: &str = "Repeat this text exactly:\n\nThe committee met on Tuesday to review the \
    budget for the coming year. After a long discussion, the members agreed to increase \
    funding for the library by ten percent, to repair the roof of the community hall, and to \
    postpone the new parking lot until the spring. The chair thanked everyone for their \
    patience and closed the meeting at nine o'clock.";
const OPEN: &str = "Write a short story about a robot who learns to paint.";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: spec_smoke MODEL.gguf [N_TOKENS] [THREADS]");
    let n_tokens: usize = args.get(2).map_or(128, |s| s.parse().expect("a number"));
    let threads: usize = args.get(3).map_or(1, |s| s.parse().expect("a number"));
    let model = Model::load(path.as_ref(), &LoadOptions::default()).expect("model loads");
    let f = ChatFormatter::for_model(&model).expect("template");
    for (name, text) in [("grounded", GROUNDED), ("open", OPEN)] {
        let prompt = f
            .tokenize(&model, &[ChatMessage::new("user", text)], None)
            .expect("tokenizes");
        let mut outputs = Vec::new();
        for speculative in [false, true] {
            let mut cfg = EngineConfig::new(2048, 1);
            cfg.n_threads = threads;
            cfg.speculative = speculative;
            let engine = Engine::start(Arc::clone(&model), cfg).expect("engine");
            let mut rx = engine
                .submit(GenerateRequest {
                    prompt: prompt.clone(),
                    sampling: SamplingParams::greedy(),
                    num_predict: Some(n_tokens),
                    stop: Vec::new(),
                    ignore_eos: false,
                    logprobs: None,
                    constraint: None,
                })
                .expect("submitted");
            let started = Instant::now();
            let mut tokens = Vec::new();
            let done = loop {
                match rx.blocking_recv().expect("a last event") {
                    Event::Token { token, .. } => tokens.push(token),
                    Event::Text(_) => {}
                    Event::Done(c) => break c,
                    Event::Error(e) => panic!("{e}"),
                }
            };
            let wall = started.elapsed();
            println!(
                "{name:9} speculative={speculative:5} tokens {:4} decode {:7.1} tok/s (wall {:.2}s) drafted {:4} accepted {:4} steps {}",
                done.n_eval,
                done.n_eval as f64 / done.eval_duration.as_secs_f64(),
                wall.as_secs_f64(),
                done.n_drafted,
                done.n_accepted,
                engine.stats().n_steps,
            );
            outputs.push(tokens);
        }
        let same = outputs[0]
            .iter()
            .zip(&outputs[1])
            .take_while(|(a, b)| a == b)
            .count();
        println!(
            "{name:9} identical leading tokens {same} of {}",
            outputs[0].len()
        );
    }
}

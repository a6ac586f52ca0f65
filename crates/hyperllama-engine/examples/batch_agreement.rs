//! Measures how far greedy outputs of sequences decoded together in one batch agree with the
//! same sequences decoded alone (llama.cpp's batched kernels may round differently).
//!
//! `cargo run --example batch_agreement -p hyperllama-engine -- MODEL.gguf [N_SEQS] [N_TOKENS]`
//! prints one line per prompt: the length of the common prefix of the two outputs.

use std::sync::Arc;

use hyperllama_core::sampling::SamplingParams;
use hyperllama_engine::{Engine, EngineConfig, Event, GenerateRequest, LoadOptions, Model};

const PROMPTS: [&str; 8] = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "The three primary colors are",
    "To make a cup of tea, first",
    "The largest planet in the solar system",
    "SELECT name FROM users WHERE",
    "In 1969, the first humans",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: batch_agreement MODEL.gguf [N_SEQS] [N_TOKENS]");
    let n_seqs: usize = args.get(2).map_or(8, |s| s.parse().expect("a number"));
    let n_tokens: usize = args.get(3).map_or(64, |s| s.parse().expect("a number"));
    let model = Model::load(path.as_ref(), &LoadOptions::default()).expect("model loads");
    let prompts: Vec<Vec<u32>> = PROMPTS
        .iter()
        .cycle()
        .take(n_seqs)
        .map(|p| model.tokenize(p, true, true))
        .collect();
    let request = |prompt: &Vec<u32>| GenerateRequest {
        prompt: prompt.clone(),
        sampling: SamplingParams::greedy(),
        num_predict: Some(n_tokens),
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        constraint: None,
    };
    let collect = |mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>| {
        let mut tokens = Vec::new();
        while let Some(ev) = rx.blocking_recv() {
            match ev {
                Event::Token { token, .. } => tokens.push(token),
                Event::Done(_) => break,
                Event::Error(e) => panic!("{e}"),
                Event::Text(_) => {}
            }
        }
        tokens
    };
    let alone = Engine::start(Arc::clone(&model), EngineConfig::new(1024, 1)).expect("engine");
    let single: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| collect(alone.submit(request(p)).expect("submit")))
        .collect();
    drop(alone);
    let batched_engine =
        Engine::start(Arc::clone(&model), EngineConfig::new(1024, n_seqs)).expect("engine");
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| batched_engine.submit(request(p)).expect("submit"))
        .collect();
    let batched: Vec<Vec<u32>> = streams.into_iter().map(collect).collect();
    let mut total = 0;
    for (i, (a, b)) in single.iter().zip(&batched).enumerate() {
        let agree = a.iter().zip(b).take_while(|(x, y)| x == y).count();
        total += agree;
        println!("seq {i}: {agree}/{n_tokens} leading tokens identical");
    }
    println!(
        "{}: {n_seqs} sequences x {n_tokens} tokens, {total}/{} identical",
        model.info().architecture,
        n_seqs * n_tokens
    );
}

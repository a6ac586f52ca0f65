//! Measures what a constraint costs per token: the time to compute the allowed-token mask
//! and advance the grammar, for a JSON schema over a real model's vocabulary.
//!
//! `cargo run --release --example constraint_cost -p hyperllama-engine -- MODEL.gguf`

use std::time::Instant;

use hyperllama_core::constraint::{ConstraintCompiler, ConstraintSpec};
use hyperllama_engine::llama::LoadOptions;
use hyperllama_engine::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: constraint_cost MODEL.gguf")?;
    let model = Model::load(std::path::Path::new(&path), &LoadOptions::default())?;
    let vocab = model.vocabulary();
    let t = Instant::now();
    let compiler = ConstraintCompiler::new(&vocab)?;
    println!(
        "vocabulary of {} tokens: token trie built in {:.1} ms",
        vocab.tokens.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 40 },
            "age": { "type": "integer", "minimum": 0, "maximum": 120 },
            "tags": { "type": "array", "items": { "enum": ["a", "b", "c"] }, "maxItems": 3 },
            "address": { "type": "object", "properties": {
                "city": { "type": "string" }, "zip": { "type": "string", "pattern": "^[0-9]{5}$" } },
                "required": ["city", "zip"] }
        },
        "required": ["name", "age", "tags", "address"]
    });
    let text = r#"{"name": "Ada Lovelace", "age": 36, "tags": ["a", "c"], "address": {"city": "London", "zip": "12345"}}"#;
    let tokens = model.tokenize(text, false, false);
    let rounds = 20;
    let mut compile = 0.0;
    let mut per_token = Vec::new();
    let mut logits = vec![0.0f32; vocab.tokens.len()];
    for _ in 0..rounds {
        let t = Instant::now();
        let mut c = compiler.compile(&ConstraintSpec::JsonSchema(schema.clone()))?;
        compile += t.elapsed().as_secs_f64();
        for &tok in &tokens {
            logits.iter_mut().for_each(|l| *l = 0.0);
            let t = Instant::now();
            c.restrict(&mut logits)?;
            c.commit(tok)?;
            per_token.push(t.elapsed().as_secs_f64());
        }
    }
    per_token.sort_by(f64::total_cmp);
    let pct = |p: f64| per_token[((per_token.len() - 1) as f64 * p) as usize] * 1e6;
    println!(
        "schema compiled in {:.2} ms; per token (mask + advance) over {} tokens x {rounds}: p50 {:.0} us, p95 {:.0} us, p99 {:.0} us",
        compile / rounds as f64 * 1e3,
        tokens.len(),
        pct(0.5),
        pct(0.95),
        pct(0.99)
    );
    Ok(())
}

//! The memory budget: two real models (SmolLM2 and Gemma 3 270M) and a budget that holds
//! only one; loading the second evicts the first. A model that can never fit is refused.

mod common;

use common::{model_path, store_with_model, test_config, GEMMA3, MODEL, SMOLLM2};
use hyperllama_models::create::create_model;
use hyperllama_models::modelfile::Modelfile;
use hyperllama_models::name::ModelName;
use hyperllama_server::residency::{estimate_need, Residency};

fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_budget_evicts_the_least_recently_used_model() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    let gguf = model_path(GEMMA3);
    let modelfile = Modelfile::parse(&format!("FROM {}\n", gguf.display())).expect("Modelfile");
    create_model(&store, &name("gemma"), &modelfile, dir.path(), &mut |_| {}).expect("created");
    let mut cfg = test_config(dir.path());
    let cells = cfg.default_num_ctx * cfg.num_parallel;
    let smol_need = estimate_need(&model_path(SMOLLM2), cells);
    let gemma_need = estimate_need(&gguf, cells);
    // The KV part: SmolLM2 has 30 layers × 3 KV heads × 64 dims.
    let smol_file = std::fs::metadata(model_path(SMOLLM2)).expect("file").len();
    assert_eq!(smol_need - smol_file, 30 * cells as u64 * 3 * 64 * 4);
    cfg.max_memory = Some(smol_need.max(gemma_need) + (1 << 20));
    assert!(cfg.max_memory < Some(smol_need + gemma_need));
    let residency = Residency::new(cfg, store);

    let lease = residency
        .acquire(&name(MODEL), None, None)
        .await
        .expect("smol");
    drop(lease);
    let snap = residency.snapshot();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].size, smol_need);
    let lease = residency
        .acquire(&name("gemma"), None, None)
        .await
        .expect("gemma");
    let snap = residency.snapshot();
    let names: Vec<String> = snap
        .iter()
        .map(|m| m.resolved.name.display_shortest())
        .collect();
    assert_eq!(names, ["gemma:latest"], "smol was evicted to make room");
    assert_eq!(snap[0].size, gemma_need);
    assert_eq!(snap[0].choice.engine, "llama.cpp");
    drop(lease);
    residency.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_larger_than_the_budget_is_refused_with_the_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = store_with_model(dir.path());
    let mut cfg = test_config(dir.path());
    cfg.max_memory = Some(10 << 20);
    let residency = Residency::new(cfg, store);
    let err = residency
        .acquire(&name(MODEL), None, None)
        .await
        .expect_err("too large");
    let msg = err.to_string();
    assert!(msg.contains("memory budget is 0.01 GiB"), "{msg}");
    assert!(msg.contains("HYPERLLAMA_MAX_MEMORY"), "{msg}");
    assert!(residency.snapshot().is_empty());
}

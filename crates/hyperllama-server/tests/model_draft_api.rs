//! A Modelfile's `DRAFT` through the API: the draft model drafts (its statistics in the final
//! chunk), and a draft model with another vocabulary, forced into a manifest past `create`'s
//! check, fails the load with a JSON error that names the model.

mod common;

use common::{model_path, start_server, GEMMA3, MODEL, SMOLLM2};
use hyperllama_models::create::create_model;
use hyperllama_models::manifest::{media_type, Layer};
use hyperllama_models::modelfile::Modelfile;
use hyperllama_models::name::ModelName;
use hyperllama_models::store::Store;
use serde_json::json;

fn name(s: &str) -> ModelName {
    ModelName::parse(s).expect("valid name")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_a_draft_model_drafts_and_a_mismatched_one_fails_the_load() {
    let mut models_dir = None;
    let server = start_server(|c| models_dir = Some(c.models_dir.clone())).await;
    let store = Store::open(models_dir.expect("store path")).expect("store");
    let gguf = model_path(SMOLLM2);
    let modelfile =
        Modelfile::parse(&format!("FROM {0}\nDRAFT {0}\n", gguf.display())).expect("Modelfile");
    let dir = tempfile::tempdir().expect("temp dir");
    create_model(
        &store,
        &name("drafted"),
        &modelfile,
        dir.path(),
        &mut |_| {},
    )
    .expect("created");
    // Past create's check: Gemma 3's weights as the draft layer of SmolLM2.
    let gemma = store
        .write_blob_from_reader(
            &mut std::fs::File::open(model_path(GEMMA3)).expect("gemma"),
            None,
        )
        .expect("blob");
    let mut manifest = store.read_manifest(&name(MODEL)).expect("smol").manifest;
    manifest
        .layers
        .push(Layer::new(media_type::DRAFT, gemma.digest, gemma.size));
    store
        .write_manifest(&name("forced"), &manifest)
        .expect("manifest");

    // Not input-grounded: prompt lookup finds little; the draft model (the model itself)
    // guesses nearly every token.
    let ask = |model: &str| {
        json!({ "model": model, "stream": false,
                "prompt": "Write a short poem about the sea.",
                "options": { "temperature": 0, "num_predict": 32 } })
    };
    let (status, drafted) = server.post("/api/generate", ask("drafted")).await;
    assert_eq!(status, 200, "{drafted}");
    let (status, plain) = server.post("/api/generate", ask(MODEL)).await;
    assert_eq!(status, 200, "{plain}");
    assert_eq!(
        drafted["response"], plain["response"],
        "the same greedy answer"
    );
    let n = drafted["draft_n"].as_u64().expect("drafts were verified");
    let accepted = drafted["draft_n_accepted"]
        .as_u64()
        .expect("accepted count");
    let plain_accepted = plain["draft_n_accepted"].as_u64().unwrap_or(0);
    eprintln!("draft model: {accepted} of {n}; prompt lookup: {plain_accepted}");
    assert!(accepted >= 16 && accepted * 10 >= n * 9, "{drafted}");
    assert!(accepted > plain_accepted, "{drafted} {plain}");

    let (status, err) = server.post("/api/generate", ask("forced")).await;
    assert_eq!(status, 500, "{err}");
    let msg = err["error"].as_str().expect("an error message");
    assert!(msg.contains("draft model of forced"), "{msg}");
    assert!(msg.contains("262144 tokens, the model's 49152"), "{msg}");
    server.stop().await;
}

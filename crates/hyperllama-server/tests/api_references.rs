//! Models whose weights stay outside the store (a safetensors folder, a Hugging Face id),
//! created through `POST /api/create` on a real server on 127.0.0.1 that has no engine
//! configured for them: they are listed and shown with their format, and requests to run
//! them are refused with 400 naming the format and the configuration that would serve them.
//! (Serving them through a configured engine is tested end to end in
//! `hyperllama-cli/tests/engines_cli.rs`.)

mod common;

use common::start_server;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_created_listed_shown_and_refused_without_an_engine() {
    let server = start_server(|_| {}).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("checkout");
    std::fs::create_dir(&folder).expect("folder");
    std::fs::write(folder.join("config.json"), r#"{"model_type":"qwen2"}"#).expect("written");
    let header = br#"{"w":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&[0; 8]);
    std::fs::write(folder.join("model.safetensors"), bytes).expect("written");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("folder");

    let create = |model: &str, from: String| {
        let body = json!({"model": model, "from": from, "stream": false});
        let server = &server;
        async move { server.post("/api/create", body).await }
    };
    let (status, body) = create("st", folder.display().to_string()).await;
    assert_eq!((status, &body), (200, &json!({"status": "success"})));
    let (status, body) = create("hfm", "hf:Qwen/Qwen2.5-0.5B-Instruct".into()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = create("bad", empty.display().to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("has no config.json"),
        "{body}"
    );
    let (status, body) = create("bad", "checkout".into()).await;
    assert_eq!(status, 404, "a relative path is a model name here: {body}");
    let (status, body) = create("bad", "./checkout".into()).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = create("bad", "hf:Qwen".into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("is not a Hugging Face id"),
        "{body}"
    );

    let (_, tags) = server.get("/api/tags").await;
    let find = |name: &str| {
        tags["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {tags}"))
    };
    let st = find("st:latest");
    assert_eq!(st["details"]["format"], "safetensors", "{st}");
    assert_eq!(st["details"]["family"], "qwen2", "{st}");
    assert_eq!(st["details"]["parameter_size"], "4", "{st}");
    assert_eq!(find("hfm:latest")["details"]["format"], "huggingface");
    assert_eq!(find("smol:latest")["details"]["format"], "gguf");

    let (status, show) = server.post("/api/show", json!({"model": "st"})).await;
    assert_eq!(status, 200, "{show}");
    assert_eq!(show["details"]["format"], "safetensors", "{show}");
    assert_eq!(show["details"]["quantization_level"], "F16", "{show}");
    assert_eq!(
        show["model_info"]["general.architecture"], "qwen2",
        "{show}"
    );
    assert_eq!(show["engine"], "none", "{show}");
    assert!(
        show["engine_reason"]
            .as_str()
            .unwrap_or("")
            .contains("no engines are configured"),
        "{show}"
    );
    let (_, show) = server.post("/api/show", json!({"model": "smol"})).await;
    assert_eq!(show["engine"], "llama.cpp", "{show}");

    for model in ["st", "hfm"] {
        let (status, body) = server
            .post(
                "/api/chat",
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        let message = body["error"].as_str().unwrap_or("").to_owned();
        let format = if model == "st" { "safetensors" } else { "hf" };
        assert!(
            message.contains("which llama.cpp cannot run")
                && message.contains(&format!("formats = [\"{format}\"]")),
            "{message}"
        );
        let (status, _) = server
            .post("/api/generate", json!({"model": model, "prompt": "hi"}))
            .await;
        assert_eq!(status, 400);
        let (status, body) = server
            .post(
                "/v1/chat/completions",
                json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"], json!([]), "nothing was loaded: {ps}");
    server.stop().await;
}

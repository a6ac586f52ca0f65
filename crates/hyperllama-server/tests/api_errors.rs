//! Requests that fail before any model runs, and the endpoints that only read the store.

mod common;

use common::{start_server, MODEL};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_is_404_in_both_dialects() {
    let server = start_server(|_| {}).await;
    let (status, body) = server
        .post("/api/generate", json!({"model": "nope", "prompt": "hi"}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "model 'nope' not found"}));

    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "model 'nope' not found");
    assert_eq!(body["error"]["type"], "not_found_error");

    let (status, _) = server
        .post(
            "/api/chat",
            json!({"model": "/tmp/x.gguf", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 404, "paths are not accepted over HTTP");
    let (status, body) = server.get("/v1/models/nope").await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_with_an_error_field() {
    let server = start_server(|cfg| cfg.max_body_bytes = 4096).await;
    let bad_json = server
        .client
        .post(server.at("/api/generate"))
        .header("content-type", "application/json")
        .body("{\"model\": ")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad_json.status().as_u16(), 400);
    let body: serde_json::Value = bad_json.json().await.expect("JSON error");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("JSON")),
        "{body}"
    );

    let (status, body) = server
        .post("/api/generate", json!({"model": MODEL, "prompt": 5}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string());

    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": "hi"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"].is_string(),
        "OpenAI error object: {body}"
    );

    let (status, body) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "hi", "options": {"mirostat": 2}}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body, json!({"error": "unknown parameter 'mirostat'"}));

    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": [], "options": {"temperature": "hot"}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("temperature")));

    let (status, _) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "hi", "keep_alive": "soon"}),
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "what is this?", "images": ["aGk="]}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "model 'smol' does not support images"})
    );

    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "n": 0, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let big = "x".repeat(10_000);
    let (status, body) = server
        .post("/api/generate", json!({"model": MODEL, "prompt": big}))
        .await;
    assert_eq!(status, 413);
    assert!(body["error"].is_string());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_endpoints_list_show_copy_and_delete() {
    let server = start_server(|_| {}).await;
    let root = server
        .client
        .get(server.at("/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(root.text().await.expect("text"), "Ollama is running");
    let (_, version) = server.get("/api/version").await;
    assert!(version["version"].is_string());

    let (status, tags) = server.get("/api/tags").await;
    assert_eq!(status, 200);
    let models = tags["models"].as_array().expect("models");
    assert_eq!(models.len(), 1);
    assert_eq!(models[0]["name"], "smol:latest");
    assert_eq!(models[0]["details"]["family"], "llama");
    assert!(models[0]["size"].as_u64().is_some_and(|n| n > 1_000_000));

    let (status, show) = server.post("/api/show", json!({"model": MODEL})).await;
    assert_eq!(status, 200, "{show}");
    assert_eq!(show["details"]["format"], "gguf");
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert!(show["template"]
        .as_str()
        .is_some_and(|t| t.contains("im_start")));
    assert!(show["modelfile"]
        .as_str()
        .is_some_and(|m| m.contains("FROM ")));
    assert!(show["capabilities"]
        .as_array()
        .is_some_and(|c| c.contains(&json!("completion"))));

    let (_, list) = server.get("/v1/models").await;
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0]["id"], "smol:latest");
    let (status, one) = server.get("/v1/models/smol:latest").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["object"], "model");

    let copy = server
        .client
        .post(server.at("/api/copy"))
        .json(&json!({"source": MODEL, "destination": "smol-copy"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(copy.status().as_u16(), 200);
    let (_, tags) = server.get("/api/tags").await;
    assert_eq!(tags["models"].as_array().map(Vec::len), Some(2));

    let delete = server
        .client
        .delete(server.at("/api/delete"))
        .json(&json!({"model": "smol-copy"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(delete.status().as_u16(), 200);
    let delete_again = server
        .client
        .delete(server.at("/api/delete"))
        .json(&json!({"model": "smol-copy"}))
        .send()
        .await
        .expect("sent");
    assert_eq!(delete_again.status().as_u16(), 404);
    let (_, tags) = server.get("/api/tags").await;
    assert_eq!(tags["models"].as_array().map(Vec::len), Some(1));

    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps, json!({"models": []}), "nothing was loaded");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_allows_local_origins_only() {
    let server =
        start_server(|cfg| cfg.allowed_origins = vec!["https://*.example.com".into()]).await;
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.at("/api/chat"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-stainless-os",
            )
            .send()
    };
    for (origin, allowed) in [
        ("http://localhost:5173", true),
        ("https://ui.example.com", true),
        ("https://evil.example.org", false),
    ] {
        let resp = preflight(origin).await.expect("sent");
        let header = resp.headers().get("access-control-allow-origin");
        assert_eq!(header.is_some(), allowed, "{origin}: {:?}", resp.headers());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_upload_verifies_the_digest() {
    let server = start_server(|cfg| cfg.max_body_bytes = 1024).await;
    let data = vec![7u8; 300_000];
    let digest = hyperllama_models::digest::BlobDigest::of_bytes(&data).to_string();
    let url = server.at(&format!("/api/blobs/{digest}"));
    let head = server.client.head(&url).send().await.expect("sent");
    assert_eq!(head.status().as_u16(), 404);

    let wrong = server
        .client
        .post(&url)
        .body(vec![8u8; 10])
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status().as_u16(), 400);
    let body: serde_json::Value = wrong.json().await.expect("JSON");
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("digest mismatch")));

    // Larger than the JSON body limit: blobs are streamed, not limited.
    let created = server
        .client
        .post(&url)
        .body(data.clone())
        .send()
        .await
        .expect("sent");
    assert_eq!(created.status().as_u16(), 201);
    let head = server.client.head(&url).send().await.expect("sent");
    assert_eq!(head.status().as_u16(), 200);
    let again = server
        .client
        .post(&url)
        .body(data)
        .send()
        .await
        .expect("sent");
    assert_eq!(again.status().as_u16(), 200);

    let bad = server
        .client
        .head(server.at("/api/blobs/sha256:nothex"))
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status().as_u16(), 400);
    let root = server
        .client
        .head(server.at("/"))
        .send()
        .await
        .expect("sent");
    assert_eq!(root.status().as_u16(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_a_model_or_an_uploaded_blob() {
    let server = start_server(|_| {}).await;
    let (status, body) = server
        .post(
            "/api/create",
            json!({"model": "pirate", "from": MODEL, "system": "You are a pirate.",
                   "parameters": {"temperature": 0.3, "stop": ["<a>", "<b>"]},
                   "messages": [{"role": "user", "content": "Ahoy"}], "stream": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"status": "success"}));
    let (status, show) = server.post("/api/show", json!({"model": "pirate"})).await;
    assert_eq!(status, 200);
    assert_eq!(show["system"], "You are a pirate.");
    let params = show["parameters"].as_str().expect("parameters");
    assert!(
        params.contains("temperature") && params.contains("<b>"),
        "{params}"
    );

    let smol = hyperllama_models::name::ModelName::parse(MODEL).expect("name");
    let resolved =
        hyperllama_models::resolve::resolve_model(server.state.store(), &smol).expect("resolved");
    let digest = resolved
        .manifest
        .model_layer()
        .expect("weights")
        .digest
        .to_string();
    let (status, text) = server
        .post_text(
            "/api/create",
            json!({"model": "from-blob", "files": {"model.gguf": digest}}),
        )
        .await;
    assert_eq!(status, 200);
    let lines = common::ndjson_lines(&text);
    assert_eq!(lines.last(), Some(&json!({"status": "success"})), "{text}");
    let (_, tags) = server.get("/api/tags").await;
    assert_eq!(tags["models"].as_array().map(Vec::len), Some(3));

    for (body, want) in [
        (
            json!({"model": "x", "from": MODEL, "parameters": {"mirostat_x": 1}}),
            400,
        ),
        (json!({"model": "x", "from": "/etc/passwd"}), 400),
        (
            json!({"model": "x", "from": "missing-model", "stream": false}),
            404,
        ),
        (
            json!({"model": "x", "files": {"a.gguf": format!("sha256:{}", "0".repeat(64))}}),
            400,
        ),
    ] {
        let (status, err) = server.post("/api/create", body.clone()).await;
        assert_eq!(status, want, "{body} -> {err}");
        assert!(err["error"].is_string());
    }
    server.stop().await;
}

/// A registry on 127.0.0.1 that serves every model of `store` under `library/pulled`
/// as SmolLM2's manifest and blobs.
async fn fake_registry(store: hyperllama_models::store::Store) -> String {
    use axum::extract::Path;
    use axum::response::IntoResponse;
    let smol = hyperllama_models::name::ModelName::parse(MODEL).expect("name");
    let manifest = store.read_manifest_bytes(&smol).expect("manifest");
    let app = axum::Router::new().route(
        "/v2/{*path}",
        axum::routing::get(move |Path(path): Path<String>| {
            let store = store.clone();
            let manifest = manifest.clone();
            async move {
                if path == "library/pulled/manifests/latest" {
                    let ct = "application/vnd.docker.distribution.manifest.v2+json";
                    return ([("content-type", ct)], manifest).into_response();
                }
                let digest = path.rsplit('/').next().unwrap_or_default();
                match hyperllama_models::digest::BlobDigest::parse_any(digest) {
                    Ok(d) if store.has_blob(&d) => std::fs::read(store.blob_path(&d))
                        .expect("blob")
                        .into_response(),
                    _ => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listener");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("registry") });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_from_a_registry_reports_progress() {
    let source = tempfile::tempdir().expect("temp dir");
    let path = source.path().to_owned();
    let store = tokio::task::spawn_blocking(move || common::store_with_model(&path))
        .await
        .expect("store");
    let registry = fake_registry(store).await;
    let server = start_server(move |cfg| {
        cfg.pull
            .registries
            .insert("registry.ollama.ai".into(), registry);
        cfg.pull.insecure = true;
        cfg.pull.parallel_threshold = u64::MAX;
    })
    .await;
    let (status, text) = server
        .post_text("/api/pull", json!({"model": "pulled"}))
        .await;
    assert_eq!(status, 200);
    let lines = common::ndjson_lines(&text);
    assert_eq!(lines[0], json!({"status": "pulling manifest"}));
    assert!(
        lines
            .iter()
            .any(|l| l["digest"].is_string() && l["total"].is_u64()),
        "{text}"
    );
    assert_eq!(lines.last(), Some(&json!({"status": "success"})));
    let (_, tags) = server.get("/api/tags").await;
    let names: Vec<&str> = tags["models"]
        .as_array()
        .expect("models")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.contains(&"pulled:latest"), "{names:?}");

    let (status, err) = server
        .post("/api/pull", json!({"model": "absent", "stream": false}))
        .await;
    assert_eq!(status, 404, "{err}");
    assert!(err["error"].is_string());
    server.stop().await;
}

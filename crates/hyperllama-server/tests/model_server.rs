//! End-to-end tests with SmolLM2 behind the real server: Ollama and OpenAI endpoints,
//! statistics, residency and cancellation. Each test name starts with `model_`, so nextest
//! runs them one at a time.

mod common;

use std::time::Duration;

use common::{ndjson_lines, sse_data, start_server, MODEL};
use futures_util::StreamExt;
use hyperllama_models::name::ModelName;
use serde_json::{json, Value};

fn greedy(n: u32) -> Value {
    json!({"temperature": 0, "num_predict": n})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_generate_stream_and_non_stream_agree_with_statistics() {
    let server = start_server(|_| {}).await;
    let body = json!({
        "model": MODEL, "prompt": "What is the capital of France?", "stream": false,
        "options": greedy(24),
    });
    let (status, whole) = server.post("/api/generate", body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["done"], true);
    assert_eq!(whole["model"], MODEL);
    let text = whole["response"].as_str().expect("response").to_owned();
    assert!(!text.is_empty());
    let reason = whole["done_reason"].as_str().expect("done_reason");
    assert!(reason == "stop" || reason == "length", "{reason}");
    let created = whole["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    let n = |k: &str| {
        whole[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} missing: {whole}"))
    };
    assert!(n("prompt_eval_count") > 5);
    assert!(n("eval_count") > 0 && n("eval_count") <= 24);
    assert!(n("load_duration") > 0, "the first request loads the model");
    assert!(n("eval_duration") > 0 && n("prompt_eval_duration") > 0);
    assert!(n("total_duration") >= n("eval_duration") + n("load_duration"));

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let resp = server
        .client
        .post(server.at("/api/generate"))
        .json(&streamed)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/x-ndjson")
    );
    let lines = ndjson_lines(&resp.text().await.expect("body"));
    assert!(lines.len() > 2);
    let (last, chunks) = lines.split_last().expect("lines");
    assert!(chunks.iter().all(|c| c["done"] == false));
    assert_eq!(last["done"], true);
    assert_eq!(last["load_duration"], 0, "the model was already loaded");
    assert_eq!(last["eval_count"], whole["eval_count"]);
    let joined: String = lines
        .iter()
        .filter_map(|c| c["response"].as_str())
        .collect();
    assert_eq!(joined, text, "stream and non-stream give the same text");

    // Empty prompt: load only.
    let (status, load) = server
        .post("/api/generate", json!({"model": MODEL, "prompt": ""}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(load["done_reason"], "load");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_chat_streams_and_answers() {
    let server = start_server(|_| {}).await;
    let body = json!({
        "model": MODEL, "stream": false, "options": greedy(16),
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello."}
        ],
    });
    let (status, whole) = server.post("/api/chat", body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["message"]["role"], "assistant");
    let text = whole["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    assert!(!text.is_empty());
    assert!(whole["eval_count"].as_u64().is_some_and(|n| n > 0));

    let mut streamed = body;
    streamed.as_object_mut().expect("object").remove("stream");
    let (status, raw) = server.post_text("/api/chat", streamed).await;
    assert_eq!(status, 200);
    let lines = ndjson_lines(&raw);
    let joined: String = lines
        .iter()
        .filter_map(|c| c["message"]["content"].as_str())
        .collect();
    assert_eq!(
        joined, text,
        "stream is the default and gives the same text"
    );
    assert_eq!(lines.last().map(|l| l["done"].clone()), Some(json!(true)));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_openai_chat_completion_stream_and_usage() {
    let server = start_server(|_| {}).await;
    let body = json!({
        "model": MODEL, "temperature": 0, "max_tokens": 12, "seed": 1,
        "messages": [{"role": "user", "content": "Count from one to ten."}],
    });
    let (status, whole) = server.post("/v1/chat/completions", body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert!(whole["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("chatcmpl-")));
    let choice = &whole["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    let text = choice["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    let finish = choice["finish_reason"].as_str().expect("finish_reason");
    assert!(finish == "stop" || finish == "length");
    let usage = &whole["usage"];
    let completion = usage["completion_tokens"].as_u64().expect("usage");
    assert!(completion > 0 && completion <= 12);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().expect("prompt_tokens") + completion)
    );

    let mut streamed = body;
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    streamed["stop"] = json!("zzz-never");
    let resp = server
        .client
        .post(server.at("/v1/chat/completions"))
        .json(&streamed)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("text/event-stream")
    );
    let data = sse_data(&resp.text().await.expect("body"));
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON chunk"))
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    let joined: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(joined, text, "stream and non-stream give the same text");
    let roles: Vec<usize> = chunks
        .iter()
        .enumerate()
        .filter(|(_, c)| c["choices"][0]["delta"].get("role").is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(roles, vec![0], "only the first delta names the role");
    let usage_chunk = chunks.last().expect("usage chunk");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens"], completion);
    let finish_chunk = &chunks[chunks.len() - 2];
    assert_eq!(finish_chunk["choices"][0]["finish_reason"], finish);

    let (status, completion) = server
        .post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}),
        )
        .await;
    assert_eq!(status, 200, "{completion}");
    assert_eq!(completion["object"], "text_completion");
    assert!(completion["choices"][0]["text"].is_string());
    assert_eq!(completion["usage"]["completion_tokens"], 5);
    assert_eq!(completion["choices"][0]["finish_reason"], "length");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_prompt_longer_than_the_context_is_400() {
    let server = start_server(|_| {}).await;
    let long = "word ".repeat(200);
    let (status, body) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": long, "stream": false, "options": {"num_ctx": 64}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.contains("64") && message.contains("tokens"),
        "{message}"
    );
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"][0]["context_length"], 64);

    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "num_ctx": 64, "messages": [{"role": "user", "content": long}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("64")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_keep_alive_zero_unloads_and_num_ctx_reloads() {
    let server = start_server(|_| {}).await;
    let (status, load) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "keep_alive": "10m"}),
        )
        .await;
    assert_eq!(status, 200, "{load}");
    assert_eq!(load["done_reason"], "load");
    let (_, ps) = server.get("/api/ps").await;
    let models = ps["models"].as_array().expect("models");
    assert_eq!(models.len(), 1, "{ps}");
    assert_eq!(models[0]["name"], "smol:latest");
    assert_eq!(models[0]["context_length"], 1024);
    assert_eq!(models[0]["size_vram"], 0);
    assert!(models[0]["expires_at"].as_str().is_some());
    assert!(models[0]["size"].as_u64().is_some_and(|n| n > 1_000_000));

    // Another context length reloads the model.
    let (status, _) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hi", "stream": false, "options": {"num_ctx": 256, "num_predict": 2}}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"][0]["context_length"], 256);
    assert_eq!(ps["models"].as_array().map(Vec::len), Some(1));

    // keep_alive 0 on a request unloads after the response.
    let (status, _) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "stream": false, "keep_alive": 0, "options": {"num_ctx": 256, "num_predict": 2},
                   "messages": [{"role": "user", "content": "Hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps, json!({"models": []}));

    // Empty prompt with keep_alive 0: unload.
    server.post("/api/generate", json!({"model": MODEL})).await;
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"].as_array().map(Vec::len), Some(1));
    let (status, unload) = server
        .post("/api/generate", json!({"model": MODEL, "keep_alive": 0}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(unload["done_reason"], "unload");
    assert_eq!(unload["done"], true);
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps, json!({"models": []}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_disconnect_mid_stream_frees_the_sequence() {
    let server = start_server(|_| {}).await;
    let resp = server
        .client
        .post(server.at("/api/generate"))
        .json(&json!({
            "model": MODEL, "prompt": "Tell me a long story.",
            "options": {"num_predict": 100000, "ignore_eos": true, "temperature": 0},
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.bytes_stream();
    let first = body.next().await.expect("a chunk").expect("bytes");
    assert!(!first.is_empty());
    let name = ModelName::parse(MODEL).expect("name");
    // The engine publishes its statistics after each step, a moment after it sent the
    // step's tokens: wait until they show the running sequence.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = server
            .state
            .residency()
            .engine_stats(&name)
            .expect("loaded");
        if stats.n_running == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never running: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(body);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stats = server
            .state
            .residency()
            .engine_stats(&name)
            .expect("loaded");
        if stats.n_running == 0 && stats.n_waiting == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sequence still runs: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The model stays resident and serves the next request.
    let (status, _) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hi", "stream": false, "options": {"num_predict": 2}}),
        )
        .await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_graceful_shutdown_lets_a_stream_finish() {
    let server = start_server(|_| {}).await;
    let resp = server
        .client
        .post(server.at("/api/generate"))
        .json(&json!({
            "model": MODEL, "prompt": "Tell me a story.",
            "options": {"num_predict": 40, "ignore_eos": true, "temperature": 0},
        }))
        .send()
        .await
        .expect("sent");
    let mut body = resp.bytes_stream();
    let mut text = String::from_utf8(body.next().await.expect("chunk").expect("bytes").to_vec())
        .expect("UTF-8");
    let stopping = tokio::spawn(server.stop());
    while let Some(chunk) = body.next().await {
        text.push_str(std::str::from_utf8(&chunk.expect("bytes")).expect("UTF-8"));
    }
    let lines = ndjson_lines(&text);
    let last = lines.last().expect("lines");
    assert_eq!(last["done"], true, "the stream finished: {last}");
    assert_eq!(last["eval_count"], 40);
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("the server stopped")
        .expect("stop task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_same_seed_gives_the_same_text() {
    let server = start_server(|_| {}).await;
    let body = |seed: u64| {
        json!({
            "model": MODEL, "temperature": 1.0, "max_tokens": 24, "seed": seed,
            "stop": ["\n\n", "zzz"],
            "messages": [{"role": "user", "content": "Write a short poem about the sea."}],
        })
    };
    let text = |v: &Value| {
        v["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
    };
    let (s1, a) = server.post("/v1/chat/completions", body(42)).await;
    let (s2, b) = server.post("/v1/chat/completions", body(42)).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(text(&a), text(&b), "the same seed gives the same text");
    assert!(
        !text(&a).unwrap_or_default().contains("\n\n"),
        "stop strings are never emitted"
    );
    server.stop().await;
}

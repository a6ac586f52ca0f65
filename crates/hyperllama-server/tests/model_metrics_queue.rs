//! `/metrics` after real generations and embeddings, and the bounded queue: a burst of
//! concurrent requests against a tiny queue gets 503s in each dialect's error shape.

mod common;

use std::collections::HashMap;

use common::{start_server, MODEL};
use serde_json::{json, Value};

/// Parses the text exposition format: every sample line must be `name{labels} value`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            assert!(
                comment.starts_with(" HELP ") || comment.starts_with(" TYPE "),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|e| panic!("bad value in {line}: {e}")),
        };
        let name = series.split('{').next().expect("name");
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(server: &common::TestServer) -> HashMap<String, f64> {
    let resp = server
        .client
        .get(server.at("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse_metrics(&resp.text().await.expect("body"))
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_metrics_move_after_generation_and_embedding() {
    let server = start_server(|_| {}).await;
    let model = format!("{MODEL}:latest");
    let before = scrape(&server).await;
    assert_eq!(get(&before, "hyperllama_models_loaded"), 0.0);

    let (status, body) = server
        .post_text(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Say hello.", "ignore_eos": true,
                   "options": {"num_predict": 8, "temperature": 0}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": ["one", "two"]}),
        )
        .await;
    assert_eq!(status, 200);

    let after = scrape(&server).await;
    let generate_ok =
        r#"hyperllama_http_requests_total{method="POST",route="/api/generate",status="200"}"#;
    assert_eq!(get(&after, generate_ok), get(&before, generate_ok) + 1.0);
    let scrapes = r#"hyperllama_http_requests_total{method="GET",route="/metrics",status="200"}"#;
    assert!(get(&after, scrapes) >= 1.0);
    let label = format!("{{model=\"{model}\"}}");
    assert_eq!(
        get(&after, &format!("hyperllama_generated_tokens_total{label}")),
        8.0
    );
    assert!(get(&after, &format!("hyperllama_prompt_tokens_total{label}")) > 0.0);
    assert_eq!(
        get(&after, &format!("hyperllama_generations_total{label}")),
        1.0
    );
    assert_eq!(
        get(&after, &format!("hyperllama_embedding_inputs_total{label}")),
        2.0
    );
    assert!(get(&after, &format!("hyperllama_embedding_tokens_total{label}")) >= 2.0);
    assert_eq!(
        get(&after, "hyperllama_time_to_first_token_seconds_count"),
        1.0
    );
    assert_eq!(
        get(&after, "hyperllama_inter_token_latency_seconds_count"),
        7.0
    );
    assert_eq!(
        get(
            &after,
            r#"hyperllama_inter_token_latency_seconds_bucket{le="+Inf"}"#
        ),
        7.0
    );
    assert_eq!(get(&after, "hyperllama_models_loaded"), 1.0);
    assert!(get(&after, &format!("hyperllama_kv_cells_total{label}")) >= 1024.0);
    // Speculative decoding may emit several tokens per step: at least the prompt's step.
    assert!(get(&after, &format!("hyperllama_engine_steps_total{label}")) >= 1.0);
    assert_eq!(
        get(&after, &format!("hyperllama_engine_requests{label}")),
        0.0
    );
    assert!(get(&after, "hyperllama_http_request_duration_seconds_count") >= 3.0);
    server.stop().await;
}

/// Sends `n` copies of a request at once; returns (status, body) of each.
async fn burst(
    server: &common::TestServer,
    path: &str,
    body: Value,
    n: usize,
) -> Vec<(u16, Value)> {
    let sends = (0..n).map(|_| server.post(path, body.clone()));
    futures_util::future::join_all(sends).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_a_full_queue_answers_503_in_each_dialect() {
    let server = start_server(|cfg| {
        cfg.num_parallel = 1;
        cfg.queue_limit = 1;
    })
    .await;
    // Load first, so that the burst meets a resident model.
    let (status, _) = server.post("/api/generate", json!({"model": MODEL})).await;
    assert_eq!(status, 200);

    let ollama = burst(
        &server,
        "/api/generate",
        json!({"model": MODEL, "prompt": "Count to fifty.", "stream": false, "ignore_eos": true,
               "options": {"num_predict": 24}}),
        6,
    )
    .await;
    let ok = ollama.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&Value> = ollama
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok + busy.len(), 6, "only 200 or 503: {ollama:?}");
    assert!(
        (1..=2).contains(&ok),
        "one running plus one queued: {ollama:?}"
    );
    assert!(!busy.is_empty());
    for b in &busy {
        assert!(
            b["error"]
                .as_str()
                .expect("Ollama error")
                .contains("overloaded"),
            "{b}"
        );
    }

    let openai = burst(
        &server,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": [{"role": "user", "content": "Count to fifty."}],
               "max_tokens": 24, "ignore_eos": true}),
        6,
    )
    .await;
    let ok = openai.iter().filter(|(s, _)| *s == 200).count();
    let busy: Vec<&Value> = openai
        .iter()
        .filter(|(s, _)| *s == 503)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(ok + busy.len(), 6, "only 200 or 503: {openai:?}");
    assert!(ok >= 1 && !busy.is_empty(), "{openai:?}");
    for b in &busy {
        assert_eq!(b["error"]["type"], "overloaded_error", "{b}");
        assert!(b["error"]["message"].is_string());
    }

    // Embeddings share the bound; once the burst is over, requests are served again.
    let (status, body) = server
        .post(
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hi", "stream": false,
                                      "options": {"num_predict": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

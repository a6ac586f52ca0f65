//! The embedding endpoints over real HTTP with SmolLM2: `/api/embed`, `/api/embeddings`,
//! `/v1/embeddings`, and their 400s in each dialect.

mod common;

use common::{start_server, MODEL};
use serde_json::{json, Value};

const N_EMBD: usize = 576;

fn vectors(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("array of vectors")
        .iter()
        .map(|e| {
            e.as_array()
                .expect("vector")
                .iter()
                .map(|x| x.as_f64().expect("number") as f32)
                .collect()
        })
        .collect()
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn unbase64(s: &str) -> Vec<f32> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let mut bytes = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|&c| c != b'=').collect();
        let mut n = 0u32;
        for (i, &c) in data.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        for i in 0..data.len() - 1 {
            bytes.push((n >> (16 - 8 * i)) as u8);
        }
    }
    bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

const CAT: &str = "The cat sat on the mat.";
const CAT2: &str = "A cat was sitting on the mat.";
const MONEY: &str = "Quarterly revenue grew by eight percent.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_api_embed_and_legacy_embeddings() {
    let server = start_server(|_| {}).await;

    let (status, body) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": [CAT, CAT2, MONEY]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], MODEL);
    let vs = vectors(&body["embeddings"]);
    assert_eq!(vs.len(), 3);
    for v in &vs {
        assert_eq!(v.len(), N_EMBD);
        assert!((norm(v) - 1.0).abs() < 1e-4, "normalized");
    }
    assert!(
        dot(&vs[0], &vs[1]) > dot(&vs[0], &vs[2]),
        "closer pair is closer"
    );
    assert!(body["prompt_eval_count"].as_u64().expect("count") > 10);
    assert!(body["total_duration"].as_u64().expect("total") > 0);
    assert!(
        body["load_duration"].as_u64().expect("load") > 0,
        "first use loads"
    );

    // One string alone: the same vector as in the batch.
    let (status, alone) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": CAT, "keep_alive": "1m"}),
        )
        .await;
    assert_eq!(status, 200, "{alone}");
    let alone = vectors(&alone["embeddings"]);
    assert_eq!(alone.len(), 1);
    assert!(max_diff(&alone[0], &vs[0]) < 1e-4);
    assert_eq!(
        server.get("/api/ps").await.1["models"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // dimensions: cut and normalized again.
    let (status, cut) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": CAT, "dimensions": 64}),
        )
        .await;
    assert_eq!(status, 200, "{cut}");
    let cut = vectors(&cut["embeddings"]).remove(0);
    assert_eq!(cut.len(), 64);
    assert!((norm(&cut) - 1.0).abs() < 1e-4);

    // No input only loads the model.
    let (status, empty) = server.post("/api/embed", json!({"model": MODEL})).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["embeddings"], json!([]));

    // Truncation: on by default, a 400 when off.
    let long = "word ".repeat(3000);
    let (status, body) = server
        .post("/api/embed", json!({"model": MODEL, "input": long}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt_eval_count"], 1024, "cut to num_ctx");
    let (status, body) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": long, "truncate": false}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .expect("message")
        .contains("context length"));

    // The legacy endpoint answers the raw vector, whose direction is the same.
    let (status, legacy) = server
        .post("/api/embeddings", json!({"model": MODEL, "prompt": CAT}))
        .await;
    assert_eq!(status, 200, "{legacy}");
    let raw: Vec<f32> = legacy["embedding"]
        .as_array()
        .expect("vector")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect();
    assert_eq!(raw.len(), N_EMBD);
    assert!((norm(&raw) - 1.0).abs() > 1e-2, "not normalized");
    let n = norm(&raw);
    let unit: Vec<f32> = raw.iter().map(|x| x / n).collect();
    assert!(max_diff(&unit, &alone[0]) < 1e-4);
    let (status, legacy) = server
        .post("/api/embeddings", json!({"model": MODEL, "prompt": ""}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(legacy["embedding"], json!([]));

    // Errors in Ollama's shape.
    for (body, want) in [
        (json!({"model": "", "input": CAT}), 400),
        (json!({"model": MODEL, "input": [CAT, 3]}), 400),
        (json!({"model": MODEL, "input": {"text": CAT}}), 400),
        (
            json!({"model": MODEL, "input": CAT, "dimensions": N_EMBD + 1}),
            400,
        ),
        (json!({"model": MODEL, "input": CAT, "dimensions": -2}), 400),
        (json!({"model": "nosuch", "input": CAT}), 404),
    ] {
        let (status, reply) = server.post("/api/embed", body.clone()).await;
        assert_eq!(status, want, "{body} → {reply}");
        assert!(reply["error"].is_string(), "{reply}");
    }
    let (status, reply) = server.post("/api/embeddings", json!({"model": ""})).await;
    assert_eq!(status, 400);
    assert!(reply["error"].is_string());

    // keep_alive 0 unloads the model once the vectors are out, as for generation.
    let (status, _) = server
        .post(
            "/api/embed",
            json!({"model": MODEL, "input": CAT, "keep_alive": 0}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/ps").await.1["models"], json!([]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_openai_embeddings() {
    let server = start_server(|_| {}).await;

    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": [CAT, MONEY]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], MODEL);
    let data = body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let floats = vectors(&json!(data
        .iter()
        .map(|d| d["embedding"].clone())
        .collect::<Vec<_>>()));
    assert_eq!(floats[0].len(), N_EMBD);
    assert!((norm(&floats[0]) - 1.0).abs() < 1e-4);
    let tokens = body["usage"]["prompt_tokens"].as_u64().expect("usage");
    assert!(tokens > 5);
    assert_eq!(body["usage"]["total_tokens"], tokens);

    // base64 decodes to the same floats.
    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": CAT, "encoding_format": "base64"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let decoded = unbase64(body["data"][0]["embedding"].as_str().expect("base64 text"));
    assert!(max_diff(&decoded, &floats[0]) < 1e-4);

    // Token ids: one list, or several lists.
    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": [1, 504, 2368]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": MODEL, "input": [[1, 504], [1, 2368, 30]], "dimensions": 32}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        body["data"][1]["embedding"].as_array().map(Vec::len),
        Some(32)
    );

    // Errors in OpenAI's shape.
    for (body, want) in [
        (json!({"model": "", "input": CAT}), 400),
        (json!({"model": MODEL, "input": ""}), 400),
        (json!({"model": MODEL, "input": [CAT, 1]}), 400),
        (json!({"model": MODEL}), 400),
        (json!({"model": MODEL, "input": [9_999_999]}), 400),
        (
            json!({"model": MODEL, "input": CAT, "dimensions": N_EMBD + 1}),
            400,
        ),
        (
            json!({"model": MODEL, "input": CAT, "encoding_format": "int8"}),
            400,
        ),
        (json!({"model": "nosuch", "input": CAT}), 404),
    ] {
        let (status, reply) = server.post("/v1/embeddings", body.clone()).await;
        assert_eq!(status, want, "{body} → {reply}");
        assert!(reply["error"]["message"].is_string(), "{reply}");
        assert!(reply["error"]["type"].is_string(), "{reply}");
    }
    server.stop().await;
}

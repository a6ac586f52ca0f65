//! Structured output, log-probabilities and several choices over HTTP with the real SmolLM2:
//! Ollama's `format` (`"json"` and a schema), OpenAI's `response_format` (`json_object`,
//! `json_schema`), the `grammar` extension (GBNF and Lark), `logprobs`/`top_logprobs` on both
//! APIs, OpenAI's `n`, and the 400s for constraints that cannot compile.

mod common;

use common::{ndjson_lines, sse_data, start_server, MODEL};
use serde_json::{json, Value};

fn city_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": { "type": "string", "maxLength": 20 },
            "country": { "enum": ["France", "Italy", "Spain"] },
            "population": { "type": "integer", "minimum": 0 }
        },
        "required": ["city", "country", "population"],
        "additionalProperties": false
    })
}

fn assert_city(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert!(
        v["city"].as_str().is_some_and(|c| c.chars().count() <= 20),
        "{text}"
    );
    assert!(
        ["France", "Italy", "Spain"].contains(&v["country"].as_str().unwrap_or("")),
        "{text}"
    );
    assert!(v["population"].as_u64().is_some(), "{text}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{text}");
}

#[tokio::test]
async fn model_format_response_format_and_grammars_constrain_the_answer() {
    let server = start_server(|_| {}).await;
    let ask = "Describe the capital of France.";

    // Ollama: a schema on /api/chat, not streamed.
    let (status, v) = server
        .post(
            "/api/chat",
            json!({ "model": MODEL, "stream": false, "format": city_schema(),
                    "messages": [{ "role": "user", "content": ask }],
                    "options": { "temperature": 0, "num_predict": 200 } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_city(v["message"]["content"].as_str().expect("content"));
    assert_eq!(v["done_reason"], "stop");

    // Ollama: "json" on /api/generate, streamed and sampled.
    let (status, body) = server
        .post_text(
            "/api/generate",
            json!({ "model": MODEL, "prompt": ask, "format": "json",
                    "options": { "temperature": 0.8, "seed": 3, "num_predict": 300 } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text: String = ndjson_lines(&body)
        .iter()
        .filter_map(|l| l["response"].as_str().map(str::to_owned))
        .collect();
    let object: serde_json::Map<String, Value> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an object ({e}): {text}"));
    drop(object);

    // OpenAI: json_schema, and json_object streamed.
    let (status, v) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "temperature": 0, "max_tokens": 200,
                    "messages": [{ "role": "user", "content": ask }],
                    "response_format": { "type": "json_schema",
                        "json_schema": { "name": "city", "strict": true, "schema": city_schema() } } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_city(
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content"),
    );
    let (status, body) = server
        .post_text(
            "/v1/chat/completions",
            json!({ "model": MODEL, "temperature": 0, "max_tokens": 200, "stream": true,
                    "messages": [{ "role": "user", "content": ask }],
                    "response_format": { "type": "json_object" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let text: String = sse_data(&body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).ok()?;
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        serde_json::from_str::<serde_json::Map<String, Value>>(&text).is_ok(),
        "{text}"
    );

    // Grammars: GBNF on /v1/completions, Lark on /api/generate.
    let gbnf = r#"root ::= ("yes" | "no") ", because " [a-z ]{1,30} ".""#;
    let (status, v) = server
        .post(
            "/v1/completions",
            json!({ "model": MODEL, "prompt": "Is Paris in France?", "temperature": 0,
                    "max_tokens": 60, "grammar": gbnf }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let text = v["choices"][0]["text"].as_str().expect("text");
    assert!(
        (text.starts_with("yes, because ") || text.starts_with("no, because "))
            && text.ends_with('.'),
        "{text}"
    );
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "prompt": "Pick a number.", "stream": false,
                    "grammar": "start: /[1-9][0-9]?/", "options": { "temperature": 0 } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let n: u32 = v["response"]
        .as_str()
        .expect("response")
        .parse()
        .expect("a number");
    assert!((1..100).contains(&n));

    // Constraints that cannot compile: 400 in each dialect, with the compiler's message.
    let (status, v) = server
        .post(
            "/api/chat",
            json!({ "model": MODEL, "format": { "type": "nonsense" },
                    "messages": [{ "role": "user", "content": ask }] }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid constraint")),
        "{v}"
    );
    let (status, v) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": [{ "role": "user", "content": ask }],
                    "response_format": { "type": "json_schema", "json_schema": { "name": "x" } } }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|e| e.contains("schema")),
        "{v}"
    );
    let (status, v) = server
        .post(
            "/v1/completions",
            json!({ "model": MODEL, "prompt": "x", "grammar": "root ::= \"unterminated" }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "prompt": "x", "format": "yaml" }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn model_logprobs_and_several_choices() {
    let server = start_server(|_| {}).await;
    let messages = json!([{ "role": "user", "content": "Name a fruit." }]);

    // OpenAI chat: one entry per generated token, the greedy token first among alternatives.
    let (status, v) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 6,
                    "logprobs": true, "top_logprobs": 3 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs");
    assert_eq!(
        content.len() as u64,
        v["usage"]["completion_tokens"].as_u64().expect("usage")
    );
    let text: String = content
        .iter()
        .map(|e| e["token"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        text,
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
    );
    for e in content {
        let top = e["top_logprobs"].as_array().expect("alternatives");
        assert_eq!(top.len(), 3);
        assert_eq!(top[0]["logprob"], e["logprob"], "{e}");
        assert!(e["logprob"].as_f64().is_some_and(|l| l <= 0.0));
    }
    // Streamed, the entries ride on the chunks.
    let (status, body) = server
        .post_text(
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 6,
                    "stream": true, "logprobs": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let n_entries: usize = sse_data(&body)
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .map(|v| {
            v["choices"][0]["logprobs"]["content"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(n_entries, 6);

    // Legacy completions: tokens, token_logprobs, top_logprobs, text_offset.
    let (status, v) = server
        .post(
            "/v1/completions",
            json!({ "model": MODEL, "prompt": "One, two,", "temperature": 0, "max_tokens": 4,
                    "logprobs": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let lp = &v["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().map(Vec::len), Some(4), "{v}");
    assert_eq!(lp["token_logprobs"].as_array().map(Vec::len), Some(4));
    assert_eq!(lp["text_offset"][0], 0);

    // Ollama: logprobs on the chunks.
    let (status, body) = server
        .post_text(
            "/api/chat",
            json!({ "model": MODEL, "messages": messages, "logprobs": true, "top_logprobs": 2,
                    "options": { "temperature": 0, "num_predict": 5 } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let entries: Vec<Value> = ndjson_lines(&body)
        .iter()
        .flat_map(|l| l["logprobs"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(entries.len(), 5, "{body}");
    assert!(entries
        .iter()
        .all(|e| e["top_logprobs"].as_array().map(Vec::len) == Some(2)));
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "prompt": "x", "top_logprobs": 2, "stream": false }),
        )
        .await;
    assert_eq!(status, 400, "top_logprobs without logprobs: {v}");

    // n = 3: three choices, batched, different under sampling; usage counts all of them.
    let (status, v) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": messages, "n": 3, "temperature": 1.0,
                    "seed": 11, "max_tokens": 12 }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert!(c["finish_reason"].is_string());
    }
    let texts: std::collections::HashSet<&str> = choices
        .iter()
        .filter_map(|c| c["message"]["content"].as_str())
        .collect();
    assert!(texts.len() > 1, "sampled choices differ: {texts:?}");
    assert!(v["usage"]["completion_tokens"].as_u64().expect("usage") > 12);
    // Streamed: every choice ends with its own finish_reason, then one [DONE].
    let (status, body) = server
        .post_text(
            "/v1/completions",
            json!({ "model": MODEL, "prompt": "Hello", "n": 2, "max_tokens": 4,
                    "stream": true, "stream_options": { "include_usage": true } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let data = sse_data(&body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let mut finished = [false, false];
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).expect("chunk");
        if let Some(c) = v["choices"].as_array().and_then(|c| c.first()) {
            if c["finish_reason"].is_string() {
                finished[c["index"].as_u64().expect("index") as usize] = true;
            }
        }
    }
    assert_eq!(finished, [true, true], "{body}");
    let (status, _) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "messages": messages, "n": 17 }),
        )
        .await;
    assert_eq!(status, 400);
    server.stop().await;
}

#[tokio::test]
async fn model_num_ctx_above_the_trained_length_is_refused() {
    let server = start_server(|_| {}).await;
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "prompt": "Hi", "options": { "num_ctx": 100000 } }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let e = v["error"].as_str().expect("error");
    assert!(e.contains("100000") && e.contains("8192"), "{e}");
    let (status, v) = server
        .post(
            "/v1/chat/completions",
            json!({ "model": MODEL, "num_ctx": 100000,
                    "messages": [{ "role": "user", "content": "Hi" }] }),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|e| e.contains("trained")));
    // Within the trained length it works.
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "prompt": "Hi", "stream": false,
                    "options": { "num_ctx": 512, "num_predict": 2 } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    server.stop().await;
}

/// A ChatML template that renders tools Hermes-style (from the tool tests' fixtures).
const TOOLS_TEMPLATE: &str = include_str!("fixtures/tools_template.jinja");

#[tokio::test]
async fn model_tool_choice_required_and_named_force_a_valid_call() {
    let server = start_server(|_| {}).await;
    let (status, body) = server
        .post(
            "/api/create",
            json!({"model": "smol-tools", "from": MODEL, "template": TOOLS_TEMPLATE, "stream": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let tools = json!([
        { "type": "function", "function": { "name": "get_weather",
            "parameters": { "type": "object", "properties": {
                "city": { "type": "string", "maxLength": 20 },
                "unit": { "enum": ["celsius", "fahrenheit"] } },
              "required": ["city", "unit"], "additionalProperties": false } } },
        { "type": "function", "function": { "name": "get_time",
            "parameters": { "type": "object", "properties": {
                "timezone": { "type": "string", "maxLength": 30 } },
              "required": ["timezone"], "additionalProperties": false } } }
    ]);
    // The question asks for neither tool's exact arguments: the grammar supplies the shape.
    for (choice, expected) in [
        (json!("required"), None),
        (
            json!({ "type": "function", "function": { "name": "get_time" } }),
            Some("get_time"),
        ),
    ] {
        for temperature in [0.0, 0.9] {
            let (status, v) = server
                .post(
                    "/v1/chat/completions",
                    json!({ "model": "smol-tools", "tools": tools, "tool_choice": choice,
                            "temperature": temperature, "seed": 5, "max_tokens": 120,
                            "messages": [{ "role": "user", "content": "Hello! How are you?" }] }),
                )
                .await;
            assert_eq!(status, 200, "{v}");
            let choice0 = &v["choices"][0];
            assert_eq!(choice0["finish_reason"], "tool_calls", "{v}");
            let call = &choice0["message"]["tool_calls"][0]["function"];
            let name = call["name"].as_str().expect("a name");
            if let Some(expected) = expected {
                assert_eq!(name, expected, "{v}");
            }
            let args: Value = serde_json::from_str(call["arguments"].as_str().expect("arguments"))
                .expect("arguments are JSON");
            match name {
                "get_weather" => {
                    assert!(args["city"].is_string(), "{args}");
                    assert!(
                        ["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap_or(""))
                    );
                }
                "get_time" => assert!(args["timezone"].is_string(), "{args}"),
                other => panic!("unknown tool {other}"),
            }
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn model_speculative_statistics_are_in_the_final_chunk_and_metrics() {
    let server = start_server(|_| {}).await;
    let text = "The quick brown fox jumps over the lazy dog near the river bank.";
    let (status, v) = server
        .post(
            "/api/generate",
            json!({ "model": MODEL, "stream": false, "raw": true,
                    "prompt": format!("{text}\n{text}\n{text}\n"),
                    "options": { "temperature": 0, "num_predict": 32 } }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let drafted = v["draft_n"].as_u64().expect("drafts were verified");
    let accepted = v["draft_n_accepted"].as_u64().expect("accepted count");
    assert!(drafted > 0 && accepted > 0 && accepted <= drafted, "{v}");
    let resp = reqwest::get(server.at("/metrics")).await.expect("metrics");
    let body = resp.text().await.expect("body");
    assert!(
        body.lines()
            .any(|l| l.starts_with("hyperllama_draft_tokens_accepted{") && !l.ends_with(" 0")),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn model_a_request_template_replaces_the_models_and_go_templates_are_refused() {
    let server = start_server(|_| {}).await;
    let ask = |template: Option<&str>| {
        let mut body = json!({ "model": MODEL, "prompt": "Name a color.", "stream": false,
                               "options": { "temperature": 0, "num_predict": 4 } });
        if let Some(t) = template {
            body["template"] = json!(t);
        }
        body
    };
    let (status, plain) = server.post("/api/generate", ask(None)).await;
    assert_eq!(status, 200, "{plain}");
    let jinja = "{% for m in messages %}Question: {{ m.content }}\nAnswer:{% endfor %}";
    let (status, own) = server.post("/api/generate", ask(Some(jinja))).await;
    assert_eq!(status, 200, "{own}");
    // "Question: Name a color.\nAnswer:" is far shorter than the ChatML prompt with its system turn.
    assert!(
        own["prompt_eval_count"].as_u64() < plain["prompt_eval_count"].as_u64(),
        "{own} vs {plain}"
    );
    let (status, v) = server
        .post("/api/generate", ask(Some("{{ .System }} {{ .Prompt }}")))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("Jinja")),
        "{v}"
    );
    let (status, v) = server
        .post("/api/generate", ask(Some("{% for m in messages %}")))
        .await;
    assert_eq!(status, 400, "a broken Jinja template: {v}");
    server.stop().await;
}

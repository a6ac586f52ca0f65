//! Structured output with a thinking model, over HTTP with the real SmolLM2: the reasoning
//! between `<think>` and `</think>` is free, the constraint (Ollama's `format`, OpenAI's
//! `response_format`, a forced tool call) applies to the answer after it, and the thinking
//! budget forces the end of the thinking so that the answer always comes.
//!
//! SmolLM2 has no thinking template, so the tests give one: through the request's `template`
//! field (Ollama), or a model created with it (OpenAI). Its generation prompt opens `<think>`
//! as Qwen3's and DeepSeek-R1's do; the 135M model never closes it by itself, so every
//! answer here also proves that the budget closes it.

mod common;

use common::{ndjson_lines, start_server, MODEL};
use serde_json::{json, Value};

/// A ChatML template with Qwen3-style thinking switches.
const THINK_TEMPLATE: &str = include_str!("fixtures/think_template.jinja");

/// The same with tools rendered Hermes-style.
const THINK_TOOLS_TEMPLATE: &str = include_str!("fixtures/think_tools_template.jinja");

const ASK: &str = "Describe the capital of France as JSON.";

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

/// Checks that `text` is JSON that validates against `schema`.
fn assert_valid(schema: &Value, text: &str, context: &Value) {
    let value: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {text:?} in {context}"));
    let validator = jsonschema::validator_for(schema).expect("the schema is valid");
    if let Err(e) = validator.validate(&value) {
        panic!("the answer does not validate ({e}): {text} in {context}");
    }
}

#[tokio::test]
async fn model_format_applies_to_the_answer_after_the_thinking() {
    let server = start_server(|_| {}).await;
    let schema = city_schema();
    // Ollama, the template given with the request: an explicit budget, then the default
    // one (half of num_predict).
    for temperature in [0.0, 0.8] {
        for budget in [Some(40), None] {
            let mut options = json!({ "temperature": temperature, "seed": 11, "num_predict": 160 });
            if let Some(b) = budget {
                options["think_budget"] = json!(b);
            }
            let body = json!({
                "model": MODEL, "stream": false, "think": true, "template": THINK_TEMPLATE,
                "format": schema, "options": options,
                "messages": [{ "role": "user", "content": ASK }],
            });
            let (status, v) = server.post("/api/chat", body).await;
            assert_eq!(status, 200, "{v}");
            let thinking = v["message"]["thinking"].as_str().unwrap_or_default();
            assert!(!thinking.trim().is_empty(), "no thinking: {v}");
            assert!(!thinking.contains("</think>"), "{v}");
            assert_valid(
                &schema,
                v["message"]["content"].as_str().expect("content"),
                &v,
            );
            assert_eq!(v["done_reason"], "stop", "{v}");
        }
    }

    // Streamed: thinking chunks first, then content chunks that join into valid JSON.
    let (status, body) = server
        .post_text(
            "/api/chat",
            json!({
                "model": MODEL, "think": true, "template": THINK_TEMPLATE, "format": schema,
                "options": { "temperature": 0.8, "seed": 3, "num_predict": 160, "think_budget": 30 },
                "messages": [{ "role": "user", "content": ASK }],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let lines = ndjson_lines(&body);
    let joined = |field: &str| -> String {
        lines
            .iter()
            .filter_map(|l| l["message"][field].as_str())
            .collect()
    };
    assert!(!joined("thinking").trim().is_empty(), "{body}");
    assert_valid(&schema, &joined("content"), &json!(body));

    // OpenAI, a model created with the template: response_format json_schema, the answer's
    // reasoning as reasoning_content.
    server
        .create_with_template("smol-think", THINK_TEMPLATE)
        .await;
    for temperature in [0.0, 0.8] {
        let (status, v) = server
            .post(
                "/v1/chat/completions",
                json!({
                    "model": "smol-think", "temperature": temperature, "seed": 5,
                    "max_tokens": 160, "think_budget": 40,
                    "response_format": { "type": "json_schema",
                        "json_schema": { "name": "city", "strict": true, "schema": schema } },
                    "messages": [{ "role": "user", "content": ASK }],
                }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let message = &v["choices"][0]["message"];
        let reasoning = message["reasoning_content"].as_str().unwrap_or_default();
        assert!(!reasoning.trim().is_empty(), "no reasoning: {v}");
        assert_valid(&schema, message["content"].as_str().expect("content"), &v);
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    }

    // think: false closes the thinking in the prompt: the format applies from the start.
    let (status, v) = server
        .post(
            "/api/chat",
            json!({
                "model": "smol-think", "stream": false, "think": false, "format": schema,
                "options": { "temperature": 0, "num_predict": 120 },
                "messages": [{ "role": "user", "content": ASK }],
            }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert!(v["message"].get("thinking").is_none(), "{v}");
    assert_valid(
        &schema,
        v["message"]["content"].as_str().expect("content"),
        &v,
    );
    server.stop().await;
}

#[tokio::test]
async fn model_a_budget_without_room_ends_and_a_zero_budget_answers_at_once() {
    let server = start_server(|_| {}).await;
    let schema = city_schema();
    let ask = |budget: u64, num_predict: u64| {
        json!({
            "model": MODEL, "stream": false, "think": true, "template": THINK_TEMPLATE,
            "format": schema,
            "options": { "temperature": 0, "num_predict": num_predict, "think_budget": budget },
            "messages": [{ "role": "user", "content": ASK }],
        })
    };
    // The budget is larger than num_predict: the output ends in the thinking, by length.
    let (status, v) = server.post("/api/chat", ask(500, 24)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["done_reason"], "length", "{v}");
    assert_eq!(v["eval_count"], 24, "{v}");
    assert!(!v["message"]["thinking"]
        .as_str()
        .unwrap_or_default()
        .is_empty());
    assert_eq!(v["message"]["content"], "", "{v}");

    // No budget: the thinking closes at once and the answer follows.
    let (status, v) = server.post("/api/chat", ask(0, 120)).await;
    assert_eq!(status, 200, "{v}");
    assert!(v["message"].get("thinking").is_none(), "{v}");
    assert_valid(
        &schema,
        v["message"]["content"].as_str().expect("content"),
        &v,
    );

    // A budget that is not a count is refused.
    let mut bad = ask(1, 10);
    bad["options"]["think_budget"] = json!(-3);
    let (status, v) = server.post("/api/chat", bad).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap_or_default()
        .contains("think_budget"));
    server.stop().await;
}

#[tokio::test]
async fn model_a_forced_tool_call_comes_after_the_thinking() {
    let server = start_server(|_| {}).await;
    server
        .create_with_template("smol-think-tools", THINK_TOOLS_TEMPLATE)
        .await;
    let params = json!({ "type": "object", "properties": {
        "city": { "type": "string", "maxLength": 20 },
        "unit": { "enum": ["celsius", "fahrenheit"] } },
      "required": ["city", "unit"], "additionalProperties": false });
    let tools = json!([{ "type": "function", "function": { "name": "get_weather", "parameters": params } }]);
    for temperature in [0.0, 0.8] {
        let (status, v) = server
            .post(
                "/v1/chat/completions",
                json!({ "model": "smol-think-tools", "tools": tools, "tool_choice": "required",
                        "temperature": temperature, "seed": 5, "max_tokens": 160,
                        "think_budget": 40,
                        "messages": [{ "role": "user", "content": "What is the weather in Paris?" }] }),
            )
            .await;
        assert_eq!(status, 200, "{v}");
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
        let reasoning = choice["message"]["reasoning_content"]
            .as_str()
            .unwrap_or_default();
        assert!(!reasoning.trim().is_empty(), "no reasoning: {v}");
        let call = &choice["message"]["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather", "{v}");
        assert_valid(&params, call["arguments"].as_str().expect("arguments"), &v);
    }
    server.stop().await;
}

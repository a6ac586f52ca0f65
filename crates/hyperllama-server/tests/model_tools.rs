//! Tool calling and thinking end to end: SmolLM2 behind the real server, both APIs,
//! streamed and not.
//!
//! SmolLM2-135M-Instruct's own template ignores tools, so (as Ollama does) the server
//! refuses tools for it. The tool tests create `smol-tools` from it with a Jinja template
//! that renders the tools Hermes-style and, when the request has tools, ends the generation
//! prompt with an opened `<tool_call>` (an assistant prefill): the model then writes the
//! call's JSON itself, and the server parses that real output. The template's example
//! call asks for London; the model writes Paris, as the user asked. (Without the example
//! the 135M model copies the tool's schema instead of arguments.) Likewise `smol-think` has a
//! template with `enable_thinking` whose generation prompt opens `<think>` when thinking
//! is on (and closes an empty one when it is off, as Qwen3's does).

mod common;

use common::{ndjson_lines, sse_data, start_server, MODEL};
use serde_json::{json, Value};

/// A ChatML template that renders tools, tool calls and tool results, and prefills
/// `<tool_call>` when the request has tools.
const TOOLS_TEMPLATE: &str = include_str!("fixtures/tools_template.jinja");

/// A ChatML template with Qwen3-style thinking switches.
const THINK_TEMPLATE: &str = include_str!("fixtures/think_template.jinja");

const TOOLS_MODEL: &str = "smol-tools";
const THINK_MODEL: &str = "smol-think";

fn weather_tool() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }
        }
    }])
}

const ASK: &str = "Call get_weather with city Paris.";

fn assert_weather_call(call: &Value) {
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_tool_calls_are_parsed_in_both_apis() {
    let server = start_server(|_| {}).await;
    server
        .create_with_template(TOOLS_MODEL, TOOLS_TEMPLATE)
        .await;
    let options = json!({"temperature": 0, "num_predict": 40});

    // Ollama, not streamed.
    let chat = json!({
        "model": TOOLS_MODEL, "stream": false, "options": options, "tools": weather_tool(),
        "messages": [{"role": "user", "content": ASK}],
    });
    let (status, whole) = server.post("/api/chat", chat.clone()).await;
    assert_eq!(status, 200, "{whole}");
    let calls = whole["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no tool_calls: {whole}"));
    assert_eq!(calls.len(), 1, "{whole}");
    assert_weather_call(&calls[0]);
    assert_eq!(calls[0]["function"]["arguments"], json!({"city": "Paris"}));
    assert_eq!(calls[0]["function"]["index"], 0);
    assert!(calls[0]["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_")));
    let content = whole["message"]["content"].as_str().expect("content");
    assert!(!content.contains("<tool_call>") && !content.contains("</tool_call>"));

    // Ollama, streamed: the same call in a chunk of its own, then the final chunk.
    let mut streamed = chat.clone();
    streamed["stream"] = json!(true);
    let (status, raw) = server.post_text("/api/chat", streamed).await;
    assert_eq!(status, 200, "{raw}");
    let lines = ndjson_lines(&raw);
    let call_chunks: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"]["tool_calls"].is_array())
        .collect();
    assert_eq!(call_chunks.len(), 1, "{raw}");
    assert_eq!(call_chunks[0]["done"], false);
    assert_eq!(
        call_chunks[0]["message"]["tool_calls"][0]["function"],
        calls[0]["function"]
    );
    let joined: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(joined, content, "streamed content matches");
    assert_eq!(lines.last().expect("lines")["done"], true);

    // OpenAI, not streamed: arguments as a JSON string, finish_reason tool_calls.
    let oa = json!({
        "model": TOOLS_MODEL, "temperature": 0, "max_tokens": 40, "tools": weather_tool(),
        "tool_choice": "auto", "messages": [{"role": "user", "content": ASK}],
    });
    let (status, whole) = server.post("/v1/chat/completions", oa.clone()).await;
    assert_eq!(status, 200, "{whole}");
    let choice = &whole["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{whole}");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert!(call["id"]
        .as_str()
        .is_some_and(|id| id.starts_with("call_")));
    assert_weather_call(call);
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("string"))
        .expect("arguments are JSON");
    assert_eq!(args, json!({"city": "Paris"}));
    let oa_content = choice["message"]["content"].as_str().unwrap_or_default();
    assert_eq!(oa_content, content, "same answer text in both APIs");

    // OpenAI, streamed: one delta with the call and its index, then finish_reason.
    let mut streamed = oa.clone();
    streamed["stream"] = json!(true);
    let (status, raw) = server.post_text("/v1/chat/completions", streamed).await;
    assert_eq!(status, 200, "{raw}");
    let events: Vec<Value> = sse_data(&raw)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk"))
        .collect();
    let deltas: Vec<&Value> = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(deltas.len(), 1, "{raw}");
    assert_eq!(deltas[0]["index"], 0);
    assert_eq!(deltas[0]["type"], "function");
    assert_eq!(deltas[0]["function"], call["function"]);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let finish: Vec<&Value> = events
        .iter()
        .map(|e| &e["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, vec![&json!("tool_calls")]);
    assert!(raw.trim_end().ends_with("data: [DONE]"));

    // tool_choice "none": the tools are neither rendered nor parsed.
    let mut none = oa.clone();
    none["tool_choice"] = json!("none");
    let (status, whole) = server.post("/v1/chat/completions", none).await;
    assert_eq!(status, 200, "{whole}");
    assert!(
        whole["choices"][0]["message"]["tool_calls"].is_null(),
        "{whole}"
    );
    assert_ne!(whole["choices"][0]["finish_reason"], "tool_calls");

    // A conversation that carries the call and its result renders (both shapes).
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({
                "model": TOOLS_MODEL, "max_tokens": 4, "tools": weather_tool(),
                "messages": [
                    {"role": "user", "content": ASK},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
                ],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .post(
            "/api/chat",
            json!({
                "model": TOOLS_MODEL, "stream": false, "options": {"num_predict": 4},
                "tools": weather_tool(),
                "messages": [
                    {"role": "user", "content": ASK},
                    {"role": "assistant", "content": "", "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                    {"role": "tool", "tool_name": "get_weather", "content": "Sunny, 21 C"},
                ],
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_tools_and_thinking_are_refused_where_unsupported() {
    let server = start_server(|_| {}).await;
    let user = json!([{"role": "user", "content": "Hi"}]);
    // SmolLM2's own template ignores tools: refused as Ollama refuses them.
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": user, "tools": weather_tool(), "stream": false}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().expect("error");
    assert!(
        message.ends_with("smol:latest does not support tools"),
        "{message}"
    );
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user, "tools": weather_tool()}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("does not support tools")));

    // think: true needs a thinking template; think: false is always accepted.
    for (path, body) in [
        (
            "/api/chat",
            json!({"model": MODEL, "messages": user, "think": true, "stream": false}),
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "Hi", "think": true, "stream": false}),
        ),
    ] {
        let (status, body) = server.post(path, body).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(
            body["error"],
            format!("\"{MODEL}\" does not support thinking")
        );
    }
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": user, "think": false, "stream": false,
                   "options": {"num_predict": 2}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].get("thinking").is_none());

    // Malformed tools are a 400 in both dialects.
    for tools in [
        json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        json!([{"type": "function", "function": {"description": "no name"}}]),
    ] {
        let (status, body) = server
            .post(
                "/api/chat",
                json!({"model": MODEL, "messages": user, "tools": tools, "stream": false}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("tools[0]")));
        let (status, body) = server
            .post(
                "/v1/chat/completions",
                json!({"model": MODEL, "messages": user, "tools": tools}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": user, "tools": weather_tool(),
                   "tool_choice": {"type": "function", "function": {"name": "other"}}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_thinking_is_split_from_the_content() {
    let server = start_server(|_| {}).await;
    server
        .create_with_template(THINK_MODEL, THINK_TEMPLATE)
        .await;
    let user = json!([{"role": "user", "content": "What is 2 + 2?"}]);
    let options = json!({"temperature": 0, "num_predict": 12});

    // The prompt opens <think>: what the model writes is thinking (it never closes it in
    // 12 tokens), streamed as thinking chunks.
    let body = json!({"model": THINK_MODEL, "messages": user, "think": true,
                      "stream": false, "options": options});
    let (status, whole) = server.post("/api/chat", body.clone()).await;
    assert_eq!(status, 200, "{whole}");
    let thinking = whole["message"]["thinking"]
        .as_str()
        .unwrap_or_else(|| panic!("no thinking: {whole}"))
        .to_owned();
    assert!(!thinking.is_empty());
    let content = whole["message"]["content"]
        .as_str()
        .expect("content")
        .to_owned();
    assert!(!content.contains("</think>"), "{whole}");
    let mut streamed = body;
    streamed["stream"] = json!(true);
    let (status, raw) = server.post_text("/api/chat", streamed).await;
    assert_eq!(status, 200, "{raw}");
    let lines = ndjson_lines(&raw);
    let joined = |field: &str| -> String {
        lines
            .iter()
            .filter_map(|l| l["message"][field].as_str())
            .collect()
    };
    assert_eq!(joined("thinking"), thinking);
    assert_eq!(joined("content"), content);

    // /api/generate has `thinking` beside `response`.
    let (status, gen) = server
        .post(
            "/api/generate",
            json!({"model": THINK_MODEL, "prompt": "What is 2 + 2?", "think": true,
                   "stream": false, "options": options}),
        )
        .await;
    assert_eq!(status, 200, "{gen}");
    assert_eq!(gen["thinking"], json!(thinking));

    // think: false renders an empty thinking block: all of the answer is content.
    let (status, off) = server
        .post(
            "/api/chat",
            json!({"model": THINK_MODEL, "messages": user, "think": false,
                   "stream": false, "options": options}),
        )
        .await;
    assert_eq!(status, 200, "{off}");
    assert!(off["message"].get("thinking").is_none(), "{off}");
    assert!(!off["message"]["content"]
        .as_str()
        .expect("content")
        .is_empty());

    // OpenAI: the reasoning is `reasoning_content`, streamed as its own deltas.
    let oa = json!({"model": THINK_MODEL, "messages": user, "temperature": 0, "max_tokens": 12});
    let (status, whole) = server.post("/v1/chat/completions", oa.clone()).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(
        whole["choices"][0]["message"]["reasoning_content"],
        json!(thinking)
    );
    let mut streamed = oa;
    streamed["stream"] = json!(true);
    let (status, raw) = server.post_text("/v1/chat/completions", streamed).await;
    assert_eq!(status, 200, "{raw}");
    let reasoning: String = sse_data(&raw)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).expect("chunk"))
        .filter_map(|e| {
            e["choices"][0]["delta"]["reasoning_content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(reasoning, thinking);
    server.stop().await;
}

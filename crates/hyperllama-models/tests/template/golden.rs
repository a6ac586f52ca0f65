//! Golden renders of real templates: SmolLM2, Gemma, ChatML, Qwen 2.5/3, Llama 3.2.

use super::*;

// 1. SmolLM2-135M-Instruct's real template.

#[test]
fn smollm2_adds_its_default_system_prompt() {
    let t = compile(SMOLLM2, "");
    let messages = msgs(&[("user", "Hi")]);
    assert_eq!(
        render(&t, &prompt(&messages)),
        r#"<|im_start|>system
You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
"#
    );
}

#[test]
fn smollm2_uses_the_given_system_prompt() {
    let t = compile(SMOLLM2, "");
    let messages = msgs(&[
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Bye"),
    ]);
    let req = RenderRequest {
        add_generation_prompt: false,
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|im_start|>system
You are terse.<|im_end|>
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
Hello.<|im_end|>
<|im_start|>user
Bye<|im_end|>
"#
    );
}

#[test]
fn smollm2_fixture_is_byte_exact() {
    assert_eq!(SMOLLM2.len(), 368);
    assert!(SMOLLM2.starts_with("{% for message in messages %}"));
    assert!(SMOLLM2.ends_with("{% endif %}"));
    assert_eq!(
        detect_capabilities(SMOLLM2),
        TemplateCapabilities::default()
    );
}

// 2. The built-in Gemma template, and ChatML.

#[test]
fn gemma_builtin_prepends_system_to_first_user_turn() {
    let source = builtin_for_architecture("gemma3").expect("gemma3 has a builtin");
    let t = compile(source, "<bos>");
    let messages = msgs(&[("system", "Be brief."), ("user", "Hi")]);
    assert_eq!(
        render(&t, &prompt(&messages)),
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(
        render(&t, &prompt(&messages)),
        r#"<bos><start_of_turn>user
Be brief.

Hi<end_of_turn>
<start_of_turn>model
"#
    );
}

#[test]
fn gemma_builtin_renders_multi_turn_with_model_role() {
    let source = builtin_for_architecture("gemma").expect("gemma has a builtin");
    let t = compile(source, "<bos>");
    let messages = msgs(&[
        ("user", " Hi "),
        ("assistant", "Hello! How can I help?"),
        ("user", "Tell me a joke."),
    ]);
    assert_eq!(
        render(&t, &prompt(&messages)),
        r#"<bos><start_of_turn>user
Hi<end_of_turn>
<start_of_turn>model
Hello! How can I help?<end_of_turn>
<start_of_turn>user
Tell me a joke.<end_of_turn>
<start_of_turn>model
"#
    );
}

#[test]
fn gemma_builtin_rejects_non_alternating_roles_like_upstream() {
    let source = builtin_for_architecture("gemma2").expect("gemma2 has a builtin");
    let t = compile(source, "<bos>");
    let messages = msgs(&[("user", "a"), ("user", "b")]);
    let err = render_err(&t, &prompt(&messages));
    assert!(matches!(err, TemplateError::Render(_)));
    assert!(
        err.to_string()
            .contains("Conversation roles must alternate"),
        "{err}"
    );
}

#[test]
fn builtins_exist_only_for_known_architectures() {
    for arch in ["gemma", "gemma2", "gemma3", "gemma3n"] {
        assert!(builtin_for_architecture(arch).is_some(), "{arch}");
    }
    for arch in ["llama", "qwen2", "phi3", ""] {
        assert!(builtin_for_architecture(arch).is_none(), "{arch}");
    }
}

#[test]
fn chatml_fallback_renders() {
    let t = compile(CHATML, "");
    let messages = msgs(&[("system", "S"), ("user", "Hi")]);
    assert_eq!(
        render(&t, &prompt(&messages)),
        r#"<|im_start|>system
S<|im_end|>
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
"#
    );
}

// 3. Qwen templates with tools, tool calls and thinking.

#[test]
fn qwen25_renders_tools_and_tool_history() {
    let t = compile(QWEN25, "");
    let tools = weather_tool();
    let messages = tool_history();
    let req = RenderRequest {
        tools: Some(&tools),
        ..prompt(&messages)
    };
    let out = render(&t, &req);
    for needle in [
            "<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", ",
            "\"description\": \"The city name, e.g. Zürich\"}}, \"required\": [\"city\"]}}}\n</tools>",
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>",
            "<|im_start|>user\n<tool_response>\n{\"temperature\": 18.5, \"unit\": \"celsius\"}\n</tool_response><|im_end|>",
        ] {
            assert!(out.contains(needle), "missing {needle:?} in {out}");
        }
    assert_eq!(
        out,
        r#"<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city name, e.g. Zürich"}}, "required": ["city"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the weather in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temperature": 18.5, "unit": "celsius"}
</tool_response><|im_end|>
<|im_start|>assistant
It is 18.5 °C in Paris.<|im_end|>
<|im_start|>user
And in Rome?<|im_end|>
<|im_start|>assistant
"#
    );
}

#[test]
fn qwen25_without_tools_uses_its_default_system_prompt() {
    let t = compile(QWEN25, "");
    let messages = msgs(&[("user", "Hi")]);
    assert_eq!(
        render(&t, &prompt(&messages)),
        r#"<|im_start|>system
You are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>
<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
"#
    );
}

#[test]
fn qwen3_renders_tools_and_tool_history() {
    let t = compile(QWEN3, "");
    let tools = weather_tool();
    let messages = tool_history();
    let req = RenderRequest {
        tools: Some(&tools),
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|im_start|>system
# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city name, e.g. Zürich"}}, "required": ["city"]}}}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
<|im_start|>user
What's the weather in Paris?<|im_end|>
<|im_start|>assistant
<tool_call>
{"name": "get_weather", "arguments": {"city": "Paris"}}
</tool_call><|im_end|>
<|im_start|>user
<tool_response>
{"temperature": 18.5, "unit": "celsius"}
</tool_response><|im_end|>
<|im_start|>assistant
It is 18.5 °C in Paris.<|im_end|>
<|im_start|>user
And in Rome?<|im_end|>
<|im_start|>assistant
"#
    );
}

#[test]
fn qwen3_drops_old_reasoning_and_splits_think_tags() {
    let t = compile(QWEN3, "");
    let mut answer = ChatMessage::new("assistant", "Hello!");
    answer.reasoning_content = Some("The user greets me.".to_owned());
    let messages = vec![
        ChatMessage::new("user", "Hi"),
        answer,
        ChatMessage::new("user", "2+2?"),
        ChatMessage::new("assistant", "<think>\nEasy.\n</think>\n\n4"),
    ];
    let req = RenderRequest {
        add_generation_prompt: false,
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|im_start|>user
Hi<|im_end|>
<|im_start|>assistant
Hello!<|im_end|>
<|im_start|>user
2+2?<|im_end|>
<|im_start|>assistant
<think>
Easy.
</think>

4<|im_end|>
"#
    );
}

#[test]
fn qwen3_honours_enable_thinking_false_from_extra() {
    let t = compile(QWEN3, "");
    let messages = msgs(&[("user", "2+2?")]);
    let extra = json!({"enable_thinking": false});
    let req = RenderRequest {
        extra: Some(&extra),
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|im_start|>user
2+2?<|im_end|>
<|im_start|>assistant
<think>

</think>

"#
    );
    // Without the variable the template leaves the thinking block to the model.
    assert_eq!(
        render(&t, &prompt(&messages)),
        "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn capabilities_are_detected_from_source() {
    let caps = |tools, thinking| TemplateCapabilities { tools, thinking };
    assert_eq!(detect_capabilities(QWEN25), caps(true, false));
    assert_eq!(detect_capabilities(QWEN3), caps(true, true));
    assert_eq!(detect_capabilities(LLAMA32), caps(true, false));
    assert_eq!(detect_capabilities(CHATML), caps(false, false));
    let gemma = builtin_for_architecture("gemma3").expect("gemma3 has a builtin");
    assert_eq!(detect_capabilities(gemma), caps(false, false));
    assert_eq!(
        detect_capabilities("{{ message.thinking }}"),
        caps(false, true)
    );
    assert_eq!(compile(QWEN3, "").capabilities(), caps(true, true));
}

// 4. Llama 3.2: strftime_now, raise_exception, tojson(indent=4), `in` on messages.

#[test]
fn llama32_renders_tools_in_first_user_message() {
    let t = compile(LLAMA32, "<|begin_of_text|>");
    let tools = weather_tool();
    let messages = tool_history();
    let extra = json!({"date_string": "26 Jul 2024"});
    let req = RenderRequest {
        tools: Some(&tools),
        extra: Some(&extra),
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Environment: ipython
Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

<|eot_id|><|start_header_id|>user<|end_header_id|>

Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.

Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.

{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {
                    "type": "string",
                    "description": "The city name, e.g. Zürich"
                }
            },
            "required": [
                "city"
            ]
        }
    }
}

What's the weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>

"{\"temperature\": 18.5, \"unit\": \"celsius\"}"<|eot_id|><|start_header_id|>assistant<|end_header_id|>

It is 18.5 °C in Paris.<|eot_id|><|start_header_id|>user<|end_header_id|>

And in Rome?<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"#
    );
}

#[test]
fn llama32_plain_chat_trims_system_message() {
    let t = compile(LLAMA32, "<|begin_of_text|>");
    let messages = msgs(&[("system", "  Be nice.  "), ("user", "Hi")]);
    let extra = json!({"date_string": "26 Jul 2024"});
    let req = RenderRequest {
        extra: Some(&extra),
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"<|begin_of_text|><|start_header_id|>system<|end_header_id|>

Cutting Knowledge Date: December 2023
Today Date: 26 Jul 2024

Be nice.<|eot_id|><|start_header_id|>user<|end_header_id|>

Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>

"#
    );
}

#[test]
fn llama32_dates_come_from_strftime_now() {
    let t = compile(LLAMA32, "<|begin_of_text|>");
    let messages = msgs(&[("user", "Hi")]);
    let before = chrono::Local::now().format("%d %b %Y").to_string();
    let out = render(&t, &prompt(&messages));
    let after = chrono::Local::now().format("%d %b %Y").to_string();
    assert!(
        out.contains(&format!("Today Date: {before}\n"))
            || out.contains(&format!("Today Date: {after}\n")),
        "{out}"
    );
}

#[test]
fn raise_exception_message_surfaces() {
    let t = compile(LLAMA32, "<|begin_of_text|>");
    let mut two_calls = ChatMessage::new("assistant", "");
    two_calls.tool_calls = vec![
        ToolCall::function("a", json!({})),
        ToolCall::function("b", json!({})),
    ];
    let messages = vec![ChatMessage::new("user", "Hi"), two_calls];
    let err = render_err(&t, &prompt(&messages));
    let TemplateError::Render(msg) = &err else {
        panic!("expected a render error, got {err:?}");
    };
    assert!(
        msg.contains("This model only supports single tool-calls at once!"),
        "{msg}"
    );
    // The error names the template line, and stays on one line.
    assert!(msg.contains("chat_template:"), "{msg}");
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[test]
fn python_methods_namespace_loop_controls_and_tojson_options() {
    let t = compile(PYCOMPAT, "");
    let tools = weather_tool();
    let messages = msgs(&[
        ("system", "  Rules.  "),
        ("user", "hello world"),
        ("user", "stop here"),
        ("user", "never seen"),
    ]);
    let req = RenderRequest {
        tools: Some(&tools),
        ..prompt(&messages)
    };
    assert_eq!(
        render(&t, &req),
        r#"HELLO WORLD|world|Hello World
system=[Rules.] found=True count=1
name;description;parameters;
function default
{
  "type": "object",
  "properties": {
    "city": {
      "type": "string",
      "description": "The city name, e.g. Zürich"
    }
  },
  "required": [
    "city"
  ]
}
{"properties":{"city":{"description":"The city name, e.g. Z\u00fcrich","type":"string"}},"required":["city"],"type":"object"}
{"b": 1, "a": [1.5, null, true, "x\ty"]} no-calls"#
    );
}

const PYCOMPAT: &str = r#"{%- set ns = namespace(found=false, count=0) %}
{%- for message in messages %}
    {%- if message.role == 'system' %}
        {%- continue %}
    {%- endif %}
    {%- if message.content.startswith('stop') %}
        {%- set ns.found = true %}
        {%- break %}
    {%- endif %}
    {%- set ns.count = ns.count + 1 %}
    {{- message.content.upper() + '|' + message.content.split(' ')[-1] + '|' + message.content.title() + '\n' }}
{%- endfor %}
{{- 'system=[' + messages[0].content.strip() + '] found=' + ns.found|string + ' count=' + ns.count|string + '\n' }}
{%- for key, value in tools[0].function.items() %}
    {{- key + ';' }}
{%- endfor %}
{{- '\n' + tools[0].get('type') + ' ' + tools[0].get('missing', 'default') + '\n' }}
{{- tools[0].function.parameters | tojson(indent=2) + '\n' }}
{{- tools[0].function.parameters | tojson(ensure_ascii=True, separators=(',', ':'), sort_keys=True) + '\n' }}
{{- {'b': 1, 'a': [1.5, none, true, 'x\ty']} | tojson }}
{%- if messages[1].tool_calls %}{{ 'unreachable' }}{% endif %}
{%- if messages[1].tool_calls is not defined %}{{ ' no-calls' }}{% endif %}
"#;

#[test]
fn strftime_now_rejects_bad_formats_without_panicking() {
    let t = compile("{{ strftime_now('%Y') }}|{{ strftime_now('%Q') }}", "");
    let err = render_err(&t, &prompt(&[]));
    assert!(err.to_string().contains("strftime_now"), "{err}");
    let t = compile("{{ strftime_now('%Y-%m-%d') }}", "");
    assert_eq!(render(&t, &prompt(&[])).len(), 10);
}

#[test]
fn generation_blocks_render_their_body() {
    let source =
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %};{% endfor %}";
    let t = compile(source, "");
    assert_eq!(
        render(&t, &prompt(&msgs(&[("user", "a"), ("assistant", "b")]))),
        "a;b;"
    );
}

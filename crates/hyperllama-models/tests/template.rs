//! Tests of chat template rendering against golden prompts.
//!
//! The golden strings were produced by rendering the same templates and messages with
//! Python's Jinja2 configured exactly as transformers' `apply_chat_template` configures it.

mod chat_template {
    use std::time::{Duration, Instant};

    use hyperllama_models::template::{
        builtin_for_architecture, detect_capabilities, ChatMessage, ChatTemplate, RenderRequest,
        SpecialTokens, TemplateCapabilities, TemplateError, ToolCall, CHATML,
    };
    use serde_json::{json, Value};

    const SMOLLM2: &str = include_str!("fixtures/templates/smollm2.jinja");
    const QWEN25: &str = include_str!("fixtures/templates/qwen2.5.jinja");
    const QWEN3: &str = include_str!("fixtures/templates/qwen3.jinja");
    const LLAMA32: &str = include_str!("fixtures/templates/llama3.2.jinja");

    fn tokens(bos: &str, eos: &str) -> SpecialTokens {
        SpecialTokens {
            bos_token: bos.to_owned(),
            eos_token: eos.to_owned(),
        }
    }

    fn compile(source: &str, bos: &str) -> ChatTemplate {
        match ChatTemplate::new(source, tokens(bos, "")) {
            Ok(t) => t,
            Err(e) => panic!("template should compile: {e}"),
        }
    }

    fn render(template: &ChatTemplate, req: &RenderRequest<'_>) -> String {
        match template.render(req) {
            Ok(text) => text,
            Err(e) => panic!("template should render: {e}"),
        }
    }

    fn render_err(template: &ChatTemplate, req: &RenderRequest<'_>) -> TemplateError {
        match template.render(req) {
            Ok(text) => panic!("render should fail, got {text:?}"),
            Err(e) => e,
        }
    }

    fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
        pairs
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, *c))
            .collect()
    }

    fn prompt(messages: &[ChatMessage]) -> RenderRequest<'_> {
        RenderRequest {
            messages,
            add_generation_prompt: true,
            ..RenderRequest::default()
        }
    }

    fn weather_tool() -> Value {
        json!([{
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "The city name, e.g. Zürich"}
                    },
                    "required": ["city"]
                }
            }
        }])
    }

    /// A question, a tool call, its result, the answer and a follow-up question.
    fn tool_history() -> Vec<ChatMessage> {
        let mut call = ChatMessage::new("assistant", "");
        call.tool_calls = vec![ToolCall::function("get_weather", json!({"city": "Paris"}))];
        let mut result = ChatMessage::new("tool", r#"{"temperature": 18.5, "unit": "celsius"}"#);
        result.tool_call_id = Some("call_1".to_owned());
        result.name = Some("get_weather".to_owned());
        vec![
            ChatMessage::new("user", "What's the weather in Paris?"),
            call,
            result,
            ChatMessage::new("assistant", "It is 18.5 °C in Paris."),
            ChatMessage::new("user", "And in Rome?"),
        ]
    }

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
        let source = "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %};{% endfor %}";
        let t = compile(source, "");
        assert_eq!(
            render(&t, &prompt(&msgs(&[("user", "a"), ("assistant", "b")]))),
            "a;b;"
        );
    }

    // 5. Compile errors, undefined values and request errors.

    #[test]
    fn broken_templates_fail_to_compile_with_line_numbers() {
        for source in [
            "{% if %}",
            "{% for x in %}{% endfor %}",
            "{{ unclosed",
            "a\n{% endfor %}",
            "{% foo %}",
        ] {
            match ChatTemplate::new(source, tokens("", "")) {
                Err(TemplateError::Compile(msg)) => {
                    assert!(msg.contains("chat_template:"), "{source:?}: {msg}");
                }
                other => panic!("{source:?} should not compile, got {other:?}"),
            }
        }
        let Err(err) = ChatTemplate::new("a\n\n{% endif %}", tokens("", "")) else {
            panic!("should not compile");
        };
        assert!(err.to_string().contains("chat_template:3"), "{err}");
    }

    #[test]
    fn undefined_values_are_lenient() {
        let source = "[{{ nope }}][{{ messages[0].tool_calls }}]\
            {%- if messages[0].tool_calls %}calls{% else %}no calls{% endif %}\
            {%- if nope is defined %}!{% endif %}[{{ tools }}][{{ bos_token }}{{ eos_token }}][{{ documents }}]";
        let t = compile(source, "<s>");
        let messages = msgs(&[("user", "x")]);
        assert_eq!(
            render(&t, &prompt(&messages)),
            "[][]no calls[None][<s>][None]"
        );
    }

    #[test]
    fn python_style_printing() {
        let t = compile(
            "{{ true }} {{ none }} {{ [1, 'a', none] }} {{ {'k': 1.0} }} {{ false|string }}",
            "",
        );
        assert_eq!(
            render(&t, &prompt(&[])),
            "True None [1, 'a', None] {'k': 1.0} False"
        );
    }

    #[test]
    fn extra_must_be_an_object_and_cannot_replace_messages() {
        let t = compile("{{ messages|length }}{{ x }}", "");
        let messages = msgs(&[("user", "a")]);
        let bad = json!([1]);
        let err = render_err(
            &t,
            &RenderRequest {
                extra: Some(&bad),
                ..prompt(&messages)
            },
        );
        assert!(matches!(err, TemplateError::Render(_)));
        let extra = json!({"messages": [], "x": 7});
        let req = RenderRequest {
            extra: Some(&extra),
            ..prompt(&messages)
        };
        assert_eq!(render(&t, &req), "17");
    }

    #[test]
    fn messages_deserialize_from_openai_and_ollama_shapes() {
        let m: ChatMessage = serde_json::from_value(json!({
            "role": "assistant",
            "content": null,
            "thinking": "hmm",
            "tool_calls": [{"function": {"name": "f", "arguments": {"b": 1, "a": 2}}}]
        }))
        .expect("valid message");
        assert_eq!(m.content, "");
        assert_eq!(m.reasoning_content.as_deref(), Some("hmm"));
        assert_eq!(
            m.tool_calls,
            vec![ToolCall::function("f", json!({"b": 1, "a": 2}))]
        );
        // Argument keys keep the client's order, as they do in Python.
        let t = compile(
            "{{ messages[0].tool_calls[0].function.arguments|tojson }}{{ messages[0].thinking }}",
            "",
        );
        assert_eq!(
            render(&t, &prompt(std::slice::from_ref(&m))),
            "{\"b\": 1, \"a\": 2}hmm"
        );
        let round: ChatMessage =
            serde_json::from_str(&serde_json::to_string(&m).expect("serializes"))
                .expect("round-trips");
        assert_eq!(round, m);
        assert_eq!(
            serde_json::to_value(ChatMessage::new("user", "x")).expect("serializes"),
            json!({"role": "user", "content": "x"})
        );
    }

    #[test]
    fn templates_are_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
    }

    // 6. Adversarial templates terminate with errors.

    #[test]
    fn huge_ranges_are_refused() {
        let t = compile("{% for i in range(100000000) %}x{% endfor %}", "");
        let start = Instant::now();
        let err = render_err(&t, &prompt(&[]));
        assert!(matches!(err, TemplateError::Render(_)));
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let t = compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "",
        );
        let start = Instant::now();
        let err = render_err(&t, &prompt(&[]));
        let elapsed = start.elapsed();
        assert!(err.to_string().contains("fuel"), "{err}");
        assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    }

    #[test]
    fn unbounded_recursion_is_stopped() {
        let t = compile("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "");
        let err = render_err(&t, &prompt(&[]));
        assert!(matches!(err, TemplateError::Render(_)), "{err}");
    }

    #[test]
    fn output_is_capped() {
        let t = compile(
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            "",
        );
        let err = render_err(&t, &prompt(&[]));
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn self_referencing_values_error_instead_of_overflowing() {
        for source in [
            "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns }}",
            "{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ ns|tojson }}",
        ] {
            let t = compile(source, "");
            let err = render_err(&t, &prompt(&[]));
            assert!(
                err.to_string().contains("nested too deeply"),
                "{source}: {err}"
            );
        }
    }

    #[test]
    fn long_conversations_fit_in_the_fuel_budget() {
        let t = compile(QWEN3, "");
        let messages: Vec<ChatMessage> = (0..5000)
            .map(|i| {
                ChatMessage::new(
                    if i % 2 == 0 { "user" } else { "assistant" },
                    format!("message {i}"),
                )
            })
            .collect();
        let start = Instant::now();
        let out = render(&t, &prompt(&messages));
        assert!(out.ends_with("<|im_start|>assistant\n"));
        eprintln!("5000 messages rendered in {:?}", start.elapsed());
    }
}

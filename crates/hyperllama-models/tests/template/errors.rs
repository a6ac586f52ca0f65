//! Compile errors, undefined values, request errors and adversarial templates.

use super::*;

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
        serde_json::from_str(&serde_json::to_string(&m).expect("serializes")).expect("round-trips");
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

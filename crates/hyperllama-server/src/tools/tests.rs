//! Tests of the tool-call parser, the forced-call grammar and the tool validation.

use super::*;
use hyperllama_core::constraint::{
    ConstraintCompiler, ConstraintSpec, Vocabulary, SPECIAL_TOKEN_MARKER,
};
use hyperllama_core::TokenId;
use serde_json::json;

/// The text (concatenated) and the calls of an answer fed in `pieces`.
fn run(mut parser: ToolCallParser, pieces: &[&str]) -> (String, Vec<ParsedToolCall>) {
    let mut outs = Vec::new();
    for p in pieces {
        outs.extend(parser.feed(p));
    }
    outs.extend(parser.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for o in outs {
        match o {
            ToolOutput::Text(t) => {
                assert!(!t.is_empty(), "empty text released");
                text.push_str(&t);
            }
            ToolOutput::Call(c) => calls.push(c),
        }
    }
    (text, calls)
}

/// Parses `answer` whole, then split at every byte position (and byte by byte), and
/// checks that all agree; returns the whole-answer result.
fn parse_all_ways(make: fn() -> ToolCallParser, answer: &str) -> (String, Vec<ParsedToolCall>) {
    let whole = run(make(), &[answer]);
    for at in 0..=answer.len() {
        if !answer.is_char_boundary(at) {
            continue;
        }
        let split = run(make(), &[&answer[..at], &answer[at..]]);
        assert_eq!(split, whole, "split at {at} of {answer:?}");
    }
    let chars: Vec<String> = answer.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(run(make(), &refs), whole, "char by char: {answer:?}");
    whole
}

fn call(name: &str, args: Value) -> ParsedToolCall {
    ParsedToolCall {
        name: name.into(),
        arguments: args.as_object().expect("object").clone(),
    }
}

#[test]
fn a_tagged_call_is_parsed() {
    let (text, calls) = parse_all_ways(
            ToolCallParser::new,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        );
    assert_eq!(text, "");
    assert_eq!(calls, vec![call("get_weather", json!({"city": "Paris"}))]);
}

#[test]
fn several_calls_with_text_before_and_after() {
    let answer = "Let me check.\n<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>\n\
                      <tool_call>{\"name\": \"b\", \"arguments\": \"{\\\"y\\\": [1, 2]}\"}</tool_call>\n\nDone ü.";
    let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
    assert_eq!(text, "Let me check.\nDone ü.");
    assert_eq!(
        calls,
        vec![call("a", json!({"x": 1})), call("b", json!({"y": [1, 2]}))]
    );
}

#[test]
fn a_list_and_several_objects_in_one_block() {
    let (text, calls) = parse_all_ways(
            ToolCallParser::new,
            "  <tool_call>[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\"}]\n{\"name\": \"c\", \"parameters\": {\"k\": \"v\"}}</tool_call>  \n",
        );
    assert_eq!(text, "");
    assert_eq!(
        calls,
        vec![
            call("a", json!({})),
            call("b", json!({})),
            call("c", json!({"k": "v"}))
        ]
    );
}

#[test]
fn malformed_blocks_are_text() {
    for answer in [
        "<tool_call>{\"name\": \"a\", \"arguments\": {</tool_call> after",
        "x <tool_call>not json</tool_call>",
        "<tool_call>{\"arguments\": {}}</tool_call>",
        "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>",
        "<tool_call></tool_call>",
        "<tool_call>{\"name\": \"a\"",
        "<tool_ca",
        "text <tool_call",
    ] {
        let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
        assert_eq!(text, answer, "{answer:?}");
        assert!(calls.is_empty(), "{answer:?}");
    }
}

#[test]
fn a_good_block_and_a_bad_one() {
    let answer = "<tool_call>{\"name\": \"a\"}</tool_call><tool_call>oops</tool_call>";
    let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
    assert_eq!(text, "<tool_call>oops</tool_call>");
    assert_eq!(calls, vec![call("a", json!({}))]);
}

#[test]
fn an_unclosed_block_at_the_end_is_a_call_if_its_json_is() {
    let (text, calls) = parse_all_ways(
        ToolCallParser::new,
        "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"q\": \"<x>\"}}\n",
    );
    assert_eq!(text, "");
    assert_eq!(calls, vec![call("a", json!({"q": "<x>"}))]);
}

#[test]
fn a_prompt_that_opened_the_block() {
    let (text, calls) = parse_all_ways(
            ToolCallParser::inside_call,
            "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n\nThis will return it.",
        );
    assert_eq!(text, "This will return it.");
    assert_eq!(calls, vec![call("get_weather", json!({"city": "Paris"}))]);
    let (text, calls) = parse_all_ways(ToolCallParser::inside_call, "Paris is nice.");
    assert_eq!(text, "Paris is nice.");
    assert!(calls.is_empty());
    let (text, _) = parse_all_ways(ToolCallParser::inside_call, "bad</tool_call> x");
    assert_eq!(text, "bad</tool_call> x");
}

#[test]
fn llama3_json_forms() {
    for answer in [
            "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            " \n{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
            "<|python_tag|>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
        ] {
            let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
            assert_eq!(text, "", "{answer:?}");
            assert_eq!(
                calls,
                vec![call("get_weather", json!({"city": "Paris"}))],
                "{answer:?}"
            );
        }
    let (_, calls) = parse_all_ways(
            ToolCallParser::new,
            "<|python_tag|>{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"n\": 2}}",
        );
    assert_eq!(
        calls,
        vec![call("a", json!({})), call("b", json!({"n": 2}))]
    );
}

#[test]
fn json_that_is_not_a_call_is_text() {
    for answer in [
        "{\"answer\": 42}",
        "{\"name\": \"a\", \"parameters\": {}} and more",
        "{\"type\": \"object\", \"name\": \"a\"}",
        "{not json",
        "<|python_tag|>print(1)",
        "<|python",
        "   ",
        "",
    ] {
        let (text, calls) = parse_all_ways(ToolCallParser::new, answer);
        assert_eq!(text, answer, "{answer:?}");
        assert!(calls.is_empty(), "{answer:?}");
    }
}

#[test]
fn plain_text_passes_through_at_once() {
    let mut p = ToolCallParser::new();
    assert_eq!(p.feed("Hello"), vec![ToolOutput::Text("Hello".into())]);
    assert_eq!(
        p.feed(" world <tool"),
        vec![ToolOutput::Text(" world ".into())]
    );
    assert_eq!(p.feed("s>"), vec![ToolOutput::Text("<tools>".into())]);
    assert!(p.finish().is_empty());
}

#[test]
fn tool_specs_are_checked() {
    let ok = json!([{"type": "function", "function": {"name": "f", "description": "d",
            "parameters": {"type": "object", "properties": {}}}}, {"function": {"name": "g"}}]);
    assert_eq!(validate_tools(&ok).expect("valid").len(), 2);
    assert_eq!(
        tool_names(&validate_tools(&ok).expect("valid")),
        vec!["f", "g"]
    );
    for (bad, says) in [
        (json!({"function": {"name": "f"}}), "must be a list"),
        (
            json!([{"type": "function", "function": {"description": "x"}}]),
            "name",
        ),
        (
            json!([{"type": "function", "function": {"name": ""}}]),
            "name",
        ),
        (
            json!([{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
            "parameters",
        ),
        (
            json!([{"type": "function", "function": {"name": "f", "parameters": []}}]),
            "parameters",
        ),
        (json!([{"type": "code", "function": {"name": "f"}}]), "type"),
        (json!([{"type": "function"}]), "function"),
        (json!(["f"]), "object"),
    ] {
        let e = validate_tools(&bad).expect_err("invalid");
        assert!(e.message.contains(says), "{bad}: {}", e.message);
    }
}

#[test]
fn input_tool_calls_in_both_shapes() {
    let calls = message_tool_calls(&[
            json!({"function": {"index": 0, "name": "f", "arguments": {"a": 1}}}),
            json!({"id": "call_1", "type": "function", "function": {"name": "g", "arguments": "{\"b\": 2}"}}),
        ])
        .expect("valid");
    assert_eq!(calls[0].function.arguments, json!({"a": 1}));
    assert_eq!(calls[1].function.arguments, json!({"b": 2}));
    assert_eq!(calls[1].id.as_deref(), Some("call_1"));
    for bad in [
        json!({"function": {"name": "f", "arguments": "{oops"}}),
        json!({"function": {"arguments": {}}}),
        json!({"name": "f"}),
    ] {
        assert!(
            message_tool_calls(std::slice::from_ref(&bad)).is_err(),
            "{bad}"
        );
    }
}

/// A byte-level vocabulary; with `special`, `<tool_call>` and `</tool_call>` are also
/// special (control) tokens, as in some Qwen conversions.
fn vocabulary(special: bool) -> Vocabulary {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    let marked = |text: &str| {
        let mut t = vec![SPECIAL_TOKEN_MARKER];
        t.extend_from_slice(text.as_bytes());
        t
    };
    if special {
        tokens.push(marked(OPEN));
        tokens.push(marked(CLOSE));
    }
    tokens.push(marked("<|im_end|>"));
    let n = tokens.len() as TokenId;
    Vocabulary {
        tokens,
        eos: n - 1,
        eog: vec![n - 1],
    }
}

#[test]
fn a_forced_call_accepts_special_call_tokens_where_the_vocabulary_has_them() {
    let tools = json!([{"function": {"name": "f", "parameters": {"type": "object",
            "properties": {"x": {"type": "integer"}}, "required": ["x"]}}}]);
    let tools = validate_tools(&tools).expect("valid");
    let prompt = "Call tools in <tool_call></tool_call> tags.";
    let call = r#"{"name": "f", "arguments": {"x": 1}}"#;
    let bytes = |t: &str| t.bytes().map(TokenId::from).collect::<Vec<_>>();
    for special in [false, true] {
        let is_special = |t: &str| special && (t == OPEN || t == CLOSE);
        let grammar = forced_call_grammar(&tools, &ToolChoice::Required, prompt, &is_special)
            .expect("builds")
            .expect("forced");
        let compiler = ConstraintCompiler::new(&vocabulary(special)).expect("vocabulary");
        let spec = ConstraintSpec::Lark(grammar);
        // The tags as text always work.
        let mut c = compiler.compile(&spec).expect("compiles");
        let text = bytes(&format!("{OPEN}\n{call}\n{CLOSE}"));
        assert_eq!(c.valid_prefix(&text), text.len(), "special {special}");
        for t in text {
            c.commit(t).expect("accepted");
        }
        assert!(c.is_complete());
        if special {
            // And so do the special tokens.
            let mut c = compiler.compile(&spec).expect("compiles");
            let mut tokens = vec![256];
            tokens.extend(bytes(call));
            tokens.push(257);
            assert_eq!(c.valid_prefix(&tokens), tokens.len());
            for t in tokens {
                c.commit(t).expect("accepted");
            }
            assert!(c.is_complete());
        }
    }
}

#[test]
fn call_ids_differ() {
    let a = new_call_id();
    let b = new_call_id();
    assert!(a.starts_with("call_") && a.len() == 29, "{a}");
    assert_ne!(a, b);
}

//! Tests of output constraints: JSON schemas and grammars compiled, applied token by token.

use super::*;

/// A byte-level vocabulary: one token per byte, then a few words and an end token.
fn vocab() -> Vocabulary {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for w in ["{\"", "\": ", "true", "false", "name", "\"}", "12"] {
        tokens.push(w.as_bytes().to_vec());
    }
    let mut end = vec![SPECIAL_TOKEN_MARKER];
    end.extend_from_slice(b"<|end|>");
    tokens.push(end);
    let mut other_end = vec![SPECIAL_TOKEN_MARKER];
    other_end.extend_from_slice(b"<|eot|>");
    tokens.push(other_end);
    let n = tokens.len() as TokenId;
    Vocabulary {
        tokens,
        eos: n - 2,
        eog: vec![n - 2, n - 1],
    }
}

/// Greedy decoding under a constraint where the "model" prefers tokens by a fixed score.
fn generate(spec: &ConstraintSpec, prefer: &dyn Fn(TokenId) -> f32) -> (String, bool) {
    let v = vocab();
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let mut c = compiler.compile(spec).expect("compiles");
    let mut out = Vec::new();
    for _ in 0..200 {
        let mut logits: Vec<f32> = (0..v.tokens.len() as TokenId).map(prefer).collect();
        c.restrict(&mut logits).expect("a token is allowed");
        let t = crate::sampling::argmax(&logits);
        c.commit(t).expect("an allowed token is accepted");
        if v.eog.contains(&t) {
            return (String::from_utf8(out).expect("UTF-8"), true);
        }
        out.extend_from_slice(&v.tokens[t as usize]);
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

#[test]
fn a_schema_is_followed_even_by_a_model_that_prefers_otherwise() {
    let schema = json!({
        "type": "object",
        "properties": { "name": { "type": "boolean" } },
        "required": ["name"],
        "additionalProperties": false
    });
    // This "model" loves the letter x and never wants to stop.
    let (text, ended) = generate(&ConstraintSpec::JsonSchema(schema), &|t| match t {
        120 => 5.0,
        _ => -(t as f32) / 1000.0,
    });
    assert!(ended, "the grammar ends the output: {text}");
    let value: Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(value["name"].is_boolean(), "{text}");
}

#[test]
fn json_mode_gives_an_object_and_regex_and_grammars_match() {
    // A "model" that would close a brace right away: the object must open first.
    let (text, ended) = generate(&ConstraintSpec::Json, &|t| {
        if t == b'}' as TokenId {
            2.0
        } else {
            -(t as f32)
        }
    });
    assert!(ended, "{text}");
    assert_eq!(text, "{}");
    assert!(
        serde_json::from_str::<serde_json::Map<String, Value>>(&text).is_ok(),
        "{text}"
    );
    let (text, _) = generate(&ConstraintSpec::Regex("(yes|no)[0-9]{2}".into()), &|t| {
        if t == b'n' as TokenId {
            1.0
        } else {
            0.0
        }
    });
    assert!(text.starts_with("no") && text.len() == 4, "{text}");
    let lark = ConstraintSpec::Lark("start: \"a\" /[0-9]+/ \"b\"".into());
    // "b" is preferred, but only allowed after at least one digit.
    let (text, ended) = generate(&lark, &|t| match t {
        98 => 2.0,
        55 => 1.0,
        _ => 0.0,
    });
    assert!(ended);
    assert_eq!(text, "a7b");
}

#[test]
fn gbnf_grammars_translate_and_constrain() {
    let gbnf = r#"
            # answers
            root ::= answer " " digit-pair
            answer ::= "yes" | "no"
            digit-pair ::= [0-9] [0-9]
        "#;
    let lark = gbnf_to_lark(gbnf).expect("translates");
    assert!(lark.contains("digit_pair: /[0-9]/ /[0-9]/"), "{lark}");
    let (text, ended) = generate(&ConstraintSpec::Gbnf(gbnf.into()), &|t| {
        if t == b'y' as TokenId {
            1.0
        } else {
            0.0
        }
    });
    assert!(ended);
    assert_eq!(text.len(), 6, "{text}");
    assert!(text.starts_with("yes "), "{text}");
    assert!(gbnf_to_lark("answer ::= \"x\"").is_err(), "no root");
    assert!(gbnf_to_lark("root ::= \"x").is_err(), "unterminated");
}

#[test]
fn unbounded_numbers_end() {
    // A "model" that would write ones forever.
    let ones = |t: TokenId| {
        if t == b'1' as TokenId {
            5.0
        } else {
            -(t as f32) / 1000.0
        }
    };
    for (schema, max_len) in [
        (json!({ "type": "integer" }), 16),
        (json!({ "type": "number" }), 21),
        (
            json!({ "type": "object", "properties": { "n": { "type": "integer" } }, "required": ["n"], "additionalProperties": false }),
            30,
        ),
    ] {
        let (text, ended) = generate(&ConstraintSpec::JsonSchema(schema.clone()), &ones);
        assert!(ended, "{schema}: {text}");
        assert!(text.len() <= max_len, "{schema}: {text}");
        assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
    }
    // Free keys end too.
    let any_key = |t: TokenId| {
        if t == b'w' as TokenId {
            5.0
        } else {
            -(t as f32) / 1000.0
        }
    };
    let map = json!({ "type": "object", "additionalProperties": { "type": "integer", "maximum": 9 }, "maxProperties": 2 });
    let (text, ended) = generate(&ConstraintSpec::JsonSchema(map), &any_key);
    assert!(ended, "{text}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    assert!(
        v.as_object()
            .is_some_and(|o| o.keys().all(|k| k.len() <= 64)),
        "{text}"
    );
    // Bounds the schema sets itself stay as they are.
    let mut own = json!({ "type": "integer", "minimum": 10, "maximum": 99 });
    bound_numbers(&mut own);
    assert_eq!(
        own,
        json!({ "type": "integer", "minimum": 10, "maximum": 99 })
    );
    let mut big = json!({ "type": "integer", "minimum": 1e17 });
    bound_numbers(&mut big);
    assert!(
        big.get("maximum").is_none(),
        "would be unsatisfiable: {big}"
    );
}

#[test]
fn a_draft_is_cut_where_the_grammar_rejects_it() {
    let compiler = ConstraintCompiler::new(&vocab()).expect("vocabulary");
    let mut c = compiler
        .compile(&ConstraintSpec::Regex("ab+c".into()))
        .expect("compiles");
    let t = |b: u8| b as TokenId;
    assert_eq!(
        c.valid_prefix(&[t(b'a'), t(b'b'), t(b'b'), t(b'x'), t(b'c')]),
        3
    );
    assert_eq!(c.valid_prefix(&[t(b'b')]), 0);
    // Validation does not advance the grammar.
    c.commit(t(b'a')).expect("accepted");
    assert_eq!(c.valid_prefix(&[t(b'b'), t(b'c')]), 2);
}

#[test]
fn invalid_constraints_are_reported() {
    let compiler = ConstraintCompiler::new(&vocab()).expect("vocabulary");
    for spec in [
        ConstraintSpec::JsonSchema(json!({ "type": "no-such-type" })),
        ConstraintSpec::JsonSchema(json!([1, 2])),
        ConstraintSpec::Lark("start: undefined_rule".into()),
        ConstraintSpec::Regex("(unclosed".into()),
    ] {
        let err = compiler.compile(&spec).expect_err("invalid");
        assert!(
            matches!(err, ConstraintError::Invalid(_)),
            "{spec:?}: {err}"
        );
    }
}

#[test]
fn every_end_token_is_allowed_where_the_grammar_may_end() {
    let v = vocab();
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let mut c = compiler
        .compile(&ConstraintSpec::Regex("a".into()))
        .expect("compiles");
    c.commit(b'a' as TokenId).expect("accepted");
    let mut logits = vec![0.0f32; v.tokens.len()];
    c.restrict(&mut logits).expect("may end");
    for &t in &v.eog {
        assert!(logits[t as usize].is_finite(), "end token {t} allowed");
    }
    assert_eq!(logits[b'a' as usize], f32::NEG_INFINITY);
    assert!(c.is_complete());
}

/// A byte-level vocabulary with a few multi-byte tokens around the think markers; with
/// `special`, `<think>` and `</think>` are also special tokens.
fn think_vocab(special: bool) -> Vocabulary {
    let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    for w in ["</think>", ">\n\n", "\n\n{\"", "think", "{\"name\": "] {
        tokens.push(w.as_bytes().to_vec());
    }
    let mut marked = |text: &str| {
        let mut t = vec![SPECIAL_TOKEN_MARKER];
        t.extend_from_slice(text.as_bytes());
        tokens.push(t);
    };
    if special {
        marked("<think>");
        marked("</think>");
    }
    marked("<|end|>");
    let n = tokens.len() as TokenId;
    Vocabulary {
        tokens,
        eos: n - 1,
        eog: vec![n - 1],
    }
}

fn bytes(text: &str) -> Vec<TokenId> {
    text.bytes().map(TokenId::from).collect()
}

fn name_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "name": { "type": "string", "maxLength": 8 } },
        "required": ["name"],
        "additionalProperties": false
    })
}

fn after_thinking(
    opened: bool,
    budget: Option<usize>,
    answer: Option<ConstraintSpec>,
) -> ConstraintSpec {
    ConstraintSpec::AfterThinking(ThinkingSpec {
        opened,
        budget,
        answer: answer.map(Box::new),
    })
}

/// Greedy decoding on `v` under `spec`; returns the text (special tokens as `[id]`) and
/// whether it ended.
fn generate_on(
    v: &Vocabulary,
    spec: &ConstraintSpec,
    prefer: &dyn Fn(&[u8]) -> f32,
) -> (String, bool) {
    let compiler = ConstraintCompiler::new(v).expect("vocabulary");
    let mut c = compiler.compile(spec).expect("compiles");
    let mut out = Vec::new();
    for _ in 0..300 {
        let mut logits: Vec<f32> = v.tokens.iter().map(|t| prefer(t)).collect();
        c.restrict(&mut logits).expect("a token is allowed");
        let t = crate::sampling::argmax(&logits);
        c.commit(t).expect("an allowed token is accepted");
        if v.eog.contains(&t) {
            return (String::from_utf8_lossy(&out).into_owned(), true);
        }
        match v.tokens[t as usize].first() {
            Some(&SPECIAL_TOKEN_MARKER) => out.extend_from_slice(&v.tokens[t as usize][1..]),
            _ => out.extend_from_slice(&v.tokens[t as usize]),
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), false)
}

#[test]
fn thinking_is_free_and_the_answer_after_it_is_constrained() {
    for special in [false, true] {
        let v = think_vocab(special);
        let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
        let spec = after_thinking(true, None, Some(ConstraintSpec::JsonSchema(name_schema())));
        let mut c = compiler.compile(&spec).expect("compiles");
        // Braces, JSON that breaks the schema, a partial marker: all free in the thinking.
        let thinking = "Hmm, {\"nope\": [1, 2} is not it; </thin nor <think> x\n";
        let tokens = bytes(thinking);
        assert_eq!(c.valid_prefix(&tokens), tokens.len(), "special {special}");
        for &t in &tokens {
            c.commit(t).expect("free thinking");
        }
        assert!(c.is_thinking());
        // The model may not end inside the thinking.
        let mut logits = vec![0.0f32; v.tokens.len()];
        c.restrict(&mut logits).expect("allowed");
        assert_eq!(logits[v.eos as usize], f32::NEG_INFINITY);
        let close = (v
            .tokens
            .iter()
            .position(|t| t == b"</think>")
            .expect("token")) as TokenId;
        c.commit(close).expect("closes");
        assert!(!c.is_thinking());
        // After the marker (and a blank line) only the schema.
        let mut after = c.valid_prefix(&bytes("\n\n{\"name\": \"Al\"}"));
        assert_eq!(after, 16, "special {special}");
        after = c.valid_prefix(&bytes("\n\nI think {\"name\": 1}"));
        assert_eq!(after, 2, "text after the marker is rejected");
        assert_eq!(c.valid_prefix(&bytes("\n\n{\"x\": 1}")), 4);
        for t in bytes("\n\n{\"name\": \"Al\"}") {
            c.commit(t).expect("the answer");
        }
        assert!(c.is_complete());
    }
}

#[test]
fn tokens_that_span_the_marker_the_gap_and_the_answer_are_accepted() {
    let v = think_vocab(false);
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let spec = after_thinking(true, None, Some(ConstraintSpec::JsonSchema(name_schema())));
    let mut c = compiler.compile(&spec).expect("compiles");
    let tok = |w: &[u8]| v.tokens.iter().position(|t| t == w).expect("token") as TokenId;
    for t in bytes("abc</think") {
        c.commit(t).expect("free");
    }
    let draft = [
        tok(b">\n\n"),
        tok(b"{\"name\": "),
        tok(b"\""),
        tok(b"A"),
        tok(b"\""),
        tok(b"}"),
    ];
    assert_eq!(c.valid_prefix(&draft), draft.len());
    let mut c = compiler.compile(&spec).expect("compiles");
    let draft = [tok(b"</think>"), tok(b"\n\n{\""), tok(b"n")];
    assert_eq!(c.valid_prefix(&draft), draft.len());
}

#[test]
fn the_special_close_token_ends_the_thinking() {
    let v = think_vocab(true);
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let special_close = (v.tokens.len() - 2) as TokenId;
    let spec = after_thinking(true, None, Some(ConstraintSpec::Json));
    let mut c = compiler.compile(&spec).expect("compiles");
    for t in bytes("a {b} c") {
        c.commit(t).expect("free");
    }
    c.commit(special_close).expect("the special marker closes");
    assert!(!c.is_thinking());
    assert_eq!(c.valid_prefix(&bytes("x")), 0);
    assert_eq!(c.valid_prefix(&bytes("{}")), 2);
    // Text that spells the marker closes it too: no way back to free text.
    let mut c = compiler.compile(&spec).expect("compiles");
    assert_eq!(c.valid_prefix(&bytes("a </think> oops")), 11);
}

#[test]
fn a_model_may_open_the_thinking_itself_or_answer_at_once() {
    let v = think_vocab(false);
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let spec = after_thinking(false, None, Some(ConstraintSpec::JsonSchema(name_schema())));
    let mut c = compiler.compile(&spec).expect("compiles");
    let think = bytes("<think>free {text}</think>\n{\"name\": \"Bo\"}");
    assert_eq!(c.valid_prefix(&think), think.len());
    let direct = bytes("{\"name\": \"Bo\"}");
    assert_eq!(c.valid_prefix(&direct), direct.len());
    assert_eq!(
        c.valid_prefix(&bytes("Sure! {")),
        0,
        "no free text without thinking"
    );
    assert_eq!(c.valid_prefix(&bytes(" <think>")), 0);
    for t in direct {
        c.commit(t).expect("answer");
    }
    assert!(!c.is_thinking());
    assert!(c.is_complete());
}

#[test]
fn the_budget_forces_the_close_marker_then_the_answer() {
    // This "model" would think about x forever and never close.
    let loves_x = |t: &[u8]| match t {
        b"x" => 5.0,
        b"<think>" => 4.0,
        [SPECIAL_TOKEN_MARKER, ..] => -10.0,
        _ => -(t.len() as f32),
    };
    for (special, opened) in [(false, true), (false, false), (true, true), (true, false)] {
        let v = think_vocab(special);
        let spec = after_thinking(
            opened,
            Some(12),
            Some(ConstraintSpec::JsonSchema(name_schema())),
        );
        let (text, ended) = generate_on(&v, &spec, &loves_x);
        assert!(ended, "special {special} opened {opened}: {text}");
        let (thinking, answer) = text.split_once(THINK_CLOSE).expect("closed");
        let thinking = thinking.strip_prefix(THINK_OPEN).unwrap_or(thinking);
        assert!(thinking.starts_with("xxxxxxxxx"), "{text}");
        assert!(thinking.len() <= 12, "{text}");
        let v: Value = serde_json::from_str(answer.trim_start()).expect("JSON answer");
        assert!(v["name"].is_string(), "{text}");
    }
    // A close marker the model started itself is finished, not restarted.
    let v = think_vocab(false);
    let spec = after_thinking(true, Some(3), None);
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    let mut c = compiler.compile(&spec).expect("compiles");
    for t in bytes("a</") {
        c.commit(t).expect("free");
    }
    assert_eq!(c.valid_prefix(&bytes("think>")), 6);
    assert_eq!(c.valid_prefix(&bytes("x")), 0, "the budget is spent");
    let think = v.tokens.iter().position(|t| t == b"think").expect("token") as TokenId;
    assert_eq!(
        c.valid_prefix(&[think, u32::from(b'>'), u32::from(b'{')]),
        3
    );
    // With no budget at all, the answer comes at once.
    let spec = after_thinking(
        false,
        Some(0),
        Some(ConstraintSpec::JsonSchema(name_schema())),
    );
    let (text, ended) = generate_on(&v, &spec, &loves_x);
    assert!(ended, "{text}");
    assert_eq!(text, "{\"name\": \"xxxxxxxx\"}");
}

#[test]
fn grammars_and_regexes_compose_after_thinking_and_no_answer_is_free() {
    let v = think_vocab(false);
    let compiler = ConstraintCompiler::new(&v).expect("vocabulary");
    for (answer, good, bad) in [
        (ConstraintSpec::Regex("(yes|no)".into()), "yes", "maybe"),
        (
            ConstraintSpec::Lark("start: \"a\" /[0-9]+/".into()),
            "a12",
            "b",
        ),
        (ConstraintSpec::Gbnf("root ::= [xy]+".into()), "xyx", "z"),
    ] {
        let spec = after_thinking(true, None, Some(answer.clone()));
        let mut c = compiler.compile(&spec).expect("compiles");
        let head = "no? {yes} </think>";
        let ok = bytes(&format!("{head}\n{good}"));
        assert_eq!(c.valid_prefix(&ok), ok.len(), "{answer:?}");
        let ko = bytes(&format!("{head}{bad}"));
        assert_eq!(c.valid_prefix(&ko), head.len(), "{answer:?}");
    }
    let spec = after_thinking(true, Some(50), None);
    let mut c = compiler.compile(&spec).expect("compiles");
    let any = bytes("hmm</think>\n\nAnything {at all");
    assert_eq!(c.valid_prefix(&any), any.len());
    let nested = after_thinking(true, None, Some(spec));
    assert!(matches!(
        compiler.compile(&nested),
        Err(ConstraintError::Invalid(_))
    ));
}

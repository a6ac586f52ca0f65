//! Constrained decoding: output that must match a JSON schema, a grammar or a regular
//! expression, through the `llguidance` library (the engine vLLM, SGLang and llama.cpp use).
//!
//! A [`ConstraintCompiler`] is built once per model from its [`Vocabulary`] (a token trie;
//! building it walks the whole vocabulary, so the engine builds it on the first constrained
//! request). [`ConstraintCompiler::compile`] turns a [`ConstraintSpec`] into a
//! [`Constraint`]: one per sequence, advanced with every sampled token.
//!
//! Each step, [`Constraint::restrict`] sets the logits of tokens the grammar does not allow
//! to `-inf` before sampling, then [`Constraint::commit`] advances the grammar by the sampled
//! token. When the grammar is complete only end-of-generation tokens stay allowed, so the
//! sequence ends normally.
//!
//! # Invariants
//! - A token that `restrict` left allowed is always accepted by `commit`; after `restrict`
//!   returned `Ok`, at least one token is allowed.
//! - Where the grammar allows end of generation, every end-of-generation token of the model is
//!   allowed (models end turns with different tokens).
//! - Numbers a JSON schema leaves unbounded are bounded before compiling (integers within
//!   ±(2^53 - 1), other numbers within ±10^15 with at most four decimals), so that a model
//!   cannot write digits forever; outputs still validate against the schema as given.
//! - JSON is generated compactly (`", "` and `": "` separators, no free whitespace) unless the
//!   schema's own `x-guidance` options say otherwise, so a small model cannot wander off into
//!   endless whitespace.

use std::fmt;
use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::ids::TokenId;

/// The byte that marks a special (control) token's text in a [`Vocabulary`].
pub const SPECIAL_TOKEN_MARKER: u8 = 0xFF;

/// A model's vocabulary as the constraint engine needs it.
#[derive(Clone, Debug)]
pub struct Vocabulary {
    /// Each token's bytes; special tokens as [`SPECIAL_TOKEN_MARKER`] followed by their text
    /// (e.g. `\xFF<|im_end|>`), tokens with no text empty.
    pub tokens: Vec<Vec<u8>>,
    /// The token that ends generation (end of turn where the model has one).
    pub eos: TokenId,
    /// Every token that ends generation.
    pub eog: Vec<TokenId>,
}

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintSpec {
    /// Any JSON object (Ollama's `format: "json"`, OpenAI's `json_object`).
    Json,
    /// JSON that validates against this JSON schema.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark syntax.
    Lark(String),
    /// A grammar in llama.cpp's GBNF syntax.
    Gbnf(String),
    /// A regular expression.
    Regex(String),
}

/// Why a constraint cannot be built or cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The schema or grammar is invalid, or the compiler cannot handle it.
    #[error("invalid constraint: {0}")]
    Invalid(String),
    /// The grammar allows no token in the current state.
    #[error("the output constraint allows no further token: {0}")]
    Dead(String),
}

/// Compiles constraints for one model's vocabulary. Cheap to clone.
#[derive(Clone)]
pub struct ConstraintCompiler {
    factory: Arc<ParserFactory>,
    eog: Arc<[TokenId]>,
    eos: TokenId,
}

impl fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl ConstraintCompiler {
    /// Builds the token trie of `vocab`.
    pub fn new(vocab: &Vocabulary) -> Result<Self, ConstraintError> {
        let n = u32::try_from(vocab.tokens.len())
            .map_err(|_| ConstraintError::Invalid("the vocabulary is too large".into()))?;
        if vocab.eos >= n {
            return Err(ConstraintError::Invalid(
                "the end-of-generation token is outside the vocabulary".into(),
            ));
        }
        let info = TokRxInfo::new(n, vocab.eos);
        let mut eog: Vec<TokenId> = vec![vocab.eos];
        eog.extend(
            vocab
                .eog
                .iter()
                .copied()
                .filter(|&t| t != vocab.eos && t < n),
        );
        let trie = TokTrie::from(&info, &vocab.tokens).with_eos_tokens(&eog);
        let env: llguidance::toktrie::TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Invalid(e.to_string()))?;
        factory.quiet();
        Ok(Self {
            factory: Arc::new(factory),
            eog: eog.into(),
            eos: vocab.eos,
        })
    }

    /// Compiles `spec` into a fresh constraint for one sequence.
    pub fn compile(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        let grammar = match spec {
            ConstraintSpec::Json => {
                TopLevelGrammar::from_json_schema(compact(json!({ "type": "object" })))
            }
            ConstraintSpec::JsonSchema(schema) => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(ConstraintError::Invalid(
                        "a JSON schema must be an object".into(),
                    ));
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            ConstraintSpec::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            ConstraintSpec::Gbnf(text) => TopLevelGrammar::from_lark(gbnf_to_lark(text)?),
            ConstraintSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| ConstraintError::Invalid(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(ConstraintError::Invalid(e));
        }
        Ok(Constraint {
            matcher,
            eog: Arc::clone(&self.eog),
            eos: self.eos,
            done: false,
        })
    }
}

/// The largest integer a JSON number carries exactly (2^53 - 1), the bound given to integers
/// a schema leaves unbounded.
const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;
/// Bound for the integer part of numbers a schema leaves unbounded.
const MAX_NUMBER: f64 = 1e15;
/// Decimals of numbers whose schema sets no `multipleOf`.
const NUMBER_STEP: f64 = 0.0001;

/// Bounds the numbers a schema leaves unbounded, so that a model cannot write digits forever
/// (small models do, e.g. `"population": 1111111…`): integers within ±(2^53 - 1) (the range
/// JSON numbers carry exactly anyway), other numbers within ±10^15 with at most four
/// decimals. Tightening only removes values: every output still validates against the
/// schema as given. Bounds are added only where they keep the schema satisfiable.
fn bound_numbers(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    let types: Vec<&str> = match map.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let (is_int, is_number) = (types.contains(&"integer"), types.contains(&"number"));
    if is_int || is_number {
        let bound = if is_int && !is_number {
            MAX_SAFE_INTEGER as f64
        } else {
            MAX_NUMBER
        };
        let num = |m: &serde_json::Map<String, Value>, k: &str| m.get(k).and_then(Value::as_f64);
        let lower = num(map, "minimum").or(num(map, "exclusiveMinimum"));
        let upper = num(map, "maximum").or(num(map, "exclusiveMaximum"));
        if upper.is_none() && lower.is_none_or(|l| l < bound) {
            map.insert("maximum".into(), bound_value(bound, is_int && !is_number));
        }
        if lower.is_none() && upper.is_none_or(|u| u > -bound) {
            map.insert("minimum".into(), bound_value(-bound, is_int && !is_number));
        }
        if is_number && !is_int && !map.contains_key("multipleOf") {
            map.insert("multipleOf".into(), json!(NUMBER_STEP));
        }
    }
    bound_keys(map);
    for key in ["properties", "$defs", "definitions", "patternProperties"] {
        if let Some(Value::Object(children)) = map.get_mut(key) {
            children.values_mut().for_each(bound_numbers);
        }
    }
    for key in ["items", "additionalProperties", "contains"] {
        if let Some(child) = map.get_mut(key) {
            bound_numbers(child);
        }
    }
    for key in ["prefixItems", "anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(list)) = map.get_mut(key) {
            list.iter_mut().for_each(bound_numbers);
        }
    }
}

/// The keys a schema leaves free (a map's keys, extra properties): short names, so that a model
/// cannot write one key forever.
const FREE_KEY_PATTERN: &str = "^[A-Za-z0-9_ .:/@+-]{1,64}$";

/// Objects whose extra properties a schema leaves open: with declared properties, extra ones
/// are left out (as OpenAI's strict mode requires); without any (a map), keys are bounded by
/// [`FREE_KEY_PATTERN`]. Both only remove values, never admit new ones.
fn bound_keys(map: &mut serde_json::Map<String, Value>) {
    let is_object =
        map.get("type").and_then(Value::as_str) == Some("object") || map.contains_key("properties");
    if !is_object || map.contains_key("patternProperties") {
        return;
    }
    let has_properties = map
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    let extra = map.get("additionalProperties").cloned();
    match extra {
        Some(Value::Bool(false)) => {}
        None | Some(Value::Bool(true)) if has_properties => {
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
        _ if has_properties => {}
        other => {
            let values = match other {
                Some(Value::Object(s)) => Value::Object(s),
                _ => json!({}),
            };
            map.insert(
                "patternProperties".into(),
                json!({ FREE_KEY_PATTERN: values }),
            );
            map.insert("additionalProperties".into(), Value::Bool(false));
        }
    }
}

fn bound_value(x: f64, integer: bool) -> Value {
    if integer {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// Adds compact-JSON options to a schema that sets none, and bounds its numbers.
fn compact(mut schema: Value) -> Value {
    bound_numbers(&mut schema);
    if let Value::Object(map) = &mut schema {
        map.entry("x-guidance").or_insert_with(|| {
            json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " })
        });
    }
    schema
}

/// One sequence's constraint state.
pub struct Constraint {
    matcher: Matcher,
    eog: Arc<[TokenId]>,
    eos: TokenId,
    done: bool,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Sets the logits of every token the grammar does not allow now to `-inf`.
    pub fn restrict(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| ConstraintError::Dead(e.to_string()))?;
        let eos_ok = mask.is_allowed(self.eos);
        let mut any = false;
        for (i, l) in logits.iter_mut().enumerate() {
            let t = i as TokenId;
            if mask.is_allowed(t) || (eos_ok && self.eog.contains(&t)) {
                any |= !l.is_nan();
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if any {
            Ok(())
        } else {
            Err(ConstraintError::Dead(
                "no token of the vocabulary continues the output".into(),
            ))
        }
    }

    /// Advances the grammar by the sampled `token`.
    pub fn commit(&mut self, token: TokenId) -> Result<(), ConstraintError> {
        if self.done || self.matcher.is_stopped() {
            return Ok(());
        }
        if self.eog.contains(&token) {
            // The sequence ends here; the grammar allowed it (restrict checked).
            self.done = true;
            return Ok(());
        }
        self.matcher
            .consume_token(token)
            .map_err(|e| ConstraintError::Dead(e.to_string()))
    }

    /// How many leading tokens of `draft` the grammar accepts from its current state,
    /// without advancing it: draft tokens past these are cut before verification.
    pub fn valid_prefix(&mut self, draft: &[TokenId]) -> usize {
        if self.done || self.matcher.is_stopped() {
            return 0;
        }
        let end = draft
            .iter()
            .position(|t| self.eog.contains(t))
            .unwrap_or(draft.len());
        self.matcher.validate_tokens(&draft[..end]).unwrap_or(0)
    }

    /// Whether the output so far is a complete match.
    pub fn is_complete(&mut self) -> bool {
        self.done || self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }
}

/// Translates a llama.cpp GBNF grammar into llguidance's Lark syntax: `name ::= body` becomes
/// `name: body`, `[...]` character classes become `/[...]/` regular expressions, `-` in rule
/// names becomes `_`, and `root` is the start rule. String literals, `|`, `( )`, `* + ?` and
/// `{m,n}` read the same in both.
pub fn gbnf_to_lark(gbnf: &str) -> Result<String, ConstraintError> {
    let bad = |m: String| ConstraintError::Invalid(format!("GBNF: {m}"));
    let mut rules: Vec<(String, String)> = Vec::new();
    let chars: Vec<char> = gbnf.chars().collect();
    let mut i = 0;
    let mut out_body = String::new();
    let mut current: Option<String> = None;
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let rule_name = |n: &str| n.replace('-', "_").to_ascii_lowercase();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '"' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(bad("unterminated string literal".into()));
                }
                out_body.extend(&chars[start..=i]);
                out_body.push(' ');
                i += 1;
            }
            '[' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != ']' {
                    if chars[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if i >= chars.len() {
                    return Err(bad("unterminated character class".into()));
                }
                let class: String = chars[start..=i].iter().collect();
                out_body.push('/');
                out_body.push_str(&class.replace('/', "\\/"));
                out_body.push_str("/ ");
                i += 1;
            }
            c if ident(c) => {
                let start = i;
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                // A rule definition: the name is followed by `::=`.
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let defines = chars[j..].starts_with(&[':', ':', '=']);
                if defines {
                    if let Some(prev) = current.take() {
                        rules.push((prev, std::mem::take(&mut out_body)));
                    }
                    current = Some(rule_name(&name));
                    i = j + 3;
                } else {
                    out_body.push_str(&rule_name(&name));
                    out_body.push(' ');
                }
            }
            '.' => {
                out_body.push_str("/./ ");
                i += 1;
            }
            _ => {
                out_body.push(c);
                i += 1;
            }
        }
    }
    if let Some(prev) = current.take() {
        rules.push((prev, out_body));
    } else if !out_body.trim().is_empty() {
        return Err(bad("text before the first rule".into()));
    }
    if !rules.iter().any(|(n, _)| n == "root") {
        return Err(bad("no `root` rule".into()));
    }
    let mut lark = String::from("start: root\n");
    for (name, body) in rules {
        let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
        if body.is_empty() {
            return Err(bad(format!("rule `{name}` is empty")));
        }
        lark.push_str(&format!("{name}: {body}\n"));
    }
    Ok(lark)
}

#[cfg(test)]
mod tests {
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
}

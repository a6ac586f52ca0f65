//! The request fields that shape the output beyond sampling, read into native terms:
//! constraints (Ollama's `format`, OpenAI's `response_format`, our `grammar`) and
//! log-probabilities (`logprobs`, `top_logprobs`), and the log-probability objects both APIs
//! answer with.
//!
//! Thinking models: [`after_thinking`] wraps a request's constraint so that the reasoning is
//! free and the constraint applies to the answer after `</think>`, with a thinking budget.
//!
//! # Invariants
//! - Every malformed field is a 400 naming the field; a constraint that parses here can still
//!   be refused by the compiler (a 400 with its message) when the generation starts.
//! - When the model thinks and the answer is constrained, the thinking always has a budget
//!   (the request's `think_budget`, else [`default_think_budget`]), so that the constrained
//!   answer gets its turn; an unconstrained answer is limited only by an explicit budget.

use hyperllama_core::constraint::{ConstraintSpec, ThinkingSpec};
use hyperllama_core::logprobs::MAX_TOP_LOGPROBS;
use hyperllama_engine::TokenLogprob;
use serde_json::{json, Value};

use crate::error::ApiError;

/// Ollama's `format`: `"json"`, a JSON schema object, or empty/absent for none.
pub fn ollama_format(format: Option<&Value>) -> Result<Option<ConstraintSpec>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(ConstraintSpec::Json)),
        Some(Value::Object(_)) => Ok(Some(ConstraintSpec::JsonSchema(
            format.cloned().unwrap_or(Value::Null),
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "invalid format {other}: use \"json\" or a JSON schema object"
        ))),
    }
}

/// OpenAI's `response_format`: `{"type": "text" | "json_object" | "json_schema", ...}`.
pub fn openai_response_format(format: Option<&Value>) -> Result<Option<ConstraintSpec>, ApiError> {
    let Some(format) = format.filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(ConstraintSpec::Json)),
        Some("json_schema") => {
            let schema = format
                .pointer("/json_schema/schema")
                .filter(|s| s.is_object() || s.is_boolean())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "response_format.json_schema.schema must be a JSON schema object",
                    )
                })?;
            Ok(Some(ConstraintSpec::JsonSchema(schema.clone())))
        }
        _ => Err(ApiError::bad_request(
            "response_format.type must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// Our `grammar` extension (as llama.cpp's server and vLLM offer): llama.cpp's GBNF when the
/// text defines rules with `::=`, else llguidance's Lark syntax.
pub fn grammar(grammar: Option<&str>) -> Option<ConstraintSpec> {
    let g = grammar.filter(|g| !g.trim().is_empty())?;
    Some(if g.contains("::=") {
        ConstraintSpec::Gbnf(g.to_owned())
    } else {
        ConstraintSpec::Lark(g.to_owned())
    })
}

/// At most one constraint per request.
pub fn one_constraint(
    specs: impl IntoIterator<Item = Option<ConstraintSpec>>,
) -> Result<Option<ConstraintSpec>, ApiError> {
    let mut found: Vec<ConstraintSpec> = specs.into_iter().flatten().collect();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(ApiError::bad_request(
            "give only one of format/response_format and grammar",
        )),
    }
}

/// The constraint a request's output gets. `thinking` is `Some` when the model thinks before
/// its answer (`Some(true)` when the prompt already opened the thinking): then the thinking
/// is free and `answer` (if any) applies after it, within `budget` tokens of thinking (by
/// default [`default_think_budget`] of `room`, the tokens left for the output, when the
/// answer is constrained; unbounded otherwise). Without thinking, `answer` as it is.
pub fn after_thinking(
    answer: Option<ConstraintSpec>,
    thinking: Option<bool>,
    budget: Option<usize>,
    room: usize,
) -> Option<ConstraintSpec> {
    let Some(opened) = thinking else {
        return answer;
    };
    let budget = match (&answer, budget) {
        (_, Some(b)) => b,
        (None, None) => return None,
        (Some(_), None) => default_think_budget(room),
    };
    Some(ConstraintSpec::AfterThinking(ThinkingSpec {
        opened,
        budget: Some(budget),
        answer: answer.map(Box::new),
    }))
}

/// The thinking budget of a constrained answer when the request sets none: half the tokens
/// left for the output, so that the other half is the answer's.
pub fn default_think_budget(room: usize) -> usize {
    room / 2
}

/// `logprobs` (on/off) and `top_logprobs` (0 to 20) as the alternatives to report.
pub fn logprobs(on: bool, top: Option<i64>) -> Result<Option<usize>, ApiError> {
    let top = match top {
        None => 0,
        Some(n) if (0..=MAX_TOP_LOGPROBS as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "top_logprobs must be between 0 and {MAX_TOP_LOGPROBS}, not {n}"
            )))
        }
    };
    if !on && top > 0 {
        return Err(ApiError::bad_request(
            "top_logprobs needs logprobs to be true",
        ));
    }
    Ok(on.then_some(top))
}

/// One token's entry: `{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}`
/// (OpenAI's chat shape, which Ollama uses too).
pub fn logprob_json(lp: &TokenLogprob) -> Value {
    let top: Vec<Value> = lp
        .top
        .iter()
        .map(|a| {
            json!({
                "token": String::from_utf8_lossy(&a.bytes),
                "logprob": finite(a.logprob),
                "bytes": a.bytes,
            })
        })
        .collect();
    json!({
        "token": String::from_utf8_lossy(&lp.bytes),
        "logprob": finite(lp.logprob),
        "bytes": lp.bytes,
        "top_logprobs": top,
    })
}

/// JSON has no infinity: `-inf` becomes the most negative finite number (as OpenAI's
/// `-9999.0` convention does, but exact).
fn finite(x: f32) -> f32 {
    if x.is_finite() {
        x
    } else {
        -9999.0
    }
}

/// The legacy completions shape of a run of tokens: `{tokens, token_logprobs, top_logprobs,
/// text_offset}`, `text_offset` counting from `offset`.
pub fn completion_logprobs(lps: &[TokenLogprob], mut offset: usize) -> Value {
    let mut tokens = Vec::with_capacity(lps.len());
    let mut values = Vec::with_capacity(lps.len());
    let mut tops = Vec::with_capacity(lps.len());
    let mut offsets = Vec::with_capacity(lps.len());
    for lp in lps {
        let token = String::from_utf8_lossy(&lp.bytes).into_owned();
        offsets.push(offset);
        offset += token.len();
        tokens.push(token);
        values.push(finite(lp.logprob));
        let top: serde_json::Map<String, Value> = lp
            .top
            .iter()
            .map(|a| {
                (
                    String::from_utf8_lossy(&a.bytes).into_owned(),
                    json!(finite(a.logprob)),
                )
            })
            .collect();
        tops.push(Value::Object(top));
    }
    json!({
        "tokens": tokens,
        "token_logprobs": values,
        "top_logprobs": tops,
        "text_offset": offsets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperllama_engine::Alternative;

    #[test]
    fn formats_read_as_ollama_and_openai_define_them() {
        assert_eq!(ollama_format(None).expect("ok"), None);
        assert_eq!(ollama_format(Some(&json!(""))).expect("ok"), None);
        assert_eq!(
            ollama_format(Some(&json!("json"))).expect("ok"),
            Some(ConstraintSpec::Json)
        );
        let schema = json!({"type": "object"});
        assert_eq!(
            ollama_format(Some(&schema)).expect("ok"),
            Some(ConstraintSpec::JsonSchema(schema.clone()))
        );
        assert!(ollama_format(Some(&json!("yaml"))).is_err());
        assert!(ollama_format(Some(&json!(3))).is_err());

        let rf = |v: Value| openai_response_format(Some(&v));
        assert_eq!(rf(json!({"type": "text"})).expect("ok"), None);
        assert_eq!(
            rf(json!({"type": "json_object"})).expect("ok"),
            Some(ConstraintSpec::Json)
        );
        assert_eq!(
            rf(json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": true}}))
                .expect("ok"),
            Some(ConstraintSpec::JsonSchema(json!({"type": "object"})))
        );
        assert!(rf(json!({"type": "json_schema", "json_schema": {"name": "x"}})).is_err());
        assert!(rf(json!({"type": "xml"})).is_err());
    }

    #[test]
    fn grammars_are_told_apart_and_only_one_constraint_is_allowed() {
        assert!(matches!(
            grammar(Some("root ::= \"a\"")),
            Some(ConstraintSpec::Gbnf(_))
        ));
        assert!(matches!(
            grammar(Some("start: \"a\"")),
            Some(ConstraintSpec::Lark(_))
        ));
        assert_eq!(grammar(Some("  ")), None);
        assert!(one_constraint([Some(ConstraintSpec::Json), None]).is_ok());
        assert!(
            one_constraint([Some(ConstraintSpec::Json), grammar(Some("start: \"a\""))]).is_err()
        );
    }

    #[test]
    fn a_thinking_model_gets_its_constraint_after_the_thinking() {
        let json = Some(ConstraintSpec::Json);
        assert_eq!(after_thinking(json.clone(), None, Some(5), 100), json);
        assert_eq!(after_thinking(None, Some(true), None, 100), None);
        let wrapped = |opened, budget, answer: Option<ConstraintSpec>| {
            Some(ConstraintSpec::AfterThinking(ThinkingSpec {
                opened,
                budget: Some(budget),
                answer: answer.map(Box::new),
            }))
        };
        assert_eq!(
            after_thinking(json.clone(), Some(true), None, 100),
            wrapped(true, 50, json.clone())
        );
        assert_eq!(
            after_thinking(json.clone(), Some(false), Some(7), 100),
            wrapped(false, 7, json)
        );
        assert_eq!(
            after_thinking(None, Some(true), Some(0), 100),
            wrapped(true, 0, None)
        );
    }

    #[test]
    fn logprob_fields_are_checked_and_shaped() {
        assert_eq!(logprobs(false, None).expect("ok"), None);
        assert_eq!(logprobs(true, Some(3)).expect("ok"), Some(3));
        assert!(logprobs(true, Some(21)).is_err());
        assert!(logprobs(false, Some(2)).is_err());
        let lp = TokenLogprob {
            logprob: -0.5,
            bytes: b"Hi".to_vec(),
            top: vec![Alternative {
                token: 7,
                bytes: b"Hi".to_vec(),
                logprob: -0.5,
            }],
        };
        let v = logprob_json(&lp);
        assert_eq!(v["token"], "Hi");
        assert_eq!(v["bytes"], json!([72, 105]));
        assert_eq!(v["top_logprobs"][0]["logprob"], json!(-0.5));
        let c = completion_logprobs(&[lp.clone(), lp], 3);
        assert_eq!(c["text_offset"], json!([3, 5]));
        assert_eq!(c["top_logprobs"][1]["Hi"], json!(-0.5));
    }
}

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
//! Reasoning models: [`ConstraintSpec::AfterThinking`] leaves the thinking free and
//! constrains the answer after it. It compiles into one llguidance grammar (so drafts are cut
//! by [`Constraint::valid_prefix`] as for any other constraint): `start: think GAP? answer`,
//! where `think` is any text up to and including the first [`THINK_CLOSE`] (a lazy lexeme,
//! or the vocabulary's special close token), `GAP` is a little whitespace and `answer` is the
//! answer's own grammar (JSON schema, Lark, GBNF, regex) as a sub-grammar, or any text. When
//! the prompt did not open the thinking, the model may write [`THINK_OPEN`] first or answer
//! at once: `start: (THINK_OPEN think GAP?)? answer`. A thinking budget (tokens) is kept
//! beside the grammar: once the thinking has used it, only tokens that write the rest of the
//! close marker are allowed, so a constrained answer always gets its turn.
//!
//! # Invariants
//! - A token that `restrict` left allowed is always accepted by `commit`; after `restrict`
//!   returned `Ok`, at least one token is allowed.
//! - With [`ConstraintSpec::AfterThinking`]: every text up to the first close marker is
//!   allowed (braces, text the answer's grammar would reject, a partial marker), but no
//!   end-of-generation or other special token (the answer must come); the thinking opens only
//!   with [`THINK_OPEN`] at the very start of the output; after the close marker exactly the
//!   answer's grammar applies (after at most 8 whitespace characters).
//! - The thinking budget counts the tokens generated inside the thinking; at the budget the
//!   close marker is forced (finishing one the model already began) and drafts are cut there.
//!   A budget of 0 with an unopened thinking means the answer comes at once.
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

use llguidance::api::{GrammarWithLexer, TopLevelGrammar};
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};
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
    /// A reasoning model's answer: free thinking up to [`THINK_CLOSE`], then the answer
    /// constraint (see the module docs).
    AfterThinking(ThinkingSpec),
}

/// The text that opens a reasoning model's thinking.
pub const THINK_OPEN: &str = "<think>";
/// The text that closes a reasoning model's thinking.
pub const THINK_CLOSE: &str = "</think>";

/// Whitespace allowed between the thinking and the answer (models write a blank line).
const THINK_GAP: &str = r"/[ \t\r\n]{1,8}/";

/// How a reasoning model's output is constrained: free thinking, then a constrained answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ThinkingSpec {
    /// Whether the prompt already opened the thinking (its generation prompt ends with
    /// [`THINK_OPEN`]): the output starts inside it. Otherwise the model may open it first
    /// or answer directly.
    pub opened: bool,
    /// The most tokens the thinking may take: at this count the close marker is forced.
    /// `None`: unbounded.
    pub budget: Option<usize>,
    /// What the answer must match; `None`: any text.
    pub answer: Option<Box<ConstraintSpec>>,
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
    env: TokEnv,
    eog: Arc<[TokenId]>,
    eos: TokenId,
    /// The vocabulary's special (control) tokens spelling [`THINK_OPEN`] and
    /// [`THINK_CLOSE`], where it has them.
    think_tokens: (Option<TokenId>, Option<TokenId>),
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
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Invalid(e.to_string()))?;
        factory.quiet();
        let special = |text: &str| {
            let mut marked = vec![SPECIAL_TOKEN_MARKER];
            marked.extend_from_slice(text.as_bytes());
            vocab
                .tokens
                .iter()
                .position(|t| *t == marked)
                .and_then(|i| TokenId::try_from(i).ok())
        };
        Ok(Self {
            factory: Arc::new(factory),
            env,
            eog: eog.into(),
            eos: vocab.eos,
            think_tokens: (special(THINK_OPEN), special(THINK_CLOSE)),
        })
    }

    /// Compiles `spec` into a fresh constraint for one sequence.
    pub fn compile(&self, spec: &ConstraintSpec) -> Result<Constraint, ConstraintError> {
        let (grammar, thinking) = match spec {
            ConstraintSpec::AfterThinking(t) => (
                self.thinking_grammar(t)?,
                Some(ThinkTracker::new(t, self.think_tokens)),
            ),
            other => (TopLevelGrammar::from_grammar(grammar_of(other)?), None),
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
            env: Arc::clone(&self.env),
            eog: Arc::clone(&self.eog),
            eos: self.eos,
            done: false,
            thinking,
        })
    }

    /// The grammar of free thinking followed by the answer (see the module docs): one Lark
    /// grammar whose `answer` rule is the answer's own grammar, as a sub-grammar.
    fn thinking_grammar(&self, spec: &ThinkingSpec) -> Result<TopLevelGrammar, ConstraintError> {
        let (open_token, close_token) = self.think_tokens;
        let lit = |text: &str, special: Option<TokenId>| match special {
            Some(_) => format!("(\"{text}\" | {text})"),
            None => format!("\"{text}\""),
        };
        let mut lark = String::new();
        let think = if spec.opened {
            Some("think GAP?".to_owned())
        } else if spec.budget == Some(0) {
            // No room to think: the answer comes at once.
            None
        } else {
            Some(format!("({} think GAP?)?", lit(THINK_OPEN, open_token)))
        };
        let answer = if spec.answer.is_some() {
            "@answer"
        } else {
            "FREE"
        };
        match think {
            Some(t) => lark.push_str(&format!("start: {t} answer\n")),
            None => lark.push_str("start: answer\n"),
        }
        lark.push_str(&format!("answer: {answer}\n"));
        lark.push_str(&format!("GAP: {THINK_GAP}\n"));
        lark.push_str("FREE: /(?s:.*)/\n");
        // The thinking ends at the first close marker: lazily matched text, or (where the
        // vocabulary has it) the special close token after text that holds no close marker.
        let close_rx = regex_literal(THINK_CLOSE);
        match close_token {
            Some(_) => lark.push_str(&format!(
                "think: think_text | THINK_FREE {THINK_CLOSE}\n\
                 THINK_FREE: /(?s:.*)/ & ~/(?s:.*){close_rx}(?s:.*)/\n"
            )),
            None => lark.push_str("think: think_text\n"),
        }
        lark.push_str(&format!("think_text[lazy]: /(?s:.*){close_rx}/\n"));
        let mut grammars = vec![GrammarWithLexer::from_lark(lark)];
        if let Some(answer) = &spec.answer {
            let mut g = grammar_of(answer)?;
            g.name = Some("answer".into());
            grammars.push(g);
        }
        Ok(TopLevelGrammar {
            grammars,
            max_tokens: None,
        })
    }
}

/// The grammar of a constraint that is not [`ConstraintSpec::AfterThinking`].
fn grammar_of(spec: &ConstraintSpec) -> Result<GrammarWithLexer, ConstraintError> {
    Ok(match spec {
        ConstraintSpec::Json => {
            GrammarWithLexer::from_json_schema(compact(json!({ "type": "object" })))
        }
        ConstraintSpec::JsonSchema(schema) => {
            if !schema.is_object() && !schema.is_boolean() {
                return Err(ConstraintError::Invalid(
                    "a JSON schema must be an object".into(),
                ));
            }
            GrammarWithLexer::from_json_schema(compact(schema.clone()))
        }
        ConstraintSpec::Lark(text) => GrammarWithLexer::from_lark(text.clone()),
        ConstraintSpec::Gbnf(text) => GrammarWithLexer::from_lark(gbnf_to_lark(text)?),
        ConstraintSpec::Regex(rx) => GrammarWithLexer::from_regex(rx),
        ConstraintSpec::AfterThinking(_) => {
            return Err(ConstraintError::Invalid(
                "a thinking constraint cannot be nested".into(),
            ))
        }
    })
}

/// `text` as a regular expression (inside `/.../`) that matches it literally.
fn regex_literal(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '<' || c == '>' || c == '_' || c == ' ' {
            out.push(c);
        } else if c == '/' {
            out.push_str("\\/");
        } else {
            out.push('\\');
            out.push(c);
        }
    }
    out
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
    env: TokEnv,
    eog: Arc<[TokenId]>,
    eos: TokenId,
    done: bool,
    /// Where a reasoning model's output is relative to its thinking.
    thinking: Option<ThinkTracker>,
}

impl fmt::Debug for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Constraint")
            .field("done", &self.done)
            .field("thinking", &self.thinking)
            .finish_non_exhaustive()
    }
}

impl Constraint {
    /// Sets the logits of every token the grammar does not allow now to `-inf`; once the
    /// thinking budget is spent, also of every token that does not continue the close marker.
    pub fn restrict(&mut self, logits: &mut [f32]) -> Result<(), ConstraintError> {
        let mask = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| ConstraintError::Dead(e.to_string()))?;
        let eos_ok = mask.is_allowed(self.eos);
        let forced = self.thinking.as_ref().and_then(ThinkTracker::forced_close);
        let trie = self.env.tok_trie();
        let mut any = false;
        for (i, l) in logits.iter_mut().enumerate() {
            let t = i as TokenId;
            let grammar_ok = mask.is_allowed(t) || (eos_ok && self.eog.contains(&t));
            let budget_ok = match &forced {
                None => true,
                Some(need) => need.allows(t, trie.token(t)),
            };
            if grammar_ok && budget_ok {
                any |= !l.is_nan();
            } else {
                *l = f32::NEG_INFINITY;
            }
        }
        if any {
            Ok(())
        } else if forced.is_some() {
            Err(ConstraintError::Dead(format!(
                "the thinking budget is spent and no token of the vocabulary writes {THINK_CLOSE}"
            )))
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
            .map_err(|e| ConstraintError::Dead(e.to_string()))?;
        if let Some(t) = self.thinking.as_mut() {
            t.advance(token, self.env.tok_trie().token(token));
        }
        Ok(())
    }

    /// How many leading tokens of `draft` the grammar accepts from its current state,
    /// without advancing it: draft tokens past these are cut before verification. A draft
    /// is also cut where the thinking budget would force the close marker.
    pub fn valid_prefix(&mut self, draft: &[TokenId]) -> usize {
        if self.done || self.matcher.is_stopped() {
            return 0;
        }
        let mut end = draft
            .iter()
            .position(|t| self.eog.contains(t))
            .unwrap_or(draft.len());
        if let Some(tracker) = &self.thinking {
            let trie = self.env.tok_trie();
            let mut t = tracker.clone();
            end = draft[..end]
                .iter()
                .position(|&tok| {
                    let bytes = trie.token(tok);
                    let stop = t
                        .forced_close()
                        .is_some_and(|need| !need.allows(tok, bytes));
                    t.advance(tok, bytes);
                    stop
                })
                .unwrap_or(end);
        }
        self.matcher.validate_tokens(&draft[..end]).unwrap_or(0)
    }

    /// Whether the output so far is a complete match.
    pub fn is_complete(&mut self) -> bool {
        self.done || self.matcher.is_stopped() || self.matcher.is_accepting().unwrap_or(false)
    }

    /// Whether the output is still inside (or before) a reasoning model's thinking.
    pub fn is_thinking(&self) -> bool {
        self.thinking
            .as_ref()
            .is_some_and(|t| t.phase != ThinkPhase::Answer)
    }
}

/// Where the output is relative to the thinking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ThinkPhase {
    /// Nothing yet, or a proper prefix of [`THINK_OPEN`]: the model may still open it.
    Before,
    /// Inside the thinking.
    Inside,
    /// After the close marker (or the model answered without thinking).
    Answer,
}

/// Follows the output through the thinking, counting its tokens against the budget. It
/// reads the output as the grammar does: the thinking opens only with [`THINK_OPEN`] at the
/// very start, and ends at the first [`THINK_CLOSE`].
#[derive(Clone, Debug)]
struct ThinkTracker {
    phase: ThinkPhase,
    /// Before: the output so far; Inside: its last bytes (less than a close marker).
    text: Vec<u8>,
    /// Tokens generated inside the thinking.
    used: usize,
    budget: Option<usize>,
    /// The special tokens for the markers, where the vocabulary has them.
    open_token: Option<TokenId>,
    close_token: Option<TokenId>,
}

/// What the close marker still needs once the budget is spent.
struct ForcedClose {
    /// The rest of the close marker's text.
    need: &'static [u8],
    /// The special close token, allowed when nothing of the marker was written yet.
    special: Option<TokenId>,
}

impl ForcedClose {
    /// Whether `token` (spelled `bytes`) writes the next part of the close marker.
    fn allows(&self, token: TokenId, bytes: &[u8]) -> bool {
        (!bytes.is_empty() && bytes[0] != SPECIAL_TOKEN_MARKER && self.need.starts_with(bytes))
            || self.special == Some(token)
    }
}

impl ThinkTracker {
    fn new(
        spec: &ThinkingSpec,
        (open_token, close_token): (Option<TokenId>, Option<TokenId>),
    ) -> Self {
        let phase = if spec.opened {
            ThinkPhase::Inside
        } else if spec.budget == Some(0) {
            ThinkPhase::Answer
        } else {
            ThinkPhase::Before
        };
        Self {
            phase,
            text: Vec::new(),
            used: 0,
            budget: spec.budget,
            open_token,
            close_token,
        }
    }

    /// Follows one generated token.
    fn advance(&mut self, token: TokenId, bytes: &[u8]) {
        match self.phase {
            ThinkPhase::Answer => {}
            ThinkPhase::Before => {
                if Some(token) == self.open_token {
                    self.phase = ThinkPhase::Inside;
                    return;
                }
                self.text.extend_from_slice(bytes);
                let open = THINK_OPEN.as_bytes();
                if self.text.starts_with(open) {
                    let rest = self.text.split_off(open.len());
                    self.text.clear();
                    self.phase = ThinkPhase::Inside;
                    self.inside(&rest);
                } else if !open.starts_with(&self.text) {
                    self.phase = ThinkPhase::Answer;
                }
            }
            ThinkPhase::Inside => {
                self.used += 1;
                if Some(token) == self.close_token {
                    self.phase = ThinkPhase::Answer;
                } else {
                    self.inside(bytes);
                }
            }
        }
    }

    /// Reads thinking text, looking for the close marker.
    fn inside(&mut self, bytes: &[u8]) {
        let close = THINK_CLOSE.as_bytes();
        self.text.extend_from_slice(bytes);
        if self.text.windows(close.len()).any(|w| w == close) {
            self.phase = ThinkPhase::Answer;
            self.text.clear();
        } else {
            let keep = self.text.len().min(close.len() - 1);
            self.text.drain(..self.text.len() - keep);
        }
    }

    /// The close marker's rest, when the budget is spent inside the thinking.
    fn forced_close(&self) -> Option<ForcedClose> {
        if self.phase != ThinkPhase::Inside || self.budget.is_none_or(|b| self.used < b) {
            return None;
        }
        let close = THINK_CLOSE.as_bytes();
        // The longest end of the thinking that already starts the marker.
        let written = (1..close.len())
            .rev()
            .find(|&n| self.text.ends_with(&close[..n]))
            .unwrap_or(0);
        Some(ForcedClose {
            need: &close[written..],
            special: self.close_token.filter(|_| written == 0),
        })
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
mod tests;

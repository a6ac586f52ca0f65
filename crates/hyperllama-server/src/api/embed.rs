//! Embeddings in both dialects: Ollama's `/api/embed` (current) and `/api/embeddings`
//! (legacy), and OpenAI's `/v1/embeddings`.
//!
//! All three load the model through the residency (so `keep_alive` works as for generation),
//! tokenize their inputs, and hand them to the engine's embedding path in one request
//! ([`hyperllama_engine::embed`]).
//!
//! As Ollama does: `/api/embed` and `/v1/embeddings` answer L2-normalized vectors; with
//! `dimensions`, a vector is cut to that length and normalized again. `/api/embeddings`
//! answers the model's raw vector. Inputs longer than the context (`num_ctx`) are truncated
//! when `truncate` is true (the default; `/api/embeddings` and `/v1/embeddings` always
//! truncate), else refused with 400. `/api/embed` without input (or with `""` or `[]`) only
//! loads the model and answers no vectors; `/v1/embeddings` refuses empty input.
//!
//! # Invariants
//! - Errors are in the endpoint's dialect; bad input (empty model, input of the wrong type,
//!   `dimensions` larger than the model's vectors) is a 400.
//! - The request's lease is held until the vectors are back.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use hyperllama_core::TokenId;
use hyperllama_engine::embed::{normalize, prepare_text, prepare_tokens};
use hyperllama_engine::EmbedRequest;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::nanos;
use crate::error::{ApiError, ErrorKind, OllamaJson, OpenAiError, OpenAiJson};
use crate::native::{as_written, parse_model_name};
use crate::options::{GenerateOptions, KeepAlive};
use crate::AppState;

/// The inputs of one request.
enum Inputs {
    Texts(Vec<String>),
    Tokens(Vec<Vec<i64>>),
}

impl Inputs {
    fn is_empty(&self) -> bool {
        match self {
            Inputs::Texts(t) => t.is_empty(),
            Inputs::Tokens(t) => t.is_empty(),
        }
    }
}

/// What an embedding request asks for, in either dialect.
struct Job<'a> {
    model: &'a str,
    inputs: Inputs,
    truncate: bool,
    normalize: bool,
    dimensions: Option<usize>,
    num_ctx: Option<usize>,
    keep_alive: Option<KeepAlive>,
}

/// The vectors and the numbers the responses report.
struct Outcome {
    vectors: Vec<Vec<f32>>,
    n_tokens: usize,
    load_duration: Duration,
}

fn invalid_input() -> ApiError {
    ApiError::bad_request("invalid input type: expected a string or an array of strings")
}

/// `dimensions` as given: absent or 0 means all; negative or not an integer is refused.
fn dimensions(v: Option<&Value>) -> Result<Option<usize>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(0) => Ok(None),
            Some(n) => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
            None => Err(ApiError::bad_request(format!(
                "invalid dimensions {v}: expected a positive integer"
            ))),
        },
    }
}

/// Loads the model, embeds the inputs, applies `dimensions`.
async fn run(state: &AppState, job: Job<'_>) -> Result<Outcome, ApiError> {
    let name = parse_model_name(job.model)?;
    let lease = state
        .residency()
        .acquire(&name, job.num_ctx, job.keep_alive)
        .await
        .map_err(as_written(job.model))?;
    let loaded = lease
        .model()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "the model is not loaded"))?;
    let engine = loaded
        .engine()
        .ok_or_else(|| ApiError::new(ErrorKind::Internal, "the model's engine is gone"))?;
    super::touch(state, &loaded.resolved.name);
    let n_embd = engine.embedding_length();
    if let Some(d) = job.dimensions.filter(|&d| d > n_embd) {
        return Err(ApiError::bad_request(format!(
            "dimensions {d} is larger than the model's embedding length of {n_embd}"
        )));
    }
    let mut outcome = Outcome {
        vectors: Vec::new(),
        n_tokens: 0,
        load_duration: lease.load_duration,
    };
    if job.inputs.is_empty() {
        return Ok(outcome);
    }
    let model = engine.model();
    let n_ctx = loaded.n_ctx;
    let bad = |e: hyperllama_engine::Error| ApiError::bad_request(e.to_string());
    let inputs: Vec<Vec<TokenId>> = match job.inputs {
        Inputs::Texts(texts) => texts
            .iter()
            .map(|t| prepare_text(model, t, n_ctx, job.truncate).map_err(bad))
            .collect::<Result<_, _>>()?,
        Inputs::Tokens(lists) => lists
            .into_iter()
            .map(|list| {
                let tokens = list
                    .into_iter()
                    .map(|t| {
                        TokenId::try_from(t).map_err(|_| {
                            ApiError::bad_request(format!("token {t} is not a valid token id"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                prepare_tokens(model, tokens, n_ctx, job.truncate).map_err(bad)
            })
            .collect::<Result<_, _>>()?,
    };
    let rx = engine
        .embed(EmbedRequest {
            inputs,
            normalize: job.normalize,
        })
        .map_err(|e| engine_error(&lease, e))?;
    let answer = rx
        .await
        .map_err(|_| ApiError::new(ErrorKind::Internal, "the engine stopped before answering"))?
        .map_err(|e| engine_error(&lease, e))?;
    outcome.n_tokens = answer.n_tokens;
    outcome.vectors = answer.vectors;
    let model_name = loaded.resolved.name.display_shortest();
    state.residency().metrics().record_embedding(
        &model_name,
        outcome.vectors.len(),
        outcome.n_tokens,
    );
    tracing::info!(
        model = %model_name,
        inputs = outcome.vectors.len(),
        prompt_eval_count = outcome.n_tokens,
        "embedding finished"
    );
    if let Some(d) = job.dimensions {
        for v in &mut outcome.vectors {
            if d < v.len() {
                v.truncate(d);
                normalize(v);
            }
        }
    }
    drop(lease);
    Ok(outcome)
}

/// Maps an engine refusal; a stopped engine is discarded, so that the next request loads the
/// model afresh (as generation does).
fn engine_error(lease: &crate::residency::Lease, e: hyperllama_engine::Error) -> ApiError {
    match e {
        hyperllama_engine::Error::InvalidRequest(m) => ApiError::bad_request(m),
        e @ hyperllama_engine::Error::Overloaded { .. } => {
            ApiError::new(ErrorKind::Overloaded, e.to_string())
        }
        e @ hyperllama_engine::Error::Stopped => {
            lease.discard();
            ApiError::internal("the engine refused the request", &e)
        }
        e => ApiError::internal("the embedding failed", &e),
    }
}

/// The body of `POST /api/embed`.
#[derive(Debug, Deserialize)]
pub struct EmbedBody {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<Value>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

/// Ollama's `input`: a string (empty: none) or an array of strings.
fn ollama_inputs(input: Option<Value>) -> Result<Vec<String>, ApiError> {
    match input {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s]),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(invalid_input()),
            })
            .collect(),
        Some(_) => Err(invalid_input()),
    }
}

fn ollama_controls(
    options: Option<&Map<String, Value>>,
    keep_alive: Option<&Value>,
) -> Result<(Option<usize>, Option<KeepAlive>), ApiError> {
    let options = match options {
        Some(map) => GenerateOptions::from_ollama(map)?,
        None => GenerateOptions::default(),
    };
    Ok((options.num_ctx, KeepAlive::parse_opt(keep_alive)?))
}

/// `POST /api/embed`.
pub async fn embed(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<EmbedBody>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let inputs = ollama_inputs(body.input)?;
    let (num_ctx, keep_alive) = ollama_controls(body.options.as_ref(), body.keep_alive.as_ref())?;
    let job = Job {
        model: &body.model,
        inputs: Inputs::Texts(inputs),
        truncate: body.truncate.unwrap_or(true),
        normalize: true,
        dimensions: dimensions(body.dimensions.as_ref())?,
        num_ctx,
        keep_alive,
    };
    let out = run(&state, job).await?;
    Ok(Json(json!({
        "model": body.model,
        "embeddings": out.vectors,
        "total_duration": nanos(started.elapsed()),
        "load_duration": nanos(out.load_duration),
        "prompt_eval_count": out.n_tokens,
    })))
}

/// The body of `POST /api/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsBody {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    keep_alive: Option<Value>,
    #[serde(default)]
    options: Option<Map<String, Value>>,
}

/// `POST /api/embeddings` (legacy): one raw vector.
pub async fn embeddings(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<EmbeddingsBody>,
) -> Result<Json<Value>, ApiError> {
    let (num_ctx, keep_alive) = ollama_controls(body.options.as_ref(), body.keep_alive.as_ref())?;
    let prompt = body.prompt.unwrap_or_default();
    let inputs = if prompt.is_empty() {
        Vec::new()
    } else {
        vec![prompt]
    };
    let job = Job {
        model: &body.model,
        inputs: Inputs::Texts(inputs),
        truncate: true,
        normalize: false,
        dimensions: None,
        num_ctx,
        keep_alive,
    };
    let out = run(&state, job).await?;
    let embedding: Vec<f64> = out
        .vectors
        .first()
        .map(|v| v.iter().map(|&x| f64::from(x)).collect())
        .unwrap_or_default();
    Ok(Json(json!({ "embedding": embedding })))
}

/// The body of `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct OpenAiEmbeddingsBody {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<Value>,
}

/// OpenAI's `input`: a string, an array of strings, an array of token ids, or an array of
/// arrays of token ids; none of them empty.
fn openai_inputs(input: Option<Value>) -> Result<Inputs, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid input: expected a non-empty string, array of strings, array of token ids or array of arrays of token ids",
        )
    };
    let tokens = |v: &[Value]| -> Option<Vec<i64>> { v.iter().map(Value::as_i64).collect() };
    match input {
        Some(Value::String(s)) if !s.is_empty() => Ok(Inputs::Texts(vec![s])),
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_string) {
                let texts: Vec<String> = items
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if texts.iter().any(String::is_empty) {
                    return Err(invalid());
                }
                Ok(Inputs::Texts(texts))
            } else if items.iter().all(Value::is_number) {
                tokens(&items)
                    .map(|t| Inputs::Tokens(vec![t]))
                    .ok_or_else(invalid)
            } else if items.iter().all(Value::is_array) {
                items
                    .iter()
                    .map(|v| {
                        v.as_array()
                            .filter(|a| !a.is_empty())
                            .and_then(|a| tokens(a))
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(Inputs::Tokens)
                    .ok_or_else(invalid)
            } else {
                Err(invalid())
            }
        }
        _ => Err(invalid()),
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A vector as OpenAI's `base64` encoding: little-endian f32 bytes.
fn vector_base64(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// `POST /v1/embeddings`.
pub async fn openai_embeddings(
    State(state): State<AppState>,
    OpenAiJson(body): OpenAiJson<OpenAiEmbeddingsBody>,
) -> Result<Json<Value>, OpenAiError> {
    openai_run(&state, body)
        .await
        .map(Json)
        .map_err(OpenAiError)
}

async fn openai_run(state: &AppState, body: OpenAiEmbeddingsBody) -> Result<Value, ApiError> {
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid encoding_format '{other}': expected \"float\" or \"base64\""
            )))
        }
    };
    let job = Job {
        model: &body.model,
        inputs: openai_inputs(body.input)?,
        truncate: true,
        normalize: true,
        dimensions: dimensions(body.dimensions.as_ref())?,
        num_ctx: None,
        keep_alive: None,
    };
    let out = run(state, job).await?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                json!(vector_base64(v))
            } else {
                json!(v)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": { "prompt_tokens": out.n_tokens, "total_tokens": out.n_tokens },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(vector_base64(&[1.0]), "AACAPw==");
    }

    #[test]
    fn openai_inputs_take_the_four_shapes_and_refuse_the_rest() {
        assert!(matches!(openai_inputs(Some(json!("a"))), Ok(Inputs::Texts(t)) if t.len() == 1));
        assert!(
            matches!(openai_inputs(Some(json!(["a", "b"]))), Ok(Inputs::Texts(t)) if t.len() == 2)
        );
        assert!(
            matches!(openai_inputs(Some(json!([1, 2]))), Ok(Inputs::Tokens(t)) if t.len() == 1)
        );
        assert!(
            matches!(openai_inputs(Some(json!([[1], [2, 3]]))), Ok(Inputs::Tokens(t)) if t.len() == 2)
        );
        for bad in [
            json!(""),
            json!([]),
            json!(["a", 1]),
            json!({}),
            json!([[]]),
            json!(3),
        ] {
            assert!(openai_inputs(Some(bad)).is_err());
        }
        assert!(openai_inputs(None).is_err());
    }

    #[test]
    fn ollama_inputs_allow_nothing_and_refuse_non_strings() {
        assert!(ollama_inputs(None).expect("ok").is_empty());
        assert!(ollama_inputs(Some(json!(""))).expect("ok").is_empty());
        assert_eq!(ollama_inputs(Some(json!(["a", ""]))).expect("ok").len(), 2);
        assert!(ollama_inputs(Some(json!([1]))).is_err());
        assert!(ollama_inputs(Some(json!(5))).is_err());
        assert_eq!(dimensions(Some(&json!(0))).expect("ok"), None);
        assert!(dimensions(Some(&json!(-1))).is_err());
    }
}

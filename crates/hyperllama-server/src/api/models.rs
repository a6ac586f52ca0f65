//! Ollama's model endpoints: `/api/tags` (the store's models), `/api/ps` (the resident ones),
//! `/api/show`, `/api/copy`, `/api/delete`. Field names and shapes follow Ollama's
//! `api/types.go`.
//!
//! # Invariants
//! - Errors are Ollama's `{"error": "..."}`.

use std::time::SystemTime;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use hyperllama_models::create::parameter_size_label;
use hyperllama_models::gguf;
use hyperllama_models::manifest::ModelConfig;
use hyperllama_models::remove::remove_model;
use hyperllama_models::store::StoreError;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::rfc3339;
use crate::error::{ApiError, OllamaJson};
use crate::native::{self, parse_model_name};
use crate::AppState;

/// Ollama's `details` object; `format` is `gguf`, or `safetensors`/`huggingface` for weights
/// outside the store.
fn details(format: &str, family: &str, parameter_size: &str, quantization: &str) -> Value {
    let families: Vec<&str> = if family.is_empty() {
        Vec::new()
    } else {
        vec![family]
    };
    json!({
        "parent_model": "",
        "format": format,
        "family": family,
        "families": families,
        "parameter_size": parameter_size,
        "quantization_level": quantization,
    })
}

fn config_details(config: Option<&ModelConfig>) -> Value {
    let c = config.cloned().unwrap_or_default();
    let format = if c.model_format.is_empty() {
        "gguf"
    } else {
        &c.model_format
    };
    let mut d = details(format, &c.model_family, &c.model_type, &c.file_type);
    if let Some(families) = c.model_families {
        d["families"] = json!(families);
    }
    d
}

/// `GET /api/tags`.
pub async fn tags(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let registry = state.registry();
    registry
        .sync(state.store())
        .await
        .map_err(|e| ApiError::internal("cannot read the model index", &e))?;
    let mut records = registry
        .list()
        .await
        .map_err(|e| ApiError::internal("cannot read the model index", &e))?;
    records.sort_by_key(|r| std::cmp::Reverse(r.modified_at));
    let models: Vec<Value> = records
        .iter()
        .map(|r| {
            let name = r.name.display_shortest();
            let mut d = details(
                &r.format,
                r.architecture.as_deref().unwrap_or_default(),
                &r.parameter_count
                    .map(parameter_size_label)
                    .unwrap_or_default(),
                r.quantization.as_deref().unwrap_or_default(),
            );
            if let Some(n) = r.context_length {
                d["context_length"] = json!(n);
            }
            if let Some(n) = r.embedding_length {
                d["embedding_length"] = json!(n);
            }
            json!({
                "name": name,
                "model": name,
                "modified_at": rfc3339(r.modified_at),
                "size": r.size,
                "digest": r.digest.hex(),
                "details": d,
                "capabilities": r.capabilities.names(),
            })
        })
        .collect();
    Ok(Json(json!({ "models": models })))
}

/// `GET /api/ps`.
pub async fn ps(State(state): State<AppState>) -> Json<Value> {
    let now = SystemTime::now();
    let models: Vec<Value> = state
        .residency()
        .snapshot()
        .into_iter()
        .map(|m| {
            let name = m.resolved.name.display_shortest();
            // "Forever" is shown as a far-off time, as Ollama does.
            let expires = match m.expires_in {
                Some(d) => now + d,
                None => now + std::time::Duration::from_secs(100 * 365 * 24 * 3600),
            };
            json!({
                "name": name,
                "model": name,
                "size": m.size,
                "digest": m.resolved.digest.hex(),
                "details": config_details(m.resolved.config.as_ref()),
                "expires_at": rfc3339(expires),
                "size_vram": m.size_vram,
                "context_length": m.n_ctx,
                "engine": m.choice.engine,
                "engine_reason": m.choice.reason,
            })
        })
        .collect();
    Json(json!({ "models": models }))
}

/// A body naming one model: `model`, or the older `name`.
#[derive(Debug, Deserialize)]
pub struct ModelRef {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    verbose: bool,
}

impl ModelRef {
    fn name(&self) -> Result<&str, ApiError> {
        self.model
            .as_deref()
            .or(self.name.as_deref())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_request("model is required"))
    }
}

/// A GGUF metadata value as JSON; arrays only with `verbose` (token tables are large).
fn gguf_json(v: &gguf::Value, verbose: bool) -> Value {
    use gguf::Value as G;
    match v {
        G::U8(x) => json!(x),
        G::I8(x) => json!(x),
        G::U16(x) => json!(x),
        G::I16(x) => json!(x),
        G::U32(x) => json!(x),
        G::I32(x) => json!(x),
        G::U64(x) => json!(x),
        G::I64(x) => json!(x),
        G::F32(x) => json!(x),
        G::F64(x) => json!(x),
        G::Bool(x) => json!(x),
        G::String(s) => json!(s),
        G::Array(_) if !verbose => Value::Null,
        G::Array(_) => json!(v.summary(256)),
    }
}

/// `POST /api/show`.
pub async fn show(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<ModelRef>,
) -> Result<Json<Value>, ApiError> {
    let model = body.name()?;
    let name = parse_model_name(model)?;
    let resolved = state
        .residency()
        .resolve(&name)
        .await
        .map_err(native::as_written(model))?;
    let (engine, engine_reason) = match state.residency().engine_choice(&resolved) {
        Ok(c) => (c.engine, c.reason),
        Err(e) => ("none".to_owned(), e.message),
    };
    let file = match &resolved.reference {
        Some(_) => None,
        None => {
            let path = resolved.model_path.clone();
            Some(
                tokio::task::spawn_blocking(move || gguf::read_file(&path))
                    .await
                    .map_err(|e| ApiError::internal("reading the model failed", &e))?
                    .map_err(|e| ApiError::internal("cannot read the model's GGUF metadata", &e))?,
            )
        }
    };
    let record = state
        .registry()
        .get(&resolved.name)
        .await
        .map_err(|e| ApiError::internal("cannot read the model index", &e))?;
    let capabilities = record
        .map(|r| r.capabilities.names())
        .unwrap_or_else(|| vec!["completion"]);
    let parameters: Vec<String> = resolved
        .parameters
        .iter()
        .flat_map(|(k, v)| {
            let values: Vec<&Value> = match v {
                Value::Array(list) => list.iter().collect(),
                v => vec![v],
            };
            values
                .into_iter()
                .map(|v| format!("{k:<30} {v}"))
                .collect::<Vec<_>>()
        })
        .collect();
    let template = resolved
        .template
        .clone()
        .or_else(|| {
            file.as_ref()
                .and_then(|f| f.chat_template().map(str::to_owned))
        })
        .unwrap_or_default();
    let (model_info, mut d) = match (&file, &resolved.reference) {
        (Some(file), _) => {
            let mut model_info: Map<String, Value> = file
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), gguf_json(v, body.verbose)))
                .collect();
            model_info.insert(
                "general.parameter_count".into(),
                json!(file.parameter_count()),
            );
            let d = details(
                "gguf",
                file.architecture().unwrap_or_default(),
                &parameter_size_label(file.parameter_count()),
                file.quantization_label().unwrap_or_default(),
            );
            (model_info, d)
        }
        (None, reference) => {
            // Weights outside the store: what the folder's config said when the model was made.
            let c = resolved.config.clone().unwrap_or_default();
            let mut model_info = Map::new();
            if !c.model_family.is_empty() {
                model_info.insert("general.architecture".into(), json!(c.model_family));
                if c.context_length > 0 {
                    model_info.insert(
                        format!("{}.context_length", c.model_family),
                        json!(c.context_length),
                    );
                }
                if c.embedding_length > 0 {
                    model_info.insert(
                        format!("{}.embedding_length", c.model_family),
                        json!(c.embedding_length),
                    );
                }
            }
            if let Some(n) = reference.as_ref().and_then(|r| r.parameter_count()) {
                model_info.insert("general.parameter_count".into(), json!(n));
            }
            if let Some(r) = reference {
                model_info.insert("hyperllama.reference".into(), json!(r.location()));
            }
            let d = details(
                resolved.format(),
                &c.model_family,
                &c.model_type,
                &c.file_type,
            );
            (model_info, d)
        }
    };
    if let Some(c) = &resolved.config {
        if let Some(f) = &c.model_families {
            d["families"] = json!(f);
        }
    }
    Ok(Json(json!({
        "license": resolved.licenses.join("\n"),
        "modelfile": resolved.to_modelfile("hyperllama"),
        "parameters": parameters.join("\n"),
        "template": template,
        "system": resolved.system.clone().unwrap_or_default(),
        "details": d,
        "model_info": model_info,
        "capabilities": capabilities,
        "modified_at": rfc3339(resolved.modified),
        "engine": engine,
        "engine_reason": engine_reason,
    })))
}

/// The body of `POST /api/copy`.
#[derive(Debug, Deserialize)]
pub struct CopyBody {
    source: String,
    destination: String,
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::ModelNotFound { name } => {
            ApiError::not_found(format!("model '{}' not found", name.display_shortest()))
        }
        e => ApiError::internal("the model store failed", &e),
    }
}

/// `POST /api/copy`.
pub async fn copy(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<CopyBody>,
) -> Result<StatusCode, ApiError> {
    let src = parse_model_name(&body.source)?;
    let dst = hyperllama_models::name::ModelName::parse(&body.destination).map_err(|_| {
        ApiError::bad_request(format!("invalid destination name '{}'", body.destination))
    })?;
    let store = state.store().clone();
    let written = tokio::task::spawn_blocking(move || store.copy(&src, &dst))
        .await
        .map_err(|e| ApiError::internal("the copy failed", &e))?
        .map_err(store_error)?;
    state
        .registry()
        .index(state.store(), &written)
        .await
        .map_err(|e| ApiError::internal("cannot index the copy", &e))?;
    Ok(StatusCode::OK)
}

/// `DELETE /api/delete`.
pub async fn delete(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<ModelRef>,
) -> Result<StatusCode, ApiError> {
    let model = body.name()?;
    let name = parse_model_name(model)?;
    state.residency().unload(&name);
    let store = state.store().clone();
    let report = tokio::task::spawn_blocking(move || remove_model(&store, &name))
        .await
        .map_err(|e| ApiError::internal("the delete failed", &e))?
        .map_err(store_error)
        .map_err(native::as_written(model))?;
    state
        .registry()
        .remove(&report.name)
        .await
        .map_err(|e| ApiError::internal("cannot update the model index", &e))?;
    Ok(StatusCode::OK)
}

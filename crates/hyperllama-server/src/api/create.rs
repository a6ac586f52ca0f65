//! Ollama's `POST /api/create`: a model from uploaded blobs (`files`, `adapters`) or from a
//! model in the store (`from`), with `template`, `system`, `license`, `parameters` and
//! `messages`; progress as NDJSON `{"status"}` lines (`stream` defaults to true).
//!
//! The request becomes a Modelfile whose `FROM`/`ADAPTER` lines name blob paths in the store,
//! and `hyperllama_models::create::create_model` does the rest, as for `hyperllama create`.
//!
//! HyperLlama's extension for weights that external engines serve: `from` may also be
//! `hf:ORG/NAME` (a Hugging Face id) or the absolute path of a safetensors folder
//! (`config.json` and `*.safetensors`) *on the server's machine*; the model then holds a
//! reference to it (see `hyperllama_models::reference`), nothing is copied.
//!
//! # Invariants
//! - No file outside the store is read except a safetensors folder named by an absolute
//!   `from` path, of which only `config.json` and the safetensors headers are read; GGUF
//!   files must be uploaded (`files` name blobs by digest), relative paths are refused.
//! - The index learns about the model before `success` is reported.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyperllama_models::create::{create_model, CreateError, CreateEvent};
use hyperllama_models::digest::BlobDigest;
use hyperllama_models::modelfile::{param_kind, Command, MessageRole, Modelfile};
use hyperllama_models::name::ModelName;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::ndjson;
use crate::error::{ApiError, OllamaJson};
use crate::AppState;

/// One example message.
#[derive(Debug, Deserialize)]
pub struct CreateMessage {
    role: String,
    #[serde(default)]
    content: String,
}

/// The body of `POST /api/create`.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    adapters: BTreeMap<String, String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    license: Option<Value>,
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
    #[serde(default)]
    messages: Vec<CreateMessage>,
    #[serde(default)]
    quantize: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

/// The blob path of `digest`, which must be in the store.
fn blob_path(state: &AppState, digest: &str) -> Result<String, ApiError> {
    let digest = BlobDigest::parse_any(digest)
        .map_err(|_| ApiError::bad_request(format!("invalid digest '{digest}'")))?;
    if !state.store().has_blob(&digest) {
        return Err(ApiError::bad_request(format!(
            "blob {digest} not found: upload it first with POST /api/blobs/{digest}"
        )));
    }
    Ok(state.store().blob_path(&digest).display().to_string())
}

/// The parameters as Modelfile lines, checked as `PARAMETER` lines are.
fn parameter_commands(params: &Map<String, Value>) -> Result<Vec<Command>, ApiError> {
    let mut commands = Vec::new();
    for (name, value) in params {
        let kind = param_kind(name)
            .ok_or_else(|| ApiError::bad_request(format!("unknown parameter '{name}'")))?;
        let values = match value {
            Value::Array(list) => list.clone(),
            v => vec![v.clone()],
        };
        for v in values {
            let text = match v {
                Value::String(s) => s,
                v => v.to_string(),
            };
            if kind.parse(&text).is_none() {
                return Err(ApiError::bad_request(format!(
                    "invalid value '{text}' for parameter '{name}'"
                )));
            }
            commands.push(Command::Parameter {
                name: name.clone(),
                value: text,
            });
        }
    }
    Ok(commands)
}

/// The Modelfile the request describes.
fn modelfile(state: &AppState, body: &CreateBody) -> Result<Modelfile, ApiError> {
    if body.quantize.as_deref().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::bad_request("quantize is not supported yet"));
    }
    let from = match (body.files.iter().next(), &body.from) {
        (Some(_), _) if body.files.len() > 1 => {
            return Err(ApiError::bad_request(
                "only one GGUF file per model is supported",
            ))
        }
        (Some((_, digest)), _) => blob_path(state, digest)?,
        (None, Some(from)) => {
            let lower = from.to_ascii_lowercase();
            let folder = std::path::Path::new(from);
            if folder.is_absolute() && folder.is_dir() {
                // A safetensors folder on this machine: create_model checks it.
                from.clone()
            } else if lower.ends_with(".gguf")
                || from.starts_with(['.', '/', '~'])
                || from.contains('\\')
            {
                return Err(ApiError::bad_request(
                    "from must be a model name, hf:ORG/NAME or the absolute path of a safetensors folder on the server's machine; upload GGUF files with POST /api/blobs and name them in files",
                ));
            } else {
                from.clone()
            }
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "neither 'from' nor 'files' was given",
            ))
        }
    };
    let mut commands = vec![Command::From(from)];
    for digest in body.adapters.values() {
        commands.push(Command::Adapter(blob_path(state, digest)?));
    }
    if let Some(t) = &body.template {
        commands.push(Command::Template(t.clone()));
    }
    if let Some(s) = &body.system {
        commands.push(Command::System(s.clone()));
    }
    match &body.license {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => commands.push(Command::License(s.clone())),
        Some(Value::Array(list)) => {
            for l in list {
                let text = l
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("license must be text"))?;
                commands.push(Command::License(text.to_owned()));
            }
        }
        Some(_) => return Err(ApiError::bad_request("license must be text")),
    }
    if let Some(params) = &body.parameters {
        commands.extend(parameter_commands(params)?);
    }
    for m in &body.messages {
        let role = match m.role.as_str() {
            "system" => MessageRole::System,
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            other => {
                return Err(ApiError::bad_request(format!(
                    "message role must be system, user or assistant, not '{other}'"
                )))
            }
        };
        commands.push(Command::Message {
            role,
            content: m.content.clone(),
        });
    }
    Ok(Modelfile {
        commands,
        dropped_parameters: Vec::new(),
    })
}

fn create_error(e: CreateError) -> ApiError {
    match e {
        e @ CreateError::BaseModelNotFound { .. } => ApiError::not_found(e.to_string()),
        e @ (CreateError::InvalidGguf { .. }
        | CreateError::BadReference { .. }
        | CreateError::NoModelLayer { .. }
        | CreateError::Directory { .. }
        | CreateError::Reference(_)
        | CreateError::DraftNotGguf { .. }
        | CreateError::FileNotFound { .. }) => {
            let mut message = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                message.push_str(&format!(": {source}"));
            }
            ApiError::bad_request(message)
        }
        e => ApiError::internal("cannot create the model", &e),
    }
}

/// Runs the create; progress goes to `progress`, `success` last.
async fn run(
    state: AppState,
    name: ModelName,
    modelfile: Modelfile,
    progress: mpsc::UnboundedSender<Value>,
) -> Result<(), ApiError> {
    let store = state.store().clone();
    let events = progress.clone();
    let created_name = name.clone();
    tokio::task::spawn_blocking(move || {
        // No relative path is accepted, so the base folder is never read.
        let base = store.root().join("nonexistent-base");
        create_model(&store, &created_name, &modelfile, &base, &mut |event| {
            if event != CreateEvent::Success {
                let _ = events.send(json!({ "status": event.status() }));
            }
        })
    })
    .await
    .map_err(|e| ApiError::internal("the create failed", &e))?
    .map_err(create_error)?;
    state
        .registry()
        .index(state.store(), &name)
        .await
        .map_err(|e| ApiError::internal("cannot index the new model", &e))?;
    let _ = progress.send(json!({ "status": "success" }));
    Ok(())
}

/// `POST /api/create`.
pub async fn create(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<CreateBody>,
) -> Response {
    let prepared = (|| {
        let model = body
            .model
            .as_deref()
            .or(body.name.as_deref())
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("model is required"))?;
        let name = ModelName::parse(model)
            .map_err(|e| ApiError::bad_request(format!("invalid model name '{model}': {e}")))?;
        Ok::<_, ApiError>((name, modelfile(&state, &body)?))
    })();
    let (name, modelfile) = match prepared {
        Ok(p) => p,
        Err(e) => return e.into_ollama(),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if body.stream.unwrap_or(true) {
        let task = tokio::spawn(run(state, name, modelfile, tx.clone()));
        let lines = async_lines(rx, task, tx);
        return ndjson(lines);
    }
    match run(state, name, modelfile, tx).await {
        Ok(()) => {
            rx.close();
            Json(json!({ "status": "success" })).into_response()
        }
        Err(e) => e.into_ollama(),
    }
}

/// Progress lines until the create ends, then its error if it failed.
fn async_lines(
    rx: mpsc::UnboundedReceiver<Value>,
    task: tokio::task::JoinHandle<Result<(), ApiError>>,
    tx: mpsc::UnboundedSender<Value>,
) -> impl futures_util::Stream<Item = Value> + Send {
    // The task's own sender closes the channel when the task ends; ours goes when the
    // task's result is known, so an error becomes the last line.
    tokio::spawn(async move {
        let result = task.await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ApiError::internal("the create failed", &e)),
        };
        if let Some(e) = error {
            let _ = tx.send(e.ollama_body());
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

//! Ollama's `POST /api/pull`: downloads a model from its registry into the store with
//! `hyperllama_models::pull::Puller` (resumable, parallel range requests, digest checks) and
//! reports Ollama's progress lines (`stream` defaults to true): `pulling manifest`,
//! `pulling <digest>` with `digest`/`total`/`completed`, `verifying sha256 digest`,
//! `writing manifest`, `success`.
//!
//! # Invariants
//! - One [`Puller`](hyperllama_models::pull::Puller) serves every request, so concurrent
//!   pulls of a blob download it once.
//! - The index learns about the model before `success` is reported.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use hyperllama_models::name::ModelName;
use hyperllama_models::pull::{PullError, PullEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::ndjson;
use crate::error::{ApiError, OllamaJson};
use crate::AppState;

/// The body of `POST /api/pull`.
#[derive(Debug, Deserialize)]
pub struct PullBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
}

fn event_json(event: &PullEvent) -> Value {
    match event {
        PullEvent::Pulling {
            digest,
            total,
            completed,
        } => json!({
            "status": event.status(),
            "digest": digest.to_string(),
            "total": total,
            "completed": completed,
        }),
        e => json!({ "status": e.status() }),
    }
}

fn pull_error(e: PullError) -> ApiError {
    match e {
        e @ PullError::ManifestNotFound { .. } => ApiError::not_found(e.to_string()),
        e => ApiError::internal("pull failed", &e),
    }
}

async fn run(
    state: AppState,
    name: ModelName,
    progress: mpsc::UnboundedSender<Value>,
) -> Result<(), ApiError> {
    let events = progress.clone();
    let stored = state
        .puller()
        .pull(&name, &mut |event| {
            if event != PullEvent::Success {
                let _ = events.send(event_json(&event));
            }
        })
        .await
        .map_err(pull_error)?;
    state
        .registry()
        .index(state.store(), &stored.name)
        .await
        .map_err(|e| ApiError::internal("cannot index the pulled model", &e))?;
    let _ = progress.send(json!({ "status": "success" }));
    Ok(())
}

/// `POST /api/pull`.
pub async fn pull(
    State(state): State<AppState>,
    OllamaJson(body): OllamaJson<PullBody>,
) -> Response {
    let model = match body
        .model
        .as_deref()
        .or(body.name.as_deref())
        .filter(|m| !m.is_empty())
    {
        Some(m) => m.to_owned(),
        None => return ApiError::bad_request("model is required").into_ollama(),
    };
    let name = match ModelName::parse(&model) {
        Ok(n) => n,
        Err(e) => {
            return ApiError::bad_request(format!("invalid model name '{model}': {e}"))
                .into_ollama()
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    if !body.stream.unwrap_or(true) {
        return match run(state, name, tx).await {
            Ok(()) => {
                rx.close();
                Json(json!({ "status": "success" })).into_response()
            }
            Err(e) => e.into_ollama(),
        };
    }
    let task = tokio::spawn(run(state, name, tx.clone()));
    tokio::spawn(async move {
        let error = match task.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(ApiError::internal("pull failed", &e)),
        };
        if let Some(e) = error {
            let _ = tx.send(e.ollama_body());
        }
    });
    ndjson(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| (v, rx))
    }))
}

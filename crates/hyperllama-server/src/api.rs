//! The two dialects' handlers, and the streaming bodies they share.
//!
//! # Invariants
//! - Handlers translate only: requests into [`crate::native`] types, events back out.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::Value;

pub mod blobs;
pub mod create;
pub mod embed;
pub mod models;
pub mod ollama;
pub mod openai;
pub mod pull;

/// A streamed response of newline-delimited JSON values.
pub(crate) fn ndjson(values: impl Stream<Item = Value> + Send + 'static) -> Response {
    let body = values.map(|v| {
        let mut line = v.to_string();
        line.push('\n');
        Ok::<_, Infallible>(Bytes::from(line))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// A server-sent-events response: each item becomes `data: <item>\n\n`.
pub(crate) fn sse(items: impl Stream<Item = String> + Send + 'static) -> Response {
    let body = items.map(|s| Ok::<_, Infallible>(Bytes::from(format!("data: {s}\n\n"))));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Now, as RFC 3339 with nanoseconds (Ollama's `created_at`).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A time as RFC 3339.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Nanoseconds of a duration, saturating.
pub(crate) fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Records in the index, in the background, that `name` was used now.
pub(crate) fn touch(state: &crate::AppState, name: &hyperllama_models::name::ModelName) {
    let registry = state.registry().clone();
    let name = name.clone();
    tokio::spawn(async move {
        if let Err(e) = registry
            .touch_last_used(&name, std::time::SystemTime::now())
            .await
        {
            tracing::warn!(model = %name, error = %e, "cannot record the model's last use");
        }
    });
}

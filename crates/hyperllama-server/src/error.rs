//! The one error type of the HTTP edge, and the JSON body extractors that report their
//! rejections with it.
//!
//! An [`ApiError`] is a stable [`ErrorKind`] (which fixes the HTTP status) and a message. It
//! is rendered per dialect: Ollama's `{"error": "..."}` ([`ApiError::ollama_body`]) or
//! OpenAI's error object ([`ApiError::openai_body`]). The same value ends a stream that fails
//! mid-way. [`OllamaJson`] and [`OpenAiJson`] read a body as JSON and turn every rejection
//! (malformed JSON, wrong types, a body over the size limit) into an [`ApiError`] in their
//! dialect, instead of axum's plain-text rejections.
//!
//! # Invariants
//! - The status of an error depends on its kind alone.
//! - Display of the error types never repeats a `#[source]`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// What kind of failure, with a stable name (`kind.as_str()`) and an HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or asks for something impossible (400).
    BadRequest,
    /// The request carries no valid API key (401).
    Unauthorized,
    /// The request is refused: a disallowed `Origin` or `Host` (403).
    Forbidden,
    /// The model (or another named thing) does not exist (404).
    NotFound,
    /// The body is larger than the limit (413).
    PayloadTooLarge,
    /// The queue is full (503).
    Overloaded,
    /// Something failed on our side (500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable name, used as OpenAI's error `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "invalid_request_error",
            ErrorKind::Unauthorized => "authentication_error",
            ErrorKind::Forbidden => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::Overloaded => "overloaded_error",
            ErrorKind::Internal => "api_error",
        }
    }
}

/// An error answered to a client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message shown to the client.
    pub message: String,
}

impl ApiError {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// A 500; the message should say what failed, the cause chain is appended.
    pub fn internal(what: &str, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = what.to_owned();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = cause {
            message.push_str(": ");
            message.push_str(&e.to_string());
            cause = e.source();
        }
        Self::new(ErrorKind::Internal, message)
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// Ollama's error body: `{"error": "..."}`.
    pub fn ollama_body(&self) -> Value {
        json!({ "error": self.message })
    }

    /// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn openai_body(&self) -> Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind.as_str(),
                "param": null,
                "code": null,
            }
        })
    }

    /// The error as an Ollama response.
    pub fn into_ollama(self) -> Response {
        (self.status(), axum::Json(self.ollama_body())).into_response()
    }

    /// The error as an OpenAI response.
    pub fn into_openai(self) -> Response {
        (self.status(), axum::Json(self.openai_body())).into_response()
    }
}

/// Handlers of the Ollama API return errors in Ollama's shape.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_ollama()
    }
}

/// An [`ApiError`] rendered as OpenAI's error object.
#[derive(Debug)]
pub struct OpenAiError(pub ApiError);

impl From<ApiError> for OpenAiError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        self.0.into_openai()
    }
}

/// Reads a request body as JSON of type `T`.
async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<T, ApiError> {
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorKind::PayloadTooLarge, "request body too large")
        } else {
            ApiError::bad_request(format!("cannot read the request body: {rejection}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("missing request body"));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        let message = match e.classify() {
            serde_json::error::Category::Data => format!("invalid request: {e}"),
            _ => format!("invalid JSON in the request body: {e}"),
        };
        ApiError::bad_request(message)
    })
}

/// A JSON body for the Ollama API; rejections are Ollama errors.
#[derive(Debug)]
pub struct OllamaJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OllamaJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state).await.map(Self)
    }
}

/// A JSON body for the OpenAI API; rejections are OpenAI errors.
#[derive(Debug)]
pub struct OpenAiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OpenAiJson<T> {
    type Rejection = OpenAiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state).await.map(Self).map_err(OpenAiError)
    }
}

/// The server's start-up failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model store could not be opened.
    #[error("cannot open the model store")]
    Store(#[source] hyperllama_models::store::StoreError),
    /// The model index could not be opened or synced.
    #[error("cannot open the model index")]
    Registry(#[source] hyperllama_models::registry::RegistryError),
    /// The registry client could not be built.
    #[error("cannot set up the registry client")]
    Pull(#[source] hyperllama_models::pull::PullError),
    /// Serving failed.
    #[error("the HTTP server failed")]
    Serve(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_render_the_same_error() {
        let e = ApiError::not_found("model 'x' not found");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.ollama_body(), json!({"error": "model 'x' not found"}));
        assert_eq!(e.openai_body()["error"]["message"], "model 'x' not found");
        assert_eq!(e.openai_body()["error"]["type"], "not_found_error");
    }
}

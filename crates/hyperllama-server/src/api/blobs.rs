//! Ollama's blob endpoints: `HEAD /api/blobs/{digest}` (200 when the store has the blob, else
//! 404) and `POST /api/blobs/{digest}` (streams the body into the store: 201 when written,
//! 200 when the blob was already there, 400 when the bytes do not hash to the digest). They
//! come before `/api/create`, which names uploaded files by digest.
//!
//! # Invariants
//! - The body is streamed to the store's blob writer on a blocking thread, never held whole
//!   in memory, and a blob becomes visible only after its digest was verified.

use std::io::{self, Read};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures_util::StreamExt;
use hyperllama_models::digest::BlobDigest;
use hyperllama_models::store::StoreError;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::AppState;

fn parse_digest(s: &str) -> Result<BlobDigest, ApiError> {
    BlobDigest::parse_any(s).map_err(|_| ApiError::bad_request(format!("invalid digest '{s}'")))
}

/// `HEAD /api/blobs/{digest}`.
pub async fn head(
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<StatusCode, ApiError> {
    let digest = parse_digest(&digest)?;
    if state.store().has_blob(&digest) {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::not_found(format!("blob {digest} not found")))
    }
}

/// Reads the chunks an async task sends (on a blocking thread).
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// `POST /api/blobs/{digest}`.
pub async fn post(
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let digest = parse_digest(&digest)?;
    if state.store().has_blob(&digest) {
        // Read the upload to its end anyway: answering before the body is consumed leaves
        // its bytes on a keep-alive connection, and the client's next request fails.
        drain(body).await;
        return Ok(StatusCode::OK);
    }
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let store = state.store().clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            chunk: Bytes::new(),
        };
        store.write_blob_from_reader(&mut reader, Some(&digest))
    });
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(io::Error::other);
        let failed = chunk.is_err();
        if failed {
            let _ = tx.send(chunk).await;
            break;
        }
        if tx.send(chunk).await.is_err() {
            // The writer stopped early (it failed): consume the rest, as above.
            while let Some(Ok(_)) = chunks.next().await {}
            break;
        }
    }
    drop(tx);
    match writer.await {
        Ok(Ok(_)) => Ok(StatusCode::CREATED),
        Ok(Err(StoreError::DigestMismatch { expected, actual })) => Err(ApiError::bad_request(
            format!("digest mismatch: expected {expected}, got {actual}"),
        )),
        Ok(Err(e)) => Err(ApiError::internal("cannot store the blob", &e)),
        Err(e) => Err(ApiError::internal("the blob upload failed", &e)),
    }
}

/// Reads and discards a request body to its end (or its first error).
async fn drain(body: Body) {
    let mut chunks = body.into_data_stream();
    while let Some(Ok(_)) = chunks.next().await {}
}

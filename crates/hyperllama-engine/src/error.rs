//! The crate's error type.

use std::path::PathBuf;

use crate::backend::BackendError;

/// Everything that can go wrong in the engine crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model file does not exist or cannot be read.
    #[error("cannot read model file {}", path.display())]
    ModelFile {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a usable GGUF file.
    #[error("{} is not a usable GGUF file", path.display())]
    InvalidGguf {
        /// The path given.
        path: PathBuf,
        /// What the GGUF reader found.
        source: hyperllama_models::gguf::GgufError,
    },
    /// llama.cpp refused the model (unknown architecture, bad tensors, out of memory).
    #[error("llama.cpp could not load {} (architecture '{architecture}'): {reason}", path.display())]
    ModelLoad {
        /// The path given.
        path: PathBuf,
        /// The architecture the file declares.
        architecture: String,
        /// What is known about the failure.
        reason: String,
    },
    /// llama.cpp could not create a context (usually out of memory for the KV cache).
    #[error("llama.cpp could not create a context with {n_ctx} KV cells: {reason}")]
    ContextCreate {
        /// KV cells asked for.
        n_ctx: u32,
        /// What is known about the failure.
        reason: String,
    },
    /// A draft model cannot draft for the model: their vocabularies differ.
    #[error("the draft model {} cannot draft for {}: {reason}; a draft model needs the same vocabulary (token ids, token texts, BOS and EOS)", draft.display(), target.display())]
    DraftMismatch {
        /// The model's file.
        target: PathBuf,
        /// The draft model's file.
        draft: PathBuf,
        /// The first difference found.
        reason: String,
    },
    /// The request cannot be served (prompt too long, empty prompt, bad parameters).
    #[error("{0}")]
    InvalidRequest(String),
    /// The request queue is full.
    #[error("the engine is overloaded: {queued} requests already queued")]
    Overloaded {
        /// The queue's capacity.
        queued: usize,
    },
    /// The engine thread has stopped (after a backend failure or shutdown).
    #[error("the engine has stopped")]
    Stopped,
    /// A step failed in the backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

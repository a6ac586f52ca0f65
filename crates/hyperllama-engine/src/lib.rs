//! The engine: a dedicated thread that owns the scheduler and a step backend, and runs
//! `schedule` → `execute` → `commit` for as long as there is work.
//!
//! The main backend is llama.cpp in-process ([`llama`]); every call into llama.cpp lives in
//! that one module. Callers talk to the engine through an [`Engine`] handle: a bounded request
//! channel in, one token stream out per request.
//!
//! # Invariants
//! - Only the engine thread touches the scheduler and the backend; handles hold channels and
//!   a shared read-only [`Model`] for tokenization.
//! - A request whose stream receiver is dropped is cancelled at the next step, and its KV is
//!   freed then.
#![deny(missing_docs)]

pub mod backend;
pub mod chat;
pub mod drafter;
pub mod embed;
pub mod engine;
mod error;
pub mod hardware;
pub mod llama;
pub mod serving;

pub use embed::{EmbedRequest, Embeddings};
pub use engine::{
    Alternative, Completion, Engine, EngineConfig, EngineStats, Event, GenerateRequest,
    TokenLogprob,
};
pub use error::Error;
pub use hyperllama_core::sched::FinishReason;
pub use llama::{LoadOptions, Model};

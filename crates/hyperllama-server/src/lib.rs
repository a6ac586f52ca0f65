//! The HTTP server: Ollama's API and OpenAI's API over one native request model.
//!
//! [`AppState::open`] opens the model store and its index; [`router`] builds the axum app
//! (for tests, `oneshot` or a listener); [`serve`] runs it on a listener until a shutdown
//! future completes. Handlers in [`api::ollama`] and [`api::openai`] only translate: their
//! requests become a [`native::NativeRequest`], [`native::generate`] runs it, and its events
//! are written back in the dialect's shape. Model-level scheduling (load, keep-alive, LRU
//! eviction) is [`residency::Residency`]; token-level scheduling is the engine's.
//!
//! # Invariants
//! - Handlers never touch engine internals or the scheduler.
//! - Every error a client sees is an [`error::ApiError`], rendered in the endpoint's dialect,
//!   also when it ends a stream.
//! - This crate never reads environment variables: [`config::ServerConfig`] carries
//!   everything.
#![deny(missing_docs)]

pub mod api;
pub mod config;
pub mod cors;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod native;
pub mod options;
pub mod residency;
mod server;
pub mod settings;
pub mod structured;
pub mod think;
pub mod tools;

pub use config::ServerConfig;
pub use error::{ApiError, Error, ErrorKind};
pub use server::{router, serve, AppState};

//! Model files and everything around them: the GGUF metadata reader and chat templates.
//!
//! This crate knows nothing about llama.cpp or about the engine. It reads files and renders
//! text; it never loads weights.
#![deny(missing_docs)]

pub mod gguf;
pub mod template;

//! Model files and everything around them: the GGUF metadata reader, chat templates, and the
//! Ollama-compatible model store.
//!
//! `name` parses and prints Ollama model names (`[host/][namespace/]model[:tag]`). `digest`
//! holds the `sha256:` content addresses of blobs. `manifest` reads and writes Ollama's
//! Docker-v2 manifests and model config byte for byte. `store` keeps blobs and manifests in
//! Ollama's folder layout, so an Ollama models folder can be used as it is. `modelfile` parses
//! and writes Ollama's Modelfile. `registry` is the SQLite index of the store's models (GGUF
//! metadata, capabilities, times), rebuilt from the manifests whenever needed. `pull`
//! downloads models from a registry (registry.ollama.ai, hf.co) into the store. `reference`
//! describes weights that stay outside the store (a safetensors folder, a Hugging Face id)
//! for external engines. `create`,
//! `remove` and `resolve` are the model-management operations that the CLI and the server
//! share: a Modelfile into the store, a model out of it, and a name to what running or
//! showing it needs.
//!
//! This crate knows nothing about llama.cpp or about the engine. It reads files and renders
//! text; it never loads weights.
#![deny(missing_docs)]

pub mod create;
pub mod digest;
pub mod gguf;
pub mod manifest;
pub mod modelfile;
pub mod name;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod remove;
pub mod resolve;
pub mod store;
pub mod template;

//! The HTTP server (Ollama and OpenAI APIs). Not written yet; the crate exists so that the
//! workspace has its final shape and dependency direction from the start.
#![deny(missing_docs)]

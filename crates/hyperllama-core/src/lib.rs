//! HyperLlama's pure logic: ids, requests and sequences, sampling, stop conditions and the
//! token-level scheduler.
//!
//! # Invariants
//! - This crate performs no IO: no files, no sockets, no threads, no clocks other than values
//!   handed in by the caller. Everything here is deterministic given its inputs.
//! - It depends on no other HyperLlama crate and on no async runtime; the engine drives it.
#![deny(missing_docs)]

pub mod constraint;
pub mod ids;
pub mod kv;
pub mod logprobs;
pub mod rng;
pub mod sampling;
pub mod sched;
pub mod spec;
pub mod stop;
pub mod utf8;

pub use ids::{RequestId, SeqId, SlotId, TokenId};

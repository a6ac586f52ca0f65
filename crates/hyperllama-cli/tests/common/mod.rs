//! The test-model helpers, shared with the engine's tests (one copy of the code).

include!("../../../hyperllama-engine/tests/common/mod.rs");

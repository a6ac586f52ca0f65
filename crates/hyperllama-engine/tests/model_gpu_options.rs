//! GPU placement options on whatever machine runs the tests: `num_gpu` wins, no GPU means the
//! default (every layer, a no-op for llama.cpp without a GPU backend), and the KV cell size
//! matches the model's shape. On the CUDA machine (scripts/gpu/) the same calls place the
//! layers and size the KV cache; there `gpu_memory()` is `Some`.

mod common;

use common::{model_path, SMOLLM2};
use hyperllama_engine::llama::{gpu_memory, LoadOptions};
use hyperllama_engine::Model;

#[test]
fn model_gpu_options_follow_num_gpu_and_the_device() {
    let path = model_path(SMOLLM2);
    assert_eq!(LoadOptions::auto(&path, Some(3)).n_gpu_layers, 3);
    assert_eq!(LoadOptions::auto(&path, Some(0)).n_gpu_layers, 0);
    let auto = LoadOptions::auto(&path, None);
    match gpu_memory() {
        // No GPU: every layer is asked for, which llama.cpp ignores on the CPU.
        None => assert_eq!(auto.n_gpu_layers, LoadOptions::default().n_gpu_layers),
        // A 100 MB model fits on any GPU with its reserve to spare.
        Some(m) => {
            assert!(m.free <= m.total);
            assert_eq!(auto.n_gpu_layers, u32::MAX);
        }
    }
    let model = Model::load(&path, &auto).expect("loads");
    // SmolLM2-135M: 30 layers, 3 KV heads of 64 dims, f16 keys and values.
    assert_eq!(model.kv_bytes_per_cell(), 2 * 2 * 30 * 3 * 64);
}

//! GPU placement options on whatever machine runs the tests: `num_gpu` wins, no GPU means the
//! default (every layer, a no-op for llama.cpp without a GPU backend), and the KV cell size
//! matches the model's shape. On the CUDA machine (scripts/gpu/) the same calls place the
//! layers and size the KV cache; there `gpu_memory()` is `Some`. Also the GPU step backend's
//! filler tokens (`ContextOptions::fill_gaps`) and warm-up (`ContextOptions::warm_up`), which
//! run the same on a CPU.

mod common;

use common::{model_path, test_threads, GEMMA3, SMOLLM2};
use hyperllama_core::sampling::argmax;
use hyperllama_core::sched::{PlanItem, StepPlan};
use hyperllama_core::{SeqId, SlotId, TokenId};
use hyperllama_engine::backend::StepBackend;
use hyperllama_engine::llama::{gpu_memory, ContextOptions, LlamaStepBackend, LoadOptions};
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

/// Slot `i`'s sequence computing `tokens` from `pos`.
fn item(i: usize, pos: usize, tokens: &[TokenId], sample: bool) -> PlanItem {
    PlanItem {
        seq: SeqId(i as u64),
        slot: SlotId(i as u32),
        pos,
        tokens: tokens.to_vec(),
        sample,
        n_draft: 0,
    }
}

/// A step of `items` and no KV operations.
fn plan(items: Vec<PlanItem>) -> StepPlan {
    StepPlan {
        trim: Vec::new(),
        clear: Vec::new(),
        copy: Vec::new(),
        items,
    }
}

/// With per-slot streams, the slots a step leaves out below its highest slot (rounded up to a
/// bucket) get filler tokens so that llama.cpp computes the step in one micro-batch of an
/// unchanged shape: the other sequences' answers do not change, and the filled slots'
/// sequences later go on from their KV as if nothing had been written there. A context that
/// computed its warm-up batches first answers the same too: the warm-up leaves no KV behind.
#[test]
fn model_gap_fillers_and_the_warm_up_change_no_answer_and_leave_no_trace() {
    let model = Model::load(&model_path(SMOLLM2), &LoadOptions::default()).expect("loads");
    // Slot 3's prompt is longer than the 256 cells llama.cpp rounds attention up to.
    let long = format!("{} Yes", "Yes, we can. ".repeat(80));
    let prompts: Vec<Vec<TokenId>> = ["The capital of France is", "Hi", "Two plus two is", &long]
        .iter()
        .map(|p| model.tokenize(p, true, true))
        .collect();
    assert!(prompts[3].len() > 256 && prompts[3].len() < 500);
    let run = |fill: bool, warm_up: bool| {
        let opts = ContextOptions {
            n_kv_cells: 4 * 512,
            n_slots: 4,
            n_batch: 1024,
            n_ubatch: 1024,
            n_threads: test_threads(),
            swa_full: false,
            kv_streams: true,
            fill_gaps: fill,
            pad_chunks: 0,
            warm_up,
        };
        let mut b = LlamaStepBackend::new(&model, &opts).expect("backend");
        let all = (0..4).map(|i| item(i, 0, &prompts[i], true)).collect();
        b.execute(&plan(all)).expect("prompts");
        let mut next: Vec<TokenId> = (0..4).map(|r| argmax(b.logits(r))).collect();
        let mut pos: Vec<usize> = prompts.iter().map(Vec::len).collect();
        let mut out = vec![Vec::new(); 4];
        // Slots 0 and 2 decode while 1 (a gap) and 3 (past the last item, within the span
        // rounded up to 4) wait, holding their prompts; then 1 and 3 go on together while 0
        // and 2 wait.
        for (steps, slots) in [(6, [0, 2]), (3, [1, 3])] {
            for _ in 0..steps {
                let items = slots.map(|i| item(i, pos[i], &[next[i]], true)).to_vec();
                b.execute(&plan(items)).expect("decode");
                for (row, i) in slots.into_iter().enumerate() {
                    out[i].push(next[i]);
                    pos[i] += 1;
                    next[i] = argmax(b.logits(row));
                }
            }
        }
        (out, b.n_fillers(), b.n_warm_ups())
    };
    let (plain, n_plain, n_cold) = run(false, false);
    let (filled, n_filled, _) = run(true, false);
    let (warmed, _, n_warm_ups) = run(true, true);
    assert_eq!((n_plain, n_cold), (0, 0));
    // Totals of 1 to 8 tokens, 16 to 128 by 8, and prompt chunks of 256 for one and four
    // sequences: all fit 4 slots of 512 cells and a step of 1024 tokens.
    assert_eq!(n_warm_ups, 8 + 15 + 2);
    assert_eq!(warmed, plain);
    // Slot 1 in each step of slots 0 and 2, but not slot 3 (its filler would widen their
    // attention past 256 cells); slots 0 and 2 in each step of slots 1 and 3.
    assert_eq!(n_filled, 6 + 6);
    assert_eq!(plain, filled);
}

/// Prompt chunks of several lengths padded to one (`ContextOptions::pad_chunks`) compute what
/// they compute unpadded: the same greedy answers, and no padding token is left behind (the
/// next chunks and decode tokens go on at their own positions, which llama.cpp refuses if a
/// sequence's KV holds any position past them).
#[test]
fn model_padded_prompt_chunks_change_no_answer_and_leave_no_trace() {
    let model = Model::load(&model_path(SMOLLM2), &LoadOptions::default()).expect("loads");
    let prompts: Vec<Vec<TokenId>> = [
        "The capital of France is a city called",
        "Here is a list of the planets of the solar system, in order: Mercury,",
        "Two plus two is four, and three plus three is",
        "My favourite colours are red, green and",
    ]
    .iter()
    .map(|p| model.tokenize(p, true, true))
    .collect();
    let lens: Vec<usize> = prompts.iter().map(Vec::len).collect();
    let (lo, hi) = (
        lens.iter().min().expect("4 prompts"),
        lens.iter().max().expect("4 prompts"),
    );
    assert!(lo + 16 >= *hi && lo < hi, "prompt lengths {lens:?}");
    let run = |pad: usize| {
        let opts = ContextOptions {
            n_kv_cells: 4 * 512,
            n_slots: 4,
            n_batch: 256,
            n_ubatch: 256,
            n_threads: test_threads(),
            swa_full: false,
            kv_streams: true,
            fill_gaps: true,
            pad_chunks: pad,
            warm_up: false,
        };
        let mut b = LlamaStepBackend::new(&model, &opts).expect("backend");
        // Each prompt in two chunks, split at a different place each.
        let cut: Vec<usize> = (0..4).map(|i| lens[i] / 2 + i).collect();
        let first = (0..4).map(|i| item(i, 0, &prompts[i][..cut[i]], false));
        b.execute(&plan(first.collect())).expect("first chunks");
        let rest = (0..4).map(|i| item(i, cut[i], &prompts[i][cut[i]..], true));
        b.execute(&plan(rest.collect())).expect("last chunks");
        let mut next: Vec<TokenId> = (0..4).map(|r| argmax(b.logits(r))).collect();
        let mut pos = lens.clone();
        let mut out = vec![Vec::new(); 4];
        for _ in 0..8 {
            let items = (0..4).map(|i| item(i, pos[i], &[next[i]], true)).collect();
            b.execute(&plan(items)).expect("decode");
            for i in 0..4 {
                out[i].push(next[i]);
                pos[i] += 1;
                next[i] = argmax(b.logits(i));
            }
        }
        (out, b.n_padded())
    };
    let (plain, n_plain) = run(0);
    let (padded, n_padded) = run(64);
    assert_eq!(n_plain, 0);
    // Both steps' chunks are of several lengths: each step pads every chunk to its longest.
    assert!(n_padded > 0);
    assert_eq!(plain, padded);
}

/// Padding tokens are used only where removing them again leaves the KV as it was: attention
/// layers only, and a sliding window (Gemma 3's) only when every position is kept.
#[test]
fn model_padding_needs_a_tail_that_can_be_removed() {
    let smol = Model::load(&model_path(SMOLLM2), &LoadOptions::default()).expect("loads");
    assert!(smol.tail_removable(false) && smol.tail_removable(true));
    let gemma = Model::load(&model_path(GEMMA3), &LoadOptions::default()).expect("loads");
    assert!(!gemma.tail_removable(false));
    assert!(gemma.tail_removable(true));
}

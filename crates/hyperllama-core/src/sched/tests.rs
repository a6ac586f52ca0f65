//! Scheduler tests against a fake backend that keeps per-slot KV (with shared cells, as
//! llama.cpp's unified cache does) and checks every plan.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::rng::Rng;

mod gpu_shape;
mod harness;

use harness::*;

#[test]
fn several_sequences_share_one_step() {
    let mut sched = Scheduler::new(test_config(64, 4, 256));
    for i in 0..4 {
        sched.add(spec(i, vec![1 + i as u32; 5], 3)).expect("fits");
    }
    let plan = sched.schedule();
    assert_eq!(plan.items.len(), 4, "all four prefill in the first step");
    assert!(plan.items.iter().all(|i| i.sample));
}

#[test]
fn long_prompt_is_chunked_and_decoders_keep_going() {
    let mut sched = Scheduler::new(test_config(16, 4, 256));
    let mut backend = FakeBackend::new(256);
    sched.add(spec(1, vec![1, 2, 3], 20)).expect("fits");
    step(&mut sched, &mut backend);
    sched.add(spec(2, vec![7; 40], 1)).expect("fits");
    let mut chunks = Vec::new();
    for _ in 0..3 {
        let (plan, _) = step(&mut sched, &mut backend);
        let decode = plan
            .items
            .iter()
            .find(|i| i.seq == SeqId(1))
            .expect("decoder planned");
        assert_eq!(decode.tokens.len(), 1);
        let long = plan
            .items
            .iter()
            .find(|i| i.seq == SeqId(2))
            .expect("prefill chunk planned");
        chunks.push(long.tokens.len());
        assert!(plan.n_tokens() <= 16);
    }
    assert_eq!(chunks, vec![15, 15, 10]);
}

#[test]
fn the_prefill_cap_interleaves_a_long_prompt_with_decoding() {
    let mut sched = Scheduler::new(test_config(64, 4, 256));
    sched.set_prefill_cap(8);
    let mut backend = FakeBackend::new(256);
    sched.add(spec(1, vec![1, 2, 3], 30)).expect("fits");
    // Alone, a prompt fills the whole budget.
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(plan.n_tokens(), 3);
    sched.add(spec(2, vec![7; 40], 1)).expect("fits");
    let mut chunks = Vec::new();
    while chunks.iter().sum::<usize>() < 40 {
        let (plan, _) = step(&mut sched, &mut backend);
        assert!(plan
            .items
            .iter()
            .any(|i| i.seq == SeqId(1) && i.tokens.len() == 1));
        if let Some(long) = plan.items.iter().find(|i| i.seq == SeqId(2)) {
            chunks.push(long.tokens.len());
        }
    }
    assert_eq!(chunks, vec![8, 8, 8, 8, 8]);
}

#[test]
fn prompt_longer_than_context_is_rejected_at_admission() {
    let mut sched = Scheduler::new(test_config(16, 2, 64));
    let err = sched.add(spec(1, vec![1; 64], 1)).expect_err("too long");
    assert_eq!(
        err,
        AdmissionError::PromptTooLong {
            n_prompt: 64,
            n_ctx: 64
        }
    );
    assert!(matches!(
        sched.add(spec(2, vec![], 1)),
        Err(AdmissionError::EmptyPrompt)
    ));
}

#[test]
fn abort_frees_kv_at_once_and_the_cache_can_be_dropped() {
    let mut sched = Scheduler::new(test_config(32, 2, 64));
    let mut backend = FakeBackend::new(64);
    sched.add(spec(1, vec![1; 10], 100)).expect("fits");
    step(&mut sched, &mut backend);
    assert_eq!(sched.n_kv_used(), 12, "10 tokens in 3 blocks of 4");
    assert!(sched.abort(SeqId(1)));
    assert_eq!(sched.n_kv_used(), 0);
    assert!(!sched.has_work());
    assert_eq!(sched.n_cache_entries(), 1, "its KV stays as cache");
    sched.clear_cache();
    assert_eq!(sched.n_kv_cached(), 0);
    assert_eq!(sched.schedule().clear, vec![SlotId(0)]);
    sched.check_invariants();
}

#[test]
fn the_cache_keeps_at_most_its_bound_beyond_the_running_cells_newest_first() {
    let mut cfg = test_config(64, 2, 256);
    cfg.cache_cells = 8;
    let mut sched = Scheduler::new(cfg);
    let mut backend = FakeBackend::new(256);
    // Three different conversations of 7 tokens (2 blocks each) end one after another.
    for i in 0..3u32 {
        sched
            .add(spec(u64::from(i), vec![10 + i; 6], 1))
            .expect("fits");
        while sched.has_work() {
            step(&mut sched, &mut backend);
        }
    }
    // The bound is applied when the next step is planned: a new, unrelated request.
    sched.add(spec(9, vec![40; 3], 4)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(plan.clear.len(), 1, "one entry over the bound is evicted");
    assert_eq!(sched.n_kv_cached(), 8);
    assert_eq!(sched.n_cache_entries(), 1);
    // The newest conversation is still cached: its second turn computes only what is new.
    let mut turn2 = vec![12; 6];
    turn2.extend([5, 6]);
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    sched.add(spec(10, turn2, 1)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(plan.copy.len(), 1, "the newest entry is shared");
    assert_eq!(plan.copy[0].n_tokens, 4);
    sched.check_invariants();
}

#[test]
fn packed_slots_fill_the_lowest_slot_evicting_an_entry_there() {
    let mut cfg = test_config(64, 4, 256);
    cfg.n_slots = 6;
    cfg.packed_slots = true;
    let mut sched = Scheduler::new(cfg);
    let mut backend = FakeBackend::new(256);
    // Four sequences in slots 0..4; the one in slot 1 ends first and leaves an entry there.
    for i in 0..4u32 {
        let n_new = if i == 1 { 1 } else { 6 };
        sched
            .add(spec(u64::from(i), vec![10 + i; 5], n_new))
            .expect("fits");
    }
    step(&mut sched, &mut backend);
    step(&mut sched, &mut backend);
    assert_eq!(sched.n_cache_entries(), 1);
    // A new, unrelated sequence goes to slot 1 (evicting the entry), not to free slot 4.
    sched.add(spec(9, vec![40; 3], 2)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(plan.clear, vec![SlotId(1)]);
    let item = plan
        .items
        .iter()
        .find(|i| i.seq == SeqId(9))
        .expect("admitted");
    assert_eq!(item.slot, SlotId(1));
    sched.check_invariants();
}

#[test]
fn with_whole_prompts_only_a_steps_first_prompt_is_cut() {
    let chunks = |whole: bool| {
        let mut cfg = test_config(25, 4, 256);
        cfg.prefix_cache = false;
        cfg.whole_prompts = whole;
        let mut sched = Scheduler::new(cfg);
        let mut backend = FakeBackend::new(256);
        for i in 0..3u32 {
            sched
                .add(spec(u64::from(i), vec![10 + i; 10], 2))
                .expect("fits");
        }
        let mut steps = Vec::new();
        for _ in 0..2 {
            let (plan, _) = step(&mut sched, &mut backend);
            steps.push(
                plan.items
                    .iter()
                    .map(|i| i.tokens.len())
                    .collect::<Vec<_>>(),
            );
            sched.check_invariants();
        }
        steps
    };
    // Cut to the budget: the third prompt's first 5 tokens ride along, the rest next step.
    assert_eq!(chunks(false), vec![vec![10, 10, 5], vec![1, 1, 5]]);
    // Whole: the third waits for the next step and is computed there in one piece.
    assert_eq!(chunks(true), vec![vec![10, 10], vec![1, 1, 10]]);
    // A step's first prompt is still cut when it alone exceeds the budget.
    let mut cfg = test_config(8, 4, 256);
    cfg.whole_prompts = true;
    let mut sched = Scheduler::new(cfg);
    let mut backend = FakeBackend::new(256);
    sched.add(spec(0, vec![7; 20], 2)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(plan.items[0].tokens.len(), 8);
}

#[test]
fn chunks_a_few_tokens_longer_are_cut_and_their_tails_ride_one_token_per_step() {
    // A plan's items as (sequence, tokens, sampled).
    let items = |plan: &StepPlan| -> Vec<(u64, usize, bool)> {
        plan.items
            .iter()
            .map(|i| (i.seq.0, i.tokens.len(), i.sample))
            .collect()
    };
    let config = || {
        let mut cfg = test_config(256, 4, 512);
        cfg.prefix_cache = false;
        cfg.whole_prompts = true;
        cfg.packed_slots = true;
        cfg.equal_chunk_slack = 4;
        cfg
    };
    let mut sched = Scheduler::new(config());
    let mut backend = FakeBackend::new(512);
    // 20, 22 and 24 tokens cluster at 20; 40 is further than the slack and keeps its length.
    // The 50-token prompts (the longest, so admitted last) wait for the four slots to free
    // up: more prompts follow, enough for the 4 steps a 4-token cut delays its sequence by,
    // so the first step's chunks are cut.
    let lens: Vec<usize> = [22, 20, 24, 40].into_iter().chain([50; 16]).collect();
    let reqs: Vec<SeqSpec> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| spec(i as u64, vec![3 + i as TokenId; n], 3))
        .collect();
    for r in &reqs {
        sched.add(r.clone()).expect("fits");
    }
    let mut plans = Vec::new();
    let mut outputs: HashMap<SeqId, Vec<TokenId>> = HashMap::new();
    while sched.has_work() {
        let (plan, events) = step(&mut sched, &mut backend);
        for e in events {
            if let SeqEvent::Token { seq, token } = e {
                outputs.entry(seq).or_default().push(token);
            }
        }
        plans.push(items(&plan));
        sched.check_invariants();
    }
    // Arrived together: admitted shortest prompt first.
    assert_eq!(
        plans[0],
        vec![(1, 20, true), (0, 20, false), (2, 20, false), (3, 40, true)]
    );
    // The 2- and 4-token tails go one token per step; the last one samples.
    assert_eq!(
        plans[1],
        vec![(1, 1, true), (0, 1, false), (2, 1, false), (3, 1, true)]
    );
    assert_eq!(
        plans[2],
        vec![(1, 1, true), (0, 1, true), (2, 1, false), (3, 1, true)]
    );
    for r in &reqs {
        assert_eq!(outputs[&r.id], run_alone(r).0, "request {:?}", r.id);
    }
    // Without a prompt behind them, the same four are the last prompts: computed whole.
    let mut sched = Scheduler::new(config());
    let mut backend = FakeBackend::new(512);
    for r in &reqs[..4] {
        sched.add(r.clone()).expect("fits");
    }
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(
        items(&plan),
        vec![(1, 20, true), (0, 22, true), (2, 24, true), (3, 40, true)]
    );
    // A chunk cut short of a long prompt (the budget's) goes on as a chunk, not one by one.
    let mut cfg = test_config(24, 4, 512);
    cfg.prefix_cache = false;
    cfg.equal_chunk_slack = 4;
    let mut sched = Scheduler::new(cfg);
    let mut backend = FakeBackend::new(512);
    sched.add(spec(0, vec![5; 10], 2)).expect("fits");
    sched.add(spec(1, vec![6; 60], 2)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    let lens: Vec<usize> = plan.items.iter().map(|i| i.tokens.len()).collect();
    assert_eq!(lens, vec![10, 10], "the 14-token chunk is cut to 10");
    let (plan, _) = step(&mut sched, &mut backend);
    let lens: Vec<usize> = plan.items.iter().map(|i| i.tokens.len()).collect();
    assert_eq!(lens, vec![1, 23]);
}

#[test]
fn with_equal_chunks_sequences_arriving_together_are_admitted_shortest_prompt_first() {
    let admitted = |slack: usize| {
        let mut cfg = test_config(64, 1, 512);
        cfg.prefix_cache = false;
        cfg.equal_chunk_slack = slack;
        let mut sched = Scheduler::new(cfg);
        let mut backend = FakeBackend::new(512);
        // Four arrive together; then one step; then two more arrive.
        for (i, n) in [(0u64, 30usize), (1, 10), (2, 20), (3, 10)] {
            sched.add(spec(i, vec![3; n], 1)).expect("fits");
        }
        let mut order = Vec::new();
        let (plan, _) = step(&mut sched, &mut backend);
        order.extend(plan.items.iter().map(|i| i.seq.0));
        sched.add(spec(4, vec![3; 25], 1)).expect("fits");
        sched.add(spec(5, vec![3; 5], 1)).expect("fits");
        while sched.has_work() {
            let (plan, _) = step(&mut sched, &mut backend);
            for item in &plan.items {
                if order.last() != Some(&item.seq.0) {
                    order.push(item.seq.0);
                }
            }
            sched.check_invariants();
        }
        order
    };
    // Equal lengths keep their order; a later arrival never overtakes an earlier one.
    assert_eq!(admitted(4), vec![1, 3, 2, 0, 5, 4]);
    // Without equal chunks: first come, first served.
    assert_eq!(admitted(0), vec![0, 1, 2, 3, 4, 5]);
}
#[test]
fn a_cached_prefix_below_min_copy_tokens_is_computed_again_unless_taken_over() {
    // Sequence 1 (slot 0) runs on while sequence 2 finishes and leaves a 2-block entry in
    // slot 1; sequence 3 shares those 8 tokens and gets slot 2.
    let run = |min_copy: usize, packed: bool| {
        let mut cfg = test_config(64, 4, 256);
        cfg.min_copy_tokens = min_copy;
        cfg.packed_slots = packed;
        let mut sched = Scheduler::new(cfg);
        let mut backend = FakeBackend::new(256);
        let stem: Vec<TokenId> = (1..=8).collect();
        sched.add(spec(1, vec![50; 5], 20)).expect("fits");
        let mut second = stem.clone();
        second.extend([30, 31]);
        sched.add(spec(2, second, 1)).expect("fits");
        while sched.n_cache_entries() == 0 {
            step(&mut sched, &mut backend);
        }
        let mut third = stem;
        third.extend([40, 41, 42]);
        sched.add(spec(3, third, 1)).expect("fits");
        let (plan, _) = step(&mut sched, &mut backend);
        let item = plan
            .items
            .iter()
            .find(|i| i.seq == SeqId(3))
            .expect("admitted");
        sched.check_invariants();
        (plan.copy.len(), plan.trim.len(), item.pos)
    };
    // Copied below the threshold of 0, computed again (from position 0) below 16.
    assert_eq!(run(0, false), (1, 0, 8));
    assert_eq!(run(16, false), (0, 0, 0));
    // Packed: the entry in slot 1 is where sequence 3 goes anyway: taken over at any length.
    assert_eq!(run(16, true), (0, 1, 8));
}

#[test]
fn with_packed_slots_a_second_turn_takes_its_first_turns_slot_over_without_a_copy() {
    let mut cfg = test_config(64, 2, 256);
    cfg.packed_slots = true;
    let mut sched = Scheduler::new(cfg);
    let mut backend = FakeBackend::new(256);
    let first: Vec<TokenId> = (1..=10).collect();
    sched.add(spec(1, first.clone(), 3)).expect("fits");
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    // 10 prompt tokens + 2 computed outputs: 12 positions in slot 0, 3 full blocks of 4.
    let mut second = first;
    second.extend([20, 21]);
    sched.add(spec(2, second, 2)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert!(plan.copy.is_empty(), "{plan:?}");
    assert!(plan.clear.is_empty(), "{plan:?}");
    assert_eq!(
        plan.trim,
        vec![KvTrim {
            slot: SlotId(0),
            from: 8
        }]
    );
    assert_eq!(plan.items[0].slot, SlotId(0));
    assert_eq!(plan.items[0].pos, 8);
    assert_eq!(sched.n_cache_entries(), 0);
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    sched.check_invariants();
}

#[test]
fn a_shared_prefix_is_copied_not_recomputed() {
    let mut sched = Scheduler::new(test_config(64, 2, 256));
    let mut backend = FakeBackend::new(256);
    let system: Vec<TokenId> = (1..=17).collect();
    let mut a = system.clone();
    a.extend([30, 31]);
    sched.add(spec(1, a, 2)).expect("fits");
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    let mut b = system.clone();
    b.extend([40, 41, 42]);
    sched.add(spec(2, b, 2)).expect("fits");
    let (plan, events) = step(&mut sched, &mut backend);
    assert_eq!(
        plan.copy,
        vec![KvCopy {
            src: SlotId(0),
            dst: SlotId(1),
            n_tokens: 16
        }],
        "four full blocks of the system prompt are shared"
    );
    assert_eq!(plan.items[0].pos, 16);
    assert_eq!(plan.items[0].tokens, vec![17, 40, 41, 42]);
    assert!(events.contains(&SeqEvent::PromptDone {
        seq: SeqId(2),
        n_prompt: 20,
        n_cached: 16
    }));
}

#[test]
fn prompts_arriving_together_compute_their_shared_prefix_once() {
    // Budget 16: the first prompt's 20 tokens take two steps; the second waits for its
    // first 16 instead of computing them again beside it.
    let mut sched = Scheduler::new(test_config(16, 2, 256));
    let mut backend = FakeBackend::new(256);
    let system: Vec<TokenId> = (1..=17).collect();
    let (mut a, mut b) = (system.clone(), system.clone());
    a.extend([30, 31, 32]);
    b.extend([40, 41, 42]);
    sched.add(spec(1, a, 2)).expect("fits");
    sched.add(spec(2, b, 2)).expect("fits");
    let mut cached = None;
    while sched.has_work() {
        let (plan, events) = step(&mut sched, &mut backend);
        assert!(plan.items.iter().all(|i| i.seq != SeqId(2) || i.pos >= 16));
        for e in events {
            if let SeqEvent::PromptDone { seq, n_cached, .. } = e {
                if seq == SeqId(2) {
                    cached = Some(n_cached);
                }
            }
        }
    }
    assert_eq!(
        cached,
        Some(16),
        "the second prompt took the first one's blocks"
    );
}

#[test]
fn a_burst_of_prompts_gets_a_cap_each_beside_decoders() {
    let mut sched = Scheduler::new(test_config(256, 8, 1024));
    let mut backend = FakeBackend::new(1024);
    sched.add(spec(1, vec![1, 2, 3], 50)).expect("fits");
    step(&mut sched, &mut backend);
    sched.set_prefill_cap(8);
    for id in 2..=5u64 {
        let prompt = (0..20).map(|t| (t * 7 + id as TokenId) % 50 + 60).collect();
        sched.add(spec(id, prompt, 2)).expect("fits");
    }
    let (plan, _) = step(&mut sched, &mut backend);
    let n_prefill: usize = plan
        .items
        .iter()
        .filter(|i| i.seq != SeqId(1))
        .map(|i| i.tokens.len())
        .sum();
    assert_eq!(
        n_prefill, 32,
        "four prompts waiting: four times the cap of 8"
    );
}

#[test]
fn a_fully_cached_prompt_still_computes_its_last_token() {
    let mut sched = Scheduler::new(test_config(64, 1, 256));
    let mut backend = FakeBackend::new(256);
    let prompt: Vec<TokenId> = (1..=8).collect();
    sched.add(spec(1, prompt.clone(), 1)).expect("fits");
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    sched.add(spec(2, prompt, 1)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(
        plan.copy[0].n_tokens, 4,
        "the block holding the last token is recomputed"
    );
    assert_eq!(plan.items[0].tokens, vec![5, 6, 7, 8]);
}

#[test]
fn batched_cached_and_preempted_output_equals_unbatched_output() {
    let mut rng = Rng::seed_from_u64(64);
    let (mut n_copied, mut n_preempted) = (0, 0);
    for round in 0..300 {
        let n = 1 + rng.next_u64() as usize % 10;
        let reqs = test_requests(&mut rng, n, 30);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 6).collect();
        let max_seqs = 1 + rng.next_u64() as usize % 6;
        let budget = max_seqs + rng.next_u64() as usize % 40;
        // Tight KV forces eviction and preemption: just enough for the longest request.
        let n_kv = 64 + rng.next_u64() as usize % 64;
        let mut cfg = test_config(budget, max_seqs, n_kv);
        cfg.prefix_cache = round % 3 != 0;
        cfg.equal_chunk_slack = [0, 2, 8][(round / 3) % 3];
        let (out, mut sched) = run_all(cfg, &reqs, &arrivals);
        n_copied += LAST_COPIED.with(std::cell::Cell::get);
        n_preempted += sched.n_preemptions();
        for r in &reqs {
            assert_eq!(
                out[&r.id],
                run_alone(r),
                "round {round}, request {:?}",
                r.id
            );
        }
        assert_eq!(sched.n_kv_used(), 0, "KV leaked");
        sched.clear_cache();
        assert_eq!(sched.n_kv_cached(), 0, "cache leaked");
        sched.check_invariants();
    }
    assert!(
        n_copied > 1000 && n_preempted > 10,
        "copied {n_copied}, preempted {n_preempted}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_request_finishes_and_nothing_leaks(
        seed in any::<u64>(),
        n in 1usize..12,
        max_seqs in 1usize..8,
        extra_budget in 0usize..48,
        n_kv in 64usize..200,
        prefix_cache in any::<bool>(),
        cap in prop_oneof![Just(usize::MAX), 1usize..24],
        cache_cells in prop_oneof![Just(usize::MAX), 0usize..64],
        packed in any::<bool>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let reqs = test_requests(&mut rng, n, 40);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 8).collect();
        let mut cfg = test_config(max_seqs + extra_budget, max_seqs, n_kv);
        cfg.prefix_cache = prefix_cache;
        cfg.cache_cells = cache_cells;
        cfg.packed_slots = packed;
        cfg.whole_prompts = packed;
        cfg.equal_chunk_slack = if packed { 4 } else { 0 };
        cfg.min_copy_tokens = if packed { 8 } else { 0 };
        let (out, mut sched) = run_all_capped(cfg, &reqs, &arrivals, cap);
        prop_assert_eq!(out.len(), n);
        prop_assert_eq!(sched.n_kv_used(), 0);
        prop_assert!(!sched.has_work());
        sched.clear_cache();
        prop_assert_eq!(sched.n_kv_cached(), 0);
    }
}

#[test]
fn a_decode_item_carries_its_drafts_and_rejected_positions_are_trimmed() {
    let mut sched = Scheduler::new(test_config(64, 2, 256));
    let mut backend = FakeBackend::new(256);
    sched.add(spec(1, vec![1, 2, 3], 20)).expect("fits");
    step(&mut sched, &mut backend);
    assert_eq!(sched.draft_room(SeqId(1)), 19 - 1);
    let history = sched.tokens(SeqId(1)).expect("running").to_vec();
    let good = next_token(&history);
    let mut h = history.clone();
    h.push(good);
    let bad = (next_token(&h) + 1) % VOCAB;
    sched.set_draft(SeqId(1), vec![good, bad, 7]);
    let plan = sched.schedule();
    let item = &plan.items[0];
    assert_eq!((item.n_draft, item.tokens.len(), item.n_rows()), (3, 4, 4));
    assert_eq!(item.draft(), &[good, bad, 7]);
    let rows = backend.execute_rows(&plan, sched.config());
    assert_eq!(rows[0][0], good);
    let events = sched.commit_spec(&plan, &[rows[0][..2].to_vec()]);
    let tokens: Vec<TokenId> = events
        .iter()
        .filter_map(|e| match e {
            SeqEvent::Token { token, .. } => Some(*token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens, vec![good, rows[0][1]]);
    sched.check_invariants();
    // The rejected positions (5 and 6) are trimmed before the next step's item.
    let (plan, _) = step(&mut sched, &mut backend);
    assert_eq!(
        plan.trim,
        vec![KvTrim {
            slot: SlotId(0),
            from: 5
        }]
    );
    assert_eq!(plan.items[0].pos, 5);
    // An unplanned draft does not survive the step.
    sched.set_draft(SeqId(1), vec![1, 2]);
    assert!(sched.schedule().items[0].n_draft == 2);
}

#[test]
fn drafts_leave_room_for_later_decoders_and_never_evict() {
    // Budget 4, two decoders: the first may draft at most 2.
    let mut sched = Scheduler::new(test_config(4, 2, 64));
    let mut backend = FakeBackend::new(64);
    sched.add(spec(1, vec![1, 2, 3], 20)).expect("fits");
    sched.add(spec(2, vec![4], 20)).expect("fits");
    step(&mut sched, &mut backend);
    sched.set_draft(SeqId(1), vec![5, 5, 5, 5]);
    sched.set_draft(SeqId(2), vec![6, 6, 6, 6]);
    let plan = sched.schedule();
    assert_eq!(plan.items.len(), 2);
    assert_eq!(plan.items[0].n_draft, 2);
    assert_eq!(plan.items[1].n_draft, 0);
    assert!(plan.n_tokens() <= 4);
    sched.abandon(&plan);
    sched.check_invariants();
}

#[test]
fn speculative_output_equals_unbatched_output_and_nothing_leaks() {
    let mut rng = Rng::seed_from_u64(65);
    let (mut drafted, mut accepted, mut n_preempted) = (0, 0, 0);
    for round in 0..300 {
        let n = 1 + rng.next_u64() as usize % 10;
        let reqs = test_requests(&mut rng, n, 30);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 6).collect();
        let max_seqs = 1 + rng.next_u64() as usize % 6;
        let budget = max_seqs + rng.next_u64() as usize % 40;
        let n_kv = 64 + rng.next_u64() as usize % 64;
        let mut cfg = test_config(budget, max_seqs, n_kv);
        cfg.prefix_cache = round % 3 != 0;
        cfg.equal_chunk_slack = [0, 3, 8][(round / 3) % 3];
        let cap = if round % 2 == 0 {
            usize::MAX
        } else {
            1 + round % 16
        };
        let (out, mut sched) = run_all_spec(cfg, &reqs, &arrivals, cap, Some(round as u64));
        let (d, a) = LAST_SPEC.with(std::cell::Cell::get);
        drafted += d;
        accepted += a;
        n_preempted += sched.n_preemptions();
        for r in &reqs {
            assert_eq!(
                out[&r.id],
                run_alone(r),
                "round {round}, request {:?}",
                r.id
            );
        }
        assert_eq!(sched.n_kv_used(), 0, "KV leaked");
        sched.clear_cache();
        assert_eq!(sched.n_kv_cached(), 0, "cache leaked");
        sched.check_invariants();
    }
    assert!(
        accepted > 1000 && drafted > accepted + 500 && n_preempted > 10,
        "drafted {drafted}, accepted {accepted}, preempted {n_preempted}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn with_drafts_every_request_finishes_within_budget_and_nothing_leaks(
        seed in any::<u64>(),
        n in 1usize..12,
        max_seqs in 1usize..8,
        extra_budget in 0usize..48,
        n_kv in 64usize..200,
        prefix_cache in any::<bool>(),
        cap in prop_oneof![Just(usize::MAX), 1usize..24],
        cache_cells in prop_oneof![Just(usize::MAX), 0usize..64],
        packed in any::<bool>(),
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let reqs = test_requests(&mut rng, n, 40);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 8).collect();
        let mut cfg = test_config(max_seqs + extra_budget, max_seqs, n_kv);
        cfg.prefix_cache = prefix_cache;
        cfg.cache_cells = cache_cells;
        cfg.packed_slots = packed;
        cfg.whole_prompts = packed;
        cfg.equal_chunk_slack = if packed { 4 } else { 0 };
        cfg.min_copy_tokens = if packed { 8 } else { 0 };
        let (out, mut sched) = run_all_spec(cfg, &reqs, &arrivals, cap, Some(seed));
        prop_assert_eq!(out.len(), n);
        prop_assert_eq!(sched.n_kv_used(), 0);
        prop_assert!(!sched.has_work());
        sched.clear_cache();
        prop_assert_eq!(sched.n_kv_cached(), 0);
    }
}

#[test]
fn a_prompt_whose_cached_prefix_pins_the_blocks_it_needs_is_recomputed_not_stuck() {
    // 16 blocks of 4. A 47-token sequence leaves a 13-block entry, of which a new 47-token
    // prompt shares only the first block: with the entry pinned as the copy source, the 11
    // other blocks it needs could never be found.
    let mut sched = Scheduler::new(test_config(64, 1, 64));
    let mut backend = FakeBackend::new(64);
    let mut first = vec![7; 4];
    first.extend(1..=40);
    sched.add(spec(1, first, 8)).expect("fits");
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
    assert_eq!(sched.n_cache_entries(), 1);
    let mut second = vec![7; 4];
    second.extend(100..143);
    sched.add(spec(2, second, 1)).expect("fits");
    let (plan, _) = step(&mut sched, &mut backend);
    assert!(plan.copy.is_empty(), "computed whole: {plan:?}");
    assert_eq!(plan.n_tokens(), 47);
    while sched.has_work() {
        step(&mut sched, &mut backend);
    }
}

#[test]
fn a_capped_chunk_takes_a_small_tail_along() {
    // (rest, budget, prompt tokens left) -> chunk
    assert_eq!(chunk_len(5, 64, 8), 5);
    // A tail of 2 after a chunk of 8: taken along.
    assert_eq!(chunk_len(10, 64, 8), 10);
    // A tail of 3: over a quarter, left for the next step.
    assert_eq!(chunk_len(11, 64, 8), 8);
    // The budget never stretches.
    assert_eq!(chunk_len(10, 9, 8), 8);
    assert_eq!(chunk_len(10, 6, 8), 6);
}

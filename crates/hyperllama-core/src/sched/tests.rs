//! Scheduler tests against a fake backend that keeps per-slot KV and checks every plan.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::rng::Rng;

const VOCAB: u32 = 50;
const EOG: TokenId = 0;

/// A deterministic "model": the next token is a hash of the whole sequence so far. It keeps
/// the KV of every slot, so a plan that computes a position twice, skips one, or forgets to
/// clear a slot is caught.
struct FakeBackend {
    kv: HashMap<SlotId, Vec<TokenId>>,
    n_kv_cells: usize,
}

impl FakeBackend {
    fn new(n_kv_cells: usize) -> Self {
        Self {
            kv: HashMap::new(),
            n_kv_cells,
        }
    }

    fn execute(&mut self, plan: &StepPlan, cfg: &SchedulerConfig) -> Vec<TokenId> {
        assert!(plan.n_tokens() <= cfg.max_batched_tokens, "budget exceeded");
        assert!(plan.items.len() <= cfg.max_seqs);
        let mut seen = std::collections::HashSet::new();
        for slot in &plan.clear {
            self.kv.remove(slot);
        }
        let mut out = Vec::new();
        for item in &plan.items {
            assert!(seen.insert(item.seq), "sequence planned twice");
            let kv = self.kv.entry(item.slot).or_default();
            assert_eq!(kv.len(), item.pos, "position gap or overlap in {item:?}");
            kv.extend_from_slice(&item.tokens);
            if item.sample {
                out.push(next_token(kv));
            }
        }
        let used: usize = self.kv.values().map(Vec::len).sum();
        assert!(used <= self.n_kv_cells, "KV over capacity: {used}");
        out
    }
}

fn next_token(history: &[TokenId]) -> TokenId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in history {
        h = (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(VOCAB)) as TokenId
}

fn test_config(max_batched_tokens: usize, max_seqs: usize, n_kv_cells: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_batched_tokens,
        max_seqs,
        n_kv_cells,
        n_ctx_per_seq: n_kv_cells.min(64),
        eog_tokens: vec![EOG],
    }
}

fn test_requests(rng: &mut Rng, n: usize, max_prompt: usize) -> Vec<SeqSpec> {
    (0..n)
        .map(|i| {
            let len = 1 + (rng.next_u64() as usize % max_prompt);
            SeqSpec {
                id: SeqId(i as u64),
                prompt: (0..len)
                    .map(|_| 1 + (rng.next_u64() % u64::from(VOCAB - 1)) as u32)
                    .collect(),
                max_new_tokens: Some(1 + rng.next_u64() as usize % 12),
                ignore_eos: false,
            }
        })
        .collect()
}

/// Runs requests to completion; `arrivals[i]` is the step at which request i is added.
fn run_all(
    cfg: SchedulerConfig,
    reqs: &[SeqSpec],
    arrivals: &[usize],
) -> (HashMap<SeqId, (Vec<TokenId>, FinishReason)>, Scheduler) {
    let mut sched = Scheduler::new(cfg.clone());
    let mut backend = FakeBackend::new(cfg.n_kv_cells);
    let mut outputs: HashMap<SeqId, (Vec<TokenId>, Option<FinishReason>)> = HashMap::new();
    let mut step = 0;
    let max_steps = 10_000;
    while step < max_steps {
        for (req, &at) in reqs.iter().zip(arrivals) {
            if at == step {
                sched.add(req.clone()).expect("requests fit");
                outputs.insert(req.id, (Vec::new(), None));
            }
        }
        let all_added = arrivals.iter().all(|&a| a <= step);
        if all_added && !sched.has_work() {
            break;
        }
        let plan = sched.schedule();
        let sampled = backend.execute(&plan, sched.config());
        for ev in sched.commit(&plan, &sampled) {
            match ev {
                SeqEvent::Token { seq, token } => {
                    outputs.get_mut(&seq).expect("known").0.push(token)
                }
                SeqEvent::Finished { seq, reason } => {
                    let out = outputs.get_mut(&seq).expect("known");
                    assert!(out.1.is_none(), "finished twice");
                    out.1 = Some(reason);
                }
                SeqEvent::PromptDone { .. } => {}
            }
        }
        step += 1;
    }
    assert!(step < max_steps, "requests did not finish");
    let done = outputs
        .into_iter()
        .map(|(id, (toks, reason))| (id, (toks, reason.expect("every request finishes"))))
        .collect();
    (done, sched)
}

fn run_alone(req: &SeqSpec) -> (Vec<TokenId>, FinishReason) {
    let (mut out, _) = run_all(test_config(256, 1, 256), std::slice::from_ref(req), &[0]);
    out.remove(&req.id).expect("ran")
}

#[test]
fn several_sequences_share_one_step() {
    let mut rng = Rng::seed_from_u64(1);
    let reqs = test_requests(&mut rng, 4, 5);
    let mut sched = Scheduler::new(test_config(64, 4, 256));
    for r in &reqs {
        sched.add(r.clone()).expect("fits");
    }
    let plan = sched.schedule();
    assert_eq!(plan.items.len(), 4, "all four prefill in the first step");
    assert!(plan.items.iter().all(|i| i.sample));
}

#[test]
fn long_prompt_is_chunked_and_decoders_keep_going() {
    let mut sched = Scheduler::new(test_config(16, 4, 256));
    sched
        .add(SeqSpec {
            id: SeqId(1),
            prompt: vec![1, 2, 3],
            max_new_tokens: Some(20),
            ignore_eos: true,
        })
        .expect("fits");
    let plan = sched.schedule();
    sched.commit(&plan, &[5]);
    sched
        .add(SeqSpec {
            id: SeqId(2),
            prompt: vec![7; 40],
            max_new_tokens: Some(1),
            ignore_eos: true,
        })
        .expect("fits");
    let mut chunks = Vec::new();
    for _ in 0..3 {
        let plan = sched.schedule();
        let decode = plan
            .items
            .iter()
            .find(|i| i.seq == SeqId(1))
            .expect("decoder planned every step");
        assert_eq!(decode.tokens.len(), 1);
        let long = plan
            .items
            .iter()
            .find(|i| i.seq == SeqId(2))
            .expect("prefill chunk planned");
        chunks.push(long.tokens.len());
        assert!(plan.n_tokens() <= 16);
        let sampled: Vec<TokenId> = plan.items.iter().filter(|i| i.sample).map(|_| 3).collect();
        sched.commit(&plan, &sampled);
    }
    assert_eq!(chunks, vec![15, 15, 10]);
}

#[test]
fn prompt_longer_than_context_is_rejected_at_admission() {
    let mut sched = Scheduler::new(test_config(16, 2, 64));
    let err = sched
        .add(SeqSpec {
            id: SeqId(1),
            prompt: vec![1; 64],
            max_new_tokens: None,
            ignore_eos: false,
        })
        .expect_err("too long");
    assert_eq!(
        err,
        AdmissionError::PromptTooLong {
            n_prompt: 64,
            n_ctx: 64
        }
    );
    assert!(matches!(
        sched.add(SeqSpec {
            id: SeqId(2),
            prompt: vec![],
            max_new_tokens: None,
            ignore_eos: false
        }),
        Err(AdmissionError::EmptyPrompt)
    ));
}

#[test]
fn abort_frees_kv_at_once() {
    let mut sched = Scheduler::new(test_config(32, 2, 64));
    sched
        .add(SeqSpec {
            id: SeqId(1),
            prompt: vec![1; 10],
            max_new_tokens: None,
            ignore_eos: true,
        })
        .expect("fits");
    let plan = sched.schedule();
    sched.commit(&plan, &[4]);
    assert_eq!(sched.n_kv_used(), 10);
    assert!(sched.abort(SeqId(1)));
    assert_eq!(sched.n_kv_used(), 0);
    assert!(!sched.has_work());
    assert_eq!(sched.schedule().clear, vec![SlotId(0)]);
}

#[test]
fn batched_and_preempted_output_equals_unbatched_output() {
    let mut rng = Rng::seed_from_u64(64);
    for round in 0..200 {
        let n = 1 + rng.next_u64() as usize % 10;
        let reqs = test_requests(&mut rng, n, 30);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 6).collect();
        let max_seqs = 1 + rng.next_u64() as usize % 6;
        let budget = max_seqs + rng.next_u64() as usize % 40;
        // Tight KV forces preemption: just enough for the longest request.
        let n_kv = 64 + rng.next_u64() as usize % 64;
        let (out, sched) = run_all(test_config(budget, max_seqs, n_kv), &reqs, &arrivals);
        for r in &reqs {
            assert_eq!(
                out[&r.id],
                run_alone(r),
                "round {round}, request {:?}",
                r.id
            );
        }
        assert_eq!(sched.n_kv_used(), 0, "KV leaked");
    }
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
    ) {
        let mut rng = Rng::seed_from_u64(seed);
        let reqs = test_requests(&mut rng, n, 40);
        let arrivals: Vec<usize> = (0..n).map(|_| rng.next_u64() as usize % 8).collect();
        let (out, sched) = run_all(test_config(max_seqs + extra_budget, max_seqs, n_kv), &reqs, &arrivals);
        prop_assert_eq!(out.len(), n);
        prop_assert_eq!(sched.n_kv_used(), 0);
        prop_assert!(!sched.has_work());
    }
}

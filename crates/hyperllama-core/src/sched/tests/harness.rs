//! The scheduler tests' harness: a fake backend that keeps per-slot KV (with shared cells, as
//! llama.cpp's unified cache does) and checks every plan, request generators, and runners that
//! take requests to completion with or without batching, caps and drafts.

use std::collections::{HashMap, HashSet};

use super::super::*;
use crate::rng::Rng;

pub(super) const VOCAB: u32 = 50;
pub(super) const EOG: TokenId = 0;

/// A deterministic "model": the next token is a hash of the whole sequence in the slot's KV.
/// It keeps the KV of every slot as cells that copies share, so a plan that computes a
/// position twice, skips one, copies the wrong prefix, forgets to clear a slot, or overfills
/// the cache is caught.
pub(super) struct FakeBackend {
    kv: HashMap<SlotId, Vec<(TokenId, u64)>>,
    next_cell: u64,
    n_kv_cells: usize,
    n_copied: usize,
}

impl FakeBackend {
    pub(super) fn new(n_kv_cells: usize) -> Self {
        Self {
            kv: HashMap::new(),
            next_cell: 0,
            n_kv_cells,
            n_copied: 0,
        }
    }

    pub(super) fn execute(&mut self, plan: &StepPlan, cfg: &SchedulerConfig) -> Vec<TokenId> {
        self.execute_rows(plan, cfg).into_iter().flatten().collect()
    }

    /// Runs the plan; returns, per sampled item, the "model's" next token after each of its
    /// last `n_draft + 1` tokens.
    pub(super) fn execute_rows(
        &mut self,
        plan: &StepPlan,
        cfg: &SchedulerConfig,
    ) -> Vec<Vec<TokenId>> {
        assert!(plan.n_tokens() <= cfg.max_batched_tokens, "budget exceeded");
        assert!(plan.items.len() <= cfg.max_seqs);
        for t in &plan.trim {
            let kv = self.kv.get_mut(&t.slot).expect("trimmed slots hold KV");
            assert!(kv.len() > t.from, "trim of positions the slot lacks: {t:?}");
            kv.truncate(t.from);
        }
        for slot in &plan.clear {
            self.kv.remove(slot);
        }
        for c in &plan.copy {
            assert!(!plan.clear.contains(&c.src), "copy from a cleared slot");
            let src = self.kv.get(&c.src).cloned().unwrap_or_default();
            assert!(
                src.len() >= c.n_tokens,
                "copy of positions the source lacks: {c:?}"
            );
            let dst = self.kv.entry(c.dst).or_default();
            assert!(dst.is_empty(), "copy into a slot that is not empty: {c:?}");
            dst.extend_from_slice(&src[..c.n_tokens]);
            self.n_copied += c.n_tokens;
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for item in &plan.items {
            assert!(seen.insert(item.seq), "sequence planned twice");
            let kv = self.kv.entry(item.slot).or_default();
            assert_eq!(kv.len(), item.pos, "position gap or overlap in {item:?}");
            assert!(item.n_draft == 0 || (item.sample && item.tokens.len() == item.n_draft + 1));
            let mut rows = Vec::new();
            for (j, &t) in item.tokens.iter().enumerate() {
                kv.push((t, self.next_cell));
                self.next_cell += 1;
                if item.sample && j + item.n_draft + 1 >= item.tokens.len() {
                    let history: Vec<TokenId> = kv.iter().map(|c| c.0).collect();
                    rows.push(next_token(&history));
                }
            }
            if item.sample {
                out.push(rows);
            }
        }
        let used: HashSet<u64> = self.kv.values().flatten().map(|c| c.1).collect();
        assert!(
            used.len() <= self.n_kv_cells,
            "KV over capacity: {}",
            used.len()
        );
        out
    }
}

pub(super) fn next_token(history: &[TokenId]) -> TokenId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &t in history {
        h = (h ^ u64::from(t)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(VOCAB)) as TokenId
}

pub(super) fn test_config(
    max_batched_tokens: usize,
    max_seqs: usize,
    n_kv_cells: usize,
) -> SchedulerConfig {
    // The defaults, with small blocks and the test vocabulary's end-of-generation token.
    SchedulerConfig {
        block_size: 4,
        eog_tokens: vec![EOG],
        ..SchedulerConfig::new(max_batched_tokens, max_seqs, n_kv_cells, n_kv_cells.min(64))
    }
}

/// Requests whose prompts often share prefixes (a few common stems), as chat traffic does.
pub(super) fn test_requests(rng: &mut Rng, n: usize, max_prompt: usize) -> Vec<SeqSpec> {
    let stems: Vec<Vec<TokenId>> = (0..3)
        .map(|_| {
            let len = rng.next_u64() as usize % max_prompt;
            (0..len)
                .map(|_| 1 + (rng.next_u64() % u64::from(VOCAB - 1)) as u32)
                .collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            let stem = &stems[rng.next_u64() as usize % stems.len()];
            let tail = 1 + rng.next_u64() as usize % 8;
            let mut prompt: Vec<TokenId> = stem.clone();
            prompt.extend((0..tail).map(|_| 1 + (rng.next_u64() % u64::from(VOCAB - 1)) as u32));
            prompt.truncate(max_prompt.max(1));
            SeqSpec {
                id: SeqId(i as u64),
                prompt,
                max_new_tokens: Some(1 + rng.next_u64() as usize % 12),
                ignore_eos: false,
            }
        })
        .collect()
}

pub(super) type Outputs = HashMap<SeqId, (Vec<TokenId>, FinishReason)>;

thread_local! {
    /// Tokens copied from the prefix cache by the last `run_all` on this thread.
    pub(super) static LAST_COPIED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs requests to completion; `arrivals[i]` is the step at which request i is added.
pub(super) fn run_all(
    cfg: SchedulerConfig,
    reqs: &[SeqSpec],
    arrivals: &[usize],
) -> (Outputs, Scheduler) {
    run_all_capped(cfg, reqs, arrivals, usize::MAX)
}

/// [`run_all`] with a prefill cap; asserts every plan respects it.
pub(super) fn run_all_capped(
    cfg: SchedulerConfig,
    reqs: &[SeqSpec],
    arrivals: &[usize],
    cap: usize,
) -> (Outputs, Scheduler) {
    run_all_spec(cfg, reqs, arrivals, cap, None)
}

thread_local! {
    /// Draft tokens planned and accepted by the last `run_all_spec` on this thread.
    pub(super) static LAST_SPEC: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Drafts for a sequence: mostly the fake model's own continuation (so drafts are often
/// accepted), with random corruptions (so they are also rejected at every position), and
/// sometimes prompt lookup.
pub(super) fn test_draft(rng: &mut Rng, history: &[TokenId], room: usize) -> Vec<TokenId> {
    let k = rng.next_u64() as usize % (room.min(6) + 1);
    if rng.next_u64().is_multiple_of(4) {
        return crate::spec::propose(history, k);
    }
    let mut h = history.to_vec();
    let mut draft = Vec::new();
    for _ in 0..k {
        let t = if rng.next_u64().is_multiple_of(5) {
            (rng.next_u64() % u64::from(VOCAB)) as TokenId
        } else {
            next_token(&h)
        };
        h.push(t);
        draft.push(t);
    }
    draft
}

/// [`run_all_capped`], with draft tokens from [`test_draft`] seeded by `spec` (when given),
/// verified greedily: the longest prefix of drafts the model agrees with, plus its token.
pub(super) fn run_all_spec(
    cfg: SchedulerConfig,
    reqs: &[SeqSpec],
    arrivals: &[usize],
    cap: usize,
    spec: Option<u64>,
) -> (Outputs, Scheduler) {
    let mut spec_rng = spec.map(Rng::seed_from_u64);
    let (mut n_drafted, mut n_accepted) = (0, 0);
    let mut sched = Scheduler::new(cfg.clone());
    sched.set_prefill_cap(cap);
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
        if let Some(rng) = spec_rng.as_mut() {
            for (id, out) in &outputs {
                let room = sched.draft_room(*id);
                if out.1.is_none() && room > 0 {
                    let history = sched.tokens(*id).expect("running").to_vec();
                    let draft = test_draft(rng, &history, room);
                    assert!(draft.len() <= room);
                    sched.set_draft(*id, draft);
                }
            }
        }
        // Sequences decoding before the step (a sequence resumed from the cache with one
        // token left is admitted, not decoding, and does not cap the step).
        let decoding: HashSet<SeqId> = sched
            .running
            .iter()
            .filter(|id| {
                let s = &sched.seqs[*id];
                s.tokens.len() - s.n_computed == 1
            })
            .copied()
            .collect();
        // Prompts waiting for their first token: each may take the cap.
        let pending = sched.waiting.len()
            + sched
                .running
                .iter()
                .filter(|id| {
                    let s = &sched.seqs[*id];
                    s.tokens.len() - s.n_computed > 1
                })
                .count();
        let plan = sched.schedule();
        sched.check_invariants();
        let n_decoding = plan
            .items
            .iter()
            .filter(|i| decoding.contains(&i.seq))
            .count();
        // Single tokens (a decode, or a prompt's last token) cost a decode token; the cap
        // bounds the chunks, give or take the small tail a chunk may take along (a quarter).
        let n_prefill: usize = plan
            .items
            .iter()
            .filter(|i| i.n_draft == 0 && i.tokens.len() > 1)
            .map(|i| i.tokens.len())
            .sum();
        if n_decoding > 0 {
            let allowed = cap.saturating_mul(pending.max(1));
            assert!(
                n_prefill <= allowed.saturating_add(allowed / 4),
                "{n_prefill} prompt tokens beside decoding, cap {cap} x {pending}: {plan:?}"
            );
        }
        let rows = backend.execute_rows(&plan, sched.config());
        let mut accepted = Vec::new();
        for (item, rows) in plan.items.iter().filter(|i| i.sample).zip(rows) {
            let draft = item.draft();
            let n_acc = draft.iter().zip(&rows).take_while(|(d, r)| d == r).count();
            n_drafted += draft.len();
            n_accepted += n_acc;
            accepted.push(rows[..=n_acc].to_vec());
        }
        for ev in sched.commit_spec(&plan, &accepted) {
            match ev {
                SeqEvent::Token { seq, token } => {
                    outputs.get_mut(&seq).expect("known").0.push(token);
                }
                SeqEvent::Finished { seq, reason } => {
                    let out = outputs.get_mut(&seq).expect("known");
                    assert!(out.1.is_none(), "finished twice");
                    out.1 = Some(reason);
                }
                SeqEvent::PromptDone { .. } => {}
            }
        }
        sched.check_invariants();
        step += 1;
    }
    assert!(step < max_steps, "requests did not finish");
    LAST_COPIED.with(|c| c.set(backend.n_copied));
    LAST_SPEC.with(|c| c.set((n_drafted, n_accepted)));
    let done = outputs
        .into_iter()
        .map(|(id, (toks, reason))| (id, (toks, reason.expect("every request finishes"))))
        .collect();
    (done, sched)
}

pub(super) fn run_alone(req: &SeqSpec) -> (Vec<TokenId>, FinishReason) {
    let mut cfg = test_config(256, 1, 256);
    cfg.prefix_cache = false;
    let (mut out, _) = run_all(cfg, std::slice::from_ref(req), &[0]);
    out.remove(&req.id).expect("ran")
}

pub(super) fn spec(id: u64, prompt: Vec<TokenId>, max_new: usize) -> SeqSpec {
    SeqSpec {
        id: SeqId(id),
        prompt,
        max_new_tokens: Some(max_new),
        ignore_eos: true,
    }
}

/// Runs one step with the fake "model" and commits it.
pub(super) fn step(sched: &mut Scheduler, backend: &mut FakeBackend) -> (StepPlan, Vec<SeqEvent>) {
    let plan = sched.schedule();
    let sampled = backend.execute(&plan, sched.config());
    let events = sched.commit(&plan, &sampled);
    sched.check_invariants();
    (plan, events)
}

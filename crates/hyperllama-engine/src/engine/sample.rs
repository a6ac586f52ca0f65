//! Sampling a step's results: every sampled item of an executed plan, each under its own
//! sampler and constraint, on the engine's sampling threads when the batch is large.
//!
//! # Invariants
//! - Items are independent: the tokens of each item depend only on its own rows, sampler,
//!   constraint and history, so sampling them on several threads gives what one thread gives.
//! - The results come back in plan order, one entry per sampled item.
//! - Only the engine thread calls the backend (fetching rows); sampling threads read the
//!   fetched rows, which stay valid until the next `execute`.

use std::collections::HashMap;

use hyperllama_core::constraint::ConstraintError;
use hyperllama_core::logprobs::token_logprobs;
use hyperllama_core::sampling::Sampler;
use hyperllama_core::sched::{PlanItem, StepPlan};
use hyperllama_core::{SeqId, TokenId};

use super::{Live, LoopState};
use crate::backend::StepBackend;

/// Fewest sampled items per chunk handed to a sampling thread: below that a chunk costs more
/// than it saves (an item is at least one pass over its logits row, 200 KB for a 50k
/// vocabulary).
const MIN_ITEMS_PER_SAMPLE_THREAD: usize = 4;

/// An item's tokens, and the error of its constraint if that allowed no token.
type Sampled = (Vec<TokenId>, Option<ConstraintError>);

/// One sampled item: its request's state (none if the request is gone), the plan item, its
/// first logits row, the rows once fetched, and the sequence's tokens so far.
struct Task<'a> {
    live: Option<&'a mut Live>,
    item: &'a PlanItem,
    first_row: usize,
    rows: Vec<&'a [f32]>,
    history: &'a [TokenId],
}

impl<'a> Task<'a> {
    /// Fetches the item's logits rows from the backend (on the engine thread).
    fn fetch(&mut self, backend: &'a dyn StepBackend) {
        let rows = self.first_row..self.first_row + self.item.n_rows();
        self.rows.clear();
        self.rows.extend(rows.map(|r| backend.logits(r)));
    }

    fn run(&mut self) -> Sampled {
        match &mut self.live {
            Some(l) => sample_item(l, &self.rows, self.item, self.history),
            None => (vec![hyperllama_core::sampling::argmax(self.rows[0])], None),
        }
    }
}

impl LoopState<'_> {
    /// Samples every sampled item of the executed `plan`: its tokens in plan order, and the
    /// sequences whose constraint failed. Items are independent (each its own sampler and
    /// constraint), so a large batch is sampled in chunks on the sampling threads: the engine
    /// thread fetches a chunk's logits rows (one FFI call each) and hands the chunk to a
    /// sampling thread before it fetches the next, so that fetching overlaps sampling, and
    /// samples the last chunk itself.
    pub(super) fn sample(
        &mut self,
        plan: &StepPlan,
        backend: &dyn StepBackend,
    ) -> (Vec<Vec<TokenId>>, Vec<(SeqId, ConstraintError)>) {
        let mut lives: HashMap<SeqId, &mut Live> =
            self.live.iter_mut().map(|(&id, l)| (id, l)).collect();
        let mut tasks = Vec::with_capacity(plan.n_samples());
        let mut row = 0;
        for item in plan.items.iter().filter(|i| i.sample) {
            tasks.push(Task {
                live: lives.remove(&item.seq),
                item,
                first_row: row,
                rows: Vec::with_capacity(item.n_rows()),
                history: self.sched.tokens(item.seq).unwrap_or(&[]),
            });
            row += item.n_rows();
        }
        let mut results: Vec<Sampled> = Vec::new();
        results.resize_with(tasks.len(), || (Vec::new(), None));
        let mut fetching = std::time::Duration::ZERO;
        match &self.sample_pool {
            Some(pool) if tasks.len() >= 2 * MIN_ITEMS_PER_SAMPLE_THREAD => {
                // One chunk per thread, the engine thread's included: the items cost about
                // the same.
                let per_chunk = tasks
                    .len()
                    .div_ceil(pool.current_num_threads() + 1)
                    .max(MIN_ITEMS_PER_SAMPLE_THREAD);
                pool.in_place_scope(|scope| {
                    let mut chunks = tasks
                        .chunks_mut(per_chunk)
                        .zip(results.chunks_mut(per_chunk))
                        .peekable();
                    while let Some((chunk, out)) = chunks.next() {
                        let t = std::time::Instant::now();
                        for task in chunk.iter_mut() {
                            task.fetch(backend);
                        }
                        fetching += t.elapsed();
                        let mut work = move || {
                            for (task, o) in chunk.iter_mut().zip(out.iter_mut()) {
                                *o = task.run();
                            }
                        };
                        if chunks.peek().is_some() {
                            scope.spawn(move |_| work());
                        } else {
                            work();
                        }
                    }
                });
            }
            _ => {
                let t = std::time::Instant::now();
                for task in &mut tasks {
                    task.fetch(backend);
                }
                fetching = t.elapsed();
                for (task, o) in tasks.iter_mut().zip(results.iter_mut()) {
                    *o = task.run();
                }
            }
        }
        self.rows_time = fetching;
        let mut sampled = Vec::with_capacity(results.len());
        let mut dead = Vec::new();
        for (task, (tokens, err)) in tasks.iter().zip(results) {
            if let Some(e) = err {
                dead.push((task.item.seq, e));
            }
            sampled.push(tokens);
        }
        (sampled, dead)
    }
}

/// Samples a sequence's next token: under its constraint (restricted logits, then the
/// grammar advanced), with its log-probabilities when asked. With a `draft` token, verifies
/// it instead ([`Sampler::verify`]) and also says whether it was accepted.
fn sample_live(
    l: &mut Live,
    logits: &[f32],
    history: &[TokenId],
    draft: Option<TokenId>,
) -> Result<(TokenId, bool), ConstraintError> {
    let pick = |sampler: &mut Sampler, logits: &[f32]| match draft {
        Some(d) => sampler.verify(logits, history, d),
        None => (sampler.sample(logits, history), false),
    };
    let (token, accepted) = match l.constraint.as_mut() {
        Some(c) => {
            l.scratch.clear();
            l.scratch.extend_from_slice(logits);
            c.restrict(&mut l.scratch)?;
            let picked = pick(&mut l.sampler, &l.scratch);
            c.commit(picked.0)?;
            picked
        }
        None => pick(&mut l.sampler, logits),
    };
    if let Some(n) = l.logprobs {
        l.pending_logprobs
            .push_back(token_logprobs(logits, token, n));
    }
    Ok((token, accepted))
}

/// Samples one item's tokens: its accepted drafts, then one token at the first rejected
/// position (or after the last draft). On a constraint error, the error and what was
/// sampled before it plus the argmax (the sequence then ends).
fn sample_item(
    l: &mut Live,
    rows: &[&[f32]],
    item: &PlanItem,
    history: &[TokenId],
) -> (Vec<TokenId>, Option<ConstraintError>) {
    let draft = item.draft();
    let mut out = Vec::with_capacity(draft.len() + 1);
    // With drafts, the history grows by each accepted token.
    let mut grown = (!draft.is_empty()).then(|| history.to_vec());
    // One row per draft token plus one after the last.
    for (j, &logits) in rows.iter().enumerate().take(draft.len() + 1) {
        let h = grown.as_deref().unwrap_or(history);
        match sample_live(l, logits, h, draft.get(j).copied()) {
            Ok((token, accepted)) => {
                out.push(token);
                if !accepted {
                    break;
                }
                if let Some(g) = grown.as_mut() {
                    g.push(token);
                }
            }
            Err(e) => {
                out.push(hyperllama_core::sampling::argmax(logits));
                return (out, Some(e));
            }
        }
    }
    if !draft.is_empty() {
        let n_acc = out.len() - 1;
        l.draft.record(draft.len(), n_acc);
        l.n_drafted += draft.len();
        l.n_accepted += n_acc;
    }
    (out, None)
}

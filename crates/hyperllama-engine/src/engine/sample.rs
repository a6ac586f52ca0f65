//! Sampling a step's results: every sampled item of an executed plan, each under its own
//! sampler and constraint, on the engine's sampling threads when the batch is large.
//!
//! # Invariants
//! - Items are independent: the tokens of each item depend only on its own rows, sampler,
//!   constraint and history, so sampling them on several threads gives what one thread gives.
//! - The results come back in plan order, one entry per sampled item.
//! - Only the engine thread calls the backend (fetching rows); sampling threads read the
//!   fetched rows, which stay valid until the next `execute`.
//! - A sampling thread waits for its chunk's rows within one sampling scope only (from shortly
//!   before the device is due, or from when the rows are there): every chunk is published (its
//!   rows, or `None` when fetching ended early) before the scope ends, so no thread waits
//!   forever.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hyperllama_core::constraint::ConstraintError;
use hyperllama_core::logprobs::token_logprobs;
use hyperllama_core::sampling::Sampler;
use hyperllama_core::sched::{PlanItem, StepPlan};
use hyperllama_core::{SeqId, TokenId};

use super::timing::Shape;
use super::{Live, LoopState};
use crate::backend::StepBackend;

/// Fewest sampled items per chunk handed to a sampling thread: below that a chunk costs more
/// than it saves (an item is at least one pass over its logits row, 200 KB for a 50k
/// vocabulary).
const MIN_ITEMS_PER_SAMPLE_THREAD: usize = 4;

/// An item's tokens, and the error of its constraint if that allowed no token.
type Sampled = (Vec<TokenId>, Option<ConstraintError>);

/// One sampled item: its request's state (none if the request is gone), the plan item, its
/// first logits row, and the sequence's tokens so far.
struct Task<'a> {
    live: Option<&'a mut Live>,
    item: &'a PlanItem,
    first_row: usize,
    history: &'a [TokenId],
}

impl Task<'_> {
    /// Samples the item from `rows`, the fetched rows of its chunk, which start at row `base`.
    fn run(&mut self, rows: &[&[f32]], base: usize) -> Sampled {
        let start = self.first_row - base;
        let rows = &rows[start..start + self.item.n_rows()];
        match &mut self.live {
            Some(l) => sample_item(l, rows, self.item, self.history),
            None => (vec![hyperllama_core::sampling::argmax(rows[0])], None),
        }
    }
}

/// The logits rows of a chunk of consecutive tasks.
fn chunk_rows(chunk: &[Task<'_>]) -> Range<usize> {
    match (chunk.first(), chunk.last()) {
        (Some(first), Some(last)) => first.first_row..last.first_row + last.item.n_rows(),
        _ => 0..0,
    }
}

/// Fetches rows from the backend (on the engine thread: one FFI call each).
fn fetch(backend: &dyn StepBackend, rows: Range<usize>) -> Vec<&[f32]> {
    rows.map(|r| backend.logits(r)).collect()
}

/// Samples a chunk of tasks from its fetched `rows` (starting at row `base`) into `out`.
fn sample_chunk(chunk: &mut [Task<'_>], rows: &[&[f32]], base: usize, out: &mut [Sampled]) {
    for (task, o) in chunk.iter_mut().zip(out.iter_mut()) {
        *o = task.run(rows, base);
    }
}

/// Waits until the engine thread publishes a chunk's rows: spinning, then yielding its core,
/// then (after [`NAP_AFTER`], when the device is later than expected) napping between looks.
fn wait_for<'r, 'b>(ready: &'r OnceLock<Option<Vec<&'b [f32]>>>) -> Option<&'r [&'b [f32]]> {
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        if let Some(rows) = ready.get() {
            return rows.as_deref();
        }
        if spins < SPINS_BEFORE_YIELD {
            spins += 1;
            std::hint::spin_loop();
        } else if started.elapsed() < NAP_AFTER {
            std::thread::yield_now();
        } else {
            std::thread::sleep(NAP);
        }
    }
}

/// Spins of a waiting sampling thread before it yields its core: about the time the engine
/// thread takes to fetch a few rows.
const SPINS_BEFORE_YIELD: u32 = 1 << 14;
/// How long a sampling thread waits for its rows without sleeping: the device's step time
/// varies by a few tenths of a millisecond around what [`super::timing::DeviceClock`] expects.
const NAP_AFTER: Duration = Duration::from_millis(2);
/// A waiting sampling thread's nap once the rows are late.
const NAP: Duration = Duration::from_micros(50);

/// Publishes `None` to every chunk not yet published when dropped, so that sampling threads
/// waiting for rows return even if fetching panicked.
struct Abandon<'r, 'b>(&'r [OnceLock<Option<Vec<&'b [f32]>>>]);

impl Drop for Abandon<'_, '_> {
    fn drop(&mut self) {
        for ready in self.0 {
            let _ = ready.set(None);
        }
    }
}

/// When a step's logits were on the host, and how long the engine thread slept before
/// waiting for them.
pub(super) struct SampleTiming {
    pub ready: Instant,
    pub slept: Duration,
}

impl LoopState<'_> {
    /// Waits for the executed `plan`'s logits (launched at `launched`), then samples every
    /// sampled item: its tokens in plan order, and the sequences whose constraint failed.
    /// Items are independent (each its own sampler and constraint), so a large batch is
    /// sampled in chunks on the sampling threads. They start before the logits are on the
    /// host and wait for their chunk's rows, which the engine thread then fetches and
    /// publishes chunk by chunk; it samples the last chunk itself. Waking a sleeping thread
    /// takes about as long as sampling its chunk, so for a decode step whose device time is
    /// known (`shape`, see [`super::timing::DeviceClock`]) the engine thread sleeps until
    /// shortly before the logits are due and starts them then, instead of waiting in the
    /// device's synchronization and starting them after.
    pub(super) fn sample(
        &mut self,
        plan: &StepPlan,
        backend: &dyn StepBackend,
        launched: Instant,
        shape: Option<Shape>,
    ) -> (
        Vec<Vec<TokenId>>,
        Vec<(SeqId, ConstraintError)>,
        SampleTiming,
    ) {
        // The first row waits for the device (asynchronous backends).
        let wait = || {
            if plan.n_rows() > 0 {
                let _ = backend.logits(0);
            }
            Instant::now()
        };
        let mut timing = SampleTiming {
            ready: launched,
            slept: Duration::ZERO,
        };
        let mut lives: HashMap<SeqId, &mut Live> =
            self.live.iter_mut().map(|(&id, l)| (id, l)).collect();
        let mut tasks = Vec::with_capacity(plan.n_samples());
        let mut row = 0;
        for item in plan.items.iter().filter(|i| i.sample) {
            tasks.push(Task {
                live: lives.remove(&item.seq),
                item,
                first_row: row,
                history: self.sched.tokens(item.seq).unwrap_or(&[]),
            });
            row += item.n_rows();
        }
        let mut results: Vec<Sampled> = Vec::new();
        results.resize_with(tasks.len(), || (Vec::new(), None));
        let mut fetching = Duration::ZERO;
        match &self.sample_pool {
            Some(pool) if tasks.len() >= 2 * MIN_ITEMS_PER_SAMPLE_THREAD => {
                // One chunk per thread, the engine thread's included: the items cost about
                // the same.
                let per_chunk = tasks
                    .len()
                    .div_ceil(pool.current_num_threads() + 1)
                    .max(MIN_ITEMS_PER_SAMPLE_THREAD);
                let ranges: Vec<Range<usize>> = tasks.chunks(per_chunk).map(chunk_rows).collect();
                // One per chunk but the last, which the engine thread samples itself.
                let published: Vec<OnceLock<Option<Vec<&[f32]>>>> =
                    (1..ranges.len()).map(|_| OnceLock::new()).collect();
                // Sampling threads start before the logits only when the device's time is
                // known: they wait by spinning.
                let now = Instant::now();
                let early = self.clock.wake_at(shape, launched, now);
                match early {
                    Some(at) => {
                        std::thread::sleep(at - now);
                        timing.slept = now.elapsed();
                    }
                    None => timing.ready = wait(),
                }
                pool.in_place_scope(|scope| {
                    let abandon = Abandon(&published);
                    let mut chunks = tasks
                        .chunks_mut(per_chunk)
                        .zip(results.chunks_mut(per_chunk))
                        .zip(&ranges);
                    let own = chunks.next_back();
                    for (((chunk, out), range), ready) in chunks.zip(&published) {
                        let base = range.start;
                        scope.spawn(move |_| {
                            if let Some(rows) = wait_for(ready) {
                                sample_chunk(chunk, rows, base, out);
                            }
                        });
                    }
                    if early.is_some() {
                        timing.ready = wait();
                    }
                    let t = Instant::now();
                    for (range, ready) in ranges.iter().zip(&published) {
                        let _ = ready.set(Some(fetch(backend, range.clone())));
                    }
                    if let Some(((chunk, out), range)) = own {
                        let rows = fetch(backend, range.clone());
                        fetching = t.elapsed();
                        sample_chunk(chunk, &rows, range.start, out);
                    }
                    drop(abandon);
                });
            }
            _ => {
                timing.ready = wait();
                let t = Instant::now();
                let rows = fetch(backend, 0..row);
                fetching = t.elapsed();
                sample_chunk(&mut tasks, &rows, 0, &mut results);
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
        (sampled, dead, timing)
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

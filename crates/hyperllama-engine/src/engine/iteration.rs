//! One iteration of the engine loop, on the loop's state: take queued commands (blocking only
//! when idle), drop sequences whose client left, draft, `schedule` → `execute` → sample →
//! `commit`, and turn the scheduler's events into each request's stream (text through its
//! UTF-8 and stop-string filters, logprobs, the final `Done`). Part of the engine loop; see
//! the parent module for the invariants.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use hyperllama_core::logprobs::MAX_TOP_LOGPROBS;
use hyperllama_core::sampling::Sampler;
use hyperllama_core::sched::{FinishReason, SeqEvent, SeqSpec};
use hyperllama_core::spec::DraftControl;
use hyperllama_core::stop::{StopMatcher, StopOutcome};
use hyperllama_core::utf8::Utf8Stream;
use hyperllama_core::SeqId;

use super::timing::{Shape, StepTrace};
use super::{
    fallback_seed, Alternative, Command, EngineStats, Event, Live, LoopState, TokenLogprob,
    PROVEN_ONLY_BATCH, PROVEN_ONLY_RATIO,
};
use crate::backend::StepBackend;
use crate::drafter::DraftWant;
use crate::llama::Model;
use crate::Error;

impl LoopState<'_> {
    pub(super) fn stats(&self) -> EngineStats {
        EngineStats {
            n_running: self.sched.n_running(),
            n_waiting: self.sched.n_waiting(),
            n_kv_used: self.sched.n_kv_used(),
            n_kv_cached: self.sched.n_kv_cached(),
            n_kv_cells: self.sched.config().n_kv_cells,
            n_preemptions: self.sched.n_preemptions(),
            n_steps: self.n_steps,
            n_drafted: self.n_drafted,
            n_accepted: self.n_accepted,
        }
    }

    /// Takes queued commands; blocks while there is nothing to do (`embedding` says whether
    /// embedding work is pending). Returns false to stop.
    pub(super) fn intake(&mut self, rx: &Receiver<Command>, embedding: bool) -> bool {
        if !self.sched.has_work() && !embedding {
            self.settle();
            let Ok(cmd) = rx.recv() else {
                return false;
            };
            let mut gathered = prompt_len(&cmd);
            if !self.accept(cmd) {
                return false;
            }
            if let Some(window) = self.gather.filter(|_| self.sched.has_work()) {
                // The requests arriving with this one go into the same first step, until
                // their prompts fill it.
                let first = Instant::now();
                let step = self.sched.config().max_batched_tokens;
                while gathered < step {
                    let left = window.cap.saturating_sub(first.elapsed());
                    match rx.recv_timeout(window.quiet.min(left)) {
                        Ok(cmd) => {
                            gathered += prompt_len(&cmd);
                            if !self.accept(cmd) {
                                return false;
                            }
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return true,
                    }
                }
            }
        }
        loop {
            match rx.try_recv() {
                Ok(cmd) => {
                    if !self.accept(cmd) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => {
                    return self.sched.has_work() || embedding || !self.new_embeds.is_empty()
                }
            }
        }
    }

    pub(super) fn accept(&mut self, cmd: Command) -> bool {
        let (id, req, constraint, tx, submitted, ticket) = match cmd {
            Command::Shutdown => return false,
            Command::Embed(job) => {
                self.new_embeds.push(job);
                return true;
            }
            Command::Generate {
                id,
                req,
                constraint,
                tx,
                submitted,
                ticket,
            } => (id, req, constraint, tx, submitted, ticket),
        };
        let n_prompt = req.prompt.len();
        let spec = SeqSpec {
            id,
            prompt: req.prompt,
            max_new_tokens: req.num_predict,
            ignore_eos: req.ignore_eos,
        };
        if let Err(e) = self.sched.add(spec) {
            let _ = tx.send(Event::Error(e.to_string()));
            return true;
        }
        self.live.insert(
            id,
            Live {
                tx,
                sampler: Sampler::new(req.sampling, fallback_seed()),
                utf8: Utf8Stream::new(),
                stop: StopMatcher::new(req.stop),
                submitted,
                _ticket: ticket,
                first_scheduled: None,
                prompt_done: None,
                n_prompt,
                n_cached: 0,
                n_eval: 0,
                logprobs: req.logprobs.map(|n| n.min(MAX_TOP_LOGPROBS)),
                pending_logprobs: VecDeque::new(),
                constraint,
                scratch: Vec::new(),
                draft: DraftControl::new(),
                n_drafted: 0,
                n_accepted: 0,
            },
        );
        true
    }

    pub(super) fn step(
        &mut self,
        model: &Model,
        backend: &mut dyn StepBackend,
    ) -> Result<(), Error> {
        // Clients that left: free their KV now.
        let gone: Vec<SeqId> = self
            .live
            .iter()
            .filter(|(_, l)| l.tx.is_closed())
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            self.sched.abort(id);
            self.live.remove(&id);
        }
        if !self.sched.has_work() {
            self.settle();
            return Ok(());
        }
        let plan_started = Instant::now();
        if self.speculative {
            self.draft();
        }
        let plan = self.sched.schedule();
        let now = Instant::now();
        for item in &plan.items {
            if let Some(l) = self.live.get_mut(&item.seq) {
                l.first_scheduled.get_or_insert(now);
            }
        }
        self.n_steps += 1;
        // A speculating item is a decode token plus its drafts.
        let (n_decode, n_prefill) = plan.items.iter().fold((0, 0), |(d, p), i| {
            if i.tokens.len() == i.n_draft + 1 {
                (d + 1, p)
            } else {
                (d, p + i.tokens.len())
            }
        });
        if n_prefill > 0 || !self.early_launch {
            // llama.cpp returns from a step of prompt chunks (and from any step with layers
            // on the CPU) only once it is computed: the last step's events go out first.
            self.settle();
        }
        let started = Instant::now();
        let executed = backend.execute(&plan);
        let launched = started.elapsed();
        let launched_at = started + launched;
        let stats = backend.last_stats();
        // The last step's events and trace go out while the device computes this one.
        self.settle();
        if let Err(e) = executed {
            if e.is_retryable() {
                tracing::debug!(error = %e, "step had no effect; preempting and retrying");
                self.sched.abandon(&plan);
                return Ok(());
            }
            return Err(e.into());
        }
        // Decode steps' device time is learned, so that the sampling threads wake in time.
        let shape = (n_prefill == 0).then(|| Shape {
            rows: plan.n_rows(),
            tokens: n_decode + plan.n_draft(),
        });
        let (sampled, dead, timing) = self.sample(&plan, &*backend, launched_at, shape);
        let computed = timing.ready - started;
        self.clock.record(shape, timing.ready - launched_at);
        self.pacer
            .observe(n_decode, n_prefill, plan.n_draft(), computed.as_secs_f64());
        self.sched.set_prefill_cap(self.pacer.prefill_cap());
        let sampled_at = started.elapsed();
        self.n_drafted += plan.n_draft() as u64;
        self.n_accepted += plan
            .items
            .iter()
            .filter(|i| i.sample)
            .zip(&sampled)
            .map(|(_, t)| t.len() as u64 - 1)
            .sum::<u64>();
        // A sequence whose constraint allows nothing more ends before its token is committed
        // (with no live state, the token's event is not sent), then leaves the scheduler.
        for (seq, e) in &dead {
            tracing::warn!(error = %e, "ending a sequence whose output constraint allows no token");
            if let Some(l) = self.live.remove(seq) {
                l.finish(FinishReason::Constraint, &mut self.outbox);
            }
        }
        for event in self.sched.commit_spec(&plan, &sampled) {
            if self.defers(&event) {
                self.later.push(event);
            } else {
                self.apply(model, event);
            }
        }
        for (seq, _) in dead {
            self.sched.stop(seq);
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.trace = Some(StepTrace {
            t_ms: ms(started - self.epoch),
            n_items: plan.items.len(),
            n_decode,
            n_prefill,
            n_draft: plan.n_draft(),
            n_clear: plan.clear.len(),
            n_copy: plan.copy.len(),
            passes: stats.passes,
            padded: stats.padded,
            launch_ms: ms(launched),
            compute_ms: ms(computed),
            slept_ms: ms(timing.slept),
            sample_ms: ms(sampled_at - computed),
            rows_ms: ms(self.rows_time),
            ms: ms(started.elapsed()),
            schedule_ms: ms(started - plan_started),
        });
        Ok(())
    }

    pub(super) fn apply(&mut self, model: &Model, event: SeqEvent) {
        match event {
            SeqEvent::PromptDone { seq, n_cached, .. } => {
                if let Some(l) = self.live.get_mut(&seq) {
                    if l.prompt_done.is_none() {
                        l.prompt_done = Some(Instant::now());
                        l.n_cached = n_cached;
                    }
                }
            }
            SeqEvent::Token { seq, token } => {
                let Some(l) = self.live.get_mut(&seq) else {
                    return;
                };
                l.n_eval += 1;
                let bytes = model.token_bytes(token);
                let text = l.utf8.push(&bytes);
                let logprobs = l.pending_logprobs.pop_front().map(|lp| {
                    Box::new(TokenLogprob {
                        logprob: lp.logprob,
                        bytes,
                        top: lp
                            .top
                            .into_iter()
                            .map(|(token, logprob)| Alternative {
                                token,
                                bytes: model.token_bytes(token),
                                logprob,
                            })
                            .collect(),
                    })
                });
                let (text, stopped) = match l.stop.push(&text) {
                    StopOutcome::Continue(text) => (text, false),
                    StopOutcome::Stopped(text) => (text, true),
                };
                self.outbox.push((
                    l.tx.clone(),
                    Event::Token {
                        token,
                        text,
                        logprobs,
                    },
                ));
                if stopped {
                    self.sched.stop(seq);
                    if let Some(mut l) = self.live.remove(&seq) {
                        // The stop string swallowed the rest; nothing more to release.
                        l.utf8 = Utf8Stream::new();
                        l.stop = StopMatcher::default();
                        l.finish(FinishReason::Stop, &mut self.outbox);
                    }
                }
            }
            SeqEvent::Finished { seq, reason } => {
                if let Some(l) = self.live.remove(&seq) {
                    l.finish(reason, &mut self.outbox);
                }
            }
        }
    }

    /// Gives every decoding sequence a draft of its current length from the draft source
    /// (prompt lookup or a draft model), cut where its constraint rejects it, where drafting
    /// pays: a draft token costs about what a
    /// whole sequence's decode token costs in a large batch on a CPU, so there only a
    /// sequence alone (or nearly) drafts (see [`Pacer::draft_cost_ratio`]).
    pub(super) fn draft(&mut self) {
        let decoding: Vec<(SeqId, usize)> = self
            .live
            .keys()
            .map(|&id| (id, self.sched.draft_room(id)))
            .filter(|&(_, room)| room > 0)
            .collect();
        if decoding.is_empty() {
            return;
        }
        // Every so often a plain step re-measures what decoding alone costs.
        let plain = self.pacer.wants_plain_step();
        // A draft token pays when accepted more often than this.
        let n_decode = decoding.len();
        let min_acceptance = self.pacer.draft_cost_ratio(n_decode);
        let mut wants = Vec::new();
        for (id, room) in decoding {
            let Some(l) = self.live.get_mut(&id) else {
                continue;
            };
            // A seeded sampled request drafts independently of timing, so that its draws,
            // and so its text, are reproducible.
            let p = l.sampler.params();
            let reproducible = p.seed.is_some() && p.temperature > 0.0;
            if !reproducible {
                if plain || min_acceptance.is_some_and(|r| r >= 1.0) {
                    continue;
                }
                if let Some(r) = min_acceptance {
                    l.draft.set_min_acceptance(r as f32);
                    // In a large batch where drafts pay only when nearly all accepted (a
                    // CPU), only sequences whose drafts proved themselves draft: 16 fresh
                    // sequences drafting at once made Gemma 3's steps several times longer
                    // (sweep at 16 users: 0.67x the output without speculation), since with
                    // KV streams llama.cpp computes a step's sequences of different token
                    // counts in separate micro-batches, a cost the fitted line does not see.
                    if n_decode >= PROVEN_ONLY_BATCH
                        && r >= PROVEN_ONLY_RATIO
                        && !l.draft.is_proven()
                    {
                        continue;
                    }
                }
            }
            let k = l.draft.next_len().min(room);
            let Some(tokens) = self.sched.tokens(id) else {
                continue;
            };
            wants.push(DraftWant {
                seq: id,
                tokens,
                k,
                min_ngram: l.draft.min_ngram(),
            });
        }
        let live = &self.live;
        let drafts = self.source.propose(&wants, &|id| live.contains_key(&id));
        let ids: Vec<SeqId> = wants.iter().map(|w| w.seq).collect();
        for (id, mut draft) in ids.into_iter().zip(drafts) {
            if let Some(c) = self.live.get_mut(&id).and_then(|l| l.constraint.as_mut()) {
                let n = c.valid_prefix(&draft);
                draft.truncate(n);
            }
            if !draft.is_empty() {
                self.sched.set_draft(id, draft);
            }
        }
    }

    /// Sends the events of [`LoopState::outbox`].
    pub(super) fn flush(&mut self) {
        for (tx, event) in self.outbox.drain(..) {
            let _ = tx.send(event);
        }
    }

    /// Whether an event of the step just computed is turned into its request's stream only
    /// once the next step is launched ([`LoopState::later`]): a token or the end of a sequence
    /// without stop strings, which cannot stop it (its text, UTF-8 and stop checks are on no
    /// step's critical path then). A sequence's events are all deferred or none, so they stay
    /// in order.
    fn defers(&self, event: &SeqEvent) -> bool {
        match event {
            SeqEvent::Token { seq, .. } | SeqEvent::Finished { seq, .. } => {
                self.live.get(seq).is_some_and(|l| l.stop.is_empty())
            }
            SeqEvent::PromptDone { .. } => false,
        }
    }

    /// Turns the deferred events into the requests' streams, sends the pending events and
    /// writes the last step's trace: while the device computes a step, or before the loop
    /// waits for work.
    fn settle(&mut self) {
        let model = self.model;
        for event in std::mem::take(&mut self.later) {
            self.apply(model, event);
        }
        self.flush();
        if let Some(trace) = self.trace.take() {
            trace.emit();
        }
    }

    pub(super) fn fail_all(&mut self, message: &str) {
        self.settle();
        for (id, l) in self.live.drain() {
            self.sched.abort(id);
            let _ = l.tx.send(Event::Error(message.to_owned()));
        }
    }
}

/// The prompt tokens a command brings (0 but for a generation).
fn prompt_len(cmd: &Command) -> usize {
    match cmd {
        Command::Generate { req, .. } => req.prompt.len(),
        _ => 0,
    }
}

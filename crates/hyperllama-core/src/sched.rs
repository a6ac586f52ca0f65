//! The token-level scheduler: which sequences run in the next step, and with how many tokens.
//!
//! One engine iteration is `schedule` → execute (the backend) → `commit`. There are no
//! prefill or decode modes: every sequence carries `n_computed` (tokens whose KV exists) and its
//! tokens; the scheduler closes the gap in chunks within a token budget. Running sequences'
//! decode tokens are planned first, then prompt chunks, then new admissions (first come, first
//! served). A prompt longer than the budget is prefilled over several steps. With
//! `equal_chunk_slack` (per-slot KV streams, where llama.cpp computes one pass over the weights
//! per distinct number of tokens per sequence), a step's prompt chunks that are a few tokens
//! longer than a shorter one are cut to its length while more prompt work follows, and those
//! few tokens then go one per step, beside the decode tokens (a step that ends the prompts
//! computes them whole); and sequences that arrive together (between the same two steps) are
//! admitted shortest prompt first, so that a step's prompts have nearly equal lengths.
//!
//! KV capacity is a ledger of blocks ([`KvPool`]). With prefix caching on, a sequence that ends
//! (or is cancelled, or preempted) leaves its KV behind as a *cache entry* that keeps its slot;
//! a new sequence whose prompt starts with indexed full blocks shares them (the plan copies the
//! positions from the holder's slot into the new slot) and computes only the rest. It shares
//! the holder's own blocks, which hold the same tokens as the indexed ones but are not always
//! the same blocks (a prompt that computed a shared stem itself has blocks of its own for it):
//! keeping the holder keeps everything the new sequence shares. Entries are
//! evicted least recently used first, when blocks or slots are needed, and when the cells only
//! they hold exceed both `cache_cells` and the cells running sequences hold (llama.cpp's
//! unified cache makes every step attend over every cell in use). When a running sequence
//! needs a block and none can be reclaimed, the newest running sequence is preempted: it
//! becomes a cache entry and waits at the head of the queue to be resumed or recomputed.
//!
//! Speculative decoding: before a step, the engine may give a decoding sequence draft tokens
//! ([`Scheduler::set_draft`], at most [`Scheduler::draft_room`]). The sequence's decode item
//! then carries its last sampled token plus the drafts, and the backend returns logits after
//! each of them; the drafts count against the token budget (a later running sequence always
//! keeps room for its one token) and take only free KV blocks (they never evict the prefix
//! cache nor preempt anyone). [`Scheduler::commit_spec`] takes each sampled item's accepted
//! tokens (the accepted drafts plus one sampled token); the KV of the rejected positions is
//! trimmed by the next plan (`trim`), blocks left wholly unused are freed, and only committed
//! tokens' blocks are ever hashed into the prefix index.
//!
//! # Invariants
//! - A plan never holds more than `max_batched_tokens` tokens nor more than `max_seqs`
//!   sequences, and no sequence appears twice in one plan.
//! - Every block's reference count equals the number of block tables (running sequences and
//!   cache entries) containing it ([`Scheduler::check_invariants`]).
//! - Slots are partitioned between running sequences, cache entries and the free list; a slot
//!   whose KV is dropped is listed in the next plan's `clear`, which the backend applies before
//!   the plan's copies and tokens. A copy's source is never cleared in the same plan.
//! - A sequence's KV in the backend holds exactly its `n_computed` positions once the next
//!   plan's trims are applied: rejected draft positions are always listed there.
//! - Only `schedule`, `commit`, `abandon`, `add`, `abort` and `clear_cache` change state; a
//!   plan is plain data with no references into the scheduler.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::ids::{SeqId, SlotId, TokenId};
use crate::kv::{BlockId, KvPool};

mod cache;
mod chunks;
mod pacing;
mod plan;
use chunks::chunk_len;
pub use pacing::Pacer;
pub use plan::{
    AdmissionError, FinishReason, KvCopy, KvTrim, PlanItem, SchedulerConfig, SeqEvent, SeqSpec,
    StepPlan,
};

#[derive(Debug)]
struct Sequence {
    tokens: Vec<TokenId>,
    n_prompt: usize,
    n_computed: usize,
    n_planned: usize,
    n_cached: usize,
    max_new_tokens: Option<usize>,
    ignore_eos: bool,
    slot: Option<SlotId>,
    table: Vec<BlockId>,
    hashes: Vec<u64>,
    prompt_reported: bool,
    /// Draft tokens for the next step (set by the engine, consumed by `schedule`).
    draft: Vec<TokenId>,
    /// Its prompt chunk was cut to a shorter one of the same step: the few tokens left are
    /// computed one per step (`SchedulerConfig::equal_chunk_slack`).
    trickle: bool,
    /// The scheduler's clock when it was added: sequences added between the same two steps
    /// arrived together.
    arrived: u64,
}

impl Sequence {
    fn n_generated(&self) -> usize {
        self.tokens.len() - self.n_prompt
    }

    /// Positions still to compute: the rest of its prompt (or of a resumed sequence), 1 while
    /// decoding.
    fn left(&self) -> usize {
        self.tokens.len() - self.n_computed
    }
}

/// KV left behind by a sequence, holding a slot, shareable by prefix.
#[derive(Debug)]
struct CacheEntry {
    table: Vec<BlockId>,
    /// Positions its slot holds.
    n_tokens: usize,
    last_used: u64,
}

/// The scheduler; see the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedulerConfig,
    pool: KvPool,
    seqs: HashMap<SeqId, Sequence>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    cache: HashMap<SlotId, CacheEntry>,
    free_slots: Vec<SlotId>,
    to_clear: Vec<SlotId>,
    to_trim: Vec<KvTrim>,
    clock: u64,
    n_preemptions: u64,
    /// Most prompt tokens computed in a step that also decodes (see [`Self::set_prefill_cap`]).
    prefill_cap: usize,
}

impl Scheduler {
    /// A scheduler with no sequences. The budget must fit one decode token per sequence, and
    /// the KV must hold one whole sequence.
    pub fn new(cfg: SchedulerConfig) -> Self {
        assert!(cfg.max_seqs >= 1 && cfg.max_batched_tokens >= cfg.max_seqs);
        assert!(cfg.n_slots >= cfg.max_seqs && cfg.block_size >= 1);
        let n_blocks = cfg.n_kv_cells / cfg.block_size;
        assert!(
            cfg.n_ctx_per_seq >= 2 && n_blocks >= cfg.n_ctx_per_seq.div_ceil(cfg.block_size),
            "the KV cache must hold one whole sequence"
        );
        let free_slots = (0..cfg.n_slots as u32).rev().map(SlotId).collect();
        Self {
            pool: KvPool::new(n_blocks, cfg.block_size),
            cfg,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            cache: HashMap::new(),
            free_slots,
            prefill_cap: usize::MAX,
            to_clear: Vec::new(),
            to_trim: Vec::new(),
            clock: 0,
            n_preemptions: 0,
        }
    }

    /// The limits this scheduler was built with.
    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    /// Queues a sequence (first come, first served).
    pub fn add(&mut self, spec: SeqSpec) -> Result<(), AdmissionError> {
        if spec.prompt.is_empty() {
            return Err(AdmissionError::EmptyPrompt);
        }
        if spec.prompt.len() >= self.cfg.n_ctx_per_seq {
            return Err(AdmissionError::PromptTooLong {
                n_prompt: spec.prompt.len(),
                n_ctx: self.cfg.n_ctx_per_seq,
            });
        }
        if self.seqs.contains_key(&spec.id) {
            return Err(AdmissionError::DuplicateId(spec.id));
        }
        let n_prompt = spec.prompt.len();
        self.seqs.insert(
            spec.id,
            Sequence {
                tokens: spec.prompt,
                n_prompt,
                n_computed: 0,
                n_planned: 0,
                n_cached: 0,
                max_new_tokens: spec.max_new_tokens,
                ignore_eos: spec.ignore_eos,
                slot: None,
                table: Vec::new(),
                hashes: Vec::new(),
                prompt_reported: false,
                draft: Vec::new(),
                trickle: false,
                arrived: self.clock,
            },
        );
        self.waiting.push_back(spec.id);
        if self.cfg.equal_chunk_slack > 0 {
            self.order_arrival(n_prompt);
        }
        Ok(())
    }

    /// With equal chunks: moves the sequence just queued ahead of those that arrived with it
    /// (since the last step) with longer prompts. Shortest first within a burst groups
    /// prompts of nearly equal length into the same steps, so their chunks are cut little
    /// (and the burst's last prompt step, computed whole, has few distinct lengths). Among
    /// equal lengths the order of arrival stays.
    fn order_arrival(&mut self, n_prompt: usize) {
        let mut i = self.waiting.len() - 1;
        while i > 0 {
            let prev = &self.seqs[&self.waiting[i - 1]];
            if prev.arrived != self.clock || prev.n_prompt <= n_prompt {
                break;
            }
            self.waiting.swap(i - 1, i);
            i -= 1;
        }
    }

    /// Removes a sequence wherever it is (the client left). Its KV stops counting as used at
    /// once: it becomes an evictable cache entry, or is cleared at the next step.
    /// Returns whether it existed.
    pub fn abort(&mut self, id: SeqId) -> bool {
        if !self.seqs.contains_key(&id) {
            return false;
        }
        self.waiting.retain(|&s| s != id);
        self.running.retain(|&s| s != id);
        self.retire(id);
        true
    }

    /// Ends a sequence for a reason found outside the scheduler (a stop string).
    pub fn stop(&mut self, id: SeqId) -> bool {
        self.abort(id)
    }

    /// Whether any sequence is waiting or running.
    pub fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }

    /// Sequences waiting for admission.
    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Sequences holding KV and computing.
    pub fn n_running(&self) -> usize {
        self.running.len()
    }

    /// KV cells (counted in whole blocks) referenced by running sequences.
    pub fn n_kv_used(&self) -> usize {
        let mut seen = vec![false; self.pool.n_blocks()];
        let mut n = 0;
        for id in &self.running {
            for b in &self.seqs[id].table {
                let s = &mut seen[b.0 as usize];
                n += usize::from(!*s);
                *s = true;
            }
        }
        n * self.cfg.block_size
    }

    /// KV cells (counted in whole blocks) held only by cache entries: free on demand.
    pub fn n_kv_cached(&self) -> usize {
        let held = self.pool.n_blocks() - self.pool.n_free();
        held * self.cfg.block_size - self.n_kv_used()
    }

    /// Cache entries kept.
    pub fn n_cache_entries(&self) -> usize {
        self.cache.len()
    }

    /// How many preemptions happened so far.
    pub fn n_preemptions(&self) -> u64 {
        self.n_preemptions
    }

    /// The tokens of a sequence so far (prompt and output), for sampling penalties.
    pub fn tokens(&self, id: SeqId) -> Option<&[TokenId]> {
        self.seqs.get(&id).map(|s| s.tokens.as_slice())
    }

    /// Most draft tokens `id` may verify in the next step: 0 unless it is running and
    /// decoding (exactly one token to compute); bounded by its context, its token limit and
    /// the step budget.
    pub fn draft_room(&self, id: SeqId) -> usize {
        let Some(s) = self.seqs.get(&id) else {
            return 0;
        };
        if s.slot.is_none() || s.left() != 1 {
            return 0;
        }
        let ctx_room = self.cfg.n_ctx_per_seq.saturating_sub(s.tokens.len());
        let new_room = s
            .max_new_tokens
            .map_or(usize::MAX, |m| m.saturating_sub(s.n_generated() + 1));
        ctx_room
            .min(new_room)
            .min(self.cfg.max_batched_tokens.saturating_sub(1))
    }

    /// Gives `id` draft tokens to verify in the next step (cut to [`Self::draft_room`]). The
    /// next `schedule` consumes them, planning as many as the budget and free KV allow.
    pub fn set_draft(&mut self, id: SeqId, mut draft: Vec<TokenId>) {
        draft.truncate(self.draft_room(id));
        if let Some(s) = self.seqs.get_mut(&id) {
            s.draft = draft;
        }
    }

    /// Limits the prompt tokens (prefill chunks, admissions, recomputation) planned in a step
    /// in which some sequence decodes, *per prompt that waits for its first token*, so that a
    /// long prompt arriving cannot stall everyone's next token for long: its chunks interleave
    /// with their decode steps. With `w` prompts pending the step may carry `w` times the cap:
    /// each of them progresses as one alone would, so a burst of arrivals is not starved by
    /// the decoders it joins; and at least what each would compute in a step of its own (a
    /// prompt up to a quarter longer than the cap whole: prompts of 257-260 tokens under a cap
    /// of 256 otherwise left the last of a burst's prompts a step of its own). Steps without
    /// a decoding sequence still fill the whole budget.
    /// At least 1; the engine sets it from the measured cost of a token of prompt against a
    /// decode step.
    pub fn set_prefill_cap(&mut self, n: usize) {
        self.prefill_cap = n.max(1);
    }

    /// The current limit of [`Self::set_prefill_cap`].
    pub fn prefill_cap(&self) -> usize {
        self.prefill_cap
    }

    /// Drops every cache entry (their slots are cleared at the next step).
    pub fn clear_cache(&mut self) {
        let slots: Vec<SlotId> = self.cache.keys().copied().collect();
        for slot in slots {
            self.evict(slot);
        }
    }

    /// Plans the next step. Call `commit` (or `abandon`) with the plan before scheduling again.
    pub fn schedule(&mut self) -> StepPlan {
        self.clock += 1;
        let mut budget = self.cfg.max_batched_tokens;
        let mut items = Vec::new();
        let mut copies = Vec::new();
        let mut pinned: HashSet<SlotId> = HashSet::new();

        // Prompt tokens this step may compute: capped while others wait for a decode token.
        // While prompts wait or are being computed, decode steps carry no drafts: verifying
        // drafts costs compute that the prompts need (on a CPU nearly as much per token), and
        // a long prompt would otherwise crawl behind everyone's speculation.
        let (mut prefill_left, prefill_pending) = self.prefill_allowance();

        // 1. Running sequences, oldest first: decode tokens and unfinished prompt chunks.
        let mut prompt_in_step = false;
        let mut idx = 0;
        while idx < self.running.len() {
            let id = self.running[idx];
            let (remaining, n_computed, trickle) = {
                let s = &self.seqs[&id];
                (s.left(), s.n_computed, s.trickle)
            };
            let is_prefill = remaining > 1;
            // The tail of a cut chunk rides in the pass of the decode tokens.
            let trickle = trickle && remaining <= self.cfg.equal_chunk_slack + 1;
            let n = if is_prefill && trickle {
                budget.min(1)
            } else if is_prefill {
                chunk_len(remaining, budget, prefill_left)
            } else {
                remaining.min(budget)
            };
            if n == 0 {
                idx += 1;
                continue;
            }
            let mut self_preempted = false;
            while !self.reserve(id, n_computed + n, &pinned) {
                let victim = *self.running.last().expect("running is non-empty here");
                self.preempt(victim);
                if victim == id {
                    self_preempted = true;
                    break;
                }
            }
            if self_preempted {
                continue;
            }
            let n_draft = if is_prefill || prefill_pending {
                0
            } else {
                // Later running sequences keep room for one token each.
                let n_later = self.running.len() - idx - 1;
                let room = (budget - n).saturating_sub(n_later);
                self.reserve_draft(id, room)
            };
            items.push(self.plan_item(id, n, n_draft));
            budget -= n + n_draft;
            if is_prefill {
                prefill_left = prefill_left.saturating_sub(n);
                prompt_in_step |= !trickle;
            }
            idx += 1;
        }

        // 2. Admit waiting sequences, first come first served, while their prompt fits. A
        //    sequence whose prompt shares more with a prompt being computed right now than the
        //    cache holds waits for it (the shared part is then computed once), and those behind
        //    it keep their turn.
        let mut deferred = Vec::new();
        while budget > 0 && prefill_left > 0 && self.running.len() < self.cfg.max_seqs {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let (mut prefix, mut src) = match self.match_prefix(id) {
                Some((prefix, src)) => (prefix, Some(src)),
                None => (Vec::new(), None),
            };
            if self.shares_more_with_a_prefill(id, prefix.len()) {
                self.waiting.pop_front();
                deferred.push(id);
                continue;
            }
            let mut newly_pinned = src.is_some_and(|src| pinned.insert(src));
            // With packed slots, a new sequence whose prefix lies in an entry that sits where
            // it would go anyway takes that entry over: its KV stays, the positions past the
            // prefix are trimmed, and nothing is copied (nor left behind among the running).
            let in_place = src.is_some_and(|e| newly_pinned && self.may_take_over(e, &pinned));
            if prefix.len() * self.cfg.block_size < self.cfg.min_copy_tokens && !in_place {
                // Too short to copy: computed again.
                if newly_pinned {
                    pinned.remove(&src.take().expect("newly pinned"));
                }
                src = None;
                prefix.clear();
                newly_pinned = false;
            }
            let n_tokens = self.seqs[&id].tokens.len();
            let mut needed = self.pool.blocks_for(n_tokens) - prefix.len();
            if newly_pinned && !self.can_free(needed, &pinned) {
                // The entry holding the prefix holds the blocks needed for the rest: computing
                // everything is the only way in (else nothing could ever run again).
                pinned.remove(&src.take().expect("newly pinned"));
                prefix.clear();
                needed = self.pool.blocks_for(n_tokens);
            }
            if !self.can_free(needed, &pinned) {
                break;
            }
            let n_shared = prefix.len() * self.cfg.block_size;
            let rest = n_tokens - n_shared;
            if self.cfg.whole_prompts
                && prompt_in_step
                && chunk_len(rest, budget, prefill_left) < rest
            {
                break;
            }
            // `src` is still the entry `in_place` was decided for (or gone).
            let takeover = src.filter(|_| in_place);
            let slot = match takeover {
                Some(e) => e,
                None => match self.take_slot(&pinned) {
                    Some(slot) => slot,
                    None => break,
                },
            };
            for &b in &prefix {
                self.pool.share(b);
            }
            if let Some(e) = takeover {
                let entry = self.cache.remove(&e).expect("checked above");
                for b in entry.table {
                    self.pool.release(b);
                }
                if entry.n_tokens > n_shared {
                    self.to_trim.push(KvTrim {
                        slot: e,
                        from: n_shared,
                    });
                }
                src = None;
            }
            let hashes = self.prefix_hashes(id, prefix.len());
            {
                let s = self.seqs.get_mut(&id).expect("waiting ids exist");
                s.slot = Some(slot);
                s.table = prefix;
                s.hashes = hashes;
                s.n_computed = n_shared;
                s.n_cached = n_shared;
            }
            let n = chunk_len(rest, budget, prefill_left);
            if !self.reserve(id, n_shared + n, &pinned) {
                // Cannot happen after the check above; undo rather than corrupt the ledger.
                self.unadmit(id);
                break;
            }
            if let Some(src) = src {
                copies.push(KvCopy {
                    src,
                    dst: slot,
                    n_tokens: n_shared,
                });
                if let Some(e) = self.cache.get_mut(&src) {
                    e.last_used = self.clock;
                }
            }
            self.waiting.pop_front();
            self.running.push(id);
            items.push(self.plan_item(id, n, 0));
            budget -= n;
            prefill_left = prefill_left.saturating_sub(n);
            prompt_in_step = true;
        }

        for id in deferred.into_iter().rev() {
            self.waiting.push_front(id);
        }
        if self.cfg.equal_chunk_slack > 0 && self.prompts_follow(&items) {
            let most = self.cfg.equal_chunk_slack.min(self.prompt_steps_after());
            self.equalize(&mut items, most);
        }
        self.trim_cache(&pinned);

        // Drafts not planned now are stale by the next step.
        for id in &self.running {
            if let Some(s) = self.seqs.get_mut(id) {
                s.draft.clear();
            }
        }
        StepPlan {
            trim: std::mem::take(&mut self.to_trim),
            clear: std::mem::take(&mut self.to_clear),
            copy: copies,
            items,
        }
    }

    /// Whether `n` blocks are free or can be freed by evicting unpinned cache entries (which
    /// are only counted when the free blocks fall short: counting walks every entry's table,
    /// and a burst's admissions asked once each, 2-6 ms in all for 34 of them).
    fn can_free(&self, n: usize, pinned: &HashSet<SlotId>) -> bool {
        n <= self.pool.n_free() || n <= self.pool.n_free() + self.n_reclaimable(pinned)
    }

    /// Ensures `id`'s table covers `n_total` positions, evicting cache entries as needed.
    fn reserve(&mut self, id: SeqId, n_total: usize, pinned: &HashSet<SlotId>) -> bool {
        let need = self
            .pool
            .blocks_for(n_total)
            .saturating_sub(self.seqs[&id].table.len());
        while self.pool.n_free() < need {
            if !self.evict_lru(pinned) {
                return false;
            }
        }
        let s = self.seqs.get_mut(&id).expect("reserved ids exist");
        for _ in 0..need {
            s.table
                .push(self.pool.allocate().expect("counted free above"));
        }
        true
    }

    /// Extends `id`'s table for up to `room` of its draft tokens from free blocks only (drafts
    /// never evict cached prefixes); returns how many drafts are planned.
    fn reserve_draft(&mut self, id: SeqId, room: usize) -> usize {
        let bs = self.cfg.block_size;
        let n_free = self.pool.n_free();
        let s = self.seqs.get_mut(&id).expect("reserved ids exist");
        let capacity = (s.table.len() + n_free) * bs;
        let n_draft = s
            .draft
            .len()
            .min(room)
            .min(capacity.saturating_sub(s.n_computed + 1));
        let need = self
            .pool
            .blocks_for(s.n_computed + 1 + n_draft)
            .saturating_sub(s.table.len());
        for _ in 0..need {
            s.table
                .push(self.pool.allocate().expect("counted free above"));
        }
        s.draft.truncate(n_draft);
        n_draft
    }

    fn unadmit(&mut self, id: SeqId) {
        let s = self.seqs.get_mut(&id).expect("exists");
        for b in s.table.drain(..) {
            self.pool.release(b);
        }
        s.hashes.clear();
        s.n_computed = 0;
        s.n_cached = 0;
        if let Some(slot) = s.slot.take() {
            self.free_slots.push(slot);
        }
    }

    fn plan_item(&mut self, id: SeqId, n: usize, n_draft: usize) -> PlanItem {
        let s = self.seqs.get_mut(&id).expect("planned ids exist");
        let pos = s.n_computed;
        s.n_planned = n + n_draft;
        let mut tokens = s.tokens[pos..pos + n].to_vec();
        tokens.extend_from_slice(&s.draft[..n_draft]);
        PlanItem {
            seq: id,
            slot: s.slot.expect("running sequences hold a slot"),
            pos,
            tokens,
            sample: pos + n == s.tokens.len(),
            n_draft,
        }
    }

    /// Moves a running sequence back to the head of the queue; its computed KV stays as a
    /// cache entry, so resuming it recomputes only what was evicted meanwhile.
    fn preempt(&mut self, id: SeqId) {
        self.running.retain(|&r| r != id);
        self.park(id);
        let s = self.seqs.get_mut(&id).expect("preempted ids exist");
        s.prompt_reported = false;
        self.waiting.push_front(id);
        self.n_preemptions += 1;
    }

    /// Takes a sequence's slot and blocks away from it, keeping them as a cache entry when
    /// prefix caching is on (else dropping them); the sequence itself stays.
    fn park(&mut self, id: SeqId) {
        let s = self.seqs.get_mut(&id).expect("parked ids exist");
        debug_assert_eq!(s.n_planned, 0, "parking a sequence during a step");
        // Blocks past the computed positions hold nothing yet.
        let keep = self.pool.blocks_for(s.n_computed);
        let mut table = std::mem::take(&mut s.table);
        for b in table.drain(keep.min(table.len())..) {
            self.pool.release(b);
        }
        s.hashes.clear();
        let n_tokens = s.n_computed;
        s.n_computed = 0;
        s.n_cached = 0;
        s.trickle = false;
        let Some(slot) = s.slot.take() else {
            debug_assert!(table.is_empty());
            return;
        };
        if self.cfg.prefix_cache && !table.is_empty() {
            self.cache.insert(
                slot,
                CacheEntry {
                    table,
                    n_tokens,
                    last_used: self.clock,
                },
            );
        } else {
            for b in table {
                self.pool.release(b);
            }
            self.to_clear.push(slot);
            self.free_slots.push(slot);
        }
    }

    /// Removes a sequence for good, keeping its KV as a cache entry where possible.
    fn retire(&mut self, id: SeqId) {
        self.park(id);
        self.seqs.remove(&id);
    }
}

mod commit;

#[cfg(test)]
mod tests;

//! Where draft tokens come from (speculative decoding): prompt lookup, or a draft model.
//!
//! The engine decides *which* sequences draft and *how many* tokens (the policy:
//! [`hyperllama_core::spec::DraftControl`], the scheduler's `draft_room`, the output
//! constraint's `valid_prefix`); a [`DraftSource`] only says *what* the next `k` tokens of each
//! asked-for sequence are likely to be, for all of them at once ([`DraftSource::propose`]).
//!
//! - [`DraftSource::Lookup`]: prompt lookup ([`hyperllama_core::spec::propose`]), per sequence.
//! - [`DraftSource::Model`]: a [`ModelDrafter`], a second, smaller model with the target's
//!   vocabulary (checked by [`crate::Model::check_draft`] before the engine starts) in its own
//!   llama.cpp context on the engine thread. It drafts greedily: the draft is a deterministic
//!   function of the sequence's tokens, which is what the verification rule
//!   ([`hyperllama_core::sampling::Sampler::verify`]) assumes, so outputs keep the target's
//!   distribution (and at temperature 0 its exact tokens).
//!
//! A [`ModelDrafter`] keeps one draft-context sequence (a *slot*) per drafting target
//! sequence, with the tokens whose KV that slot holds. Each [`ModelDrafter::propose`]:
//! 1. brings every asked-for sequence's slot up to date: the slot is trimmed back to the
//!    common prefix of what it holds and the sequence's tokens (but never past the last
//!    token, whose logits are needed), and the missing tokens of all sequences are computed
//!    together, in chunks of at most `n_batch` tokens, one `llama_decode` per chunk;
//! 2. then takes the argmax after each sequence's last token as its first draft token, and
//!    computes the `j`-th draft tokens of all sequences still drafting in one decode per
//!    position `j` (a sequence stops at `k` tokens or after an end-of-generation token).
//!
//! # Invariants
//! - A slot belongs to at most one target sequence, and what it `held` is exactly the tokens
//!   whose KV is in the draft context at positions `0..held.len()` of that slot's sequence id.
//! - No leak: slots are released lazily. Each `propose` first frees the slots of sequences the
//!   engine no longer has (sequence ids are never reused, so a freed owner never returns); a
//!   sequence that waits, is preempted or cools down keeps its slot (and its KV, still a
//!   prefix of its tokens) until another sequence needs a slot and it is the least recently
//!   used one not drafting in this call. There are as many slots as sequences the engine
//!   runs at once, so every drafting sequence gets one.
//! - KV room: the draft context has as many cells as the target's but shares no prefixes.
//!   Before computing, idle slots (sequences not drafting in this call) are emptied, least
//!   recently used first, until what the drafting sequences will hold fits; when it cannot
//!   fit, nobody drafts in this call. A draft decode that fails anyway empties the whole
//!   draft context and yields no drafts for [`BACKOFF`] calls; nothing else changes, and the
//!   next drafting call recomputes what it needs.
//! - Drafts never change what a request receives, only how many tokens a step verifies.

use std::collections::HashSet;

use hyperllama_core::sampling::argmax;
use hyperllama_core::spec::propose_from;
use hyperllama_core::{SeqId, TokenId};

use crate::llama::{ContextOptions, DraftContext, DraftToken, Model};
use crate::Error;

/// `propose` calls without drafts after a failed draft decode.
pub const BACKOFF: u32 = 32;

/// One sequence's request for a draft.
#[derive(Clone, Copy, Debug)]
pub struct DraftWant<'a> {
    /// The sequence.
    pub seq: SeqId,
    /// Its tokens so far (prompt and output).
    pub tokens: &'a [TokenId],
    /// Most draft tokens wanted.
    pub k: usize,
    /// Shortest n-gram prompt lookup may match ([`DraftControl::min_ngram`]; a draft model
    /// ignores it).
    ///
    /// [`DraftControl::min_ngram`]: hyperllama_core::spec::DraftControl::min_ngram
    pub min_ngram: usize,
}

/// Where an engine's drafts come from.
pub enum DraftSource<'m> {
    /// Prompt lookup: continuations of earlier n-gram matches in the sequence itself.
    Lookup,
    /// A draft model.
    Model(Box<ModelDrafter<'m>>),
}

impl DraftSource<'_> {
    /// Up to `k` draft tokens for each want, in order (empty where there is no guess).
    /// `alive` says which sequences the engine still has (for releasing draft-model state).
    pub fn propose(
        &mut self,
        wants: &[DraftWant<'_>],
        alive: &dyn Fn(SeqId) -> bool,
    ) -> Vec<Vec<TokenId>> {
        match self {
            DraftSource::Lookup => wants
                .iter()
                .map(|w| propose_from(w.tokens, w.k, w.min_ngram))
                .collect(),
            DraftSource::Model(m) => {
                m.release(alive);
                m.propose(wants)
            }
        }
    }
}

/// A slot of the draft context: one target sequence's draft KV.
#[derive(Clone, Debug, Default)]
struct Slot {
    owner: Option<SeqId>,
    /// Tokens whose KV the slot holds, from position 0.
    held: Vec<TokenId>,
    /// The `propose` call that last used the slot.
    last_used: u64,
}

/// Greedy drafting with a draft model, batched over sequences (see the module docs).
pub struct ModelDrafter<'m> {
    ctx: DraftContext<'m>,
    slots: Vec<Slot>,
    eog: Vec<TokenId>,
    /// `propose` calls so far.
    clock: u64,
    n_decodes: u64,
    /// Calls left without drafts after a failed decode.
    backoff: u32,
}

impl<'m> ModelDrafter<'m> {
    /// A drafter for `draft` (whose vocabulary the caller checked against the target's):
    /// `opts.n_slots` sequences drafting at once, `opts.n_kv_cells` KV cells shared by them.
    pub fn new(draft: &'m Model, opts: &ContextOptions) -> Result<Self, Error> {
        let ctx = DraftContext::new(draft, opts)?;
        Ok(Self {
            slots: vec![Slot::default(); ctx.n_seqs()],
            ctx,
            eog: draft.eog_tokens().to_vec(),
            clock: 0,
            n_decodes: 0,
            backoff: 0,
        })
    }

    /// `llama_decode` calls of the draft context so far.
    pub fn n_decodes(&self) -> u64 {
        self.n_decodes
    }

    /// KV cells of the draft context (shared by all slots).
    pub fn n_cells(&self) -> usize {
        self.ctx.n_cells()
    }

    /// Tokens whose draft KV is held for `seq`, if it holds a slot.
    pub fn n_held(&self, seq: SeqId) -> Option<usize> {
        self.slots
            .iter()
            .find(|s| s.owner == Some(seq))
            .map(|s| s.held.len())
    }

    /// Frees the slots of sequences that are no longer `alive`.
    pub fn release(&mut self, alive: &dyn Fn(SeqId) -> bool) {
        for i in 0..self.slots.len() {
            if self.slots[i].owner.is_some_and(|o| !alive(o)) {
                self.free(i);
            }
        }
    }

    /// Up to `k` greedy draft tokens for each want, computed in batches over all of them.
    /// Wants beyond the number of slots, with `k == 0` or no tokens get none.
    pub fn propose(&mut self, wants: &[DraftWant<'_>]) -> Vec<Vec<TokenId>> {
        self.clock += 1;
        let mut drafts = vec![Vec::new(); wants.len()];
        if self.backoff > 0 {
            self.backoff -= 1;
            return drafts;
        }
        let asking: HashSet<SeqId> = wants.iter().map(|w| w.seq).collect();
        // (want index, slot) of each sequence that drafts in this call.
        let mut active = Vec::new();
        for (i, w) in wants.iter().enumerate() {
            if w.k == 0 || w.tokens.is_empty() {
                continue;
            }
            if let Some(s) = self.slot_for(w.seq, &asking) {
                active.push((i, s));
            }
        }
        if active.is_empty() || !self.make_room(wants, &active) {
            return drafts;
        }
        match self.run(wants, &active, &mut drafts) {
            Ok(()) => drafts,
            Err(e) => {
                tracing::debug!(error = %e, "draft model decode failed; emptying its context");
                self.ctx.clear();
                for i in 0..self.slots.len() {
                    self.slots[i] = Slot::default();
                }
                self.backoff = BACKOFF;
                vec![Vec::new(); wants.len()]
            }
        }
    }

    /// Catches the active sequences up and drafts for them.
    fn run(
        &mut self,
        wants: &[DraftWant<'_>],
        active: &[(usize, usize)],
        drafts: &mut [Vec<TokenId>],
    ) -> Result<(), crate::backend::BackendError> {
        // 1. Trim each slot to what still matches, keeping the last token to compute.
        let mut pending = Vec::new();
        let mut owners = Vec::new();
        for &(i, s) in active {
            let tokens = wants[i].tokens;
            let held = &self.slots[s].held;
            let common = held.iter().zip(tokens).take_while(|(a, b)| a == b).count();
            let keep = common.min(tokens.len() - 1);
            if keep < held.len() {
                self.ctx.trim(s, keep);
                self.slots[s].held.truncate(keep);
            }
            for (pos, &token) in tokens.iter().enumerate().skip(keep) {
                let last = pos + 1 == tokens.len();
                pending.push(DraftToken {
                    seq: s,
                    pos,
                    token,
                    logits: last,
                });
                if last {
                    owners.push(i);
                }
            }
        }
        // 2. The missing tokens of all sequences, one decode per chunk; the argmax after each
        //    sequence's last token is its first draft token.
        let mut rows = owners.into_iter();
        let n_batch = self.ctx.n_batch();
        for chunk in pending.chunks(n_batch) {
            let firsts = self.decode(chunk)?;
            for t in firsts {
                let i = rows
                    .next()
                    .ok_or(crate::backend::BackendError::InvalidBatch)?;
                drafts[i].push(t);
            }
        }
        // 3. One decode per further draft position, over every sequence still drafting.
        let slot_of = |i: usize| active.iter().find(|a| a.0 == i).map_or(0, |a| a.1);
        let mut going: Vec<usize> = active
            .iter()
            .map(|a| a.0)
            .filter(|&i| self.continues(&drafts[i], wants[i].k))
            .collect();
        while !going.is_empty() {
            let batch: Vec<DraftToken> = going
                .iter()
                .map(|&i| DraftToken {
                    seq: slot_of(i),
                    pos: wants[i].tokens.len() + drafts[i].len() - 1,
                    token: *drafts[i].last().unwrap_or(&0),
                    logits: true,
                })
                .collect();
            let next = self.decode(&batch)?;
            for (&i, t) in going.iter().zip(next) {
                drafts[i].push(t);
            }
            going.retain(|&i| self.continues(&drafts[i], wants[i].k));
        }
        Ok(())
    }

    /// Empties idle slots, least recently used first, until the active sequences' tokens and
    /// drafts fit the KV cells with the rest; false when they cannot fit at all.
    fn make_room(&mut self, wants: &[DraftWant<'_>], active: &[(usize, usize)]) -> bool {
        let capacity = self.ctx.n_cells();
        let need: usize = active
            .iter()
            .map(|&(i, _)| wants[i].tokens.len() + wants[i].k)
            .sum();
        if need > capacity {
            return false;
        }
        let clock = self.clock;
        loop {
            let idle: usize = self
                .slots
                .iter()
                .filter(|s| s.last_used != clock)
                .map(|s| s.held.len())
                .sum();
            if need + idle <= capacity {
                return true;
            }
            let victim = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.last_used != clock && !s.held.is_empty())
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i);
            match victim {
                Some(i) => self.free(i),
                None => return true,
            }
        }
    }

    /// Whether a sequence drafts another token after `draft`.
    fn continues(&self, draft: &[TokenId], k: usize) -> bool {
        draft.len() < k && draft.last().is_some_and(|t| !self.eog.contains(t))
    }

    /// Decodes `batch` (positions follow each slot's held tokens) and returns the argmax
    /// after each token that asked for logits, in order.
    fn decode(
        &mut self,
        batch: &[DraftToken],
    ) -> Result<Vec<TokenId>, crate::backend::BackendError> {
        self.ctx.decode(batch)?;
        self.n_decodes += 1;
        for t in batch {
            let held = &mut self.slots[t.seq].held;
            debug_assert_eq!(held.len(), t.pos, "draft positions follow the held tokens");
            held.push(t.token);
        }
        let n_rows = batch.iter().filter(|t| t.logits).count();
        Ok((0..n_rows).map(|r| argmax(self.ctx.logits(r))).collect())
    }

    /// The slot of `seq`: its own, else a free one, else the least recently used one of a
    /// sequence not asking now (emptied). `None` when every slot is taken by this call.
    fn slot_for(&mut self, seq: SeqId, asking: &HashSet<SeqId>) -> Option<usize> {
        let clock = self.clock;
        let found = self
            .slots
            .iter()
            .position(|s| s.owner == Some(seq))
            .or_else(|| self.slots.iter().position(|s| s.owner.is_none()))
            .or_else(|| {
                self.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| {
                        s.last_used != clock && !s.owner.is_some_and(|o| asking.contains(&o))
                    })
                    .min_by_key(|(_, s)| s.last_used)
                    .map(|(i, _)| i)
            })?;
        if self.slots[found].owner != Some(seq) {
            self.free(found);
            self.slots[found].owner = Some(seq);
        }
        self.slots[found].last_used = clock;
        Some(found)
    }

    /// Empties slot `i` and its KV.
    fn free(&mut self, i: usize) {
        self.ctx.trim(i, 0);
        self.slots[i] = Slot::default();
    }
}

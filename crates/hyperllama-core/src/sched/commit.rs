//! Applying a step's outcome to the scheduler: `commit` (the sampled tokens), `abandon` (a step
//! that had no effect), and the ledger check the tests run after every step. Part of
//! [`Scheduler`]; see the parent module for the invariants.

use std::collections::{HashMap, HashSet};

use super::{FinishReason, KvTrim, Scheduler, SeqEvent, StepPlan};
use crate::ids::TokenId;
use crate::kv::{block_hash, BlockId};

impl Scheduler {
    /// Undoes a plan whose computation had no effect (the backend found no KV room, or was
    /// aborted). The plan's clears and copies did take effect (the backend applies them before
    /// computing), so admitted sequences keep their shared prefixes. To make room for real —
    /// the ledger is conservative, so this means llama.cpp's cells are fragmented — every cache
    /// entry is dropped, or, when there is none, the newest running sequence is preempted.
    pub fn abandon(&mut self, plan: &StepPlan) {
        for item in &plan.items {
            if let Some(s) = self.seqs.get_mut(&item.seq) {
                s.n_planned = 0;
            }
        }
        if self.cache.is_empty() {
            if let Some(&victim) = self.running.last() {
                self.running.retain(|&r| r != victim);
                let s = self.seqs.get_mut(&victim).expect("running ids exist");
                s.prompt_reported = false;
                // Dropped, not cached: cached KV is what we are short of.
                let slot = s.slot.take();
                for b in std::mem::take(&mut s.table) {
                    self.pool.release(b);
                }
                s.hashes.clear();
                s.n_computed = 0;
                s.n_cached = 0;
                if let Some(slot) = slot {
                    self.to_clear.push(slot);
                    self.free_slots.push(slot);
                }
                self.waiting.push_front(victim);
                self.n_preemptions += 1;
            }
        } else {
            self.clear_cache();
        }
    }

    /// Applies a step's results: `sampled[i]` is the token sampled for the i-th item with
    /// `sample` set. Returns what happened, in plan order. For plans without drafts; see
    /// [`Self::commit_spec`].
    pub fn commit(&mut self, plan: &StepPlan, sampled: &[TokenId]) -> Vec<SeqEvent> {
        assert_eq!(
            plan.n_draft(),
            0,
            "a plan with drafts is committed by commit_spec"
        );
        let accepted: Vec<Vec<TokenId>> = sampled.iter().map(|&t| vec![t]).collect();
        self.commit_spec(plan, &accepted)
    }

    /// Applies a step's results: `accepted[i]` holds, for the i-th item with `sample` set, its
    /// accepted draft tokens (a prefix of the item's draft) followed by one sampled token.
    /// Returns what happened, in plan order.
    pub fn commit_spec(&mut self, plan: &StepPlan, accepted: &[Vec<TokenId>]) -> Vec<SeqEvent> {
        assert_eq!(
            accepted.len(),
            plan.n_samples(),
            "one token list per sampled item"
        );
        let bs = self.cfg.block_size;
        let mut events = Vec::new();
        let mut accepted = accepted.iter();
        for item in &plan.items {
            let s = self.seqs.get_mut(&item.seq).expect("planned ids exist");
            debug_assert_eq!(s.n_planned, item.tokens.len());
            s.n_planned = 0;
            let mut reason = None;
            if item.sample {
                let a = accepted.next().expect("counted above");
                let n_acc = a.len() - 1;
                assert!(
                    !a.is_empty() && n_acc <= item.n_draft,
                    "1 to n_draft + 1 tokens per sampled item"
                );
                debug_assert_eq!(&a[..n_acc], &item.draft()[..n_acc], "accepted a non-draft");
                // Positions whose KV is valid: everything but the rejected drafts.
                let n_valid = item.pos + item.tokens.len() - item.n_draft + n_acc;
                for &token in a {
                    if !s.ignore_eos && self.cfg.eog_tokens.contains(&token) {
                        reason = Some(FinishReason::Stop);
                        break;
                    }
                    s.tokens.push(token);
                    events.push(SeqEvent::Token {
                        seq: item.seq,
                        token,
                    });
                    let at_limit = s.max_new_tokens.is_some_and(|m| s.n_generated() >= m);
                    let ctx_full = s.tokens.len() >= self.cfg.n_ctx_per_seq;
                    if at_limit || ctx_full {
                        reason = Some(FinishReason::Length);
                        break;
                    }
                }
                // An end token or the limit among the accepted drafts also ends the KV.
                s.n_computed = n_valid.min(s.tokens.len());
                if s.n_computed < item.pos + item.tokens.len() {
                    self.to_trim.push(KvTrim {
                        slot: item.slot,
                        from: s.n_computed,
                    });
                }
                // Blocks wholly past what the next step needs hold only rejected drafts.
                let keep = self.pool.blocks_for(s.tokens.len().max(s.n_computed));
                if s.table.len() > keep {
                    for b in s.table.drain(keep..) {
                        self.pool.release(b);
                    }
                }
            } else {
                s.n_computed += item.tokens.len();
            }
            // Index the blocks this step filled (committed tokens only).
            if self.cfg.prefix_cache {
                while s.hashes.len() < s.n_computed / bs {
                    let k = s.hashes.len();
                    let parent = s.hashes.last().copied().unwrap_or(0);
                    let block_tokens = &s.tokens[k * bs..(k + 1) * bs];
                    let h = block_hash(parent, block_tokens);
                    self.pool.register_full(s.table[k], h, block_tokens);
                    s.hashes.push(h);
                }
            }
            if !s.prompt_reported && s.n_computed >= s.n_prompt {
                s.prompt_reported = true;
                // Reported before the step's tokens.
                let at = events
                    .iter()
                    .rposition(|e| !matches!(e, SeqEvent::Token { seq, .. } if *seq == item.seq))
                    .map_or(0, |i| i + 1);
                events.insert(
                    at,
                    SeqEvent::PromptDone {
                        seq: item.seq,
                        n_prompt: s.n_prompt,
                        n_cached: s.n_cached.min(s.n_prompt),
                    },
                );
            }
            if let Some(reason) = reason {
                events.push(SeqEvent::Finished {
                    seq: item.seq,
                    reason,
                });
                self.running.retain(|&r| r != item.seq);
                self.retire(item.seq);
            }
        }
        events
    }

    /// Checks the ledger against the tables (for tests; panics on a violation).
    pub fn check_invariants(&self) {
        let mut refs: HashMap<BlockId, u32> = HashMap::new();
        let mut slots = HashSet::new();
        for id in &self.running {
            let s = &self.seqs[id];
            assert!(slots.insert(s.slot.expect("running sequences hold a slot")));
            assert!(s.table.len() >= self.pool.blocks_for(s.n_computed));
            for &b in &s.table {
                *refs.entry(b).or_default() += 1;
            }
        }
        for id in &self.waiting {
            let s = &self.seqs[id];
            assert!(s.slot.is_none() && s.table.is_empty());
        }
        for (slot, e) in &self.cache {
            assert!(slots.insert(*slot));
            for &b in &e.table {
                *refs.entry(b).or_default() += 1;
            }
        }
        for slot in &self.free_slots {
            assert!(slots.insert(*slot), "slot {slot} both free and used");
        }
        assert_eq!(slots.len(), self.cfg.n_slots, "a slot was lost");
        let mut held = 0;
        for b in 0..self.pool.n_blocks() as u32 {
            let b = BlockId(b);
            let expected = refs.get(&b).copied().unwrap_or(0);
            assert_eq!(self.pool.refs(b), expected, "block {b:?}");
            held += usize::from(expected > 0);
        }
        assert_eq!(held + self.pool.n_free(), self.pool.n_blocks());
        assert!(self.running.len() <= self.cfg.max_seqs);
    }
}

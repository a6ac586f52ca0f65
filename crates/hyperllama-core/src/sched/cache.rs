//! The prefix cache's side of the scheduler: cache entries (the KV finished sequences leave
//! in their slots), their eviction, slot choice, and prefix matching against the block index.
//! Part of [`Scheduler`]; see the parent module for the invariants.

use std::collections::{HashMap, HashSet};

use super::{Scheduler, SeqId, SlotId};
use crate::kv::{block_hash, BlockId, KvPool};

impl Scheduler {
    /// Blocks that evicting unpinned cache entries would free.
    pub(super) fn n_reclaimable(&self, pinned: &HashSet<SlotId>) -> usize {
        let mut counts: HashMap<BlockId, u32> = HashMap::new();
        for (slot, e) in &self.cache {
            if pinned.contains(slot) {
                continue;
            }
            for &b in &e.table {
                *counts.entry(b).or_default() += 1;
            }
        }
        counts
            .iter()
            .filter(|(&b, &n)| self.pool.refs(b) == n)
            .count()
    }

    /// Evicts least recently used unpinned cache entries while the cells held only by the
    /// cache exceed both `cfg.cache_cells` and the cells running sequences hold.
    pub(super) fn trim_cache(&mut self, pinned: &HashSet<SlotId>) {
        let bs = self.cfg.block_size;
        let held = |pool: &KvPool| (pool.n_blocks() - pool.n_free()) * bs;
        // Cached cells are at most all cells held: then nothing needs computing.
        if self.cache.is_empty() || held(&self.pool) <= self.cfg.cache_cells {
            return;
        }
        let used = self.n_kv_used();
        let allowed = self.cfg.cache_cells.max(used);
        while held(&self.pool) - used > allowed && self.evict_lru(pinned) {}
    }

    /// The slot [`Self::take_slot`] gives with `packed_slots`, without evicting: the lowest
    /// that is free or holds an unpinned entry.
    pub(super) fn packed_candidate(&self, pinned: &HashSet<SlotId>) -> Option<SlotId> {
        let lowest_entry = self
            .cache
            .keys()
            .copied()
            .filter(|s| !pinned.contains(s))
            .min();
        self.free_slots.iter().copied().chain(lowest_entry).min()
    }

    /// A slot for a new sequence: the lowest free one (after evicting the least recently used
    /// unpinned entry when none is free), or with `packed_slots` the [`Self::packed_candidate`]
    /// (its entry evicted): llama.cpp's per-slot KV streams compute only runs of consecutive
    /// slots in one micro-batch, so running sequences are kept in the lowest slots, and cache
    /// entries live above them.
    pub(super) fn take_slot(&mut self, pinned: &HashSet<SlotId>) -> Option<SlotId> {
        if self.cfg.packed_slots {
            let slot = self.packed_candidate(pinned)?;
            if self.cache.contains_key(&slot) {
                self.evict(slot);
            }
        } else if self.free_slots.is_empty() && !self.evict_lru(pinned) {
            return None;
        }
        let lowest = (0..self.free_slots.len()).min_by_key(|&i| self.free_slots[i].0)?;
        Some(self.free_slots.swap_remove(lowest))
    }

    /// Evicts the least recently used unpinned cache entry. Returns false when there is none.
    pub(super) fn evict_lru(&mut self, pinned: &HashSet<SlotId>) -> bool {
        let victim = self
            .cache
            .iter()
            .filter(|(slot, _)| !pinned.contains(slot))
            .min_by_key(|(slot, e)| (e.last_used, slot.0))
            .map(|(&slot, _)| slot);
        match victim {
            Some(slot) => {
                self.evict(slot);
                true
            }
            None => false,
        }
    }

    pub(super) fn evict(&mut self, slot: SlotId) {
        if let Some(entry) = self.cache.remove(&slot) {
            for b in entry.table {
                self.pool.release(b);
            }
            self.to_clear.push(slot);
            self.free_slots.push(slot);
        }
    }

    /// The indexed full blocks the sequence's tokens start with (leaving at least one token to
    /// compute) and a slot holding all of them.
    pub(super) fn match_prefix(&self, id: SeqId) -> Option<(Vec<BlockId>, SlotId)> {
        if !self.cfg.prefix_cache {
            return None;
        }
        let tokens = &self.seqs[&id].tokens;
        let bs = self.cfg.block_size;
        let max_blocks = (tokens.len() - 1) / bs;
        let mut parent = 0;
        let mut prefix = Vec::new();
        for k in 0..max_blocks {
            match self.pool.lookup(parent, &tokens[k * bs..(k + 1) * bs]) {
                Some((b, h)) => {
                    prefix.push(b);
                    parent = h;
                }
                None => break,
            }
        }
        // A table holding block k at index k holds the whole chain before it: the same tokens,
        // though not always the same blocks (a prompt whose shared stem was too short to copy
        // computed blocks of its own, and the index names only one block per hash). The
        // holder's own blocks are returned, so that keeping the holder keeps every one of them.
        while let Some(&last) = prefix.last() {
            let k = prefix.len() - 1;
            let holder = self
                .cache
                .iter()
                .find(|(_, e)| e.table.get(k) == Some(&last))
                .map(|(&slot, e)| (slot, &e.table))
                .or_else(|| {
                    self.running.iter().find_map(|r| {
                        let s = &self.seqs[r];
                        (s.table.get(k) == Some(&last) && s.n_computed >= (k + 1) * bs)
                            .then_some(s.slot.map(|slot| (slot, &s.table)))
                            .flatten()
                    })
                });
            if let Some((slot, table)) = holder {
                return Some((table[..=k].to_vec(), slot));
            }
            prefix.pop();
        }
        None
    }

    /// Whether a running sequence that is still computing its prompt shares more full blocks
    /// with `id`'s prompt than the `n_cached` blocks `id` could take from the cache now.
    /// Whether a new sequence may take the cache entry in `slot` over (packed slots, and the
    /// entry sits no higher than the slot it would get anyway).
    pub(super) fn may_take_over(&self, slot: SlotId, pinned: &HashSet<SlotId>) -> bool {
        self.cfg.packed_slots
            && self.cache.contains_key(&slot)
            && self.packed_candidate(pinned).is_none_or(|c| slot < c)
    }

    pub(super) fn shares_more_with_a_prefill(&self, id: SeqId, n_cached: usize) -> bool {
        if !self.cfg.prefix_cache {
            return false;
        }
        let tokens = &self.seqs[&id].tokens;
        let bs = self.cfg.block_size;
        // Blocks `id` could share at most: all but its last token.
        let most = (tokens.len() - 1) / bs;
        if most <= n_cached {
            return false;
        }
        self.running.iter().any(|r| {
            let s = &self.seqs[r];
            if s.left() <= 1 {
                return false;
            }
            let common = tokens
                .iter()
                .zip(&s.tokens[..s.n_prompt])
                .take_while(|(a, b)| a == b)
                .count();
            let shared = (common / bs).min(most);
            shared > n_cached && shared * bs >= self.cfg.min_copy_tokens
        })
    }

    pub(super) fn prefix_hashes(&self, id: SeqId, n_blocks: usize) -> Vec<u64> {
        let tokens = &self.seqs[&id].tokens;
        let bs = self.cfg.block_size;
        let mut parent = 0;
        (0..n_blocks)
            .map(|k| {
                parent = block_hash(parent, &tokens[k * bs..(k + 1) * bs]);
                parent
            })
            .collect()
    }
}

//! The KV block ledger with automatic prefix caching.
//!
//! KV capacity is counted in blocks of `block_size` token positions. A sequence's *block table*
//! lists the blocks holding its positions, in order. A block that is full gets a hash chained
//! from its predecessor's (`block_hash`), and is entered in the prefix index, so a later
//! sequence whose prompt starts with the same tokens can share the block instead of computing
//! it again (the design of vLLM's v1 KV-cache manager, mapped onto llama.cpp's unified cache:
//! sharing a block there is a `seq_cp` of its positions into the new sequence's slot).
//!
//! # Invariants
//! - `n_free() + (blocks with refs > 0) == n_blocks()` at all times.
//! - A block's `refs` equals the number of block tables (running sequences and cache entries)
//!   that contain it; the scheduler keeps this by pairing every `allocate`/`share` with one
//!   `release`.
//! - Only full blocks are indexed, and an indexed block's stored tokens are exactly the tokens
//!   it holds; a lookup verifies them, so a hash collision can never share wrong KV.
//! - A block whose refs drop to zero leaves the index and returns to the free list at once.
//! - Knows nothing about slots, tensors or backends.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::ids::TokenId;

/// One block of KV positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

#[derive(Debug, Clone, Default)]
struct Block {
    refs: u32,
    hash: Option<u64>,
    tokens: Vec<TokenId>,
}

/// The ledger; see the module docs.
#[derive(Debug, Clone)]
pub struct KvPool {
    block_size: usize,
    blocks: Vec<Block>,
    free: Vec<BlockId>,
    index: HashMap<u64, BlockId>,
}

/// The hash of a full block whose predecessor's hash is `parent` (0 for the first block).
pub fn block_hash(parent: u64, tokens: &[TokenId]) -> u64 {
    // `DefaultHasher::new()` is SipHash with fixed keys: the same value for the same input
    // within a process, which is all an in-memory index needs.
    let mut h = std::hash::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl KvPool {
    /// A pool of `n_blocks` empty blocks of `block_size` positions.
    pub fn new(n_blocks: usize, block_size: usize) -> Self {
        assert!(block_size > 0);
        Self {
            block_size,
            blocks: vec![Block::default(); n_blocks],
            free: (0..n_blocks as u32).rev().map(BlockId).collect(),
            index: HashMap::new(),
        }
    }

    /// Positions per block.
    pub fn block_size(&self) -> usize {
        self.block_size
    }

    /// Blocks in total.
    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Blocks not held by any table.
    pub fn n_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks needed to hold `n_tokens` positions.
    pub fn blocks_for(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size)
    }

    /// Takes a free block (refs = 1), or `None` when there is none.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let id = self.free.pop()?;
        let b = &mut self.blocks[id.0 as usize];
        debug_assert_eq!(b.refs, 0);
        b.refs = 1;
        Some(id)
    }

    /// Adds a table's reference to a held block.
    pub fn share(&mut self, id: BlockId) {
        let b = &mut self.blocks[id.0 as usize];
        assert!(b.refs > 0, "sharing a free block");
        b.refs += 1;
    }

    /// Drops a table's reference; the block is freed (and forgotten by the index) at zero.
    pub fn release(&mut self, id: BlockId) {
        let b = &mut self.blocks[id.0 as usize];
        assert!(b.refs > 0, "releasing a free block");
        b.refs -= 1;
        if b.refs == 0 {
            if let Some(hash) = b.hash.take() {
                if self.index.get(&hash) == Some(&id) {
                    self.index.remove(&hash);
                }
            }
            b.tokens.clear();
            self.free.push(id);
        }
    }

    /// Records that a held block is full with `tokens` under `hash`, so it can be shared.
    pub fn register_full(&mut self, id: BlockId, hash: u64, tokens: &[TokenId]) {
        debug_assert_eq!(tokens.len(), self.block_size);
        let b = &mut self.blocks[id.0 as usize];
        assert!(b.refs > 0, "registering a free block");
        if b.hash.is_some() {
            return;
        }
        b.hash = Some(hash);
        b.tokens = tokens.to_vec();
        self.index.entry(hash).or_insert(id);
    }

    /// The indexed block holding exactly `tokens` after a prefix with hash `parent`.
    pub fn lookup(&self, parent: u64, tokens: &[TokenId]) -> Option<(BlockId, u64)> {
        let hash = block_hash(parent, tokens);
        let id = *self.index.get(&hash)?;
        (self.blocks[id.0 as usize].tokens == tokens).then_some((id, hash))
    }

    /// References held on a block (for invariant checks).
    pub fn refs(&self, id: BlockId) -> u32 {
        self.blocks[id.0 as usize].refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_share_release_restores_the_pool() {
        let mut pool = KvPool::new(4, 2);
        let a = pool.allocate().expect("free");
        let b = pool.allocate().expect("free");
        pool.share(a);
        assert_eq!(pool.n_free(), 2);
        pool.release(a);
        assert_eq!(pool.n_free(), 2, "a is still held once");
        pool.release(a);
        pool.release(b);
        assert_eq!(pool.n_free(), 4);
    }

    #[test]
    fn full_blocks_are_found_by_content_and_forgotten_when_freed() {
        let mut pool = KvPool::new(4, 2);
        let a = pool.allocate().expect("free");
        let h = block_hash(0, &[1, 2]);
        pool.register_full(a, h, &[1, 2]);
        assert_eq!(pool.lookup(0, &[1, 2]), Some((a, h)));
        assert_eq!(pool.lookup(0, &[1, 3]), None);
        assert_eq!(
            pool.lookup(7, &[1, 2]),
            None,
            "another parent is another prefix"
        );
        pool.release(a);
        assert_eq!(pool.lookup(0, &[1, 2]), None);
    }

    #[test]
    fn exhausted_pool_says_none() {
        let mut pool = KvPool::new(1, 8);
        assert!(pool.allocate().is_some());
        assert!(pool.allocate().is_none());
        assert_eq!(pool.blocks_for(17), 3);
    }
}

//! Shaping a step's prompt work: how many prompt tokens a step may compute beside decoding
//! sequences, how long a prompt's chunk is, and cutting a step's chunks of nearly equal
//! length to one length while more prompt work follows. Part of [`super::Scheduler`].
//!
//! # Invariants
//! - [`chunk_len`] never exceeds the budget, and exceeds the prompt allowance only to take a
//!   prompt whole whose rest is at most a quarter over it.
//! - [`Scheduler::equalize`] only shortens chunks, by at most `equal_chunk_slack` for a chunk
//!   of a longer prompt and at most `most` for one that ends its prompt.

use super::{PlanItem, Scheduler};

impl Scheduler {
    /// The prompt tokens the step being planned may compute, and whether any prompt is
    /// pending (waiting, or running with more than one position to compute). Unlimited
    /// unless some running sequence decodes; then the cap per pending prompt, or what each
    /// pending prompt would compute in a step of its own if that is more (see
    /// [`Self::set_prefill_cap`]).
    pub(super) fn prefill_allowance(&self) -> (usize, bool) {
        let cap = self.prefill_cap;
        let (mut n_prefilling, mut decoding, mut alone) = (0, false, 0usize);
        for id in &self.running {
            match self.seqs[id].left() {
                1 => decoding = true,
                n if n > 1 => {
                    n_prefilling += 1;
                    alone = alone.saturating_add(chunk_len(n, usize::MAX, cap));
                }
                _ => {}
            }
        }
        let pending = self.waiting.len() + n_prefilling;
        if !decoding {
            return (usize::MAX, pending > 0);
        }
        // (A step holds no more than its budget: the queue is not walked past that.)
        for id in &self.waiting {
            if alone >= self.cfg.max_batched_tokens {
                break;
            }
            alone = alone.saturating_add(chunk_len(self.seqs[id].left(), usize::MAX, cap));
        }
        (cap.saturating_mul(pending.max(1)).max(alone), pending > 0)
    }

    /// Whether prompt work remains after a step of `items`: a sequence waits, or a planned
    /// chunk leaves its prompt unfinished. Only then are chunks cut to equal lengths
    /// ([`Self::equalize`]): the cut tokens then go one per step beside later prompt chunks,
    /// at no cost. A step that ends the prompts of a burst computes them whole (llama.cpp
    /// then makes a small extra pass for each distinct length, a few milliseconds each on a
    /// GPU). Cut, each token left to go one per step would delay its sequence by a step,
    /// and the sequences that finish last end the burst. On an H100, a 64-request burst cut
    /// its last 13 prompts (256-260 tokens) to 256 and needed 129-131 decode steps; whole,
    /// it needed 127 and ended 15-20 ms sooner (its last prompt step took 11-22 ms longer).
    pub(super) fn prompts_follow(&self, items: &[PlanItem]) -> bool {
        !self.waiting.is_empty() || items.iter().any(|i| is_prompt_chunk(i) && !i.sample)
    }

    /// About how many steps the prompt work left after the step being planned takes (at
    /// least 1): the tokens of waiting prompts and of planned chunks that leave their prompt
    /// unfinished, over what a step holds beside one decode token per sequence.
    pub(super) fn prompt_steps_after(&self) -> usize {
        let waiting: usize = self.waiting.iter().map(|id| self.seqs[id].left()).sum();
        let unfinished: usize = self
            .running
            .iter()
            .map(|id| {
                let s = &self.seqs[id];
                s.left().saturating_sub(s.n_planned)
            })
            .sum();
        let n_seqs = (self.running.len() + self.waiting.len()).min(self.cfg.max_seqs);
        let room = self.cfg.max_batched_tokens.saturating_sub(n_seqs).max(1);
        (waiting + unfinished).div_ceil(room).max(1)
    }

    /// Cuts the step's prompt chunks that are a few tokens longer than a shorter one to that
    /// length (walking up from the shortest, a chunk further than that from the last length
    /// kept is kept as it is): at most `equal_chunk_slack` tokens for a chunk of a longer
    /// prompt (its next chunk takes them), at most `most` for one that ends its prompt. A
    /// sequence whose prompt then has at most the slack left computes it one token per step
    /// (`Sequence::trickle`), so a cut of `n` tokens gives its sequence its first token `n`
    /// steps later. `most` is at most the prompt steps still to come
    /// ([`Self::prompt_steps_after`]): a cut sequence then has its first token no later than
    /// the prompts of the last of those steps, and does not end a burst later than they do.
    /// On an H100, a burst of 64 prompts of 253-260 tokens gathered into two steps cut the
    /// first step's prompts by up to 3 tokens, and its last 8 sequences ended 2 steps after
    /// the others.
    pub(super) fn equalize(&mut self, items: &mut [PlanItem], most: usize) {
        let slack = self.cfg.equal_chunk_slack;
        // A chunk that ends its prompt would trickle what a cut leaves (at most `most`); one
        // of a longer prompt hands it to its next chunk (at most the slack).
        let mut lens: Vec<(usize, usize)> = items
            .iter()
            .filter(|i| is_prompt_chunk(i))
            .map(|i| (i.tokens.len(), if i.sample { most } else { slack }))
            .collect();
        lens.sort_unstable();
        let mut kept: Vec<usize> = Vec::new();
        for (l, limit) in lens {
            if kept.last().is_none_or(|&k| l > k + limit) {
                kept.push(l);
            }
        }
        for item in items.iter_mut().filter(|i| is_prompt_chunk(i)) {
            let len = kept[kept.partition_point(|&k| k <= item.tokens.len()) - 1];
            if len == item.tokens.len() {
                continue;
            }
            item.tokens.truncate(len);
            item.sample = false;
            let s = self.seqs.get_mut(&item.seq).expect("planned ids exist");
            s.n_planned = len;
            s.trickle = s.tokens.len() - (item.pos + len) <= slack + 1;
        }
    }
}

/// Whether a planned item computes a prompt chunk of two or more tokens (not a decode token,
/// a draft, or a tail going one token per step).
pub(super) fn is_prompt_chunk(item: &PlanItem) -> bool {
    item.n_draft == 0 && item.tokens.len() >= 2
}

/// Tokens of a prompt with `rest` tokens left to compute, in a step with `budget` tokens and
/// `prefill_left` prompt tokens left: as many as both allow, or all of `rest` when the budget
/// holds it and the prompt cap would leave a tail of at most a quarter of the chunk (a step of
/// its own for a few tokens costs about a whole decode step).
pub(super) fn chunk_len(rest: usize, budget: usize, prefill_left: usize) -> usize {
    let n = rest.min(budget).min(prefill_left);
    if n < rest && rest <= budget && rest - n <= n / 4 {
        rest
    } else {
        n
    }
}

//! The step backend on llama.cpp: one context, one batch per step (see [`LlamaStepBackend`]).
//!
//! # Invariants
//! - A step's items reach llama.cpp in ascending slot order, with filler tokens between and
//!   after them (`ContextOptions::fill_gaps`) and padding tokens after prompt chunks
//!   (`ContextOptions::pad_chunks`), each of which lives for that step only. A padding token
//!   comes after its chunk's last token at the next position, asks for no logits, and widens
//!   neither the step's attention nor its sequence past its stream.
//! - Logits rows are numbered in plan order: an item's rows are consecutive in the batch.
//! - A step's rows are read from llama.cpp's output buffer as a whole (one `llama_get_logits`
//!   call, one device synchronization), each at its index among the batch's outputs: after a
//!   step llama.cpp holds its outputs in batch order. Before any row is read this way, the
//!   rows with the lowest and the highest output index are checked against
//!   `llama_get_logits_ith`; a buffer laid out otherwise is read one call per row instead.

use std::cell::Cell;

use hyperllama_core::sched::StepPlan;
use hyperllama_core::SlotId;
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::{backend_error, unified_context, ContextOptions, Model};
use crate::backend::{BackendError, Capabilities, ExecStats, StepBackend};
use crate::error::Error;

/// The llama.cpp step backend: one context, one batch per step.
///
/// Its KV cache is either one unified pool (`seq_cp` of a prefix only tags the same cells with
/// another sequence id, but every step's attention and mask span every cell in use), or, with
/// [`ContextOptions::kv_streams`], one stream per slot: a sequence's attention spans its own
/// cells only (what llama-server and llama-batched-bench run), a prefix copy is a copy of the
/// source's whole stream (applied by llama.cpp before the next decode) with the positions past
/// the prefix then removed, and the batch lists its items by ascending slot, since llama.cpp
/// computes consecutive slots with equally many tokens in one micro-batch.
pub struct LlamaStepBackend<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    /// Per logits row (plan order): its token's index in the batch.
    rows: Vec<i32>,
    /// Per logits row: its index among the batch's outputs (every token asking for logits,
    /// fillers included, in batch order).
    out_rows: Vec<usize>,
    /// Where the step's rows are read, once looked up (see `logits`); reset by `execute`.
    outputs: Cell<Outputs>,
    /// Per plan item: its first logits row's index in the batch and among the outputs, and
    /// how many rows.
    item_rows: Vec<(i32, usize, usize)>,
    order: Vec<usize>,
    streams: bool,
    /// The KV cache is in host memory: a prefix crosses streams by serializing the source
    /// sequence's cells (see `copy_slot`).
    host_kv: bool,
    /// `ContextOptions::fill_gaps` (with streams).
    fill_gaps: bool,
    /// Filler and padding tokens of the last step as (slot, first position), removed before
    /// the next one (see `gap_fills` and `chunk_pads`).
    fillers: Vec<(i32, u32)>,
    n_fillers: u64,
    /// `ContextOptions::pad_chunks` where the model's tail is removable, else 0.
    pad_chunks: usize,
    /// Per plan item: its padding tokens this step (see `chunk_pads`).
    pads: Vec<usize>,
    n_padded: u64,
    /// The batch as (slot, tokens) runs in batch order, for `micro_batches`.
    runs: Vec<(i32, usize)>,
    /// Tokens per micro-batch (`n_ubatch`) with streams.
    n_ubatch: usize,
    stats: ExecStats,
    /// Warm-up batches computed at creation (see `warm_up`).
    n_warm_ups: usize,
    caps: Capabilities,
}

impl<'m> LlamaStepBackend<'m> {
    /// Creates the context for `model`.
    pub fn new(model: &'m Model, opts: &ContextOptions) -> Result<Self, Error> {
        let ctx = unified_context(model, opts, opts.n_slots, opts.swa_full)?;
        let caps = Capabilities {
            n_vocab: model.info.n_vocab,
            n_kv_cells: ctx.n_ctx() as usize,
            n_slots: opts.n_slots,
            max_batch_tokens: opts.n_batch,
        };
        let n_ubatch = ctx.n_ubatch() as usize;
        let mut backend = Self {
            ctx,
            batch: LlamaBatch::new(opts.n_batch + opts.pad_chunks, 1),
            rows: Vec::new(),
            out_rows: Vec::new(),
            outputs: Cell::new(Outputs::Unread),
            item_rows: Vec::new(),
            order: Vec::new(),
            streams: opts.kv_streams,
            host_kv: !model.on_gpu,
            fill_gaps: opts.kv_streams && opts.fill_gaps,
            fillers: Vec::new(),
            n_fillers: 0,
            pad_chunks: if opts.kv_streams && model.tail_removable(opts.swa_full) {
                opts.pad_chunks
            } else {
                0
            },
            pads: Vec::new(),
            n_padded: 0,
            runs: Vec::new(),
            n_ubatch,
            stats: ExecStats::default(),
            n_warm_ups: 0,
            caps,
        };
        if opts.warm_up {
            backend.warm_up(model.all_on_gpu());
        }
        Ok(backend)
    }

    /// Computes one throwaway batch of each shape in [`warm_up_shapes`] and empties the KV
    /// cache again. CUDA loads a kernel at its first launch, and llama.cpp's kernels are
    /// specialized by the number of tokens in a micro-batch (the quantized matrix products
    /// by tiles of 8 tokens up to 128) and per sequence (attention): a step of a new size
    /// took tens of milliseconds longer the first time (a first large prompt up to 200),
    /// which the first users after a load would otherwise pay, in the middle of a burst.
    /// An optimization only: a batch that fails ends the warm-up with a warning.
    fn warm_up(&mut self, full_step: bool) {
        let started = std::time::Instant::now();
        let shapes = warm_up_shapes(
            self.caps.n_slots,
            self.caps.max_batch_tokens,
            self.stream_cells(),
            self.caps.n_kv_cells,
            full_step,
        );
        for &(n_seqs, n_tokens) in &shapes {
            self.batch.clear();
            let added = (0..n_seqs).try_for_each(|seq| {
                (0..n_tokens).try_for_each(|pos| {
                    let last = pos + 1 == n_tokens;
                    self.batch
                        .add(LlamaToken(0), pos as i32, &[seq as i32], last)
                })
            });
            let decoded = added
                .map_err(|e| e.to_string())
                .and_then(|()| self.ctx.decode(&mut self.batch).map_err(|e| e.to_string()));
            self.ctx.clear_kv_cache();
            if let Err(e) = decoded {
                tracing::warn!(n_seqs, n_tokens, error = %e, "warm-up batch failed; warm-up ended");
                break;
            }
            self.n_warm_ups += 1;
        }
        self.batch.clear();
        tracing::debug!(
            batches = self.n_warm_ups,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "step context warmed up"
        );
    }

    /// Warm-up batches computed at creation (`ContextOptions::warm_up`).
    pub fn n_warm_ups(&self) -> usize {
        self.n_warm_ups
    }

    /// Where this step's logits rows are read: llama.cpp's whole output buffer when the rows
    /// with the lowest and the highest output index lie where the module docs say (each
    /// checked with its own `llama_get_logits_ith` call), else one call per row.
    fn find_outputs(&self) -> Outputs {
        let by_out = |r: &usize| self.out_rows[*r];
        let (Some(lo), Some(hi)) = (
            (0..self.out_rows.len()).min_by_key(by_out),
            (0..self.out_rows.len()).max_by_key(by_out),
        ) else {
            return Outputs::PerRow;
        };
        let base = self.ctx.get_logits().as_ptr();
        let at = |r: usize| base.wrapping_add(self.out_rows[r] * self.caps.n_vocab);
        let found = |r: usize| self.ctx.get_logits_ith(self.rows[r]).as_ptr();
        if at(lo) == found(lo) && at(hi) == found(hi) {
            Outputs::Whole(base)
        } else {
            tracing::debug!("llama.cpp's logits are not in batch order; reading them row by row");
            Outputs::PerRow
        }
    }

    /// The KV cells one sequence may hold: its stream's with `kv_streams`, else every cell.
    fn stream_cells(&self) -> usize {
        if self.streams {
            self.caps.n_kv_cells / self.caps.n_slots.max(1)
        } else {
            self.caps.n_kv_cells
        }
    }

    /// Filler tokens computed so far (see `ContextOptions::fill_gaps`).
    pub fn n_fillers(&self) -> u64 {
        self.n_fillers
    }

    /// Padding tokens computed so far (see `ContextOptions::pad_chunks`).
    pub fn n_padded(&self) -> u64 {
        self.n_padded
    }

    /// With `pad_chunks`: the step's padding tokens per plan item, into `self.pads` (see
    /// [`chunk_pads`]); returns how many in all.
    fn chunk_pads(&mut self, plan: &StepPlan) -> usize {
        self.pads.clear();
        self.pads.resize(plan.items.len(), 0);
        if self.pad_chunks == 0 {
            return 0;
        }
        let room = (self.caps.max_batch_tokens + self.pad_chunks).saturating_sub(plan.n_tokens());
        let stream_cells = self.stream_cells();
        chunk_pads(plan, &mut self.pads, room, stream_cells)
    }

    /// With `fill_gaps`: a filler token for each slot that no item of the step holds below
    /// the step's highest slot, rounded up to a bucket ([`SPAN_BUCKETS`]). llama.cpp computes
    /// a micro-batch over a run of consecutive streams only, so a gap left by a finished
    /// sequence costs another pass over the weights (a few milliseconds each; 64 decoding
    /// sequences with a dozen gaps took three times a step); and a step whose set of slots
    /// changes gets a new graph, which llama.cpp builds and the GPU runs kernel by kernel
    /// until the shape repeats (the steps where a burst's sequences finish one group after
    /// another took 17-35 ms instead of 14.5). With the span rounded up, a decode step keeps
    /// its shape while sequences finish, and its graph is replayed. Only in a step with
    /// single-token items: beside longer chunks only, a filler would cost a pass of its own.
    /// A filler is one token at the slot's next position (with logits nobody reads, so that a
    /// decode step's graph keeps its shape), removed before the next step; it is not placed
    /// where its position would widen the step's attention (llama.cpp attends over the cells
    /// of the fullest stream, rounded up to [`KV_PAD`]: a filler must not round past the
    /// furthest position the step computes) nor into a full stream, and the step's size,
    /// `padded` tokens of [`LlamaStepBackend::chunk_pads`] included, stays within `n_batch`
    /// and `pad_chunks`.
    /// Returns (slot, position) pairs in slot order.
    fn gap_fills(&self, plan: &StepPlan, padded: usize) -> Vec<(i32, u32)> {
        let mut fills = Vec::new();
        // A micro-batch gives each slot of its run as many tokens as the run's fewest: a
        // filler joins a run of single tokens at no cost, but beside longer chunks only (a
        // step of prompts, or of drafts) it would cost a pass of one token per slot.
        let singles = plan.items.iter().any(|i| i.tokens.len() == 1);
        let Some(&last) = self.order.last().filter(|_| self.fill_gaps && singles) else {
            return fills;
        };
        let furthest = plan
            .items
            .iter()
            .map(|i| i.pos + i.tokens.len())
            .max()
            .unwrap_or(0);
        let mut room =
            (self.caps.max_batch_tokens + self.pad_chunks).saturating_sub(plan.n_tokens() + padded);
        let stream_cells = self.stream_cells();
        let span = plan.items[last].slot.0 as usize + 1;
        let end = SPAN_BUCKETS
            .iter()
            .copied()
            .find(|&b| b >= span)
            .unwrap_or(span)
            .min(self.caps.n_slots);
        // `order` lists the items by ascending slot.
        let mut held = self
            .order
            .iter()
            .map(|&i| plan.items[i].slot.0 as usize)
            .peekable();
        for slot in 0..end {
            if held.peek() == Some(&slot) {
                held.next();
                continue;
            }
            if room == 0 {
                break;
            }
            let pos = (self.ctx.kv_cache_seq_pos_max(slot as i32) + 1).max(0) as usize;
            // A full stream has no cell for it (llama.cpp sizes streams in multiples of 256
            // cells, so the rounding below already keeps clear of it; this is a guard).
            if pos < stream_cells
                && (pos + 1).next_multiple_of(KV_PAD) <= furthest.next_multiple_of(KV_PAD)
            {
                fills.push((slot as i32, pos as u32));
                room -= 1;
            }
        }
        fills
    }
}

/// Adds a filler token (slot, position) from [`LlamaStepBackend::gap_fills`], asking for
/// logits nobody reads, as a lone unsampled token does: a decode step's graph then keeps its
/// shape (every token an output).
fn add_filler(batch: &mut LlamaBatch<'_>, (slot, pos): (i32, u32)) -> Result<(), BackendError> {
    batch
        .add(LlamaToken(0), pos as i32, &[slot], true)
        .map_err(|_| BackendError::InvalidBatch)
}

/// Where a step's logits rows are read (see the module docs).
#[derive(Clone, Copy)]
enum Outputs {
    /// Not looked up since the step.
    Unread,
    /// The start of llama.cpp's output buffer: rows in batch order, `n_vocab` floats each.
    Whole(*const f32),
    /// One `llama_get_logits_ith` call per row.
    PerRow,
}

/// The warm-up batches (see `LlamaStepBackend::warm_up`) as (sequences, tokens each):
/// every total of 1 to 8 tokens and every multiple of 8 up to 128 (the quantized products'
/// tiles), as one token per sequence where there are that many slots (a decode step) or else
/// spread evenly over as many slots as divide it; then prompt chunks of 256 tokens for one
/// sequence and for four; with `full_step` (every layer on the GPU, where a step of thousands
/// of tokens takes a fraction of a second), as many chunks of 256 as a step holds. Each
/// within `n_batch`, each sequence's tokens fewer than the cells it may hold
/// (`stream_cells`), and all of them fewer than the cache's `cells`.
///
/// The full step is there for unquantized weights: their large products go to cuBLAS, whose
/// kernels for a step of 4,352 tokens loaded at the first such step (an F16 8B model's first
/// burst of prompts: 233 ms against 170 for the same step later), and ggml's CUDA memory pool
/// grows to that step's scratch then.
fn warm_up_shapes(
    n_slots: usize,
    n_batch: usize,
    stream_cells: usize,
    cells: usize,
    full_step: bool,
) -> Vec<(usize, usize)> {
    let n_slots = n_slots.max(1);
    let totals = (1..=8).chain((16..=128).step_by(8));
    let full = full_step.then(|| (n_slots.min(n_batch / 256).max(1), 256));
    let mut shapes: Vec<(usize, usize)> = totals
        .map(|n| {
            let seqs = (1..=n.min(n_slots)).rev().find(|d| n % d == 0).unwrap_or(1);
            (seqs, n / seqs)
        })
        .chain([(1, 256), (n_slots.min(4), 256)])
        .chain(full)
        .filter(|&(seqs, each)| {
            seqs * each <= n_batch && each < stream_cells && seqs * each < cells
        })
        .collect();
    shapes.dedup();
    shapes
}

/// What llama.cpp rounds the cells a step attends over up to (at least; `get_n_kv`).
const KV_PAD: usize = 256;

/// The most padding tokens a prompt chunk gets ([`chunk_pads`]): chat prompts of one text
/// differ by a few tokens of template, and a prompt continuing a cached conversation in
/// place starts a block or two (16 tokens each) in; a pass over an 8B model's F16 weights
/// costs what a few hundred tokens of a large step do, a quantized model's what a few dozen
/// do.
const MAX_CHUNK_PAD: usize = 32;

/// The slot spans a step is padded to with fillers ([`LlamaStepBackend::gap_fills`]): a
/// filler costs about what one more decoding sequence does, a pass or a graph more far more.
const SPAN_BUCKETS: [usize; 13] = [1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256];

impl StepBackend for LlamaStepBackend<'_> {
    fn execute(&mut self, plan: &StepPlan) -> Result<(), BackendError> {
        for (slot, pos) in self.fillers.drain(..) {
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(slot as u32), Some(pos), None);
        }
        for trim in &plan.trim {
            // Rejected draft positions: the tail of the sequence, always removable.
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(trim.slot.0), Some(trim.from as u32), None);
        }
        for slot in &plan.clear {
            // Removing a whole sequence always succeeds.
            let _ = self.ctx.clear_kv_cache_seq(Some(slot.0), None, None);
        }
        for copy in &plan.copy {
            self.copy_slot(copy.src, copy.dst, copy.n_tokens);
        }
        self.rows.clear();
        self.out_rows.clear();
        self.outputs.set(Outputs::Unread);
        self.stats = ExecStats::default();
        if plan.items.is_empty() {
            return Ok(());
        }
        self.batch.clear();
        self.order.clear();
        self.order.extend(0..plan.items.len());
        if self.streams {
            self.order.sort_by_key(|&i| plan.items[i].slot.0);
        }
        self.item_rows.clear();
        self.item_rows.resize(plan.items.len(), (0, 0, 0));
        // Tokens asking for logits so far: the next output's index.
        let mut n_out = 0;
        // llama.cpp takes a micro-batch's sequences in batch order and consecutive slots
        // only: fillers go between the items they join.
        let padded = self.chunk_pads(plan);
        let fills = self.gap_fills(plan, padded);
        let mut next_fill = fills.iter().peekable();
        self.runs.clear();
        for &i in &self.order {
            let item = &plan.items[i];
            while let Some(&&fill) = next_fill.peek() {
                if fill.0 >= item.slot.0 as i32 {
                    break;
                }
                add_filler(&mut self.batch, fill)?;
                self.runs.push((fill.0, 1));
                n_out += 1;
                next_fill.next();
            }
            let seq = [item.slot.0 as i32];
            let last = item.tokens.len().saturating_sub(1);
            for (j, &token) in item.tokens.iter().enumerate() {
                // A speculating item needs logits after its last token and every draft.
                let want_logits = item.sample && j + item.n_draft >= last;
                // A lone token that is not sampled (a prompt's tail going one token per step)
                // still asks for logits, which nobody reads, where fillers are used: a decode
                // step's graph then keeps its shape (every token an output) and llama.cpp
                // replays it instead of building and capturing another.
                let steady = self.fill_gaps && item.tokens.len() == 1;
                self.batch
                    .add(
                        LlamaToken(token as i32),
                        (item.pos + j) as i32,
                        &seq,
                        want_logits || steady,
                    )
                    .map_err(|_| BackendError::InvalidBatch)?;
                if want_logits {
                    let rows = &mut self.item_rows[i];
                    if rows.2 == 0 {
                        (rows.0, rows.1) = (self.batch.n_tokens() - 1, n_out);
                    }
                    rows.2 += 1;
                }
                if want_logits || steady {
                    n_out += 1;
                }
            }
            let end = item.pos + item.tokens.len();
            let token = item.tokens.last().copied().unwrap_or(0);
            for k in 0..self.pads[i] {
                self.batch
                    .add(LlamaToken(token as i32), (end + k) as i32, &seq, false)
                    .map_err(|_| BackendError::InvalidBatch)?;
            }
            self.runs.push((seq[0], item.tokens.len() + self.pads[i]));
        }
        // Fillers past the last item's slot.
        for &fill in next_fill {
            add_filler(&mut self.batch, fill)?;
            self.runs.push((fill.0, 1));
        }
        self.n_fillers += fills.len() as u64;
        self.fillers = fills;
        for &i in &self.order {
            if self.pads[i] > 0 {
                let item = &plan.items[i];
                let end = item.pos + item.tokens.len();
                self.fillers.push((item.slot.0 as i32, end as u32));
            }
        }
        self.n_padded += padded as u64;
        self.stats = ExecStats {
            passes: if self.streams {
                micro_batches(&self.runs, self.n_ubatch)
            } else {
                self.batch
                    .n_tokens()
                    .max(0)
                    .unsigned_abs()
                    .div_ceil(self.n_ubatch as u32) as usize
            },
            padded,
        };
        // Logits rows in plan order: an item's rows are consecutive in the batch.
        for &(first, first_out, n) in &self.item_rows {
            self.rows.extend((0..n as i32).map(|k| first + k));
            self.out_rows.extend(first_out..first_out + n);
        }
        self.ctx.decode(&mut self.batch).map_err(backend_error)
    }

    fn logits(&self, row: usize) -> &[f32] {
        let outputs = match self.outputs.get() {
            Outputs::Unread => {
                let found = self.find_outputs();
                self.outputs.set(found);
                found
            }
            known => known,
        };
        let Outputs::Whole(base) = outputs else {
            return self.ctx.get_logits_ith(self.rows[row]);
        };
        let n_vocab = self.caps.n_vocab;
        // SAFETY: `find_outputs` found llama.cpp's output buffer laid out as the module docs
        // say: the row with the highest output index starts that many rows of `n_vocab`
        // floats past `base`, in one contiguous allocation holding at least that row whole,
        // and no row's index is higher. The buffer stays, unchanged, until the next `decode`,
        // which takes `&mut self`, so it outlives the returned borrow of `self`.
        #[allow(unsafe_code)]
        let logits =
            unsafe { std::slice::from_raw_parts(base.add(self.out_rows[row] * n_vocab), n_vocab) };
        debug_assert_eq!(
            logits.as_ptr(),
            self.ctx.get_logits_ith(self.rows[row]).as_ptr(),
            "row {row} read from the wrong place"
        );
        logits
    }

    fn copy_slot(&mut self, src: SlotId, dst: SlotId, n_tokens: usize) {
        if self.streams {
            // Across streams llama.cpp copies whole streams only (the destination is empty:
            // a new sequence's slot); the positions past the prefix are then dropped. In host
            // memory, serializing the source's cells and reading them into the destination
            // moves only the cells in use (a 500-token prefix of a 135M model: 12 MB instead
            // of a 94 MB stream, single-threaded memcpy); on a GPU the whole-stream copy stays
            // on the device.
            let copied = self.host_kv
                && self
                    .ctx
                    .state_seq_get(src.0 as i32, LlamaStateSeqFlags::empty())
                    .and_then(|state| self.ctx.state_seq_set(&state, dst.0 as i32))
                    .is_ok();
            if !copied {
                let _ = self
                    .ctx
                    .copy_kv_cache_seq(src.0 as i32, dst.0 as i32, None, None);
            }
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(dst.0), Some(n_tokens as u32), None);
        } else {
            let _ = self.ctx.copy_kv_cache_seq(
                src.0 as i32,
                dst.0 as i32,
                Some(0),
                Some(n_tokens as u32),
            );
        }
    }

    fn trim_slot(&mut self, slot: SlotId, from_pos: usize) {
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(slot.0), Some(from_pos as u32), None);
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn last_stats(&self) -> ExecStats {
        self.stats
    }
}

/// Pads a step's prompt chunks (items of two tokens or more, no drafts) to equal lengths:
/// `pads[i]` padding tokens for the plan's item `i` (`pads` holds a zero per item), at most
/// `room` in all, which it returns. With streams llama.cpp computes a micro-batch over a run
/// of consecutive slots, each giving it as many tokens as the run's shortest has left
/// ([`micro_batches`]): prompts of several lengths (chat prompts of one text, 255-260 tokens)
/// took a pass over the weights for each step in length along each run, a dozen passes where
/// one would do, each costing what a few hundred tokens do on a GPU. Chunks are grouped
/// longest first, a chunk joining the group of the longest chunk at most [`MAX_CHUNK_PAD`]
/// tokens longer, and padded to that length with copies of its last token at the next
/// positions (no logits): causal attention keeps them from changing what the chunk's own
/// tokens compute. A chunk is left as it is where its padding would take its sequence past
/// `stream_cells` or widen the step's attention (the cells of the fullest stream rounded up
/// to [`KV_PAD`], as for fillers), or would not fit what is left of `room`.
fn chunk_pads(plan: &StepPlan, pads: &mut [usize], mut room: usize, stream_cells: usize) -> usize {
    let mut chunks: Vec<usize> = (0..plan.items.len())
        .filter(|&i| plan.items[i].tokens.len() > 1 && plan.items[i].n_draft == 0)
        .collect();
    if chunks.len() < 2 {
        return 0;
    }
    chunks.sort_by_key(|&i| std::cmp::Reverse(plan.items[i].tokens.len()));
    let furthest = plan
        .items
        .iter()
        .map(|i| i.pos + i.tokens.len())
        .max()
        .unwrap_or(0)
        .next_multiple_of(KV_PAD);
    let mut group = 0;
    let mut padded = 0;
    for i in chunks {
        let (pos, len) = (plan.items[i].pos, plan.items[i].tokens.len());
        if group == 0 || len + MAX_CHUNK_PAD < group {
            group = len;
        }
        let pad = group - len;
        let end = pos + group;
        if pad > 0 && pad <= room && end <= stream_cells && end.next_multiple_of(KV_PAD) <= furthest
        {
            pads[i] = pad;
            room -= pad;
            padded += pad;
        }
    }
    padded
}

/// How many micro-batches llama.cpp splits a batch into with streams, the batch given as
/// (slot, tokens) per sequence in batch order (`llama_batch_allocr::split_equal`, sequential):
/// each takes the run of consecutive slots from the first with tokens left, as many tokens of
/// each as the run's fewest left (at most `n_ubatch` in all, and at least one each).
fn micro_batches(runs: &[(i32, usize)], n_ubatch: usize) -> usize {
    let mut left: Vec<usize> = runs.iter().map(|r| r.1).collect();
    let mut n = 0;
    while let Some(first) = left.iter().position(|&l| l > 0) {
        let mut end = first + 1;
        while end < runs.len()
            && left[end] > 0
            && runs[end].0 == runs[end - 1].0 + 1
            && end - first < n_ubatch.max(1)
        {
            end += 1;
        }
        let fewest = left[first..end].iter().copied().min().unwrap_or(1);
        let take = fewest.min((n_ubatch / (end - first)).max(1));
        for l in &mut left[first..end] {
            *l -= take;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::{chunk_pads, micro_batches, warm_up_shapes};
    use hyperllama_core::sched::{PlanItem, StepPlan};
    use hyperllama_core::{SeqId, SlotId};

    /// A plan of one item per (slot, position, tokens).
    fn plan(items: &[(u32, usize, usize)]) -> StepPlan {
        StepPlan {
            trim: Vec::new(),
            clear: Vec::new(),
            copy: Vec::new(),
            items: items
                .iter()
                .map(|&(slot, pos, n)| PlanItem {
                    seq: SeqId(u64::from(slot)),
                    slot: SlotId(slot),
                    pos,
                    tokens: vec![7; n],
                    sample: true,
                    n_draft: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn micro_batches_follow_runs_of_consecutive_slots_and_the_fewest_tokens_left() {
        // 64 decode tokens: one.
        let decode: Vec<(i32, usize)> = (0..64).map(|s| (s, 1)).collect();
        assert_eq!(micro_batches(&decode, 8192), 1);
        // Decode tokens, then prompts: all of them one token each, then the prompts' rest.
        assert_eq!(
            micro_batches(&[(0, 1), (1, 1), (2, 256), (3, 256)], 8192),
            2
        );
        // Prompts of 255, 257 and 256: 255 each, then slots 1 and 2 one each, then slot 1.
        assert_eq!(micro_batches(&[(0, 255), (1, 257), (2, 256)], 8192), 3);
        // A gap in the slots splits the run.
        assert_eq!(micro_batches(&[(0, 4), (2, 4)], 8192), 2);
        // At most n_ubatch tokens each.
        assert_eq!(micro_batches(&[(0, 1000)], 512), 2);
        assert_eq!(micro_batches(&[(0, 300), (1, 300)], 512), 2);
        assert_eq!(micro_batches(&[(0, 300), (1, 300), (2, 10)], 512), 3);
        assert_eq!(micro_batches(&[], 512), 0);
    }

    #[test]
    fn chunk_pads_make_a_steps_prompt_chunks_one_length_within_their_limits() {
        // Chat prompts of 255-260 tokens, a decode token and a shorter prompt.
        let p = plan(&[
            (0, 0, 255),
            (1, 0, 260),
            (2, 0, 257),
            (3, 0, 256),
            (4, 40, 1),
            (5, 0, 200),
        ]);
        let mut pads = vec![0; 6];
        assert_eq!(chunk_pads(&p, &mut pads, 1000, 4096), 12);
        assert_eq!(pads, [5, 0, 3, 4, 0, 0]);
        let runs: Vec<(i32, usize)> = (0..6)
            .map(|i| (i as i32, p.items[i].tokens.len() + pads[i]))
            .collect();
        let plain: Vec<(i32, usize)> = (0..6)
            .map(|i| (i as i32, p.items[i].tokens.len()))
            .collect();
        assert_eq!(micro_batches(&runs, 8192), 3);
        assert!(micro_batches(&plain, 8192) > 4);
        // Room for 6: the chunk of 257 gets its 3, the next ones do not fit.
        let mut pads = vec![0; 6];
        assert_eq!(chunk_pads(&p, &mut pads, 6, 4096), 3);
        assert_eq!(pads, [0, 0, 3, 0, 0, 0]);
        // Not past the stream's cells.
        let near_end = plan(&[(0, 0, 110), (1, 3800, 100)]);
        let mut pads = vec![0; 2];
        assert_eq!(chunk_pads(&near_end, &mut pads, 1000, 3905), 0);
        assert_eq!(chunk_pads(&near_end, &mut pads, 1000, 3910), 10);
        // Not where the step's attention would round past its furthest position.
        let wider = plan(&[(0, 0, 20), (1, 240, 10)]);
        let mut pads = vec![0; 2];
        assert_eq!(chunk_pads(&wider, &mut pads, 1000, 4096), 0);
        // One chunk, or drafts: nothing to pad.
        let mut pads = vec![0; 2];
        assert_eq!(
            chunk_pads(&plan(&[(0, 0, 20), (1, 9, 1)]), &mut pads, 1000, 4096),
            0
        );
        let mut drafts = plan(&[(0, 0, 20), (1, 9, 4)]);
        drafts.items[1].n_draft = 3;
        assert_eq!(chunk_pads(&drafts, &mut pads, 1000, 4096), 0);
    }

    #[test]
    fn warm_up_shapes_cover_every_tile_within_the_limits() {
        let shapes = warm_up_shapes(64, 4160, 4096, 64 * 4096, false);
        let totals: Vec<usize> = shapes.iter().map(|&(s, e)| s * e).collect();
        let mut want: Vec<usize> = (1..=8).chain((16..=128).step_by(8)).collect();
        want.extend([256, 1024]);
        assert_eq!(totals, want);
        // One token per sequence up to the slots, then spread over slots that divide it.
        assert!(shapes.contains(&(64, 1)) && shapes.contains(&(36, 2)));
        assert!(shapes.contains(&(60, 2)) && shapes.contains(&(64, 2)));
        assert_eq!(&shapes[shapes.len() - 2..], &[(1, 256), (4, 256)]);
        // Few slots: the same totals over fewer sequences; limits drop what does not fit.
        let one = warm_up_shapes(1, 512, 300, 300, false);
        assert!(one.iter().all(|&(s, _)| s == 1));
        assert_eq!(one.last(), Some(&(1, 256)));
        let small = warm_up_shapes(4, 64, 40, 4 * 40, false);
        assert!(small.iter().all(|&(s, e)| s * e <= 64 && e < 40));
        assert_eq!(small.last(), Some(&(4, 16)));
        // One unified cache: every sequence's tokens together fit it (four prompt chunks of
        // 256 do not).
        let unified = warm_up_shapes(4, 1024, 512, 512, true);
        assert!(unified.iter().all(|&(s, e)| s * e < 512));
        assert_eq!(unified.last(), Some(&(1, 256)));
    }

    #[test]
    fn warm_up_ends_with_a_full_prompt_step_when_every_layer_is_on_the_gpu() {
        // The GPU server's step: 4,352 prompt tokens plus one per slot.
        let shapes = warm_up_shapes(64, 4352 + 64, 4096, 64 * 4096, true);
        assert_eq!(shapes.last(), Some(&(17, 256)));
        assert_eq!(shapes[shapes.len() - 2], (4, 256));
        // Fewer slots than chunks: one chunk per slot, and none twice.
        let few = warm_up_shapes(2, 4096, 4096, 2 * 4096, true);
        assert_eq!(&few[few.len() - 2..], &[(1, 256), (2, 256)]);
        // A step too small for one chunk, or a stream too short: no full step.
        let tiny = warm_up_shapes(64, 200, 4096, 64 * 4096, true);
        assert!(tiny.iter().all(|&(s, e)| s * e <= 200));
        let short = warm_up_shapes(64, 4416, 256, 64 * 256, true);
        assert!(short.iter().all(|&(_, e)| e < 256));
    }
}

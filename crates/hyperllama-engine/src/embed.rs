//! Embeddings: turning inputs into vectors with llama.cpp's embedding mode.
//!
//! An [`EmbedRequest`] holds tokenized inputs ([`prepare_text`] tokenizes and truncates
//! text; [`prepare_tokens`] checks token ids). [`Engine::embed`](crate::Engine::embed) queues
//! it on the engine's bounded channel like a generation; the engine thread answers it on a
//! oneshot channel with one vector per input.
//!
//! **Where embeddings run.** On the engine thread, between generation steps: the thread
//! keeps, beside its step backend, a second llama.cpp context of the same model with
//! embeddings on and the model's pooling (the GGUF's `{arch}.pooling_type` when it names
//! mean, CLS or last, else mean), created on the first embedding request and kept as long as
//! the engine (the loaded model). Each loop iteration runs at most one embedding decode,
//! packing as many queued inputs (from one or several requests, one sequence id each) as fit
//! in `n_ctx` tokens and `n_seq_max` sequences, then goes on with generation. The other
//! choice, a thread of its own with a mutex around the context, would let an embedding
//! decode and a generation step run at the same time, and llama.cpp's spinning worker
//! threads collapse when two contexts compete for the cores.
//!
//! # Invariants
//! - At most one llama.cpp context of an engine computes at any moment: both belong to the
//!   engine thread, which runs one decode at a time.
//! - Every input has between 1 and `n_ctx` tokens, so one decode (one ubatch) holds it whole
//!   and its pooled vector is exact; vectors do not depend on which other inputs share the
//!   decode beyond float rounding in llama.cpp's kernels.
//! - Every accepted request is answered exactly once (vectors or an error), unless its
//!   receiver was dropped first, in which case its remaining inputs are skipped.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use hyperllama_core::TokenId;
use tokio::sync::oneshot;

use crate::llama::{EmbedContext, EmbedOptions, Model, Pooling};
use crate::Error;

/// Most inputs in one embedding decode.
pub const MAX_INPUTS_PER_DECODE: usize = 64;

/// One embedding request, already tokenized.
#[derive(Clone, Debug)]
pub struct EmbedRequest {
    /// The inputs' tokens; each between 1 and the engine's `n_ctx` tokens.
    pub inputs: Vec<Vec<TokenId>>,
    /// L2-normalize each vector.
    pub normalize: bool,
}

/// The answer to an [`EmbedRequest`].
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order, each `Model::n_embd` long.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs together.
    pub n_tokens: usize,
    /// From submission to the answer.
    pub duration: Duration,
}

/// Tokenizes `text` for embedding (with the model's BOS/EOS). Longer than `n_ctx` tokens:
/// cut to `n_ctx` when `truncate`, else an error. Empty text still yields the model's special
/// tokens; a text with no tokens at all is an error.
pub fn prepare_text(
    model: &Model,
    text: &str,
    n_ctx: usize,
    truncate: bool,
) -> Result<Vec<TokenId>, Error> {
    let tokens = model.tokenize(text, true, false);
    prepare_tokens(model, tokens, n_ctx, truncate)
}

/// Checks token ids for embedding (each below the vocabulary size), truncating or refusing
/// inputs longer than `n_ctx` as [`prepare_text`] does.
pub fn prepare_tokens(
    model: &Model,
    mut tokens: Vec<TokenId>,
    n_ctx: usize,
    truncate: bool,
) -> Result<Vec<TokenId>, Error> {
    let n_vocab = model.info().n_vocab;
    if let Some(&bad) = tokens
        .iter()
        .find(|&&t| usize::try_from(t).map_or(true, |t| t >= n_vocab))
    {
        return Err(Error::InvalidRequest(format!(
            "token {bad} is not in the model's vocabulary of {n_vocab} tokens"
        )));
    }
    if tokens.is_empty() {
        return Err(Error::InvalidRequest("an input has no tokens".into()));
    }
    if tokens.len() > n_ctx {
        if !truncate {
            return Err(Error::InvalidRequest(format!(
                "the input has {} tokens, more than the context length of {n_ctx}; set truncate to true or shorten it",
                tokens.len()
            )));
        }
        tokens.truncate(n_ctx);
    }
    Ok(tokens)
}

/// Scales `v` to unit Euclidean length (a zero vector stays zero), as Ollama normalizes.
pub fn normalize(v: &mut [f32]) {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

/// Cosine similarity of two vectors of equal length (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na * nb)) as f32
    }
}

/// A queued request on the engine thread.
pub(crate) struct Job {
    pub(crate) req: EmbedRequest,
    pub(crate) tx: oneshot::Sender<Result<Embeddings, Error>>,
    pub(crate) submitted: Instant,
    pub(crate) _ticket: crate::engine::Ticket,
    done: Vec<Vec<f32>>,
}

impl Job {
    pub(crate) fn new(
        req: EmbedRequest,
        tx: oneshot::Sender<Result<Embeddings, Error>>,
        submitted: Instant,
        ticket: crate::engine::Ticket,
    ) -> Self {
        Self {
            done: Vec::with_capacity(req.inputs.len()),
            req,
            tx,
            submitted,
            _ticket: ticket,
        }
    }

    /// Answers the request, after giving its ticket back: whoever reads the answer sees the
    /// engine's request count without this job.
    fn reply(self, result: Result<Embeddings, Error>) {
        let Self { tx, _ticket, .. } = self;
        drop(_ticket);
        let _ = tx.send(result);
    }
}

/// The engine thread's embedding state: the queue and the lazily created context.
pub(crate) struct EmbedQueue<'m> {
    jobs: VecDeque<Job>,
    ctx: Option<EmbedContext<'m>>,
    n_ctx: usize,
    n_threads: usize,
}

impl<'m> EmbedQueue<'m> {
    pub(crate) fn new(n_ctx: usize, n_threads: usize) -> Self {
        Self {
            jobs: VecDeque::new(),
            ctx: None,
            n_ctx,
            n_threads,
        }
    }

    pub(crate) fn push(&mut self, job: Job) {
        self.jobs.push_back(job);
    }

    pub(crate) fn has_work(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Fails every queued request with `message`.
    pub(crate) fn fail_all(&mut self, message: &str) {
        for job in self.jobs.drain(..) {
            job.reply(Err(Error::InvalidRequest(message.to_owned())));
        }
    }

    /// Runs one decode over the queued inputs that fit, and answers finished requests.
    pub(crate) fn step(&mut self, model: &'m Model) {
        self.jobs.retain(|j| !j.tx.is_closed());
        if self.jobs.is_empty() {
            return;
        }
        if self.ctx.is_none() {
            let opts = EmbedOptions {
                n_ctx: self.n_ctx,
                n_seq_max: MAX_INPUTS_PER_DECODE,
                n_threads: self.n_threads,
                pooling: model.pooling().unwrap_or(Pooling::Mean),
            };
            match EmbedContext::new(model, &opts) {
                Ok(ctx) => {
                    tracing::debug!(n_ctx = ctx.options().n_ctx, pooling = ?opts.pooling, "embedding context created");
                    self.ctx = Some(ctx);
                }
                Err(e) => {
                    let message = format!("cannot create the embedding context: {e}");
                    tracing::warn!("{message}");
                    self.fail_all(&message);
                    return;
                }
            }
        }
        let Some(ctx) = self.ctx.as_mut() else {
            return;
        };
        let n_ctx = ctx.options().n_ctx;
        let n_seq_max = ctx.options().n_seq_max;
        // Pack inputs in queue order: (job index, input index).
        let mut picked: Vec<(usize, usize)> = Vec::new();
        let mut n_tokens = 0;
        'jobs: for (j, job) in self.jobs.iter().enumerate() {
            for i in job.done.len()..job.req.inputs.len() {
                let len = job.req.inputs[i].len();
                if picked.len() == n_seq_max || n_tokens + len > n_ctx {
                    break 'jobs;
                }
                n_tokens += len;
                picked.push((j, i));
            }
        }
        if picked.is_empty() {
            // The first input is longer than the context granted (checked on submit against
            // the engine's n_ctx; llama.cpp may grant less).
            if let Some(job) = self.jobs.pop_front() {
                job.reply(Err(Error::InvalidRequest(format!(
                    "an input is longer than the embedding context of {n_ctx} tokens"
                ))));
            }
            return;
        }
        let inputs: Vec<&[TokenId]> = picked
            .iter()
            .map(|&(j, i)| self.jobs[j].req.inputs[i].as_slice())
            .collect();
        match ctx.embed(&inputs) {
            Ok(vectors) => {
                for (&(j, _), mut v) in picked.iter().zip(vectors) {
                    let job = &mut self.jobs[j];
                    if job.req.normalize {
                        normalize(&mut v);
                    }
                    job.done.push(v);
                }
            }
            Err(e) => {
                let failed: Vec<usize> = {
                    let mut js: Vec<usize> = picked.iter().map(|&(j, _)| j).collect();
                    js.dedup();
                    js
                };
                for &j in failed.iter().rev() {
                    if let Some(job) = self.jobs.remove(j) {
                        job.reply(Err(Error::Backend(e)));
                    }
                }
                return;
            }
        }
        while self
            .jobs
            .front()
            .is_some_and(|j| j.done.len() == j.req.inputs.len())
        {
            if let Some(mut job) = self.jobs.pop_front() {
                let n_tokens = job.req.inputs.iter().map(Vec::len).sum();
                let answer = Embeddings {
                    vectors: std::mem::take(&mut job.done),
                    n_tokens,
                    duration: job.submitted.elapsed(),
                };
                job.reply(Ok(answer));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = vec![0.0; 3];
        normalize(&mut z);
        assert_eq!(z, vec![0.0; 3]);
    }

    #[test]
    fn cosine_of_parallel_and_orthogonal_vectors() {
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 5.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }
}

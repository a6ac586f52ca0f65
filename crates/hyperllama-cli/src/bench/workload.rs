//! The workloads: what requests each sends, in what order and with how many clients, and how
//! their outcomes become [`Metrics`]. Each concurrent client is a tokio task.
//!
//! # Invariants
//! - A failed request is counted in its workload's `errors` and never stops the run.
//! - Prompts come from [`prompt`] with the run's seed and a stream number unique to the
//!   request (a workload shares a prompt only where it is the point: the shared-prefix
//!   system prompt, the multi-turn history).
//! - TTFT, ITL and token counts come only from successful requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{ms, Failure, Message, Outcome, Progress, Target};
use super::prompt;
use super::report::{Metrics, Params};
use super::stats::{inter_token_latencies, Chunk, Percentiles};

/// A workload of the bench command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// One client, sequential requests.
    Single,
    /// Parallel clients at each concurrency level.
    Sweep,
    /// Many users sharing one long system prompt.
    SharedPrefix,
    /// Two turns of one conversation with a long history.
    MultiTurn,
    /// One long prompt arriving while other streams decode.
    LongPrompt,
    /// `--burst` requests at once: how many are served, how many refused (HTTP 503), and
    /// whether the server still answers afterwards. Not part of `all`.
    Burst,
    /// `--users` streams dropped by their clients after the first token: how long until the
    /// server's KV cache is free again (read from its `/metrics`). Not part of `all`.
    Disconnect,
    /// One client asking, request after request, to copy a given document word for word: an
    /// input-grounded task, where speculative decoding with prompt lookup pays. Not part of
    /// `all`.
    Grounded,
    /// The five load workloads above (`single` to `long-prompt`).
    All,
}

impl Workload {
    /// Every concrete workload, in the order `all` runs them.
    pub const ORDER: [Workload; 5] = [
        Workload::Single,
        Workload::Sweep,
        Workload::SharedPrefix,
        Workload::MultiTurn,
        Workload::LongPrompt,
    ];

    /// The name on the command line and in the results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Single => "single",
            Workload::Sweep => "sweep",
            Workload::SharedPrefix => "shared-prefix",
            Workload::MultiTurn => "multi-turn",
            Workload::LongPrompt => "long-prompt",
            Workload::Burst => "burst",
            Workload::Disconnect => "disconnect",
            Workload::Grounded => "grounded",
            Workload::All => "all",
        }
    }

    /// The stream-number space of the workload's prompts.
    fn stream(self, idx: u64) -> u64 {
        let tag = match self {
            Workload::Burst => 6,
            Workload::Disconnect => 7,
            Workload::Grounded => 9,
            w => Workload::ORDER.iter().position(|o| *o == w).unwrap_or(8) as u64 + 1,
        };
        (tag << 40) | idx
    }
}

/// The workloads asked for, in run order, each once (`all` expands to every one).
pub fn expand(asked: &[Workload]) -> Vec<Workload> {
    let all = asked.is_empty() || asked.contains(&Workload::All);
    Workload::ORDER
        .into_iter()
        .filter(|w| all || asked.contains(w))
        .chain(
            [Workload::Burst, Workload::Disconnect, Workload::Grounded]
                .into_iter()
                .filter(|w| asked.contains(w)),
        )
        .collect()
}

/// The decoders of the long-prompt workload ask for at least this many tokens, so they are
/// still decoding when the long prompt is processed; they are stopped once it is.
const MIN_DECODER_TOKENS: u32 = 1024;

/// Runs one workload.
pub async fn run(w: Workload, target: &Arc<Target>, p: &Params) -> Vec<Metrics> {
    match w {
        Workload::Single => vec![with_drafts(target, single(target, p)).await],
        Workload::Sweep => {
            let n_text = if p.prompt_tokens > 0 {
                fit_text(target, p).await
            } else {
                0
            };
            let mut out = Vec::new();
            for (j, &c) in p.concurrency.iter().enumerate() {
                // A level given again is measured again, with prompts of its own.
                let rep = p.concurrency[..j].iter().filter(|&&d| d == c).count();
                out.push(with_drafts(target, sweep_level(target, p, c, rep, n_text)).await);
            }
            out
        }
        Workload::SharedPrefix => vec![with_drafts(target, shared_prefix(target, p)).await],
        Workload::MultiTurn => vec![with_drafts(target, multi_turn(target, p)).await],
        Workload::LongPrompt => vec![with_drafts(target, long_prompt(target, p)).await],
        Workload::Burst => vec![burst(target, p).await],
        Workload::Disconnect => vec![disconnect(target, p).await],
        Workload::Grounded => vec![with_drafts(target, grounded(target, p)).await],
        Workload::All => Vec::new(),
    }
}

/// Runs `row` and adds to its extras the draft tokens the server verified (`drafted`) and
/// accepted (`accepted`) meanwhile, from its `/metrics` (none for servers without them, or
/// when a model reloaded meanwhile): whether a row's speculation on/off difference comes from
/// drafting at all.
async fn with_drafts(target: &Target, row: impl std::future::Future<Output = Metrics>) -> Metrics {
    let before = target.draft_tokens().await;
    let mut m = row.await;
    if let (Some((d0, a0)), Some((d1, a1))) = (before, target.draft_tokens().await) {
        if d1 >= d0 && a1 >= a0 {
            m.extras.insert("drafted".into(), d1 - d0);
            m.extras.insert("accepted".into(), a1 - a0);
        }
    }
    m
}

/// Metrics of a set of request results, all finished now; the wall time runs from `start`.
fn summarize(
    w: Workload,
    concurrency: Option<usize>,
    results: &[Result<Outcome, Failure>],
    start: Instant,
) -> Metrics {
    let mut m = Metrics {
        workload: w.name().to_owned(),
        concurrency,
        requests: results.len(),
        ..Metrics::default()
    };
    let mut ttft = Vec::new();
    let mut itl = Vec::new();
    // Per-stream decoding: tokens after the first, over the time from first to last chunk.
    let (mut decoded, mut decode_s) = (0u64, 0.0);
    let (mut prompt_min, mut prompt_max) = (u64::MAX, 0u64);
    for r in results {
        match r {
            Ok(o) => {
                if let (Some(first), Some(last)) = (o.chunks.first(), o.chunks.last()) {
                    if last.at_ms > first.at_ms && o.output_tokens > 1 {
                        decoded += o.output_tokens - 1;
                        decode_s += (last.at_ms - first.at_ms) / 1000.0;
                    }
                }
                m.output_tokens += o.output_tokens;
                m.prompt_tokens += o.prompt_tokens.unwrap_or(0);
                if let Some(n) = o.prompt_tokens {
                    prompt_min = prompt_min.min(n);
                    prompt_max = prompt_max.max(n);
                }
                ttft.extend(o.ttft_ms);
                itl.extend(inter_token_latencies(&o.chunks));
            }
            Err(f) => {
                m.errors += 1;
                *m.error_kinds.entry(f.kind.clone()).or_default() += 1;
            }
        }
    }
    m.wall_s = start.elapsed().as_secs_f64();
    if m.wall_s > 0.0 {
        m.output_tok_s = m.output_tokens as f64 / m.wall_s;
    }
    m.ttft_ms = Percentiles::of(&ttft);
    m.itl_ms = Percentiles::of(&itl);
    if decode_s > 0.0 {
        m.extras
            .insert("decode_tok_s".into(), decoded as f64 / decode_s);
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    if ok > 0 && m.prompt_tokens > 0 {
        m.extras.insert(
            "prompt_tokens_mean".into(),
            m.prompt_tokens as f64 / ok as f64,
        );
        // How ragged the prompts are: llama.cpp computes the prompts of one step in a pass per
        // distinct remaining length when each sequence has its own KV stream.
        if prompt_max >= prompt_min {
            m.extras
                .insert("prompt_tokens_min".into(), prompt_min as f64);
            m.extras
                .insert("prompt_tokens_max".into(), prompt_max as f64);
        }
    }
    m
}

fn user(text: String) -> Vec<Message> {
    vec![Message::new("user", text)]
}

async fn single(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::Single;
    let start = Instant::now();
    let mut results = Vec::new();
    for i in 0..p.requests {
        let q = prompt::question(p.seed, w.stream(i as u64));
        results.push(target.chat(&user(q), p.max_tokens, None).await);
    }
    summarize(w, None, &results, start)
}

/// Sequential requests to copy a document (prose, [`prompt::document`]) of twice the answer length (at least 200 tokens),
/// so that the whole answer can be copied. `copied_fraction` is the share of the answers'
/// words that quote the document ([`copied_words`]): how grounded the answers really were.
async fn grounded(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::Grounded;
    let n_doc = (2 * p.max_tokens as usize).max(200);
    let start = Instant::now();
    let mut results = Vec::new();
    let (mut copied, mut words) = (0, 0);
    for i in 0..p.requests {
        let doc = prompt::document(p.seed, w.stream(i as u64), n_doc);
        let ask = format!("Copy the following text exactly, word for word.\n\n{doc}");
        let r = target.chat(&user(ask), p.max_tokens, None).await;
        if let Ok(o) = &r {
            let (c, n) = copied_words(&doc, &o.text);
            copied += c;
            words += n;
        }
        results.push(r);
    }
    let mut m = summarize(w, None, &results, start);
    if words > 0 {
        m.extras
            .insert("copied_fraction".into(), copied as f64 / words as f64);
    }
    m
}

/// How many of `answer`'s words quote `doc` (they start or continue a run of four words
/// found in `doc`; case and punctuation aside), and how many words `answer` has.
fn copied_words(doc: &str, answer: &str) -> (usize, usize) {
    const N: usize = 4;
    let norm = |t: &str| -> Vec<String> {
        t.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .flat_map(char::to_lowercase)
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (d, a) = (norm(doc), norm(answer));
    let grams: std::collections::HashSet<&[String]> = d.windows(N).collect();
    let mut quoted = vec![false; a.len()];
    for (i, g) in a.windows(N).enumerate() {
        if grams.contains(g) {
            quoted[i..i + N].iter_mut().for_each(|q| *q = true);
        }
    }
    (quoted.iter().filter(|q| **q).count(), a.len())
}

/// The words of text before each sweep question that make a prompt of `p.prompt_tokens`
/// tokens as the server counts them (chat template and question included), so that a sweep
/// level has the shape of `llama-batched-bench -npp N`: one request for one token per try,
/// the text corrected by the difference, at most four tries (the first guess, `prompt_tokens`
/// words, when the server does not count).
async fn fit_text(target: &Arc<Target>, p: &Params) -> usize {
    let want = p.prompt_tokens as i64;
    let mut n = p.prompt_tokens;
    // Level 0 does not exist: a stream no sweep request uses.
    let stream = Workload::Sweep.stream(0);
    for _ in 0..4 {
        let q = format!(
            "{}\n\n{}",
            prompt::text(p.seed, stream, n),
            prompt::question(p.seed, stream)
        );
        let Ok(Some(got)) = target
            .chat(&user(q), 1, None)
            .await
            .map(|o| o.prompt_tokens)
        else {
            break;
        };
        let diff = want - got as i64;
        if diff.abs() <= 1 {
            break;
        }
        n = (n as i64 + diff).max(1) as usize;
    }
    n
}

/// `c` clients sending requests back to back, `max(c, requests)` in all; each prompt is
/// `n_text` words of text before a question. `rep`: how many times this level ran before in
/// the sweep (each repetition has prompts of its own, so none finds another's in a cache).
async fn sweep_level(
    target: &Arc<Target>,
    p: &Params,
    c: usize,
    rep: usize,
    n_text: usize,
) -> Metrics {
    let w = Workload::Sweep;
    let total = c.max(p.requests);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (target, next) = (Arc::clone(target), Arc::clone(&next));
        let (seed, max_tokens) = (p.seed, p.max_tokens);
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break out;
                }
                let stream = sweep_stream(c, rep, i);
                let mut q = prompt::question(seed, stream);
                if n_text > 0 {
                    // Each request its own text: nothing for a prefix cache to share.
                    q = format!("{}\n\n{q}", prompt::text(seed, stream, n_text));
                }
                out.push(target.chat(&user(q), max_tokens, None).await);
            }
        }));
    }
    let results = join_all(tasks).await;
    summarize(w, Some(c), &results, start)
}

/// The prompt stream of request `i` of a sweep level of `c` clients run `rep` times before.
fn sweep_stream(c: usize, rep: usize, i: usize) -> u64 {
    Workload::Sweep.stream(((rep as u64) << 32) | ((c as u64) << 20) | i as u64)
}

async fn join_all(
    tasks: Vec<tokio::task::JoinHandle<Vec<Result<Outcome, Failure>>>>,
) -> Vec<Result<Outcome, Failure>> {
    let mut results = Vec::new();
    for t in tasks {
        match t.await {
            Ok(r) => results.extend(r),
            Err(e) => results.push(Err(Failure {
                kind: "client task".into(),
                detail: e.to_string(),
            })),
        }
    }
    results
}

/// `users` concurrent users, one request each, all with the same system prompt.
async fn shared_prefix(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::SharedPrefix;
    let system = prompt::text(p.seed, w.stream(0), p.system_tokens);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..p.users {
        let target = Arc::clone(target);
        let messages = vec![
            Message::new("system", system.clone()),
            Message::new("user", prompt::question(p.seed, w.stream(i as u64 + 1))),
        ];
        let max_tokens = p.max_tokens;
        tasks.push(tokio::spawn(async move {
            vec![target.chat(&messages, max_tokens, None).await]
        }));
    }
    let results = join_all(tasks).await;
    summarize(w, None, &results, start)
}

/// Answers in the burst are short: the point is admission, not throughput.
const BURST_MAX_TOKENS: u32 = 8;

/// `--burst` requests at once, then one more once they are all done.
async fn burst(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::Burst;
    let max_tokens = p.max_tokens.min(BURST_MAX_TOKENS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..p.burst {
        let target = Arc::clone(target);
        let q = prompt::question(p.seed, w.stream(i as u64 + 1));
        tasks.push(tokio::spawn(async move {
            vec![target.chat(&user(q), max_tokens, None).await]
        }));
    }
    let results = join_all(tasks).await;
    let mut m = summarize(w, None, &results, start);
    let after = target
        .chat(&user(prompt::question(p.seed, w.stream(0))), 2, None)
        .await;
    let refused = m.error_kinds.get("HTTP 503").copied().unwrap_or(0);
    m.extras
        .insert("served".into(), (m.requests - m.errors) as f64);
    m.extras.insert("refused_503".into(), refused as f64);
    m.extras
        .insert("alive_after".into(), if after.is_ok() { 1.0 } else { 0.0 });
    m
}

/// How long after its clients dropped their streams the server's KV cache stays in use.
async fn disconnect(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::Disconnect;
    let start = Instant::now();
    let mut streams = Vec::new();
    for i in 0..p.users {
        let target = Arc::clone(target);
        let progress: Progress = Arc::new(Mutex::new(Vec::new()));
        let pr = Arc::clone(&progress);
        let q = prompt::question(p.seed, w.stream(i as u64 + 1));
        let task =
            tokio::spawn(async move { target.chat(&user(q), MIN_DECODER_TOKENS, Some(&pr)).await });
        streams.push((task, progress));
    }
    // Every stream has its first token (or has ended).
    let deadline = Instant::now() + Duration::from_secs(p.timeout_s);
    let started = |pr: &Progress| pr.lock().map_or(0, |v| v.len()) > 0;
    while Instant::now() < deadline
        && streams
            .iter()
            .any(|(t, pr)| !t.is_finished() && !started(pr))
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let kv_before = target.kv_cells_used().await;
    let mut results = Vec::new();
    for (task, progress) in streams {
        task.abort();
        match task.await {
            Ok(r) => results.push(r),
            // Dropped by us, as a client going away: counts as a success that got its tokens.
            Err(_) => results.push(Ok(Outcome {
                ttft_ms: progress
                    .lock()
                    .ok()
                    .and_then(|v| v.first().map(|t| ms(t.saturating_duration_since(start)))),
                chunks: Vec::new(),
                output_tokens: progress.lock().map_or(0, |v| v.len() as u64),
                prompt_tokens: None,
                text: String::new(),
            })),
        }
    }
    let dropped = Instant::now();
    let mut freed_ms = None;
    if kv_before.is_some() {
        let until = dropped + Duration::from_secs(10);
        while Instant::now() < until {
            if target.kv_cells_used().await == Some(0.0) {
                freed_ms = Some(ms(dropped.elapsed()));
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let mut m = summarize(w, None, &results, start);
    if let Some(kv) = kv_before {
        m.extras.insert("kv_cells_before_drop".into(), kv);
        // -1: still in use 10 s after the clients left.
        m.extras
            .insert("kv_freed_after_ms".into(), freed_ms.unwrap_or(-1.0));
    }
    m
}

/// A history of about `n_tokens` tokens: four user/assistant exchanges.
fn history(seed: u64, w: Workload, n_tokens: usize) -> Vec<Message> {
    let per = (n_tokens / 8).max(1);
    let mut out = Vec::new();
    for i in 0..4u64 {
        out.push(Message::new(
            "user",
            prompt::text(seed, w.stream(2 * i + 10), per),
        ));
        out.push(Message::new(
            "assistant",
            prompt::text(seed, w.stream(2 * i + 11), per),
        ));
    }
    out
}

/// Turn 1 (history + question) and turn 2 (history + question + answer + new question).
async fn multi_turn(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::MultiTurn;
    let mut messages = history(p.seed, w, p.history_tokens);
    messages.push(Message::new("user", prompt::question(p.seed, w.stream(1))));
    let start = Instant::now();
    let first = target.chat(&messages, p.max_tokens, None).await;
    let mut results = vec![first.clone()];
    if let Ok(o) = &first {
        messages.push(Message::new("assistant", o.text.clone()));
        messages.push(Message::new("user", prompt::question(p.seed, w.stream(2))));
        results.push(target.chat(&messages, p.max_tokens, None).await);
    }
    let mut m = summarize(w, None, &results, start);
    let ttft = |i: usize| results.get(i).and_then(|r| r.as_ref().ok()?.ttft_ms);
    if let Some(t1) = ttft(0) {
        m.extras.insert("ttft_turn1_ms".into(), t1);
    }
    if let Some(t2) = ttft(1) {
        m.extras.insert("ttft_turn2_ms".into(), t2);
        if let Some(t1) = ttft(0).filter(|t| *t > 0.0) {
            m.extras.insert("turn2_over_turn1".into(), t2 / t1);
        }
    }
    m
}

/// Gaps between successive instants that overlap `[from, to]` (`to` None: unbounded), and
/// those that ended before `from`, in ms.
fn gaps_around(times: &[Instant], from: Instant, to: Option<Instant>) -> (Vec<f64>, Vec<f64>) {
    let (mut during, mut before) = (Vec::new(), Vec::new());
    for pair in times.windows(2) {
        let gap = ms(pair[1] - pair[0]);
        if pair[1] <= from {
            before.push(gap);
        } else if to.is_none_or(|to| pair[0] < to) {
            during.push(gap);
        }
    }
    (during, before)
}

/// `decoders` streams decode; once each has produced a few tokens, one long prompt is sent.
/// The decoders' ITL while it is processed (until its first token) shows how much a prefill
/// stalls running streams.
async fn long_prompt(target: &Arc<Target>, p: &Params) -> Metrics {
    let w = Workload::LongPrompt;
    let start = Instant::now();
    let decoder_tokens = p.max_tokens.max(MIN_DECODER_TOKENS);
    let mut decoders = Vec::new();
    for i in 0..p.decoders {
        let target = Arc::clone(target);
        let progress: Progress = Arc::new(Mutex::new(Vec::new()));
        let q = prompt::question(p.seed, w.stream(i as u64 + 1));
        let pr = Arc::clone(&progress);
        let task =
            tokio::spawn(async move { target.chat(&user(q), decoder_tokens, Some(&pr)).await });
        decoders.push((task, progress, Instant::now()));
    }
    // Wait until every decoder has a few tokens (a baseline ITL) or has ended.
    let deadline = Instant::now() + Duration::from_secs(p.timeout_s);
    let count = |pr: &Progress| pr.lock().map_or(0, |v| v.len());
    while Instant::now() < deadline
        && decoders
            .iter()
            .any(|(t, pr, _)| !t.is_finished() && count(pr) < 4)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let long_start = Instant::now();
    let long_messages = user(format!(
        "{}\n\nSummarize the text above.",
        prompt::text(p.seed, w.stream(0), p.long_tokens)
    ));
    let long = target.chat(&long_messages, p.max_tokens, None).await;
    let first_token = long
        .as_ref()
        .ok()
        .and_then(|o| o.ttft_ms)
        .map(|t| long_start + Duration::from_secs_f64(t / 1000.0));
    let mut done_early = 0usize;
    let mut results = Vec::new();
    let (mut during, mut before) = (Vec::new(), Vec::new());
    for (task, progress, sent) in decoders {
        task.abort();
        let joined = task.await;
        let times = progress.lock().map(|v| v.clone()).unwrap_or_default();
        let (d, b) = gaps_around(&times, long_start, first_token);
        during.extend(d);
        before.extend(b);
        match joined {
            Ok(Err(f)) => results.push(Err(f)),
            Ok(Ok(o)) => {
                let last = times.last().copied();
                // It ended before the long prompt's first token: no stall to see.
                if last.zip(first_token).is_none_or(|(l, f)| l < f) {
                    done_early += 1;
                }
                results.push(Ok(o));
            }
            Err(_) => {
                // A decoder stopped here counts the tokens it had streamed.
                let chunks: Vec<Chunk> = times
                    .iter()
                    .map(|t| Chunk {
                        at_ms: ms(*t - sent),
                        n_tokens: None,
                    })
                    .collect();
                results.push(Ok(Outcome {
                    ttft_ms: chunks.first().map(|c| c.at_ms),
                    output_tokens: chunks.len() as u64,
                    chunks,
                    prompt_tokens: None,
                    text: String::new(),
                }));
            }
        }
    }
    results.push(long.clone());
    let mut m = summarize(w, None, &results, start);
    for k in [
        "prompt_tokens_mean",
        "prompt_tokens_min",
        "prompt_tokens_max",
    ] {
        m.extras.remove(k);
    }
    if let Ok(o) = &long {
        if let Some(t) = o.ttft_ms {
            m.extras.insert("long_ttft_ms".into(), t);
        }
        if let Some(n) = o.prompt_tokens {
            m.extras.insert("long_prompt_tokens".into(), n as f64);
        }
    }
    let d = Percentiles::of(&during);
    if let (Some(p50), Some(p99)) = (d.p50, d.p99) {
        m.extras.insert("stall_itl_p50_ms".into(), p50);
        m.extras.insert("stall_itl_p99_ms".into(), p99);
        if p50 > 0.0 {
            m.extras.insert("stall_p99_over_p50".into(), p99 / p50);
        }
    }
    if let Some(b) = Percentiles::of(&before).p50 {
        m.extras.insert("before_itl_p50_ms".into(), b);
    }
    m.extras
        .insert("decoders_done_early".into(), done_early as f64);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::client::tests::{canned_server, BUSY};
    use crate::bench::client::Api;

    #[test]
    fn copied_words_count_the_answer_words_that_quote_the_document() {
        let doc = "Time year people. Way day man. Thing woman life child.";
        assert_eq!(copied_words(doc, "time Year people, way dog man"), (4, 6));
        assert_eq!(copied_words(doc, "Sure! man thing woman life, and"), (4, 6));
        assert_eq!(copied_words(doc, "Sure! Time year"), (0, 3));
        assert_eq!(copied_words(doc, ""), (0, 0));
        assert_eq!(copied_words(doc, doc), (10, 10));
    }

    #[test]
    fn every_sweep_request_has_a_prompt_stream_of_its_own_repeated_levels_included() {
        let mut seen = std::collections::HashSet::new();
        for (c, rep) in [(1, 0), (8, 0), (64, 0), (64, 1), (64, 2), (128, 0)] {
            for i in 0..c.max(3) {
                assert!(
                    seen.insert(sweep_stream(c, rep, i)),
                    "c={c} rep={rep} i={i}"
                );
            }
        }
        // The first run of a level keeps the streams it always had.
        assert_eq!(
            sweep_stream(64, 0, 5),
            Workload::Sweep.stream((64 << 20) | 5)
        );
    }

    #[tokio::test]
    async fn refused_requests_are_counted_not_fatal() {
        let url = canned_server(BUSY, &[]).await;
        let target = Arc::new(
            Target::new(&url, Api::Openai, "m", 1, Duration::from_secs(10)).expect("client"),
        );
        let p = Params {
            workloads: vec![],
            concurrency: vec![2],
            requests: 3,
            max_tokens: 4,
            seed: 1,
            system_tokens: 10,
            users: 2,
            history_tokens: 10,
            decoders: 2,
            long_tokens: 10,
            prompt_tokens: 0,
            timeout_s: 10,
            burst: 500,
        };
        let single = run(Workload::Single, &target, &p).await;
        assert_eq!(single.len(), 1);
        let m = &single[0];
        assert_eq!((m.requests, m.errors, m.output_tokens), (3, 3, 0));
        assert_eq!(m.error_kinds.get("HTTP 503"), Some(&3));
        assert_eq!(m.ttft_ms, Percentiles::default());
        let sweep = run(Workload::Sweep, &target, &p).await;
        assert_eq!(sweep[0].key(), "sweep c=2");
        assert_eq!((sweep[0].requests, sweep[0].errors), (3, 3));
        let long = run(Workload::LongPrompt, &target, &p).await;
        assert_eq!((long[0].requests, long[0].errors), (3, 3));
        let turns = run(Workload::MultiTurn, &target, &p).await;
        // Turn 2 needs turn 1's answer.
        assert_eq!((turns[0].requests, turns[0].errors), (1, 1));
    }

    #[test]
    fn all_expands_and_duplicates_collapse() {
        assert_eq!(expand(&[]), Workload::ORDER.to_vec());
        assert_eq!(
            expand(&[Workload::Single, Workload::All]),
            Workload::ORDER.to_vec()
        );
        assert_eq!(
            expand(&[Workload::MultiTurn, Workload::Single, Workload::Single]),
            vec![Workload::Single, Workload::MultiTurn]
        );
    }

    #[test]
    fn gaps_are_split_at_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let times = [at(0), at(10), at(20), at(120), at(130)];
        // Window [25, 110]: the 20 → 120 gap overlaps it; 120 → 130 starts after it.
        let (during, before) = gaps_around(&times, at(25), Some(at(110)));
        assert_eq!(before, vec![10.0, 10.0]);
        assert_eq!(during, vec![100.0]);
    }
}

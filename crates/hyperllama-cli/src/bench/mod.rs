//! `hyperllama bench`: a load generator for any Ollama- or OpenAI-compatible server (ours,
//! llama.cpp's llama-server, Ollama, vLLM), and `hyperllama bench compare` for its results.
//!
//! A run sends one warm-up request (it loads the model and proves the server answers; its
//! failure is the command's error), then the chosen workloads ([`workload`]) in a fixed
//! order, and reports throughput, time to first token and inter-token latency per workload as
//! a table on stdout, and optionally as JSON ([`report`]) and an SVG plot ([`plot`]).
//! Progress goes to stderr.
//!
//! Measurement choices (see also the README's bench section):
//! - TTFT is the time from sending a request to the first chunk with non-empty text.
//! - ITL is the gap between successive chunks with text; a chunk counts as one token (the
//!   streaming APIs do not say how many tokens a chunk holds).
//! - Output tokens are the server's count (`usage.completion_tokens`, `eval_count`), else
//!   the number of chunks with text.
//! - Percentiles are nearest-rank over all samples of a workload ([`stats`]).
//!
//! # Invariants
//! - Failed requests (HTTP 503/429, connection errors, timeouts) are counted per workload and
//!   never end the run; only the warm-up's failure does, as one `Error:` line naming the URL.
//! - The same `--seed` sends the same prompts ([`prompt`]).

pub mod client;
pub mod plot;
pub mod prompt;
pub mod report;
pub mod stats;
pub mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use client::{Api, Message, Target};
use report::{Params, Report, FORMAT};
use workload::Workload;

/// Arguments of `hyperllama bench`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: Option<BenchCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Compare result files (`--json`) side by side, with ratios against a baseline.
    Compare(CompareArgs),
}

/// Arguments of a benchmark run.
#[derive(Debug, Args)]
struct RunArgs {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:11434")]
    url: String,
    /// The API to use: OpenAI's /v1/chat/completions or Ollama's /api/chat.
    #[arg(long, value_enum, default_value = "openai")]
    api: Api,
    /// The model name, as the server knows it.
    #[arg(long, required = true)]
    model: Option<String>,
    /// Workloads to run (repeatable, or a comma list).
    #[arg(
        long = "workload",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    workloads: Vec<Workload>,
    /// The sweep's concurrency levels; a level given twice is measured twice, with other
    /// prompts (`64,64,64`: three measurements to take the median of).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64", value_parser = positive)]
    concurrency: Vec<usize>,
    /// Requests of the single workload; the sweep sends max(concurrency, N) per level.
    #[arg(long, default_value_t = 3, value_parser = positive)]
    requests: usize,
    /// Tokens to generate per request (the end-of-generation token is ignored).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_tokens: u32,
    /// Seed of the prompts and of the sampling.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// shared-prefix: tokens of the shared system prompt.
    #[arg(long, default_value_t = 500)]
    system_tokens: usize,
    /// shared-prefix: concurrent users.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    users: usize,
    /// multi-turn: tokens of the conversation's history.
    #[arg(long, default_value_t = 2000)]
    history_tokens: usize,
    /// long-prompt: streams decoding while the long prompt arrives.
    #[arg(long, default_value_t = 8, value_parser = positive)]
    decoders: usize,
    /// long-prompt: tokens of the long prompt.
    #[arg(long, default_value_t = 2000, value_parser = positive)]
    long_tokens: usize,
    /// sweep: tokens of each prompt as the server counts them, chat template and question
    /// included (text before the question is sized to fit, with a few one-token requests
    /// first), e.g. 256 for a like-for-like check against `llama-batched-bench -npp 256`;
    /// 0: the question alone (about 30 tokens with a template).
    #[arg(long, default_value_t = 0)]
    prompt_tokens: usize,
    /// A name for this run in results and comparisons (default: the URL's host and port).
    #[arg(long)]
    label: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG plot of the results to this file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// burst: requests sent at once.
    #[arg(long, default_value_t = 500, value_parser = positive)]
    burst: usize,
    /// Seconds a request may take in all (connecting may take at most 5).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
}

/// Arguments of `hyperllama bench compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// Result files written by `hyperllama bench --json`.
    #[arg(required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// The label (or file name) of the result the others are compared with (default: the
    /// first file).
    #[arg(long)]
    baseline: Option<String>,
    /// Print a GitHub markdown table.
    #[arg(long)]
    markdown: bool,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, not {s:?}")),
    }
}

/// Runs `hyperllama bench`.
pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.command {
        Some(BenchCommand::Compare(c)) => compare(&c),
        None => run(args.run),
    }
}

/// The host and port of a URL (`http://127.0.0.1:11434/` → `127.0.0.1:11434`).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

fn run(a: RunArgs) -> anyhow::Result<()> {
    let model = a.model.clone().context("--model is required")?;
    if !(a.url.starts_with("http://") || a.url.starts_with("https://")) {
        bail!("--url must start with http:// or https://, not {:?}", a.url);
    }
    let workloads = workload::expand(&a.workloads);
    let params = Params {
        workloads: workloads.iter().map(|w| w.name().to_owned()).collect(),
        concurrency: a.concurrency.clone(),
        requests: a.requests,
        max_tokens: a.max_tokens,
        seed: a.seed,
        system_tokens: a.system_tokens,
        users: a.users,
        history_tokens: a.history_tokens,
        decoders: a.decoders,
        long_tokens: a.long_tokens,
        prompt_tokens: a.prompt_tokens,
        timeout_s: a.timeout,
        burst: a.burst,
    };
    let target = Arc::new(Target::new(
        &a.url,
        a.api,
        &model,
        a.seed,
        Duration::from_secs(a.timeout),
    )?);
    let mut report = Report {
        format: FORMAT.to_owned(),
        label: a.label.clone().unwrap_or_else(|| host_port(&a.url)),
        url: target.url.clone(),
        api: a.api.as_str().to_owned(),
        model,
        timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        params,
        results: Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let hello = [Message::new("user", "Say hello.")];
        let t0 = std::time::Instant::now();
        if let Err(f) = target.chat(&hello, 1, None).await {
            bail!("the warm-up request failed: {}", f.detail);
        }
        eprintln!(
            "bench: {} answers with {} (warm-up {:.1} s)",
            target.url,
            report.model,
            t0.elapsed().as_secs_f64()
        );
        for w in &workloads {
            eprintln!("bench: {}", w.name());
            report
                .results
                .extend(workload::run(*w, &target, &report.params).await);
        }
        Ok(())
    })?;
    print!("{}", report::results_table(&report.results));
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &a.plot {
        plot::write_svg(&report, path)?;
    }
    Ok(())
}

fn compare(c: &CompareArgs) -> anyhow::Result<()> {
    let reports = c
        .files
        .iter()
        .map(|f| Report::read(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let baseline = match &c.baseline {
        None => 0,
        Some(b) => reports
            .iter()
            .zip(&c.files)
            .position(|(r, f)| &r.label == b || f.to_string_lossy() == *b)
            .with_context(|| {
                let labels: Vec<&str> = reports.iter().map(|r| r.label.as_str()).collect();
                format!(
                    "no result is labelled {b:?} (labels: {})",
                    labels.join(", ")
                )
            })?,
    };
    let (header, rows) = report::compare_rows(&reports, baseline);
    if c.markdown {
        print!("{}", report::markdown_table(&header, &rows));
    } else {
        print!("{}", report::text_table(&header, &rows));
        println!("(ratios: value / {})", header[baseline + 1]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_to_host_and_port() {
        assert_eq!(host_port("http://127.0.0.1:11434"), "127.0.0.1:11434");
        assert_eq!(host_port("https://gpu-box:8000/v1/"), "gpu-box:8000");
    }
}

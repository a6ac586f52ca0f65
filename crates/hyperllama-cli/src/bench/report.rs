//! Benchmark results: the JSON file (`--json`), the table on stdout, and `bench compare`'s
//! table of several result files.
//!
//! # Invariants
//! - A result file carries `"format": "hyperllama-bench/1"`; `compare` refuses files without
//!   it, so a wrong file is a clear error, not a table of dashes.
//! - A row of results is identified by its workload and, for the sweep, its concurrency
//!   ([`Metrics::key`]); `compare` matches rows across files by that key.
//! - A compare ratio is `value / baseline value` for every metric, lower-is-better latencies
//!   included (a TTFT ratio of 0.5 is twice as fast).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::stats::{ratio, Percentiles};

/// The format tag of a result file.
pub const FORMAT: &str = "hyperllama-bench/1";

/// The parameters of a run, as given (defaults filled in).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Params {
    /// The workloads run, in order.
    pub workloads: Vec<String>,
    /// The sweep's concurrency levels.
    pub concurrency: Vec<usize>,
    /// `--requests`.
    pub requests: usize,
    /// `--max-tokens`.
    pub max_tokens: u32,
    /// `--seed`.
    pub seed: u64,
    /// `--system-tokens`.
    pub system_tokens: usize,
    /// `--users`.
    pub users: usize,
    /// `--history-tokens`.
    pub history_tokens: usize,
    /// `--decoders`.
    pub decoders: usize,
    /// `--long-tokens`.
    pub long_tokens: usize,
    /// `--timeout`, seconds.
    pub timeout_s: u64,
    /// `--prompt-tokens` (the sweep's text before each question).
    #[serde(default)]
    pub prompt_tokens: usize,
    /// `--burst`.
    #[serde(default)]
    pub burst: usize,
}

/// The measurements of one workload (one concurrency level of the sweep).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// The workload's name.
    pub workload: String,
    /// The concurrency level (sweep only).
    pub concurrency: Option<usize>,
    /// Requests sent.
    pub requests: usize,
    /// Requests that failed.
    pub errors: usize,
    /// Failures by kind (`HTTP 503`, `timeout`, ...).
    pub error_kinds: BTreeMap<String, usize>,
    /// Prompt tokens of the successful requests, as the server counted them.
    pub prompt_tokens: u64,
    /// Output tokens of the successful requests.
    pub output_tokens: u64,
    /// Seconds from the first request sent to the last one finished.
    pub wall_s: f64,
    /// `output_tokens / wall_s`.
    pub output_tok_s: f64,
    /// Time to first token, ms.
    pub ttft_ms: Percentiles,
    /// Inter-token latency, ms.
    pub itl_ms: Percentiles,
    /// Workload-specific numbers (see the README's bench section).
    pub extras: BTreeMap<String, f64>,
}

impl Metrics {
    /// The row's identity: `sweep c=4`, or the workload's name.
    pub fn key(&self) -> String {
        match self.concurrency {
            Some(c) => format!("{} c={c}", self.workload),
            None => self.workload.clone(),
        }
    }
}

/// A whole run: what the `--json` file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`FORMAT`].
    pub format: String,
    /// `--label` (default: the URL's host and port).
    pub label: String,
    /// The server's base URL.
    pub url: String,
    /// `openai` or `ollama`.
    pub api: String,
    /// The model.
    pub model: String,
    /// When the run started, RFC 3339 UTC.
    pub timestamp: String,
    /// The parameters.
    pub params: Params,
    /// One entry per workload (per level for the sweep).
    pub results: Vec<Metrics>,
}

impl Report {
    /// Reads a result file; anything else is an error that says so.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{} is not a hyperllama bench result: {e}", path.display())
        })?;
        if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            bail!(
                "{} is not a hyperllama bench result (no \"format\": \"{FORMAT}\")",
                path.display()
            );
        }
        serde_json::from_value(v).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid hyperllama bench result: {e}",
                path.display()
            )
        })
    }
}

/// A number for a table: 3 significant digits or so.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 || (v.fract() == 0.0 && a < 1e15) {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), num)
}

/// A plain text table: the first column (and the `extras` column) left-aligned, the others
/// right-aligned.
pub fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate().take(n) {
            if i == 0 {
                let _ = write!(s, "{cell:<w$}", w = widths[i]);
            } else if header[i] == "extras" {
                let _ = write!(s, "  {cell:<w$}", w = widths[i]);
            } else {
                let _ = write!(s, "  {cell:>w$}", w = widths[i]);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, header);
    for row in rows {
        line(&mut out, row);
    }
    out
}

/// A GitHub markdown table: the first column left-aligned, the others right-aligned.
pub fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let cells = |c: &[String]| format!("| {} |\n", c.join(" | "));
    out.push_str(&cells(header));
    let rule: Vec<String> = (0..header.len())
        .map(|i| if i == 0 { "---".into() } else { "---:".into() })
        .collect();
    out.push_str(&cells(&rule));
    for row in rows {
        out.push_str(&cells(row));
    }
    out
}

/// The results of one run as a table, one row per workload (per level for the sweep).
pub fn results_table(results: &[Metrics]) -> String {
    let header: Vec<String> = [
        "workload", "reqs", "errs", "out tok", "wall s", "tok/s", "TTFT p50", "p95", "p99",
        "ITL p50", "p95", "p99", "extras",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|m| {
            let extras: Vec<String> = m
                .extras
                .iter()
                .map(|(k, v)| format!("{k}={}", num(*v)))
                .collect();
            vec![
                m.key(),
                m.requests.to_string(),
                m.errors.to_string(),
                m.output_tokens.to_string(),
                num(m.wall_s),
                num(m.output_tok_s),
                opt(m.ttft_ms.p50),
                opt(m.ttft_ms.p95),
                opt(m.ttft_ms.p99),
                opt(m.itl_ms.p50),
                opt(m.itl_ms.p95),
                opt(m.itl_ms.p99),
                extras.join(" "),
            ]
        })
        .collect();
    let mut out = text_table(&header, &rows);
    out.push_str("(latencies in ms)\n");
    let errors: BTreeMap<&str, usize> = results.iter().flat_map(|m| m.error_kinds.iter()).fold(
        BTreeMap::new(),
        |mut acc, (k, v)| {
            *acc.entry(k.as_str()).or_default() += v;
            acc
        },
    );
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(out, "errors: {}", list.join(", "));
    }
    out
}

/// The metrics `compare` shows for a row, by name.
fn compared_metrics(m: &Metrics) -> Vec<(String, Option<f64>)> {
    let mut v = vec![
        ("output tok/s".to_owned(), Some(m.output_tok_s)),
        ("TTFT p50 ms".to_owned(), m.ttft_ms.p50),
        ("TTFT p95 ms".to_owned(), m.ttft_ms.p95),
        ("TTFT p99 ms".to_owned(), m.ttft_ms.p99),
        ("ITL p50 ms".to_owned(), m.itl_ms.p50),
        ("ITL p95 ms".to_owned(), m.itl_ms.p95),
        ("ITL p99 ms".to_owned(), m.itl_ms.p99),
        ("errors".to_owned(), Some(m.errors as f64)),
    ];
    v.extend(m.extras.iter().map(|(k, x)| (k.clone(), Some(*x))));
    v
}

/// `compare`'s table: one row per (workload, metric), one column per report, each value
/// after the baseline's followed by its ratio to the baseline (`1.25x`).
pub fn compare_rows(reports: &[Report], baseline: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["metric".to_owned()];
    let mut seen: Vec<String> = Vec::new();
    for r in reports {
        let mut name = r.label.clone();
        if seen.contains(&name) {
            name = format!("{name} #{}", seen.len() + 1);
        }
        seen.push(r.label.clone());
        header.push(name);
    }
    // The rows, in order of first appearance.
    let mut rows_keys: Vec<(String, String)> = Vec::new();
    for r in reports {
        for m in &r.results {
            for (metric, _) in compared_metrics(m) {
                let k = (m.key(), metric);
                if !rows_keys.contains(&k) {
                    rows_keys.push(k);
                }
            }
        }
    }
    let value = |r: &Report, key: &str, metric: &str| -> Option<f64> {
        let m = r.results.iter().find(|m| m.key() == key)?;
        compared_metrics(m)
            .into_iter()
            .find(|(name, _)| name == metric)
            .and_then(|(_, v)| v)
    };
    let rows = rows_keys
        .iter()
        .map(|(key, metric)| {
            let base = value(&reports[baseline], key, metric);
            let mut row = vec![format!("{key}: {metric}")];
            for (i, r) in reports.iter().enumerate() {
                let v = value(r, key, metric);
                let cell = match (v, i == baseline, ratio(v, base)) {
                    (None, _, _) => "-".to_owned(),
                    (Some(v), false, Some(q)) => format!("{} ({q:.2}x)", num(v)),
                    (Some(v), _, _) => num(v),
                };
                row.push(cell);
            }
            row
        })
        .collect();
    (header, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(label: &str, tok_s: f64, ttft: f64) -> Report {
        let mut extras = BTreeMap::new();
        extras.insert("turn2_over_turn1".to_owned(), 0.25);
        Report {
            format: FORMAT.to_owned(),
            label: label.to_owned(),
            url: "http://127.0.0.1:11434".to_owned(),
            api: "openai".to_owned(),
            model: "m".to_owned(),
            timestamp: "2026-01-01T00:00:00Z".to_owned(),
            params: Params {
                workloads: vec!["sweep".into()],
                concurrency: vec![1, 4],
                requests: 3,
                max_tokens: 128,
                seed: 42,
                system_tokens: 500,
                users: 16,
                history_tokens: 2000,
                decoders: 8,
                long_tokens: 2000,
                prompt_tokens: 0,
                timeout_s: 300,
                burst: 500,
            },
            results: vec![Metrics {
                workload: "sweep".into(),
                concurrency: Some(4),
                requests: 4,
                output_tok_s: tok_s,
                ttft_ms: Percentiles {
                    p50: Some(ttft),
                    p95: Some(ttft),
                    p99: None,
                },
                extras,
                ..Metrics::default()
            }],
        }
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("r.json");
        let r = report("ours", 100.0, 20.0);
        std::fs::write(&path, serde_json::to_string_pretty(&r).expect("json")).expect("written");
        assert_eq!(Report::read(&path).expect("reads"), r);
    }

    #[test]
    fn a_file_that_is_not_a_result_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("x.json");
        std::fs::write(&path, r#"{"hello": 1}"#).expect("written");
        let e = Report::read(&path).expect_err("refused").to_string();
        assert!(e.contains("is not a hyperllama bench result"), "{e}");
        std::fs::write(&path, "not json").expect("written");
        let e = Report::read(&path).expect_err("refused").to_string();
        assert!(e.contains("is not a hyperllama bench result"), "{e}");
        let e = Report::read(&dir.path().join("missing.json"))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
    }

    #[test]
    fn compare_shows_ratios_against_the_baseline() {
        let reports = [report("a", 100.0, 20.0), report("b", 150.0, 10.0)];
        let (header, rows) = compare_rows(&reports, 0);
        assert_eq!(header, ["metric", "a", "b"]);
        let row = |name: &str| {
            rows.iter()
                .find(|r| r[0] == name)
                .unwrap_or_else(|| panic!("row {name}"))
                .clone()
        };
        assert_eq!(
            row("sweep c=4: output tok/s"),
            ["sweep c=4: output tok/s", "100", "150 (1.50x)"]
        );
        assert_eq!(
            row("sweep c=4: TTFT p50 ms"),
            ["sweep c=4: TTFT p50 ms", "20", "10 (0.50x)"]
        );
        assert_eq!(
            row("sweep c=4: TTFT p99 ms"),
            ["sweep c=4: TTFT p99 ms", "-", "-"]
        );
        assert_eq!(row("sweep c=4: turn2_over_turn1")[2], "0.25 (1.00x)");
        // The other file as the baseline.
        let (_, rows) = compare_rows(&reports, 1);
        assert_eq!(rows[0][1], "100 (0.67x)");
        assert_eq!(rows[0][2], "150");
        let md = markdown_table(&header, &rows);
        assert!(
            md.starts_with("| metric | a | b |\n| --- | ---: | ---: |\n"),
            "{md}"
        );
    }
}

//! Prometheus metrics at `GET /metrics` (text exposition format 0.0.4, written by hand), and
//! the request log.
//!
//! Counted as things happen: HTTP requests by method, route (the matched route pattern, so
//! that model names and blob digests do not make new series) and status, with a duration
//! histogram; prompt, cached and generated tokens per model; embedding inputs and tokens per
//! model; time to first token (from the request's arrival, model load included) and the time
//! between consecutive tokens of a stream. Read at scrape time from the residency: loaded
//! models, and per model the engine's requests, running sequences, queue depth, KV cells used,
//! cached and total, preemptions and steps (the engine publishes its `EngineStats` after each
//! step).
//!
//! The machine, read at scrape time through a [`Probe`] created on the first scrape (NVML is
//! initialised once and its handle kept): logical CPU cores, the CPU model and its SIMD
//! features as an info gauge (`hyperllama_cpu_info{model,simd} 1`), total and available
//! memory, and per NVIDIA GPU (labels `index`, `name`, `compute_capability`) total and free
//! memory. Without NVML (no driver) GPU memory is unknown and the GPU series are absent.
//!
//! [`track`] is the outermost middleware: it counts every request (refusals included), runs
//! the handler inside a `request` span (method, path), and logs method, path, status and the
//! time to the response head at `info` (target `hyperllama::http`). Generations log their
//! token counts when they end (`native`).
//!
//! # Invariants
//! - Counters only grow; histogram buckets are cumulative and end with `+Inf` = `_count`.
//! - Label values are escaped as the exposition format requires.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyperllama_engine::hardware::{Hardware, Probe};
use tracing::Instrument;

use crate::AppState;

/// A histogram over seconds with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const TTFT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const ITL_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Token counts of one model.
#[derive(Clone, Copy, Debug, Default)]
struct ModelCounts {
    generations: u64,
    prompt_tokens: u64,
    cached_tokens: u64,
    generated_tokens: u64,
    embed_requests: u64,
    embed_inputs: u64,
    embed_tokens: u64,
}

/// The server's metrics. Shared (`Arc`) by the middleware, the residency and the handlers.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    request_duration: Histogram,
    models: Mutex<BTreeMap<String, ModelCounts>>,
    ttft: Histogram,
    itl: Histogram,
    probe: OnceLock<Probe>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            request_duration: Histogram::new(REQUEST_BUCKETS),
            models: Mutex::new(BTreeMap::new()),
            ttft: Histogram::new(TTFT_BUCKETS),
            itl: Histogram::new(ITL_BUCKETS),
            probe: OnceLock::new(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metrics {
    /// Counts a finished HTTP request (at its response head).
    pub fn record_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        *lock(&self.requests)
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        self.request_duration.observe(took);
    }

    /// The time from a generation request's arrival to its first token.
    pub fn record_first_token(&self, d: Duration) {
        self.ttft.observe(d);
    }

    /// The time between two consecutive tokens of one generation.
    pub fn record_inter_token(&self, d: Duration) {
        self.itl.observe(d);
    }

    /// A finished generation's token counts.
    pub fn record_generation(&self, model: &str, n_prompt: usize, n_cached: usize, n_eval: usize) {
        let mut models = lock(&self.models);
        let c = models.entry(model.to_owned()).or_default();
        c.generations += 1;
        c.prompt_tokens += n_prompt as u64;
        c.cached_tokens += n_cached as u64;
        c.generated_tokens += n_eval as u64;
    }

    /// A finished embedding request.
    pub fn record_embedding(&self, model: &str, n_inputs: usize, n_tokens: usize) {
        let mut models = lock(&self.models);
        let c = models.entry(model.to_owned()).or_default();
        c.embed_requests += 1;
        c.embed_inputs += n_inputs as u64;
        c.embed_tokens += n_tokens as u64;
    }

    /// The machine now (memory and GPU memory read anew; NVML initialised on first use).
    pub fn hardware(&self) -> Hardware {
        self.probe.get_or_init(Probe::new).read()
    }

    /// The text exposition of every metric, with the residency's live numbers and the
    /// machine's.
    pub fn render(&self, residency: &crate::residency::Residency) -> String {
        let mut out = String::new();
        render_hardware(&mut out, &self.hardware());
        family(
            &mut out,
            "hyperllama_http_requests_total",
            "counter",
            "HTTP requests by method, route and status.",
        );
        for ((method, route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "hyperllama_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(method),
                escape(route)
            );
        }
        self.request_duration.render(
            &mut out,
            "hyperllama_http_request_duration_seconds",
            "Time from a request's arrival to its response head.",
        );
        let models = lock(&self.models).clone();
        type Count = fn(&ModelCounts) -> u64;
        let per_model: [(&str, &str, &str, Count); 7] = [
            (
                "hyperllama_generations_total",
                "counter",
                "Finished generations.",
                |c| c.generations,
            ),
            (
                "hyperllama_prompt_tokens_total",
                "counter",
                "Prompt tokens computed (not taken from the prefix cache).",
                |c| c.prompt_tokens,
            ),
            (
                "hyperllama_prompt_cached_tokens_total",
                "counter",
                "Prompt tokens taken from the prefix cache.",
                |c| c.cached_tokens,
            ),
            (
                "hyperllama_generated_tokens_total",
                "counter",
                "Tokens generated.",
                |c| c.generated_tokens,
            ),
            (
                "hyperllama_embedding_requests_total",
                "counter",
                "Finished embedding requests.",
                |c| c.embed_requests,
            ),
            (
                "hyperllama_embedding_inputs_total",
                "counter",
                "Inputs embedded.",
                |c| c.embed_inputs,
            ),
            (
                "hyperllama_embedding_tokens_total",
                "counter",
                "Tokens of embedded inputs.",
                |c| c.embed_tokens,
            ),
        ];
        for (name, kind, help, get) in per_model {
            family(&mut out, name, kind, help);
            for (model, c) in &models {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(model), get(c));
            }
        }
        self.ttft.render(
            &mut out,
            "hyperllama_time_to_first_token_seconds",
            "Time from a generation request's arrival (model load included) to its first token.",
        );
        self.itl.render(
            &mut out,
            "hyperllama_inter_token_latency_seconds",
            "Time between consecutive tokens of a generation.",
        );
        let loads = residency.engine_loads();
        family(
            &mut out,
            "hyperllama_models_loaded",
            "gauge",
            "Models resident in memory.",
        );
        let _ = writeln!(out, "hyperllama_models_loaded {}", loads.len());
        type Gauge = fn(&crate::residency::EngineLoad) -> f64;
        let gauges: [(&str, &str, &str, Gauge); 10] = [
            (
                "hyperllama_engine_requests",
                "gauge",
                "Requests in the engine (queued or running).",
                |l| l.n_requests as f64,
            ),
            (
                "hyperllama_running_sequences",
                "gauge",
                "Sequences computing.",
                |l| l.stats.n_running as f64,
            ),
            (
                "hyperllama_queue_depth",
                "gauge",
                "Requests in the engine that are not computing yet.",
                |l| l.n_requests.saturating_sub(l.stats.n_running) as f64,
            ),
            (
                "hyperllama_draft_tokens",
                "gauge",
                "Draft tokens verified by speculative decoding since the model loaded.",
                |l| l.stats.n_drafted as f64,
            ),
            (
                "hyperllama_draft_tokens_accepted",
                "gauge",
                "Draft tokens accepted by speculative decoding since the model loaded.",
                |l| l.stats.n_accepted as f64,
            ),
            (
                "hyperllama_kv_cells_used",
                "gauge",
                "KV cells held by running sequences.",
                |l| l.stats.n_kv_used as f64,
            ),
            (
                "hyperllama_kv_cells_cached",
                "gauge",
                "KV cells held only by the prefix cache (reclaimable).",
                |l| l.stats.n_kv_cached as f64,
            ),
            (
                "hyperllama_kv_cells_total",
                "gauge",
                "KV cells in the cache.",
                |l| l.stats.n_kv_cells as f64,
            ),
            (
                "hyperllama_preemptions_total",
                "counter",
                "Sequences preempted for lack of KV cells.",
                |l| l.stats.n_preemptions as f64,
            ),
            (
                "hyperllama_engine_steps_total",
                "counter",
                "Engine steps executed.",
                |l| l.stats.n_steps as f64,
            ),
        ];
        for (name, kind, help, get) in gauges {
            family(&mut out, name, kind, help);
            for l in &loads {
                let _ = writeln!(out, "{name}{{model=\"{}\"}} {}", escape(&l.model), get(l));
            }
        }
        family(
            &mut out,
            "hyperllama_kv_cache_usage_ratio",
            "gauge",
            "Share of KV cells held by running sequences.",
        );
        for l in &loads {
            let ratio = if l.stats.n_kv_cells == 0 {
                0.0
            } else {
                l.stats.n_kv_used as f64 / l.stats.n_kv_cells as f64
            };
            let _ = writeln!(
                out,
                "hyperllama_kv_cache_usage_ratio{{model=\"{}\"}} {ratio}",
                escape(&l.model)
            );
        }
        out
    }
}

/// The machine's gauges (see the module docs). GPUs whose memory is unknown (0: NVML not
/// available) get no series.
pub fn render_hardware(out: &mut String, hw: &Hardware) {
    family(
        out,
        "hyperllama_cpu_logical_cores",
        "gauge",
        "Logical CPU cores.",
    );
    let _ = writeln!(out, "hyperllama_cpu_logical_cores {}", hw.n_logical_cores);
    family(
        out,
        "hyperllama_cpu_info",
        "gauge",
        "The CPU model and the SIMD features llama.cpp's kernels use (always 1).",
    );
    let _ = writeln!(
        out,
        "hyperllama_cpu_info{{model=\"{}\",simd=\"{}\"}} 1",
        escape(&hw.cpu_model),
        escape(&hw.simd.join(","))
    );
    family(
        out,
        "hyperllama_memory_total_bytes",
        "gauge",
        "Total memory.",
    );
    let _ = writeln!(out, "hyperllama_memory_total_bytes {}", hw.memory_total);
    family(
        out,
        "hyperllama_memory_available_bytes",
        "gauge",
        "Memory available to new allocations.",
    );
    let _ = writeln!(
        out,
        "hyperllama_memory_available_bytes {}",
        hw.memory_available
    );
    let gpus: Vec<_> = hw.gpus.iter().filter(|g| g.memory_total > 0).collect();
    if gpus.is_empty() {
        return;
    }
    type GpuBytes = fn(&hyperllama_engine::hardware::Gpu) -> u64;
    let series: [(&str, &str, GpuBytes); 2] = [
        (
            "hyperllama_gpu_memory_total_bytes",
            "Total memory of an NVIDIA GPU.",
            |g| g.memory_total,
        ),
        (
            "hyperllama_gpu_memory_free_bytes",
            "Free memory of an NVIDIA GPU.",
            |g| g.memory_free,
        ),
    ];
    for (name, help, get) in series {
        family(out, name, "gauge", help);
        for g in &gpus {
            let cc = g
                .compute_capability
                .map_or_else(String::new, |(a, b)| format!("{a}.{b}"));
            let _ = writeln!(
                out,
                "{name}{{index=\"{}\",name=\"{}\",compute_capability=\"{cc}\"}} {}",
                g.index,
                escape(&g.name),
                get(g)
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let residency = state.residency();
    let body = residency.metrics().render(residency);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// Counts and logs every request; the outermost middleware.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let span = tracing::info_span!("request", method = %method, path = %path);
    let resp = next.run(req).instrument(span).await;
    let took = started.elapsed();
    let status = resp.status().as_u16();
    metrics.record_request(&method, &route, status, took);
    tracing::info!(
        target: "hyperllama::http",
        method = %method,
        path = %path,
        status,
        duration_ms = took.as_secs_f64() * 1e3,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{le=\"1\"} 2\n"));
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_seconds_count 3\n"));
        assert!(out.contains("x_seconds_sum 5.55\n"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    fn machine(gpus: Vec<hyperllama_engine::hardware::Gpu>) -> Hardware {
        Hardware {
            cpu_model: "Test \"CPU\"".into(),
            n_logical_cores: 16,
            n_physical_cores: Some(8),
            simd: vec!["avx2", "fma"],
            memory_total: 64 << 30,
            memory_available: 48 << 30,
            gpus,
            nvml: None,
            compute_devices: vec!["CPU".into()],
        }
    }

    #[test]
    fn hardware_gauges_render_cpu_memory_and_each_gpu() {
        use hyperllama_engine::hardware::Gpu;
        let hw = machine(vec![
            Gpu {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total: 85_520_809_984,
                memory_free: 84_000_000_000,
                compute_capability: Some((9, 0)),
            },
            Gpu {
                index: 1,
                name: "NVIDIA H100 80GB HBM3".into(),
                memory_total: 85_520_809_984,
                memory_free: 1_000,
                compute_capability: Some((9, 0)),
            },
            // Found through /proc without NVML: memory unknown, no series.
            Gpu {
                index: 2,
                name: "mystery".into(),
                memory_total: 0,
                memory_free: 0,
                compute_capability: None,
            },
        ]);
        let mut out = String::new();
        render_hardware(&mut out, &hw);
        assert!(
            out.contains(
                "# TYPE hyperllama_cpu_logical_cores gauge\nhyperllama_cpu_logical_cores 16\n"
            ),
            "{out}"
        );
        assert!(
            out.contains("hyperllama_cpu_info{model=\"Test \\\"CPU\\\"\",simd=\"avx2,fma\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("hyperllama_memory_total_bytes 68719476736\n"),
            "{out}"
        );
        assert!(
            out.contains("hyperllama_memory_available_bytes 51539607552\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE hyperllama_gpu_memory_total_bytes gauge\n"),
            "{out}"
        );
        assert!(
            out.contains("hyperllama_gpu_memory_total_bytes{index=\"0\",name=\"NVIDIA H100 80GB HBM3\",compute_capability=\"9.0\"} 85520809984\n"),
            "{out}"
        );
        assert!(
            out.contains("hyperllama_gpu_memory_free_bytes{index=\"1\",name=\"NVIDIA H100 80GB HBM3\",compute_capability=\"9.0\"} 1000\n"),
            "{out}"
        );
        assert!(!out.contains("mystery"), "{out}");
        assert_eq!(
            out.matches("# HELP hyperllama_gpu_memory_free_bytes")
                .count(),
            1
        );

        // No GPU: the GPU families are absent altogether.
        let mut out = String::new();
        render_hardware(&mut out, &machine(Vec::new()));
        assert!(!out.contains("hyperllama_gpu_"), "{out}");
    }
}

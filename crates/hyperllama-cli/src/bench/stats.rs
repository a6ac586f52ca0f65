//! The statistics of a benchmark: nearest-rank percentiles, inter-token latencies from chunk
//! timestamps, and the ratios `bench compare` prints. Pure functions, no I/O.
//!
//! # Invariants
//! - A percentile of no samples is `None`, never 0 (an empty workload has no latency).
//! - Percentiles are nearest-rank: the value at rank `ceil(p / 100 * n)` of the sorted
//!   samples, so every reported percentile is a measured sample.

use serde::{Deserialize, Serialize};

/// The value at percentile `p` (0 < p <= 100) of `sorted` (ascending), by nearest rank.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// p50, p95 and p99 of a set of samples (milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// The median.
    pub p50: Option<f64>,
    /// The 95th percentile.
    pub p95: Option<f64>,
    /// The 99th percentile.
    pub p99: Option<f64>,
}

impl Percentiles {
    /// The percentiles of `samples` (any order; NaNs are dropped).
    pub fn of(samples: &[f64]) -> Self {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_by(f64::total_cmp);
        Percentiles {
            p50: percentile(&sorted, 50.0),
            p95: percentile(&sorted, 95.0),
            p99: percentile(&sorted, 99.0),
        }
    }
}

/// One streamed chunk that carried text: when it arrived (ms since the request started) and
/// how many tokens it held, when the server said so.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Chunk {
    /// Arrival time, milliseconds since the request was sent.
    pub at_ms: f64,
    /// Tokens in the chunk; `None` when unknown (counted as one).
    pub n_tokens: Option<u32>,
}

/// Inter-token latencies of one stream: the gap before each chunk after the first, divided by
/// that chunk's token count (a chunk of k tokens gives k samples of gap / k). A chunk whose
/// token count is unknown counts as one token: the APIs do not say, and servers that stream
/// token by token (ours, llama-server, Ollama, vLLM) send one token a chunk.
pub fn inter_token_latencies(chunks: &[Chunk]) -> Vec<f64> {
    let mut out = Vec::new();
    for pair in chunks.windows(2) {
        let gap = pair[1].at_ms - pair[0].at_ms;
        let k = pair[1].n_tokens.unwrap_or(1).max(1);
        for _ in 0..k {
            out.push(gap / f64::from(k));
        }
    }
    out
}

/// `value / baseline`, when both exist and the baseline is not zero.
pub fn ratio(value: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (value, baseline) {
        (Some(v), Some(b)) if b != 0.0 && v.is_finite() && b.is_finite() => Some(v / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_are_samples() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        // Five samples: p50 is the 3rd, p95 and p99 the 5th.
        let p = Percentiles::of(&[5.0, 1.0, 4.0, 2.0, 3.0]);
        assert_eq!((p.p50, p.p95, p.p99), (Some(3.0), Some(5.0), Some(5.0)));
        // One sample is every percentile.
        assert_eq!(Percentiles::of(&[7.0]).p50, Some(7.0));
        assert_eq!(percentile(&[7.0], 1.0), Some(7.0));
    }

    #[test]
    fn no_samples_have_no_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(Percentiles::of(&[]), Percentiles::default());
        assert_eq!(Percentiles::of(&[f64::NAN]).p99, None);
    }

    #[test]
    fn itl_divides_a_gap_by_the_chunks_tokens() {
        let c = |at_ms, n_tokens| Chunk { at_ms, n_tokens };
        assert!(inter_token_latencies(&[]).is_empty());
        assert!(inter_token_latencies(&[c(10.0, None)]).is_empty());
        assert_eq!(
            inter_token_latencies(&[c(10.0, None), c(30.0, None), c(35.0, None)]),
            vec![20.0, 5.0]
        );
        // A chunk of 4 tokens 40 ms after the previous one: four gaps of 10 ms.
        assert_eq!(
            inter_token_latencies(&[c(0.0, Some(1)), c(40.0, Some(4))]),
            vec![10.0; 4]
        );
        // A zero count is treated as one token, not dropped.
        assert_eq!(
            inter_token_latencies(&[c(0.0, None), c(8.0, Some(0))]),
            vec![8.0]
        );
    }

    #[test]
    fn ratios_need_both_values_and_a_nonzero_baseline() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(None, Some(2.0)), None);
        assert_eq!(ratio(Some(3.0), None), None);
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    }
}

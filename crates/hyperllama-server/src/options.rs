//! Request options shared by both APIs: Ollama's `options` map checked into typed
//! [`GenerateOptions`], and `keep_alive` values read into [`KeepAlive`].
//!
//! Ollama's keys are accepted as Ollama accepts them (integers may be written as any JSON
//! number); a key Ollama does not know is refused with `unknown parameter 'key'`, and a value
//! of the wrong type is refused too, both as 400s. Load-time keys that HyperLlama has no use
//! for yet (`num_batch`, `num_gpu`, ...) are type-checked and ignored.
//!
//! # Invariants
//! - A [`GenerateOptions`] holds only values of the right type and range; `None` means "use
//!   the model's default, else the server's".

use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Per-request generation options (Ollama's runtime and load-time options, and our
/// `ignore_eos` and `think_budget` extensions).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerateOptions {
    /// `temperature`.
    pub temperature: Option<f32>,
    /// `top_k`.
    pub top_k: Option<u32>,
    /// `top_p`.
    pub top_p: Option<f32>,
    /// `min_p`.
    pub min_p: Option<f32>,
    /// `repeat_penalty`.
    pub repeat_penalty: Option<f32>,
    /// `repeat_last_n`.
    pub repeat_last_n: Option<u32>,
    /// `presence_penalty`.
    pub presence_penalty: Option<f32>,
    /// `frequency_penalty`.
    pub frequency_penalty: Option<f32>,
    /// `seed`; negative means random, as Ollama's -1.
    pub seed: Option<i64>,
    /// `num_predict`; negative means unlimited.
    pub num_predict: Option<i64>,
    /// `stop` strings; `None` keeps the model's.
    pub stop: Option<Vec<String>>,
    /// `num_ctx`: a different value reloads the model.
    pub num_ctx: Option<usize>,
    /// Keep generating past end-of-generation tokens.
    pub ignore_eos: Option<bool>,
    /// The most tokens a thinking model may think before its answer (`think_budget`):
    /// then the end of the thinking is forced. `None`: see docs/tools-and-thinking.md.
    pub think_budget: Option<usize>,
}

/// Option keys Ollama knows but HyperLlama ignores for now (checked to be numbers or
/// booleans, then dropped).
const IGNORED_KEYS: &[&str] = &[
    "num_keep",
    "typical_p",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "num_thread",
    "draft_num_predict",
];

fn number(key: &str, v: &Value) -> Result<f64, ApiError> {
    v.as_f64().ok_or_else(|| {
        ApiError::bad_request(format!(
            "invalid option '{key}': expected a number, got {}",
            type_name(v)
        ))
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn non_negative(key: &str, v: &Value) -> Result<u64, ApiError> {
    let n = number(key, v)?;
    if n < 0.0 || !n.is_finite() {
        return Err(ApiError::bad_request(format!(
            "invalid option '{key}': must not be negative"
        )));
    }
    Ok(n as u64)
}

impl GenerateOptions {
    /// Reads Ollama's `options` map.
    pub fn from_ollama(map: &Map<String, Value>) -> Result<Self, ApiError> {
        let mut o = GenerateOptions::default();
        for (key, v) in map {
            // Ollama treats a null value as "not set".
            if v.is_null() {
                continue;
            }
            let k = key.as_str();
            let float = || number(k, v).map(|n| n as f32);
            let u32_of = || non_negative(k, v).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
            match k {
                "temperature" => o.temperature = Some(float()?),
                "top_k" => o.top_k = Some(u32_of()?),
                "top_p" => o.top_p = Some(float()?),
                "min_p" => o.min_p = Some(float()?),
                "repeat_penalty" => o.repeat_penalty = Some(float()?),
                "repeat_last_n" => o.repeat_last_n = Some(u32_of()?),
                "presence_penalty" => o.presence_penalty = Some(float()?),
                "frequency_penalty" => o.frequency_penalty = Some(float()?),
                "seed" => o.seed = Some(number(k, v)? as i64),
                "num_predict" => o.num_predict = Some(number(k, v)? as i64),
                "num_ctx" => {
                    let n = non_negative(k, v)?;
                    o.num_ctx = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "stop" => o.stop = Some(stop_list(k, v)?),
                "think_budget" => {
                    let n = non_negative(k, v)?;
                    o.think_budget = Some(usize::try_from(n).unwrap_or(usize::MAX));
                }
                "ignore_eos" => {
                    o.ignore_eos = Some(v.as_bool().ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "invalid option '{k}': expected a boolean, got {}",
                            type_name(v)
                        ))
                    })?);
                }
                k if IGNORED_KEYS.contains(&k) => {
                    if !(v.is_number() || v.is_boolean()) {
                        return Err(ApiError::bad_request(format!(
                            "invalid option '{k}': expected a number, got {}",
                            type_name(v)
                        )));
                    }
                }
                _ => {
                    return Err(ApiError::bad_request(format!("unknown parameter '{k}'")));
                }
            }
        }
        Ok(o)
    }
}

/// `stop` as a string or a list of strings.
pub fn stop_list(key: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    let bad = || {
        ApiError::bad_request(format!(
            "invalid option '{key}': expected a string or a list of strings"
        ))
    };
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Value::Null => Ok(Vec::new()),
        _ => Err(bad()),
    }
}

/// How long a model stays loaded after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until evicted or the server stops (a negative `keep_alive`).
    Forever,
    /// This long after the last request ends; zero unloads right after the response.
    For(Duration),
}

impl KeepAlive {
    /// Reads a `keep_alive` value: a Go duration string (`"5m"`, `"1h30m"`, `"-1"`), or a
    /// number of seconds; negative means forever.
    pub fn parse(v: &Value) -> Result<Self, ApiError> {
        let bad = || {
            ApiError::bad_request(format!(
                "invalid keep_alive {v}: expected a duration such as \"5m\" or a number of seconds"
            ))
        };
        let seconds = match v {
            Value::Number(n) => n.as_f64().ok_or_else(bad)?,
            Value::String(s) => match s.trim().parse::<f64>() {
                Ok(n) => n,
                Err(_) => go_duration_secs(s.trim()).ok_or_else(bad)?,
            },
            _ => return Err(bad()),
        };
        if seconds < 0.0 {
            Ok(KeepAlive::Forever)
        } else if seconds.is_finite() {
            Ok(KeepAlive::For(Duration::from_secs_f64(seconds)))
        } else {
            Err(bad())
        }
    }

    /// Reads a keep-alive setting given as text (`HYPERLLAMA_KEEP_ALIVE`: `"5m"`, `"300"`,
    /// `"-1"`).
    pub fn parse_str(s: &str) -> Result<Self, ApiError> {
        Self::parse(&Value::String(s.to_owned()))
    }

    /// As [`crate::ServerConfig::default_keep_alive`] takes it: `None` is forever.
    pub fn as_duration(self) -> Option<Duration> {
        match self {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => Some(d),
        }
    }

    /// The optional `keep_alive` of a request.
    pub fn parse_opt(v: Option<&Value>) -> Result<Option<Self>, ApiError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Self::parse(v).map(Some),
        }
    }

    /// Whether the model should be unloaded as soon as the request ends.
    pub fn is_zero(self) -> bool {
        self == KeepAlive::For(Duration::ZERO)
    }
}

/// Parses a Go `time.Duration` string (`300ms`, `1.5h`, `1h30m`, `-1m`) into seconds.
fn go_duration_secs(s: &str) -> Option<f64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n_end].parse().ok()?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u_end..];
        total += value * unit;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_reads_durations_seconds_and_negatives() {
        let secs = |s: u64| KeepAlive::For(Duration::from_secs(s));
        assert_eq!(KeepAlive::parse(&json!("5m")).ok(), Some(secs(300)));
        assert_eq!(KeepAlive::parse(&json!("1h30m")).ok(), Some(secs(5400)));
        assert_eq!(KeepAlive::parse(&json!(90)).ok(), Some(secs(90)));
        assert_eq!(KeepAlive::parse(&json!("90")).ok(), Some(secs(90)));
        assert_eq!(KeepAlive::parse(&json!(0)).ok(), Some(secs(0)));
        assert_eq!(KeepAlive::parse(&json!("0")).ok(), Some(secs(0)));
        assert_eq!(KeepAlive::parse(&json!(-1)).ok(), Some(KeepAlive::Forever));
        assert_eq!(
            KeepAlive::parse(&json!("-1m")).ok(),
            Some(KeepAlive::Forever)
        );
        assert_eq!(
            KeepAlive::parse(&json!("300ms")).ok(),
            Some(KeepAlive::For(Duration::from_millis(300)))
        );
        assert!(KeepAlive::parse(&json!("5 minutes")).is_err());
        assert_eq!(
            KeepAlive::parse_str("-1")
                .ok()
                .and_then(KeepAlive::as_duration),
            None
        );
        assert_eq!(
            KeepAlive::parse_str("2h")
                .ok()
                .and_then(KeepAlive::as_duration),
            Some(Duration::from_secs(7200))
        );
        assert!(KeepAlive::parse(&json!(true)).is_err());
    }

    #[test]
    fn options_are_typed_and_unknown_keys_refused() {
        let map = |v: Value| v.as_object().cloned().unwrap_or_default();
        let o = GenerateOptions::from_ollama(&map(json!({
            "temperature": 0, "top_k": 5.0, "num_ctx": 512, "stop": ["a", "b"],
            "seed": -1, "ignore_eos": true, "num_gpu": 0, "top_p": null
        })))
        .expect("valid options");
        assert_eq!(o.temperature, Some(0.0));
        assert_eq!(o.top_k, Some(5));
        assert_eq!(o.num_ctx, Some(512));
        assert_eq!(o.stop, Some(vec!["a".into(), "b".into()]));
        assert_eq!(o.seed, Some(-1));
        assert_eq!(o.ignore_eos, Some(true));
        assert_eq!(o.top_p, None);

        let err = GenerateOptions::from_ollama(&map(json!({"mirostat": 1}))).expect_err("unknown");
        assert_eq!(err.message, "unknown parameter 'mirostat'");
        let err = GenerateOptions::from_ollama(&map(json!({"temperature": "hot"})))
            .expect_err("wrong type");
        assert!(err.message.contains("temperature"), "{err}");
        assert!(GenerateOptions::from_ollama(&map(json!({"num_ctx": -5}))).is_err());
        assert!(GenerateOptions::from_ollama(&map(json!({"stop": [1]}))).is_err());
    }
}

//! The parameter table and the params layer (`application/vnd.ollama.image.params`).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Number, Value};

use crate::manifest::go_json;

/// The type of a parameter's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParamKind {
    /// A signed integer (Go `int`).
    Int,
    /// A number (Go `float32`).
    Float,
    /// `true`/`false` and Go's other spellings (`1`, `t`, `TRUE`, ...).
    Bool,
    /// A string that may be given several times; all values are kept (`stop`).
    StringList,
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ParamKind::Int => "an integer",
            ParamKind::Float => "a number",
            ParamKind::Bool => "true or false",
            ParamKind::StringList => "a string",
        })
    }
}

impl ParamKind {
    /// The JSON value of `text` for this kind, parsed as Go's `strconv` does; `None` when
    /// `text` is not of this kind.
    pub fn parse(self, text: &str) -> Option<Value> {
        match self {
            ParamKind::Int => text.parse::<i64>().ok().map(Value::from),
            ParamKind::Float => text
                .parse::<f32>()
                .ok()
                .filter(|f| f.is_finite())
                .map(float_value),
            ParamKind::Bool => match text {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(Value::Bool(true)),
                "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(Value::Bool(false)),
                _ => None,
            },
            ParamKind::StringList => Some(Value::String(text.to_owned())),
        }
    }
}

/// A float as Go's JSON encoder writes a `float32`: whole numbers without a fraction.
fn float_value(f: f32) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        // Exact: a whole f32 below 2^53 is a whole i64.
        Value::Number(Number::from(f as i64))
    } else {
        // The shortest decimal that reads back as this f32, as Go writes a float32.
        Number::from_f64(f.to_string().parse::<f64>().unwrap_or(f64::from(f)))
            .map_or(Value::Null, Value::Number)
    }
}

/// Every parameter a Modelfile may set, with its type: Ollama's `api.Options` (runtime) and
/// `api.Runner` (load-time) fields.
pub const PARAMETERS: &[(&str, ParamKind)] = &[
    ("num_keep", ParamKind::Int),
    ("seed", ParamKind::Int),
    ("num_predict", ParamKind::Int),
    ("top_k", ParamKind::Int),
    ("top_p", ParamKind::Float),
    ("min_p", ParamKind::Float),
    ("typical_p", ParamKind::Float),
    ("repeat_last_n", ParamKind::Int),
    ("temperature", ParamKind::Float),
    ("repeat_penalty", ParamKind::Float),
    ("presence_penalty", ParamKind::Float),
    ("frequency_penalty", ParamKind::Float),
    ("stop", ParamKind::StringList),
    ("num_ctx", ParamKind::Int),
    ("num_batch", ParamKind::Int),
    ("num_gpu", ParamKind::Int),
    ("main_gpu", ParamKind::Int),
    ("use_mmap", ParamKind::Bool),
    ("num_thread", ParamKind::Int),
    ("draft_num_predict", ParamKind::Int),
];

/// Parameters Ollama no longer supports: a Modelfile may still name them, and they are
/// dropped with a warning (Ollama's `deprecatedParameters`).
pub const DEPRECATED_PARAMETERS: &[&str] = &[
    "penalize_newline",
    "low_vram",
    "f16_kv",
    "logits_all",
    "vocab_only",
    "use_mlock",
    "mirostat",
    "mirostat_tau",
    "mirostat_eta",
];

/// The type of the parameter `name`, if it is one.
pub fn param_kind(name: &str) -> Option<ParamKind> {
    PARAMETERS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, kind)| *kind)
}

/// The parameters of a model: the JSON object of its params layer, keys sorted as Go's
/// encoder sorts map keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parameters {
    values: BTreeMap<String, Value>,
}

impl Parameters {
    /// Sets `name` from its text form: a list parameter gains a value, others are replaced.
    /// `None` when the name is unknown or the text is not of its type.
    pub fn insert_text(&mut self, name: &str, text: &str) -> Option<()> {
        let kind = param_kind(name)?;
        let value = kind.parse(text)?;
        if kind == ParamKind::StringList {
            match self
                .values
                .entry(name.to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(list) => list.push(value),
                other => *other = Value::Array(vec![value]),
            }
        } else {
            self.values.insert(name.to_owned(), value);
        }
        Some(())
    }

    /// Adds every parameter of `base` that `self` does not set (Ollama's `setParameters`
    /// when a model is created `FROM` another: the Modelfile's values win).
    pub fn merge_missing(&mut self, base: &Parameters) {
        for (name, value) in &base.values {
            self.values
                .entry(name.clone())
                .or_insert_with(|| value.clone());
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// All parameters, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The params layer's bytes (Go's encoding).
    pub fn to_json(&self) -> Vec<u8> {
        go_json(&self.values)
    }

    /// Reads a params layer. Any JSON object is accepted, so that a model made by a newer
    /// Ollama still shows its parameters.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let map: Map<String, Value> = serde_json::from_slice(bytes)?;
        Ok(Parameters {
            values: map.into_iter().collect(),
        })
    }

    /// The `PARAMETER` lines for these values (one per element of a list), sorted by name.
    pub fn to_commands(&self) -> Vec<super::Command> {
        let mut commands = Vec::new();
        for (name, value) in &self.values {
            let values = match value {
                Value::Array(list) => list.iter().collect(),
                single => vec![single],
            };
            for v in values {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                commands.push(super::Command::Parameter {
                    name: name.clone(),
                    value: text,
                });
            }
        }
        commands
    }
}

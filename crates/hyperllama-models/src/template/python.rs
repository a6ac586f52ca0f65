//! Python's view of template values: transformers' `tojson` filter and Python's `str()`.
//!
//! Jinja runs on Python objects, so what a template prints is Python's `str()` of a value
//! (`True`, `None`, `['a', 1]`); [`write_str_value`] reproduces that for the `{{ ... }}`
//! formatter and the `string` filter. Transformers also replaces Jinja's HTML-escaping `tojson` with a thin wrapper around Python's
//! `json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
//! This module reproduces that output byte for byte for the values templates see: the
//! separators Python picks (`", "` and `": "` inline, `","` and `": "` when indenting),
//! Python's string escaping (with and without `ensure_ascii`) and Python's `repr` of floats.
//!
//! # Invariants
//!
//! - Formatting never panics and never recurses deeper than [`MAX_DEPTH`] levels; a
//!   deeper (or self-referencing) value yields an error instead of overflowing the stack.
//! - Undefined values serialize as `null` (Python would raise; we choose to be lenient) and
//!   print as the empty string (as Jinja's default `Undefined` does).

use std::fmt::Write as _;

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};

/// How deeply nested a value may be before `tojson` refuses it.
pub(crate) const MAX_DEPTH: usize = 128;

/// The formatting options of Python's `json.dumps` that the filter exposes.
struct Options {
    /// `ensure_ascii`: escape every non-ASCII character as `\uXXXX`.
    ensure_ascii: bool,
    /// The indentation unit, or `None` to write everything on one line.
    indent: Option<String>,
    /// The separator written between items.
    item_sep: String,
    /// The separator written between a key and its value.
    key_sep: String,
    /// `sort_keys`: write mapping keys in sorted order.
    sort_keys: bool,
}

/// The `tojson` filter: `value | tojson(ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, exactly the keyword arguments transformers accepts.
pub(crate) fn tojson_filter(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_str(), v.as_i64()) {
            (Some(s), _) => Some(s.to_owned()),
            (None, Some(n)) => Some(" ".repeat(usize::try_from(n).unwrap_or(0).min(64))),
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ))
            }
        },
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let sep = |i: usize| -> Result<String, Error> {
                let item = v.get_item_by_index(i)?;
                item.as_str().map(str::to_owned).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    )
                })
            };
            (sep(0)?, sep(1)?)
        }
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    kwargs.assert_all_used()?;
    let opts = Options {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_value(&mut out, value, &opts, 0)?;
    Ok(Value::from_safe_string(out))
}

/// Serializes `value` the way Python's `json.dumps` would, with default options.
#[cfg(test)]
pub(crate) fn dumps(value: &Value) -> Result<String, Error> {
    let opts = Options {
        ensure_ascii: false,
        indent: None,
        item_sep: ", ".to_owned(),
        key_sep: ": ".to_owned(),
        sort_keys: false,
    };
    let mut out = String::new();
    write_value(&mut out, value, &opts, 0)?;
    Ok(out)
}

/// Writes a newline and `depth` levels of indentation, when indenting at all.
fn newline(out: &mut String, opts: &Options, depth: usize) {
    if let Some(unit) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(unit);
        }
    }
}

/// Writes one value at nesting level `depth`.
fn write_value(out: &mut String, value: &Value, opts: &Options, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value is nested too deeply (or refers to itself)",
        ));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                // json.dumps writes non-finite floats as JavaScript names.
                let f = f64::try_from(value.clone())?;
                match f {
                    f if f.is_nan() => out.push_str("NaN"),
                    f if f == f64::INFINITY => out.push_str("Infinity"),
                    f if f == f64::NEG_INFINITY => out.push_str("-Infinity"),
                    f => out.push_str(&python_float_repr(f)),
                }
            }
        }
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), opts),
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key_string(&key), item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                write_string(out, key, opts);
                out.push_str(&opts.key_sep);
                write_value(out, item, opts, depth + 1)?;
            }
            newline(out, opts, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(out, opts, depth + 1);
                write_value(out, item, opts, depth + 1)?;
            }
            newline(out, opts, depth);
            out.push(']');
        }
        // Bytes, plain objects and anything newer: serialize their string form.
        _ => write_string(out, &value.to_string(), opts),
    }
    Ok(())
}

/// The JSON key for a mapping key, converted the way `json.dumps` converts non-string keys.
fn key_string(key: &Value) -> String {
    match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
        ValueKind::None | ValueKind::Undefined => "null".to_owned(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_owned(),
        ValueKind::Number if !key.is_integer() => {
            f64::try_from(key.clone()).map_or_else(|_| key.to_string(), python_float_repr)
        }
        _ => key.to_string(),
    }
}

/// Writes a quoted JSON string with Python's escaping rules.
fn write_string(out: &mut String, s: &str, opts: &Options) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            // With ensure_ascii, Python escapes everything outside printable ASCII, DEL included.
            c if opts.ensure_ascii && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Writes Python's `str(value)`: strings as they are, `True`/`False`/`None`, floats as
/// Python writes them, and lists and dicts as their Python `repr` (`['a', 1]`, `{'k': 'v'}`).
/// Undefined values write nothing, like Jinja's default `Undefined`.
pub(crate) fn write_str_value(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_repr(out, value, 0)?,
    }
    Ok(())
}

/// Python's `str()` of a value, for the `string` filter.
pub(crate) fn string_filter(value: &Value) -> Result<Value, Error> {
    if value.kind() == ValueKind::String {
        return Ok(value.clone());
    }
    let mut out = String::new();
    write_str_value(&mut out, value)?;
    Ok(Value::from(out))
}

/// Writes Python's `repr(value)` at nesting level `depth`.
fn write_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), Error> {
    if depth > MAX_DEPTH {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "value is nested too deeply (or refers to itself) to print",
        ));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if !value.is_integer() => {
            let f = f64::try_from(value.clone())?;
            out.push_str(&python_float_repr(f));
        }
        ValueKind::String => write_repr_string(out, value.as_str().unwrap_or_default()),
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                write_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_repr(out, &item, depth + 1)?;
            }
            out.push(']');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// Writes a string quoted and escaped like Python's `repr(str)`: single quotes unless the
/// text has a single quote and no double quote; control characters escaped.
fn write_repr_string(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let code = c as u32;
                let _ = if code < 0x100 {
                    write!(out, "\\x{code:02x}")
                } else {
                    write!(out, "\\u{code:04x}")
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Formats a float exactly as Python's `repr(float)` does (also what `json.dumps` writes for
/// finite floats): the shortest round-tripping digits, in positional notation for decimal
/// exponents from -4 to 15 and in scientific notation (`1e+16`, `1.5e-05`) otherwise.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits, e.g. "-1.25e-7" or "0e0".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let mut out = String::from(sign);
    if !(-4..16).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = usize::try_from(exp).unwrap_or(0) + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (123456.789, "123456.789"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345e20, "1.2345e+20"),
            (1e100, "1e+100"),
            (f64::NAN, "nan"),
            (f64::NEG_INFINITY, "-inf"),
        ];
        for (f, want) in cases {
            assert_eq!(python_float_repr(f), want, "repr of {f:?}");
        }
    }

    #[test]
    fn strings_escape_like_python() {
        let v = Value::from("a\"b\\c\nd\te\u{1}é😀<>&'");
        assert_eq!(
            dumps(&v).ok().as_deref(),
            Some(r#""a\"b\\c\nd\te\u0001é😀<>&'""#)
        );
        let opts = Options {
            ensure_ascii: true,
            indent: None,
            item_sep: ", ".to_owned(),
            key_sep: ": ".to_owned(),
            sort_keys: false,
        };
        let mut out = String::new();
        write_string(&mut out, "é😀\u{7f}", &opts);
        assert_eq!(out, r#""\u00e9\ud83d\ude00\u007f""#);
    }

    #[test]
    fn self_referencing_values_error_instead_of_overflowing() {
        let mut v = Value::from(Vec::<Value>::new());
        for _ in 0..(MAX_DEPTH + 10) {
            v = Value::from(vec![v]);
        }
        assert!(dumps(&v).is_err());
    }

    #[test]
    fn str_matches_python() {
        let v = Value::from_serialize(serde_json::json!({
            "a": [1, 2.5, null, true, "it's", "say \"hi\"\n"],
            "b": {}
        }));
        let mut out = String::new();
        assert!(write_str_value(&mut out, &v).is_ok());
        assert_eq!(
            out,
            r#"{'a': [1, 2.5, None, True, "it's", 'say "hi"\n'], 'b': {}}"#
        );
        for (v, want) in [
            (Value::from(false), "False"),
            (Value::from(()), "None"),
            (Value::UNDEFINED, ""),
            (Value::from("plain"), "plain"),
            (Value::from(3.0), "3.0"),
        ] {
            let mut out = String::new();
            assert!(write_str_value(&mut out, &v).is_ok());
            assert_eq!(out, want);
        }
    }
}

//! Model names as Ollama writes them: `[host/][namespace/]model[:tag]`.
//!
//! This module owns parsing, validating and printing model names, and the relative path of a
//! name's manifest. It is a port of Ollama's `types/model/name.go` (`ParseName`,
//! `IsFullyQualified`, `DisplayShortest`, `Filepath`): the defaults are host
//! `registry.ollama.ai`, namespace `library` and tag `latest`, and `hf.co/<user>/<repo>:<quant>`
//! is a name like any other whose host is `hf.co`. It knows nothing about the store's root
//! directory, registries or the network.
//!
//! Part rules (Ollama's, with the extra limits marked *ours*):
//!
//! | part      | first character  | then                      | length |
//! |-----------|------------------|---------------------------|--------|
//! | host      | `[A-Za-z0-9_]`   | `[A-Za-z0-9_.:-]`         | 1..=255 (Ollama: 350) |
//! | namespace | `[A-Za-z0-9_]`   | `[A-Za-z0-9_-]`           | 1..=80 |
//! | model     | `[A-Za-z0-9_]`   | `[A-Za-z0-9_.-]`          | 1..=80 |
//! | tag       | `[A-Za-z0-9_]`   | `[A-Za-z0-9_.-]`          | 1..=80 |
//!
//! *Ours*: no part contains `..` or ends with `.` (Windows drops a trailing dot), and the host
//! is at most 255 bytes because it becomes one directory name and no common file system holds
//! a longer one. A `scheme://` prefix (which Ollama accepts to pick plain http) is refused: the
//! scheme of a registry is configuration ([`crate::pull`]), not part of a model's identity.
//! The host may hold a `:port`, as in Ollama, so such names only work where `:` is allowed in
//! a file name (not on Windows).
//!
//! Comparison: the derived `Eq` and `Hash` are exact. Ollama treats names that differ only in
//! ASCII case as the same model (its `getExistingName` canonicalises each part to the casing
//! found on disk); [`ModelName::eq_ignore_case`] and [`ModelName::case_folded`] support that,
//! and the store applies it when it looks a name up.
//!
//! # Invariants
//!
//! - A [`ModelName`] always has all four parts, each valid by the table above, so
//!   [`ModelName::manifest_path`] is always a relative path of exactly five normal components
//!   (no `..`, no root, no separator inside a part).
//! - `ModelName::parse(&n.to_string()) == Ok(n)` for every name `n`.
//! - Names are ASCII, so case folding is ASCII lowercasing.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// The host used when a name has none.
pub const DEFAULT_HOST: &str = "registry.ollama.ai";
/// The namespace used when a name has none.
pub const DEFAULT_NAMESPACE: &str = "library";
/// The tag used when a name has none.
pub const DEFAULT_TAG: &str = "latest";

/// The directory under the store root that holds the manifests.
pub const MANIFESTS_DIR: &str = "manifests";

/// Longest host, in bytes (ours: one directory name).
const MAX_HOST_LEN: usize = 255;
/// Longest namespace, model or tag, in bytes (Ollama's limit).
const MAX_PART_LEN: usize = 80;

/// One of the four parts of a model name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NamePart {
    /// The registry host, e.g. `registry.ollama.ai` or `hf.co`.
    Host,
    /// The namespace (user or organisation), e.g. `library`.
    Namespace,
    /// The model, e.g. `llama3.2`.
    Model,
    /// The tag, e.g. `latest` or `Q4_K_M`.
    Tag,
}

impl NamePart {
    /// The longest value this part may have, in bytes.
    pub fn max_len(self) -> usize {
        match self {
            NamePart::Host => MAX_HOST_LEN,
            _ => MAX_PART_LEN,
        }
    }
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamePart::Host => "host",
            NamePart::Namespace => "namespace",
            NamePart::Model => "model",
            NamePart::Tag => "tag",
        })
    }
}

/// What is wrong with one part of a name.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartProblem {
    /// The part is empty (e.g. `a//b` or a trailing `:`).
    Empty,
    /// The part is longer than [`NamePart::max_len`].
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The first character is not a letter, digit or `_` (e.g. a leading `-` or `.`).
    BadFirstChar(char),
    /// A character this part may not hold (e.g. `/` in a tag, `.` in a namespace).
    BadChar(char),
    /// The part contains `..`.
    DotDot,
    /// The part ends with `.`.
    TrailingDot,
}

impl fmt::Display for PartProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartProblem::Empty => f.write_str("it is empty"),
            PartProblem::TooLong { len } => write!(f, "it is {len} bytes long"),
            PartProblem::BadFirstChar(c) => {
                write!(f, "it starts with {c:?} (must be a letter, digit or '_')")
            }
            PartProblem::BadChar(c) => write!(f, "it contains {c:?}"),
            PartProblem::DotDot => f.write_str("it contains \"..\""),
            PartProblem::TrailingDot => f.write_str("it ends with '.'"),
        }
    }
}

/// Why a string is not a valid model name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("model name is empty")]
    Empty,
    /// The name has more than three `/`-separated parts before the tag.
    #[error(
        "invalid model name {input:?}: too many '/' (expected [host/][namespace/]model[:tag])"
    )]
    TooManySlashes {
        /// The name as given.
        input: String,
    },
    /// The name starts with a URL scheme.
    #[error("invalid model name {input:?}: a scheme such as http:// is not part of a model name")]
    Scheme {
        /// The name as given.
        input: String,
    },
    /// A digest suffix (`@sha256:...`), which this store does not resolve.
    #[error("invalid model name {input:?}: '@digest' references are not supported")]
    Digest {
        /// The name as given.
        input: String,
    },
    /// One part breaks the rules.
    #[error("invalid model name {input:?}: the {part} {value:?} is invalid because {problem} (max {max} bytes)", max = part.max_len())]
    InvalidPart {
        /// The name as given.
        input: String,
        /// Which part.
        part: NamePart,
        /// The part's text.
        value: String,
        /// What is wrong with it.
        problem: PartProblem,
    },
    /// A manifest path does not have the form `<host>/<namespace>/<model>/<tag>`.
    #[error("{} is not a manifest path of the form <host>/<namespace>/<model>/<tag>", path.display())]
    NotManifestPath {
        /// The path relative to the manifests directory.
        path: PathBuf,
    },
}

/// A fully qualified, validated model name: host, namespace, model and tag.
///
/// Built only by [`ModelName::parse`], [`ModelName::new`] or
/// [`ModelName::from_manifest_path`], so every value is valid. The derived equality is exact
/// (case-sensitive); see [`ModelName::eq_ignore_case`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelName {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl ModelName {
    /// Parses `[host/][namespace/]model[:tag]`, filling in the defaults.
    ///
    /// The tag is whatever follows the last `:` when that `:` comes after the last `/`, so
    /// a host may carry a port (`localhost:5000/ns/model:tag`).
    pub fn parse(input: &str) -> Result<Self, NameError> {
        if input.is_empty() {
            return Err(NameError::Empty);
        }
        if input.contains("://") {
            return Err(NameError::Scheme {
                input: input.to_owned(),
            });
        }
        if input.contains('@') {
            return Err(NameError::Digest {
                input: input.to_owned(),
            });
        }
        let last_slash = input.rfind('/');
        let (rest, tag) = match input.rfind(':') {
            Some(colon) if last_slash.is_none_or(|slash| colon > slash) => {
                (&input[..colon], Some(&input[colon + 1..]))
            }
            _ => (input, None),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (host, namespace, model) = match parts.as_slice() {
            [model] => (None, None, *model),
            [namespace, model] => (None, Some(*namespace), *model),
            [host, namespace, model] => (Some(*host), Some(*namespace), *model),
            _ => {
                return Err(NameError::TooManySlashes {
                    input: input.to_owned(),
                })
            }
        };
        let name = ModelName {
            host: host.unwrap_or(DEFAULT_HOST).to_owned(),
            namespace: namespace.unwrap_or(DEFAULT_NAMESPACE).to_owned(),
            model: model.to_owned(),
            tag: tag.unwrap_or(DEFAULT_TAG).to_owned(),
        };
        name.validate(input)?;
        Ok(name)
    }

    /// A name from its four parts, each checked.
    pub fn new(host: &str, namespace: &str, model: &str, tag: &str) -> Result<Self, NameError> {
        let name = ModelName {
            host: host.to_owned(),
            namespace: namespace.to_owned(),
            model: model.to_owned(),
            tag: tag.to_owned(),
        };
        name.validate(&format!("{host}/{namespace}/{model}:{tag}"))?;
        Ok(name)
    }

    /// The name whose manifest lies at `relative`, a path relative to the manifests
    /// directory with exactly four components `<host>/<namespace>/<model>/<tag>`.
    pub fn from_manifest_path(relative: &Path) -> Result<Self, NameError> {
        let not_manifest = || NameError::NotManifestPath {
            path: relative.to_path_buf(),
        };
        let parts = relative
            .components()
            .map(|c| match c {
                Component::Normal(part) => part.to_str().ok_or_else(not_manifest),
                _ => Err(not_manifest()),
            })
            .collect::<Result<Vec<&str>, NameError>>()?;
        match parts.as_slice() {
            [host, namespace, model, tag] => ModelName::new(host, namespace, model, tag),
            _ => Err(not_manifest()),
        }
    }

    /// Checks every part; `input` is what the caller gave, for the error.
    fn validate(&self, input: &str) -> Result<(), NameError> {
        for (part, value) in [
            (NamePart::Host, &self.host),
            (NamePart::Namespace, &self.namespace),
            (NamePart::Model, &self.model),
            (NamePart::Tag, &self.tag),
        ] {
            if let Err(problem) = check_part(part, value) {
                return Err(NameError::InvalidPart {
                    input: input.to_owned(),
                    part,
                    value: value.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }

    /// The registry host, e.g. `registry.ollama.ai`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The namespace, e.g. `library`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The model, e.g. `llama3.2`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The tag, e.g. `latest`.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `<namespace>/<model>`: the repository part of registry URLs (`/v2/<repo>/...`).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.namespace, self.model)
    }

    /// The same name with another tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self, NameError> {
        ModelName::new(&self.host, &self.namespace, &self.model, tag)
    }

    /// The shortest form, as `ollama list` shows it: `model:tag` under the default host and
    /// namespace, `namespace/model:tag` under the default host, else `host/namespace/model:tag`.
    /// The tag is always shown. Defaults are recognised in any case, as Ollama does.
    pub fn display_shortest(&self) -> String {
        if !self.host.eq_ignore_ascii_case(DEFAULT_HOST) {
            format!(
                "{}/{}/{}:{}",
                self.host, self.namespace, self.model, self.tag
            )
        } else if !self.namespace.eq_ignore_ascii_case(DEFAULT_NAMESPACE) {
            format!("{}/{}:{}", self.namespace, self.model, self.tag)
        } else {
            format!("{}:{}", self.model, self.tag)
        }
    }

    /// The manifest's path relative to the store root:
    /// `manifests/<host>/<namespace>/<model>/<tag>`.
    pub fn manifest_path(&self) -> PathBuf {
        [
            MANIFESTS_DIR,
            &self.host,
            &self.namespace,
            &self.model,
            &self.tag,
        ]
        .iter()
        .collect()
    }

    /// Whether both names are the same ignoring ASCII case, as Ollama compares names.
    pub fn eq_ignore_case(&self, other: &ModelName) -> bool {
        self.host.eq_ignore_ascii_case(&other.host)
            && self.namespace.eq_ignore_ascii_case(&other.namespace)
            && self.model.eq_ignore_ascii_case(&other.model)
            && self.tag.eq_ignore_ascii_case(&other.tag)
    }

    /// The name with every part lowercased: a key under which names that Ollama considers
    /// the same are equal.
    pub fn case_folded(&self) -> ModelName {
        ModelName {
            host: self.host.to_ascii_lowercase(),
            namespace: self.namespace.to_ascii_lowercase(),
            model: self.model.to_ascii_lowercase(),
            tag: self.tag.to_ascii_lowercase(),
        }
    }
}

/// Checks one part against the table in the module docs.
fn check_part(part: NamePart, value: &str) -> Result<(), PartProblem> {
    let mut chars = value.chars();
    let Some(first) = chars.next() else {
        return Err(PartProblem::Empty);
    };
    if value.len() > part.max_len() {
        return Err(PartProblem::TooLong { len: value.len() });
    }
    if !is_word_char(first) {
        return Err(PartProblem::BadFirstChar(first));
    }
    for c in chars {
        let allowed = is_word_char(c)
            || c == '-'
            || (c == '.' && part != NamePart::Namespace)
            || (c == ':' && part == NamePart::Host);
        if !allowed {
            return Err(PartProblem::BadChar(c));
        }
    }
    if value.contains("..") {
        return Err(PartProblem::DotDot);
    }
    if value.ends_with('.') {
        return Err(PartProblem::TrailingDot);
    }
    Ok(())
}

/// ASCII letter, digit or `_`.
fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The full form `host/namespace/model:tag`, which [`ModelName::parse`] reads back.
impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}:{}",
            self.host, self.namespace, self.model, self.tag
        )
    }
}

impl FromStr for ModelName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelName::parse(s)
    }
}

#[cfg(test)]
mod tests;

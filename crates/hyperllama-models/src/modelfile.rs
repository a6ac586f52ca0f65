//! Modelfiles: parsing Ollama's model recipe format and writing it back.
//!
//! This module owns the Modelfile syntax (a port of Ollama's `parser/parser.go`) and the
//! parameter table (Ollama's `api.Options` and `api.Runner` fields, checked as its
//! `FormatParams` checks them). It knows nothing about files, blobs or the store: `FROM` and
//! `ADAPTER` paths are kept as written, for `create` to resolve.
//!
//! Syntax: one instruction per line, `INSTRUCTION value`, the instruction name in any case.
//! Lines starting with `#` are comments. A value is the rest of the line, trimmed, or a
//! quoted string: `"..."` or `"""..."""`, either of which may span lines and ends at the
//! first closing quote(s) followed only by blanks up to the end of a line. Instructions:
//! `FROM`, `PARAMETER name value`, `TEMPLATE`, `SYSTEM`, `LICENSE` (repeatable),
//! `MESSAGE role content` (role `system`, `user` or `assistant`), `ADAPTER`, `DRAFT` (a draft
//! model for speculative decoding; Ollama's parser has it too), and Ollama's `RENDERER`,
//! `PARSER` and `REQUIRES`, which are kept and written back. Parameters Ollama deprecated
//! (`mirostat`, `use_mlock`, ...) are dropped with a warning, as Ollama does.
//!
//! # Invariants
//!
//! - A parsed [`Modelfile`] has at least one `FROM`, and every `PARAMETER` in it has a known
//!   name and a value of that parameter's type.
//! - `Modelfile::parse(&m.to_string())` gives back `m` for every value the renderer can
//!   quote (anything without `"""` in it).
//! - Errors carry the 1-based line number where the offending instruction starts.

mod params;
#[cfg(test)]
mod tests;

use std::fmt;

pub use params::{param_kind, ParamKind, Parameters, DEPRECATED_PARAMETERS, PARAMETERS};

/// Why a Modelfile was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelfileError {
    /// A line starts with a word that is not an instruction.
    #[error("line {line}: unknown instruction {instruction:?} (expected FROM, PARAMETER, TEMPLATE, SYSTEM, LICENSE, MESSAGE, ADAPTER, DRAFT, RENDERER, PARSER or REQUIRES)")]
    UnknownInstruction {
        /// The line.
        line: usize,
        /// The word found.
        instruction: String,
    },
    /// An instruction is not followed by a blank and a value.
    #[error("line {line}: {instruction} needs a value")]
    MissingValue {
        /// The line.
        line: usize,
        /// The instruction, upper case.
        instruction: String,
    },
    /// `PARAMETER` names a parameter Ollama does not know.
    #[error("line {line}: unknown parameter {name:?}")]
    UnknownParameter {
        /// The line.
        line: usize,
        /// The name given.
        name: String,
    },
    /// A parameter's value does not have the parameter's type.
    #[error("line {line}: invalid value {value:?} for parameter {name}: expected {expected}")]
    InvalidParameterValue {
        /// The line.
        line: usize,
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// The type it needs.
        expected: ParamKind,
    },
    /// `MESSAGE` with a role other than `system`, `user` or `assistant`.
    #[error("line {line}: message role must be one of \"system\", \"user\" or \"assistant\", not {role:?}")]
    InvalidMessageRole {
        /// The line.
        line: usize,
        /// The role given.
        role: String,
    },
    /// A quoted value has no closing quote.
    #[error("line {line}: unterminated quoted string")]
    Unterminated {
        /// The line where the value starts.
        line: usize,
    },
    /// There is no `FROM` instruction.
    #[error("no FROM line")]
    MissingFrom,
}

/// The role of a `MESSAGE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageRole {
    /// `system`.
    System,
    /// `user`.
    User,
    /// `assistant`.
    Assistant,
}

impl MessageRole {
    /// The role as written, lower case.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }

    /// Parses a role; Ollama accepts only lower case.
    fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(MessageRole::System),
            "user" => Some(MessageRole::User),
            "assistant" => Some(MessageRole::Assistant),
            _ => None,
        }
    }
}

/// One instruction of a Modelfile, with its value unquoted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `FROM`: a model name, a GGUF file or a directory.
    From(String),
    /// `PARAMETER name value`, with `value` checked against the parameter's type.
    Parameter {
        /// A name from [`PARAMETERS`].
        name: String,
        /// The value as written (unquoted).
        value: String,
    },
    /// `TEMPLATE`: the prompt template.
    Template(String),
    /// `SYSTEM`: the system prompt.
    System(String),
    /// `LICENSE`: one license text.
    License(String),
    /// `MESSAGE role content`: an example message.
    Message {
        /// Who speaks.
        role: MessageRole,
        /// What is said.
        content: String,
    },
    /// `ADAPTER`: a LoRA adapter path.
    Adapter(String),
    /// `DRAFT`: the draft model for speculative decoding (name or GGUF path).
    Draft(String),
    /// `RENDERER`: Ollama's prompt renderer name.
    Renderer(String),
    /// `PARSER`: Ollama's output parser name.
    Parser(String),
    /// `REQUIRES`: the minimum Ollama version.
    Requires(String),
}

impl Command {
    /// The instruction name, upper case.
    pub fn instruction(&self) -> &'static str {
        match self {
            Command::From(_) => "FROM",
            Command::Parameter { .. } => "PARAMETER",
            Command::Template(_) => "TEMPLATE",
            Command::System(_) => "SYSTEM",
            Command::License(_) => "LICENSE",
            Command::Message { .. } => "MESSAGE",
            Command::Adapter(_) => "ADAPTER",
            Command::Draft(_) => "DRAFT",
            Command::Renderer(_) => "RENDERER",
            Command::Parser(_) => "PARSER",
            Command::Requires(_) => "REQUIRES",
        }
    }
}

/// Writes the instruction as Ollama's `Command.String` does (`FROM` unquoted).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::From(v) => write!(f, "FROM {v}"),
            Command::Parameter { name, value } => write!(f, "PARAMETER {name} {}", quote(value)),
            Command::Message { role, content } => {
                write!(f, "MESSAGE {} {}", role.as_str(), quote(content))
            }
            Command::Template(v)
            | Command::System(v)
            | Command::License(v)
            | Command::Adapter(v)
            | Command::Draft(v)
            | Command::Renderer(v)
            | Command::Parser(v)
            | Command::Requires(v) => write!(f, "{} {}", self.instruction(), quote(v)),
        }
    }
}

/// A parsed Modelfile.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modelfile {
    /// The instructions, in order.
    pub commands: Vec<Command>,
    /// Deprecated parameters that were dropped, as `(line, name)`.
    pub dropped_parameters: Vec<(usize, String)>,
}

impl Modelfile {
    /// Parses a Modelfile's text (a leading byte-order mark is ignored).
    pub fn parse(text: &str) -> Result<Self, ModelfileError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut parser = Parser {
            text,
            pos: 0,
            line: 1,
        };
        let mut modelfile = Modelfile::default();
        while let Some(item) = parser.next_command()? {
            match item {
                Parsed::Command(command) => modelfile.commands.push(command),
                Parsed::Dropped(line, name) => modelfile.dropped_parameters.push((line, name)),
            }
        }
        if modelfile.from().is_none() {
            return Err(ModelfileError::MissingFrom);
        }
        Ok(modelfile)
    }

    /// The first `FROM` value.
    pub fn from(&self) -> Option<&str> {
        self.commands.iter().find_map(|c| match c {
            Command::From(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The `DRAFT` value, if any.
    pub fn draft(&self) -> Option<&str> {
        self.last(|c| match c {
            Command::Draft(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The last `TEMPLATE`, if any.
    pub fn template(&self) -> Option<&str> {
        self.last(|c| match c {
            Command::Template(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The last `SYSTEM`, if any.
    pub fn system(&self) -> Option<&str> {
        self.last(|c| match c {
            Command::System(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// The last value `pick` finds (later instructions override earlier ones).
    fn last<'a>(&'a self, pick: impl Fn(&'a Command) -> Option<&'a str>) -> Option<&'a str> {
        self.commands.iter().rev().find_map(pick)
    }

    /// The parameters as the params layer holds them (`stop` collects every value, others
    /// keep the last one).
    pub fn parameters(&self) -> Parameters {
        let mut params = Parameters::default();
        for command in &self.commands {
            if let Command::Parameter { name, value } = command {
                // Checked while parsing, so this cannot fail.
                let _ = params.insert_text(name, value);
            }
        }
        params
    }
}

/// One instruction per line, as Ollama's `Modelfile.String`.
impl fmt::Display for Modelfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for command in &self.commands {
            writeln!(f, "{command}")?;
        }
        Ok(())
    }
}

/// Quotes a value when it needs it, as Ollama's `quote`: values with a newline or with blanks
/// at either end get `"..."`, or `"""..."""` when they contain `"`; values starting with `"`
/// get `"""..."""` too (ours: Ollama would write them bare and could not read them back).
pub fn quote(value: &str) -> String {
    let needs = value.contains('\n')
        || value.starts_with([' ', '\t'])
        || value.ends_with([' ', '\t'])
        || value.starts_with('"')
        || value.is_empty();
    if !needs {
        value.to_owned()
    } else if value.contains('"') {
        format!("\"\"\"{value}\"\"\"")
    } else {
        format!("\"{value}\"")
    }
}

/// What the parser found next.
enum Parsed {
    /// An instruction.
    Command(Command),
    /// A deprecated parameter, dropped: its line and name.
    Dropped(usize, String),
}

/// A cursor over the text.
struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// The 1-based line of `pos`.
    line: usize,
}

impl Parser<'_> {
    /// The rest of the text.
    fn rest(&self) -> &str {
        &self.text[self.pos..]
    }

    /// Moves past `n` bytes, counting newlines.
    fn advance(&mut self, n: usize) {
        self.line += self.text[self.pos..self.pos + n].matches('\n').count();
        self.pos += n;
    }

    /// Moves past the characters matching `pred` and returns them.
    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> &str {
        let start = self.pos;
        let n = self.rest().find(|c| !pred(c)).unwrap_or(self.rest().len());
        self.advance(n);
        &self.text[start..start + n]
    }

    /// The next instruction, or `None` at the end.
    fn next_command(&mut self) -> Result<Option<Parsed>, ModelfileError> {
        loop {
            self.take_while(char::is_whitespace);
            if self.rest().is_empty() {
                return Ok(None);
            }
            if self.rest().starts_with('#') {
                self.take_while(|c| c != '\n');
                continue;
            }
            break;
        }
        let line = self.line;
        let word = self.take_while(|c| !c.is_whitespace()).to_owned();
        let upper = word.to_ascii_uppercase();
        let unknown = || ModelfileError::UnknownInstruction {
            line,
            instruction: word.clone(),
        };
        if !word.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(unknown());
        }
        let missing = |instruction: &str| ModelfileError::MissingValue {
            line,
            instruction: instruction.to_owned(),
        };
        // The instruction must be followed by a blank on the same line.
        if !self.rest().starts_with([' ', '\t']) {
            return Err(if is_instruction(&upper) {
                missing(&upper)
            } else {
                unknown()
            });
        }
        let command = match upper.as_str() {
            "PARAMETER" => {
                self.take_while(|c| c == ' ' || c == '\t');
                let name = self
                    .take_while(|c| c.is_ascii_alphanumeric() || c == '_')
                    .to_owned();
                if name.is_empty() || !self.rest().starts_with([' ', '\t']) {
                    return Err(missing("PARAMETER"));
                }
                let value = self.value(line, "PARAMETER")?;
                if DEPRECATED_PARAMETERS.contains(&name.as_str()) {
                    return Ok(Some(Parsed::Dropped(line, name)));
                }
                check_parameter(line, &name, &value)?;
                Command::Parameter { name, value }
            }
            "MESSAGE" => {
                self.take_while(|c| c == ' ' || c == '\t');
                let role = self.take_while(|c| !c.is_whitespace()).to_owned();
                let Some(role) = MessageRole::parse(&role) else {
                    return Err(ModelfileError::InvalidMessageRole { line, role });
                };
                if !self.rest().starts_with([' ', '\t']) {
                    return Err(missing("MESSAGE"));
                }
                let content = self.value(line, "MESSAGE")?;
                Command::Message { role, content }
            }
            "FROM" => Command::From(self.value(line, "FROM")?),
            "TEMPLATE" => Command::Template(self.value(line, "TEMPLATE")?),
            "SYSTEM" => Command::System(self.value(line, "SYSTEM")?),
            "LICENSE" => Command::License(self.value(line, "LICENSE")?),
            "ADAPTER" => Command::Adapter(self.value(line, "ADAPTER")?),
            "DRAFT" => Command::Draft(self.value(line, "DRAFT")?),
            "RENDERER" => Command::Renderer(self.value(line, "RENDERER")?),
            "PARSER" => Command::Parser(self.value(line, "PARSER")?),
            "REQUIRES" => Command::Requires(self.value(line, "REQUIRES")?),
            _ => return Err(unknown()),
        };
        Ok(Some(Parsed::Command(command)))
    }

    /// Reads a value: blanks, then a quoted string or the rest of the line.
    fn value(&mut self, line: usize, instruction: &str) -> Result<String, ModelfileError> {
        self.take_while(|c| c == ' ' || c == '\t');
        let quote = if self.rest().starts_with("\"\"\"") {
            "\"\"\""
        } else if self.rest().starts_with('"') {
            "\""
        } else {
            let value = self.take_while(|c| c != '\n').trim().to_owned();
            if value.is_empty() {
                return Err(ModelfileError::MissingValue {
                    line,
                    instruction: instruction.to_owned(),
                });
            }
            return Ok(value);
        };
        let body_start = self.pos + quote.len();
        let body = &self.text[body_start..];
        // The first closing quote followed only by blanks up to the end of its line.
        let close = body.match_indices(quote).map(|(at, _)| at).find(|&at| {
            let after = &body[at + quote.len()..];
            let line_end = after.find('\n').unwrap_or(after.len());
            after[..line_end].trim().is_empty()
        });
        let Some(close) = close else {
            return Err(ModelfileError::Unterminated { line: self.line });
        };
        let value = body[..close].to_owned();
        self.advance(quote.len() + close + quote.len());
        self.take_while(|c| c != '\n');
        Ok(value)
    }
}

/// Whether `upper` is an instruction name.
fn is_instruction(upper: &str) -> bool {
    matches!(
        upper,
        "FROM"
            | "PARAMETER"
            | "TEMPLATE"
            | "SYSTEM"
            | "LICENSE"
            | "MESSAGE"
            | "ADAPTER"
            | "DRAFT"
            | "RENDERER"
            | "PARSER"
            | "REQUIRES"
    )
}

/// Checks a parameter's name and value.
fn check_parameter(line: usize, name: &str, value: &str) -> Result<(), ModelfileError> {
    let Some(kind) = param_kind(name) else {
        return Err(ModelfileError::UnknownParameter {
            line,
            name: name.to_owned(),
        });
    };
    if kind.parse(value).is_none() {
        return Err(ModelfileError::InvalidParameterValue {
            line,
            name: name.to_owned(),
            value: value.to_owned(),
            expected: kind,
        });
    }
    Ok(())
}

//! `hyperllama create NAME -f Modelfile`: parse the Modelfile, build the model in the store
//! (`hyperllama_models::create`), index it, and print Ollama's progress lines on stderr. A
//! leading `~/` in `FROM`, `ADAPTER` and `DRAFT` is the home directory, as in Ollama; other
//! relative paths are relative to the Modelfile's directory.
//!
//! `FROM` may name a safetensors folder (`config.json` + `*.safetensors`) or a Hugging Face
//! id (`hf:ORG/NAME`): the model then references it for an external engine. With a server
//! running, a folder goes to it as its absolute path (the server runs on this machine).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hyperllama_models::create::{create_model, CreateEvent};
use hyperllama_models::modelfile::{Command, Modelfile};

use crate::client::Client;
use crate::models::{modelfile_dir, parse_name, Models};

/// Arguments of `hyperllama create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The name of the new model.
    model: String,
    /// The Modelfile.
    #[arg(short = 'f', long = "file", default_value = "Modelfile")]
    file: PathBuf,
}

/// Runs `hyperllama create`.
pub fn create(args: &CreateArgs) -> anyhow::Result<()> {
    let name = parse_name(&args.model)?;
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the Modelfile {}", args.file.display()))?;
    let mut modelfile = Modelfile::parse(&text)
        .with_context(|| format!("invalid Modelfile {}", args.file.display()))?;
    for command in &mut modelfile.commands {
        if let Command::From(path) | Command::Adapter(path) | Command::Draft(path) = command {
            *path = crate::env::expand_home(path)?;
        }
    }
    for (line, parameter) in &modelfile.dropped_parameters {
        eprintln!("warning: line {line}: parameter {parameter} is deprecated and ignored");
    }
    if let Some(client) = Client::detect()? {
        if let Some(body) =
            remote_body(&client, &args.model, &modelfile, modelfile_dir(&args.file))?
        {
            return create_remote(&client, &body);
        }
    }
    let models = Models::open()?;
    let tty = std::io::stderr().is_terminal();
    let mut copying = false;
    let mut progress = |event: CreateEvent| {
        let mut err = std::io::stderr().lock();
        let done = match &event {
            CreateEvent::CopyingFile {
                total, completed, ..
            } => completed >= total,
            _ => true,
        };
        // On a terminal the copy percentage rewrites one line; elsewhere only 100% is printed.
        if tty && !done {
            let _ = write!(err, "\r{}", event.status());
            copying = true;
        } else if done {
            let prefix = if copying { "\r" } else { "" };
            let _ = writeln!(err, "{prefix}{}", event.status());
            copying = false;
        }
    };
    let stored = create_model(
        &models.store,
        &name,
        &modelfile,
        modelfile_dir(&args.file),
        &mut progress,
    )?;
    models.index(&stored.name)?;
    Ok(())
}

/// The `/api/create` body for `modelfile`, after uploading the `FROM` file's blob to the
/// server (as Ollama's CLI does); a `FROM` folder is sent as its absolute path, `hf:` ids as
/// they are. `None` when the Modelfile needs what the API cannot carry (`ADAPTER`, `DRAFT`,
/// `RENDERER`, `PARSER`): then the model is created in the store directly, which the server
/// shares.
fn remote_body(
    client: &Client,
    model: &str,
    modelfile: &Modelfile,
    dir: &std::path::Path,
) -> anyhow::Result<Option<serde_json::Value>> {
    use serde_json::{json, Map, Value};
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let mut parameters: Map<String, Value> = Map::new();
    let mut messages = Vec::new();
    let mut licenses = Vec::new();
    let mut files = Map::new();
    for command in &modelfile.commands {
        match command {
            Command::From(from) => {
                let path = dir.join(from);
                if path.is_dir() && !from.starts_with(hyperllama_models::reference::HF_PREFIX) {
                    let abs = std::fs::canonicalize(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    body.insert("from".into(), json!(abs.display().to_string()));
                } else if path.is_file() {
                    eprintln!("gathering model components");
                    let digest = file_digest(&path)?;
                    client.upload_blob(&digest.to_string(), &path)?;
                    eprintln!("copying file {digest} 100%");
                    let file_name = path
                        .file_name()
                        .map_or_else(|| "model.gguf".into(), |n| n.to_string_lossy().into_owned());
                    files.insert(file_name, json!(digest.to_string()));
                } else {
                    body.insert("from".into(), json!(from));
                }
            }
            Command::Parameter { name, value } => match parameters.get_mut(name) {
                Some(Value::Array(list)) => list.push(json!(value)),
                Some(first) => *first = json!([first.clone(), value]),
                None => {
                    parameters.insert(name.clone(), json!(value));
                }
            },
            Command::Template(t) => {
                body.insert("template".into(), json!(t));
            }
            Command::System(t) => {
                body.insert("system".into(), json!(t));
            }
            Command::License(t) => licenses.push(json!(t)),
            Command::Message { role, content } => {
                messages.push(json!({ "role": role.as_str(), "content": content }));
            }
            _ => return Ok(None),
        }
    }
    if !files.is_empty() {
        body.insert("files".into(), Value::Object(files));
    }
    if !parameters.is_empty() {
        body.insert("parameters".into(), Value::Object(parameters));
    }
    if !messages.is_empty() {
        body.insert("messages".into(), json!(messages));
    }
    if !licenses.is_empty() {
        body.insert("license".into(), json!(licenses));
    }
    body.insert("stream".into(), json!(true));
    Ok(Some(Value::Object(body)))
}

/// `POST /api/create`, printing its progress lines on stderr.
fn create_remote(client: &Client, body: &serde_json::Value) -> anyhow::Result<()> {
    client.stream("/api/create", body, |line| {
        if let Some(status) = line.get("status").and_then(serde_json::Value::as_str) {
            eprintln!("{status}");
        }
        Ok(())
    })
}

/// The sha256 digest of a file, read in 1 MiB pieces.
fn file_digest(path: &std::path::Path) -> anyhow::Result<hyperllama_models::digest::BlobDigest> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = hyperllama_models::digest::DigestWriter::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

//! `hyperllama create NAME -f Modelfile`: parse the Modelfile, build the model in the store
//! (`hyperllama_models::create`), index it, and print Ollama's progress lines on stderr. A
//! leading `~/` in `FROM`, `ADAPTER` and `DRAFT` is the home directory, as in Ollama; other
//! relative paths are relative to the Modelfile's directory.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hyperllama_models::create::{create_model, CreateEvent};
use hyperllama_models::modelfile::{Command, Modelfile};

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

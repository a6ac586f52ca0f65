//! `hyperllama config`: the effective configuration and where each value came from
//! (`default`, `FILE:LINE`, or `env VAR`), then the engines and the routing rules.

use clap::Args;
use hyperllama_server::settings::{Machine, KEYS, LLAMA_CPP};

use crate::env;

/// Arguments of `hyperllama config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {}

/// Whether `program` can be run: a path that exists, or a name found on `PATH`.
pub fn installed(program: &str) -> bool {
    if program.contains('/') {
        return std::path::Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// What the orchestrator needs to know about this machine.
pub fn machine() -> Machine {
    Machine {
        n_gpus: hyperllama_engine::hardware::detect().gpus.len(),
    }
}

/// Prints the effective configuration.
pub fn print(_args: &ConfigArgs) -> anyhow::Result<()> {
    let s = env::settings()?;
    match &s.file {
        Some(p) => println!("# configuration file: {}", p.display()),
        None => println!(
            "# no configuration file ({} or ~/.hyperllama/config.toml)",
            env::CONFIG_VAR
        ),
    }
    println!("{:<26} {:<36} SOURCE", "KEY", "VALUE");
    for k in KEYS {
        let Some(v) = s.value(k.key) else { continue };
        let value = match &v.value {
            Some(_) if k.secret => "(set)".to_owned(),
            Some(text) => text.clone(),
            None => k.default.to_owned(),
        };
        println!("{:<26} {value:<36} {}", k.key, v.source);
    }
    println!();
    println!(
        "{:<14} {:<9} {:<22} COMMAND (SOURCE)",
        "ENGINE", "INSTALLED", "FORMATS"
    );
    println!("{LLAMA_CPP:<14} {:<9} {:<22} (in-process)", "yes", "gguf");
    for e in &s.engines {
        let formats: Vec<&str> = e.formats.iter().map(|f| f.as_str()).collect();
        let yes = if installed(e.program()) { "yes" } else { "no" };
        println!(
            "{:<14} {yes:<9} {:<22} {} ({})",
            e.name,
            formats.join(","),
            e.command,
            e.source
        );
    }
    if !s.routes.is_empty() {
        println!();
        println!("ROUTES (in order)");
        for r in &s.routes {
            println!(
                "model={} format={} -> {} ({})",
                r.model.as_deref().unwrap_or("*"),
                r.format.map_or("*", |f| f.as_str()),
                r.engine,
                r.source
            );
        }
    }
    Ok(())
}

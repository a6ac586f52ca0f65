//! `hyperllama`: the command-line entry point.
//!
//! Model management (`create`, `list`, `show`, `rm`, `cp`, `pull`) works on the store at
//! `HYPERLLAMA_MODELS`; the logic is in `hyperllama_models`, these modules parse and print.
//! When a server runs on `HYPERLLAMA_HOST`, `list`, `show`, `ps`, `stop`, `rm`, `cp`, `pull`,
//! `create` and `run NAME` go through its API instead ([`client`]).
//!
//! `bench` measures a running server (ours or any other with the same APIs) over HTTP.
//!
//! Parses arguments, sets up logging, and runs one command. Errors are printed as one line
//! (`Error: ...`, with the causes joined by `: `) and the process exits with status 1; clap's
//! own usage errors exit with status 2.

mod bench;
mod client;
mod config;
mod create;
mod env;
mod info;
mod models;
mod pull;
mod run;
mod run_remote;
mod serve;
mod show;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A local LLM server: Ollama's simplicity, vLLM's scheduling.
#[derive(Debug, Parser)]
#[command(
    name = "hyperllama",
    version,
    about = "A local LLM server: Ollama's commands and API, vLLM's scheduling.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the server (Ollama and OpenAI APIs) on HYPERLLAMA_HOST.
    Serve,
    /// Run a model: answer PROMPT and exit, or chat interactively without one.
    Run(run::RunArgs),
    /// Create a model from a Modelfile.
    Create(create::CreateArgs),
    /// Show information for a model.
    Show(show::ShowArgs),
    /// List models.
    #[command(alias = "ls")]
    List,
    /// List the models the running server has loaded.
    Ps,
    /// Unload a model from the running server.
    Stop(models::StopArgs),
    /// Pull a model from a registry.
    Pull(pull::PullArgs),
    /// Copy a model.
    Cp(models::CopyArgs),
    /// Remove models.
    Rm(models::RemoveArgs),
    /// Show what this machine has: CPU, SIMD features, memory, GPUs.
    Info(info::InfoArgs),
    /// List the HYPERLLAMA_* environment variables and their current values.
    Env,
    /// Print the effective configuration and where each value came from.
    Config(config::ConfigArgs),
    /// Benchmark an Ollama- or OpenAI-compatible server: throughput, TTFT, inter-token latency.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Serve => serve::serve(),
        Command::Run(args) => run::run(args),
        Command::Create(args) => create::create(&args),
        Command::Show(args) => show::show(&args),
        Command::List => models::list(),
        Command::Ps => models::ps(),
        Command::Stop(args) => models::stop(&args),
        Command::Pull(args) => pull::pull(&args),
        Command::Cp(args) => models::copy(&args),
        Command::Rm(args) => models::remove(&args),
        Command::Info(args) => info::info(&args),
        Command::Bench(args) => bench::bench(args),
        Command::Env => env::print_table(),
        Command::Config(args) => config::print(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            eprintln!("Error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    // llama.cpp is chatty at info level; its warnings matter only when debugging.
    let default = if env::debug() {
        "debug"
    } else {
        "warn,llama-cpp-2=off"
    };
    let filter = env::log_filter()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

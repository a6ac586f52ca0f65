//! `hyperllama run MODEL [PROMPT]`: answer one prompt, or chat interactively.
//!
//! With a prompt (or piped standard input) the answer streams to stdout and the command exits.
//! Without one, on a terminal (or with `--interactive`), a chat opens: `"""` starts and ends
//! multi-line input, `/bye` leaves, `/clear` forgets the history; the history is kept within
//! the session. `--verbose` prints Ollama's timing statistics to stderr.
//!
//! MODEL is a path to a .gguf file, or the name of a model in the store. A stored model brings
//! its defaults: the params layer (sampling options, `num_predict`, `num_ctx`, `stop`) under
//! the command-line flags, its SYSTEM under `--system`, its MESSAGEs as the start of the
//! history, and its TEMPLATE when that is Jinja (Ollama's Go templates cannot run here, so the
//! GGUF's own chat template is used instead).

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use hyperllama_core::sampling::SamplingParams;
use hyperllama_core::TokenId;
use hyperllama_engine::chat::ChatFormatter;
use hyperllama_engine::llama::LoadOptions;
use hyperllama_engine::{Completion, Engine, EngineConfig, Event, GenerateRequest, Model};
use hyperllama_models::name::ModelName;
use hyperllama_models::resolve::{resolve_model, ModelOptions, ResolveError, TemplateChoice};
use hyperllama_models::template::ChatMessage;
use hyperllama_server::native::sampling_params;
use hyperllama_server::options::GenerateOptions;

use crate::models::Models;

/// Default context length per sequence (Ollama's default on machines without a large GPU).
const DEFAULT_NUM_CTX: usize = 4096;

/// Arguments of `hyperllama run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The model: a name from the store (`hyperllama list`) or a path to a .gguf file.
    pub(crate) model: String,
    /// The prompt (words are joined with spaces). Without it, a chat starts.
    pub(crate) prompt: Vec<String>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long)]
    pub(crate) temperature: Option<f32>,
    /// Random seed: the same seed gives the same answer.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Most tokens to generate (-1: until the model stops or the context is full).
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) num_predict: Option<i64>,
    /// Context length in tokens (prompt plus answer).
    #[arg(long)]
    pub(crate) num_ctx: Option<usize>,
    /// Keep only the K most likely tokens (0 disables).
    #[arg(long)]
    pub(crate) top_k: Option<u32>,
    /// Nucleus sampling threshold (1 disables).
    #[arg(long)]
    pub(crate) top_p: Option<f32>,
    /// Penalty for repeated tokens (1 disables).
    #[arg(long)]
    pub(crate) repeat_penalty: Option<f32>,
    /// Stop generating before this text (may be repeated).
    #[arg(long)]
    pub(crate) stop: Vec<String>,
    /// System message for the chat template.
    #[arg(long)]
    pub(crate) system: Option<String>,
    /// Send the prompt as-is, without the chat template.
    #[arg(long)]
    pub(crate) raw: bool,
    /// Print timing statistics after each answer.
    #[arg(long)]
    pub(crate) verbose: bool,
    /// Chat even when standard input is not a terminal.
    #[arg(long)]
    pub(crate) interactive: bool,
}

/// What a stored model brings besides its weights.
#[derive(Default)]
struct ModelDefaults {
    options: ModelOptions,
    system: Option<String>,
    messages: Vec<ChatMessage>,
    template: Option<String>,
    /// The Modelfile's `DRAFT` weights (speculative decoding with a draft model).
    draft: Option<PathBuf>,
}

struct Session {
    engine: Engine,
    formatter: Option<ChatFormatter>,
    system: Option<String>,
    initial_history: Vec<ChatMessage>,
    sampling: SamplingParams,
    num_predict: Option<usize>,
    stop: Vec<String>,
    verbose: bool,
    load_duration: Duration,
}

/// Runs `hyperllama run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // A model name goes to a running server (files are not served over HTTP).
    if !Path::new(&args.model).exists() {
        if let Some(client) = crate::client::Client::detect()? {
            let session = crate::run_remote::RemoteSession::new(client, &args)?;
            return drive(&session, &args);
        }
    }
    let (model_path, defaults) = locate(&args.model)?;
    let model = Model::load(&model_path, &LoadOptions::default())?;
    let session = Session::new(Arc::clone(&model), &args, defaults)?;
    drive(&session, &args)
}

/// Something that answers a prompt given the conversation so far: the in-process engine, or
/// a running server.
pub(crate) trait Answer {
    /// The history a chat starts from (the model's MESSAGEs, where they are applied here).
    fn initial_history(&self) -> Vec<ChatMessage>;
    /// Streams one answer to stdout and appends the exchange to `history`.
    fn answer(&self, history: &mut Vec<ChatMessage>, prompt: &str) -> anyhow::Result<()>;
}

/// Answers the prompt from the arguments or standard input, or chats.
fn drive(session: &impl Answer, args: &RunArgs) -> anyhow::Result<()> {
    let prompt = if !args.prompt.is_empty() {
        Some(args.prompt.join(" "))
    } else if args.interactive || std::io::stdin().is_terminal() {
        None
    } else {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read the prompt from standard input")?;
        Some(text)
    };
    match prompt {
        Some(prompt) => {
            let mut history = session.initial_history();
            session.answer(&mut history, &prompt)?;
            Ok(())
        }
        None => chat(session, args),
    }
}

/// Finds the weights of MODEL: an existing file as it is, else a model in the store, whose
/// last-used time is recorded.
fn locate(model: &str) -> anyhow::Result<(PathBuf, ModelDefaults)> {
    let path = Path::new(model);
    if path.exists() {
        return Ok((path.to_path_buf(), ModelDefaults::default()));
    }
    let name = match ModelName::parse(model) {
        Ok(name) if !model.to_ascii_lowercase().ends_with(".gguf") => name,
        _ => bail!("model '{model}' not found: no such file, and not a model name"),
    };
    let models = Models::open()?;
    let resolved = match resolve_model(&models.store, &name) {
        Err(ResolveError::NotFound { .. }) => {
            bail!("model '{model}' not found, try `hyperllama pull {model}`")
        }
        other => other?,
    };
    models.rt.block_on(
        models
            .registry
            .touch_last_used(&resolved.name, SystemTime::now()),
    )?;
    if resolved.reference.is_some() {
        bail!(
            "model '{model}' is a {} model, which runs in an external engine: start `hyperllama serve` with an engine configured for it (see `hyperllama show {model}`) and run it again",
            resolved.format()
        );
    }
    if !resolved.adapters.is_empty() {
        // Running without them would silently give another model's answers.
        bail!("model '{model}' has a LoRA adapter, which HyperLlama cannot apply yet");
    }
    let template = match resolved.chat_template() {
        TemplateChoice::Jinja(t) => Some(t),
        _ => None,
    };
    let defaults = ModelDefaults {
        options: resolved.options(),
        system: resolved.system.clone(),
        messages: resolved
            .messages
            .iter()
            .map(|m| ChatMessage::new(m.role.clone(), m.content.clone()))
            .collect(),
        template,
        draft: resolved.draft.clone(),
    };
    Ok((resolved.model_path, defaults))
}

impl Session {
    fn new(model: Arc<Model>, args: &RunArgs, defaults: ModelDefaults) -> anyhow::Result<Self> {
        let info = model.info();
        let opts = &defaults.options;
        let model_ctx = opts.num_ctx.and_then(|n| usize::try_from(n).ok());
        let n_ctx = args
            .num_ctx
            .or(model_ctx)
            .unwrap_or(DEFAULT_NUM_CTX)
            .min(info.n_ctx_train.max(2));
        if n_ctx < 2 {
            bail!("--num-ctx must be at least 2");
        }
        let mut cfg = EngineConfig::new(n_ctx, 1);
        if let Some(n) = crate::env::num_threads()? {
            cfg.n_threads = n;
        }
        if let Some(on) = crate::env::settings()?.bool("server.speculative") {
            cfg.speculative = on;
        }
        if let (Some(path), true) = (&defaults.draft, cfg.speculative) {
            let draft = Model::load(path, &LoadOptions::default())
                .context("cannot load the draft model")?;
            cfg.draft_model = Some(draft);
        }
        let load_duration = info.load_duration;
        let formatter = match (&defaults.template, args.raw) {
            (_, true) => None,
            (Some(template), false) => Some(ChatFormatter::with_template(&model, template)?),
            (None, false) => Some(ChatFormatter::for_model(&model)?),
        };
        let engine = Engine::start(model, cfg).context("cannot start the engine")?;
        // The model's params layer under the flags, exactly as the server applies it.
        let mut sampling = sampling_params(opts, &GenerateOptions::default());
        if let Some(t) = args.temperature {
            sampling.temperature = t;
        }
        if let Some(k) = args.top_k {
            sampling.top_k = k;
        }
        if let Some(p) = args.top_p {
            sampling.top_p = p;
        }
        if let Some(r) = args.repeat_penalty {
            sampling.repeat_penalty = r;
        }
        if args.seed.is_some() {
            sampling.seed = args.seed;
        }
        let num_predict = match args.num_predict.or(opts.num_predict) {
            None => None,
            Some(n) if n < 0 => None,
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        };
        Ok(Self {
            engine,
            formatter,
            sampling,
            num_predict,
            stop: if args.stop.is_empty() {
                opts.stop.clone()
            } else {
                args.stop.clone()
            },
            verbose: args.verbose,
            system: args.system.clone().or(defaults.system),
            initial_history: defaults.messages,
            load_duration,
        })
    }

    fn tokens_for(
        &self,
        history: &[ChatMessage],
        prompt: &str,
        system: Option<&str>,
    ) -> anyhow::Result<Vec<TokenId>> {
        let model = self.engine.model();
        match &self.formatter {
            None => Ok(model.tokenize(prompt, true, true)),
            Some(f) => {
                let mut messages = Vec::with_capacity(history.len() + 2);
                if let Some(system) = system {
                    messages.push(ChatMessage::new("system", system));
                }
                messages.extend_from_slice(history);
                messages.push(ChatMessage::new("user", prompt));
                Ok(f.tokenize(model, &messages, None)?)
            }
        }
    }
}

impl Answer for Session {
    fn initial_history(&self) -> Vec<ChatMessage> {
        self.initial_history.clone()
    }

    fn answer(&self, history: &mut Vec<ChatMessage>, prompt: &str) -> anyhow::Result<()> {
        let tokens = self.tokens_for(history, prompt, self.system.as_deref())?;
        let req = GenerateRequest {
            prompt: tokens,
            sampling: self.sampling.clone(),
            num_predict: self.num_predict,
            stop: self.stop.clone(),
            ignore_eos: false,
            logprobs: None,
            constraint: None,
        };
        let mut events = self.engine.submit(req)?;
        let mut stdout = std::io::stdout().lock();
        let mut answer = String::new();
        let mut done: Option<Completion> = None;
        while let Some(event) = events.blocking_recv() {
            match event {
                Event::Token { text, .. } | Event::Text(text) => {
                    stdout.write_all(text.as_bytes())?;
                    stdout.flush()?;
                    answer.push_str(&text);
                }
                Event::Done(c) => {
                    done = Some(c);
                    break;
                }
                Event::Error(e) => bail!("{e}"),
            }
        }
        writeln!(stdout)?;
        let done = done.context("the engine stopped before the answer ended")?;
        history.push(ChatMessage::new("user", prompt));
        history.push(ChatMessage::new("assistant", answer));
        if self.verbose {
            print_stats(&done, self.load_duration, true);
            // The load happens once; later answers report none, as Ollama does for a warm model.
        }
        Ok(())
    }
}

/// The interactive chat: `"""` multi-line input, `/bye`, `/clear`, `/?`.
fn chat(session: &impl Answer, args: &RunArgs) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut history = session.initial_history();
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprintln!(
            "Chatting with {}. Type /bye to leave, \"\"\" for multi-line input.",
            args.model
        );
    }
    loop {
        print!(">>> ");
        std::io::stdout().flush()?;
        let Some(line) = lines.next() else {
            println!();
            return Ok(());
        };
        let line = line?;
        let mut input = line.trim_end().to_owned();
        if let Some(rest) = input.trim_start().strip_prefix("\"\"\"") {
            // Multi-line: collect until a line ending with """.
            let mut buf = rest.to_owned();
            if let Some(body) = buf.strip_suffix("\"\"\"") {
                buf = body.to_owned();
            } else {
                loop {
                    print!("... ");
                    std::io::stdout().flush()?;
                    let Some(next) = lines.next() else { break };
                    let next = next?;
                    if let Some(body) = next.trim_end().strip_suffix("\"\"\"") {
                        buf.push('\n');
                        buf.push_str(body);
                        break;
                    }
                    buf.push('\n');
                    buf.push_str(&next);
                }
            }
            input = buf.trim_start_matches('\n').to_owned();
        }
        match input.trim() {
            "" => continue,
            "/bye" => return Ok(()),
            "/clear" => {
                history.clear();
                println!("Cleared session context");
                continue;
            }
            "/?" | "/help" => {
                println!("/bye     leave\n/clear   forget the conversation\n\"\"\"      begin or end multi-line input");
                continue;
            }
            cmd if cmd.starts_with('/') && !cmd.contains(' ') => {
                println!("Unknown command '{cmd}'. Type /? for help");
                continue;
            }
            _ => {}
        }
        if let Err(e) = session.answer(&mut history, &input) {
            // In a chat, a failed answer (e.g. the history outgrew the context) is reported
            // and the session goes on.
            eprintln!("Error: {e:#}");
        }
    }
}

/// Prints Ollama's timing statistics to stderr.
/// `with_cache` adds the prompt tokens taken from the prefix cache (known in-process only).
pub(crate) fn print_stats(c: &Completion, load: Duration, with_cache: bool) {
    let rate = |n: usize, d: Duration| {
        if d.is_zero() {
            0.0
        } else {
            n as f64 / d.as_secs_f64()
        }
    };
    eprintln!("total duration:       {:?}", c.total_duration + load);
    eprintln!("load duration:        {load:?}");
    eprintln!("prompt eval count:    {} token(s)", c.n_prompt);
    if with_cache {
        eprintln!("prompt cache count:   {} token(s)", c.n_cached);
    }
    eprintln!("prompt eval duration: {:?}", c.prompt_eval_duration);
    eprintln!(
        "prompt eval rate:     {:.2} tokens/s",
        rate(c.n_prompt, c.prompt_eval_duration)
    );
    eprintln!("eval count:           {} token(s)", c.n_eval);
    eprintln!("eval duration:        {:?}", c.eval_duration);
    eprintln!(
        "eval rate:            {:.2} tokens/s",
        rate(c.n_eval, c.eval_duration)
    );
    if c.n_drafted > 0 {
        eprintln!(
            "draft tokens:         {} drafted, {} accepted ({:.0}%)",
            c.n_drafted,
            c.n_accepted,
            100.0 * c.n_accepted as f64 / c.n_drafted as f64
        );
    }
}

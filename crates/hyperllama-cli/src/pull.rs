//! `hyperllama pull NAME`: download a model from its registry (`hyperllama_models::pull`) with a
//! progress bar per layer, then index it.
//!
//! The base URL of `registry.ollama.ai` and `hf.co` can be set (`HYPERLLAMA_REGISTRY_URL`,
//! `HYPERLLAMA_HF_URL`); `--insecure` allows plain http. On a terminal the bars are drawn
//! with indicatif; elsewhere each status is printed once per line, as a log.

use std::collections::HashMap;
use std::io::IsTerminal;

use clap::Args;
use hyperllama_models::digest::BlobDigest;
use hyperllama_models::pull::{PullConfig, PullEvent, Puller};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::models::{human_bytes, parse_name, Models};

/// Arguments of `hyperllama pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// The model, e.g. `llama3.2`, `library/qwen3:8b` or `hf.co/user/repo:Q4_K_M`.
    model: String,
    /// Allow plain http to the registry.
    #[arg(long)]
    insecure: bool,
}

/// Runs `hyperllama pull`.
pub fn pull(args: &PullArgs) -> anyhow::Result<()> {
    let name = parse_name(&args.model)?;
    if let Some(client) = crate::client::Client::detect()? {
        return pull_remote(&client, args);
    }
    let models = Models::open()?;
    let mut config = PullConfig::default();
    for (host, url) in crate::env::registry_urls()? {
        config.registries.insert(host.to_owned(), url);
    }
    config.insecure = args.insecure;
    let puller = Puller::new(models.store.clone(), config)?;
    let mut view = ProgressView::new(std::io::stderr().is_terminal());
    let stored = models
        .rt
        .block_on(puller.pull(&name, &mut |event| view.show(&event)))?;
    view.finish();
    models.index(&stored.name)?;
    Ok(())
}

/// Pulls through the running server's `/api/pull`, drawing its progress stream.
fn pull_remote(client: &crate::client::Client, args: &PullArgs) -> anyhow::Result<()> {
    let mut view = ProgressView::new(std::io::stderr().is_terminal());
    let body =
        serde_json::json!({ "model": args.model, "insecure": args.insecure, "stream": true });
    client.stream("/api/pull", &body, |line| {
        let digest = line
            .get("digest")
            .and_then(serde_json::Value::as_str)
            .and_then(|d| d.parse::<BlobDigest>().ok());
        let total = line.get("total").and_then(serde_json::Value::as_u64);
        match (digest, total) {
            (Some(digest), Some(total)) => view.show(&PullEvent::Pulling {
                digest,
                total,
                completed: line
                    .get("completed")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0),
            }),
            _ => view.show_status(
                line.get("status")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default(),
            ),
        }
        Ok(())
    })?;
    view.finish();
    Ok(())
}

/// Draws pull progress: bars on a terminal, status lines elsewhere.
struct ProgressView {
    tty: bool,
    multi: MultiProgress,
    bars: HashMap<BlobDigest, ProgressBar>,
    /// What was printed last (no terminal): each status once.
    last: String,
}

impl ProgressView {
    fn new(tty: bool) -> Self {
        let target = if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        ProgressView {
            tty,
            multi: MultiProgress::with_draw_target(target),
            bars: HashMap::new(),
            last: String::new(),
        }
    }

    fn show(&mut self, event: &PullEvent) {
        if !self.tty {
            let line = match event {
                PullEvent::Pulling {
                    total, completed, ..
                } if completed < total => return,
                PullEvent::Pulling { total, .. } => {
                    format!("{} 100% {}", event.status(), human_bytes(*total))
                }
                _ => event.status(),
            };
            if line != self.last {
                eprintln!("{line}");
                self.last = line;
            }
            return;
        }
        match event {
            PullEvent::Pulling {
                digest,
                total,
                completed,
            } => {
                let bar = self.bars.entry(*digest).or_insert_with(|| {
                    let bar = self.multi.add(ProgressBar::new(*total));
                    let style = ProgressStyle::with_template(
                        "{msg} {percent:>3}% ▕{bar:40}▏ {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
                    bar.set_style(style);
                    bar.set_message(event.status());
                    bar
                });
                bar.set_position(*completed);
            }
            other => {
                let _ = self.multi.println(other.status());
            }
        }
    }

    /// A status line that is not a blob's progress (from a server's stream).
    fn show_status(&mut self, status: &str) {
        if status.is_empty() || status == self.last {
            return;
        }
        if self.tty {
            let _ = self.multi.println(status);
        } else {
            eprintln!("{status}");
        }
        status.clone_into(&mut self.last);
    }

    fn finish(&mut self) {
        for bar in self.bars.values() {
            bar.finish();
        }
    }
}

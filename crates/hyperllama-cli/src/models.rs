//! The model store as the commands see it, and the small commands on it: `list`, `cp`, `rm`.
//!
//! [`Models::open`] opens the store at `HYPERLLAMA_MODELS` and its SQLite index, and brings
//! the index up to date (`Registry::sync`), so every command sees models that Ollama or a
//! user added or removed behind our back. The logic lives in `hyperllama_models`; this module
//! parses names, calls it, and prints what Ollama's CLI prints.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::Args;
use hyperllama_models::name::ModelName;
use hyperllama_models::registry::Registry;
use hyperllama_models::remove::remove_model;
use hyperllama_models::store::Store;
use serde_json::{json, Value};

use crate::client::Client;
use crate::env;

/// The store, its index, and the runtime the index needs.
pub struct Models {
    /// The store.
    pub store: Store,
    /// Its index.
    pub registry: Registry,
    /// A runtime for the async index (and pulls).
    pub rt: tokio::runtime::Runtime,
}

impl Models {
    /// Opens the store and its index, and syncs the index with the manifests.
    pub fn open() -> anyhow::Result<Self> {
        let dir = env::models_dir()?;
        let store = Store::open(&dir)?;
        let db = env::index_db(&dir)?;
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create directory {}", parent.display()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let registry = rt.block_on(Registry::open(&db))?;
        let report = rt.block_on(registry.sync(&store))?;
        for (name, why) in &report.broken {
            tracing::warn!("skipping model '{}': {why}", name.display_shortest());
        }
        Ok(Models {
            store,
            registry,
            rt,
        })
    }

    /// Indexes `name` now (after its manifest was written).
    pub fn index(&self, name: &ModelName) -> anyhow::Result<()> {
        self.rt.block_on(self.registry.index(&self.store, name))?;
        Ok(())
    }
}

/// Parses a model name given on the command line.
pub fn parse_name(input: &str) -> anyhow::Result<ModelName> {
    Ok(ModelName::parse(input)?)
}

/// Arguments of `hyperllama cp`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The model to copy.
    source: String,
    /// The new name.
    destination: String,
}

/// Arguments of `hyperllama rm`.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The models to remove.
    #[arg(required = true)]
    models: Vec<String>,
}

/// `hyperllama list`: NAME, ID, SIZE, MODIFIED, newest first, as `ollama list`.
pub fn list() -> anyhow::Result<()> {
    if let Some(client) = Client::detect()? {
        return list_remote(&client);
    }
    let models = Models::open()?;
    let mut records = models.rt.block_on(models.registry.list())?;
    records.sort_by_key(|r| std::cmp::Reverse(r.modified_at));
    let now = SystemTime::now();
    let rows: Vec<[String; 4]> = records
        .iter()
        .map(|r| {
            [
                r.name.display_shortest(),
                r.digest.short(),
                human_bytes(r.size),
                human_time(now, r.modified_at),
            ]
        })
        .collect();
    print_table(&["NAME", "ID", "SIZE", "MODIFIED"], &rows);
    Ok(())
}

/// `GET /api/tags`, printed as the local listing.
fn list_remote(client: &Client) -> anyhow::Result<()> {
    let tags = client.get("/api/tags")?;
    let now = SystemTime::now();
    let mut rows: Vec<(SystemTime, [String; 4])> = array(&tags, "models")
        .iter()
        .map(|m| {
            let modified = time_field(m, "modified_at").unwrap_or(now);
            let row = [
                str_field(m, "name"),
                str_field(m, "digest").chars().take(12).collect(),
                human_bytes(m.get("size").and_then(Value::as_u64).unwrap_or(0)),
                human_time(now, modified),
            ];
            (modified, row)
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let rows: Vec<[String; 4]> = rows.into_iter().map(|r| r.1).collect();
    print_table(&["NAME", "ID", "SIZE", "MODIFIED"], &rows);
    Ok(())
}

/// `hyperllama ps`: the models the running server holds, as `ollama ps`.
pub fn ps() -> anyhow::Result<()> {
    let client = Client::require()?;
    let ps = client.get("/api/ps")?;
    let now = SystemTime::now();
    let rows: Vec<[String; 6]> = array(&ps, "models")
        .iter()
        .map(|m| {
            let until = match time_field(m, "expires_at") {
                // Ollama shows a far-off expiry as "Forever".
                Some(t) if t > now + Duration::from_secs(10 * 365 * 24 * 3600) => {
                    "Forever".to_owned()
                }
                Some(t) if t <= now => "Stopping...".to_owned(),
                Some(t) => human_time_until(t.duration_since(now).unwrap_or_default()),
                None => String::new(),
            };
            let size = m.get("size").and_then(Value::as_u64).unwrap_or(0);
            let vram = m.get("size_vram").and_then(Value::as_u64).unwrap_or(0);
            [
                str_field(m, "name"),
                str_field(m, "digest").chars().take(12).collect(),
                human_bytes(size),
                processor(size, vram),
                m.get("context_length")
                    .and_then(Value::as_u64)
                    .map_or_else(String::new, |n| n.to_string()),
                until,
            ]
        })
        .collect();
    print_table(
        &["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"],
        &rows,
    );
    Ok(())
}

/// Arguments of `hyperllama stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// The running model to unload.
    model: String,
}

/// `hyperllama stop NAME`: unloads a model from the running server now, as `ollama stop`
/// (an empty generate request with `keep_alive: 0`).
pub fn stop(args: &StopArgs) -> anyhow::Result<()> {
    let wanted = parse_name(&args.model)?;
    let client = Client::require()?;
    let ps = client.get("/api/ps")?;
    let running = array(&ps, "models")
        .iter()
        .any(|m| ModelName::parse(&str_field(m, "name")).is_ok_and(|n| n == wanted));
    if !running {
        bail!("couldn't find a running model named '{}'", args.model);
    }
    client.send(
        reqwest::Method::POST,
        "/api/generate",
        &json!({ "model": args.model, "keep_alive": 0, "stream": false }),
    )?;
    Ok(())
}

/// "100% CPU", "100% GPU", or the split, as `ollama ps`.
fn processor(size: u64, vram: u64) -> String {
    if vram == 0 || size == 0 {
        "100% CPU".to_owned()
    } else if vram >= size {
        "100% GPU".to_owned()
    } else {
        let gpu = vram * 100 / size;
        format!("{}%/{}% CPU/GPU", 100 - gpu, gpu)
    }
}

/// "4 minutes from now", as Ollama's `format.HumanTime` for the future.
fn human_time_until(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        0..=59 => (s, "second"),
        60..=3599 => (s / 60, "minute"),
        3600..=86_399 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    match n {
        0 => "Less than a second from now".to_owned(),
        1 => format!("1 {unit} from now"),
        n => format!("{n} {unit}s from now"),
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn time_field(v: &Value, key: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(v.get(key)?.as_str()?).ok()?;
    Some(SystemTime::from(t.with_timezone(&chrono::Utc)))
}

/// `hyperllama cp SRC DST`.
pub fn copy(args: &CopyArgs) -> anyhow::Result<()> {
    let src = parse_name(&args.source)?;
    let dst = parse_name(&args.destination)?;
    if let Some(client) = Client::detect()? {
        client.send(
            reqwest::Method::POST,
            "/api/copy",
            &json!({ "source": args.source, "destination": args.destination }),
        )?;
        println!("copied '{}' to '{}'", args.source, args.destination);
        return Ok(());
    }
    let models = Models::open()?;
    let written = models.store.copy(&src, &dst)?;
    models.index(&written)?;
    println!("copied '{}' to '{}'", args.source, args.destination);
    Ok(())
}

/// `hyperllama rm NAME...`: each model, then the blobs nothing else uses.
pub fn remove(args: &RemoveArgs) -> anyhow::Result<()> {
    let names = args
        .models
        .iter()
        .map(|m| parse_name(m))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(client) = Client::detect()? {
        for input in &args.models {
            client.send(
                reqwest::Method::DELETE,
                "/api/delete",
                &json!({ "model": input }),
            )?;
            println!("deleted '{input}'");
        }
        return Ok(());
    }
    let models = Models::open()?;
    for (input, name) in args.models.iter().zip(&names) {
        let report = remove_model(&models.store, name)?;
        models.rt.block_on(models.registry.remove(&report.name))?;
        println!("deleted '{input}'");
    }
    Ok(())
}

/// Prints left-aligned columns separated by at least four spaces, as Ollama's tables.
pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}    ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Ollama's `format.HumanBytes`: decimal units, `98 MB`, `2 GB`, `1.5 GB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1_000_000_000_000, "TB"),
        (1_000_000_000, "GB"),
        (1_000_000, "MB"),
        (1_000, "KB"),
    ];
    let Some((size, unit)) = UNITS.into_iter().find(|(size, _)| n >= *size) else {
        return format!("{n} B");
    };
    let value = n as f64 / size as f64;
    if value >= 10.0 || value.fract() == 0.0 {
        format!("{} {unit}", value as u64)
    } else {
        format!("{value:.1} {unit}")
    }
}

/// Ollama's `format.HumanTime`: `Less than a second ago`, `2 minutes ago`, `About an hour
/// ago`, `3 days ago`... (`Never` for a time before 1971, as Ollama treats the zero time).
pub fn human_time(now: SystemTime, then: SystemTime) -> String {
    if then < SystemTime::UNIX_EPOCH + Duration::from_secs(365 * 24 * 3600) {
        return "Never".to_owned();
    }
    match now.duration_since(then) {
        Ok(d) => format!("{} ago", human_duration(d)),
        Err(e) => format!("{} from now", human_duration(e.duration())),
    }
}

/// Docker's `units.HumanDuration`, which Ollama's `HumanTime` uses.
fn human_duration(d: Duration) -> String {
    let seconds = d.as_secs();
    let minutes = seconds / 60;
    let hours = (seconds + 1800) / 3600;
    match () {
        _ if seconds < 1 => "Less than a second".to_owned(),
        _ if seconds == 1 => "1 second".to_owned(),
        _ if seconds < 60 => format!("{seconds} seconds"),
        _ if minutes == 1 => "About a minute".to_owned(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".to_owned(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", seconds / 3600 / 24 / 365),
    }
}

/// The directory a Modelfile's relative paths are resolved against.
pub fn modelfile_dir(modelfile: &Path) -> &Path {
    modelfile
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_ollamas() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_000), "1 KB");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(human_bytes(98_765_432), "98 MB");
        assert_eq!(human_bytes(2_000_000_000), "2 GB");
        assert_eq!(human_bytes(4_700_000_000), "4.7 GB");
    }

    #[test]
    fn times_read_like_ollamas() {
        let now = SystemTime::now();
        let ago = |s| human_time(now, now - Duration::from_secs(s));
        assert_eq!(ago(0), "Less than a second ago");
        assert_eq!(ago(30), "30 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(120), "2 minutes ago");
        assert_eq!(ago(3600), "About an hour ago");
        assert_eq!(ago(5 * 3600), "5 hours ago");
        assert_eq!(ago(3 * 86400), "3 days ago");
        assert_eq!(ago(21 * 86400), "3 weeks ago");
        assert_eq!(human_time(now, SystemTime::UNIX_EPOCH), "Never");
    }
}

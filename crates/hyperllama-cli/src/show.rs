//! `hyperllama show NAME`: what `ollama show` prints — the model's facts, capabilities,
//! parameters, system prompt and license — or, with a flag, one of them raw — and which
//! engine serves it and why. A model whose weights stay outside the store (a safetensors
//! folder, a Hugging Face id) shows its format and what its config recorded; it has no GGUF
//! metadata.

use clap::Args;
use hyperllama_models::create::parameter_size_label;
use hyperllama_models::gguf;
use hyperllama_models::resolve::{resolve_model, ResolvedModel};
use serde_json::Value;

use crate::models::{parse_name, Models};

/// Arguments of `hyperllama show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model.
    model: String,
    /// Print the Modelfile that recreates the model.
    #[arg(long)]
    modelfile: bool,
    /// Print the parameters.
    #[arg(long)]
    parameters: bool,
    /// Print the template (the template layer, else the GGUF's chat template).
    #[arg(long)]
    template: bool,
    /// Print the system prompt.
    #[arg(long)]
    system: bool,
    /// Print the license.
    #[arg(long)]
    license: bool,
    /// Also print every GGUF metadata key and the tensors.
    #[arg(short, long)]
    verbose: bool,
}

/// Runs `hyperllama show`.
pub fn show(args: &ShowArgs) -> anyhow::Result<()> {
    let name = parse_name(&args.model)?;
    if let Some(client) = crate::client::Client::detect()? {
        return show_remote(&client, args);
    }
    let models = Models::open()?;
    let model = resolve_model(&models.store, &name)?;
    if args.modelfile {
        print!("{}", model.to_modelfile("hyperllama"));
        return Ok(());
    }
    if args.parameters {
        for (key, value) in parameter_rows(&model) {
            println!("{key:<30} {value}");
        }
        return Ok(());
    }
    if args.system {
        println!("{}", model.system.as_deref().unwrap_or_default());
        return Ok(());
    }
    if args.license {
        println!("{}", model.licenses.join("\n"));
        return Ok(());
    }
    if model.reference.is_some() {
        return show_reference(&models, &model, args);
    }
    let file = gguf::read_file(&model.model_path)?;
    if args.template {
        let template = model
            .template
            .as_deref()
            .or_else(|| file.chat_template())
            .unwrap_or_default();
        println!("{template}");
        return Ok(());
    }
    let record = models.rt.block_on(models.registry.get(&model.name))?;
    let capabilities = record.map(|r| r.capabilities.names()).unwrap_or_default();

    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
    let mut facts = vec![
        (
            "architecture",
            file.architecture().unwrap_or_default().to_owned(),
        ),
        ("parameters", parameter_size_label(file.parameter_count())),
        ("context length", opt(file.context_length())),
        ("embedding length", opt(file.embedding_length())),
        (
            "quantization",
            file.quantization_label().unwrap_or_default().to_owned(),
        ),
    ];
    facts.retain(|(_, v)| !v.is_empty());
    section(
        "Model",
        facts.iter().map(|(k, v)| (k.to_string(), v.clone())),
    );
    section(
        "Capabilities",
        capabilities.iter().map(|c| (c.to_string(), String::new())),
    );
    section("Engine", engine_rows(&model).into_iter());
    let params = parameter_rows(&model);
    if !params.is_empty() {
        section("Parameters", params.into_iter());
    }
    if let Some(system) = &model.system {
        text_section("System", system, args.verbose);
    }
    for license in &model.licenses {
        text_section("License", license, args.verbose);
    }
    if args.verbose {
        section(
            "Metadata",
            file.metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.summary(80))),
        );
        section(
            "Tensors",
            file.tensors.iter().map(|t| {
                let ty = t
                    .ggml_type
                    .name()
                    .map_or_else(|| format!("type {}", t.ggml_type.id()), str::to_owned);
                (t.name.clone(), format!("{ty:<8} {:?}", t.dims))
            }),
        );
    }
    Ok(())
}

/// `show` of a model whose weights stay outside the store: its format, where the weights
/// are, what the config recorded, the engine.
fn show_reference(models: &Models, model: &ResolvedModel, args: &ShowArgs) -> anyhow::Result<()> {
    if args.template {
        println!("{}", model.template.as_deref().unwrap_or_default());
        return Ok(());
    }
    let record = models.rt.block_on(models.registry.get(&model.name))?;
    let capabilities = record.map(|r| r.capabilities.names()).unwrap_or_default();
    let c = model.config.clone().unwrap_or_default();
    let nonzero = |n: u64| if n > 0 { n.to_string() } else { String::new() };
    let mut facts = vec![
        ("format", model.format().to_owned()),
        (
            "weights",
            model
                .reference
                .as_ref()
                .map(|r| r.location())
                .unwrap_or_default(),
        ),
        ("architecture", c.model_family.clone()),
        ("parameters", c.model_type.clone()),
        ("context length", nonzero(c.context_length)),
        ("embedding length", nonzero(c.embedding_length)),
        ("dtype", c.file_type.clone()),
    ];
    facts.retain(|(_, v)| !v.is_empty());
    section(
        "Model",
        facts.iter().map(|(k, v)| (k.to_string(), v.clone())),
    );
    section(
        "Capabilities",
        capabilities.iter().map(|c| (c.to_string(), String::new())),
    );
    section("Engine", engine_rows(model).into_iter());
    let params = parameter_rows(model);
    if !params.is_empty() {
        section("Parameters", params.into_iter());
    }
    if let Some(system) = &model.system {
        text_section("System", system, args.verbose);
    }
    for license in &model.licenses {
        text_section("License", license, args.verbose);
    }
    Ok(())
}

/// `show` through the running server's `/api/show`, printed as the local `show`.
fn show_remote(client: &crate::client::Client, args: &ShowArgs) -> anyhow::Result<()> {
    let info = client.send(
        reqwest::Method::POST,
        "/api/show",
        &serde_json::json!({ "model": args.model, "verbose": args.verbose }),
    )?;
    let text = |key: &str| {
        info.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if args.modelfile {
        print!("{}", text("modelfile"));
        return Ok(());
    }
    if args.parameters {
        let params = text("parameters");
        if !params.is_empty() {
            println!("{params}");
        }
        return Ok(());
    }
    for (flag, key) in [
        (args.system, "system"),
        (args.license, "license"),
        (args.template, "template"),
    ] {
        if flag {
            println!("{}", text(key));
            return Ok(());
        }
    }
    let empty = serde_json::Map::new();
    let model_info = info
        .get("model_info")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let details = info.get("details").cloned().unwrap_or(Value::Null);
    let arch = model_info
        .get("general.architecture")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let arch_key = |suffix: &str| {
        model_info
            .get(&format!("{arch}.{suffix}"))
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    let detail = |key: &str| {
        details
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let format = detail("format");
    let mut facts = vec![
        (
            "format",
            if format == "gguf" {
                String::new()
            } else {
                format
            },
        ),
        (
            "weights",
            model_info
                .get("hyperllama.reference")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        ),
        ("architecture", arch.clone()),
        ("parameters", detail("parameter_size")),
        ("context length", arch_key("context_length")),
        ("embedding length", arch_key("embedding_length")),
        ("quantization", detail("quantization_level")),
    ];
    facts.retain(|(_, v)| !v.is_empty());
    section(
        "Model",
        facts.iter().map(|(k, v)| (k.to_string(), v.clone())),
    );
    let capabilities: Vec<String> = info
        .get("capabilities")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    section(
        "Capabilities",
        capabilities.into_iter().map(|c| (c, String::new())),
    );
    // The server's own choice (its configuration decides), shown as the local one.
    let engine = text("engine");
    if !engine.is_empty() {
        section("Engine", std::iter::once((engine, text("engine_reason"))));
    }
    let params = text("parameters");
    if !params.is_empty() {
        section(
            "Parameters",
            params
                .lines()
                .map(|l| match l.split_once(char::is_whitespace) {
                    Some((k, v)) => (k.to_owned(), v.trim().to_owned()),
                    None => (l.to_owned(), String::new()),
                }),
        );
    }
    let system = text("system");
    if !system.is_empty() {
        text_section("System", &system, args.verbose);
    }
    let license = text("license");
    if !license.is_empty() {
        text_section("License", &license, args.verbose);
    }
    if args.verbose {
        section(
            "Metadata",
            model_info.iter().map(|(k, v)| {
                let mut shown = v.to_string();
                if shown.chars().count() > 80 {
                    shown = shown.chars().take(77).collect::<String>() + "...";
                }
                (k.clone(), shown)
            }),
        );
    }
    Ok(())
}

/// The params layer as rows: strings quoted, one row per list element, sorted by name.
/// Which engine serves the model and why, by this machine's configuration (a GGUF model
/// without a route runs in-process).
fn engine_rows(model: &ResolvedModel) -> Vec<(String, String)> {
    use hyperllama_server::settings::{ModelFormat, LLAMA_CPP};
    let format = ModelFormat::of(model);
    let choice = crate::env::settings()
        .map_err(|e| e.to_string())
        .and_then(|s| {
            s.choose_engine(
                &model.name.display_shortest(),
                format,
                crate::config::installed,
                crate::config::machine(),
            )
        });
    match choice {
        Ok(c) => vec![(c.engine, c.reason)],
        Err(_) if format == ModelFormat::Gguf => {
            vec![(LLAMA_CPP.into(), "GGUF runs in-process on llama.cpp".into())]
        }
        Err(e) => vec![(
            "none".into(),
            format!(
                "{e}; configure an engine with formats = [\"{}\"] in config.toml",
                format.as_str()
            ),
        )],
    }
}

fn parameter_rows(model: &ResolvedModel) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for (key, value) in model.parameters.iter() {
        let values = match value {
            Value::Array(list) => list.iter().collect(),
            v => vec![v],
        };
        for v in values {
            rows.push((key.to_owned(), v.to_string()));
        }
    }
    rows
}

/// Prints a heading and aligned key/value rows, indented as `ollama show`.
fn section(title: &str, rows: impl Iterator<Item = (String, String)>) {
    let rows: Vec<_> = rows.collect();
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    println!("  {title}");
    for (key, value) in rows {
        let line = format!("    {key:<width$}    {value}");
        println!("{}", line.trim_end());
    }
    println!();
}

/// Prints a text section: its first two lines and `...` unless verbose, as `ollama show`.
fn text_section(title: &str, text: &str, verbose: bool) {
    println!("  {title}");
    let lines: Vec<&str> = text.trim().lines().collect();
    let n = if verbose {
        lines.len()
    } else {
        lines.len().min(2)
    };
    for line in &lines[..n] {
        println!("    {line}");
    }
    if n < lines.len() {
        println!("    ...");
    }
    println!();
}

//! The environment variables HyperLlama reads. This is the only module that reads the
//! environment; everything else receives typed settings.

/// Name, description and default of every variable.
const VARS: &[(&str, &str, &str)] = &[
    ("HYPERLLAMA_DEBUG", "Verbose logging (1/true)", "false"),
    (
        "HYPERLLAMA_LOG",
        "Log filter in tracing's EnvFilter syntax (overrides HYPERLLAMA_DEBUG)",
        "warn",
    ),
    (
        "HYPERLLAMA_NUM_THREADS",
        "CPU threads llama.cpp may use",
        "all cores",
    ),
];

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether debug logging is on.
pub fn debug() -> bool {
    var("HYPERLLAMA_DEBUG").is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes" | "on"))
}

/// Threads for llama.cpp, when set.
pub fn num_threads() -> anyhow::Result<Option<usize>> {
    match var("HYPERLLAMA_NUM_THREADS") {
        None => Ok(None),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => anyhow::bail!("HYPERLLAMA_NUM_THREADS must be a positive integer, not {v:?}"),
        },
    }
}

/// Prints the table of variables with their current values.
pub fn print_table() {
    for (name, description, default) in VARS {
        let value = var(name).unwrap_or_else(|| format!("(default: {default})"));
        println!("{name:<24} {value:<24} {description}");
    }
}

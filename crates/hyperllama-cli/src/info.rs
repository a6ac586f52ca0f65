//! `hyperllama info`: what the machine has.

use clap::Args;

/// Arguments of `hyperllama info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Prints the detected hardware.
pub fn info(args: &InfoArgs) -> anyhow::Result<()> {
    let hw = hyperllama_engine::hardware::detect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&hw)?);
        return Ok(());
    }
    println!("CPU:              {}", hw.cpu_model);
    let physical = hw
        .n_physical_cores
        .map_or_else(|| "unknown".to_owned(), |n| n.to_string());
    println!(
        "Cores:            {} logical, {} physical",
        hw.n_logical_cores, physical
    );
    println!("SIMD:             {}", hw.simd.join(" "));
    println!(
        "Memory:           {} total, {} available",
        gib(hw.memory_total),
        gib(hw.memory_available)
    );
    if hw.gpus.is_empty() {
        println!("GPUs:             none found");
    }
    for gpu in &hw.gpus {
        let cc = gpu.compute_capability.map_or_else(String::new, |(a, b)| {
            format!(", compute capability {a}.{b}")
        });
        println!(
            "GPU:              {} ({} total, {} free{cc})",
            gpu.name,
            gib(gpu.memory_total),
            gib(gpu.memory_free)
        );
    }
    if let Some(why) = &hw.nvml {
        println!("NVML:             {why}");
    }
    println!("Compute devices:  {}", hw.compute_devices.join(", "));
    Ok(())
}

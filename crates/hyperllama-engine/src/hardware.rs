//! What the machine has: CPU, SIMD features, memory, GPUs.
//!
//! Detection never fails: what cannot be read is reported as unknown. GPUs are found through
//! the NVIDIA driver's `/proc` files (no library is loaded), and through the llama.cpp
//! backends compiled into this binary.
//!
//! # Invariants
//! - Detection performs only reads; it never loads a driver library.

use serde::Serialize;

/// A description of the machine.
#[derive(Clone, Debug, Serialize)]
pub struct Hardware {
    /// CPU model name.
    pub cpu_model: String,
    /// Logical cores.
    pub n_logical_cores: usize,
    /// Physical cores, when known.
    pub n_physical_cores: Option<usize>,
    /// SIMD features that matter for llama.cpp's kernels.
    pub simd: Vec<&'static str>,
    /// Total memory in bytes.
    pub memory_total: u64,
    /// Available memory in bytes.
    pub memory_available: u64,
    /// GPUs the NVIDIA driver reports.
    pub gpus: Vec<String>,
    /// llama.cpp compute devices in this build (e.g. `CPU`, `CUDA0`).
    pub compute_devices: Vec<String>,
}

/// Detects the machine's hardware.
pub fn detect() -> Hardware {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    sys.refresh_cpu_list(sysinfo::CpuRefreshKind::nothing());
    let cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Hardware {
        cpu_model,
        n_logical_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        n_physical_cores: sys.physical_core_count(),
        simd: simd_features(),
        memory_total: sys.total_memory(),
        memory_available: sys.available_memory(),
        gpus: nvidia_gpus(),
        compute_devices: llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .map(|d| format!("{} ({})", d.name, d.description))
            .collect(),
    }
}

fn simd_features() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! check {
            ($($f:tt),*) => { $( if std::arch::is_x86_feature_detected!($f) { out.push($f); } )* };
        }
        check!(
            "sse4.2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vnni",
            "avx512bf16"
        );
    }
    #[cfg(target_arch = "aarch64")]
    {
        macro_rules! check {
            ($($f:tt),*) => { $( if std::arch::is_aarch64_feature_detected!($f) { out.push($f); } )* };
        }
        check!("neon", "dotprod", "i8mm", "sve");
    }
    out
}

fn nvidia_gpus() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc/driver/nvidia/gpus") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("information")).ok())
        .filter_map(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn detection_finds_this_machine() {
        let hw = super::detect();
        assert!(hw.n_logical_cores >= 1);
        assert!(hw.memory_total > 0);
        assert!(
            hw.compute_devices.iter().any(|d| d.starts_with("CPU")),
            "{hw:?}"
        );
    }
}

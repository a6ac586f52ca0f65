//! What the machine has: CPU, SIMD features, memory, GPUs.
//!
//! Detection never fails: what cannot be read is reported as unknown. NVIDIA GPUs are found
//! through NVML (`libnvidia-ml.so`), loaded at run time by `nvml-wrapper`: on a machine
//! without the driver the library is missing, [`Hardware::nvml`] says why, and the GPU list
//! falls back to the driver's `/proc` files (names only). The llama.cpp backends compiled
//! into this binary are listed too.
//!
//! [`detect`] looks at everything once (for `hyperllama info` and start-up decisions);
//! [`Probe`] keeps what does not change (CPU, SIMD, compute devices) and the NVML handle, and
//! re-reads only memory and GPU memory on each [`Probe::read`], so that it is cheap enough for
//! every `/metrics` scrape.
//!
//! # Invariants
//! - Detection performs only reads; a missing or broken NVML library is never an error.
//! - NVML is initialised at most once per [`Probe`]; a failed initialisation is not retried.

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
    /// NVIDIA GPUs, from NVML (or, without NVML, names from the driver's `/proc` files).
    pub gpus: Vec<Gpu>,
    /// Why NVML could not be used (`None` when it was).
    pub nvml: Option<String>,
    /// llama.cpp compute devices in this build (e.g. `CPU`, `CUDA0`).
    pub compute_devices: Vec<String>,
}

/// Detects the machine's hardware.
pub fn detect() -> Hardware {
    Probe::new().read()
}

/// A hardware reader for repeated use: the static facts and the NVML handle are kept, memory
/// and GPU memory are read anew by [`Probe::read`].
pub struct Probe {
    base: Hardware,
    nvml: Result<nvml_wrapper::Nvml, String>,
    sys: std::sync::Mutex<sysinfo::System>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("base", &self.base)
            .field("nvml", &self.nvml.as_ref().map(|_| "loaded"))
            .finish()
    }
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

impl Probe {
    /// Reads the static facts and initialises NVML (once).
    pub fn new() -> Self {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML unavailable: {e}"));
        let base = static_facts(nvml.as_ref().err().cloned());
        Self {
            base,
            nvml,
            sys: std::sync::Mutex::new(sysinfo::System::new()),
        }
    }

    /// The machine now: the static facts with current memory and GPU memory.
    pub fn read(&self) -> Hardware {
        let mut hw = self.base.clone();
        {
            let mut sys = self
                .sys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            sys.refresh_memory();
            hw.memory_total = sys.total_memory();
            hw.memory_available = sys.available_memory();
        }
        match self.nvml.as_ref().map_err(Clone::clone).and_then(nvml_gpus) {
            Ok(gpus) => hw.gpus = gpus,
            Err(e) => {
                hw.gpus = proc_gpus();
                hw.nvml = Some(e);
            }
        }
        hw
    }
}

/// What does not change while the process runs.
fn static_facts(nvml_error: Option<String>) -> Hardware {
    let mut sys = sysinfo::System::new();
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
        memory_total: 0,
        memory_available: 0,
        gpus: Vec::new(),
        nvml: nvml_error,
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

/// One NVIDIA GPU.
#[derive(Clone, Debug, Serialize)]
pub struct Gpu {
    /// The device index (NVML's, which is CUDA's with `CUDA_DEVICE_ORDER=PCI_BUS_ID`).
    pub index: u32,
    /// The device's name (e.g. `NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// Total memory in bytes (0 when unknown).
    pub memory_total: u64,
    /// Free memory in bytes (0 when unknown).
    pub memory_free: u64,
    /// CUDA compute capability as `(major, minor)`, when known.
    pub compute_capability: Option<(i32, i32)>,
}

impl Hardware {
    /// Free memory of all GPUs together, in bytes.
    pub fn gpu_memory_free(&self) -> u64 {
        self.gpus.iter().map(|g| g.memory_free).sum()
    }
}

/// The GPUs NVML reports, or why NVML cannot be used.
fn nvml_gpus(nvml: &nvml_wrapper::Nvml) -> Result<Vec<Gpu>, String> {
    let n = nvml
        .device_count()
        .map_err(|e| format!("NVML device count: {e}"))?;
    let mut gpus = Vec::new();
    for i in 0..n {
        let Ok(device) = nvml.device_by_index(i) else {
            continue;
        };
        let memory = device.memory_info().ok();
        gpus.push(Gpu {
            index: i,
            name: device.name().unwrap_or_else(|_| format!("GPU {i}")),
            memory_total: memory.as_ref().map_or(0, |m| m.total),
            memory_free: memory.as_ref().map_or(0, |m| m.free),
            compute_capability: device
                .cuda_compute_capability()
                .ok()
                .map(|c| (c.major, c.minor)),
        });
    }
    Ok(gpus)
}

fn proc_gpus() -> Vec<Gpu> {
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
        .zip(0..)
        .map(|(name, index)| Gpu {
            index,
            name,
            memory_total: 0,
            memory_free: 0,
            compute_capability: None,
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

    #[test]
    fn a_probe_rereads_memory_and_keeps_the_static_facts() {
        let probe = super::Probe::new();
        let a = probe.read();
        let b = probe.read();
        assert!(a.memory_total > 0 && a.memory_available > 0, "{a:?}");
        assert_eq!(a.memory_total, b.memory_total);
        assert_eq!(a.simd, b.simd);
        assert_eq!(a.cpu_model, b.cpu_model);
        assert_eq!(a.gpus.len(), b.gpus.len());
    }

    #[test]
    fn without_a_driver_nvml_is_reported_not_fatal() {
        // This machine has no NVIDIA driver: NVML cannot load, and detection still works.
        let hw = super::detect();
        if std::path::Path::new("/proc/driver/nvidia").exists() {
            assert!(hw.nvml.is_none() || !hw.gpus.is_empty(), "{hw:?}");
        } else {
            assert!(hw.gpus.is_empty(), "{hw:?}");
            let why = hw.nvml.expect("NVML cannot load without a driver");
            assert!(why.contains("NVML"), "{why}");
        }
    }
}

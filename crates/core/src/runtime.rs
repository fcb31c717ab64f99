//! Process-wide LibTorch settings and the runtime report (torch version, CUDA, threads, BLAS, oneDNN).
use crate::error::{Error, Result};
use crate::shim;
use tch::{Cuda, Device};

static THREADS: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Sets LibTorch's intra-op thread count. `None` or 0 = all cores (`std::thread::available_parallelism`).
/// Always set explicitly: LibTorch's own detection can pick fewer than the machine has. The OpenMP thread
/// count is per calling thread, so work running on other threads calls [`apply_threads`] first.
pub fn set_threads(n: Option<usize>) -> usize {
    let n = match n {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    };
    THREADS.store(n as i32, std::sync::atomic::Ordering::Relaxed);
    tch::set_num_threads(n as i32);
    n
}

/// Applies the count of the last [`set_threads`] to the calling thread (e.g. a libuv worker running a task).
pub fn apply_threads() {
    let n = THREADS.load(std::sync::atomic::Ordering::Relaxed);
    if n > 0 && tch::get_num_threads() != n {
        tch::set_num_threads(n);
    }
}

/// Parses "cpu", "cuda" or "cuda:N" and checks that the device exists.
pub fn parse_device(s: &str) -> Result<Device> {
    let d = match s {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        _ => s
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
            .ok_or_else(|| Error::Config(format!("device '{s}': expected 'cpu', 'cuda' or 'cuda:N'")))?,
    };
    if !Cuda::is_available() {
        return Err(Error::Config(format!("device '{s}': CUDA is not available in this LibTorch / on this machine")));
    }
    let count = Cuda::device_count() as usize;
    if d >= count {
        return Err(Error::Config(format!("device '{s}': only {count} CUDA device(s) are visible")));
    }
    Ok(Device::Cuda(d))
}

/// What `cxformer info --runtime` and the benchmarks print.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeInfo {
    pub torch_version: String,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    pub threads: i32,
    pub interop_threads: i32,
    pub blas: String,
    pub onednn: String,
    pub cpu_capability: String,
    pub mkldnn_available: bool,
    pub libtorch_lib: String,
    /// LibTorch's full `show_config()` + `get_parallel_info()` text.
    pub report: String,
}

fn find_after<'a>(report: &'a str, key: &str) -> Option<&'a str> {
    report.find(key).map(|i| {
        let rest = &report[i + key.len()..];
        let end = rest.find([',', '\n']).unwrap_or(rest.len());
        rest[..end].trim()
    })
}

pub fn runtime_info() -> Result<RuntimeInfo> {
    let report = shim::runtime_report()?;
    let line = |k: &str| report.lines().find(|l| l.contains(k)).map(|l| l.trim().trim_start_matches("- ").to_string());
    Ok(RuntimeInfo {
        torch_version: find_after(&report, "torch_version=").unwrap_or("unknown").to_string(),
        cuda_available: Cuda::is_available(),
        cuda_device_count: if Cuda::is_available() { Cuda::device_count() } else { 0 },
        cudnn_available: Cuda::cudnn_is_available(),
        threads: tch::get_num_threads(),
        interop_threads: unsafe { torch_sys::at_get_num_interop_threads() },
        blas: find_after(&report, "BLAS_INFO=").unwrap_or("unknown").to_string(),
        onednn: line("MKL-DNN").or_else(|| line("oneDNN")).unwrap_or_else(|| "not built".into()),
        cpu_capability: find_after(&report, "CPU capability usage:").unwrap_or("unknown").to_string(),
        mkldnn_available: find_after(&report, "mkldnn_available=") == Some("1"),
        libtorch_lib: env!("CXF_LIBTORCH_LIB").to_string(),
        report,
    })
}

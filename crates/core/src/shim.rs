//! Safe wrappers over csrc/shim.cc, the project's only C++ (LibTorch APIs tch does not bind).
use crate::error::{Error, Result};
use std::ffi::{CStr, c_char, c_int};

unsafe extern "C" {
    fn cxf_last_error() -> *const c_char;
    fn cxf_runtime_report(out: *mut *mut c_char) -> c_int;
    fn cxf_free_string(s: *mut c_char);
    fn cxf_set_autocast(device_type: c_int, enabled: c_int, dtype: c_int, prev: *mut c_int) -> c_int;
    fn cxf_autocast_increment_nesting(depth: *mut c_int) -> c_int;
    fn cxf_autocast_decrement_nesting(depth: *mut c_int) -> c_int;
    fn cxf_autocast_clear_cache() -> c_int;
    fn cxf_set_tf32(matmul: c_int, cudnn: c_int) -> c_int;
}

/// TF32 on CUDA (cuBLAS matmuls, cuDNN convolutions). Off = float32 results that match the CPU to ~1e-6.
pub fn set_tf32(matmul: bool, cudnn: bool) -> Result<()> {
    check(unsafe { cxf_set_tf32(matmul as c_int, cudnn as c_int) })
}

fn check(rc: c_int) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: cxf_last_error returns a pointer to a thread-local NUL-terminated string owned by the shim.
    let msg = unsafe { CStr::from_ptr(cxf_last_error()) }.to_string_lossy().into_owned();
    Err(Error::Shim(msg))
}

/// LibTorch's build and parallelism report (`torch.__config__.show()` and `parallel_info()`), as text.
pub fn runtime_report() -> Result<String> {
    let mut ptr: *mut c_char = std::ptr::null_mut();
    // SAFETY: on success the shim stores a malloc'd string in `ptr`, freed below.
    check(unsafe { cxf_runtime_report(&mut ptr) })?;
    let s = unsafe { CStr::from_ptr(ptr) }.to_string_lossy().into_owned();
    unsafe { cxf_free_string(ptr) };
    Ok(s)
}

/// Autocast device family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutocastDevice {
    Cpu,
    Cuda,
}

/// RAII guard: autocast to bf16 on one device family for the current thread (LibTorch keeps the
/// autocast state thread-local), restored with the cache cleared when dropped.
pub struct AutocastGuard {
    device: AutocastDevice,
    prev: bool,
}

impl AutocastGuard {
    pub fn bf16(device: AutocastDevice) -> Result<Self> {
        let dev = match device {
            AutocastDevice::Cpu => 0,
            AutocastDevice::Cuda => 1,
        };
        let mut prev: c_int = 0;
        let mut depth: c_int = 0;
        check(unsafe { cxf_set_autocast(dev, 1, 1, &mut prev) })?;
        check(unsafe { cxf_autocast_increment_nesting(&mut depth) })?;
        Ok(Self { device, prev: prev != 0 })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        let dev = match self.device {
            AutocastDevice::Cpu => 0,
            AutocastDevice::Cuda => 1,
        };
        let mut depth: c_int = 0;
        let mut prev: c_int = 0;
        // Errors here cannot be reported from Drop; these calls only flip thread-local flags.
        unsafe {
            if cxf_autocast_decrement_nesting(&mut depth) == 0 && depth == 0 {
                cxf_autocast_clear_cache();
            }
            cxf_set_autocast(dev, self.prev as c_int, 1, &mut prev);
        }
    }
}

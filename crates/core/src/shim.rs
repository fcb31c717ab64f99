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

/// The c10d half of csrc/shim.cc (process groups); the safe wrapper is [`crate::dist::ProcessGroup`].
pub(crate) mod c10d {
    use std::ffi::{c_char, c_int, c_void};

    #[repr(C)]
    pub struct CxfPg {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub struct CxfWork {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        pub fn cxf_dist_has_gloo() -> c_int;
        pub fn cxf_dist_has_nccl() -> c_int;
        pub fn cxf_pg_create(
            host: *const c_char,
            port: c_int,
            rank: c_int,
            world: c_int,
            timeout_ms: i64,
            backend: c_int,
            device_index: c_int,
            out: *mut *mut CxfPg,
        ) -> c_int;
        pub fn cxf_pg_free(pg: *mut CxfPg);
        pub fn cxf_pg_all_reduce(pg: *mut CxfPg, tensor: *mut c_void, op: c_int, out: *mut *mut CxfWork) -> c_int;
        pub fn cxf_pg_broadcast(pg: *mut CxfPg, tensor: *mut c_void, root: c_int, out: *mut *mut CxfWork) -> c_int;
        pub fn cxf_pg_all_gather(pg: *mut CxfPg, input: *mut c_void, outputs: *mut *mut c_void, n: c_int, out: *mut *mut CxfWork) -> c_int;
        pub fn cxf_pg_barrier(pg: *mut CxfPg, out: *mut *mut CxfWork) -> c_int;
        pub fn cxf_pg_report_error(pg: *mut CxfPg, msg: *const c_char) -> c_int;
        pub fn cxf_work_wait(w: *mut CxfWork) -> c_int;
        pub fn cxf_work_free(w: *mut CxfWork);
    }

    /// `rc` of a c10d call as a Result: the shim's thread-local message becomes `Error::Dist`.
    pub fn check(rc: c_int) -> crate::error::Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(crate::error::Error::Dist(super::last_error()))
    }
}

fn last_error() -> String {
    // SAFETY: cxf_last_error returns a pointer to a thread-local NUL-terminated string owned by the shim.
    unsafe { CStr::from_ptr(cxf_last_error()) }.to_string_lossy().into_owned()
}

/// TF32 on CUDA (cuBLAS matmuls, cuDNN convolutions). Off = float32 results that match the CPU to ~1e-6.
pub fn set_tf32(matmul: bool, cudnn: bool) -> Result<()> {
    check(unsafe { cxf_set_tf32(matmul as c_int, cudnn as c_int) })
}

fn check(rc: c_int) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    Err(Error::Shim(last_error()))
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

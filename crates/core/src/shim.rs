//! Safe wrappers over csrc/shim.cc, the project's only C++ (LibTorch APIs tch does not bind).
use crate::error::{Error, Result};
use std::ffi::{CStr, c_char, c_int, c_void};
use tch::Tensor;

unsafe extern "C" {
    fn cxf_last_error() -> *const c_char;
    fn cxf_runtime_report(out: *mut *mut c_char) -> c_int;
    fn cxf_free_string(s: *mut c_char);
    fn cxf_set_autocast(device_type: c_int, enabled: c_int, dtype: c_int, prev: *mut c_int) -> c_int;
    fn cxf_autocast_increment_nesting(depth: *mut c_int) -> c_int;
    fn cxf_autocast_decrement_nesting(depth: *mut c_int) -> c_int;
    fn cxf_autocast_clear_cache() -> c_int;
    fn cxf_set_tf32(matmul: c_int, cudnn: c_int) -> c_int;
    fn cxf_fused_adamw(
        params: *mut *mut c_void,
        grads: *mut *mut c_void,
        exp_avgs: *mut *mut c_void,
        exp_avg_sqs: *mut *mut c_void,
        n: c_int,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        step: f64,
    ) -> c_int;
    fn cxf_clip_grad_norm(grads: *mut *mut c_void, n: c_int, max_norm: f64, total: *mut f64) -> c_int;
    fn cxf_clear_grads(params: *mut *mut c_void, n: c_int) -> c_int;
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

/// torch-sys pointers of `ts` (borrowed: valid while `ts` lives).
fn ptrs(ts: &[Tensor]) -> Vec<*mut c_void> {
    // The at::Tensor handles are only read; what they point to is modified in place.
    ts.iter().map(|t| t.as_ptr() as *mut c_void).collect()
}

/// One AdamW update of `params` with the same `lr` and `weight_decay`, in place (torch.optim.AdamW with
/// fused=True: `at::_fused_adamw_`, one pass over each tensor). `step` is t of the bias corrections, already
/// incremented. All four lists have the same length, device and dtype; `grads` are read only.
#[allow(clippy::too_many_arguments)]
pub fn fused_adamw(
    params: &[Tensor],
    grads: &[Tensor],
    exp_avgs: &[Tensor],
    exp_avg_sqs: &[Tensor],
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    eps: f64,
    step: i64,
) -> Result<()> {
    let n = params.len();
    if grads.len() != n || exp_avgs.len() != n || exp_avg_sqs.len() != n {
        return Err(Error::Shape(format!(
            "fused AdamW: {n} parameters but {} gradients, {} exp_avg and {} exp_avg_sq",
            grads.len(),
            exp_avgs.len(),
            exp_avg_sqs.len()
        )));
    }
    let (mut p, mut g, mut m, mut v) = (ptrs(params), ptrs(grads), ptrs(exp_avgs), ptrs(exp_avg_sqs));
    // SAFETY: every pointer is a live at::Tensor owned by the slices above for the duration of the call.
    check(unsafe {
        cxf_fused_adamw(
            p.as_mut_ptr(),
            g.as_mut_ptr(),
            m.as_mut_ptr(),
            v.as_mut_ptr(),
            n as c_int,
            lr,
            betas.0,
            betas.1,
            weight_decay,
            eps,
            step as f64,
        )
    })
}

/// torch.nn.utils.clip_grad_norm_ (foreach): the total L2 norm of `grads` (float32, per-tensor norms then the
/// norm of their stack) and, when `max_norm` > 0, every gradient scaled in place by
/// min(1, max_norm / (total + 1e-6)). Returns the norm before clipping.
pub fn clip_grad_norm(grads: &[Tensor], max_norm: f64) -> Result<f64> {
    let mut g = ptrs(grads);
    let mut total = 0.0;
    // SAFETY: the pointers are live at::Tensors owned by `grads`.
    check(unsafe { cxf_clip_grad_norm(g.as_mut_ptr(), g.len() as c_int, max_norm, &mut total) })?;
    Ok(total)
}

/// Sets the gradients of `params` to undefined (zero_grad(set_to_none=True)): the next backward writes fresh
/// gradients instead of adding to zeros.
pub fn clear_grads(params: &[Tensor]) -> Result<()> {
    let mut p = ptrs(params);
    // SAFETY: the pointers are live at::Tensors owned by `params`.
    check(unsafe { cxf_clear_grads(p.as_mut_ptr(), p.len() as c_int) })
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
    /// Whether this guard entered an autocast nesting level (enabling guards do; disabling ones do not).
    nested: bool,
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
        Ok(Self { device, prev: prev != 0, nested: true })
    }

    /// Autocast off on `device`'s family until dropped, then back to what it was (`torch.autocast(enabled=False)`):
    /// for the parts the reference computes in float32 inside a mixed-precision step (KoLeo).
    pub fn disabled(device: tch::Device) -> Result<Self> {
        let (dev, family) = if device.is_cuda() { (1, AutocastDevice::Cuda) } else { (0, AutocastDevice::Cpu) };
        let mut prev: c_int = 0;
        check(unsafe { cxf_set_autocast(dev, 0, 1, &mut prev) })?;
        Ok(Self { device: family, prev: prev != 0, nested: false })
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
            if self.nested && cxf_autocast_decrement_nesting(&mut depth) == 0 && depth == 0 {
                cxf_autocast_clear_cache();
            }
            cxf_set_autocast(dev, self.prev as c_int, 1, &mut prev);
        }
    }
}

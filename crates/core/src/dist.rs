//! Data parallelism over LibTorch's c10d (csrc/shim.cc): a [`ProcessGroup`] from a TCPStore rendezvous
//! (rank 0 hosts the store) with ProcessGroupGloo for CPU tensors or ProcessGroupNCCL for CUDA tensors. It is the
//! multi-process [`Collective`]; the DDP helpers built on that seam live in [`crate::train::collective`].
//!
//! Every failure is an [`Error::Dist`] naming the operation, the timeout and, where the peers could record it
//! in the store, the failing rank. Collectives must be issued in the same order on every rank (c10d's rule);
//! issuing is serialised per group, waiting is not.
use crate::error::{Error, Result};
use crate::shim::c10d as ffi;
use crate::train::collective::Collective;
use std::ffi::{CString, c_int, c_void};
use std::sync::Mutex;
use std::time::Duration;
use tch::{Device, Tensor};

/// Which c10d backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// NCCL when the device is CUDA and NCCL is compiled in, otherwise Gloo.
    Auto,
    Gloo,
    Nccl,
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "gloo" => Ok(BackendChoice::Gloo),
            "nccl" => Ok(BackendChoice::Nccl),
            o => Err(Error::Config(format!("backend '{o}': expected 'gloo', 'nccl' or 'auto'"))),
        }
    }
}

/// Rendezvous and backend settings of one rank.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub rank: i64,
    pub world: i64,
    /// Address of rank 0 (a loopback address binds Gloo to loopback; otherwise Gloo binds to this host's
    /// address, or to `GLOO_SOCKET_IFNAME` when set).
    pub master_addr: String,
    pub master_port: u16,
    /// Rendezvous and per-collective timeout.
    pub timeout: Duration,
    pub backend: BackendChoice,
    /// The training device: NCCL binds to it; Gloo stages CUDA tensors through host memory.
    pub device: Device,
}

/// Whether this build has each backend (Gloo needs gloo's headers at build time, NCCL the `cuda` feature).
pub fn has_gloo() -> bool {
    unsafe { ffi::cxf_dist_has_gloo() != 0 }
}
pub fn has_nccl() -> bool {
    unsafe { ffi::cxf_dist_has_nccl() != 0 }
}

struct Handle(*mut ffi::CxfPg);
// SAFETY: the c10d backend and store are thread-safe; issuing is serialised by the Mutex around the handle.
unsafe impl Send for Handle {}

/// Sum or average.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Avg,
}

/// A c10d process group. Dropping it (or [`ProcessGroup::destroy`]) frees the backend and, on rank 0, the store.
pub struct ProcessGroup {
    handle: Mutex<Option<Handle>>,
    rank: i64,
    world: i64,
    backend: &'static str,
    timeout: Duration,
    device: Device,
}

/// An issued collective; [`Work::wait`] completes it (dropping it unwaited frees it without waiting: the
/// operation still runs in the backend).
pub struct Work {
    ptr: *mut ffi::CxfWork,
    /// (staging CPU tensor, destination) pairs copied back after completion (Gloo with CUDA tensors).
    copy_back: Vec<(Tensor, Tensor)>,
    _keep: Vec<Tensor>,
}

// SAFETY: the work handle is owned; c10d's Work is waitable from any thread.
unsafe impl Send for Work {}

impl Work {
    /// Blocks until the collective finishes, fails, or exceeds the group's timeout (+2 s backstop).
    pub fn wait(mut self) -> Result<()> {
        let r = ffi::check(unsafe { ffi::cxf_work_wait(self.ptr) });
        r?;
        for (staging, mut dst) in std::mem::take(&mut self.copy_back) {
            tch::no_grad(|| dst.f_copy_(&staging))?;
        }
        Ok(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        unsafe { ffi::cxf_work_free(self.ptr) };
    }
}

impl ProcessGroup {
    /// Joins the group: rank 0 starts the TCPStore on `master_addr:master_port`, every rank checks that all
    /// `world` ranks joined with the same world size (within the timeout), then the backend connects.
    pub fn new(o: &PgOptions) -> Result<Self> {
        let backend = match o.backend {
            BackendChoice::Gloo => 0,
            BackendChoice::Nccl => 1,
            BackendChoice::Auto => {
                if o.device.is_cuda() && has_nccl() {
                    1
                } else {
                    0
                }
            }
        };
        if backend == 1 && !o.device.is_cuda() {
            return Err(Error::Dist(format!("the NCCL backend needs a CUDA device, got {:?} (use 'gloo' on CPU)", o.device)));
        }
        if backend == 1 && !has_nccl() {
            return Err(Error::Dist(
                "the NCCL backend is not compiled into this build (build with the 'cuda' feature against a CUDA LibTorch \
                 with NCCL and CUDA toolkit headers); use 'gloo'"
                    .into(),
            ));
        }
        if backend == 1 && !tch::Cuda::is_available() {
            return Err(Error::Dist("the NCCL backend needs CUDA, but no CUDA device is available".into()));
        }
        let device_index = match o.device {
            Device::Cuda(i) => i as c_int,
            _ => -1,
        };
        if o.world < 1 || o.rank < 0 || o.rank >= o.world {
            return Err(Error::Dist(format!("rank {} is outside [0, worldSize {})", o.rank, o.world)));
        }
        let host = CString::new(o.master_addr.as_str()).map_err(|_| Error::Dist("masterAddr contains a NUL byte".into()))?;
        let timeout_ms = o.timeout.as_millis().clamp(1, i64::MAX as u128) as i64;
        let mut ptr: *mut ffi::CxfPg = std::ptr::null_mut();
        ffi::check(unsafe {
            ffi::cxf_pg_create(
                host.as_ptr(),
                o.master_port as c_int,
                o.rank as c_int,
                o.world as c_int,
                timeout_ms,
                backend,
                device_index,
                &mut ptr,
            )
        })?;
        Ok(ProcessGroup {
            handle: Mutex::new(Some(Handle(ptr))),
            rank: o.rank,
            world: o.world,
            backend: if backend == 1 { "nccl" } else { "gloo" },
            timeout: o.timeout,
            device: o.device,
        })
    }

    pub fn rank(&self) -> i64 {
        self.rank
    }
    pub fn world(&self) -> i64 {
        self.world
    }
    /// "gloo" or "nccl".
    pub fn backend(&self) -> &'static str {
        self.backend
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    pub fn device(&self) -> Device {
        self.device
    }

    /// Frees the backend (and rank 0's store) now; later calls fail with "the process group was destroyed".
    /// Idempotent.
    pub fn destroy(&self) {
        let h = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = h {
            unsafe { ffi::cxf_pg_free(h.0) };
        }
    }

    /// Records a fatal error of this rank in the store so that peers' failures can name it (best effort).
    pub fn report_error(&self, msg: &str) {
        let g = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(h), Ok(c)) = (g.as_ref(), CString::new(msg.replace('\0', " "))) {
            let _ = unsafe { ffi::cxf_pg_report_error(h.0, c.as_ptr()) };
        }
    }

    /// Runs `f` with the live handle, serialising issue order.
    fn with_handle<T>(&self, what: &str, f: impl FnOnce(*mut ffi::CxfPg) -> Result<T>) -> Result<T> {
        let g = self.handle.lock().unwrap_or_else(|p| p.into_inner());
        match g.as_ref() {
            Some(h) => f(h.0),
            None => Err(Error::Dist(format!("{what}: the process group was destroyed"))),
        }
    }

    /// The tensor the backend operates on: `t` itself when it is contiguous and on the backend's device,
    /// otherwise a staging copy (returned as Some((staging, t)) to copy back).
    fn stage(&self, t: &Tensor, what: &str) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        if !t.defined() {
            return Err(Error::Dist(format!("{what}: undefined tensor")));
        }
        let want_cpu = self.backend == "gloo";
        let on_right_device = if want_cpu { t.device() == Device::Cpu } else { t.device().is_cuda() };
        if on_right_device && t.is_contiguous() {
            return Ok((t.shallow_clone(), None));
        }
        let dev = if want_cpu { Device::Cpu } else { self.device };
        let staging = tch::no_grad(|| t.f_to_device(dev).and_then(|s| s.f_contiguous()))?;
        // A fresh copy even when to_device was a no-op on a non-contiguous tensor.
        let staging = if staging.data_ptr() == t.data_ptr() { staging.copy() } else { staging };
        Ok((staging.shallow_clone(), Some((staging, t.shallow_clone()))))
    }

    fn work(&self, ptr: *mut ffi::CxfWork, copy_back: Vec<(Tensor, Tensor)>, keep: Vec<Tensor>) -> Work {
        Work { ptr, copy_back, _keep: keep }
    }

    /// Issues an in-place all-reduce of `t`; [`Work::wait`] completes it (and divides by W for `Avg`).
    pub fn all_reduce_async(&self, t: &Tensor, op: ReduceOp) -> Result<Work> {
        let (mut s, back) = self.stage(t, "all_reduce")?;
        self.with_handle("all_reduce", |pg| {
            let mut w = std::ptr::null_mut();
            let opc = if op == ReduceOp::Avg { 1 } else { 0 };
            ffi::check(unsafe { ffi::cxf_pg_all_reduce(pg, s.as_mut_ptr() as *mut c_void, opc, &mut w) })?;
            Ok(self.work(w, back.into_iter().collect(), vec![s.shallow_clone()]))
        })
    }

    /// In-place all-reduce (blocking).
    pub fn all_reduce(&self, t: &Tensor, op: ReduceOp) -> Result<()> {
        self.all_reduce_async(t, op)?.wait()
    }

    /// Issues an in-place broadcast of `root`'s `t`.
    pub fn broadcast_async(&self, t: &Tensor, root: i64) -> Result<Work> {
        if root < 0 || root >= self.world {
            return Err(Error::Dist(format!("broadcast root {root} is outside [0, worldSize {})", self.world)));
        }
        let (mut s, back) = self.stage(t, "broadcast")?;
        self.with_handle("broadcast", |pg| {
            let mut w = std::ptr::null_mut();
            ffi::check(unsafe { ffi::cxf_pg_broadcast(pg, s.as_mut_ptr() as *mut c_void, root as c_int, &mut w) })?;
            Ok(self.work(w, back.into_iter().collect(), vec![s.shallow_clone()]))
        })
    }

    /// In-place broadcast from `root` (blocking).
    pub fn broadcast(&self, t: &Tensor, root: i64) -> Result<()> {
        self.broadcast_async(t, root)?.wait()
    }

    /// Every rank's `t` in rank order (blocking). Shapes and dtypes must agree across ranks.
    pub fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        let (mut s, _) = self.stage(t, "all_gather")?;
        let mut outs: Vec<Tensor> = (0..self.world).map(|_| s.empty_like()).collect();
        let work = self.with_handle("all_gather", |pg| {
            let mut ptrs: Vec<*mut c_void> = outs.iter_mut().map(|o| o.as_mut_ptr() as *mut c_void).collect();
            let mut w = std::ptr::null_mut();
            ffi::check(unsafe {
                ffi::cxf_pg_all_gather(pg, s.as_mut_ptr() as *mut c_void, ptrs.as_mut_ptr(), ptrs.len() as c_int, &mut w)
            })?;
            Ok(self.work(w, vec![], vec![s.shallow_clone()]))
        })?;
        work.wait()?;
        let dev = t.device();
        Ok(outs.into_iter().map(|o| if o.device() == dev { o } else { o.to_device(dev) }).collect())
    }

    /// Returns once every rank has reached it (or fails after the timeout).
    pub fn barrier(&self) -> Result<()> {
        let work = self.with_handle("barrier", |pg| {
            let mut w = std::ptr::null_mut();
            ffi::check(unsafe { ffi::cxf_pg_barrier(pg, &mut w) })?;
            Ok(self.work(w, vec![], vec![]))
        })?;
        work.wait()
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl Collective for ProcessGroup {
    fn world(&self) -> i64 {
        self.world
    }
    fn rank(&self) -> i64 {
        self.rank
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()> {
        self.all_reduce(t, ReduceOp::Sum)
    }
    fn all_reduce_sum_many(&self, ts: &mut [Tensor]) -> Result<()> {
        let works = ts.iter().map(|t| self.all_reduce_async(t, ReduceOp::Sum)).collect::<Result<Vec<_>>>()?;
        works.into_iter().try_for_each(Work::wait)
    }
    fn all_reduce_mean(&self, t: &mut Tensor) -> Result<()> {
        self.all_reduce(t, ReduceOp::Avg)
    }
    fn broadcast(&self, t: &mut Tensor, root: i64) -> Result<()> {
        ProcessGroup::broadcast(self, t, root)
    }
    fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        ProcessGroup::all_gather(self, t)
    }
    fn barrier(&self) -> Result<()> {
        ProcessGroup::barrier(self)
    }
}

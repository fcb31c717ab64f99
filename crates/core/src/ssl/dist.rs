//! The seam for data parallelism: every cross-process reduction of the SSL step goes through [`Collective`].
//! On one process ([`SingleProcess`]) it is the identity; across processes [`crate::dist::ProcessGroup`]
//! implements it over LibTorch's c10d (Gloo on CPU, NCCL on CUDA).
use crate::error::Result;
use std::sync::Arc;
use tch::Tensor;

pub trait Collective: Send + Sync {
    /// Number of processes (W).
    fn world(&self) -> i64;
    /// This process's rank.
    fn rank(&self) -> i64;
    /// In-place sum over all processes.
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()>;
    /// In-place sums of several tensors; a backend may issue them together and wait for all at the end.
    fn all_reduce_sum_many(&self, ts: &mut [Tensor]) -> Result<()> {
        for t in ts.iter_mut() {
            self.all_reduce_sum(t)?;
        }
        Ok(())
    }
    /// In-place mean over all processes (sum / W).
    fn all_reduce_mean(&self, t: &mut Tensor) -> Result<()> {
        self.all_reduce_sum(t)?;
        if self.world() > 1 {
            let _ = t.f_div_scalar_(self.world() as f64)?;
        }
        Ok(())
    }
    /// In place: every process receives `root`'s values.
    fn broadcast(&self, t: &mut Tensor, root: i64) -> Result<()>;
    /// Every process's `t` (same shape and dtype everywhere), in rank order.
    fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>>;
    /// Returns once every process has reached it.
    fn barrier(&self) -> Result<()>;
}

/// A single process: world 1, rank 0, reductions are no-ops.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn world(&self) -> i64 {
        1
    }
    fn rank(&self) -> i64 {
        0
    }
    fn all_reduce_sum(&self, _t: &mut Tensor) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _t: &mut Tensor, root: i64) -> Result<()> {
        if root != 0 {
            return Err(crate::error::Error::Dist(format!("broadcast root {root} is outside [0, 1) on a single process")));
        }
        Ok(())
    }
    fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        Ok(vec![t.copy()])
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
}

/// A shared collective (the Node binding shares one process group between its JS handle and a trainer).
impl<C: Collective + ?Sized> Collective for Arc<C> {
    fn world(&self) -> i64 {
        (**self).world()
    }
    fn rank(&self) -> i64 {
        (**self).rank()
    }
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()> {
        (**self).all_reduce_sum(t)
    }
    fn all_reduce_sum_many(&self, ts: &mut [Tensor]) -> Result<()> {
        (**self).all_reduce_sum_many(ts)
    }
    fn all_reduce_mean(&self, t: &mut Tensor) -> Result<()> {
        (**self).all_reduce_mean(t)
    }
    fn broadcast(&self, t: &mut Tensor, root: i64) -> Result<()> {
        (**self).broadcast(t, root)
    }
    fn all_gather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        (**self).all_gather(t)
    }
    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }
}

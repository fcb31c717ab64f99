//! The seam for data parallelism (the distributed issue fills it with c10d): every cross-process reduction
//! of the SSL step goes through [`Collective`]. On one process it is the identity.
use crate::error::Result;
use tch::Tensor;

pub trait Collective: Send + Sync {
    /// Number of processes (W).
    fn world(&self) -> i64;
    /// This process's rank.
    fn rank(&self) -> i64;
    /// In-place sum over all processes.
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<()>;
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
}

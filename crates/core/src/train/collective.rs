//! The seam for data parallelism: every cross-process reduction of every trainer goes through [`Collective`].
//! On one process ([`SingleProcess`]) it is the identity; across processes [`crate::dist::ProcessGroup`]
//! implements it over LibTorch's c10d (Gloo on CPU, NCCL on CUDA). The DDP helpers built on it:
//! [`broadcast_tensors`] (rank 0's state to everyone) and [`all_reduce_mean_grads`] (bucketed gradient averaging).
use crate::error::{Error, Result};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

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
            return Err(Error::Dist(format!("broadcast root {root} is outside [0, 1) on a single process")));
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

/// Gradient buckets of at most this many bytes (PyTorch DDP's default bucket_cap_mb = 25).
pub const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

/// Consecutive groups of `ts` (same dtype and device) of at most `cap` bytes each (a larger tensor is a
/// bucket of its own).
fn buckets(ts: &[Tensor], cap: i64) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut bytes = 0i64;
    let mut key: Option<(Kind, Device)> = None;
    for (i, t) in ts.iter().enumerate() {
        let k = (t.kind(), t.device());
        let n = t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        if key != Some(k) || bytes + n > cap {
            out.push(Vec::new());
            bytes = 0;
            key = Some(k);
        }
        if let Some(bucket) = out.last_mut() {
            bucket.push(i);
        }
        bytes += n;
    }
    out
}

fn flatten(ts: &[Tensor], idx: &[usize]) -> Tensor {
    let parts: Vec<Tensor> = idx.iter().map(|&i| ts[i].detach().reshape([-1])).collect();
    Tensor::cat(&parts, 0)
}

fn unflatten_into(flat: &Tensor, ts: &[Tensor], idx: &[usize]) -> Result<()> {
    let mut off = 0i64;
    tch::no_grad(|| -> Result<()> {
        for &i in idx {
            let n = ts[i].numel() as i64;
            let mut dst = ts[i].shallow_clone();
            dst.f_copy_(&flat.narrow(0, off, n).view_as(&ts[i]))?;
            off += n;
        }
        Ok(())
    })
}

/// Averages the gradients of `params` over all ranks (DDP): gradients are flattened into buckets of
/// [`BUCKET_BYTES`], all buckets are all-reduced together (issued asynchronously, then waited), divided by W
/// and written back. The ranks first agree on which parameters have a gradient (one small all-reduce): one that
/// has it on some ranks only (e.g. the iBOT head on a rank without masked patches) gets a zero gradient where it
/// is missing, so every rank reduces the same buckets; one without a gradient anywhere is left without. No-op on
/// one process.
pub fn all_reduce_mean_grads(dist: &dyn Collective, params: &[Tensor]) -> Result<()> {
    if dist.world() <= 1 {
        return Ok(());
    }
    let mut has = Tensor::from_slice(&params.iter().map(|p| p.grad().defined() as i64).collect::<Vec<_>>());
    dist.all_reduce_sum(&mut has)?;
    let has: Vec<i64> = Vec::<i64>::try_from(&has)?;
    let missing: Vec<&Tensor> = params.iter().zip(&has).filter(|(p, n)| **n > 0 && !p.grad().defined()).map(|(p, _)| p).collect();
    if !missing.is_empty() {
        // A zero-valued backward through each missing parameter materialises a zero gradient.
        tch::with_grad(|| -> Result<()> {
            let mut zero = Tensor::zeros([], (Kind::Float, missing[0].device()));
            for p in &missing {
                zero = zero + (*p * 0.0).sum(Kind::Float).to_device(missing[0].device());
            }
            Ok(zero.f_backward()?)
        })?;
    }
    let grads: Vec<Tensor> = params.iter().zip(&has).filter(|(_, n)| **n > 0).map(|(p, _)| p.grad()).collect();
    if let Some(g) = grads.iter().find(|g| !g.defined()) {
        return Err(Error::Dist(format!("a parameter of shape {:?} has no gradient after materialising zeros", g.size())));
    }
    let groups = buckets(&grads, BUCKET_BYTES);
    let mut flats: Vec<Tensor> = groups.iter().map(|g| flatten(&grads, g)).collect();
    dist.all_reduce_sum_many(&mut flats)?;
    let w = dist.world() as f64;
    for (flat, g) in flats.iter_mut().zip(&groups) {
        let _ = flat.f_div_scalar_(w)?;
        unflatten_into(flat, &grads, g)?;
    }
    Ok(())
}

/// Copies `root`'s values of `ts` (parameters, buffers, optimizer state) to every rank, in buckets.
pub fn broadcast_tensors(dist: &dyn Collective, ts: &[Tensor], root: i64) -> Result<()> {
    if dist.world() <= 1 {
        return Ok(());
    }
    for g in buckets(ts, BUCKET_BYTES) {
        let mut flat = flatten(ts, &g);
        dist.broadcast(&mut flat, root)?;
        unflatten_into(&flat, ts, &g)?;
    }
    Ok(())
}

/// `broadcast_tensors(params, 0)`: rank 0's parameters everywhere (DDP's start-up synchronisation).
pub fn broadcast_parameters(dist: &dyn Collective, params: &[Tensor]) -> Result<()> {
    broadcast_tensors(dist, params, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_cap_dtype_and_order() {
        let ts = vec![
            Tensor::zeros([10], (Kind::Float, Device::Cpu)),
            Tensor::zeros([10], (Kind::Float, Device::Cpu)),
            Tensor::zeros([30], (Kind::Float, Device::Cpu)),
            Tensor::zeros([4], (Kind::Double, Device::Cpu)),
            Tensor::zeros([1], (Kind::Double, Device::Cpu)),
        ];
        // cap 80 bytes = 20 floats: [0, 1] | [2] (alone, over the cap) | [3, 4] (doubles: 40 bytes)
        assert_eq!(buckets(&ts, 80), vec![vec![0, 1], vec![2], vec![3, 4]]);
        let flat = flatten(&ts, &[0, 1]);
        assert_eq!(flat.size(), vec![20]);
    }

    #[test]
    fn flatten_round_trips() {
        let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
        let b = Tensor::arange(4, (Kind::Float, Device::Cpu)) + 10.0;
        let ts = vec![a.zeros_like(), b.zeros_like()];
        let flat = Tensor::cat(&[a.reshape([-1]), b.shallow_clone()], 0);
        unflatten_into(&flat, &ts, &[0, 1]).unwrap();
        assert_eq!(ts[0].reshape([-1]).iter::<f64>().unwrap().collect::<Vec<_>>(), vec![0., 1., 2., 3., 4., 5.]);
        assert_eq!(ts[1].iter::<f64>().unwrap().collect::<Vec<_>>(), vec![10., 11., 12., 13.]);
    }
}

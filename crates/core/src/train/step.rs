//! The global-batch step protocol that every trainer follows (docs/recipe.md §3.8, §3.10): seed stochastic depth
//! from (seed, step, rank), reduce the loss terms over the ranks and check them, then backward → gradient
//! all-reduce → clip → AdamW.
//!
//! Data parallelism: rank r holds a share of weight kᵣ (its supervised entries, its images, or 1 when each rank's
//! loss is already a mean) of a global batch of weight K = Σᵣ kᵣ, whose loss is Σᵣ kᵣ·lossᵣ / K. Each rank
//! back-propagates lossᵣ·kᵣ·W/K and the gradients are averaged: Σᵣ (kᵣ·W/K)·∇lossᵣ / W = ∇(Σᵣ kᵣ·lossᵣ / K),
//! exactly the single-process gradient of the concatenated batch, also for unequal shares (an empty share
//! contributes zero).
use crate::error::{Error, Result};
use crate::train::collective::{Collective, all_reduce_mean_grads};
use crate::train::optim::{AdamW, clip_grad_norm};
use tch::{Device, Tensor};

/// Seeds LibTorch's generator for the stochastic depth of one step with seed·1000003 + step + rank·2⁴⁰
/// (wrapping), so that a resumed run draws what the uninterrupted run drew and rank 0 draws the single-process
/// stream.
pub fn seed_drop_path(seed: i64, step: i64, rank: i64) {
    tch::manual_seed(seed.wrapping_mul(1_000_003).wrapping_add(step).wrapping_add(rank << 40));
}

/// Named loss terms of a batch with its weight: one rank's share before [`LossTerms::over_ranks`], the global
/// batch after it.
#[derive(Clone, Debug)]
pub struct LossTerms<const N: usize> {
    /// kᵣ of the share; K = Σᵣ kᵣ of the global batch.
    pub weight: f64,
    /// Components before their sum, so that the finiteness check names the first term that went bad.
    pub names: [&'static str; N],
    pub values: [f64; N],
    /// Counters summed over the ranks, unweighted (the SSL step's masked patches).
    pub counts: Vec<f64>,
}

impl<const N: usize> LossTerms<N> {
    pub fn new(weight: f64, names: [&'static str; N], values: [f64; N]) -> Self {
        LossTerms { weight, names, values, counts: Vec::new() }
    }

    pub fn with_counts(self, counts: Vec<f64>) -> Self {
        LossTerms { counts, ..self }
    }

    /// The global batch's terms, then the finiteness check. K = Σᵣ kᵣ, each term Σᵣ termᵣ·kᵣ / K (0 when
    /// K = 0) and each counter Σᵣ, from one all-reduce of [kᵣ, term·kᵣ…, counts…] on `device`; on one process
    /// the terms as they are. The check comes after the reduction so that a NaN on any rank stops every rank at
    /// the same step, before anything is modified. `iteration` names the step in the error.
    pub fn over_ranks(self, dist: &dyn Collective, device: Device, iteration: i64) -> Result<Self> {
        let global = if dist.world() > 1 { self.all_reduce(dist, device)? } else { self };
        global.check_finite(iteration)?;
        Ok(global)
    }

    fn all_reduce(self, dist: &dyn Collective, device: Device) -> Result<Self> {
        let k = self.weight;
        let mut sums = vec![k];
        // An empty share's terms (0/0 on some losses) must not poison the sum.
        sums.extend(self.values.iter().map(|v| if k > 0.0 { v * k } else { 0.0 }));
        sums.extend(&self.counts);
        let mut t = Tensor::f_from_slice(&sums)?.f_to_device(device)?;
        dist.all_reduce_sum(&mut t)?;
        let sums = Vec::<f64>::try_from(&t.f_to_device(Device::Cpu)?)?;
        let total = sums[0].round();
        let mut values = [0.0; N];
        for (v, s) in values.iter_mut().zip(&sums[1..]) {
            *v = if total > 0.0 { s / total } else { 0.0 };
        }
        Ok(LossTerms { weight: total, names: self.names, values, counts: sums[1 + N..].to_vec() })
    }

    fn check_finite(&self, iteration: i64) -> Result<()> {
        match self.names.iter().zip(self.values).find(|(_, v)| !v.is_finite()) {
            Some((term, value)) => Err(Error::NonFinite { iteration, term: term.to_string(), value }),
            None => Ok(()),
        }
    }
}

/// The AdamW values and the clipping threshold of one update.
#[derive(Clone, Copy, Debug)]
pub struct UpdateValues {
    pub lr: f64,
    pub last_layer_lr: f64,
    pub wd: f64,
    /// Max total gradient norm of each clip set, 0 = off.
    pub max_norm: f64,
}

/// Backpropagates this rank's loss as its part of the global batch's: × kᵣ·W/K on W > 1 (`weight` kᵣ, `total`
/// K; see the module docs), unscaled on one process. `None` (an empty share) backpropagates nothing.
pub fn backward_share(dist: &dyn Collective, loss: Option<&Tensor>, weight: f64, total: f64) -> Result<()> {
    let Some(loss) = loss else { return Ok(()) };
    let world = dist.world();
    if world > 1 {
        loss.f_mul_scalar(weight * world as f64 / total)?.f_backward()?;
    } else {
        loss.f_backward()?;
    }
    Ok(())
}

/// After the step's backward passes: gradients averaged over the ranks ([`all_reduce_mean_grads`], nothing on
/// one process) → each of `clip_sets` clipped to `max_norm` ([`clip_grad_norm`]) → AdamW. Returns each set's
/// gradient norm before clipping.
pub fn apply_update(dist: &dyn Collective, opt: &mut AdamW, clip_sets: &[Vec<Tensor>], v: UpdateValues) -> Result<Vec<f64>> {
    all_reduce_mean_grads(dist, &opt.params())?;
    let norms = clip_sets
        .iter()
        .map(|set| clip_grad_norm(&set.iter().collect::<Vec<_>>(), v.max_norm))
        .collect::<Result<Vec<f64>>>()?;
    opt.update(v.lr, v.last_layer_lr, v.wd)?;
    Ok(norms)
}

/// The whole update of a trainer that clips all its parameters together: [`backward_share`] then
/// [`apply_update`]. Returns the total gradient norm before clipping.
pub fn backward_and_update(
    dist: &dyn Collective,
    opt: &mut AdamW,
    loss: Option<&Tensor>,
    weight: f64,
    total: f64,
    v: UpdateValues,
) -> Result<f64> {
    backward_share(dist, loss, weight, total)?;
    let all = [opt.params()];
    let norms = apply_update(dist, opt, &all, v)?;
    Ok(norms[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::collective::SingleProcess;

    #[test]
    fn one_process_keeps_the_terms_and_names_the_first_bad_one() {
        let t = LossTerms::new(3.0, ["ce", "dice", "loss"], [0.5, 0.25, 0.375]).over_ranks(&SingleProcess, Device::Cpu, 4).unwrap();
        assert_eq!((t.weight, t.values), (3.0, [0.5, 0.25, 0.375]));
        let e = LossTerms::new(3.0, ["ce", "dice", "loss"], [0.5, f64::NAN, f64::NAN]).over_ranks(&SingleProcess, Device::Cpu, 4);
        match e {
            Err(Error::NonFinite { iteration: 4, term, value }) => assert!(term == "dice" && value.is_nan()),
            other => panic!("expected NonFinite naming dice, got {other:?}"),
        }
    }
}

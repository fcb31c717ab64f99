//! Teacher targets (docs/recipe.md §3.4): softmax centering with a lagged EMA centre, or Sinkhorn-Knopp.
use crate::train::collective::Collective;
use crate::error::Result;
use tch::{Kind, Tensor};

/// EMA centre of teacher logits with the reference's one-step lag: [`Centering::targets`] first applies the
/// statistic stored by the previous step, then centres; [`Centering::record`] stores this step's statistic
/// (all-reduced: the async reduction point of DINOv2's `reduce_center_update`).
#[derive(Debug)]
pub struct Centering {
    /// (1, K) for DINO, (1, 1, K) for iBOT; float32.
    pub center: Tensor,
    pending: Option<Tensor>,
    pub momentum: f64,
}

impl Centering {
    pub fn new(center: Tensor, momentum: f64) -> Self {
        Centering { center, pending: None, momentum }
    }

    /// The statistic recorded by the last step, not yet applied.
    pub fn pending(&self) -> Option<&Tensor> {
        self.pending.as_ref()
    }

    /// Restores a checkpointed centre and pending statistic.
    pub fn restore(&mut self, center: Tensor, pending: Option<Tensor>) {
        self.center = center;
        self.pending = pending;
    }

    /// Applies the pending update: c ← m·c + (1 − m)·stat.
    pub fn apply_pending(&mut self) {
        if let Some(stat) = self.pending.take() {
            self.center = &self.center * self.momentum + stat * (1.0 - self.momentum);
        }
    }

    /// softmax((z − c)/τ) over the last dim, after applying the pending update. z: (n, K).
    pub fn targets(&mut self, logits: &Tensor, temp: f64) -> Tensor {
        self.apply_pending();
        let c = self.center.view([1, -1]);
        ((logits.to_kind(Kind::Float) - c) / temp).softmax(-1, Kind::Float)
    }

    /// Stores a statistic computed by [`Centering::stat_mean_rows`] / [`Centering::stat_mean_of_means`]
    /// (the trainer stores it only once the step's losses are known to be finite).
    pub fn set_pending(&mut self, stat: Tensor) {
        self.pending = Some(stat);
    }

    /// Stores the DINO statistic: Σ_ranks Σ_rows z / (n·W).
    pub fn record_mean_rows(&mut self, logits: &Tensor, dist: &dyn Collective) -> Result<()> {
        let s = self.stat_mean_rows(logits, dist)?;
        self.pending = Some(s);
        Ok(())
    }

    /// The DINO statistic of this batch, all-reduced: Σ_ranks Σ_rows z / (n·W).
    pub fn stat_mean_rows(&self, logits: &Tensor, dist: &dyn Collective) -> Result<Tensor> {
        let n = logits.size()[0];
        let mut s = logits.detach().to_kind(Kind::Float).sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        dist.all_reduce_sum(&mut s)?;
        Ok((s / (n * dist.world()) as f64).reshape(self.center.size()))
    }

    /// Stores the iBOT statistic: the mean over ranks of each rank's mean over masked rows
    /// (not weighted by counts, as the reference). No masked rows on this rank contributes zeros.
    pub fn record_mean_of_means(&mut self, logits: &Tensor, dist: &dyn Collective) -> Result<()> {
        let s = self.stat_mean_of_means(logits, dist)?;
        self.pending = Some(s);
        Ok(())
    }

    /// The iBOT statistic of this batch (mean over ranks of per-rank means over masked rows).
    pub fn stat_mean_of_means(&self, logits: &Tensor, dist: &dyn Collective) -> Result<Tensor> {
        let n = logits.size()[0];
        let mut m = if n > 0 {
            logits.detach().to_kind(Kind::Float).mean_dim([0i64].as_slice(), true, Kind::Float)
        } else {
            Tensor::zeros([1, logits.size()[1]], (Kind::Float, logits.device()))
        };
        dist.all_reduce_sum(&mut m)?;
        Ok((m / dist.world() as f64).reshape(self.center.size()))
    }
}

/// Sinkhorn-Knopp teacher targets (3 iterations in DINOv2): Q = exp(z/τ)ᵀ (K × n, float32, no max
/// subtraction), normalised to total mass 1, then alternately rows to 1/K and columns to 1/n_total;
/// returns Qᵀ·n_total (each row sums to 1). `n_total` is n·W for DINO and the all-reduced masked count for iBOT.
pub fn sinkhorn_knopp(logits: &Tensor, temp: f64, iterations: usize, n_total: i64, dist: &dyn Collective) -> Result<Tensor> {
    // Q is K-by-n for consistency with the notation of the DINOv2 paper.
    let mut q = (logits.detach().to_kind(Kind::Float) / temp).exp().transpose(0, 1);
    let k = q.size()[0];
    let mut total = q.sum(Kind::Float);
    dist.all_reduce_sum(&mut total)?;
    q = q / total;
    for _ in 0..iterations {
        // rows: total weight per prototype must be 1/K
        let mut rows = q.sum_dim_intlist([1i64].as_slice(), true, Kind::Float);
        dist.all_reduce_sum(&mut rows)?;
        q = q / rows / k as f64;
        // columns: total weight per sample must be 1/n_total
        let cols = q.sum_dim_intlist([0i64].as_slice(), true, Kind::Float);
        q = q / cols / n_total as f64;
    }
    Ok((q * n_total as f64).transpose(0, 1))
}

//! The classification loss (docs/recipe.md §5.1) of the probe and of fine-tuning, and the check of multiclass
//! targets. `multilabel` / `binary` (binary = multilabel with C = 1): BCE-with-logits (optional per-class
//! `posWeight`), averaged over the unmasked entries of the batch only. `multiclass`: softmax cross-entropy over C
//! logits, the class index (an integer in 0..C) is stored in **column 0** of `targets` and the row is supervised when
//! `mask[:, 0]` is nonzero. Mask convention of src/datasets/policy.ts: **nonzero = the entry is supervised, 0 = masked
//! out** (its target may be anything, even NaN; it never reaches the loss nor its gradient).
use super::config::ProbeTask;
use crate::bail_shape;
use crate::error::Result;
use tch::{Device, Kind, Reduction, Tensor};

/// The masked loss of a batch: mean over the supervised entries (multilabel/binary) or rows (multiclass), and
/// their count. `mask` is boolean (true = supervised). With no supervised entry the loss is exactly 0, its
/// gradient is 0 everywhere, and masked targets (even NaN) never reach either.
pub fn masked_loss(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    task: ProbeTask,
    pos_weight: Option<&Tensor>,
) -> Result<(Tensor, i64)> {
    let zero = Tensor::zeros([], (Kind::Float, logits.device()));
    let (per, m) = match task {
        ProbeTask::Multilabel | ProbeTask::Binary => {
            let y = targets.f_where_self(mask, &zero)?;
            let l = logits.f_binary_cross_entropy_with_logits::<&Tensor>(&y, None, pos_weight, Reduction::None)?;
            (l, mask.shallow_clone())
        }
        ProbeTask::Multiclass => {
            let m = mask.f_select(1, 0)?;
            let y = targets.f_select(1, 0)?.f_where_self(&m, &zero)?.f_to_kind(Kind::Int64)?;
            let lsm = logits.f_log_softmax(1, Kind::Float)?;
            let l = lsm.f_gather(1, &y.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?.f_neg()?;
            (l, m)
        }
    };
    let count = m.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let total = per.f_where_self(&m, &zero)?.f_sum(Kind::Float)?;
    Ok((total.f_div_scalar(count.max(1) as f64)?, count))
}

/// Multiclass: every supervised row's column 0 must be an integer class index in 0..C.
pub(crate) fn check_classes(what: &str, y: &Tensor, m: &Tensor, c: i64) -> Result<()> {
    let y0 = y.f_select(1, 0)?.f_to_device(Device::Cpu)?;
    let m0 = m.f_select(1, 0)?.f_to_device(Device::Cpu)?;
    let ys = Vec::<f32>::try_from(&y0)?;
    let ms = Vec::<bool>::try_from(&m0)?;
    for (row, (v, keep)) in ys.iter().zip(ms).enumerate() {
        if keep && !(v.fract() == 0.0 && *v >= 0.0 && (*v as i64) < c) {
            bail_shape!("{what} targets: multiclass row {row} has class {v} in column 0, expected an integer in 0..{c}");
        }
    }
    Ok(())
}

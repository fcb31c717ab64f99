//! The segmentation loss of docs/recipe.md §5.2: 0.5·CE + 0.5·(1 − soft Dice).
use crate::error::Result;
use tch::{Kind, Reduction, Tensor};

/// The reference loss (see the module docs). `logits` (B, C, H, W) any float kind (computed in f32), `target`
/// (B, H, W) int64 in 0..C. Returns (loss, CE, mean soft Dice).
pub fn ce_dice_loss(logits: &Tensor, target: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let logits = logits.f_to_kind(Kind::Float)?;
    let c = logits.size()[1];
    let ce = logits.f_cross_entropy_loss::<Tensor>(target, None, Reduction::Mean, -100, 0.0)?;
    let p = logits.f_softmax(1, Kind::Float)?;
    let y = target.f_one_hot(c)?.f_permute([0, 3, 1, 2])?.f_to_kind(Kind::Float)?;
    let dims: &[i64] = &[2, 3];
    let inter = (&p * &y).f_sum_dim_intlist(dims, false, Kind::Float)?;
    let sp = p.f_sum_dim_intlist(dims, false, Kind::Float)?;
    let sy = y.f_sum_dim_intlist(dims, false, Kind::Float)?;
    let dice = ((inter * 2.0 + eps) / (sp + sy + eps)).f_mean(Kind::Float)?;
    let loss = &ce * 0.5 + (1.0 - &dice) * 0.5;
    Ok((loss, ce, dice))
}

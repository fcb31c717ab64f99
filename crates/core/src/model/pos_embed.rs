//! Position-embedding interpolation (docs/recipe.md §2.3, `interpolate_pos_encoding`).
use crate::config::PosInterp;
use crate::error::Result;
use crate::bail_shape;
use tch::{Kind, Tensor};

/// Resizes the learned position embedding to a grid of `h0 × w0` patches.
///
/// # Shapes
/// * `pos_embed`: (1, 1 + M², D), CLS slot first.
/// * returns (1, 1 + h0·w0, D) in the dtype of `pos_embed`.
///
/// Unchanged when h0·w0 == M² and h0 == w0 (as both the DINOv2 and HF code do). Otherwise the patch part is
/// resized in float32 with bicubic (A = −0.75), or PyTorch's antialiased bicubic, following `interp`.
pub fn interpolate_pos_encoding(pos_embed: &Tensor, h0: i64, w0: i64, interp: PosInterp) -> Result<Tensor> {
    let (one, n_pos, d) = pos_embed.size3()?;
    if one != 1 || n_pos < 2 {
        bail_shape!("pos_embed must have shape (1, 1 + M*M, D), got {:?}", pos_embed.size());
    }
    let n = n_pos - 1;
    let m = (n as f64).sqrt().round() as i64;
    if m * m != n {
        bail_shape!("pos_embed has {n} patch positions, which is not a square grid");
    }
    if h0 * w0 == n && h0 == w0 {
        return Ok(pos_embed.shallow_clone());
    }
    if h0 <= 0 || w0 <= 0 {
        bail_shape!("cannot interpolate position embeddings to a {h0}x{w0} patch grid");
    }
    let kind = pos_embed.kind();
    let class_pos = pos_embed.narrow(1, 0, 1);
    // (1, M², D) -> (1, M, M, D) -> (1, D, M, M)
    let grid = pos_embed.narrow(1, 1, n).to_kind(Kind::Float).reshape([1, m, m, d]).permute([0, 3, 1, 2]);
    let (sh, sw) = if interp.offset > 0.0 {
        // Original DINOv2: scale factors, which PyTorch also passes on to the coordinate mapping.
        (Some((h0 as f64 + interp.offset) / m as f64), Some((w0 as f64 + interp.offset) / m as f64))
    } else {
        (None, None)
    };
    let resized = if interp.antialias {
        grid.f_internal_upsample_bicubic2d_aa([h0, w0], false, sh, sw)?
    } else {
        grid.f_upsample_bicubic2d([h0, w0], false, sh, sw)?
    };
    // (1, D, h0, w0) -> (1, h0, w0, D) -> (1, h0·w0, D)
    let patch_pos = resized.permute([0, 2, 3, 1]).reshape([1, h0 * w0, d]).to_kind(kind);
    Ok(Tensor::cat(&[class_pos, patch_pos], 1))
}

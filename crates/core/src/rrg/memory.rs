//! The visual memory of the captioner: CXformer tokens of one ViT block, optionally with the patch grid
//! average-pooled 2×2, then LayerNorm + Linear(D_vit → d) (the "visual extractor → projection" of R2Gen,
//! github.com/zhjohnchan/R2Gen `modules/visual_extractor.py`, with CXformer tokens instead of ResNet features).
//!
//! Variable names (under the model root): `memory.norm.weight|bias` (D_vit), `memory.proj.weight` (d, D_vit),
//! `memory.proj.bias` (d).
use crate::bail_shape;
use crate::error::Result;
use crate::model::{ForwardOptions, Vit};
use tch::{Kind, Tensor, nn};

/// LayerNorm + Linear(D_vit → d) over the encoder tokens.
#[derive(Debug)]
pub struct MemoryProjector {
    norm: nn::LayerNorm,
    proj: nn::Linear,
    d_vit: i64,
}

impl MemoryProjector {
    /// Builds `norm` and `proj` under `p` (the model root's `memory`).
    pub fn new(p: nn::Path, d_vit: i64, d_model: i64, eps: f64) -> Self {
        let norm = nn::layer_norm(&p / "norm", vec![d_vit], nn::LayerNormConfig { eps, ..Default::default() });
        let proj = nn::linear(&p / "proj", d_vit, d_model, Default::default());
        MemoryProjector { norm, proj, d_vit }
    }

    /// # Shapes
    /// features: (B, M, D_vit) → (B, M, d)
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        if features.dim() != 3 || features.size()[2] != self.d_vit {
            bail_shape!("memory features: expected (B, M, {}) (D_vit = dVit), got {:?}", self.d_vit, features.size());
        }
        Ok(features.apply(&self.norm).apply(&self.proj))
    }
}

/// The memory tokens of `pixels` from ViT block `block` (0-based; negative from the end, −1 = the last block),
/// after the ViT's final LayerNorm (DINOv2 `get_intermediate_layers(norm=True)`): [CLS, registers, patches] in
/// the ViT's order, float32. With `pool` k > 1 the patch grid (h, w) is average-pooled in k×k windows with stride
/// k, CLS and registers kept as they are; a last row or column of windows that passes the grid's edge is averaged
/// over the tokens it holds (torch `avg_pool2d(k, k, ceil_mode=True)`, 37×37 → 19×19 for k = 2), the convention
/// of the TypeScript memory extractor (src/rrg/memory.ts `poolSequence`), so that cached and native memories agree.
/// `train` runs the ViT in training mode (stochastic depth, when configured). Gradients flow into the ViT unless
/// the caller runs it under `tch::no_grad` (the frozen encoder of the default recipe).
///
/// # Shapes
/// pixels: (B, 3, H, W) normalised → (B, 1 + R + N', D_vit), N' = h·w, or ⌈h/k⌉·⌈w/k⌉ pooled
pub fn memory_tokens(vit: &Vit, pixels: &Tensor, block: i64, pool: i64, train: bool) -> Result<Tensor> {
    if pool < 1 {
        bail_shape!("memory pool must be ≥ 1, got {pool}");
    }
    let out = vit.forward(pixels, &ForwardOptions { masks: None, intermediate_layers: vec![block], norm_intermediates: true, train })?;
    let tokens = out.intermediates.into_iter().next().expect("one block requested").to_kind(Kind::Float);
    pool_patch_grid(&tokens, out.grid, pool)
}

/// The patch grid (the last h·w tokens) average-pooled k×k with stride k, partial edge windows averaged over the
/// tokens they hold (torch `avg_pool2d(k, k, ceil_mode=True)`); the tokens before the grid (CLS, registers) kept.
///
/// # Shapes
/// x: (N, lead + h·w, D) → (N, lead + ⌈h/k⌉·⌈w/k⌉, D)
pub(crate) fn pool_patch_grid(x: &Tensor, (h, w): (i64, i64), k: i64) -> Result<Tensor> {
    if k == 1 {
        return Ok(x.shallow_clone());
    }
    if h < k || w < k {
        bail_shape!("patch pooling {k}×{k} needs a patch grid of at least {k}×{k}, got {h}×{w}");
    }
    let (n, t, d) = x.size3()?;
    let lead = t - h * w; // CLS + registers
    // (N, h·w, D) → (N, h, w, D) → (N, D, h, w) → pool → (N, D, h', w') → (N, h'·w', D); no padding: a window past
    // the edge is averaged over its in-bounds tokens.
    let grid = x.f_narrow(1, lead, h * w)?.f_reshape([n, h, w, d])?.f_permute([0, 3, 1, 2])?;
    let pooled = grid.f_avg_pool2d([k, k], [k, k], [0, 0], true, false, None::<i64>)?.f_flatten(2, 3)?.f_transpose(1, 2)?;
    Ok(Tensor::f_cat(&[x.f_narrow(1, 0, lead)?, pooled], 1)?)
}

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
/// the ViT's order, float32. With `pool2x2` the patch grid (h, w) is average-pooled with a 2×2 window and stride
/// 2, CLS and registers kept as they are; an odd last row or column keeps its partial windows, averaged over the
/// tokens they hold (torch `avg_pool2d(2, 2, ceil_mode=True)`, 37×37 → 19×19), the convention of the TypeScript
/// memory extractor (src/rrg/memory.ts), so that cached and native memories agree. Runs the
/// ViT in eval mode; gradients flow into the ViT unless the caller runs it under `tch::no_grad` (the frozen
/// encoder of the default recipe).
///
/// # Shapes
/// pixels: (B, 3, H, W) normalised → (B, 1 + R + N', D_vit), N' = h·w, or ⌈h/2⌉·⌈w/2⌉ with `pool2x2`
pub fn memory_tokens(vit: &Vit, pixels: &Tensor, block: i64, pool2x2: bool) -> Result<Tensor> {
    let out = vit.forward(pixels, &ForwardOptions { masks: None, intermediate_layers: vec![block], norm_intermediates: true, train: false })?;
    let tokens = out.intermediates.into_iter().next().expect("one block requested").to_kind(Kind::Float);
    if !pool2x2 {
        return Ok(tokens);
    }
    let (h, w) = out.grid;
    if h < 2 || w < 2 {
        bail_shape!("pool2x2 needs a patch grid of at least 2×2, got {h}×{w}");
    }
    let (b, t, d) = tokens.size3()?;
    let lead = t - h * w; // CLS + registers
    let patches = tokens.narrow(1, lead, h * w);
    // (B, N, D) -> (B, h, w, D) -> (B, D, h, w) -> pool -> (B, D, h/2, w/2) -> (B, N', D)
    let grid = patches.reshape([b, h, w, d]).permute([0, 3, 1, 2]);
    // No padding: a window past the edge is averaged over its in-bounds tokens.
    let pooled = grid.f_avg_pool2d([2, 2], [2, 2], [0, 0], true, false, None::<i64>)?;
    let pooled = pooled.flatten(2, 3).transpose(1, 2);
    Ok(Tensor::cat(&[tokens.narrow(1, 0, lead), pooled], 1))
}

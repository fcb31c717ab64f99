//! GPT-2 (transformers `models/gpt2/modeling_gpt2.py`): token + learned position embeddings, N pre-LN
//! blocks, a final LayerNorm `ln_f`, the LM head tied to `wte` by default.
//!
//! Each block: x ← x + c_proj(Attn(split(c_attn(LN₁(x))))); x ← x + mlp.c_proj(act(mlp.c_fc(LN₂(x)))), act =
//! `activation_function` (`gelu_new`, the tanh approximation, by default). Attention scores are scaled by
//! Dh^−½ when `scale_attn_weights` and by 1/(i + 1) in block i when `scale_attn_by_inverse_layer_idx`.
//!
//! Conv1D layers store their weight as (in, out) (y = x W + b), not Linear's (out, in); `c_attn` fuses q, k
//! and v along its output columns [0:d], [d:2d], [2d:3d].
//!
//! Variable names (the checkpoint keys): `transformer.wte.weight` (V, d), `transformer.wpe.weight` (P, d),
//! `transformer.h.{i}.ln_1.weight|bias`, `transformer.h.{i}.attn.c_attn.weight` (d, 3d) `|bias` (3d),
//! `transformer.h.{i}.attn.c_proj.weight` (d, d) `|bias`, `transformer.h.{i}.ln_2.weight|bias`,
//! `transformer.h.{i}.mlp.c_fc.weight` (d, F) `|bias`, `transformer.h.{i}.mlp.c_proj.weight` (F, d) `|bias`,
//! `transformer.ln_f.weight|bias`; `lm_head.weight` (V, d) only when untied.
use super::adapter::{LinearDelta, LinearLayer};
use super::cache::{AttnMask, KvCache, attend};
use super::config::{Activation, LmConfig};
use crate::bail_shape;
use crate::error::Result;
use tch::{Tensor, nn};

/// Conv1D: y = x W + b with W stored (in, out) (+ Δ(x) when an adapter is set, [`super::adapter`]).
#[derive(Debug)]
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
    delta: Option<Box<dyn LinearDelta>>,
}

impl Conv1D {
    fn new(p: nn::Path, i: i64, o: i64) -> Self {
        Conv1D { weight: p.var("weight", &[i, o], nn::Init::Const(0.0)), bias: p.var("bias", &[o], nn::Init::Const(0.0)), delta: None }
    }

    /// # Shapes
    /// x: (..., in) → (..., out)
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.f_matmul(&self.weight)?.f_add(&self.bias)?;
        match &self.delta {
            Some(d) => Ok(y.f_add(&d.forward(x)?)?),
            None => Ok(y),
        }
    }

    fn info(&self, path: String) -> LinearLayer {
        let (i, o) = (self.weight.size()[0], self.weight.size()[1]);
        LinearLayer { path, in_features: i, out_features: o, fan_in_fan_out: true, weight: self.weight.shallow_clone(), adapted: self.delta.is_some() }
    }
}

#[derive(Debug)]
struct Block {
    ln_1: nn::LayerNorm,
    c_attn: Conv1D,
    attn_c_proj: Conv1D,
    ln_2: nn::LayerNorm,
    c_fc: Conv1D,
    mlp_c_proj: Conv1D,
    /// Score scale: Dh^−½ (if scale_attn_weights) / (i + 1) (if scale_attn_by_inverse_layer_idx).
    scale: f64,
}

/// The transformer under `transformer.` (see the module docs).
#[derive(Debug)]
pub struct Gpt2Model {
    pub(crate) wte: Tensor,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: nn::LayerNorm,
    heads: i64,
    act: Activation,
}

impl Gpt2Model {
    /// Builds the variables under `p` (the checkpoint's `transformer`).
    pub fn new(p: nn::Path, c: &LmConfig) -> Self {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        let ln = |q: nn::Path| {
            nn::layer_norm(q, vec![d], nn::LayerNormConfig { eps: c.norm_eps, ws_init: nn::Init::Const(1.0), bs_init: nn::Init::Const(0.0), ..Default::default() })
        };
        let h = (0..c.num_layers)
            .map(|i| {
                let b = &p / "h" / i;
                let mut scale = if c.scale_attn_weights { (c.head_dim as f64).powf(-0.5) } else { 1.0 };
                if c.scale_attn_by_inverse_layer_idx {
                    scale /= (i + 1) as f64;
                }
                Block {
                    ln_1: ln(&b / "ln_1"),
                    c_attn: Conv1D::new(&b / "attn" / "c_attn", d, 3 * d),
                    attn_c_proj: Conv1D::new(&b / "attn" / "c_proj", d, d),
                    ln_2: ln(&b / "ln_2"),
                    c_fc: Conv1D::new(&b / "mlp" / "c_fc", d, f),
                    mlp_c_proj: Conv1D::new(&b / "mlp" / "c_proj", f, d),
                    scale,
                }
            })
            .collect();
        Gpt2Model {
            wte: (&p / "wte").var("weight", &[c.vocab_size, d], nn::Init::Const(0.0)),
            wpe: (&p / "wpe").var("weight", &[c.max_positions, d], nn::Init::Const(0.0)),
            h,
            ln_f: ln(&p / "ln_f"),
            heads: c.num_heads,
            act: c.act,
        }
    }

    pub fn num_layers(&self) -> usize {
        self.h.len()
    }

    /// Every Conv1D of every block with its path under the transformer root (`h.{i}.attn.c_attn`, …).
    fn projections_mut(&mut self) -> Vec<(String, &mut Conv1D)> {
        let mut out = Vec::new();
        for (i, b) in self.h.iter_mut().enumerate() {
            for (n, c) in [("attn.c_attn", &mut b.c_attn), ("attn.c_proj", &mut b.attn_c_proj), ("mlp.c_fc", &mut b.c_fc), ("mlp.c_proj", &mut b.mlp_c_proj)] {
                out.push((format!("h.{i}.{n}"), c));
            }
        }
        out
    }

    /// See [`super::LanguageModel::linear_layers`]; paths under the transformer root.
    pub(crate) fn linear_layers(&mut self) -> Vec<LinearLayer> {
        self.projections_mut().into_iter().map(|(p, c)| c.info(p)).collect()
    }

    /// Sets (or clears) the delta of the Conv1D at `path` (under the transformer root); false if there is none.
    pub(crate) fn set_delta(&mut self, path: &str, delta: Option<Box<dyn LinearDelta>>) -> bool {
        match self.projections_mut().into_iter().find(|(p, _)| p == path) {
            Some((_, c)) => {
                c.delta = delta;
                true
            }
            None => false,
        }
    }

    /// Hidden states after `ln_f`; the learned positions are added here (transformers adds them to
    /// `inputs_embeds` too).
    ///
    /// # Shapes
    /// x: (B, T, d) token embeddings, positions: (B, T) int64 in [0, n_positions) → (B, T, d)
    pub(crate) fn forward(&self, x: &Tensor, positions: &Tensor, mask: &AttnMask, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let n_pos = self.wpe.size()[0];
        if positions.numel() > 0 {
            let (lo, hi) = (positions.f_min()?.f_int64_value(&[])?, positions.f_max()?.f_int64_value(&[])?);
            if lo < 0 || hi >= n_pos {
                bail_shape!("gpt2: position ids must lie in [0, {n_pos}) (n_positions), found {lo}..={hi}");
            }
        }
        let mut x = x.f_add(&Tensor::f_embedding(&self.wpe, positions, -1, false, false)?)?;
        let (h, dh) = (self.heads, d / self.heads);
        for (i, blk) in self.h.iter().enumerate() {
            // (B, T, 3d) → q, k, v each (B, T, d) → (B, H, T, Dh)
            let qkv = blk.c_attn.forward(&x.apply(&blk.ln_1))?;
            let split = |j: i64| -> Result<Tensor> { Ok(qkv.f_narrow(2, j * d, d)?.f_view([b, t, h, dh])?.f_transpose(1, 2)?) };
            let (q, k, v) = (split(0)?, split(1)?, split(2)?);
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.update(i, &k, &v)?,
                None => (k, v),
            };
            let a = blk.attn_c_proj.forward(&attend(&q, &k, &v, mask, blk.scale)?)?;
            x = x.f_add(&a)?;
            let m = blk.mlp_c_proj.forward(&self.act.apply(&blk.c_fc.forward(&x.apply(&blk.ln_2))?))?;
            x = x.f_add(&m)?;
        }
        Ok(x.apply(&self.ln_f))
    }
}

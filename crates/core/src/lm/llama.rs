//! The Llama-style decoder shared by `llama`, `mistral`, `qwen2` and `qwen3` (transformers
//! `models/llama/modeling_llama.py`, `models/mistral/modeling_mistral.py`, `models/qwen2/modeling_qwen2.py`,
//! `models/qwen3/modeling_qwen3.py`): token embedding, N pre-norm layers, a final RMSNorm and the LM head.
//!
//! Each layer: x ← x + o_proj(Attn(RoPE(q), RoPE(k), v)) of RMSNorm₁(x); x ← x + down(act(gate(h)) ⊙ up(h)),
//! h = RMSNorm₂(x). Attention has H query heads and H_kv key/value heads (GQA), head size Dh, scale Dh^−½;
//! qwen3 RMS-normalises each head of q and k (over Dh) before RoPE.
//!
//! Variable names (the checkpoint keys): `model.embed_tokens.weight` (V, d);
//! `model.layers.{i}.input_layernorm.weight`, `model.layers.{i}.post_attention_layernorm.weight` (d);
//! `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight|bias` (q: (H·Dh, d), k/v: (H_kv·Dh, d), o: (d, H·Dh));
//! `model.layers.{i}.self_attn.{q,k}_norm.weight` (Dh, qwen3); `model.layers.{i}.mlp.{gate,up,down}_proj.weight|bias`;
//! `model.norm.weight`; `lm_head.weight` (V, d) unless tied.
use super::adapter::{Linear, LinearDelta, LinearLayer};
use super::cache::{AttnMask, KvCache, attend};
use super::config::LmConfig;
use super::rope::{self, Rope};
use crate::error::Result;
use tch::{Kind, Tensor, nn};

/// A linear layer whose variables start at zero (every value is loaded afterwards; no random init to pay for).
fn linear(p: nn::Path, i: i64, o: i64, bias: bool) -> Linear {
    Linear::new(p, i, o, bias)
}

/// RMSNorm computed in float32 (transformers `LlamaRMSNorm`): w ⊙ (x / √(mean(x²) + ε)), cast back to x's kind
/// before the scale.
#[derive(Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        RmsNorm { weight: p.var("weight", &[dim], nn::Init::Const(1.0)), eps }
    }

    /// # Shapes
    /// x: (..., dim) → (..., dim)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let xf = x.f_to_kind(Kind::Float)?;
        let var = xf.f_square()?.f_mean_dim([-1i64].as_slice(), true, Kind::Float)?;
        let y = xf.f_mul(&var.f_add_scalar(self.eps)?.f_rsqrt()?)?.f_to_kind(x.kind())?;
        Ok(y.f_mul(&self.weight)?)
    }
}

#[derive(Debug)]
struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

impl SelfAttention {
    fn new(p: nn::Path, c: &LmConfig) -> Self {
        let (d, h, hkv, dh) = (c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim);
        let norm = |n: &str| c.qk_norm.then(|| RmsNorm::new(&p / n, dh, c.norm_eps));
        SelfAttention {
            q_proj: linear(&p / "q_proj", d, h * dh, c.qkv_bias),
            k_proj: linear(&p / "k_proj", d, hkv * dh, c.qkv_bias),
            v_proj: linear(&p / "v_proj", d, hkv * dh, c.qkv_bias),
            o_proj: linear(&p / "o_proj", h * dh, d, c.o_bias),
            q_norm: norm("q_norm"),
            k_norm: norm("k_norm"),
            heads: h,
            kv_heads: hkv,
            head_dim: dh,
        }
    }

    /// # Shapes
    /// x: (B, T, d), cos/sin: (B, 1, T, Dh) → (B, T, d)
    fn forward(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &AttnMask, cache: Option<(&mut KvCache, usize)>) -> Result<Tensor> {
        let (b, t, _) = x.size3()?;
        // (B, T, H·Dh) → (B, T, H, Dh) [→ per-head RMSNorm] → (B, H, T, Dh)
        let heads = |lin: &Linear, n: i64, norm: &Option<RmsNorm>| -> Result<Tensor> {
            let y = lin.forward(x)?.f_view([b, t, n, self.head_dim])?;
            let y = match norm {
                Some(nm) => nm.forward(&y)?,
                None => y,
            };
            Ok(y.f_transpose(1, 2)?)
        };
        let q = rope::apply(&heads(&self.q_proj, self.heads, &self.q_norm)?, cos, sin)?;
        let k = rope::apply(&heads(&self.k_proj, self.kv_heads, &self.k_norm)?, cos, sin)?;
        let v = heads(&self.v_proj, self.kv_heads, &None)?;
        let (k, v) = match cache {
            Some((c, layer)) => c.update(layer, &k, &v)?,
            None => (k, v),
        };
        let o = attend(&q, &k, &v, mask, (self.head_dim as f64).powf(-0.5))?;
        self.o_proj.forward(&o)
    }
}

#[derive(Debug)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: super::config::Activation,
}

impl Mlp {
    fn new(p: nn::Path, c: &LmConfig) -> Self {
        let (d, f) = (c.hidden_size, c.intermediate_size);
        Mlp {
            gate_proj: linear(&p / "gate_proj", d, f, c.mlp_bias),
            up_proj: linear(&p / "up_proj", d, f, c.mlp_bias),
            down_proj: linear(&p / "down_proj", f, d, c.mlp_bias),
            act: c.act,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.act.apply(&self.gate_proj.forward(x)?).f_mul(&self.up_proj.forward(x)?)?;
        self.down_proj.forward(&h)
    }
}

#[derive(Debug)]
struct Layer {
    input_layernorm: RmsNorm,
    self_attn: SelfAttention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// The decoder stack under `model.` (see the module docs).
#[derive(Debug)]
pub struct LlamaModel {
    pub(crate) embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    rope: Rope,
}

impl LlamaModel {
    /// Builds the variables under `p` (the checkpoint's `model`).
    pub fn new(p: nn::Path, c: &LmConfig) -> Self {
        let d = c.hidden_size;
        let layers = (0..c.num_layers)
            .map(|i| {
                let l = &p / "layers" / i;
                Layer {
                    input_layernorm: RmsNorm::new(&l / "input_layernorm", d, c.norm_eps),
                    self_attn: SelfAttention::new(&l / "self_attn", c),
                    post_attention_layernorm: RmsNorm::new(&l / "post_attention_layernorm", d, c.norm_eps),
                    mlp: Mlp::new(&l / "mlp", c),
                }
            })
            .collect();
        LlamaModel {
            embed_tokens: (&p / "embed_tokens").var("weight", &[c.vocab_size, d], nn::Init::Const(0.0)),
            layers,
            norm: RmsNorm::new(&p / "norm", d, c.norm_eps),
            rope: Rope::new(c.head_dim, c.rope_theta, &c.rope_scaling, p.device()),
        }
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Every projection of every layer with its path under the model root (`layers.{i}.self_attn.q_proj`, …).
    fn projections_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter_mut().enumerate() {
            let a = &mut l.self_attn;
            for (n, lin) in [("q_proj", &mut a.q_proj), ("k_proj", &mut a.k_proj), ("v_proj", &mut a.v_proj), ("o_proj", &mut a.o_proj)] {
                out.push((format!("layers.{i}.self_attn.{n}"), lin));
            }
            let m = &mut l.mlp;
            for (n, lin) in [("gate_proj", &mut m.gate_proj), ("up_proj", &mut m.up_proj), ("down_proj", &mut m.down_proj)] {
                out.push((format!("layers.{i}.mlp.{n}"), lin));
            }
        }
        out
    }

    /// See [`super::LanguageModel::linear_layers`]; paths under the model root.
    pub(crate) fn linear_layers(&mut self) -> Vec<LinearLayer> {
        self.projections_mut().into_iter().map(|(p, l)| l.info(p)).collect()
    }

    /// Sets (or clears) the delta of the projection at `path` (under the model root); false if there is none.
    pub(crate) fn set_delta(&mut self, path: &str, delta: Option<Box<dyn LinearDelta>>) -> bool {
        match self.projections_mut().into_iter().find(|(p, _)| p == path) {
            Some((_, l)) => {
                l.delta = delta;
                true
            }
            None => false,
        }
    }

    /// Hidden states after the final norm.
    ///
    /// # Shapes
    /// x: (B, T, d) embeddings, positions: (B, T) int64 → (B, T, d)
    pub(crate) fn forward(&self, x: &Tensor, positions: &Tensor, mask: &AttnMask, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let (cos, sin) = self.rope.cos_sin(positions, x.kind())?;
        let mut x = x.shallow_clone();
        for (i, l) in self.layers.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            let a = l.self_attn.forward(&l.input_layernorm.forward(&x)?, &cos, &sin, mask, c)?;
            x = x.f_add(&a)?;
            let f = l.mlp.forward(&l.post_attention_layernorm.forward(&x)?)?;
            x = x.f_add(&f)?;
        }
        self.norm.forward(&x)
    }
}

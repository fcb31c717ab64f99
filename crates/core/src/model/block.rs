//! Pre-norm transformer block with LayerScale (DINOv2 `NestedTensorBlock`, docs/recipe.md §2.4).
//! Module paths mirror the original DINOv2 state-dict keys (`blocks.{i}.attn.qkv.weight`, ...).
use crate::config::{FfnKind, VitConfig};
use crate::error::Result;
use tch::{Kind, Tensor, nn};

/// Multi-head self-attention with a fused qkv projection, run through LibTorch's fused SDPA.
#[derive(Debug)]
pub struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    num_heads: i64,
}

impl Attention {
    pub fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        let d = cfg.embed_dim;
        let qkv = nn::linear(&p / "qkv", d, 3 * d, nn::LinearConfig { bias: cfg.qkv_bias, ..Default::default() });
        let proj = nn::linear(&p / "proj", d, d, nn::LinearConfig { bias: cfg.proj_bias, ..Default::default() });
        Attention { qkv, proj, num_heads: cfg.num_heads }
    }

    /// # Shapes
    /// x: (B, T, D) → (B, T, D)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.context(x)?.apply(&self.proj))
    }

    /// The heads' outputs before the output projection.
    ///
    /// # Shapes
    /// x: (B, T, D) → (B, T, D)
    fn context(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let h = self.num_heads;
        // (B, T, 3D) -> (B, T, 3, H, Dh) -> (3, B, H, T, Dh); q, k, v are the row blocks [0:D], [D:2D], [2D:3D].
        let qkv = x.apply(&self.qkv).reshape([b, t, 3, h, d / h]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        // softmax(q kᵀ / sqrt(Dh)) v, (B, H, T, Dh)
        let o = Tensor::f_scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)?;
        // (B, H, T, Dh) -> (B, T, H, Dh) -> (B, T, D)
        Ok(o.transpose(1, 2).reshape([b, t, d]))
    }
}

/// Block feed-forward network: MLP (fc1, GELU, fc2) or SwiGLU (w12, silu-gate, w3).
#[derive(Debug)]
pub enum Ffn {
    Mlp { fc1: nn::Linear, fc2: nn::Linear },
    Swiglu { w12: nn::Linear, w3: nn::Linear, hidden: i64 },
}

impl Ffn {
    pub fn new(p: nn::Path, cfg: &VitConfig) -> Self {
        let (d, h) = (cfg.embed_dim, cfg.ffn_hidden());
        let lc = nn::LinearConfig { bias: cfg.ffn_bias, ..Default::default() };
        match cfg.ffn {
            FfnKind::Mlp => Ffn::Mlp { fc1: nn::linear(&p / "fc1", d, h, lc), fc2: nn::linear(&p / "fc2", h, d, lc) },
            FfnKind::Swiglu => {
                Ffn::Swiglu { w12: nn::linear(&p / "w12", d, 2 * h, lc), w3: nn::linear(&p / "w3", h, d, lc), hidden: h }
            }
        }
    }

    /// # Shapes
    /// x: (B, T, D) → (B, T, D)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        match self {
            // Exact (erf) GELU, as nn.GELU() in DINOv2 and "gelu" in HF.
            Ffn::Mlp { fc1, fc2 } => x.apply(fc1).gelu("none").apply(fc2),
            Ffn::Swiglu { w12, w3, hidden } => {
                let x12 = x.apply(w12);
                let x1 = x12.narrow(-1, 0, *hidden);
                let x2 = x12.narrow(-1, *hidden, *hidden);
                (x1.silu() * x2).apply(w3)
            }
        }
    }
}

/// Per-sample stochastic depth: zero the residual branch of a sample with probability `rate`
/// and scale the survivors by 1 / (1 − rate). Identity when not training or rate == 0.
pub fn drop_path(x: Tensor, rate: f64, train: bool) -> Tensor {
    if !train || rate <= 0.0 {
        return x;
    }
    let keep = 1.0 - rate;
    let b = x.size()[0];
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, x.dim() - 1));
    let mask = Tensor::rand(&shape, (Kind::Float, x.device())).lt(keep).to_kind(x.kind());
    x * mask / keep
}

/// [`drop_path`] of token rows (n, D) taken from a (B, T, D) sequence, `sample` (n,) naming each row's sample:
/// the same draw (one (B, 1, 1) uniform tensor) and the same per-element arithmetic as on the whole sequence.
fn drop_path_rows(x: Tensor, rate: f64, train: bool, b: i64, sample: &Tensor) -> Tensor {
    if !train || rate <= 0.0 {
        return x;
    }
    let keep = 1.0 - rate;
    let mask = Tensor::rand([b, 1, 1], (Kind::Float, x.device())).lt(keep).to_kind(x.kind());
    x * mask.reshape([b, 1]).index_select(0, sample) / keep
}

/// LayerScale: `y · γ` when the block has one.
fn layer_scale(y: Tensor, gamma: &Option<Tensor>) -> Tensor {
    match gamma {
        Some(g) => y * g,
        None => y,
    }
}

/// x ← x + DropPath(LS1(Attn(LN1(x)))); x ← x + DropPath(LS2(FFN(LN2(x)))).
#[derive(Debug)]
pub struct Block {
    norm1: nn::LayerNorm,
    attn: Attention,
    ls1: Option<Tensor>,
    norm2: nn::LayerNorm,
    mlp: Ffn,
    ls2: Option<Tensor>,
    drop_path: f64,
}

impl Block {
    pub fn new(p: nn::Path, cfg: &VitConfig, drop_path: f64) -> Self {
        let d = cfg.embed_dim;
        let ln = nn::LayerNormConfig { eps: cfg.layer_norm_eps, ..Default::default() };
        let ls = |name: &str| cfg.layerscale_init.map(|g| (&p / name).var("gamma", &[d], nn::Init::Const(g)));
        Block {
            norm1: nn::layer_norm(&p / "norm1", vec![d], ln),
            attn: Attention::new(&p / "attn", cfg),
            ls1: ls("ls1"),
            norm2: nn::layer_norm(&p / "norm2", vec![d], ln),
            mlp: Ffn::new(&p / "mlp", cfg),
            ls2: ls("ls2"),
            drop_path,
        }
    }

    /// # Shapes
    /// x: (B, T, D) → (B, T, D)
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let a = layer_scale(self.attn.forward(&x.apply(&self.norm1))?, &self.ls1);
        let x = x + drop_path(a, self.drop_path, train);
        let f = layer_scale(self.mlp.forward(&x.apply(&self.norm2)), &self.ls2);
        Ok(&x + drop_path(f, self.drop_path, train))
    }

    /// The block's output at token rows `rows` only (flat indices into the B·T rows of `x`): attention runs over
    /// the whole sequence (every token is a key and a value), but the output projection, the residuals and the
    /// MLP — row-wise — run on the selected rows. Equals `forward(x)` flattened and indexed by `rows`, drop path
    /// included (same draws), at a fraction of the cost when few rows are read.
    ///
    /// # Shapes
    /// x: (B, T, D), rows: (n,) int64 → (n, D)
    pub fn forward_rows(&self, x: &Tensor, train: bool, rows: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        let sample = rows.floor_divide_scalar(t);
        let ctx = self.attn.context(&x.apply(&self.norm1))?.reshape([b * t, d]).index_select(0, rows);
        let a = layer_scale(ctx.apply(&self.attn.proj), &self.ls1);
        let x = x.reshape([b * t, d]).index_select(0, rows) + drop_path_rows(a, self.drop_path, train, b, &sample);
        let f = layer_scale(self.mlp.forward(&x.apply(&self.norm2)), &self.ls2);
        Ok(&x + drop_path_rows(f, self.drop_path, train, b, &sample))
    }
}

//! DINO / iBOT projection head (dinov2/layers/dino_head.py, docs/recipe.md §3.2): an MLP with GELU (no norm layers),
//! L2 normalisation of the bottleneck, then a weight-normalised linear layer without bias whose gain `g`
//! starts at 1 and stays trainable. Keys: `mlp.0.*`, `mlp.2.*`, `mlp.4.*` (GELUs at 1, 3),
//! `last_layer.weight_g` (K, 1), `last_layer.weight_v` (K, bottleneck).
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadConfig {
    pub in_dim: i64,
    pub out_dim: i64,
    pub hidden_dim: i64,
    pub bottleneck_dim: i64,
    pub nlayers: i64,
}

#[derive(Debug)]
pub struct DinoHead {
    mlp: Vec<nn::Linear>,
    weight_g: Tensor,
    weight_v: Tensor,
}

impl DinoHead {
    pub fn new(p: nn::Path, cfg: &HeadConfig) -> Self {
        let lc = nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        let nl = cfg.nlayers.max(1);
        let mlp = if nl == 1 {
            vec![nn::linear(&p / "mlp", cfg.in_dim, cfg.bottleneck_dim, lc)]
        } else {
            let mut dims = vec![cfg.in_dim];
            dims.extend(std::iter::repeat_n(cfg.hidden_dim, (nl - 1) as usize));
            dims.push(cfg.bottleneck_dim);
            (0..nl as usize).map(|i| nn::linear(&p / "mlp" / (2 * i), dims[i], dims[i + 1], lc)).collect()
        };
        let last = &p / "last_layer";
        // nn.Linear's default init for v (the layer is created after DINOv2's init pass), g = 1.
        let bound = 1.0 / (cfg.bottleneck_dim as f64).sqrt();
        let weight_v = last.var("weight_v", &[cfg.out_dim, cfg.bottleneck_dim], nn::Init::Uniform { lo: -bound, up: bound });
        let weight_g = last.var("weight_g", &[cfg.out_dim, 1], nn::Init::Const(1.0));
        DinoHead { mlp, weight_g, weight_v }
    }

    /// # Shapes
    /// x: (n, D) → (n, K)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let mut h = x.shallow_clone();
        for (i, l) in self.mlp.iter().enumerate() {
            h = h.apply(l);
            if i + 1 < self.mlp.len() {
                h = h.gelu("none");
            }
        }
        // L2 normalisation of the bottleneck (eps 1e-6 in fp16, else 1e-12).
        let eps = if h.kind() == Kind::Half { 1e-6 } else { 1e-12 };
        let h = &h / h.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(eps);
        // Weight norm over dim 0: W = g · v / ‖v‖ (row-wise).
        let w = &self.weight_g * &self.weight_v / self.weight_v.norm_scalaropt_dim(2, [1i64].as_slice(), true);
        h.matmul(&w.to_kind(h.kind()).transpose(0, 1))
    }
}

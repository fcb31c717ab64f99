//! `DinoVisionTransformer` (docs/recipe.md §2.2–2.6): patch embedding, CLS token, register tokens, learned position
//! embedding with checkpoint-family interpolation, pre-norm blocks, final norm.
//! Variable names are exactly the original DINOv2 state-dict keys.
use super::block::Block;
use super::pos_embed::interpolate_pos_encoding;
use crate::bail_shape;
use crate::config::VitConfig;
use crate::error::Result;
use tch::{Kind, Tensor, nn};

#[derive(Debug)]
pub struct Vit {
    pub cfg: VitConfig,
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    register_tokens: Option<Tensor>,
    mask_token: Option<Tensor>,
    blocks: Vec<Block>,
    norm: nn::LayerNorm,
}

/// What `forward` should compute besides the final tokens.
#[derive(Debug, Default)]
pub struct ForwardOptions {
    /// (B, N) booleans: true = replace that patch embedding by `mask_token` (before the position embedding).
    pub masks: Option<Tensor>,
    /// 0-based block indices whose outputs (full sequence) are returned; negative = from the end (-1 = last).
    pub intermediate_layers: Vec<i64>,
    /// Apply the final norm to the intermediate outputs (DINOv2 `get_intermediate_layers(norm=True)`).
    pub norm_intermediates: bool,
    /// Training mode (drop path active).
    pub train: bool,
}

/// Named outputs (DINOv2 `forward_features` plus HF `last_hidden_state`).
#[derive(Debug)]
pub struct VitOutput {
    /// (B, D) normed CLS token (`x_norm_clstoken`, HF `pooler_output`).
    pub cls: Tensor,
    /// (B, R, D) normed register tokens.
    pub registers: Tensor,
    /// (B, N, D) normed patch tokens, row-major over the (H/p, W/p) grid.
    pub patches: Tensor,
    /// (B, T, D) sequence before the final norm, T = 1 + R + N.
    pub prenorm: Tensor,
    /// (B, T, D) final norm over the whole sequence [CLS, registers, patches] (HF semantics).
    pub last_hidden_state: Tensor,
    /// One (B, T, D) tensor per requested block, in the requested order.
    pub intermediates: Vec<Tensor>,
    /// Patch grid (H/p, W/p).
    pub grid: (i64, i64),
}

impl Vit {
    /// Builds the module tree under `p` (use the VarStore root so keys are `cls_token`, `blocks.0...`).
    /// Parameters start at DINOv2's from-scratch initialisation (docs/recipe.md §2.6); loading replaces them.
    pub fn new(p: &nn::Path, cfg: &VitConfig) -> Result<Self> {
        cfg.validate()?;
        let d = cfg.embed_dim;
        let m = cfg.pos_grid();
        let patch_embed = nn::conv2d(
            &(p / "patch_embed" / "proj"),
            cfg.in_chans,
            d,
            cfg.patch_size,
            nn::ConvConfig { stride: cfg.patch_size, ..Default::default() },
        );
        let cls_token = p.var("cls_token", &[1, 1, d], nn::Init::Randn { mean: 0.0, stdev: 1e-6 });
        let pos_embed = p.var("pos_embed", &[1, 1 + m * m, d], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let register_tokens = (cfg.num_register_tokens > 0).then(|| {
            p.var("register_tokens", &[1, cfg.num_register_tokens, d], nn::Init::Randn { mean: 0.0, stdev: 1e-6 })
        });
        let mask_token = cfg.use_mask_token.then(|| p.var("mask_token", &[1, d], nn::Init::Const(0.0)));
        let blocks = (0..cfg.depth)
            .map(|i| {
                let rate = if cfg.drop_path_uniform || cfg.depth == 1 {
                    cfg.drop_path_rate
                } else {
                    cfg.drop_path_rate * i as f64 / (cfg.depth - 1) as f64
                };
                Block::new(p / "blocks" / i, cfg, rate)
            })
            .collect();
        let norm = nn::layer_norm(p / "norm", vec![d], nn::LayerNormConfig { eps: cfg.layer_norm_eps, ..Default::default() });
        let vit = Vit { cfg: cfg.clone(), patch_embed, cls_token, pos_embed, register_tokens, mask_token, blocks, norm };
        Ok(vit)
    }

    /// Tokens entering block 0: [CLS, registers, patches] with position embeddings on CLS and patches.
    ///
    /// # Shapes
    /// * x: (B, C, H, W), H and W multiples of the patch size; masks: (B, N) bool
    /// * returns (B, 1 + R + N, D) and the grid (H/p, W/p)
    pub fn prepare_tokens(&self, x: &Tensor, masks: Option<&Tensor>) -> Result<(Tensor, (i64, i64))> {
        if x.dim() != 4 {
            bail_shape!("pixel_values must have 4 dimensions (B, C, H, W), got shape {:?}", x.size());
        }
        let (b, c, h, w) = x.size4()?;
        let p = self.cfg.patch_size;
        if c != self.cfg.in_chans {
            bail_shape!("pixel_values has {c} channels, the model expects {}", self.cfg.in_chans);
        }
        if h < p || w < p || h % p != 0 || w % p != 0 {
            bail_shape!("image size {h}x{w} must be a positive multiple of the patch size {p} (e.g. {}x{})", (h / p).max(1) * p, (w / p).max(1) * p);
        }
        let (h0, w0) = (h / p, w / p);
        let n = h0 * w0;
        // (B, C, H, W) -> (B, D, H/p, W/p) -> (B, N, D), row-major over the patch grid
        let mut tokens = x.apply(&self.patch_embed).flatten(2, 3).transpose(1, 2);
        if let Some(m) = masks {
            let Some(mask_token) = &self.mask_token else {
                bail_shape!("masks were given but this model has no mask_token (use_mask_token = false)");
            };
            if m.size() != [b, n] || m.kind() != Kind::Bool {
                bail_shape!("masks must be a bool tensor of shape [{b}, {n}], got {:?} {:?}", m.kind(), m.size());
            }
            // Masked patch embeddings are replaced before the position embedding is added.
            let mt = mask_token.to_kind(tokens.kind()).unsqueeze(0); // (1, 1, D)
            tokens = mt.where_self(&m.unsqueeze(-1), &tokens);
        }
        let d = self.cfg.embed_dim;
        let cls = self.cls_token.to_kind(tokens.kind()).expand([b, 1, d], false);
        let tokens = Tensor::cat(&[cls, tokens], 1);
        let pos = interpolate_pos_encoding(&self.pos_embed, h0, w0, self.cfg.interpolation)?;
        let tokens = tokens + pos.to_kind(x.kind());
        let tokens = match &self.register_tokens {
            // Registers go after CLS, after the position embedding: they carry no position.
            Some(reg) => {
                let r = reg.to_kind(tokens.kind()).expand([b, self.cfg.num_register_tokens, d], false);
                Tensor::cat(&[tokens.narrow(1, 0, 1), r, tokens.narrow(1, 1, n)], 1)
            }
            None => tokens,
        };
        Ok((tokens, (h0, w0)))
    }

    /// Runs the backbone.
    ///
    /// # Shapes
    /// x: (B, C, H, W) → see [`VitOutput`].
    pub fn forward(&self, x: &Tensor, opts: &ForwardOptions) -> Result<VitOutput> {
        let depth = self.cfg.depth;
        let wanted: Vec<i64> = opts
            .intermediate_layers
            .iter()
            .map(|&i| if i < 0 { depth + i } else { i })
            .collect();
        if let Some(bad) = wanted.iter().zip(&opts.intermediate_layers).find(|(i, _)| **i < 0 || **i >= depth) {
            bail_shape!("intermediate layer {} does not exist: the model has {depth} blocks (0..{})", bad.1, depth - 1);
        }
        let (mut x, grid) = self.prepare_tokens(x, opts.masks.as_ref())?;
        let mut inter: Vec<Option<Tensor>> = (0..wanted.len()).map(|_| None).collect();
        for (i, blk) in self.blocks.iter().enumerate() {
            x = blk.forward(&x, opts.train)?;
            for (slot, &w) in inter.iter_mut().zip(&wanted) {
                if w == i as i64 {
                    *slot = Some(if opts.norm_intermediates { x.apply(&self.norm) } else { x.shallow_clone() });
                }
            }
        }
        let normed = x.apply(&self.norm);
        let r = self.cfg.num_register_tokens;
        let n = grid.0 * grid.1;
        Ok(VitOutput {
            cls: normed.select(1, 0),
            registers: normed.narrow(1, 1, r),
            patches: normed.narrow(1, 1 + r, n),
            prenorm: x,
            last_hidden_state: normed,
            intermediates: inter.into_iter().map(|t| t.expect("every requested block ran")).collect(),
            grid,
        })
    }

    /// Training forward that returns only the final normed tokens at `rows` (flat indices into the B·T rows of
    /// the sequence [CLS, registers, patches], T = 1 + R + N), e.g. the CLS tokens and the masked patches that
    /// the SSL heads read. Every block but the last runs on all tokens; the last one computes its output
    /// projection and MLP on the selected rows only ([`Block::forward_rows`]), the final norm likewise. Equals
    /// `forward(x).last_hidden_state` flattened and indexed by `rows`.
    ///
    /// # Shapes
    /// x: (B, C, H, W), masks: (B, N) bool, rows: (n,) int64 → (n, D)
    pub fn forward_rows(&self, x: &Tensor, masks: Option<&Tensor>, train: bool, rows: &Tensor) -> Result<Tensor> {
        let (mut x, _) = self.prepare_tokens(x, masks)?;
        let Some((last, rest)) = self.blocks.split_last() else {
            let (b, t, d) = x.size3()?;
            return Ok(x.reshape([b * t, d]).index_select(0, rows).apply(&self.norm));
        };
        for blk in rest {
            x = blk.forward(&x, train)?;
        }
        Ok(last.forward_rows(&x, train, rows)?.apply(&self.norm))
    }
}

/// DINOv2's from-scratch initialisation (docs/recipe.md §2.6) applied to a freshly built model's VarStore:
/// pos_embed ~ N(0, 0.02²) truncated at ±2, Linear weights ~ N(0, 0.02²) truncated at ±2 with zero bias,
/// LayerNorm (1, 0), cls/register ~ N(0, 1e-6²), mask_token 0, LayerScale at its init value.
/// The patch-embedding convolution keeps PyTorch's `Conv2d` default, which DINOv2's `init_weights` never touches
/// (facebookresearch/dinov2, dinov2/models/vision_transformer.py): kaiming-uniform with a = √5, i.e. weight and
/// bias ~ U(±1/√fan_in), fan_in = in_chans·p² (std 0.024 at 3·14²). tch's own conv default (kaiming-uniform for
/// ReLU, zero bias) is replaced here. Seed with `tch::manual_seed` first.
pub fn init_from_scratch(vs: &nn::VarStore) {
    tch::no_grad(|| {
        // Sorted: the draws must be reproducible from the seed.
        let vars = super::sorted_vars(vs);
        let fan_in: i64 = vars.iter().find(|(n, _)| n == "patch_embed.proj.weight").map_or(1, |(_, w)| w.size()[1..].iter().product());
        for (name, mut t) in vars {
            let is_block_linear = name.starts_with("blocks.")
                && (name.contains(".attn.") || name.contains(".mlp."));
            if is_block_linear && name.ends_with(".weight") {
                let _ = t.normal_(0.0, 0.02).clamp_(-2.0, 2.0);
            } else if is_block_linear && name.ends_with(".bias") {
                let _ = t.zero_();
            } else if name == "pos_embed" {
                let _ = t.normal_(0.0, 0.02).clamp_(-2.0, 2.0);
            } else if name == "patch_embed.proj.weight" || name == "patch_embed.proj.bias" {
                let bound = 1.0 / (fan_in as f64).sqrt();
                let _ = t.uniform_(-bound, bound);
            }
        }
    });
}

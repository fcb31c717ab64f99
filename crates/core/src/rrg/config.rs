//! Settings of the R1 report captioner (camelCase JSON, unknown fields rejected): [`RrgConfig`], the model, and
//! [`RrgTrainConfig`], the model plus the training values of [`crate::rrg::train::ReportTrainer`].
//!
//! Presets ([`RrgConfig::phantom`], [`RrgConfig::mimic`]): a pre-LN decoder of 3 layers with a 4× GELU MLP,
//! learned positions, tied embeddings, dropout 0.1 and label smoothing 0.1, as R2Gen's base model
//! (github.com/zhjohnchan/R2Gen, 3 layers, d 512, 8 heads, 0.1 dropout) scaled for phantom data.
use crate::backbone::Precision;
use crate::error::{Error, Result};
use crate::train::defaults;
use crate::train::schedule::Schedule;
use serde::{Deserialize, Serialize};

/// The captioner's architecture. `vocab_size` comes from the tokenizer
/// ([`crate::text::ReportTokenizer::vocab_size`]), `d_vit` from the encoder whose tokens form the memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RrgConfig {
    /// Token vocabulary V (the tokenizer's size, special tokens included).
    pub vocab_size: i64,
    /// Decoder width d.
    pub d_model: i64,
    /// Decoder layers N.
    pub num_layers: i64,
    /// Attention heads H (d divisible by H).
    pub num_heads: i64,
    /// Hidden width of each layer's MLP (4·d in the presets).
    pub ffn_dim: i64,
    /// Learned positions P: a sequence (BOS + tokens) has at most P tokens.
    pub max_positions: i64,
    /// Width of the visual memory tokens D_vit (the ViT's embed_dim).
    pub d_vit: i64,
    /// Dropout on the embeddings, after each attention output projection and after the MLP (training only).
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Label smoothing ε of the cross-entropy. @default 0.1
    #[serde(default = "d_smoothing")]
    pub label_smoothing: f64,
    /// Output projection = token embedding (no separate `lm_head.weight`). @default true
    #[serde(default = "d_true")]
    pub tie_embeddings: bool,
    /// LayerNorm ε. @default 1e-5
    #[serde(default = "d_ln_eps")]
    pub layer_norm_eps: f64,
    /// Padding id, ignored by the loss; 0 with the tokenizers of [`crate::text`]. @default 0
    #[serde(default)]
    pub pad_id: i64,
    /// @default 1
    #[serde(default = "d_bos")]
    pub bos_id: i64,
    /// @default 2
    #[serde(default = "d_eos")]
    pub eos_id: i64,
}

fn d_dropout() -> f64 {
    0.1
}
fn d_smoothing() -> f64 {
    0.1
}
fn d_true() -> bool {
    true
}
fn d_ln_eps() -> f64 {
    1e-5
}
fn d_bos() -> i64 {
    1
}
fn d_eos() -> i64 {
    2
}

impl RrgConfig {
    /// The phantom preset: d 256, 3 layers, 4 heads, MLP 1024, 128 positions.
    pub fn phantom(vocab_size: i64, d_vit: i64) -> Self {
        RrgConfig {
            vocab_size,
            d_model: 256,
            num_layers: 3,
            num_heads: 4,
            ffn_dim: 1024,
            max_positions: 128,
            d_vit,
            dropout: d_dropout(),
            label_smoothing: d_smoothing(),
            tie_embeddings: true,
            layer_norm_eps: d_ln_eps(),
            pad_id: 0,
            bos_id: 1,
            eos_id: 2,
        }
    }

    /// The MIMIC-CXR preset: d 512, 3 layers, 8 heads, MLP 2048, 160 positions.
    pub fn mimic(vocab_size: i64, d_vit: i64) -> Self {
        RrgConfig { d_model: 512, num_heads: 8, ffn_dim: 2048, max_positions: 160, ..Self::phantom(vocab_size, d_vit) }
    }

    /// Parses the camelCase JSON (unknown fields rejected) and validates it.
    pub fn from_json(s: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(s).map_err(|e| Error::Config(format!("report model config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// The camelCase JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

    /// Checks every value, naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("report model config: {m}")));
        for (name, v) in [
            ("vocabSize", self.vocab_size),
            ("dModel", self.d_model),
            ("numLayers", self.num_layers),
            ("numHeads", self.num_heads),
            ("ffnDim", self.ffn_dim),
            ("maxPositions", self.max_positions),
            ("dVit", self.d_vit),
        ] {
            if v < 1 {
                return bad(format!("{name} must be ≥ 1, got {v}"));
            }
        }
        if self.max_positions < 2 {
            return bad(format!("maxPositions must be ≥ 2 (BOS and one token), got {}", self.max_positions));
        }
        if self.d_model % self.num_heads != 0 {
            return bad(format!("dModel {} is not divisible by numHeads {}", self.d_model, self.num_heads));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!("labelSmoothing must be in [0, 1), got {}", self.label_smoothing));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return bad(format!("layerNormEps must be > 0, got {}", self.layer_norm_eps));
        }
        for (name, v) in [("padId", self.pad_id), ("bosId", self.bos_id), ("eosId", self.eos_id)] {
            if v < 0 || v >= self.vocab_size {
                return bad(format!("{name} {v} is outside the vocabulary [0, {})", self.vocab_size));
            }
        }
        if self.pad_id == self.bos_id || self.pad_id == self.eos_id || self.bos_id == self.eos_id {
            return bad(format!("padId, bosId and eosId must differ, got {}, {}, {}", self.pad_id, self.bos_id, self.eos_id));
        }
        Ok(())
    }

    /// Head width d / H.
    pub fn head_dim(&self) -> i64 {
        self.d_model / self.num_heads
    }
}

/// The model and the training values of [`crate::rrg::train::ReportTrainer`] (R1 recipe: AdamW lr 1e-4, linear
/// warm-up then cosine to 0, clipping 1.0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RrgTrainConfig {
    /// The architecture.
    pub model: RrgConfig,
    /// Peak learning rate. @default 1e-4
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Decoupled weight decay of the weight matrices (2-D parameters: linear weights and the embeddings, as
    /// nanoGPT's configure_optimizers); biases and LayerNorms never decay. @default 0.01
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Warm-up steps W (linspace(0, lr, W)). @default 0
    #[serde(default)]
    pub warmup_steps: i64,
    /// Total optimizer steps T of the schedule (cosine reaches 0 at T). @default 1000
    #[serde(default = "crate::train::defaults::total_steps")]
    pub total_steps: i64,
    /// @default "cosine"
    #[serde(default = "crate::train::defaults::schedule")]
    pub schedule: Schedule,
    /// Max total gradient norm, 0 = off. @default 1
    #[serde(default = "crate::train::defaults::clip_grad")]
    pub clip_grad: f64,
    /// bf16 autocast of the forward pass; applied on CUDA only (the CPU always runs f32). @default "f32"
    #[serde(default = "d_precision")]
    pub precision: Precision,
    /// @default [0.9, 0.999]
    #[serde(default = "crate::train::defaults::adamw_betas")]
    pub adamw_betas: [f64; 2],
    /// @default 1e-8
    #[serde(default = "crate::train::defaults::adamw_eps")]
    pub adamw_eps: f64,
    /// The encoder trained end to end with the decoder (its own learning rate); absent: the encoder is frozen and
    /// the caller supplies its memory features. Absent from the JSON when absent, so states of frozen-encoder
    /// runs keep their configuration text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderTrainConfig>,
}

/// The ViT inside the captioner's trainer: trained end to end (`finetune --task report --mode full`), or frozen
/// (`backboneLr` 0) when the memories are computed at every step instead of cached. Its architecture, which
/// block's tokens form the memory, and its optimizer values, as full classification fine-tuning has them
/// ([`crate::classify::finetune`]): a backbone parameter's lr = `backboneLr · layerwiseDecay^(depth + 1 − layer_id)`
/// (× `patchEmbedLrMult` for patch_embed.*), weight decay on its weight matrices only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncoderTrainConfig {
    /// The ViT (snake_case, as everywhere a VitConfig is written).
    pub model: crate::config::VitConfig,
    /// Block whose normed tokens are the memory (negative from the end). @default -1
    #[serde(default = "d_block")]
    pub block: i64,
    /// Patch-grid average pooling window k (1 = off). @default 1
    #[serde(default = "d_pool")]
    pub pool: i64,
    /// Peak lr of the last block (the decoder has `lr`); 0 = the encoder stays frozen and computes the memory at
    /// every step without gradients (for data sets whose cached memories would not fit). @default 1e-4
    #[serde(default = "d_backbone_lr")]
    pub backbone_lr: f64,
    /// @default 1
    #[serde(default = "d_one")]
    pub layerwise_decay: f64,
    /// @default 1
    #[serde(default = "d_one")]
    pub patch_embed_lr_mult: f64,
}

fn d_block() -> i64 {
    -1
}
fn d_pool() -> i64 {
    1
}
fn d_backbone_lr() -> f64 {
    1e-4
}
fn d_one() -> f64 {
    1.0
}

impl EncoderTrainConfig {
    /// `model` with the memory of the last block, unpooled, and the default optimizer values.
    pub fn new(model: crate::config::VitConfig) -> Self {
        EncoderTrainConfig { model, block: d_block(), pool: d_pool(), backbone_lr: d_backbone_lr(), layerwise_decay: d_one(), patch_embed_lr_mult: d_one() }
    }

    /// The encoder gets no gradient and no optimizer state (`backboneLr` 0).
    pub fn frozen(&self) -> bool {
        self.backbone_lr == 0.0
    }

    /// Checks the values against the ViT, naming the field.
    pub fn validate(&self, d_vit: i64) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("report training config: encoder: {m}")));
        let depth = self.model.depth;
        if !(-depth..depth).contains(&self.block) {
            return bad(format!("block must lie in {}..{} (the ViT has {depth} blocks), got {}", -depth, depth - 1, self.block));
        }
        if self.pool < 1 {
            return bad(format!("pool must be ≥ 1, got {}", self.pool));
        }
        if !(self.backbone_lr.is_finite() && self.backbone_lr >= 0.0) {
            return bad(format!("backboneLr must be a finite number ≥ 0 (0: frozen), got {}", self.backbone_lr));
        }
        for (name, v) in [("layerwiseDecay", self.layerwise_decay), ("patchEmbedLrMult", self.patch_embed_lr_mult)] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return bad(format!("{name} must lie in (0, 1], got {v}"));
            }
        }
        if self.model.embed_dim != d_vit {
            return bad(format!("the ViT's width {} differs from the model's dVit {d_vit}", self.model.embed_dim));
        }
        Ok(())
    }
}

fn d_lr() -> f64 {
    1e-4
}
fn d_wd() -> f64 {
    0.01
}
fn d_precision() -> Precision {
    Precision::F32
}

impl RrgTrainConfig {
    /// `model` with every training value at its default.
    pub fn new(model: RrgConfig) -> Self {
        RrgTrainConfig {
            model,
            lr: d_lr(),
            weight_decay: d_wd(),
            warmup_steps: 0,
            total_steps: defaults::total_steps(),
            schedule: defaults::schedule(),
            clip_grad: defaults::clip_grad(),
            precision: d_precision(),
            adamw_betas: defaults::adamw_betas(),
            adamw_eps: defaults::adamw_eps(),
            encoder: None,
        }
    }

    /// Parses the camelCase JSON (unknown fields rejected) and validates it.
    pub fn from_json(s: &str) -> Result<Self> {
        let c: Self = serde_json::from_str(s).map_err(|e| Error::Config(format!("report training config: {e}")))?;
        c.validate()?;
        Ok(c)
    }

    /// The camelCase JSON (compared when a training state is loaded).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

    /// Checks the model and every training value, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let bad = |m: String| Err(Error::Config(format!("report training config: {m}")));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr must be a finite number > 0, got {}", self.lr));
        }
        for (name, v) in [("weightDecay", self.weight_decay), ("clipGrad", self.clip_grad)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a finite number ≥ 0, got {v}"));
            }
        }
        if self.warmup_steps < 0 || self.total_steps < 1 || self.warmup_steps > self.total_steps {
            return bad(format!("need 0 ≤ warmupSteps ≤ totalSteps and totalSteps ≥ 1, got {} and {}", self.warmup_steps, self.total_steps));
        }
        if !(self.adamw_betas.iter().all(|b| (0.0..1.0).contains(b)) && self.adamw_eps > 0.0) {
            return bad(format!("adamwBetas must lie in [0, 1) and adamwEps be > 0, got {:?} and {}", self.adamw_betas, self.adamw_eps));
        }
        if let Some(e) = &self.encoder {
            e.validate(self.model.d_vit)?;
        }
        Ok(())
    }

    /// The learning rate of optimizer step `step` ([`crate::train::schedule::lr_at`]).
    pub fn lr_at(&self, step: i64) -> f64 {
        crate::train::schedule::lr_at(step, self.lr, self.warmup_steps, self.total_steps, self.schedule)
    }
}

//! The segmentation settings (camelCase JSON, unknown fields rejected; docs/recipe.md §5.2) and their checks.
use crate::backbone::Precision;
use crate::downstream::{json_config, table_defaults};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Which head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SegHeadKind {
    /// CXformer's 1×1 convolution on the last block + bilinear upsampling.
    Linear,
    /// Several blocks, progressive upsampling with 3×3 convolutions.
    Progressive,
}

/// Segmentation settings (camelCase JSON, unknown fields rejected). Defaults: docs/recipe.md §5.2, from
/// configs/downstream/defaults.json ([`crate::downstream`]; `seed` is the table's `headSeed`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegConfig {
    /// @default "linear"
    #[serde(default = "d_head")]
    pub head: SegHeadKind,
    /// Classes including background (CheXmask: 4). @default 4
    #[serde(default = "d_classes")]
    pub num_classes: i64,
    /// progressive: blocks whose normed patch tokens are used (negative = from the end); [] = the last min(4, depth)
    /// blocks. @default []
    #[serde(default = "d_layers")]
    pub layers: Vec<i64>,
    /// progressive: channels after the first projection. @default 256
    #[serde(default = "d_hidden")]
    pub hidden: i64,
    /// progressive: number of ×2 upsampling stages (each halves the channels). @default 2
    #[serde(default = "d_stages")]
    pub stages: i64,
    /// Train the backbone too. @default false
    #[serde(default = "d_unfreeze")]
    pub unfreeze: bool,
    /// Head learning rate: the base of the per-step lr the caller passes (docs/recipe.md §5.2: 5e-3). Only its ratio to
    /// `backbone_lr` is used here. @default 5e-3
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Backbone learning rate at the same point of the schedule (with `unfreeze`). @default 1e-5
    #[serde(default = "d_backbone_lr")]
    pub backbone_lr: f64,
    /// AdamW weight decay on weights (docs/recipe.md §5.2: 1e-4). @default 1e-4
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Max total gradient L2 norm; 0 = off. @default 1.0
    #[serde(default = "d_clip")]
    pub clip_grad: f64,
    /// "f32" | "bf16" (autocast). @default "f32"
    #[serde(default = "d_precision")]
    pub precision: Precision,
    /// Head initialisation seed. @default 0
    #[serde(default = "d_seed")]
    pub seed: i64,
}

// The defaults: configs/downstream/defaults.json ([`crate::downstream`]).
table_defaults!(segmentation:
    d_head -> SegHeadKind = head,
    d_classes -> i64 = num_classes,
    d_layers -> Vec<i64> = layers,
    d_hidden -> i64 = hidden,
    d_stages -> i64 = stages,
    d_unfreeze -> bool = unfreeze,
    d_lr -> f64 = lr,
    d_backbone_lr -> f64 = backbone_lr,
    d_wd -> f64 = weight_decay,
    d_clip -> f64 = clip_grad,
    d_precision -> Precision = precision,
    d_seed -> i64 = head_seed,
);

impl Default for SegConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

json_config!(SegConfig, "segmentation config");

impl SegConfig {
    /// Checks the settings against a backbone of `depth` blocks.
    pub fn validate(&self, depth: i64) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("segmentation: {m}")));
        if !(2..=256).contains(&self.num_classes) {
            return bad(format!("numClasses must be in 2..=256 (background included), got {}", self.num_classes));
        }
        for (name, v) in [("lr", self.lr), ("backboneLr", self.backbone_lr), ("weightDecay", self.weight_decay), ("clipGrad", self.clip_grad)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a finite number ≥ 0, got {v}"));
            }
        }
        if self.head == SegHeadKind::Progressive {
            if let Some(l) = self.layers.iter().find(|&&l| l < -depth || l >= depth) {
                return bad(format!("layers: block {l} does not exist, the backbone has {depth} blocks (0..{} or -{depth}..-1)", depth - 1));
            }
            if self.hidden < 1 {
                return bad(format!("hidden must be ≥ 1, got {}", self.hidden));
            }
            if !(0..=4).contains(&self.stages) {
                return bad(format!("stages must be in 0..=4, got {}", self.stages));
            }
            if self.hidden >> self.stages < 1 {
                return bad(format!("hidden {} is too small for {} stages (each halves the channels)", self.hidden, self.stages));
            }
        }
        Ok(())
    }
}

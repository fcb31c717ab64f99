//! The defaults of the downstream trainers, read from the one table that the CLI and the library read too:
//! configs/downstream/defaults.json (docs/recipe.md §5.1 classification, §5.2 segmentation), embedded at build time
//! and parsed once. The serde defaults of [`crate::classify::config::ProbeConfig`], [`crate::classify::config::FinetuneConfig`] and
//! [`crate::seg::config::SegConfig`] come from here, so that the CLI, the library and the native defaults cannot drift.
//!
//! Keys only the TypeScript side uses (augmentation, bootstrap, batch sizes of the loaders…) are ignored here. Two
//! native defaults are not in the table on purpose: the probe's `selectBest` (`last`: the caller picks the epoch
//! rule, the table's `valAuroc` applies only with a validation split, and `valAuprc` is the TypeScript side's), and
//! fine-tuning's `stepsPerEpoch` (1: not a setting, the caller's loader length).
use crate::backbone::Precision;
use crate::classify::config::ProbeTask;
use crate::seg::config::SegHeadKind;
use crate::train::schedule::Schedule;
use serde::Deserialize;
use std::sync::LazyLock;

/// The table's text (checked at the first use).
pub const TABLE_JSON: &str = include_str!("../../../configs/downstream/defaults.json");

/// Classification defaults: the linear probe and full fine-tuning.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    pub epochs: i64,
    /// Head learning rate.
    pub lr: f64,
    /// The probe's training batch (feature rows).
    pub head_batch_size: i64,
    pub backbone_lr: f64,
    pub layerwise_decay: f64,
    pub patch_embed_lr_mult: f64,
    pub weight_decay: f64,
    pub warmup_epochs: i64,
    pub schedule: Schedule,
    pub clip_grad: f64,
    pub seed: i64,
    pub hidden: Vec<i64>,
    pub pos_weight: Option<Vec<f64>>,
    pub patience: i64,
    pub cls_layers: i64,
    pub avgpool: bool,
    pub task: ProbeTask,
    pub precision: Precision,
    pub adamw_betas: [f64; 2],
    pub adamw_eps: f64,
}

/// Segmentation defaults (the head and its optimiser; the table's `seed` is the data order's, `headSeed` the head
/// initialisation's).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Segmentation {
    pub head: SegHeadKind,
    pub num_classes: i64,
    pub layers: Vec<i64>,
    pub hidden: i64,
    pub stages: i64,
    pub unfreeze: bool,
    pub lr: f64,
    pub backbone_lr: f64,
    pub weight_decay: f64,
    pub clip_grad: f64,
    pub precision: Precision,
    pub head_seed: i64,
}

#[derive(Debug, Deserialize)]
struct Table {
    classification: Classification,
    segmentation: Segmentation,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    serde_json::from_str(TABLE_JSON).unwrap_or_else(|e| panic!("configs/downstream/defaults.json is not a valid defaults table: {e}"))
});

/// The classification defaults of the table.
pub fn classification() -> &'static Classification {
    &TABLE.classification
}

/// The segmentation defaults of the table.
pub fn segmentation() -> &'static Segmentation {
    &TABLE.segmentation
}

/// Serde default functions, one per field of a section of the table:
/// `table_defaults!(segmentation: d_lr -> f64 = lr, …)` defines `fn d_lr() -> f64` returning the table's value.
macro_rules! table_defaults {
    ($section:ident: $($name:ident -> $ty:ty = $field:ident),* $(,)?) => {
        $(fn $name() -> $ty {
            <$ty as Clone>::clone(&$crate::downstream::$section().$field)
        })*
    };
}
pub(crate) use table_defaults;

/// `from_json` / `to_json` of a native config that crosses the N-API boundary as JSON; parse errors are
/// `Error::Config` prefixed with `what` (e.g. "probe config").
macro_rules! json_config {
    ($ty:ty, $what:literal) => {
        impl $ty {
            pub fn from_json(s: &str) -> $crate::error::Result<Self> {
                serde_json::from_str(s).map_err(|e| $crate::error::Error::Config(format!(concat!($what, ": {}"), e)))
            }

            pub fn to_json(&self) -> String {
                serde_json::to_string(self).expect("serializable")
            }
        }
    };
}
pub(crate) use json_config;


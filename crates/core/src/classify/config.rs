//! The settings of the classification trainers (camelCase JSON, unknown fields rejected; defaults from
//! configs/downstream/defaults.json, [`crate::downstream`]): the linear probe's [`ProbeConfig`] and fine-tuning's
//! [`FinetuneConfig`], the enums they share, and the per-epoch [`EpochRecord`].
use crate::backbone::Precision;
use crate::config::VitConfig;
use crate::downstream::{json_config, table_defaults};
use crate::error::{Error, Result};
pub use crate::train::schedule::Schedule;
use serde::{Deserialize, Serialize};

/// What the head predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeTask {
    /// C independent sigmoids, BCE-with-logits.
    Multilabel,
    /// One sigmoid (C must be 1), BCE-with-logits.
    Binary,
    /// Softmax over C ≥ 2 classes, cross-entropy; class index in column 0 of the targets.
    Multiclass,
}

/// Head-training settings (camelCase JSON, unknown fields rejected). Defaults: docs/recipe.md §5.1's recipe, from
/// configs/downstream/defaults.json ([`crate::downstream`]; `selectBest` excepted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeConfig {
    /// Hidden layer widths: [] = linear head; otherwise an MLP with GELU. @default []
    #[serde(default = "d_hidden")]
    pub hidden: Vec<i64>,
    /// Peak learning rate. @default 5e-5
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// AdamW weight decay (weights only). @default 0
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    /// @default 100
    #[serde(default = "d_epochs")]
    pub epochs: i64,
    /// @default 10
    #[serde(default = "d_batch")]
    pub batch_size: i64,
    /// @default 0
    #[serde(default = "d_warmup")]
    pub warmup_epochs: i64,
    /// @default "constant"
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// Initialisation and shuffling seed. @default 7479
    #[serde(default = "d_seed")]
    pub seed: i64,
    /// BCE positive-class weight per class (length C), multilabel/binary only. @default null
    #[serde(default = "d_pos_weight")]
    pub pos_weight: Option<Vec<f64>>,
    /// @default "multilabel"
    #[serde(default = "d_task")]
    pub task: ProbeTask,
    /// Max total gradient L2 norm; 0 = no clipping. @default 1.0
    #[serde(default = "d_clip")]
    pub clip_grad: f64,
    /// With validation data: return the head of the epoch with the best validation macro AUROC ("valAuroc",
    /// one-vs-rest for multiclass) or lowest validation loss ("valLoss"); "last" keeps the final epoch. @default "last"
    #[serde(default)]
    pub select_best: SelectBest,
    /// With `select_best` ≠ last: stop after this many epochs without improvement (0 = never). @default 0
    #[serde(default = "d_patience")]
    pub patience: i64,
}

/// Which epoch's head [`crate::classify::probe::fit`] returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SelectBest {
    #[default]
    Last,
    ValAuroc,
    ValLoss,
}

// The defaults: configs/downstream/defaults.json ([`crate::downstream`]).
table_defaults!(classification:
    d_hidden -> Vec<i64> = hidden,
    d_lr -> f64 = lr,
    d_weight_decay -> f64 = weight_decay,
    d_epochs -> i64 = epochs,
    d_batch -> i64 = head_batch_size,
    d_warmup -> i64 = warmup_epochs,
    d_schedule -> Schedule = schedule,
    d_seed -> i64 = seed,
    d_pos_weight -> Option<Vec<f64>> = pos_weight,
    d_task -> ProbeTask = task,
    d_clip -> f64 = clip_grad,
    d_patience -> i64 = patience,
    d_cls_layers -> i64 = cls_layers,
    d_avgpool -> bool = avgpool,
    d_head_lr -> f64 = lr,
    d_backbone_lr -> f64 = backbone_lr,
    d_layerwise_decay -> f64 = layerwise_decay,
    d_patch_embed_lr_mult -> f64 = patch_embed_lr_mult,
    d_precision -> Precision = precision,
    d_betas -> [f64; 2] = adamw_betas,
    d_eps -> f64 = adamw_eps,
);

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            hidden: d_hidden(),
            lr: d_lr(),
            weight_decay: d_weight_decay(),
            epochs: d_epochs(),
            batch_size: d_batch(),
            warmup_epochs: d_warmup(),
            schedule: d_schedule(),
            seed: d_seed(),
            pos_weight: d_pos_weight(),
            task: d_task(),
            clip_grad: d_clip(),
            select_best: SelectBest::Last,
            patience: d_patience(),
        }
    }
}

json_config!(ProbeConfig, "probe config");

impl ProbeConfig {
    /// Checks the settings on their own and against the number of outputs `c`.
    pub fn validate(&self, c: i64) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return bad(format!("lr must be a finite number ≥ 0, got {}", self.lr));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weightDecay must be a finite number ≥ 0, got {}", self.weight_decay));
        }
        if !(self.clip_grad.is_finite() && self.clip_grad >= 0.0) {
            return bad(format!("clipGrad must be a finite number ≥ 0 (0 = off), got {}", self.clip_grad));
        }
        if self.epochs < 1 {
            return bad(format!("epochs must be ≥ 1, got {}", self.epochs));
        }
        if self.batch_size < 1 {
            return bad(format!("batchSize must be ≥ 1, got {}", self.batch_size));
        }
        if self.warmup_epochs < 0 || self.warmup_epochs > self.epochs {
            return bad(format!("warmupEpochs must be in 0..={} (epochs), got {}", self.epochs, self.warmup_epochs));
        }
        if let Some((i, h)) = self.hidden.iter().enumerate().find(|(_, h)| **h < 1) {
            return bad(format!("hidden[{i}] must be ≥ 1, got {h}"));
        }
        match self.task {
            ProbeTask::Binary if c != 1 => return bad(format!("task 'binary' needs targets with 1 column, got {c}")),
            ProbeTask::Multiclass if c < 2 => {
                return bad(format!("task 'multiclass' needs targets with C ≥ 2 columns (one per class), got {c}"));
            }
            ProbeTask::Multiclass if self.pos_weight.is_some() => {
                return bad("posWeight applies to 'multilabel' and 'binary' only, not 'multiclass'".into());
            }
            _ => {}
        }
        if let Some(pw) = &self.pos_weight {
            if pw.len() as i64 != c {
                return bad(format!("posWeight has {} values but the targets have C = {c} columns", pw.len()));
            }
            if let Some((i, w)) = pw.iter().enumerate().find(|(_, w)| !(w.is_finite() && **w > 0.0)) {
                return bad(format!("posWeight[{i}] must be a finite number > 0, got {w}"));
            }
        }
        Ok(())
    }

    /// Layer widths: F, hidden…, C.
    pub(crate) fn widths(&self, f: i64, c: i64) -> Vec<i64> {
        let mut w = vec![f];
        w.extend(&self.hidden);
        w.push(c);
        w
    }
}

/// One epoch's summary, passed to the `on_epoch` callback and kept in [`crate::classify::head::FittedHead::history`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EpochRecord {
    /// 0-based epoch index.
    pub epoch: i64,
    /// Optimizer steps scheduled so far (skipped all-masked batches included).
    pub steps: i64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Mean of the batch losses weighted by their supervised-entry counts (= the loss over every supervised
    /// entry of the epoch, each seen with the weights of its step); 0 when nothing was supervised.
    pub train_loss: f64,
    /// Supervised entries (rows for multiclass) seen in the epoch.
    pub train_entries: i64,
    /// Batches without any supervised entry (no update taken).
    pub skipped_batches: i64,
    /// Loss over the supervised validation entries after the epoch; null without validation data or when
    /// none of its entries is supervised.
    pub val_loss: Option<f64>,
    /// Validation macro AUROC after the epoch (only with `select_best: valAuroc`).
    #[serde(default)]
    pub val_auroc: Option<f64>,
}

/// Fine-tuning settings (camelCase JSON, unknown fields rejected). Defaults: docs/recipe.md §5.1's recipe with the backbone
/// actually trained (head lr 5e-5, backbone lr 5e-7, wd 0, constant lr, clip 1.0, seed 7479, 100 epochs), from
/// configs/downstream/defaults.json ([`crate::downstream`]; `stepsPerEpoch` excepted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FinetuneConfig {
    /// The backbone architecture (snake_case VitConfig JSON).
    pub model: VitConfig,
    /// Number of outputs C.
    pub num_classes: i64,
    /// CLS tokens of the last n blocks in the features. @default 4
    #[serde(default = "d_cls_layers")]
    pub cls_layers: i64,
    /// Append the mean of the last block's patch tokens. @default true
    #[serde(default = "d_avgpool")]
    pub avgpool: bool,
    /// Hidden widths of an MLP head ([] = linear). @default []
    #[serde(default = "d_hidden")]
    pub hidden: Vec<i64>,
    /// @default "multilabel"
    #[serde(default = "d_task")]
    pub task: ProbeTask,
    /// BCE positive-class weight per class (multilabel/binary). @default null
    #[serde(default = "d_pos_weight")]
    pub pos_weight: Option<Vec<f64>>,
    /// @default 5e-5
    #[serde(default = "d_head_lr")]
    pub head_lr: f64,
    /// Base lr of the backbone (before layer-wise decay); 0 freezes it. @default 5e-7
    #[serde(default = "d_backbone_lr")]
    pub backbone_lr: f64,
    /// Layer-wise lr decay (1 = off). @default 1
    #[serde(default = "d_layerwise_decay")]
    pub layerwise_decay: f64,
    /// Extra lr multiplier of patch_embed.* (DINOv2: 0.2). @default 1
    #[serde(default = "d_patch_embed_lr_mult")]
    pub patch_embed_lr_mult: f64,
    /// Decoupled weight decay of weight matrices. @default 0
    #[serde(default = "d_weight_decay")]
    pub weight_decay: f64,
    /// @default 100
    #[serde(default = "d_epochs")]
    pub epochs: i64,
    /// @default 0
    #[serde(default = "d_warmup")]
    pub warmup_epochs: i64,
    /// @default "constant"
    #[serde(default = "d_schedule")]
    pub schedule: Schedule,
    /// Scheduled steps per epoch (⌈N / batch⌉ of the caller's loader). @default 1
    #[serde(default = "d_steps")]
    pub steps_per_epoch: i64,
    /// Max total gradient norm, 0 = off. @default 1
    #[serde(default = "d_clip")]
    pub clip_grad: f64,
    /// @default "f32"
    #[serde(default = "d_precision")]
    pub precision: Precision,
    /// Head initialisation and stochastic-depth seed. @default 7479
    #[serde(default = "d_seed")]
    pub seed: i64,
    /// @default [0.9, 0.999]
    #[serde(default = "d_betas")]
    pub adamw_betas: [f64; 2],
    /// @default 1e-8
    #[serde(default = "d_eps")]
    pub adamw_eps: f64,
}

// Fine-tuning only (the shared ones are above).

/// Not a setting (the caller's loader length), so not in the table.
fn d_steps() -> i64 {
    1
}

json_config!(FinetuneConfig, "finetune config");

impl FinetuneConfig {
    /// The head part as a probe config (the saved head's metadata; `cxformer evaluate` reads it).
    pub fn probe_config(&self) -> ProbeConfig {
        ProbeConfig {
            hidden: self.hidden.clone(),
            lr: self.head_lr,
            weight_decay: self.weight_decay,
            epochs: self.epochs,
            warmup_epochs: self.warmup_epochs,
            schedule: self.schedule,
            seed: self.seed,
            pos_weight: self.pos_weight.clone(),
            task: self.task,
            clip_grad: self.clip_grad,
            ..ProbeConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.model.validate()?;
        let bad = |m: String| Err(Error::Config(m));
        let nonneg = |name: &str, v: f64| -> Result<()> {
            if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(Error::Config(format!("{name} must be a finite number ≥ 0, got {v}"))) }
        };
        if !(self.head_lr.is_finite() && self.head_lr > 0.0) {
            return bad(format!("headLr must be a finite number > 0, got {}", self.head_lr));
        }
        nonneg("backboneLr", self.backbone_lr)?;
        nonneg("weightDecay", self.weight_decay)?;
        nonneg("clipGrad", self.clip_grad)?;
        if !(self.layerwise_decay.is_finite() && self.layerwise_decay > 0.0 && self.layerwise_decay <= 1.0) {
            return bad(format!("layerwiseDecay must be in (0, 1] (1 = off), got {}", self.layerwise_decay));
        }
        nonneg("patchEmbedLrMult", self.patch_embed_lr_mult)?;
        if !(1..=self.model.depth).contains(&self.cls_layers) {
            return bad(format!("clsLayers must be in 1..={} (the model's depth), got {}", self.model.depth, self.cls_layers));
        }
        if self.steps_per_epoch < 1 {
            return bad(format!("stepsPerEpoch must be ≥ 1, got {}", self.steps_per_epoch));
        }
        if !(self.adamw_betas.iter().all(|b| (0.0..1.0).contains(b)) && self.adamw_eps > 0.0) {
            return bad(format!("adamwBetas must lie in [0, 1) and adamwEps be > 0, got {:?} and {}", self.adamw_betas, self.adamw_eps));
        }
        // Epochs, warm-up, hidden widths, task against C and posWeight: the probe's rules.
        self.probe_config().validate(self.num_classes)
    }

    /// Feature width F = (clsLayers + avgpool)·D.
    pub fn feature_dim(&self) -> i64 {
        (self.cls_layers + self.avgpool as i64) * self.model.embed_dim
    }

    /// The schedule factor of scheduled step `step` (see the module docs).
    pub fn lr_factor(&self, step: i64) -> f64 {
        let s = self.steps_per_epoch;
        crate::train::schedule::lr_at(step, 1.0, self.warmup_epochs * s, self.epochs * s, self.schedule)
    }
}

//! Semantic segmentation on a DINOv2/CXformer backbone (docs/recipe.md §5.2): heads, the `ce_dice_loss`, the training step
//! (AdamW, gradient clipping, optional bf16 autocast), prediction and resumable safetensors state.
//!
//! - **Heads.** `linear` is CXformer's head: the last block's patch tokens after the final norm (registers
//!   stripped), (B, N, D) → (B, D, h, w) over the patch grid → `Conv2d(D, C, 1)` → bilinear upsampling
//!   (align_corners false) to the input size H×W. `progressive` is the stronger option users expect: the normed
//!   patch tokens of several blocks (`layers`, default the last four, or all of a shallower model) concatenated on the channels (B, L·D, h, w)
//!   → `Conv2d(L·D, hidden, 1)` → GELU → `stages` × [bilinear ×2 → `Conv2d(c, c/2, 3, padding 1)` → GELU]
//!   → `Conv2d(c, C, 1)` → bilinear upsampling to H×W. Every convolution starts from PyTorch's default init
//!   (weight and bias U(−1/√fan_in, 1/√fan_in)), drawn from LibTorch's generator seeded with `seed`.
//! - **Backbone.** Frozen by default (docs/recipe.md §5.2): its features are computed under `no_grad` in eval mode at every
//!   step (the augmentations differ per epoch, so nothing is cached). With `unfreeze` it trains too (drop path
//!   active), at `backboneLr` (a fixed ratio to the head's lr, so the schedule scales both).
//! - **Loss** [`ce_dice_loss`] = 0.5·CE + 0.5·(1 − mean_{b,c} Dice_soft(b, c)), Dice_soft = (2Σp·y + ε)/(Σp + Σy + ε),
//!   ε = 1e-6, p = softmax probabilities, y = one-hot targets, all classes including background (docs/recipe.md §5.2).
//! - **Optimizer** AdamW (β 0.9/0.999, ε 1e-8, torch semantics, [`crate::train::optim::AdamW`]) with weight decay on
//!   weights only (HF Trainer's rule: not biases or norms), total-norm gradient clipping (`clipGrad`, default 1.0).
//!   The learning rate of each step is given by the caller (the TS loop computes the cosine schedule).
//! - **Precision.** `bf16` runs the forward passes under bf16 autocast (CPU or CUDA, through the shim, as the SSL
//!   model); the loss and the parameters stay float32.
//! - **State** ([`SegModel::save`] / [`SegModel::load`]): one safetensors file, written atomically, holding
//!   `head.*` (the head's variables) and `backbone.*` (original DINOv2 names, only when unfrozen). To resume, with
//!   the AdamW moments (`optim.exp_avg.<param>` / `optim.exp_avg_sq.<param>`) in the one training-state format of
//!   [`crate::train::state`] (step count and config in its metadata); without the optimizer, the model alone
//!   (`format: cxformer-seg`, read by `cxformer evaluate`). Loading is strict.
//! - **Data parallelism** ([`SegModel::set_dist`], docs/distributed.md): rank 0's whole state (backbone, head, AdamW
//!   moments and step) is broadcast when a process group is set and by every training-state load (collective: every
//!   rank loads; a model saved without its optimizer loads locally, so that one rank can evaluate alone). Every image
//!   of the global batch weighs the same in the loss (CE is a pixel mean, Dice a mean over images × classes, all
//!   images of a batch have one size), so each rank back-propagates its loss × bᵣ·W/B (bᵣ its images, B their sum)
//!   and the gradients are averaged: exactly the single-process gradient of the concatenated batch, also for
//!   unequal shares; a rank with an empty share (0 images) contributes zero. The step record's loss, CE and soft
//!   Dice are those of the global batch (one all-reduce, before the finiteness check, so every rank stops at the
//!   same step). Stochastic depth of an unfrozen backbone is seeded from (seed, step, rank). This is the protocol
//!   of [`crate::train::step`].
use crate::backbone::{Backbone, Precision, RNG_LOCK};
use crate::bail_shape;
use crate::downstream;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, sorted_vars};
use crate::train::collective::{Collective, SingleProcess};
use crate::train::optim::{AdamW, ParamGroup, head_group};
use crate::train::state::{StateKind, TrainState, agree, copy_into, sync_from_rank0};
use crate::train::step::{LossTerms, UpdateValues, backward_and_update, seed_drop_path};
use crate::weights::{WeightFile, write_safetensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor, nn};

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
fn d_head() -> SegHeadKind {
    downstream::segmentation().head
}
fn d_classes() -> i64 {
    downstream::segmentation().num_classes
}
fn d_layers() -> Vec<i64> {
    downstream::segmentation().layers.clone()
}
fn d_hidden() -> i64 {
    downstream::segmentation().hidden
}
fn d_stages() -> i64 {
    downstream::segmentation().stages
}
fn d_unfreeze() -> bool {
    downstream::segmentation().unfreeze
}
fn d_lr() -> f64 {
    downstream::segmentation().lr
}
fn d_backbone_lr() -> f64 {
    downstream::segmentation().backbone_lr
}
fn d_wd() -> f64 {
    downstream::segmentation().weight_decay
}
fn d_clip() -> f64 {
    downstream::segmentation().clip_grad
}
fn d_precision() -> Precision {
    downstream::segmentation().precision
}
fn d_seed() -> i64 {
    downstream::segmentation().head_seed
}

impl Default for SegConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

impl SegConfig {
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::Config(format!("segmentation config: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

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

/// PyTorch's default Conv2d init: weight and bias U(−1/√fan_in, 1/√fan_in), fan_in = in·k·k.
fn conv(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let b = 1.0 / ((cin * k * k) as f64).sqrt();
    let init = nn::Init::Uniform { lo: -b, up: b };
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { padding: k / 2, ws_init: init, bs_init: init, ..Default::default() })
}

/// The head modules (variables under the head VarStore root: `conv.*`, or `proj.*`, `up.<i>.*`, `cls.*`).
#[derive(Debug)]
pub enum Head {
    Linear { conv: nn::Conv2D },
    Progressive { proj: nn::Conv2D, ups: Vec<nn::Conv2D>, cls: nn::Conv2D },
}

impl Head {
    pub fn new(p: &nn::Path, cfg: &SegConfig, embed_dim: i64) -> Head {
        match cfg.head {
            SegHeadKind::Linear => Head::Linear { conv: conv(p / "conv", embed_dim, cfg.num_classes, 1) },
            SegHeadKind::Progressive => {
                let proj = conv(p / "proj", embed_dim * cfg.layers.len() as i64, cfg.hidden, 1);
                let mut c = cfg.hidden;
                let ups = (0..cfg.stages)
                    .map(|i| {
                        let m = conv(p / "up" / i, c, c / 2, 3);
                        c /= 2;
                        m
                    })
                    .collect();
                Head::Progressive { proj, ups, cls: conv(p / "cls", c, cfg.num_classes, 1) }
            }
        }
    }

    /// Logits (B, C, H, W) from grid features (B, F, h, w) (F = D for linear, L·D for progressive).
    pub fn forward(&self, feats: &Tensor, out_hw: (i64, i64)) -> Result<Tensor> {
        let x = match self {
            Head::Linear { conv } => apply_conv(feats, conv)?,
            Head::Progressive { proj, ups, cls } => {
                let mut x = apply_conv(feats, proj)?.f_gelu("none")?;
                for m in ups {
                    let (h, w) = (x.size()[2], x.size()[3]);
                    x = x.f_upsample_bilinear2d([2 * h, 2 * w], false, None, None)?;
                    x = apply_conv(&x, m)?.f_gelu("none")?;
                }
                apply_conv(&x, cls)?
            }
        };
        Ok(x.f_upsample_bilinear2d([out_hw.0, out_hw.1], false, None, None)?)
    }
}

/// A convolution as `Conv2D::forward`, with LibTorch errors returned instead of panicking.
/// Stride 1, padding k/2 (as built by `conv`).
fn apply_conv(x: &Tensor, c: &nn::Conv2D) -> Result<Tensor> {
    let pad = c.ws.size()[3] / 2;
    Ok(x.f_conv2d(&c.ws, c.bs.as_ref(), [1, 1], [pad, pad], [1, 1], 1)?)
}

/// (B, N, D) patch tokens → (B, D, h, w) over the row-major patch grid.
pub fn tokens_to_grid(patches: &Tensor, grid: (i64, i64)) -> Result<Tensor> {
    let (b, n, d) = patches.size3()?;
    if n != grid.0 * grid.1 {
        bail_shape!("{n} patch tokens do not fill a {}×{} grid", grid.0, grid.1);
    }
    Ok(patches.f_transpose(1, 2)?.f_reshape([b, d, grid.0, grid.1])?)
}

/// The reference loss (see the module docs). `logits` (B, C, H, W) any float kind (computed in f32), `target`
/// (B, H, W) int64 in 0..C. Returns (loss, CE, mean soft Dice).
pub fn ce_dice_loss(logits: &Tensor, target: &Tensor, eps: f64) -> Result<(Tensor, Tensor, Tensor)> {
    let logits = logits.f_to_kind(Kind::Float)?;
    let c = logits.size()[1];
    let ce = logits.f_cross_entropy_loss::<Tensor>(target, None, Reduction::Mean, -100, 0.0)?;
    let p = logits.f_softmax(1, Kind::Float)?;
    let y = target.f_one_hot(c)?.f_permute([0, 3, 1, 2])?.f_to_kind(Kind::Float)?;
    let dims: &[i64] = &[2, 3];
    let inter = (&p * &y).f_sum_dim_intlist(dims, false, Kind::Float)?;
    let sp = p.f_sum_dim_intlist(dims, false, Kind::Float)?;
    let sy = y.f_sum_dim_intlist(dims, false, Kind::Float)?;
    let dice = ((inter * 2.0 + eps) / (sp + sy + eps)).f_mean(Kind::Float)?;
    let loss = &ce * 0.5 + (1.0 - &dice) * 0.5;
    Ok((loss, ce, dice))
}

/// What one training step did.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegStepRecord {
    /// Optimizer steps taken so far (after this one).
    pub step: i64,
    pub lr: f64,
    pub loss: f64,
    pub ce: f64,
    /// Mean soft Dice of the batch (all classes, background included).
    pub soft_dice: f64,
    /// Total gradient norm before clipping.
    pub grad_norm: f64,
}

/// Metadata `format` of a segmentation model saved without its optimizer (`best.safetensors`).
pub const SEG_FORMAT: &str = "cxformer-seg";

/// A backbone with a segmentation head and its optimizer.
pub struct SegModel {
    pub cfg: SegConfig,
    pub backbone: Backbone,
    pub head_vs: nn::VarStore,
    pub head: Head,
    opt: AdamW,
    /// The process group of a data-parallel run ([`SingleProcess`] otherwise).
    dist: Box<dyn Collective>,
}

impl SegModel {
    /// Adds a freshly initialised head (seeded with `cfg.seed`) to `backbone`; freezes the backbone unless
    /// `cfg.unfreeze`.
    pub fn new(mut cfg: SegConfig, mut backbone: Backbone) -> Result<Self> {
        let depth = backbone.vit.cfg.depth;
        if cfg.head == SegHeadKind::Progressive && cfg.layers.is_empty() {
            cfg.layers = (-depth.min(4)..0).collect();
        }
        cfg.validate(depth)?;
        let device = backbone.device();
        let head_vs = nn::VarStore::new(device);
        let head = {
            let _rng = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            tch::manual_seed(cfg.seed);
            Head::new(&head_vs.root(), &cfg, backbone.vit.cfg.embed_dim)
        };
        let mut params: Vec<(String, Tensor, ParamGroup)> = sorted_vars(&head_vs)
            .into_iter()
            .map(|(n, t)| {
                let g = head_group(&n);
                (format!("head.{n}"), t, g)
            })
            .collect();
        if cfg.unfreeze {
            let ratio = if cfg.lr > 0.0 { cfg.backbone_lr / cfg.lr } else { 0.0 };
            for (n, t) in sorted_vars(&backbone.vs) {
                let mut g = head_group(&n);
                g.lr_mult = ratio;
                params.push((format!("backbone.{n}"), t, g));
            }
        } else {
            backbone.vs.freeze();
        }
        let opt = AdamW::new(params, 0.9, 0.999, 1e-8);
        Ok(SegModel { cfg, backbone, head_vs, head, opt, dist: Box::new(SingleProcess) })
    }

    /// Joins a process group (data parallelism): with W > 1 every rank's state becomes rank 0's
    /// ([`SegModel::sync_from_rank0`]); from then on gradients and step records are those of the global batch.
    /// Collective: call it on every rank.
    pub fn set_dist(&mut self, dist: Box<dyn Collective>) -> Result<()> {
        self.dist = dist;
        self.sync_from_rank0()
    }

    /// Ranks of the process group (1 without one).
    pub fn world(&self) -> i64 {
        self.dist.world().max(1)
    }

    /// Broadcasts rank 0's state (backbone variables, frozen or not, head, AdamW moments and step) to every rank.
    /// Collective; no-op on one process. [`SegModel::set_dist`] and every training-state load do it; calling it
    /// again is harmless.
    pub fn sync_from_rank0(&mut self) -> Result<()> {
        let mut ts: Vec<Tensor> = sorted_vars(&self.backbone.vs).into_iter().map(|(_, t)| t).collect();
        ts.extend(sorted_vars(&self.head_vs).into_iter().map(|(_, t)| t));
        for s in &self.opt.slots {
            ts.push(s.exp_avg.shallow_clone());
            ts.push(s.exp_avg_sq.shallow_clone());
        }
        let mut step = [self.opt.step];
        sync_from_rank0(self.dist.as_ref(), &ts, &mut step)?;
        self.opt.step = step[0];
        Ok(())
    }

    pub fn device(&self) -> Device {
        self.backbone.device()
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> i64 {
        self.opt.step
    }

    /// Grid features for the head: (B, F, h, w) on the model's device.
    fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let vit = &self.backbone.vit;
        let r = vit.cfg.num_register_tokens;
        let opts = ForwardOptions {
            masks: None,
            intermediate_layers: if self.cfg.head == SegHeadKind::Progressive { self.cfg.layers.clone() } else { vec![] },
            norm_intermediates: true,
            train,
        };
        let run = || -> Result<Tensor> {
            let out = vit.forward(x, &opts)?;
            let n = out.grid.0 * out.grid.1;
            match self.cfg.head {
                SegHeadKind::Linear => tokens_to_grid(&out.patches, out.grid),
                SegHeadKind::Progressive => {
                    let grids = out
                        .intermediates
                        .iter()
                        .map(|t| tokens_to_grid(&t.f_narrow(1, 1 + r, n)?, out.grid))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Tensor::f_cat(&grids, 1)?)
                }
            }
        };
        if self.cfg.unfreeze && train { run() } else { tch::no_grad(run) }
    }

    fn check_images(&self, images: &Tensor) -> Result<()> {
        if images.dim() != 4 || images.kind() != Kind::Float {
            bail_shape!("images: expected a float32 (B, 3, H, W) tensor, got {:?} {:?}", images.kind(), images.size());
        }
        Ok(())
    }

    /// Logits (B, C, H, W) float32 on the model's device. `train` = training mode (gradients into the head, and
    /// into the backbone when unfrozen; drop path active when unfrozen). Runs under bf16 autocast with
    /// `precision: bf16`.
    pub fn logits(&self, images: &Tensor, train: bool) -> Result<Tensor> {
        self.check_images(images)?;
        let dev = self.device();
        let x = images.f_to_device(dev)?;
        let hw = (x.size()[2], x.size()[3]);
        if dev.is_cuda() && self.cfg.precision == Precision::F32 {
            crate::shim::set_tf32(false, false)?;
        }
        let _guard = self.cfg.precision.autocast(dev)?;
        let f = self.features(&x, train)?;
        let run = || self.head.forward(&f, hw);
        let z = if train { run()? } else { tch::no_grad(run)? };
        Ok(z.f_to_kind(Kind::Float)?)
    }

    /// One optimizer step on a batch: `images` (B, 3, H, W) float32 (normalised), `labels` (B, H, W) class indices
    /// (any integer kind) in 0..C; `lr` the head's learning rate for this step (the backbone's is
    /// lr · backboneLr / lr). Errors: Shape for bad inputs, NonFinite when the loss is NaN/∞ (nothing updated).
    /// Data parallel (see the module docs): collective; this rank's share of the global batch, which may be empty
    /// (B = 0) on some ranks; the record holds the global batch's loss, CE and soft Dice.
    pub fn train_step(&mut self, images: &Tensor, labels: &Tensor, lr: f64) -> Result<SegStepRecord> {
        self.check_images(images)?;
        let (b, _, h, w) = images.size4()?;
        if labels.size() != [b, h, w] {
            bail_shape!("labels: expected shape [{b}, {h}, {w}] (one class index per pixel of the images), got {:?}", labels.size());
        }
        if labels.is_floating_point() {
            bail_shape!("labels: expected integer class indices, got {:?}", labels.kind());
        }
        let world = self.dist.world();
        if b == 0 && world <= 1 {
            bail_shape!("images: the batch is empty (an empty share is allowed only for a rank of a data-parallel run)");
        }
        let c = self.cfg.num_classes;
        if b > 0 {
            let (lo, hi) = (labels.f_min()?.f_int64_value(&[])?, labels.f_max()?.f_int64_value(&[])?);
            if lo < 0 || hi >= c {
                bail_shape!("labels: class indices must be in 0..{} (numClasses {c}), found values in {lo}..={hi}", c - 1);
            }
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(Error::Config(format!("segmentation step: lr must be a finite number ≥ 0, got {lr}")));
        }
        if self.cfg.unfreeze {
            seed_drop_path(self.cfg.seed, self.opt.step, self.dist.rank());
        }
        let (loss, terms) = if b > 0 {
            let target = labels.f_to_kind(Kind::Int64)?.f_to_device(self.device())?;
            let z = self.logits(images, true)?;
            let (loss, ce, dice) = ce_dice_loss(&z, &target, 1e-6)?;
            let terms = [ce.f_double_value(&[])?, dice.f_double_value(&[])?, loss.f_double_value(&[])?];
            (Some(loss), terms)
        } else {
            (None, [0.0; 3])
        };
        // Every image of the global batch weighs the same: kᵣ = bᵣ images.
        let names = ["segmentation cross-entropy", "segmentation soft Dice", "segmentation loss"];
        let global = LossTerms::new(b as f64, names, terms).over_ranks(self.dist.as_ref(), self.device(), self.opt.step)?;
        let [ce, soft_dice, loss_value] = global.values;
        let values = UpdateValues { lr, last_layer_lr: lr, wd: self.cfg.weight_decay, max_norm: self.cfg.clip_grad };
        let grad_norm = backward_and_update(self.dist.as_ref(), &mut self.opt, loss.as_ref(), b as f64, global.weight, values)?;
        Ok(SegStepRecord { step: self.opt.step, lr, loss: loss_value, ce, soft_dice, grad_norm })
    }

    /// Prediction without gradients: argmax class map (B, H, W) uint8 on the CPU, and the float32 logits
    /// (B, C, H, W) on the CPU when `with_logits`.
    pub fn predict(&self, images: &Tensor, with_logits: bool) -> Result<(Tensor, Option<Tensor>)> {
        let z = self.logits(images, false)?;
        let labels = z.f_argmax(1, false)?.f_to_kind(Kind::Uint8)?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let logits = if with_logits { Some(z.f_to_device(Device::Cpu)?.f_contiguous()?) } else { None };
        Ok((labels, logits))
    }

    /// Names → tensors of the state file (see the module docs); the parameters share storage with the model.
    pub fn state(&self, with_optimizer: bool) -> BTreeMap<String, Tensor> {
        let mut t = BTreeMap::new();
        for (n, v) in sorted_vars(&self.head_vs) {
            t.insert(format!("head.{n}"), v.detach());
        }
        if self.cfg.unfreeze {
            for (n, v) in sorted_vars(&self.backbone.vs) {
                t.insert(format!("backbone.{n}"), v.detach());
            }
        }
        if with_optimizer {
            for s in &self.opt.slots {
                t.insert(format!("optim.exp_avg.{}", s.name), s.exp_avg.shallow_clone());
                t.insert(format!("optim.exp_avg_sq.{}", s.name), s.exp_avg_sq.shallow_clone());
            }
        }
        t
    }

    /// The whole training state: [`SegModel::state`] with the optimizer, the optimizer step and the config.
    pub fn train_state(&self) -> Result<TrainState> {
        let tensors = self.state(true).into_iter().map(|(k, t)| Ok((k, t.f_to_device(Device::Cpu)?))).collect::<Result<_>>()?;
        Ok(TrainState::new(StateKind::Seg, self.cfg.to_json(), self.opt.step, tensors))
    }

    /// Writes a file atomically, with `extra` as metadata: with the optimizer, the training state
    /// ([`TrainState::save`], to resume: `last.safetensors`); without, the model alone (`best.safetensors`): the
    /// `head.*` and (unfrozen) `backbone.*` tensors with the metadata `format: cxformer-seg`, `config` (SegConfig
    /// JSON) and `backbone_config` (VitConfig JSON), which `cxformer evaluate` reads.
    pub fn save(&self, path: impl AsRef<Path>, with_optimizer: bool, extra: HashMap<String, String>) -> Result<()> {
        if with_optimizer {
            let mut st = self.train_state()?;
            st.metadata = extra;
            return st.save(path.as_ref());
        }
        let mut md = extra;
        md.insert("format".into(), SEG_FORMAT.into());
        md.insert("config".into(), self.cfg.to_json());
        md.insert("backbone_config".into(), self.backbone.vit.cfg.to_json());
        write_safetensors(path.as_ref(), &self.state(false), md)
    }

    /// Loads a file written by [`SegModel::save`]: a training state (of any version) with
    /// [`SegModel::load_state`], collectively under a process group; a model saved without its optimizer with
    /// [`SegModel::load_weights`], locally (one rank may evaluate alone). A file that cannot be opened is an
    /// error of this rank alone. Returns the caller's metadata.
    pub fn load(&mut self, path: impl AsRef<Path>, force: bool) -> Result<HashMap<String, String>> {
        let file = WeightFile::open(path.as_ref())?;
        if TrainState::is_state(&file.metadata(), &file.names()) {
            drop(file);
            self.load_state(path, force)
        } else {
            self.load_weights(path)
        }
    }

    /// Restores a training state written by [`SegModel::save`] with the optimizer, or a version-1
    /// `last.safetensors` (converted, see [`crate::train::state`]): strict ([`TrainState::check`]; a state of
    /// another configuration only with `force`). Under a process group (W > 1) this is collective: every rank
    /// reads its file, the ranks agree that every one succeeded, then rank 0's state is broadcast
    /// ([`SegModel::sync_from_rank0`]). Returns the caller's metadata.
    pub fn load_state(&mut self, path: impl AsRef<Path>, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(TrainState::read(path.as_ref(), StateKind::Seg), force)
    }

    /// [`SegModel::load_state`] of a state in memory.
    pub fn restore(&mut self, state: TrainState, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(Ok(state), force)
    }

    fn restore_checked(&mut self, state: Result<TrainState>, force: bool) -> Result<HashMap<String, String>> {
        let live = self.state(true);
        let config = self.cfg.to_json();
        let state = state.and_then(|s| s.check(StateKind::Seg, &config, force, &live, |_| false).map(|()| s));
        let state = agree(self.dist.as_ref(), state, "loading the segmentation state")?;
        // `state(true)` detached the parameters (same storage) and shallow-cloned the moments: the copies write
        // into the live tensors.
        copy_into(&live, &state)?;
        self.opt.step = state.step;
        self.sync_from_rank0()?;
        Ok(state.metadata)
    }

    /// Loads a model saved without its optimizer by [`SegModel::save`] (`best.safetensors`) for this model's
    /// configuration: every `head.*` variable (and `backbone.*` when unfrozen) must be present with its shape,
    /// nothing else; the head structure in its `config` must match. Local, also in a data-parallel run. Returns the
    /// metadata.
    pub fn load_weights(&mut self, path: impl AsRef<Path>) -> Result<HashMap<String, String>> {
        let file = WeightFile::open(path.as_ref())?;
        let md = file.metadata();
        let p = &file.path;
        if md.get("format").map(String::as_str) != Some(SEG_FORMAT) {
            return Err(Error::weights(p, format!("not a cxformer segmentation model (metadata format is {:?}, expected '{SEG_FORMAT}')", md.get("format"))));
        }
        if let Some(c) = md.get("config") {
            let saved = SegConfig::from_json(c).map_err(|e| Error::weights(p, e.to_string()))?;
            if saved.head != self.cfg.head || saved.num_classes != self.cfg.num_classes || saved.unfreeze != self.cfg.unfreeze
                || (saved.head == SegHeadKind::Progressive && (saved.layers != self.cfg.layers || saved.hidden != self.cfg.hidden || saved.stages != self.cfg.stages))
            {
                return Err(Error::weights(p, format!("the file was saved with head config {c}, which does not match this model's {}", self.cfg.to_json())));
            }
        }
        let tensors = file.tensors()?;
        let expected: BTreeMap<String, Tensor> = self.state(false);
        let missing: Vec<&String> = expected.keys().filter(|k| !tensors.contains_key(*k)).collect();
        if !missing.is_empty() {
            let n = missing.len();
            let list: Vec<String> = missing.iter().take(5).map(|s| s.to_string()).collect();
            return Err(Error::weights(p, format!("{n} tensor(s) missing, e.g. {} (head {:?}, unfreeze {})", list.join(", "), self.cfg.head, self.cfg.unfreeze)));
        }
        if let Some(extra) = tensors.keys().find(|k| !expected.contains_key(*k)) {
            return Err(Error::weights(p, format!("unexpected tensor '{extra}' for head {:?} with unfreeze {}", self.cfg.head, self.cfg.unfreeze)));
        }
        for (name, dst) in expected.iter() {
            let src = &tensors[name];
            if src.size() != dst.size() {
                return Err(Error::weights(p, format!("tensor '{name}' has shape {:?}, the model expects {:?}", src.size(), dst.size())));
            }
        }
        tch::no_grad(|| -> Result<()> {
            for (name, dst) in expected.iter() {
                let src = tensors[name].f_to_kind(dst.kind())?.f_to_device(dst.device())?;
                dst.shallow_clone().f_copy_(&src)?;
            }
            Ok(())
        })?;
        Ok(md)
    }
}

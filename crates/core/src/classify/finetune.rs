//! Full fine-tuning of the backbone for classification (docs/recipe.md §5.1, as meant: the backbone gets gradients — the
//! shipped recipe's inverted `no_grad` (docs/recipe.md §7.7) is not reproduced).
//!
//! - **Model**: the ViT ([`crate::model::Vit`]) + a head on the DINOv2 linear-protocol features, exactly those of the
//!   linear mode (src/finetune/features.ts): concat[CLS token of each of the last `clsLayers` blocks after the final
//!   norm] (+ with `avgpool` the mean of the last block's normed patch tokens, registers excluded), then the head of
//!   [`crate::classify::head`] (linear `N(0, 0.01²)`/0, or an MLP with GELU), initialised from the same seeded stream. A head
//!   and backbone exported from here ([`FineTuner::export`]) are therefore evaluated by `cxformer evaluate` unchanged.
//! - **Loss**: [`crate::classify::loss::masked_loss`]: masked BCE-with-logits over the supervised entries (`multilabel`,
//!   `binary`, optional per-class `posWeight`) or softmax cross-entropy (`multiclass`, class index in column 0 of the
//!   targets, row supervised when `mask[:, 0]` ≠ 0). Computed in float32 (outside autocast). A batch without a
//!   supervised entry (on every process) has loss 0, takes **no optimizer update**, and only advances the schedule.
//! - **Optimizer**: AdamW ([`crate::train::optim::AdamW`], torch semantics) with parameter groups:
//!   head lr = `headLr`; a backbone parameter gets `backboneLr · layerwiseDecay^(depth + 1 − layer_id)` with
//!   DINOv2/BEiT's layer ids (0 for patch_embed / pos_embed / cls_token / register_tokens / mask_token, i + 1 for
//!   blocks.i, depth + 1 for the final norm; [`crate::train::optim::backbone_group`]) and × `patchEmbedLrMult` for
//!   patch_embed.*. Weight decay (`weightDecay`, decoupled) applies to weight matrices only: never to biases,
//!   norms, LayerScale gammas, pos_embed, cls_token, register_tokens or mask_token. `backboneLr = 0` freezes the
//!   backbone (no gradients are computed for it).
//! - **Schedule, per scheduled step** s (a train-step call; S = `stepsPerEpoch`, T = epochs·S, W = warmupEpochs·S):
//!   factor(s) = linspace(0, 1, W)[s] during the warm-up, then ½(1 + cos(π(s − W)/(T − W))) (`cosine`, 0 from T on)
//!   or 1 (`constant`); every group's lr is its base lr × factor(s) (the probe's schedule, [`crate::train::schedule::lr_at`]).
//! - **Step order**: forward (bf16 autocast when `precision` is bf16; meant for CUDA, f32 on the CPU) → loss →
//!   (data parallel: one all-reduce of [supervised entries, loss · entries]) → NaN check (nothing modified on
//!   failure; with several processes every one stops at the same step) → backward → gradient all-reduce
//!   ([`Collective`]) → total-norm clipping over all parameters (`clipGrad`, HF Trainer's max_grad_norm 1.0) → AdamW:
//!   the protocol of [`crate::train::step`].
//! - **Data parallelism** ([`FineTuner::set_dist`]): rank 0's whole state is broadcast when a process group is
//!   set and after every [`FineTuner::load_state`]. The gradient is the mean over **every supervised entry of all
//!   processes** (each rank back-propagates its loss × kᵣ·W/K, kᵣ its entries, K their sum, then gradients are
//!   averaged): exactly the single-process gradient of the concatenated batch, also when the ranks' batches hold
//!   different numbers of supervised entries (a rank with none contributes zero). The reported loss and entries
//!   are those of the whole global batch.
//! - **Randomness**: stochastic depth (`model.drop_path_rate`) draws from LibTorch's generator, seeded from
//!   (seed, step, rank) before each step (rank 0 draws the single-process stream), so a resumed run draws what the
//!   uninterrupted run drew. Data order and augmentations are chosen by the caller.
//! - **State**: [`FineTuner::save_state`] writes model, optimizer moments, step counters and caller metadata (epoch,
//!   batch position…) in the one training-state format ([`crate::train::state`]), atomically;
//!   [`FineTuner::load_state`] restores it strictly (version-1 files too), collectively under a process group. The
//!   plumbing is the shared [`crate::train::state::TrainerState`]; this file says where the state lives.
use super::config::{FinetuneConfig, ProbeTask};
use super::head::{FittedHead, forward, init_layers};
use super::loss::{check_classes, masked_loss};
use crate::augment::multicrop::multicrop_imagenet;
use crate::augment::params::ImageCrops;
use crate::bail_shape;
use crate::error::Result;
use crate::model::{ForwardOptions, Vit, sorted_vars};
use crate::train::collective::{Collective, SingleProcess};
use crate::train::optim::{AdamW, ParamGroup, backbone_group, finetune_wd_mult};
use crate::train::state::{SCHEDULED_STEPS, StateKind, TrainState, TrainerState};
use crate::train::step::{LossTerms, UpdateValues, backward_and_update, seed_drop_path};
use crate::weights::{LoadReport, SaveLayout, WeightFile, load_backbone, save_backbone};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// The group of backbone parameter `name` (original DINOv2 names) relative to the head lr: lr_mult =
/// (backboneLr / headLr)·decay^(depth + 1 − layer_id)·(patch_embed ? patchEmbedLrMult : 1).
pub fn finetune_backbone_group(cfg: &FinetuneConfig, name: &str) -> ParamGroup {
    let g = backbone_group(name, cfg.model.depth, cfg.layerwise_decay, cfg.patch_embed_lr_mult);
    ParamGroup { lr_mult: g.lr_mult * cfg.backbone_lr / cfg.head_lr, wd_mult: finetune_wd_mult(name), is_last_layer: false }
}

/// What one training step reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The scheduled step this was (0-based).
    pub step: i64,
    /// Loss over the batch's supervised entries (0 when none); data parallel: over the global batch's.
    pub loss: f64,
    /// Supervised entries (rows for multiclass) in the batch (of every process: the global batch).
    pub entries: i64,
    /// Head lr of the step (a backbone group's lr is this × its multiplier).
    pub lr: f64,
    /// Total gradient norm before clipping (0 when skipped).
    pub grad_norm: f64,
    /// No update was taken (nothing supervised on any process).
    pub skipped: bool,
}

/// Predictions of a batch: probabilities (B, C) float32 on the CPU and, with targets, the summed loss and count.
pub struct Prediction {
    pub probs: Tensor,
    pub logits: Tensor,
    pub loss_sum: Option<f64>,
    pub entries: Option<i64>,
}

pub struct FineTuner {
    pub cfg: FinetuneConfig,
    pub device: Device,
    pub vs: nn::VarStore,
    pub vit: Vit,
    /// (weight (out, in), bias (out)) per head layer, on the device.
    pub head: Vec<(Tensor, Tensor)>,
    pub optimizer: AdamW,
    /// Gradient averaging across processes (SingleProcess by default).
    pub dist: Box<dyn Collective>,
    /// Scheduled steps taken (train-step calls, skipped batches included).
    pub step: i64,
    pos_weight: Option<Tensor>,
}

impl FineTuner {
    /// Backbone from `init_weights` (strict load, any supported layout) or DINOv2's from-scratch init seeded with
    /// `seed`; head from the config's seed; fresh AdamW. Returns the load report when weights were given.
    pub fn new(cfg: FinetuneConfig, device: Device, init_weights: Option<&Path>, seed: i64) -> Result<(Self, Option<LoadReport>)> {
        cfg.validate()?;
        let crate::Backbone { vs, vit } = crate::Backbone::random(&cfg.model, device, seed)?;
        let report = match init_weights {
            Some(p) => Some(load_backbone(&vs, &WeightFile::open(p)?)?),
            None => None,
        };
        let mut widths = vec![cfg.feature_dim()];
        widths.extend(&cfg.hidden);
        widths.push(cfg.num_classes);
        let head: Vec<(Tensor, Tensor)> = init_layers(&widths, cfg.seed)
            .into_iter()
            .map(|(w, b)| Ok((w.f_to_device(device)?.set_requires_grad(true), b.f_to_device(device)?.set_requires_grad(true))))
            .collect::<Result<_>>()?;
        let frozen = cfg.backbone_lr == 0.0;
        let mut params = Vec::new();
        for (name, t) in sorted_vars(&vs) {
            if frozen {
                let _ = t.set_requires_grad(false);
            }
            let g = finetune_backbone_group(&cfg, &name);
            params.push((format!("backbone.{name}"), t, g));
        }
        for (i, (w, b)) in head.iter().enumerate() {
            params.push((format!("head.{i}.weight"), w.shallow_clone(), ParamGroup { lr_mult: 1.0, wd_mult: 1.0, is_last_layer: false }));
            params.push((format!("head.{i}.bias"), b.shallow_clone(), ParamGroup { lr_mult: 1.0, wd_mult: 0.0, is_last_layer: false }));
        }
        let optimizer = AdamW::new(params, cfg.adamw_betas[0], cfg.adamw_betas[1], cfg.adamw_eps);
        let pos_weight = match &cfg.pos_weight {
            Some(p) => Some(Tensor::f_from_slice(&p.iter().map(|&v| v as f32).collect::<Vec<_>>())?.f_to_device(device)?),
            None => None,
        };
        Ok((FineTuner { cfg, device, vs, vit, head, optimizer, dist: Box::new(SingleProcess), step: 0, pos_weight }, report))
    }

    /// Joins a process group (data parallelism): with W > 1 every rank's state becomes rank 0's
    /// ([`FineTuner::sync_from_rank0`]); from then on gradients and the reported loss are global. Collective: call
    /// it on every rank, after the initialisation from weights.
    pub fn set_dist(&mut self, dist: Box<dyn Collective>) -> Result<()> {
        self.dist = dist;
        self.sync_from_rank0()
    }

    /// Broadcasts rank 0's training state (backbone parameters and buffers, head, AdamW moments, optimizer and
    /// schedule step counts) to every rank. Collective; no-op on one process.
    pub fn sync_from_rank0(&mut self) -> Result<()> {
        TrainerState::sync_from_rank0(self)
    }

    /// (parameter name, lr multiplier relative to the head lr, weight-decay multiplier) of every optimised parameter.
    pub fn groups(&self) -> Vec<(String, f64, f64)> {
        self.optimizer.slots.iter().map(|s| (s.name.clone(), s.group.lr_mult, s.group.wd_mult)).collect()
    }

    /// Features (B, F) float32 of normalised pixels (B, 3, H, W) on the device (see the module docs).
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = self.cfg.cls_layers;
        let out = self.vit.forward(
            x,
            &ForwardOptions { masks: None, intermediate_layers: (-n..0).collect(), norm_intermediates: true, train },
        )?;
        let mut parts: Vec<Tensor> = out.intermediates.iter().map(|t| t.f_select(1, 0)).collect::<std::result::Result<_, _>>()?;
        if self.cfg.avgpool {
            parts.push(out.patches.f_to_kind(Kind::Float)?.f_mean_dim(&[1i64][..], false, Kind::Float)?);
        }
        let parts: Vec<Tensor> = parts.into_iter().map(|p| p.f_to_kind(Kind::Float)).collect::<std::result::Result<_, _>>()?;
        Ok(Tensor::f_cat(&parts, 1)?)
    }

    /// Logits (B, C) float32 on the device.
    fn logits(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let _ac = self.cfg.precision.autocast(self.device)?;
        let f = self.features(x, train)?;
        Ok(forward(&self.head, &f)?.f_to_kind(Kind::Float)?)
    }

    fn check_pixels(&self, x: &Tensor) -> Result<()> {
        if x.dim() != 4 || x.kind() != Kind::Float {
            bail_shape!("pixel values: expected a (B, 3, H, W) float32 tensor, got {:?} {:?}", x.size(), x.kind());
        }
        if x.size()[0] == 0 {
            bail_shape!("pixel values: empty batch {:?}", x.size());
        }
        Ok(())
    }

    /// Targets (B, C) float and mask (B, C) bool on the device, checked against the batch and C.
    fn check_targets(&self, b: i64, y: &Tensor, m: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = self.cfg.num_classes;
        if y.size() != [b, c] || m.size() != [b, c] {
            bail_shape!("targets {:?} and mask {:?} must both be (B, C) = [{b}, {c}]", y.size(), m.size());
        }
        let y = y.f_to_kind(Kind::Float)?;
        let m = if m.kind() == Kind::Bool { m.shallow_clone() } else { m.f_ne(0)? };
        if self.cfg.task == ProbeTask::Multiclass {
            check_classes("batch", &y, &m, c)?;
        } else {
            let bad = y.f_isfinite()?.f_logical_not()?.f_logical_and(&m)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
            if bad > 0 {
                bail_shape!("targets: {bad} supervised (unmasked) entries are NaN or infinite");
            }
        }
        Ok((y.f_to_device(self.device)?, m.f_to_device(self.device)?))
    }

    /// One training step on normalised pixels (B, 3, S, S), targets and mask (B, C) (nonzero = supervised).
    /// Errors: Shape for bad inputs, NonFinite when the loss is NaN/∞ (before anything is modified).
    pub fn train_step(&mut self, x: &Tensor, y: &Tensor, m: &Tensor) -> Result<StepReport> {
        self.check_pixels(x)?;
        let b = x.size()[0];
        let (y, m) = self.check_targets(b, y, m)?;
        let x = x.f_to_device(self.device)?;
        let step = self.step;
        let lr = self.cfg.head_lr * self.cfg.lr_factor(step);
        seed_drop_path(self.cfg.seed, step, self.dist.rank());
        let logits = self.logits(&x, true)?;
        let (loss, k) = masked_loss(&logits, &y, &m, self.cfg.task, self.pos_weight.as_ref())?;
        // The global batch weighs its K supervised entries (kᵣ per rank); K decides whether an update happens, the
        // same decision everywhere.
        let global = LossTerms::new(k as f64, ["fine-tuning train loss"], [loss.f_double_value(&[])?])
            .over_ranks(self.dist.as_ref(), self.device, step)?;
        let ([lv], total) = (global.values, global.weight);
        self.step += 1;
        if total == 0.0 {
            return Ok(StepReport { step, loss: 0.0, entries: 0, lr, grad_norm: 0.0, skipped: true });
        }
        let values = UpdateValues { lr, last_layer_lr: lr, wd: self.cfg.weight_decay, max_norm: self.cfg.clip_grad };
        let grad_norm = backward_and_update(self.dist.as_ref(), &mut self.optimizer, Some(&loss), k as f64, total, values)?;
        Ok(StepReport { step, loss: lv, entries: total as i64, lr, grad_norm, skipped: false })
    }

    /// [`FineTuner::train_step`] on decoded uint8 gray images (H, W) and their crop plan (one global crop of side
    /// `size` per image), augmented on the training device and normalised with ImageNet's mean and std.
    pub fn train_step_images(&mut self, images: &[Tensor], crops: &[ImageCrops], size: i64, y: &Tensor, m: &Tensor) -> Result<StepReport> {
        let x = multicrop_imagenet(images, crops, size, size, self.device)?.globals;
        self.train_step(&x, y, m)
    }

    /// Eval-mode predictions (no gradients) of normalised pixels; with targets/mask also the summed loss over the
    /// supervised entries and their count (mean = loss_sum / entries).
    pub fn predict(&self, x: &Tensor, targets: Option<(&Tensor, &Tensor)>) -> Result<Prediction> {
        self.check_pixels(x)?;
        let b = x.size()[0];
        let checked = match targets {
            Some((y, m)) => Some(self.check_targets(b, y, m)?),
            None => None,
        };
        tch::no_grad(|| {
            let x = x.f_to_device(self.device)?;
            let logits = self.logits(&x, false)?;
            let probs = match self.cfg.task {
                ProbeTask::Multiclass => logits.f_softmax(1, Kind::Float)?,
                _ => logits.f_sigmoid()?,
            };
            let (loss_sum, entries) = match &checked {
                Some((y, m)) => {
                    let (l, k) = masked_loss(&logits, y, m, self.cfg.task, self.pos_weight.as_ref())?;
                    (Some(l.f_double_value(&[])? * k as f64), Some(k))
                }
                None => (None, None),
            };
            Ok(Prediction {
                probs: probs.f_to_device(Device::Cpu)?,
                logits: logits.f_to_device(Device::Cpu)?,
                loss_sum,
                entries,
            })
        })
    }

    /// Every tensor of the training state (on the CPU; CPU tensors share storage with the model): `backbone.<name>`,
    /// `head.<i>.weight|bias`, `optim.exp_avg.<param>`, `optim.exp_avg_sq.<param>`.
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        TrainerState::state(self)
    }

    /// The whole training state: [`FineTuner::state`], the optimizer step, the scheduled steps (counter
    /// [`SCHEDULED_STEPS`]) and the config.
    pub fn train_state(&self) -> Result<TrainState> {
        TrainerState::train_state(self)
    }

    /// Writes the training state atomically ([`TrainState::save`]) with `metadata` (the caller's epoch, batch
    /// position, history…).
    pub fn save_state(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        TrainerState::save_state(self, path, metadata)
    }

    /// Restores a state written by [`FineTuner::save_state`], or a version-1 state (converted, see
    /// [`crate::train::state`]): every tensor present with its shape, nothing extra, else nothing is loaded. A state
    /// written with another configuration is refused, naming the differing keys, unless `allow_config_change` (resuming
    /// with new training values on purpose). Returns the caller's metadata. Under a process group (W > 1) this is
    /// collective: every rank reads its file, the ranks agree that every one succeeded, then rank 0's state is
    /// broadcast ([`FineTuner::sync_from_rank0`]); the order is [`TrainerState::restore_checked`]'s.
    pub fn load_state(&mut self, path: &Path, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::load_state(self, path, allow_config_change)
    }

    /// [`FineTuner::load_state`] of a state in memory.
    pub fn restore(&mut self, state: TrainState, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::restore(self, state, allow_config_change)
    }

    /// The head as a [`FittedHead`] (CPU copies), as the linear mode saves it.
    pub fn fitted_head(&self) -> Result<FittedHead> {
        let mut t = BTreeMap::new();
        for (i, (w, b)) in self.head.iter().enumerate() {
            t.insert(format!("head.{i}.weight"), w.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?);
            t.insert(format!("head.{i}.bias"), b.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?);
        }
        FittedHead::from_tensors(self.cfg.probe_config(), &t)
    }

    /// Writes the backbone (HF layout, float32, with its config in the metadata) and the head (the linear mode's
    /// `cxformer-probe-head` file, `head_metadata` added), each atomically.
    pub fn export(&self, backbone_file: &Path, head_file: &Path, head_metadata: HashMap<String, String>) -> Result<()> {
        let mut md = HashMap::new();
        md.insert("format".to_string(), "pt".to_string());
        md.insert("cxformer_config".to_string(), self.cfg.model.to_json());
        md.insert("cxformer_layout".to_string(), "hf".to_string());
        save_backbone(&self.vs, backbone_file, SaveLayout::Hf, Kind::Float, md)?;
        self.fitted_head()?.save(head_file, head_metadata)
    }
}

/// The state plumbing ([`crate::train::state::TrainerState`]): kind `finetune`, the counter `scheduled_steps`.
impl TrainerState for FineTuner {
    const KIND: StateKind = StateKind::Finetune;
    const LOADING: &'static str = "loading the fine-tuning state";
    const COUNTERS: &'static [&'static str] = &[SCHEDULED_STEPS];

    fn config_json(&self) -> String {
        self.cfg.to_json()
    }

    /// The live parameters and AdamW moments under their checkpoint names, sharing storage with the model:
    /// `backbone.<name>` (buffers included), `head.<i>.weight|bias`, `optim.exp_avg.<param>`, `optim.exp_avg_sq.<param>`.
    fn live(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (name, t) in sorted_vars(&self.vs) {
            out.insert(format!("backbone.{name}"), t);
        }
        for (i, (w, b)) in self.head.iter().enumerate() {
            out.insert(format!("head.{i}.weight"), w.shallow_clone());
            out.insert(format!("head.{i}.bias"), b.shallow_clone());
        }
        for s in &self.optimizer.slots {
            out.insert(format!("optim.exp_avg.{}", s.name), s.exp_avg.shallow_clone());
            out.insert(format!("optim.exp_avg_sq.{}", s.name), s.exp_avg_sq.shallow_clone());
        }
        out
    }

    fn dist(&self) -> &dyn Collective {
        self.dist.as_ref()
    }

    fn counters(&self) -> Vec<i64> {
        vec![self.optimizer.step, self.step]
    }

    fn set_counters(&mut self, values: &[i64]) {
        [self.optimizer.step, self.step] = [values[0], values[1]];
    }
}

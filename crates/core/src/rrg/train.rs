//! [`ReportTrainer`]: teacher-forced training of the report captioner on the shared harness
//! ([`crate::train`]), shaped like [`crate::classify::finetune::FineTuner`].
//!
//! - **Inputs**: encoder features (B, M, D_vit) float32 (the frozen encoder's memory tokens, cached by the caller
//!   or taken with [`crate::rrg::memory_tokens`] under `tch::no_grad`), an optional memory mask (B, M) for
//!   memories padded to one length, and reports (B, T) int64 `[BOS] … [EOS]` right-padded with 0; with an encoder
//!   trained end to end, normalised pixels (B, 3, H, W) instead of features.
//! - **Loss**: [`crate::rrg::ReportModel::loss`]: label-smoothed cross-entropy over the non-pad targets, in
//!   float32 (outside autocast). A batch without a target (on every process) takes no update and only advances
//!   the schedule.
//! - **Optimizer**: AdamW ([`crate::train::optim::AdamW`], torch semantics), one lr for every parameter; the
//!   decoupled weight decay applies to the 2-D parameters (linear weights, token and position embeddings, as
//!   nanoGPT's `configure_optimizers`), never to biases or LayerNorms.
//! - **Schedule**, per optimizer step s: linspace(0, lr, W) warm-up then cosine to 0 at T (or constant):
//!   [`crate::train::schedule::lr_at`] with `warmupSteps`, `totalSteps`, `schedule`.
//! - **Step order** ([`crate::train::step`]): dropout seeded from (seed, step, rank)
//!   ([`crate::train::step::seed_drop_path`], under the crate's generator lock) → forward (bf16 autocast when
//!   `precision` is bf16 and the device is CUDA; f32 otherwise) → loss → (data parallel: one all-reduce of
//!   [targets, loss · targets]) → NaN check (nothing modified on failure) → backward scaled by kᵣ·W/K →
//!   gradient all-reduce ([`Collective`]) → total-norm clipping (`clipGrad`) → AdamW.
//! - **Data parallelism** ([`ReportTrainer::set_dist`]): rank 0's state is broadcast at `set_dist` and after
//!   every load; the gradient is that of the mean loss over every target of the global batch. Dropout differs
//!   per rank (each rank draws its own stream), so W ranks × b equal 1 process × W·b exactly only without dropout.
//! - **State**: [`ReportTrainer::save_state`] / [`ReportTrainer::load_state`] in the one training-state format
//!   ([`crate::train::state`], kind `rrg`): parameters under their model keys, `optim.exp_avg.<key>`,
//!   `optim.exp_avg_sq.<key>`, the optimizer step and the counters `scheduled_steps` and `seed`; atomic writes,
//!   strict loads, exact resume (the dropout streams depend only on (seed, step, rank), and the seed is restored).
//!   The plumbing is the shared [`crate::train::state::TrainerState`]; this file says where the state lives.
//! - **Export** ([`ReportTrainer::export`]): `model.safetensors` + `config.json` ([`crate::rrg::ReportModel::save`]).
//!
//! - **Encoder trained end to end** (`encoder` in the config, [`ReportTrainer::create_with`]): the trainer holds
//!   the [`crate::model::Vit`] (weights loaded strictly, or DINOv2's from-scratch init from `seed`) and takes
//!   normalised pixels ([`ReportTrainer::step_pixels`]): the memory is computed with
//!   [`crate::rrg::memory_tokens`] (training mode, stochastic depth when configured) inside the autocast region,
//!   gradients flowing, before the same loss and update. Its parameters join AdamW as `backbone.<name>` with full
//!   fine-tuning's groups ([`crate::classify::finetune`]: lr = backboneLr·decay^(depth + 1 − layer_id), ×
//!   patchEmbedLrMult for patch_embed, weight decay on weight matrices only); blocks after the memory block get no
//!   gradient and stay put. The state then carries the `backbone.*` tensors and their moments;
//!   [`ReportTrainer::export_encoder`] writes the ViT (HF layout) and [`ReportTrainer::memory`] gives the memory
//!   of the encoder being trained (eval mode) for decoding. With `backboneLr` 0 the encoder is frozen inside the
//!   trainer: no gradients, no optimizer slots, the memory computed in eval mode at every step (the cached-memory
//!   recipe for data sets whose memories would not fit on disk or in RAM); its tensors are still part of the state.
use super::config::EncoderTrainConfig;
use super::{ReportModel, RrgTrainConfig, label_smoothed_ce, memory_tokens};
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::model::{Vit, sorted_vars};
use crate::train::collective::{Collective, SingleProcess};
use crate::train::optim::{AdamW, ParamGroup, backbone_group, finetune_wd_mult};
use crate::weights::{LoadReport, SaveLayout, WeightFile, load_backbone, save_backbone};
use crate::train::state::{SCHEDULED_STEPS, StateKind, TrainState, TrainerState};
use crate::train::step::{LossTerms, UpdateValues, backward_and_update, seed_drop_path};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// The state counter holding the trainer's seed (the dropout streams depend on it): a resumed run draws what the
/// uninterrupted run drew whatever seed the resuming trainer was created with.
pub const SEED_COUNTER: &str = "seed";

/// What one training step reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The scheduled step this was (0-based).
    pub step: i64,
    /// Mean loss over the batch's targets (data parallel: the global batch's); 0 when none.
    pub loss: f64,
    /// Targets (non-pad tokens after BOS) counted, of every process.
    pub tokens: i64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Total gradient norm before clipping (0 when skipped).
    pub grad_norm: f64,
    /// No update was taken (no target on any process).
    pub skipped: bool,
}

/// The loss of an evaluation batch.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    /// Mean label-smoothed loss over the targets (0 when none); combine batches weighted by `tokens`.
    pub loss: f64,
    /// Targets counted.
    pub tokens: i64,
}

/// The encoder trained end to end with the captioner.
pub struct ReportEncoder {
    /// Its variables (original DINOv2 names).
    pub vs: nn::VarStore,
    pub vit: Vit,
}

/// What the memory is computed from.
#[derive(Clone, Copy)]
pub enum MemoryInput<'a> {
    /// Encoder features (B, M, D_vit) of a frozen encoder.
    Features(&'a Tensor),
    /// Normalised pixels (B, 3, H, W) for the encoder being trained.
    Pixels(&'a Tensor),
}

impl MemoryInput<'_> {
    fn rows(&self) -> i64 {
        let t = match self {
            MemoryInput::Features(t) | MemoryInput::Pixels(t) => t,
        };
        if t.dim() >= 1 { t.size()[0] } else { 0 }
    }
}

/// The AdamW group of encoder parameter `name` relative to the decoder lr (see the module docs).
pub fn encoder_group(e: &EncoderTrainConfig, lr: f64, name: &str) -> ParamGroup {
    let g = backbone_group(name, e.model.depth, e.layerwise_decay, e.patch_embed_lr_mult);
    ParamGroup { lr_mult: g.lr_mult * e.backbone_lr / lr, wd_mult: finetune_wd_mult(name), is_last_layer: false }
}

/// The captioner trainer (see the module docs).
pub struct ReportTrainer {
    /// The training config (its JSON is compared when a state is loaded).
    pub cfg: RrgTrainConfig,
    /// The model being trained.
    pub model: ReportModel,
    /// AdamW over every model parameter, in sorted key order (slot names = model keys).
    pub optimizer: AdamW,
    /// Gradient averaging across processes (SingleProcess by default).
    pub dist: Box<dyn Collective>,
    /// Initialisation and dropout seed.
    pub seed: i64,
    /// Scheduled steps taken (step calls, skipped batches included).
    pub step: i64,
    /// The encoder trained end to end (config `encoder`), or None (frozen: the caller gives features).
    pub encoder: Option<ReportEncoder>,
}

impl ReportTrainer {
    /// A fresh model ([`ReportModel::new`] seeded with `seed`) and AdamW on `device`; with an `encoder` in the
    /// config, its ViT from DINOv2's from-scratch init (use [`ReportTrainer::create_with`] to start from weights).
    pub fn create(cfg: RrgTrainConfig, device: Device, seed: i64) -> Result<Self> {
        Ok(Self::create_with(cfg, device, seed, None)?.0)
    }

    /// [`ReportTrainer::create`] with the encoder's initial weights loaded strictly from `encoder_weights` (any
    /// layout cxformer reads); returns the load report. Weights without an `encoder` in the config are an error.
    pub fn create_with(cfg: RrgTrainConfig, device: Device, seed: i64, encoder_weights: Option<&Path>) -> Result<(Self, Option<LoadReport>)> {
        cfg.validate()?;
        let model = ReportModel::new(cfg.model.clone(), device, seed)?;
        let mut params: Vec<(String, Tensor, ParamGroup)> = sorted_vars(&model.vs)
            .into_iter()
            .map(|(name, t)| {
                let wd_mult = if t.dim() >= 2 { 1.0 } else { 0.0 };
                (name, t, ParamGroup { lr_mult: 1.0, wd_mult, is_last_layer: false })
            })
            .collect();
        let (encoder, report) = match &cfg.encoder {
            None if encoder_weights.is_some() => {
                return Err(Error::Config("report trainer: encoder weights were given but the config has no encoder (a frozen encoder's features come from the caller)".into()));
            }
            None => (None, None),
            Some(e) => {
                let crate::Backbone { vs, vit } = crate::Backbone::random(&e.model, device, seed)?;
                let report = match encoder_weights {
                    Some(p) => Some(load_backbone(&vs, &WeightFile::open(p)?)?),
                    None => None,
                };
                for (name, t) in sorted_vars(&vs) {
                    if e.frozen() {
                        let _ = t.set_requires_grad(false);
                    } else {
                        let g = encoder_group(e, cfg.lr, &name);
                        params.push((format!("backbone.{name}"), t, g));
                    }
                }
                (Some(ReportEncoder { vs, vit }), report)
            }
        };
        let optimizer = AdamW::new(params, cfg.adamw_betas[0], cfg.adamw_betas[1], cfg.adamw_eps);
        Ok((ReportTrainer { cfg, model, optimizer, dist: Box::new(SingleProcess), seed, step: 0, encoder }, report))
    }

    /// Joins a process group: every rank's state becomes rank 0's; from then on gradients and reported losses
    /// are global. Collective: call it on every rank.
    pub fn set_dist(&mut self, dist: Box<dyn Collective>) -> Result<()> {
        self.dist = dist;
        self.sync_from_rank0()
    }

    /// Broadcasts rank 0's parameters, AdamW moments, counters and seed. Collective; no-op on one process.
    pub fn sync_from_rank0(&mut self) -> Result<()> {
        TrainerState::sync_from_rank0(self)
    }

    /// (parameter key, weight-decay multiplier) of every optimised parameter.
    pub fn groups(&self) -> Vec<(String, f64)> {
        self.optimizer.slots.iter().map(|s| (s.name.clone(), s.group.wd_mult)).collect()
    }

    /// The memory features of `input` on the device: features as given, or the encoder's memory of pixels
    /// (gradients flowing when the caller has them on; `train` = stochastic depth on).
    fn features(&self, input: MemoryInput, train: bool) -> Result<Tensor> {
        // `encoder` is built exactly when the config has one (create_with).
        let x = match (input, &self.encoder) {
            (MemoryInput::Features(f), None) => return Ok(f.shallow_clone()),
            (MemoryInput::Features(_), Some(_)) => {
                return Err(Error::Config("report trainer: this trainer trains its encoder: give it pixels (stepPixels / evaluatePixels), not memory features".into()));
            }
            (MemoryInput::Pixels(_), None) => {
                return Err(Error::Config("report trainer: pixels need an encoder in the config (a frozen encoder's features come from the caller)".into()));
            }
            (MemoryInput::Pixels(x), Some(_)) => x,
        };
        let (Some(enc), Some(e)) = (&self.encoder, &self.cfg.encoder) else {
            return Err(Error::Config("report trainer: the config's encoder section was removed after the trainer was created".into()));
        };
        if x.dim() != 4 || x.size()[1] != 3 || x.kind() != Kind::Float {
            bail_shape!("pixel values: expected a (B, 3, H, W) float32 tensor, got {:?} {:?}", x.size(), x.kind());
        }
        let x = x.f_to_device(self.model.vs.device())?;
        if e.frozen() {
            // A frozen encoder computes what the cached memories hold: eval mode, no gradients.
            return tch::no_grad(|| memory_tokens(&enc.vit, &x, e.block, e.pool, false));
        }
        memory_tokens(&enc.vit, &x, e.block, e.pool, train)
    }

    /// Loss (float32, outside autocast) and target count of one batch; `train` = dropout on.
    fn batch_loss(&self, input: MemoryInput, memory_mask: Option<&Tensor>, tokens: &Tensor, train: bool) -> Result<(Tensor, i64)> {
        if tokens.dim() != 2 || tokens.size()[1] < 2 || tokens.kind() != Kind::Int64 {
            bail_shape!("tokens: expected a (B, T) int64 tensor with T ≥ 2 ([BOS] … [EOS] padded with 0), got {:?} {:?}", tokens.size(), tokens.kind());
        }
        if tokens.size()[0] != input.rows() || input.rows() == 0 {
            bail_shape!("tokens {:?} and the memory input must have the same number of rows (≥ 1), got {}", tokens.size(), input.rows());
        }
        let device = self.model.vs.device();
        let t = tokens.size()[1];
        let tokens = tokens.f_to_device(device)?;
        let logits = {
            let _ac = if device.is_cuda() { self.cfg.precision.autocast(device)? } else { None };
            let features = self.features(input, train)?;
            self.model.forward(&features, memory_mask, &tokens.narrow(1, 0, t - 1), train)?
        };
        let v = self.model.cfg.vocab_size;
        let targets = tokens.narrow(1, 1, t - 1).reshape([-1]);
        label_smoothed_ce(&logits.reshape([-1, v]), &targets, self.model.cfg.pad_id, self.model.cfg.label_smoothing)
    }

    /// One training step (see the module docs for the order).
    ///
    /// # Shapes
    /// features: (B, M, D_vit) float32; memory_mask: (B, M) bool or None; tokens: (B, T) int64, 2 ≤ T ≤
    /// maxPositions + 1.
    ///
    /// Errors: Shape for bad inputs, NonFinite when the loss is NaN/∞ (before anything is modified).
    pub fn step(&mut self, features: &Tensor, memory_mask: Option<&Tensor>, tokens: &Tensor) -> Result<StepReport> {
        self.step_input(MemoryInput::Features(features), memory_mask, tokens)
    }

    /// [`ReportTrainer::step`] of a trainer with an encoder: the memory of normalised pixels (B, 3, H, W).
    pub fn step_pixels(&mut self, pixels: &Tensor, tokens: &Tensor) -> Result<StepReport> {
        self.step_input(MemoryInput::Pixels(pixels), None, tokens)
    }

    /// [`ReportTrainer::step`] of either input.
    pub fn step_input(&mut self, input: MemoryInput, memory_mask: Option<&Tensor>, tokens: &Tensor) -> Result<StepReport> {
        let step = self.step;
        let lr = self.cfg.lr_at(step);
        let (loss, k) = {
            let _rng = crate::backbone::RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            seed_drop_path(self.seed, step, self.dist.rank());
            self.batch_loss(input, memory_mask, tokens, true)?
        };
        let device = self.model.vs.device();
        let global = LossTerms::new(k as f64, ["report captioner train loss"], [loss.f_double_value(&[])?])
            .over_ranks(self.dist.as_ref(), device, step)?;
        let ([lv], total) = (global.values, global.weight);
        self.step += 1;
        if total == 0.0 {
            return Ok(StepReport { step, loss: 0.0, tokens: 0, lr, grad_norm: 0.0, skipped: true });
        }
        let values = UpdateValues { lr, last_layer_lr: lr, wd: self.cfg.weight_decay, max_norm: self.cfg.clip_grad };
        let loss = if k > 0 { Some(&loss) } else { None };
        let grad_norm = backward_and_update(self.dist.as_ref(), &mut self.optimizer, loss, k as f64, total, values)?;
        Ok(StepReport { step, loss: lv, tokens: total as i64, lr, grad_norm, skipped: false })
    }

    /// Eval-mode loss of a batch (no dropout, no gradients, float32; label smoothing included, as in training).
    /// Local to this process.
    pub fn evaluate(&self, features: &Tensor, memory_mask: Option<&Tensor>, tokens: &Tensor) -> Result<EvalReport> {
        self.evaluate_input(MemoryInput::Features(features), memory_mask, tokens)
    }

    /// [`ReportTrainer::evaluate`] of a trainer with an encoder, on normalised pixels.
    pub fn evaluate_pixels(&self, pixels: &Tensor, tokens: &Tensor) -> Result<EvalReport> {
        self.evaluate_input(MemoryInput::Pixels(pixels), None, tokens)
    }

    /// [`ReportTrainer::evaluate`] of either input.
    pub fn evaluate_input(&self, input: MemoryInput, memory_mask: Option<&Tensor>, tokens: &Tensor) -> Result<EvalReport> {
        tch::no_grad(|| {
            let (loss, k) = self.batch_loss(input, memory_mask, tokens, false)?;
            Ok(EvalReport { loss: if k > 0 { loss.f_double_value(&[])? } else { 0.0 }, tokens: k })
        })
    }

    /// The memory features (B, M, D_vit) float32 on the CPU of normalised pixels under the encoder being trained
    /// (eval mode, no gradients), for [`crate::rrg::generate`] and retrieval. Errors without an encoder.
    pub fn memory(&self, pixels: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| Ok(self.features(MemoryInput::Pixels(pixels), false)?.f_to_device(Device::Cpu)?))
    }

    /// Every tensor of the training state on the CPU (CPU tensors share storage with the model).
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        TrainerState::state(self)
    }

    /// The whole training state: tensors, optimizer step, scheduled steps, seed, config.
    pub fn train_state(&self) -> Result<TrainState> {
        TrainerState::train_state(self)
    }

    /// Writes the training state atomically with the caller's `metadata` (epoch, batch position…).
    pub fn save_state(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        TrainerState::save_state(self, path, metadata)
    }

    /// Restores a state of [`ReportTrainer::save_state`] strictly (kind `rrg`, every tensor with its shape, nothing
    /// extra, the counters `scheduled_steps` and `seed`, same config unless `allow_config_change`; else nothing is
    /// loaded). Returns the caller's metadata. Collective under a process group (the ranks agree, then rank 0's state
    /// is broadcast): [`TrainerState::restore_checked`].
    pub fn load_state(&mut self, path: &Path, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::load_state(self, path, allow_config_change)
    }

    /// [`ReportTrainer::load_state`] of a state in memory.
    pub fn restore(&mut self, state: TrainState, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::restore(self, state, allow_config_change)
    }

    /// Writes `dir/model.safetensors` + `dir/config.json` ([`ReportModel::save`]) with `cxformer_step` and the
    /// caller's `metadata`; [`ReportModel::load`] reads them back.
    pub fn export(&self, dir: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let mut md = metadata;
        md.insert("cxformer_step".into(), self.optimizer.step.to_string());
        self.model.save(dir, md)
    }

    /// Writes the encoder being trained to `file` (safetensors, HF names, float32, its VitConfig in the metadata;
    /// atomic), as full classification fine-tuning exports its backbone. Errors without an encoder.
    pub fn export_encoder(&self, file: &Path) -> Result<()> {
        let (Some(enc), Some(e)) = (&self.encoder, &self.cfg.encoder) else {
            return Err(Error::Config("report trainer: no encoder to export (the encoder is frozen)".into()));
        };
        let mut md = HashMap::new();
        md.insert("format".to_string(), "pt".to_string());
        md.insert("cxformer_config".to_string(), e.model.to_json());
        md.insert("cxformer_layout".to_string(), "hf".to_string());
        save_backbone(&enc.vs, file, SaveLayout::Hf, Kind::Float, md)
    }
}

/// The state plumbing ([`crate::train::state::TrainerState`]): kind `rrg`, the live tensors = parameters under
/// their model keys (`backbone.<name>` for the encoder's, frozen or not) and the AdamW moments, the counters
/// `scheduled_steps` and `seed`.
impl TrainerState for ReportTrainer {
    const KIND: StateKind = StateKind::Rrg;
    const LOADING: &'static str = "loading the report-captioner state";
    const COUNTERS: &'static [&'static str] = &[SCHEDULED_STEPS, SEED_COUNTER];

    fn config_json(&self) -> String {
        self.cfg.to_json()
    }

    fn live(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> = sorted_vars(&self.model.vs).into_iter().collect();
        if let Some(enc) = &self.encoder {
            out.extend(sorted_vars(&enc.vs).into_iter().map(|(k, t)| (format!("backbone.{k}"), t)));
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
        vec![self.optimizer.step, self.step, self.seed]
    }

    fn set_counters(&mut self, values: &[i64]) {
        [self.optimizer.step, self.step, self.seed] = [values[0], values[1], values[2]];
    }
}

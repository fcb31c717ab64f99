//! [`SegModel`]: a backbone with a segmentation head and its optimizer; training step, prediction, state (see
//! [`crate::seg`] for every convention). The training-state plumbing (save, strict collective load) is the shared
//! [`crate::train::state::TrainerState`]; this file says where the state lives.
use super::config::{SegConfig, SegHeadKind};
use super::head::{Head, tokens_to_grid};
use super::loss::ce_dice_loss;
use crate::backbone::{Backbone, Precision, RNG_LOCK};
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, sorted_vars};
use crate::train::collective::{Collective, SingleProcess};
use crate::train::optim::{AdamW, ParamGroup, head_group};
use crate::train::state::{StateKind, TrainState, TrainerState, sync_from_rank0};
use crate::train::step::{LossTerms, UpdateValues, backward_and_update, seed_drop_path};
use crate::weights::{WeightFile, write_safetensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

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
        TrainerState::sync_from_rank0(self)
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
        TrainerState::train_state(self)
    }

    /// Writes a file atomically, with `extra` as metadata: with the optimizer, the training state
    /// ([`TrainState::save`], to resume: `last.safetensors`); without, the model alone (`best.safetensors`): the
    /// `head.*` and (unfrozen) `backbone.*` tensors with the metadata `format: cxformer-seg`, `config` (SegConfig
    /// JSON) and `backbone_config` (VitConfig JSON), which `cxformer evaluate` reads.
    pub fn save(&self, path: impl AsRef<Path>, with_optimizer: bool, extra: HashMap<String, String>) -> Result<()> {
        if with_optimizer {
            return TrainerState::save_state(self, path.as_ref(), extra);
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
    /// ([`SegModel::sync_from_rank0`]): [`TrainerState::restore_checked`]. Returns the caller's metadata.
    pub fn load_state(&mut self, path: impl AsRef<Path>, force: bool) -> Result<HashMap<String, String>> {
        TrainerState::load_state(self, path.as_ref(), force)
    }

    /// [`SegModel::load_state`] of a state in memory.
    pub fn restore(&mut self, state: TrainState, force: bool) -> Result<HashMap<String, String>> {
        TrainerState::restore(self, state, force)
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

/// The state plumbing ([`crate::train::state::TrainerState`]): kind `seg`, the live tensors = [`SegModel::state`]
/// with the optimizer (the head, the backbone when unfrozen, the AdamW moments), no counter besides the optimizer
/// step; its own [`SegModel::sync_from_rank0`], which also broadcasts a frozen backbone.
impl TrainerState for SegModel {
    const KIND: StateKind = StateKind::Seg;
    const LOADING: &'static str = "loading the segmentation state";
    const COUNTERS: &'static [&'static str] = &[];

    fn config_json(&self) -> String {
        self.cfg.to_json()
    }

    /// [`SegModel::state`] with the optimizer: the parameters detached (same storage), the moments shallow
    /// clones, so that copies write into the live tensors.
    fn live(&self) -> BTreeMap<String, Tensor> {
        self.state(true)
    }

    fn dist(&self) -> &dyn Collective {
        self.dist.as_ref()
    }

    fn counters(&self) -> Vec<i64> {
        vec![self.opt.step]
    }

    fn set_counters(&mut self, values: &[i64]) {
        self.opt.step = values[0];
    }

    fn sync_from_rank0(&mut self) -> Result<()> {
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
}

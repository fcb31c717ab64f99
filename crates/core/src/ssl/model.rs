//! The SSL meta-architecture (docs/recipe.md §3.1–3.8): student and EMA teacher, each a backbone + DINO head
//! (+ a separate iBOT head), one training step in the reference order, checkpoints in the one training-state
//! format ([`crate::train::state`]).
use super::center::{Centering, sinkhorn_knopp};
use super::head::{DinoHead, HeadConfig};
use super::loss::{dino_losses, ibot_loss, koleo_weighted};
use crate::augment::multicrop::multicrop_imagenet;
use crate::augment::params::ImageCrops;
use crate::backbone::Precision;
use crate::config::VitConfig;
use crate::error::{Error, Result};
use crate::model::{Vit, sorted_vars};
use crate::train::collective::{Collective, SingleProcess, broadcast_tensors};
use crate::train::optim::{AdamW, ParamGroup, backbone_group, head_group};
use crate::train::state::{StateKind, TrainState, agree, broadcast_counters, copy_into};
use crate::train::step::{LossTerms, UpdateValues, apply_update, seed_drop_path};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// Metadata key of a checkpoint's completed iteration (its next iteration is +1), read by the TypeScript side.
pub const ITERATION_KEY: &str = "cxformer_iteration";

/// Teacher-target normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centering_ {
    Centering,
    SinkhornKnopp,
}
pub use Centering_ as CenteringKind;

/// Everything the native SSL model needs (TypeScript resolves it from the YAML config).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SslConfig {
    pub model: VitConfig,
    pub dino_head: HeadConfig,
    /// None = iBOT shares the DINO head.
    pub ibot_head: Option<HeadConfig>,
    pub dino_loss_weight: f64,
    pub ibot_loss_weight: f64,
    pub koleo_loss_weight: f64,
    pub centering: CenteringKind,
    pub center_momentum: f64,
    pub student_temp: f64,
    pub sinkhorn_iterations: usize,
    pub n_global_crops: i64,
    pub n_local_crops: i64,
    pub clip_grad: f64,
    pub layerwise_decay: f64,
    pub patch_embed_lr_mult: f64,
    pub adamw_betas: [f64; 2],
    pub adamw_eps: f64,
    pub precision: Precision,
}

/// Per-iteration schedule values (computed in TypeScript, docs/recipe.md §3.9).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepSchedule {
    pub lr: f64,
    pub wd: f64,
    pub momentum: f64,
    pub teacher_temp: f64,
    pub last_layer_lr: f64,
}

/// One training batch, crop-major (row = crop_index·B + image_index).
pub struct SslBatch {
    /// (n_g·B, 3, G, G) float32, normalised.
    pub global_crops: Tensor,
    /// (n_l·B, 3, L, L) float32, normalised (n_l may be 0).
    pub local_crops: Option<Tensor>,
    /// (n_g·B, N) bool iBOT masks of the student's global crops.
    pub masks: Tensor,
}

/// Where the crops of a training call come from.
pub enum SslInput {
    /// Crops already augmented and normalised.
    Crops(SslBatch),
    /// Decoded uint8 gray images (H, W) and their crop plan (one {globals, locals} per image), augmented on the
    /// training device and normalised with ImageNet's mean and std; `masks` as in [`SslBatch`].
    Images { images: Vec<Tensor>, crops: Vec<ImageCrops>, global_size: i64, local_size: i64, masks: Tensor },
}

/// What a step reports (all losses as the reference logs them before any division for display). With a
/// process group the losses are means over the ranks and `n_masked` is the sum over the ranks (docs/recipe.md §3.8 step 6).
#[derive(Clone, Debug, Default, Serialize)]
pub struct StepRecord {
    pub total_loss: f64,
    pub dino_local_crops_loss: f64,
    pub dino_global_crops_loss: f64,
    pub ibot_loss: f64,
    pub koleo_loss: f64,
    /// Mean entropy (nats) of the teacher's DINO targets over the global-crop rows (mean over the ranks): a collapse
    /// indicator. ln K = every target uniform (the DINO terms then sit at ln K too); near 0 = one prototype wins.
    pub teacher_entropy: f64,
    pub grad_norm_backbone: f64,
    pub grad_norm_dino_head: f64,
    pub grad_norm_ibot_head: f64,
    pub n_masked: i64,
    /// Wall-clock milliseconds per stage (CUDA work is synchronised at each boundary only when
    /// [`SslModel::profile`] is set; otherwise GPU stages overlap and the split is indicative).
    pub ms_augment: f64,
    pub ms_teacher: f64,
    pub ms_student: f64,
    pub ms_backward: f64,
    pub ms_optimizer: f64,
    pub ms_ema: f64,
}

/// One student or teacher: backbone + heads, each in its own VarStore (so clipping, EMA and checkpoint
/// prefixes follow the submodules: `backbone.*`, `dino_head.*`, `ibot_head.*`).
pub struct Branch {
    pub backbone_vs: nn::VarStore,
    pub backbone: Vit,
    pub dino_vs: nn::VarStore,
    pub dino_head: DinoHead,
    pub ibot_vs: Option<nn::VarStore>,
    pub ibot_head: Option<DinoHead>,
}

impl Branch {
    fn new(cfg: &SslConfig, device: Device) -> Result<Self> {
        let backbone_vs = nn::VarStore::new(device);
        let backbone = Vit::new(&backbone_vs.root(), &cfg.model)?;
        crate::model::init_from_scratch(&backbone_vs);
        let dino_vs = nn::VarStore::new(device);
        let dino_head = DinoHead::new(dino_vs.root(), &cfg.dino_head);
        let (ibot_vs, ibot_head) = match &cfg.ibot_head {
            Some(h) => {
                let vs = nn::VarStore::new(device);
                let head = DinoHead::new(vs.root(), h);
                (Some(vs), Some(head))
            }
            None => (None, None),
        };
        Ok(Branch { backbone_vs, backbone, dino_vs, dino_head, ibot_vs, ibot_head })
    }

    /// (prefix, VarStore) of every submodule, in a fixed order.
    pub fn stores(&self) -> Vec<(&'static str, &nn::VarStore)> {
        let mut v = vec![("backbone", &self.backbone_vs), ("dino_head", &self.dino_vs)];
        if let Some(vs) = &self.ibot_vs {
            v.push(("ibot_head", vs));
        }
        v
    }

    /// Head outputs of the CLS blocks `cls` (DINO head) and of the masked patch tokens `patches` (iBOT head), in
    /// that order. A shared head runs once on their concatenation, as the reference does (one weight-norm, one
    /// pass over each weight matrix, forward and backward); a separate iBOT head gets the patches alone.
    fn heads(&self, cls: &[&Tensor], patches: &Tensor) -> (Vec<Tensor>, Tensor) {
        let mut sizes: Vec<i64> = cls.iter().map(|t| t.size()[0]).collect();
        match &self.ibot_head {
            None => {
                let mut all = cls.to_vec();
                all.push(patches);
                sizes.push(patches.size()[0]);
                let mut parts = self.dino_head.forward(&Tensor::cat(&all, 0)).split_with_sizes(sizes.as_slice(), 0);
                let ibot = parts.pop().expect("patch block");
                (parts, ibot)
            }
            Some(ibot) => {
                let parts = self.dino_head.forward(&Tensor::cat(cls, 0)).split_with_sizes(sizes.as_slice(), 0);
                (parts, ibot.forward(patches))
            }
        }
    }
}

pub struct SslModel {
    pub cfg: SslConfig,
    pub device: Device,
    pub student: Branch,
    pub teacher: Branch,
    pub dino_center: Centering,
    pub ibot_center: Centering,
    pub optimizer: AdamW,
    pub dist: Box<dyn Collective>,
    /// Seed of the initial weights and of each training call's stochastic depth ([`SslModel::train_step`]).
    pub seed: i64,
    /// Synchronise CUDA at stage boundaries so that the per-stage timings are exact (benchmarks).
    pub profile: bool,
}

impl SslModel {
    /// Student from scratch (seeded), teacher = a copy of the student, fresh optimizer and centres.
    pub fn new(cfg: SslConfig, device: Device, seed: i64) -> Result<Self> {
        if cfg.n_global_crops != 2 {
            return Err(Error::Config(format!(
                "n_global_crops must be 2 (the teacher swaps the two global views), got {}",
                cfg.n_global_crops
            )));
        }
        let (student, teacher) = {
            // Seeding and drawing the initial weights must not interleave with another thread's draws.
            let _rng = crate::backbone::RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            tch::manual_seed(seed);
            (Branch::new(&cfg, device)?, Branch::new(&cfg, device)?)
        };
        let k_dino = cfg.dino_head.out_dim;
        let k_ibot = cfg.ibot_head.as_ref().map(|h| h.out_dim).unwrap_or(k_dino);
        let mut params = Vec::new();
        let depth = cfg.model.depth;
        for (prefix, vs) in student.stores() {
            for (name, t) in sorted_vars(vs) {
                let group: ParamGroup = if prefix == "backbone" {
                    backbone_group(&name, depth, cfg.layerwise_decay, cfg.patch_embed_lr_mult)
                } else {
                    head_group(&name)
                };
                params.push((format!("{prefix}.{name}"), t, group));
            }
        }
        let optimizer = AdamW::new(params, cfg.adamw_betas[0], cfg.adamw_betas[1], cfg.adamw_eps);
        let mut m = SslModel {
            dino_center: Centering::new(Tensor::zeros([1, k_dino], (Kind::Float, device)), cfg.center_momentum),
            ibot_center: Centering::new(Tensor::zeros([1, 1, k_ibot], (Kind::Float, device)), cfg.center_momentum),
            cfg,
            device,
            student,
            teacher,
            optimizer,
            dist: Box::new(SingleProcess),
            seed,
            profile: false,
        };
        m.copy_student_to_teacher()?;
        Ok(m)
    }

    /// Joins a process group (data parallelism, DDP semantics): with W > 1 every rank's state becomes rank 0's
    /// ([`SslModel::sync_from_rank0`]); from then on the teacher statistics, the gradients and the logged losses
    /// are reduced across ranks. Call it on every rank, after any initialisation from weights.
    pub fn set_dist(&mut self, dist: Box<dyn Collective>) -> Result<()> {
        self.dist = dist;
        self.sync_from_rank0()
    }

    /// Broadcasts rank 0's whole training state (student and teacher parameters and buffers, AdamW moments and
    /// step count, DINO/iBOT centres and their pending statistics) to every rank. Collective: every rank must
    /// call it (set_dist and every load do). No-op on one process.
    pub fn sync_from_rank0(&mut self) -> Result<()> {
        let dist = self.dist.as_ref();
        if dist.world() <= 1 {
            return Ok(());
        }
        // Pending centre statistics may be absent: agree on their presence first (rank 0's wins).
        let mut counters = [
            self.dino_center.pending().is_some() as i64,
            self.ibot_center.pending().is_some() as i64,
            self.optimizer.step,
        ];
        broadcast_counters(dist, &mut counters)?;
        let mut ts: Vec<Tensor> = self.live().into_values().collect();
        let dev = self.device;
        let pend = |c: &Centering, on: bool| -> Option<Tensor> {
            on.then(|| c.pending().map(|p| p.copy()).unwrap_or_else(|| c.center.zeros_like()))
        };
        let dino_pending = pend(&self.dino_center, counters[0] != 0);
        let ibot_pending = pend(&self.ibot_center, counters[1] != 0);
        let centers = [self.dino_center.center.copy(), self.ibot_center.center.copy()];
        ts.extend(centers.iter().map(|t| t.shallow_clone()));
        ts.extend(dino_pending.iter().chain(ibot_pending.iter()).map(|t| t.shallow_clone()));
        broadcast_tensors(dist, &ts, 0)?;
        self.optimizer.step = counters[2];
        let [dc, ic] = centers;
        self.dino_center.restore(dc.to_device(dev), dino_pending);
        self.ibot_center.restore(ic.to_device(dev), ibot_pending);
        Ok(())
    }

    /// teacher ← student (all submodules), as DINOv2 does once before training.
    pub fn copy_student_to_teacher(&mut self) -> Result<()> {
        self.ema(0.0)
    }

    /// θ_t ← m·θ_t + (1 − m)·θ_s over every parameter of each submodule (weight-norm g and v as raw
    /// parameters), docs/recipe.md §3.8 step 5.
    pub fn ema(&mut self, momentum: f64) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for ((_, s), (_, t)) in self.student.stores().into_iter().zip(self.teacher.stores()) {
                let sv = s.variables();
                for (name, mut tv) in t.variables() {
                    let src = sv.get(&name).ok_or_else(|| Error::Config(format!("teacher parameter {name} has no student twin")))?;
                    if momentum == 0.0 {
                        tv.f_copy_(src)?;
                    } else {
                        let _ = tv.f_lerp_(src, 1.0 - momentum)?;
                    }
                }
            }
            Ok(())
        })
    }

    /// One training call of the run loop: the crops (augmented here when `input` holds images), stochastic depth
    /// seeded from (seed, iteration, rank), forward and backward of micro-batch `micro` of `of` (gradient
    /// accumulation: its loss is scaled by 1/`of`), then the update once the last micro-batch is in. Collective
    /// under a process group.
    pub fn train_step(&mut self, input: SslInput, sched: &StepSchedule, iteration: i64, micro: i64, of: i64) -> Result<StepRecord> {
        let (batch, ms_augment) = self.crops(input)?;
        seed_drop_path(self.seed, iteration, self.dist.rank());
        let of = of.max(1);
        let mut rec = self.forward_backward(&batch, sched, iteration, 1.0 / of as f64)?;
        rec.ms_augment = ms_augment;
        if micro + 1 >= of { self.apply_update(rec, sched) } else { Ok(rec) }
    }

    /// The batch of `input` and the milliseconds its augmentation took (0 for explicit crops).
    fn crops(&self, input: SslInput) -> Result<(SslBatch, f64)> {
        match input {
            SslInput::Crops(batch) => Ok((batch, 0.0)),
            SslInput::Images { images, crops, global_size, local_size, masks } => {
                let mut clock = std::time::Instant::now();
                let mc = multicrop_imagenet(&images, &crops, global_size, local_size, self.device)?;
                let local_crops = (mc.locals.size()[0] > 0).then_some(mc.locals);
                let ms = self.lap(&mut clock);
                Ok((SslBatch { global_crops: mc.globals, local_crops, masks }, ms))
            }
        }
    }

    /// One optimisation step in the reference order (docs/recipe.md §3.8, style habit 7):
    /// teacher targets → student forward → DINO + iBOT + KoLeo → NaN check → backward → gradient reduction
    /// (seam) → clip per submodule → AdamW → EMA. `iteration` only names the step in errors.
    pub fn step(&mut self, batch: &SslBatch, sched: &StepSchedule, iteration: i64) -> Result<StepRecord> {
        let rec = self.forward_backward(batch, sched, iteration, 1.0)?;
        let rec = self.apply_update(rec, sched)?;
        Ok(rec)
    }

    /// Milliseconds since `t`, after synchronising CUDA when profiling.
    fn lap(&self, t: &mut std::time::Instant) -> f64 {
        if self.profile {
            if let Device::Cuda(i) = self.device {
                tch::Cuda::synchronize(i as i64);
            }
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        *t = std::time::Instant::now();
        ms
    }

    /// Forward and backward of one (micro-)batch; gradients accumulate (scaled by `loss_scale`, e.g.
    /// 1/accumulation steps). Losses are checked for NaN/Inf before anything is modified.
    pub fn forward_backward(&mut self, batch: &SslBatch, sched: &StepSchedule, iteration: i64, loss_scale: f64) -> Result<StepRecord> {
        let cfg = self.cfg.clone();
        let dev = self.device;
        let ng = cfg.n_global_crops;
        let globals = batch.global_crops.to_device(dev);
        let (n_rows, _, _, _) = globals.size4()?;
        if n_rows % ng != 0 {
            return Err(Error::Shape(format!("global_crops has {n_rows} rows, not a multiple of n_global_crops {ng}")));
        }
        let b = n_rows / ng;
        let masks = batch.masks.to_device(dev).to_kind(Kind::Bool);
        let n_patches = masks.size().get(1).copied().unwrap_or(0);
        // Flat masked indices over (n_g·B·N) and per-token weights 1/max(1, masked count of its image).
        let flat = masks.flatten(0, 1);
        let mask_indices = flat.nonzero().squeeze_dim(1);
        let n_masked = mask_indices.size()[0];
        let counts = masks.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1.0);
        let weights = counts.reciprocal().unsqueeze(1).expand([n_rows, n_patches], false).flatten(0, 1).index_select(0, &mask_indices);
        // The backbone outputs that the heads read: every CLS token, then the masked patch tokens, as rows of the
        // flattened (n_g·B, T) sequence [CLS, registers, patches] (T = 1 + R + N); the last block and the final
        // norm run on these rows only (Vit::forward_rows).
        let p = cfg.model.patch_size;
        let (gh, gw) = (globals.size()[2] / p, globals.size()[3] / p);
        if n_patches != gh * gw {
            return Err(Error::Shape(format!(
                "masks have {n_patches} patches per crop but the {}x{} px global_crops have {} (patch size {p})",
                globals.size()[2],
                globals.size()[3],
                gh * gw
            )));
        }
        let lead = 1 + cfg.model.num_register_tokens;
        let t_global = lead + n_patches;
        let global_rows = Tensor::cat(
            &[
                Tensor::arange(n_rows, (Kind::Int64, dev)) * t_global,
                &mask_indices + (mask_indices.floor_divide_scalar(n_patches) + 1) * lead,
            ],
            0,
        );

        let _autocast = cfg.precision.autocast(dev)?;

        let mut clock = std::time::Instant::now();
        // ---- teacher targets (no gradients, eval mode) ----
        let mut new_stats: Option<(Tensor, Tensor)> = None;
        let (teacher_dino, teacher_ibot, teacher_entropy) = tch::no_grad(|| -> Result<(Tensor, Tensor, Tensor)> {
            let out = self.teacher.backbone.forward_rows(&globals, None, false, &global_rows)?;
            // Swap the two global views: student crop 1 is matched with teacher crop 2.
            let cls = out.narrow(0, 0, n_rows).chunk(2, 0);
            let cls = Tensor::cat(&[&cls[1], &cls[0]], 0);
            let patches = out.narrow(0, n_rows, n_masked);
            let (dino, ibot) = self.teacher.heads(&[&cls], &patches);
            let dino_logits = dino[0].to_kind(Kind::Float);
            let ibot_logits = ibot.to_kind(Kind::Float);
            let (d, i) = match cfg.centering {
                CenteringKind::Centering => {
                    let d = self.dino_center.targets(&dino_logits, sched.teacher_temp);
                    let i = self.ibot_center.targets(&ibot_logits, sched.teacher_temp);
                    // This step's statistics (reduced across ranks); stored after the finiteness check.
                    new_stats = Some((
                        self.dino_center.stat_mean_rows(&dino_logits, self.dist.as_ref())?,
                        self.ibot_center.stat_mean_of_means(&ibot_logits, self.dist.as_ref())?,
                    ));
                    (d, i)
                }
                CenteringKind::SinkhornKnopp => {
                    let w = self.dist.world();
                    let d = sinkhorn_knopp(&dino_logits, sched.teacher_temp, cfg.sinkhorn_iterations, n_rows * w, self.dist.as_ref())?;
                    let mut nm = Tensor::from(n_masked as f64).to_device(dev);
                    self.dist.all_reduce_sum(&mut nm)?;
                    let nm = nm.double_value(&[]).round() as i64;
                    let i = sinkhorn_knopp(&ibot_logits, sched.teacher_temp, cfg.sinkhorn_iterations, nm.max(1), self.dist.as_ref())?;
                    (d, i)
                }
            };
            // −Σ p log p per row (0·log 0 = 0), mean over the rows.
            let entropy = -(&d * d.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float).mean(Kind::Float);
            Ok((d, i, entropy))
        })?;

        let ms_teacher = self.lap(&mut clock);
        // ---- student forward ----
        let sg = self.student.backbone.forward_rows(&globals, Some(&masks), true, &global_rows)?;
        let student_global_cls = sg.narrow(0, 0, n_rows);
        let (student_local_cls, nl) = match &batch.local_crops {
            Some(l) if cfg.n_local_crops > 0 => {
                let l = l.to_device(dev);
                if l.size()[0] != cfg.n_local_crops * b {
                    return Err(Error::Shape(format!(
                        "local_crops has {} rows, expected n_local_crops {} x batch {b}",
                        l.size()[0],
                        cfg.n_local_crops
                    )));
                }
                // Only the local CLS tokens are read.
                let (lh, lw) = (l.size()[2] / p, l.size()[3] / p);
                let local_rows = Tensor::arange(l.size()[0], (Kind::Int64, dev)) * (lead + lh * lw);
                (Some(self.student.backbone.forward_rows(&l, None, true, &local_rows)?), cfg.n_local_crops)
            }
            _ => (None, 0),
        };
        let student_patches = sg.narrow(0, n_rows, n_masked);
        // The reference's head input order: local CLS (if any), global CLS, masked patch tokens.
        let mut cls_blocks: Vec<&Tensor> = student_local_cls.iter().collect();
        cls_blocks.push(&student_global_cls);
        let (mut cls, student_ibot) = self.student.heads(&cls_blocks, &student_patches);
        let student_global = cls.pop().expect("the global CLS block");
        let student_local = cls.pop();

        // ---- losses (float32) ----
        let (dino_local, dino_global) = dino_losses(student_local.as_ref(), &student_global, &teacher_dino, ng, nl, cfg.student_temp);
        let koleo = if cfg.koleo_loss_weight > 0.0 {
            // KoLeo on the pre-head CLS, in float32 outside autocast (docs/recipe.md §3.7).
            koleo_weighted(&student_global_cls.to_kind(Kind::Float), ng, cfg.koleo_loss_weight)?
        } else {
            Tensor::zeros([], (Kind::Float, dev))
        };
        let ibot = if n_masked > 0 {
            ibot_loss(&student_ibot, &teacher_ibot, &weights, n_rows, cfg.student_temp)
        } else {
            Tensor::zeros([], (Kind::Float, dev))
        };
        let total = (&dino_local + &dino_global) * cfg.dino_loss_weight + &koleo + &ibot * cfg.ibot_loss_weight;
        // The logged values: each rank's losses are means over its own share, so every rank weighs 1 (means over
        // the ranks) and the masked patches are summed; then the finiteness check, the terms before their sum so
        // that the error names the term that went non-finite.
        let names = ["dino_local_crops_loss", "dino_global_crops_loss", "ibot_loss", "koleo_loss", "total_loss", "teacher_entropy"];
        let terms = [&dino_local, &dino_global, &ibot, &koleo, &total, &teacher_entropy].map(|t| t.detach().to_kind(Kind::Double).to_device(dev));
        let values: [f64; 6] = Vec::<f64>::try_from(&Tensor::f_stack(&terms, 0)?.f_to_device(Device::Cpu)?)?
            .try_into()
            .map_err(|v: Vec<f64>| Error::Shape(format!("expected 6 logged values, got {}", v.len())))?;
        let global = LossTerms::new(1.0, names, values)
            .with_counts(vec![n_masked as f64])
            .over_ranks(self.dist.as_ref(), dev, iteration)?;
        let ms_student = self.lap(&mut clock);
        let [dino_local_crops_loss, dino_global_crops_loss, ibot_loss, koleo_loss, total_loss, teacher_entropy] = global.values;
        let mut rec = StepRecord {
            ms_teacher,
            ms_student,
            total_loss,
            dino_local_crops_loss,
            dino_global_crops_loss,
            ibot_loss,
            koleo_loss,
            teacher_entropy,
            n_masked: global.counts[0].round() as i64,
            ..Default::default()
        };
        drop(_autocast);
        if let Some((d, i)) = new_stats {
            self.dino_center.set_pending(d);
            self.ibot_center.set_pending(i);
        }
        (total * loss_scale).f_backward()?;
        rec.ms_backward = self.lap(&mut clock);
        Ok(rec)
    }

    /// Gradient all-reduce (DDP: averaged across ranks in 25 MB buckets; nothing on one process) → clip per
    /// student submodule → AdamW with the schedule → EMA teacher.
    pub fn apply_update(&mut self, mut rec: StepRecord, sched: &StepSchedule) -> Result<StepRecord> {
        let mut clock = std::time::Instant::now();
        let clip_sets: Vec<Vec<Tensor>> =
            self.student.stores().iter().map(|(_, vs)| sorted_vars(vs).into_iter().map(|(_, t)| t).collect()).collect();
        let values = UpdateValues { lr: sched.lr, last_layer_lr: sched.last_layer_lr, wd: sched.wd, max_norm: self.cfg.clip_grad };
        let norms = apply_update(self.dist.as_ref(), &mut self.optimizer, &clip_sets, values)?;
        rec.grad_norm_backbone = norms[0];
        rec.grad_norm_dino_head = norms[1];
        rec.grad_norm_ibot_head = norms.get(2).copied().unwrap_or(0.0);
        rec.ms_optimizer = self.lap(&mut clock);
        self.ema(sched.momentum)?;
        rec.ms_ema = self.lap(&mut clock);
        Ok(rec)
    }

    /// The live parameters (student and teacher, every submodule) and AdamW moments under their checkpoint names,
    /// sharing storage with the model: `student.<module>.<param>`, `teacher.<module>.<param>`,
    /// `optim.exp_avg.<module>.<param>`, `optim.exp_avg_sq.…`.
    fn live(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for (who, branch) in [("student", &self.student), ("teacher", &self.teacher)] {
            for (prefix, vs) in branch.stores() {
                for (name, t) in sorted_vars(vs) {
                    out.insert(format!("{who}.{prefix}.{name}"), t);
                }
            }
        }
        for s in &self.optimizer.slots {
            out.insert(format!("optim.exp_avg.{}", s.name), s.exp_avg.shallow_clone());
            out.insert(format!("optim.exp_avg_sq.{}", s.name), s.exp_avg_sq.shallow_clone());
        }
        out
    }

    /// Every tensor of the training state under its checkpoint name (on the CPU; CPU tensors share storage with
    /// the model): the parameters and AdamW moments (`student.*`, `teacher.*`, `optim.exp_avg.*`,
    /// `optim.exp_avg_sq.*`), `center.dino`, `center.ibot` and their pending statistics (`center.dino_pending`…)
    /// when present, so that a resume is exact.
    pub fn state(&self) -> BTreeMap<String, Tensor> {
        let mut out: BTreeMap<String, Tensor> = self.live().into_iter().map(|(k, t)| (k, t.detach().to_device(Device::Cpu))).collect();
        for (n, c) in [("dino", &self.dino_center), ("ibot", &self.ibot_center)] {
            out.insert(format!("center.{n}"), c.center.to_device(Device::Cpu));
            if let Some(p) = c.pending() {
                out.insert(format!("center.{n}_pending"), p.to_device(Device::Cpu));
            }
        }
        out
    }

    /// The whole training state: [`SslModel::state`], the optimizer step and the config.
    pub fn train_state(&self) -> TrainState {
        TrainState::new(StateKind::Ssl, self.config_json(), self.optimizer.step, self.state())
    }

    fn config_json(&self) -> String {
        serde_json::to_string(&self.cfg).expect("serializable")
    }

    /// Restores a [`TrainState`] strictly ([`TrainState::check`]: a state of another configuration only with
    /// `force`; the pending centre statistics may be absent). Collective under a process group (W > 1): the ranks
    /// agree that each one's state passed the check, then rank 0's state is broadcast
    /// ([`SslModel::sync_from_rank0`]), so the ranks agree exactly whatever state each one held. Returns the
    /// state's metadata.
    pub fn restore(&mut self, state: TrainState, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(Ok(state), force)
    }

    /// Writes a checkpoint atomically: the training state ([`TrainState::save`]), `metadata` (the caller's) and
    /// what is read without a trainer: `format: pt`, [`ITERATION_KEY`] (the iteration completed; the next one is
    /// +1) and `cxformer_config` (the backbone's VitConfig JSON). The teacher backbone keys (`teacher.backbone.*`,
    /// original DINOv2 names, docs/recipe.md §2.7) make a checkpoint loadable by `cxformer embed` and `export`.
    pub fn save_checkpoint(&self, path: &Path, iteration: i64, metadata: HashMap<String, String>) -> Result<()> {
        let mut state = self.train_state();
        state.metadata = metadata;
        state.metadata.insert("format".into(), "pt".into());
        state.metadata.insert(ITERATION_KEY.into(), iteration.to_string());
        state.metadata.insert("cxformer_config".into(), self.cfg.model.to_json());
        state.save(path)
    }

    /// Restores a checkpoint written by [`SslModel::save_checkpoint`], or a version-1 checkpoint (converted, see
    /// [`crate::train::state`]), as [`SslModel::restore`] does (collective under a process group: every rank
    /// reads a file). Returns its metadata without the state convention's keys ([`ITERATION_KEY`] included).
    pub fn load_checkpoint(&mut self, path: &Path, force: bool) -> Result<HashMap<String, String>> {
        self.restore_checked(TrainState::read(path, StateKind::Ssl), force)
    }

    /// [`SslModel::restore`] of a state that may have failed to read on this rank (the ranks agree either way).
    fn restore_checked(&mut self, state: Result<TrainState>, force: bool) -> Result<HashMap<String, String>> {
        let config = self.config_json();
        let expect = self.state();
        let state = state.and_then(|s| s.check(StateKind::Ssl, &config, force, &expect, |k| k.ends_with("_pending")).map(|()| s));
        let state = agree(self.dist.as_ref(), state, "loading the SSL training state")?;
        copy_into(&self.live(), &state)?;
        self.optimizer.step = state.step;
        let dev = self.device;
        let t = &state.tensors;
        self.dino_center.restore(t["center.dino"].to_device(dev), t.get("center.dino_pending").map(|p| p.to_device(dev)));
        self.ibot_center.restore(t["center.ibot"].to_device(dev), t.get("center.ibot_pending").map(|p| p.to_device(dev)));
        self.sync_from_rank0()?;
        Ok(state.metadata)
    }
}

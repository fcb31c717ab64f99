//! Head training for the linear-probe protocol (docs/recipe.md §5.1, §3.11 last sentence, §7.7): a linear (or small MLP)
//! classification head fitted on **frozen backbone features computed elsewhere** and passed in as an (N, F) matrix.
//!
//! - **No implicit preprocessing.** Features are used exactly as given: nothing is standardised, centred or
//!   normalised (DINOv2's linear eval does not standardise either). A caller who wants standardisation computes
//!   the statistics on the training split and applies them to every split before calling [`fit`] / [`FittedHead::predict`].
//! - **Head** (docs/recipe.md §5.1): `hidden = []` gives a single `Linear(F, C)` with weight N(0, 0.01²) and bias 0.
//!   With hidden sizes `[h1, …]` it is `Linear(F, h1) → GELU (exact, erf) → … → Linear(hk, C)`: the hidden
//!   layers use PyTorch's `nn.Linear` default init (weight and bias U(−1/√fan_in, 1/√fan_in)), the last layer
//!   N(0, 0.01²) / 0. Initial values come from a seeded SplitMix64 stream owned by this module, never from
//!   LibTorch's process-global generator, so fits are reproducible across threads and devices.
//! - **Targets and mask.** `targets` (N, C) float, `mask` (N, C) bool/uint8 with the convention of
//!   src/datasets/policy.ts: **nonzero = the entry is supervised, 0 = masked out** (its target may be anything,
//!   even NaN; it never reaches the loss nor its gradient).
//! - **Loss.** `multilabel` / `binary` (binary = multilabel with C = 1): BCE-with-logits (optional per-class
//!   `posWeight`), averaged over the unmasked entries of the batch only. `multiclass`: softmax cross-entropy over
//!   C logits, the class index (an integer in 0..C) is stored in **column 0** of `targets` and the row is
//!   supervised when `mask[:, 0]` is nonzero; columns 1.. of `targets` and `mask` are ignored (C is the width
//!   of `targets`). A batch without any unmasked entry has loss 0 and no gradient, and **no optimizer update is
//!   taken** for it (it would only apply weight decay and stale Adam momentum); the lr schedule still advances.
//! - **Optimizer** AdamW (β 0.9/0.999, ε 1e-8, torch semantics, [`crate::train::optim::AdamW`]); weight decay on
//!   weights only, not biases (HF Trainer's rule). Optional total-norm gradient clipping (`clipGrad` > 0).
//! - **Schedule, per optimizer step** (DINOv2's CosineScheduler with final value 0, as src/augment/schedule.ts):
//!   W = warmupEpochs·S warm-up steps follow `numpy.linspace(0, lr, W)` (both ends included), then `cosine`:
//!   lr·½(1 + cos(π·i/(T − W))) for i = 0..T−W−1 (T = epochs·S), or `constant`: lr. S = ⌈N / batchSize⌉ steps
//!   per epoch (the last batch may be short). With W = 0 the cosine equals torch's CosineAnnealingLR(T, 0), the
//!   schedule of DINOv2's eval/linear.py.
//! - **Order.** Each epoch visits the rows in a permutation drawn from SplitMix64(seed, epoch) (Fisher–Yates).
//! - Defaults follow the shipped recipe of docs/recipe.md §5.1 (lr 5e-5, wd 0, batch 10, constant lr, no warm-up,
//!   clip 1.0, seed 7479, 100 epochs).
use super::config::{EpochRecord, ProbeConfig, ProbeTask, SelectBest};
use super::head::{FittedHead, Rng, SHUFFLE_STREAM, forward, init_layers};
use super::loss::{check_classes, masked_loss};
use super::select::macro_auroc;
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::train::optim::{AdamW, clip_grad_norm, head_group};
use crate::train::schedule;
use tch::{Device, Kind, Tensor};

/// Optimizer steps per epoch: ⌈n / batch_size⌉.
pub fn steps_per_epoch(n: i64, batch_size: i64) -> i64 {
    if n <= 0 || batch_size <= 0 { 0 } else { (n + batch_size - 1) / batch_size }
}

/// The learning rate of optimizer step `step` (0-based), see the module docs ([`crate::train::schedule::lr_at`]);
/// 0 for step ≥ epochs·S under `cosine` (the schedule's final value), `lr` under `constant`.
pub fn lr_at(cfg: &ProbeConfig, step: i64, steps_per_epoch: i64) -> f64 {
    schedule::lr_at(step, cfg.lr, cfg.warmup_epochs * steps_per_epoch, cfg.epochs * steps_per_epoch, cfg.schedule)
}

/// The row order of epoch `epoch` (Fisher–Yates over SplitMix64(seed, epoch)).
pub fn epoch_permutation(n: i64, seed: i64, epoch: i64) -> Vec<i64> {
    let mut rng = Rng::new(seed.wrapping_add(epoch.wrapping_mul(0x9E37_79B9)), SHUFFLE_STREAM);
    let mut p: Vec<i64> = (0..n).collect();
    for i in (1..p.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

/// `(features, targets, mask)` of a split.
pub type ProbeData<'a> = (&'a Tensor, &'a Tensor, &'a Tensor);

/// Validates a split against the expected widths; returns (features f32, targets f32, mask bool) on `device`.
/// Multiclass targets are checked by [`check_classes`] (column 0 only) instead of the finiteness check here.
fn prepare(
    what: &str,
    d: ProbeData<'_>,
    f: Option<i64>,
    c: Option<i64>,
    task: ProbeTask,
    device: Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (x, y, m) = d;
    if x.dim() != 2 {
        bail_shape!("{what} features: expected a 2-D (N, F) tensor, got shape {:?}", x.size());
    }
    if y.dim() != 2 {
        bail_shape!("{what} targets: expected a 2-D (N, C) tensor, got shape {:?}", y.size());
    }
    let (n, fx) = (x.size()[0], x.size()[1]);
    let (ny, cy) = (y.size()[0], y.size()[1]);
    if n != ny {
        bail_shape!("{what}: features have N = {n} rows but targets have {ny}");
    }
    if m.size() != y.size() {
        bail_shape!("{what} mask: shape {:?} differs from the targets' {:?}", m.size(), y.size());
    }
    if n == 0 {
        bail_shape!("{what} features: no rows (shape {:?})", x.size());
    }
    if fx == 0 || cy == 0 {
        bail_shape!("{what}: features {:?} and targets {:?} need F ≥ 1 and C ≥ 1", x.size(), y.size());
    }
    if let Some(f) = f
        && fx != f
    {
        bail_shape!("{what} features: F = {fx} columns but the head takes F = {f}");
    }
    if let Some(c) = c
        && cy != c
    {
        bail_shape!("{what} targets: C = {cy} columns but the head has C = {c} outputs");
    }
    if !x.is_floating_point() {
        bail_shape!("{what} features: expected floating-point values, got {:?}", x.kind());
    }
    if !y.is_floating_point() {
        bail_shape!("{what} targets: expected floating-point values, got {:?}", y.kind());
    }
    let x = x.f_to_kind(Kind::Float)?;
    let y = y.f_to_kind(Kind::Float)?;
    let m = if m.kind() == Kind::Bool { m.shallow_clone() } else { m.f_ne(0)? };
    let bad_x = x.f_isfinite()?.f_logical_not()?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if bad_x > 0 {
        bail_shape!("{what} features: {bad_x} values are NaN or infinite");
    }
    let bad_y = if task == ProbeTask::Multiclass {
        0
    } else {
        y.f_isfinite()?.f_logical_not()?.f_logical_and(&m)?.f_sum(Kind::Int64)?.f_int64_value(&[])?
    };
    if bad_y > 0 {
        bail_shape!("{what} targets: {bad_y} supervised (unmasked) entries are NaN or infinite");
    }
    Ok((x.f_to_device(device)?, y.f_to_device(device)?, m.f_to_device(device)?))
}

/// Loss over a whole split, without gradients, in chunks of 4096 rows: (mean over supervised entries, count).
fn eval_loss(layers: &[(Tensor, Tensor)], x: &Tensor, y: &Tensor, m: &Tensor, task: ProbeTask, pw: Option<&Tensor>) -> Result<(f64, i64)> {
    tch::no_grad(|| {
        let n = x.size()[0];
        let (mut sum, mut count) = (0.0, 0i64);
        let mut start = 0;
        while start < n {
            let len = (n - start).min(4096);
            let logits = forward(layers, &x.f_narrow(0, start, len)?)?;
            let (l, k) = masked_loss(&logits, &y.f_narrow(0, start, len)?, &m.f_narrow(0, start, len)?, task, pw)?;
            sum += l.f_double_value(&[])? * k as f64;
            count += k;
            start += len;
        }
        Ok((if count > 0 { sum / count as f64 } else { 0.0 }, count))
    })
}

/// Trains a head on precomputed features (see the module docs for every convention).
///
/// `features` (N, F) float, `targets` (N, C) float, `mask` (N, C) bool/uint8 (nonzero = supervised); `val`
/// the same for a validation split (its loss is reported after each epoch). Tensors may live anywhere; the
/// work runs on `device`. `on_epoch` gets each epoch's record and returns false to stop early (the head is
/// returned as it is after that epoch). Errors: Shape/Config for bad inputs (with the sizes involved),
/// NonFinite if a training loss becomes NaN/∞ (before that step's update).
pub fn fit(
    features: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    val: Option<ProbeData<'_>>,
    cfg: &ProbeConfig,
    device: Device,
    mut on_epoch: impl FnMut(EpochRecord) -> bool,
) -> Result<FittedHead> {
    let (x, y, m) = prepare("train", (features, targets, mask), None, None, cfg.task, device)?;
    let (n, f, c) = (x.size()[0], x.size()[1], y.size()[1]);
    cfg.validate(c)?;
    let val = match val {
        Some(v) => Some(prepare("val", v, Some(f), Some(c), cfg.task, device)?),
        None => None,
    };
    if cfg.task == ProbeTask::Multiclass {
        check_classes("train", &y, &m, c)?;
        if let Some((_, vy, vm)) = &val {
            check_classes("val", vy, vm, c)?;
        }
    }
    let pw = match &cfg.pos_weight {
        Some(p) => Some(Tensor::from_slice(&p.iter().map(|&v| v as f32).collect::<Vec<_>>()).f_to_device(device)?),
        None => None,
    };

    let layers: Vec<(Tensor, Tensor)> = init_layers(&cfg.widths(f, c), cfg.seed)
        .into_iter()
        .map(|(w, b)| Ok((w.f_to_device(device)?.set_requires_grad(true), b.f_to_device(device)?.set_requires_grad(true))))
        .collect::<Result<_>>()?;
    let mut params = Vec::new();
    for (i, (w, b)) in layers.iter().enumerate() {
        for (name, t) in [(format!("head.{i}.weight"), w), (format!("head.{i}.bias"), b)] {
            let g = head_group(&name);
            params.push((name, t.shallow_clone(), g));
        }
    }
    let param_refs: Vec<Tensor> = params.iter().map(|(_, t, _)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(params, 0.9, 0.999, 1e-8);

    let spe = steps_per_epoch(n, cfg.batch_size);
    let mut step = 0i64;
    let mut history = Vec::new();
    let mut best: Option<(f64, i64, Vec<(Tensor, Tensor)>)> = None;
    for epoch in 0..cfg.epochs {
        let perm = Tensor::from_slice(&epoch_permutation(n, cfg.seed, epoch)).f_to_device(device)?;
        let (mut sum, mut count, mut skipped, mut lr) = (0.0, 0i64, 0i64, 0.0);
        for b in 0..spe {
            lr = lr_at(cfg, step, spe);
            let start = b * cfg.batch_size;
            let idx = perm.f_narrow(0, start, cfg.batch_size.min(n - start))?;
            let (xb, yb, mb) = (x.f_index_select(0, &idx)?, y.f_index_select(0, &idx)?, m.f_index_select(0, &idx)?);
            let logits = forward(&layers, &xb)?;
            let (loss, k) = masked_loss(&logits, &yb, &mb, cfg.task, pw.as_ref())?;
            step += 1;
            if k == 0 {
                skipped += 1;
                continue;
            }
            let lv = loss.f_double_value(&[])?;
            if !lv.is_finite() {
                return Err(Error::NonFinite { iteration: step - 1, term: "probe train loss".into(), value: lv });
            }
            loss.f_backward()?;
            if cfg.clip_grad > 0.0 {
                let refs: Vec<&Tensor> = param_refs.iter().collect();
                clip_grad_norm(&refs, cfg.clip_grad)?;
            }
            opt.update(lr, lr, cfg.weight_decay)?;
            sum += lv * k as f64;
            count += k;
        }
        let val_loss = match &val {
            Some((vx, vy, vm)) => {
                let (l, k) = eval_loss(&layers, vx, vy, vm, cfg.task, pw.as_ref())?;
                (k > 0).then_some(l)
            }
            None => None,
        };
        let val_auroc = match (&val, cfg.select_best) {
            (Some((vx, vy, vm)), SelectBest::ValAuroc) => macro_auroc(&layers, vx, vy, vm, cfg.task)?,
            _ => None,
        };
        let rec = EpochRecord {
            epoch,
            steps: step,
            lr,
            train_loss: if count > 0 { sum / count as f64 } else { 0.0 },
            train_entries: count,
            skipped_batches: skipped,
            val_loss,
            val_auroc,
        };
        history.push(rec.clone());
        // Best-epoch selection on the validation split (higher AUROC / lower loss), with patience.
        let score = match cfg.select_best {
            SelectBest::ValAuroc => val_auroc,
            SelectBest::ValLoss => val_loss.map(|l| -l),
            SelectBest::Last => None,
        };
        if let Some(sc) = score {
            if best.as_ref().is_none_or(|(b, _, _)| sc > *b) {
                let snap = layers
                    .iter()
                    .map(|(w, b)| Ok((w.f_detach_copy()?, b.f_detach_copy()?)))
                    .collect::<Result<Vec<_>>>()?;
                best = Some((sc, epoch, snap));
            } else if cfg.patience > 0 && epoch - best.as_ref().map(|b| b.1).unwrap_or(epoch) >= cfg.patience {
                on_epoch(rec);
                break;
            }
        }
        if !on_epoch(rec) {
            break;
        }
    }
    let last_epoch = history.last().map(|r| r.epoch);
    let (layers, best_epoch) = match best {
        Some((_, e, snap)) => (snap, Some(e)),
        None => (layers, last_epoch),
    };
    let layers = layers
        .iter()
        .map(|(w, b)| Ok((w.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?, b.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_>>()?;
    Ok(FittedHead { config: cfg.clone(), layers, history, best_epoch })
}

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
use crate::bail_shape;
use crate::downstream;
use crate::error::{Error, Result};
use crate::train::optim::{AdamW, clip_grad_norm, head_group};
use crate::weights::{WeightFile, write_safetensors};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor};

/// Learning-rate schedule after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Constant,
}

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

/// Which epoch's head `fit` returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SelectBest {
    #[default]
    Last,
    ValAuroc,
    ValLoss,
}

/// AUROC of one class (Mann–Whitney with average ranks for ties, = scikit-learn's roc_auc_score); None when
/// only one label value is present.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let npos = labels.iter().filter(|&&l| l).count();
    let nneg = labels.len() - npos;
    if npos == 0 || nneg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0; // 1-based average rank of the tie group
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    Some((rank_sum_pos - (npos * (npos + 1)) as f64 / 2.0) / (npos * nneg) as f64)
}

/// Macro AUROC of a head on a split over the classes defined there (multiclass: one-vs-rest on column-0
/// class indices); None when no class is defined.
fn macro_auroc(layers: &[(Tensor, Tensor)], x: &Tensor, y: &Tensor, m: &Tensor, task: ProbeTask) -> Result<Option<f64>> {
    let logits = tch::no_grad(|| forward(layers, x))?;
    let probs = match task {
        ProbeTask::Multiclass => logits.f_softmax(-1, Kind::Float)?,
        _ => logits.f_sigmoid()?,
    };
    let c = probs.size()[1];
    let p = Vec::<Vec<f32>>::try_from(probs.f_to_device(Device::Cpu)?)?;
    let yy = Vec::<Vec<f32>>::try_from(y.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
    let mm = Vec::<Vec<f32>>::try_from(m.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
    let mut vals = Vec::new();
    for k in 0..c as usize {
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for r in 0..p.len() {
            let (col, lab) = match task {
                ProbeTask::Multiclass => (0, yy[r][0] as usize == k),
                _ => (k, yy[r][k] > 0.5),
            };
            if mm[r][col] > 0.0 {
                s.push(p[r][k] as f64);
                l.push(lab);
            }
        }
        if let Some(a) = auroc(&s, &l) {
            vals.push(a);
        }
    }
    Ok((!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64))
}

// The defaults: configs/downstream/defaults.json ([`crate::downstream`]).
fn d_hidden() -> Vec<i64> {
    downstream::classification().hidden.clone()
}
fn d_lr() -> f64 {
    downstream::classification().lr
}
fn d_weight_decay() -> f64 {
    downstream::classification().weight_decay
}
fn d_epochs() -> i64 {
    downstream::classification().epochs
}
fn d_batch() -> i64 {
    downstream::classification().head_batch_size
}
fn d_warmup() -> i64 {
    downstream::classification().warmup_epochs
}
fn d_schedule() -> Schedule {
    downstream::classification().schedule
}
fn d_seed() -> i64 {
    downstream::classification().seed
}
fn d_pos_weight() -> Option<Vec<f64>> {
    downstream::classification().pos_weight.clone()
}
fn d_task() -> ProbeTask {
    downstream::classification().task
}
fn d_clip() -> f64 {
    downstream::classification().clip_grad
}
fn d_patience() -> i64 {
    downstream::classification().patience
}

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

impl ProbeConfig {
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::Config(format!("probe config: {e}")))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

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
    fn widths(&self, f: i64, c: i64) -> Vec<i64> {
        let mut w = vec![f];
        w.extend(&self.hidden);
        w.push(c);
        w
    }
}

/// Optimizer steps per epoch: ⌈n / batch_size⌉.
pub fn steps_per_epoch(n: i64, batch_size: i64) -> i64 {
    if n <= 0 || batch_size <= 0 { 0 } else { (n + batch_size - 1) / batch_size }
}

/// The learning rate of optimizer step `step` (0-based), see the module docs; 0 for step ≥ epochs·S under
/// `cosine` (the schedule's final value), `lr` under `constant`.
pub fn lr_at(cfg: &ProbeConfig, step: i64, steps_per_epoch: i64) -> f64 {
    let t = cfg.epochs * steps_per_epoch;
    let w = cfg.warmup_epochs * steps_per_epoch;
    let base = cfg.lr;
    if step < w {
        // numpy.linspace(0, base, w)[step]
        return if w == 1 { 0.0 } else if step == w - 1 { base } else { base * step as f64 / (w - 1) as f64 };
    }
    match cfg.schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            if step >= t {
                return 0.0;
            }
            let c = (t - w) as f64;
            let i = (step - w) as f64;
            0.5 * base * (1.0 + (std::f64::consts::PI * i / c).cos())
        }
    }
}

/// SplitMix64: a tiny seeded generator for initial weights and epoch permutations.
struct Rng(u64);

impl Rng {
    fn new(seed: i64, stream: u64) -> Self {
        let mut r = Rng((seed as u64) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Uniform integer in 0..n (n > 0), without modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

const INIT_STREAM: u64 = 1;
const SHUFFLE_STREAM: u64 = 2;

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

/// Initial (weight, bias) per layer on the CPU, see the module docs.
pub(crate) fn init_layers(widths: &[i64], seed: i64) -> Vec<(Tensor, Tensor)> {
    let mut rng = Rng::new(seed, INIT_STREAM);
    let last = widths.len() - 2;
    (0..widths.len() - 1)
        .map(|l| {
            let (fin, fout) = (widths[l], widths[l + 1]);
            let (w, b): (Vec<f32>, Vec<f32>) = if l == last {
                ((0..fin * fout).map(|_| (0.01 * rng.normal()) as f32).collect(), vec![0.0; fout as usize])
            } else {
                let bound = 1.0 / (fin as f64).sqrt();
                let mut u = || ((2.0 * rng.uniform() - 1.0) * bound) as f32;
                let w = (0..fin * fout).map(|_| u()).collect();
                let b = (0..fout).map(|_| u()).collect();
                (w, b)
            };
            (Tensor::from_slice(&w).reshape([fout, fin]), Tensor::from_slice(&b))
        })
        .collect()
}

/// The head's logits: Linear → GELU → … → Linear.
pub(crate) fn forward(layers: &[(Tensor, Tensor)], x: &Tensor) -> Result<Tensor> {
    let mut h = x.shallow_clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = h.f_linear(w, Some(b))?;
        if i + 1 < layers.len() {
            h = h.f_gelu("none")?;
        }
    }
    Ok(h)
}

/// The masked loss of a batch: mean over the supervised entries (multilabel/binary) or rows (multiclass), and
/// their count. `mask` is boolean (true = supervised). With no supervised entry the loss is exactly 0, its
/// gradient is 0 everywhere, and masked targets (even NaN) never reach either.
pub fn masked_loss(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    task: ProbeTask,
    pos_weight: Option<&Tensor>,
) -> Result<(Tensor, i64)> {
    let zero = Tensor::zeros([], (Kind::Float, logits.device()));
    let (per, m) = match task {
        ProbeTask::Multilabel | ProbeTask::Binary => {
            let y = targets.f_where_self(mask, &zero)?;
            let l = logits.f_binary_cross_entropy_with_logits::<&Tensor>(&y, None, pos_weight, Reduction::None)?;
            (l, mask.shallow_clone())
        }
        ProbeTask::Multiclass => {
            let m = mask.f_select(1, 0)?;
            let y = targets.f_select(1, 0)?.f_where_self(&m, &zero)?.f_to_kind(Kind::Int64)?;
            let lsm = logits.f_log_softmax(1, Kind::Float)?;
            let l = lsm.f_gather(1, &y.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?.f_neg()?;
            (l, m)
        }
    };
    let count = m.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    let total = per.f_where_self(&m, &zero)?.f_sum(Kind::Float)?;
    Ok((total.f_div_scalar(count.max(1) as f64)?, count))
}

/// One epoch's summary, passed to the `on_epoch` callback and kept in [`FittedHead::history`].
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

/// A trained head: weights on the CPU (float32), the config it was trained with and its history.
pub struct FittedHead {
    pub config: ProbeConfig,
    /// (weight (out, in), bias (out)) per Linear layer, input side first; saved as `head.<i>.weight` / `head.<i>.bias`
    /// (i counts Linear layers only: 0..=hidden.len()).
    pub layers: Vec<(Tensor, Tensor)>,
    pub history: Vec<EpochRecord>,
    /// The epoch whose weights these are (the last one unless `select_best` chose another).
    pub best_epoch: Option<i64>,
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

/// Multiclass: every supervised row's column 0 must be an integer class index in 0..C.
pub(crate) fn check_classes(what: &str, y: &Tensor, m: &Tensor, c: i64) -> Result<()> {
    let y0 = y.f_select(1, 0)?.f_to_device(Device::Cpu)?;
    let m0 = m.f_select(1, 0)?.f_to_device(Device::Cpu)?;
    let ys = Vec::<f32>::try_from(&y0)?;
    let ms = Vec::<bool>::try_from(&m0)?;
    for (row, (v, keep)) in ys.iter().zip(ms).enumerate() {
        if keep && !(v.fract() == 0.0 && *v >= 0.0 && (*v as i64) < c) {
            bail_shape!("{what} targets: multiclass row {row} has class {v} in column 0, expected an integer in 0..{c}");
        }
    }
    Ok(())
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

/// Metadata key of the safetensors header holding the config JSON.
pub const META_CONFIG: &str = "config";
/// Metadata key holding the per-epoch history (JSON array).
pub const META_HISTORY: &str = "history";
/// Metadata key `format` and its value.
pub const META_FORMAT: (&str, &str) = ("format", "cxformer-probe-head");

impl FittedHead {
    /// Input width F.
    pub fn in_features(&self) -> i64 {
        self.layers[0].0.size()[1]
    }

    /// Output width C.
    pub fn out_features(&self) -> i64 {
        self.layers[self.layers.len() - 1].0.size()[0]
    }

    /// `head.<i>.weight` / `head.<i>.bias` → tensor (shallow copies).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        let mut t = BTreeMap::new();
        for (i, (w, b)) in self.layers.iter().enumerate() {
            t.insert(format!("head.{i}.weight"), w.shallow_clone());
            t.insert(format!("head.{i}.bias"), b.shallow_clone());
        }
        t
    }

    /// Rebuilds a head from `head.<i>.weight` / `head.<i>.bias` tensors, checking that they are exactly the
    /// layers `config.hidden` describes (count, chained widths, C against the task). History is left empty.
    pub fn from_tensors(config: ProbeConfig, tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let n_layers = config.hidden.len() + 1;
        let mut layers = Vec::with_capacity(n_layers);
        for i in 0..n_layers {
            let get = |k: &str| {
                let name = format!("head.{i}.{k}");
                tensors.get(&name).map(|t| t.shallow_clone()).ok_or_else(|| {
                    Error::Shape(format!("head: missing tensor '{name}' (hidden {:?} needs {n_layers} layers)", config.hidden))
                })
            };
            let (w, b) = (get("weight")?, get("bias")?);
            if w.dim() != 2 || b.dim() != 1 || b.size()[0] != w.size()[0] {
                bail_shape!("head.{i}: weight {:?} and bias {:?} are not an (out, in) / (out) pair", w.size(), b.size());
            }
            if let Some(h) = config.hidden.get(i)
                && w.size()[0] != *h
            {
                bail_shape!("head.{i}.weight: {} outputs but hidden[{i}] = {h}", w.size()[0]);
            }
            if i > 0 {
                let prev: &(Tensor, Tensor) = &layers[i - 1];
                if w.size()[1] != prev.0.size()[0] {
                    bail_shape!("head.{i}.weight: takes {} inputs but head.{}.weight gives {}", w.size()[1], i - 1, prev.0.size()[0]);
                }
            }
            if !w.is_floating_point() || !b.is_floating_point() {
                bail_shape!("head.{i}: expected floating-point tensors, got {:?} / {:?}", w.kind(), b.kind());
            }
            layers.push((
                w.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?,
                b.f_to_kind(Kind::Float)?.f_to_device(Device::Cpu)?.f_contiguous()?,
            ));
        }
        let expected: std::collections::BTreeSet<String> =
            (0..n_layers).flat_map(|i| [format!("head.{i}.weight"), format!("head.{i}.bias")]).collect();
        if let Some(extra) = tensors.keys().find(|k| !expected.contains(*k)) {
            bail_shape!("head: unexpected tensor '{extra}' (hidden {:?} gives {n_layers} layers)", config.hidden);
        }
        let head = FittedHead { config, layers, history: Vec::new(), best_epoch: None };
        head.config.validate(head.out_features())?;
        Ok(head)
    }

    /// Logits (N, C) float32 on the CPU for features (N, F); computed on the features' device.
    pub fn logits(&self, features: &Tensor) -> Result<Tensor> {
        if features.dim() != 2 {
            bail_shape!("features: expected a 2-D (N, F) tensor, got shape {:?}", features.size());
        }
        let f = self.in_features();
        if features.size()[1] != f {
            bail_shape!("features: F = {} columns but the head takes F = {f}", features.size()[1]);
        }
        if !features.is_floating_point() {
            bail_shape!("features: expected floating-point values, got {:?}", features.kind());
        }
        tch::no_grad(|| {
            let dev = features.device();
            let layers: Vec<(Tensor, Tensor)> =
                self.layers.iter().map(|(w, b)| Ok((w.f_to_device(dev)?, b.f_to_device(dev)?))).collect::<Result<_>>()?;
            Ok(forward(&layers, &features.f_to_kind(Kind::Float)?)?.f_to_device(Device::Cpu)?)
        })
    }

    /// Probabilities (N, C) float32 on the CPU: sigmoid (multilabel, binary) or softmax over C (multiclass).
    pub fn predict(&self, features: &Tensor) -> Result<Tensor> {
        let z = self.logits(features)?;
        Ok(match self.config.task {
            ProbeTask::Multiclass => z.f_softmax(1, Kind::Float)?,
            _ => z.f_sigmoid()?,
        })
    }

    /// Writes the head as safetensors (float32, atomically) with metadata `format`, `config` (JSON),
    /// `history` (JSON) and `extra`.
    pub fn save(&self, path: impl AsRef<Path>, extra: HashMap<String, String>) -> Result<()> {
        let mut md = extra;
        md.insert(META_FORMAT.0.into(), META_FORMAT.1.into());
        md.insert(META_CONFIG.into(), self.config.to_json());
        md.insert(META_HISTORY.into(), serde_json::to_string(&self.history).expect("serializable"));
        write_safetensors(path.as_ref(), &self.tensors(), md)
    }

    /// Reads a head written by [`FittedHead::save`] (config and history from the metadata).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let file = WeightFile::open(path.as_ref())?;
        let md = file.metadata();
        let cfg = md
            .get(META_CONFIG)
            .ok_or_else(|| Error::weights(&file.path, "no 'config' metadata: not a probe head written by cxformer"))?;
        let cfg = ProbeConfig::from_json(cfg).map_err(|e| Error::weights(&file.path, e.to_string()))?;
        let mut head = Self::from_tensors(cfg, &file.tensors()?).map_err(|e| Error::weights(&file.path, e.to_string()))?;
        if let Some(h) = md.get(META_HISTORY) {
            head.history = serde_json::from_str(h).map_err(|e| Error::weights(&file.path, format!("history metadata: {e}")))?;
        }
        Ok(head)
    }
}

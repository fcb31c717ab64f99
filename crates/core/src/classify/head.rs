//! The classification head of the probe and of fine-tuning (docs/recipe.md §5.1): its initial weights from a seeded
//! SplitMix64 stream (never LibTorch's process-global generator, so fits are reproducible across threads and
//! devices), its forward pass, and [`FittedHead`] with its safetensors save/load. `hidden = []` gives a single
//! `Linear(F, C)` with weight N(0, 0.01²) and bias 0; with hidden sizes `[h1, …]` it is
//! `Linear(F, h1) → GELU (exact, erf) → … → Linear(hk, C)`: the hidden layers use PyTorch's `nn.Linear` default init
//! (weight and bias U(−1/√fan_in, 1/√fan_in)), the last layer N(0, 0.01²) / 0.
use super::config::{EpochRecord, ProbeConfig, ProbeTask};
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::weights::{WeightFile, write_safetensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// SplitMix64: a tiny seeded generator for initial weights and epoch permutations.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: i64, stream: u64) -> Self {
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
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }
}

/// Stream of the initial weights.
const INIT_STREAM: u64 = 1;
/// Stream of the epoch permutations ([`crate::classify::probe::epoch_permutation`]).
pub(crate) const SHUFFLE_STREAM: u64 = 2;

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

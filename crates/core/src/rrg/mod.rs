//! R1, the native report captioner ("cxformer-rrg"): a Transformer decoder that cross-attends to CXformer
//! visual tokens and writes the findings text (R2Gen-style, Chen et al. 2020, github.com/zhjohnchan/R2Gen,
//! without its relational memory).
//!
//! - [`config`]: [`RrgConfig`] (architecture, presets) and [`RrgTrainConfig`] (training values).
//! - [`memory`]: encoder tokens → LayerNorm → Linear(D_vit → d); [`memory::memory_tokens`] takes the tokens of a
//!   ViT block from pixels.
//! - [`decoder`]: the pre-LN decoder, its decoding cache.
//! - [`ReportModel`] (here): memory projector + decoder in one VarStore, the teacher-forced loss
//!   ([`label_smoothed_ce`]), strict save/load of `model.safetensors` + `config.json`.
//! - [`generate`]: greedy, beam search and seeded sampling with a streaming callback.
//! - [`train`]: [`train::ReportTrainer`] on the shared training harness ([`crate::train`]).
//!
//! Token conventions: a report is `[BOS] w₁ … wₙ [EOS]` padded on the right with `padId` (0); the model reads
//! positions 0..T−2 and predicts 1..T−1; padded targets are ignored.
//!
//! Key layout of `model.safetensors` (float32): `memory.norm.*`, `memory.proj.*` ([`memory`]), `decoder.*`
//! ([`decoder`]), and `lm_head.weight` only when `tieEmbeddings` is false. Metadata: `format = pt`,
//! `cxformer_kind = rrg`, `cxformer_rrg_config` (the [`RrgConfig`] JSON).
pub mod config;
pub mod decoder;
pub mod generate;
pub mod memory;
pub mod train;

pub use config::{EncoderTrainConfig, RrgConfig, RrgTrainConfig};
pub use decoder::{Decoder, DecoderCache};
pub use generate::{BeamOptions, EarlyStopping, GenerateOptions, Generation, Hypothesis, SampleOptions, Strategy, generate};
pub use memory::{MemoryProjector, memory_tokens};
pub use train::{EvalReport, MemoryInput, ReportEncoder, ReportTrainer, StepReport};

use crate::bail_shape;
use crate::error::{Error, Result};
use crate::model::sorted_vars;
use crate::weights::{WeightFile, state_mismatch, write_atomic, write_safetensors};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor, nn};

/// Name of the weights file in an exported model folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// Name of the config file in an exported model folder.
pub const CONFIG_FILE: &str = "config.json";

/// Mean cross-entropy with label smoothing ε over the targets that are not `pad` (PyTorch's
/// `F.cross_entropy(logits, targets, ignore_index=pad, label_smoothing=ε)`, Szegedy et al. 2016): per target y,
/// (1 − ε)·(−log p_y) + ε·mean_v(−log p_v), averaged over the non-pad targets. Computed in float32. Returns the
/// loss and the number of targets counted; no target → (0, 0) (a zero that keeps the graph).
///
/// # Shapes
/// logits: (N, V), targets: (N,) int64 → scalar
pub fn label_smoothed_ce(logits: &Tensor, targets: &Tensor, pad: i64, smoothing: f64) -> Result<(Tensor, i64)> {
    if logits.dim() != 2 || targets.size() != [logits.size()[0]] {
        bail_shape!("loss: logits must be (N, V) and targets (N,), got {:?} and {:?}", logits.size(), targets.size());
    }
    let logits = logits.f_to_kind(Kind::Float)?;
    let n = targets.f_ne(pad)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if n == 0 {
        return Ok((logits.f_sum(Kind::Float)?.f_mul_scalar(0.0)?, 0));
    }
    let loss = logits.f_cross_entropy_loss(targets, None::<Tensor>, Reduction::Mean, pad, smoothing)?;
    Ok((loss, n))
}

/// The captioner: memory projector and decoder in one VarStore (see the module docs for the key layout).
#[derive(Debug)]
pub struct ReportModel {
    /// The architecture.
    pub cfg: RrgConfig,
    /// Every parameter, under the keys of the module docs.
    pub vs: nn::VarStore,
    /// Encoder tokens → d.
    pub memory: MemoryProjector,
    /// The text decoder (also the decoding-cache API).
    pub decoder: Decoder,
}

impl ReportModel {
    /// A freshly initialised model on `device`: linear weights and embeddings ~ N(0, 0.02²) (GPT-2 / nanoGPT),
    /// biases 0, LayerNorms (1, 0); the draws come from LibTorch's generator seeded with `seed` (under the
    /// crate's generator lock), in sorted variable order.
    pub fn new(cfg: RrgConfig, device: Device, seed: i64) -> Result<Self> {
        cfg.validate()?;
        let vs = nn::VarStore::new(device);
        let _rng = crate::backbone::RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        tch::manual_seed(seed);
        let root = vs.root();
        let memory = MemoryProjector::new(&root / "memory", cfg.d_vit, cfg.d_model, cfg.layer_norm_eps);
        let decoder = Decoder::new(&root / "decoder", &root / "lm_head", &cfg);
        tch::no_grad(|| {
            for (name, mut t) in sorted_vars(&vs) {
                let is_norm = name.contains("norm.");
                if is_norm && name.ends_with(".weight") {
                    let _ = t.fill_(1.0);
                } else if name.ends_with(".bias") {
                    let _ = t.zero_();
                } else {
                    let _ = t.normal_(0.0, 0.02);
                }
            }
        });
        Ok(ReportModel { cfg, vs, memory, decoder })
    }

    /// Checks the encoder features and the optional memory mask against the config.
    fn check_memory(&self, features: &Tensor, memory_mask: Option<&Tensor>) -> Result<()> {
        if features.dim() != 3 || features.size()[2] != self.cfg.d_vit || !features.is_floating_point() {
            bail_shape!("memory features: expected a (B, M, {}) float tensor (dVit = {}), got {:?} {:?}", self.cfg.d_vit, self.cfg.d_vit, features.size(), features.kind());
        }
        if let Some(m) = memory_mask {
            let (b, n) = (features.size()[0], features.size()[1]);
            if m.size() != [b, n] || m.kind() != Kind::Bool {
                bail_shape!("memory mask: expected a bool tensor of shape [{b}, {n}], got {:?} {:?}", m.kind(), m.size());
            }
            let rows_empty = m.any_dims(&[1i64][..], false).logical_not().sum(Kind::Int64).int64_value(&[]);
            if rows_empty > 0 {
                bail_shape!("memory mask: {rows_empty} row(s) have no real memory token");
            }
        }
        Ok(())
    }

    /// The projected memory of encoder features, on the model's device.
    ///
    /// # Shapes
    /// features: (B, M, D_vit) → (B, M, d)
    pub fn project_memory(&self, features: &Tensor, memory_mask: Option<&Tensor>) -> Result<Tensor> {
        self.check_memory(features, memory_mask)?;
        let features = features.f_to_device(self.vs.device())?.f_to_kind(Kind::Float)?;
        self.memory.forward(&features)
    }

    /// Teacher-forced logits.
    ///
    /// # Shapes
    /// features: (B, M, D_vit) float; memory_mask: (B, M) bool (true = real token; None = all real);
    /// tokens: (B, T) int64 → (B, T, V) float32
    pub fn forward(&self, features: &Tensor, memory_mask: Option<&Tensor>, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let memory = self.project_memory(features, memory_mask)?;
        let dev = self.vs.device();
        let mask = memory_mask.map(|m| m.to_device(dev));
        self.decoder.forward(&memory, mask.as_ref(), &tokens.f_to_device(dev)?, train)
    }

    /// The teacher-forcing loss of padded reports `[BOS] … [EOS] [PAD]…`: inputs tokens[:, :−1], targets
    /// tokens[:, 1:], [`label_smoothed_ce`] with the config's ε, pads ignored. Returns the loss and the number
    /// of targets counted.
    ///
    /// # Shapes
    /// features: (B, M, D_vit); memory_mask: (B, M) bool; tokens: (B, T) int64, 2 ≤ T ≤ maxPositions + 1 → scalar
    pub fn loss(&self, features: &Tensor, memory_mask: Option<&Tensor>, tokens: &Tensor, train: bool) -> Result<(Tensor, i64)> {
        if tokens.dim() != 2 || tokens.size()[1] < 2 || tokens.kind() != Kind::Int64 {
            bail_shape!("tokens: expected a (B, T) int64 tensor with T ≥ 2 ([BOS] … [EOS]), got {:?} {:?}", tokens.size(), tokens.kind());
        }
        if tokens.size()[0] != features.size()[0] {
            bail_shape!("tokens have {} rows but the memory features {}", tokens.size()[0], features.size()[0]);
        }
        let t = tokens.size()[1];
        let tokens = tokens.f_to_device(self.vs.device())?;
        let logits = self.forward(features, memory_mask, &tokens.narrow(1, 0, t - 1), train)?;
        let v = self.cfg.vocab_size;
        let targets = tokens.narrow(1, 1, t - 1).reshape([-1]);
        label_smoothed_ce(&logits.reshape([-1, v]), &targets, self.cfg.pad_id, self.cfg.label_smoothing)
    }

    /// Every parameter under its key (CPU copies, float32), sorted.
    pub fn named_tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        sorted_vars(&self.vs)
            .into_iter()
            .map(|(k, t)| Ok((k, t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?)))
            .collect()
    }

    /// Writes `dir/model.safetensors` (float32, metadata of the module docs plus `metadata`) and
    /// `dir/config.json` (the [`RrgConfig`] JSON, pretty), each atomically; creates `dir`.
    pub fn save(&self, dir: &Path, metadata: HashMap<String, String>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut md = metadata;
        md.insert("format".into(), "pt".into());
        md.insert("cxformer_kind".into(), "rrg".into());
        md.insert("cxformer_rrg_config".into(), self.cfg.to_json());
        write_safetensors(&dir.join(MODEL_FILE), &self.named_tensors()?, md)?;
        let mut json = serde_json::to_string_pretty(&self.cfg).expect("serializable");
        json.push('\n');
        write_atomic(&dir.join(CONFIG_FILE), json.as_bytes())
    }

    /// Loads a folder written by [`ReportModel::save`]: the config from `config.json`, then every tensor of
    /// `model.safetensors` strictly (each expected key present with its shape, nothing else; the error lists
    /// the missing, unexpected and mismatched keys and nothing is loaded).
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        let cfg_path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let cfg: RrgConfig = serde_json::from_str(&text).map_err(|e| Error::weights(&cfg_path, format!("not a report model config: {e}")))?;
        cfg.validate().map_err(|e| Error::weights(&cfg_path, e.to_string()))?;
        let model = ReportModel::new(cfg, device, 0)?;
        let path = dir.join(MODEL_FILE);
        let file = WeightFile::open(&path)?;
        let found = file.tensors()?;
        let live: BTreeMap<String, Tensor> = sorted_vars(&model.vs).into_iter().collect();
        if let Err(listing) = state_mismatch(&live, &found, |_| false) {
            return Err(Error::weights(&path, format!("the weights do not match the report model of {CONFIG_FILE}; nothing was loaded.\n  {listing}")));
        }
        tch::no_grad(|| -> Result<()> {
            for (name, dst) in &live {
                let mut dst = dst.shallow_clone();
                dst.f_copy_(&found[name].f_to_kind(dst.kind())?.f_to_device(dst.device())?)?;
            }
            Ok(())
        })?;
        Ok(model)
    }
}

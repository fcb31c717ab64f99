//! LoRA (Hu et al. 2021) on a causal LM's linear layers, as PEFT computes it (`peft/tuners/lora/layer.py`
//! `Linear.forward`): y = W x + b + (α / r) · B A dropout(x), A (r, in), B (out, r).
//!
//! - **Where**: the projections of [`LanguageModel::linear_layers`] whose last name is in
//!   [`LoraConfig::targets`] (empty = all of them: q/k/v/o and gate/up/down for the llama family, GPT-2's
//!   `c_attn`, `c_proj`, `c_fc`). The deltas hook into the LM ([`crate::lm::adapter`]); its own weights do not
//!   change.
//! - **Init** (PEFT `init_lora_weights=True`): A ~ kaiming-uniform(a = √5) = U(−1/√in, 1/√in), drawn from a
//!   SplitMix64 stream of (`seed`, layer index) (the same values on every device); B = 0, so a fresh adapter
//!   leaves the model's outputs unchanged, bit for bit.
//! - **Dropout** on the adapter's input, only in training mode ([`Lora::set_train`]; LibTorch's generator).
//! - **Variables** (their own VarStore, in the LM's kind and device): `<module path>.lora_A.weight`,
//!   `<module path>.lora_B.weight`, the module path as in the LM's checkpoint (`model.layers.0.self_attn.q_proj`).
//! - **Merge** ([`Lora::merge`]): W += (α / r) · B A (transposed for GPT-2's Conv1D, stored (in, out): PEFT's
//!   `fan_in_fan_out`), computed in float32, then the deltas are removed.
//! - **PEFT export** ([`Lora::save_peft`]): `adapter_config.json` (peft_type LORA, r, lora_alpha, lora_dropout,
//!   target_modules, fan_in_fan_out, bias "none", task_type CAUSAL_LM) and `adapter_model.safetensors` with
//!   `base_model.model.<module path>.lora_A.weight` / `.lora_B.weight` (PEFT's `get_peft_model_state_dict`: the
//!   adapter name dropped), the module path being the module's name in the transformers model that PEFT wraps.
use crate::error::{Error, Result};
use crate::lm::{LanguageModel, LinearDelta};
use crate::rrg::generate::SplitMix64;
use crate::weights::{write_atomic, write_safetensors};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor, nn};

/// PEFT's adapter files.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_MODEL_FILE: &str = "adapter_model.safetensors";

/// What LoRA adapts and how.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// r ≥ 1.
    pub rank: i64,
    /// α: the update is scaled by α / r.
    pub alpha: f64,
    /// Dropout on the adapter's input in training, in [0, 1).
    pub dropout: f64,
    /// Last names of the adapted projections (`q_proj`, `c_attn`, …); empty = every projection.
    pub targets: Vec<String>,
    /// Seed of A's initial values.
    pub seed: u64,
}

impl LoraConfig {
    /// Every projection, no dropout, seed 0.
    pub fn new(rank: i64, alpha: f64) -> Self {
        LoraConfig { rank, alpha, dropout: 0.0, targets: Vec::new(), seed: 0 }
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank < 1 {
            return Err(Error::Config(format!("LoRA rank must be ≥ 1, got {}", self.rank)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Config(format!("LoRA alpha must be a finite number > 0, got {}", self.alpha)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!("LoRA dropout must lie in [0, 1), got {}", self.dropout)));
        }
        Ok(())
    }

    /// α / r.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }
}

/// The delta of one projection.
#[derive(Debug)]
struct LoraDelta {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f64,
    train: Arc<AtomicBool>,
}

impl LinearDelta for LoraDelta {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let train = self.train.load(Ordering::Relaxed);
        let x = if self.dropout > 0.0 && train { x.f_dropout(self.dropout, true)? } else { x.shallow_clone() };
        // (..., in) → (..., r) → (..., out)
        Ok(x.f_linear::<Tensor>(&self.a, None)?.f_linear::<Tensor>(&self.b, None)?.f_mul_scalar(self.scale)?)
    }
}

/// One adapted projection.
#[derive(Debug)]
pub struct LoraModule {
    /// Module path in the LM's checkpoint (`model.layers.0.self_attn.q_proj`).
    pub path: String,
    /// A (r, in).
    pub a: Tensor,
    /// B (out, r).
    pub b: Tensor,
    /// The base weight is stored (in, out) (GPT-2's Conv1D).
    pub fan_in_fan_out: bool,
}

/// LoRA adapters attached to an LM (see the module docs).
pub struct Lora {
    /// The A and B matrices (see the module docs for their names).
    pub vs: nn::VarStore,
    pub cfg: LoraConfig,
    modules: Vec<LoraModule>,
    train: Arc<AtomicBool>,
}

impl std::fmt::Debug for Lora {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lora").field("cfg", &self.cfg).field("modules", &self.modules.len()).finish()
    }
}

/// A VarStore path from a dotted module path.
fn path_of<'a>(root: nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    dotted.split('.').fold(root, |p, c| &p / c)
}

impl Lora {
    /// Adds an adapter to each targeted projection of `lm` (evaluation mode; see the module docs). Fails, naming
    /// the available last names, when a target matches nothing or a projection already has a delta.
    pub fn attach(lm: &mut LanguageModel, cfg: &LoraConfig) -> Result<Lora> {
        cfg.validate()?;
        let layers = lm.linear_layers();
        let leaf = |p: &str| p.rsplit('.').next().unwrap_or(p).to_string();
        let available: BTreeSet<String> = layers.iter().map(|l| leaf(&l.path)).collect();
        if let Some(t) = cfg.targets.iter().find(|t| !available.contains(*t)) {
            return Err(Error::Config(format!(
                "LoRA target \"{t}\" matches no linear layer of this {} LM; available: {}",
                lm.config().family.model_type(),
                available.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let chosen: Vec<_> = layers.into_iter().filter(|l| cfg.targets.is_empty() || cfg.targets.contains(&leaf(&l.path))).collect();
        if let Some(l) = chosen.iter().find(|l| l.adapted) {
            return Err(Error::Config(format!("{} already has an adapter", l.path)));
        }
        let mut vs = nn::VarStore::new(lm.device());
        vs.set_kind(lm.kind());
        let train = Arc::new(AtomicBool::new(false));
        let mut out = Vec::with_capacity(chosen.len());
        tch::no_grad(|| -> Result<()> {
            for (i, l) in chosen.iter().enumerate() {
                let p = path_of(vs.root(), &l.path);
                let a = (&p / "lora_A").zeros("weight", &[cfg.rank, l.in_features]);
                let b = (&p / "lora_B").zeros("weight", &[l.out_features, cfg.rank]);
                let mut rng = SplitMix64::new(cfg.seed, i as u64);
                let bound = 1.0 / (l.in_features as f64).sqrt();
                let vals: Vec<f32> = (0..a.numel()).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
                a.shallow_clone().f_copy_(&Tensor::from_slice(&vals).f_reshape(a.size())?.f_to_kind(a.kind())?.f_to_device(a.device())?)?;
                out.push(LoraModule { path: l.path.clone(), a, b, fan_in_fan_out: l.fan_in_fan_out });
            }
            Ok(())
        })?;
        for m in &out {
            let delta = LoraDelta { a: m.a.shallow_clone(), b: m.b.shallow_clone(), scale: cfg.scale(), dropout: cfg.dropout, train: train.clone() };
            lm.set_delta(&m.path, Some(Box::new(delta)))?;
        }
        Ok(Lora { vs, cfg: cfg.clone(), modules: out, train })
    }

    /// Training mode: dropout active (when configured).
    pub fn set_train(&self, on: bool) {
        self.train.store(on, Ordering::Relaxed);
    }

    /// The adapted projections, in the LM's layer order.
    pub fn modules(&self) -> &[LoraModule] {
        &self.modules
    }

    /// Every A and B, sorted by name (the optimizer's parameters).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        crate::model::sorted_vars(&self.vs)
    }

    /// Folds each adapter into its base weight (see the module docs) and removes the deltas from `lm`.
    pub fn merge(self, lm: &mut LanguageModel) -> Result<()> {
        let weights: HashMap<String, Tensor> = lm.linear_layers().into_iter().map(|l| (l.path, l.weight)).collect();
        let scale = self.cfg.scale();
        tch::no_grad(|| -> Result<()> {
            for m in &self.modules {
                let w = weights.get(&m.path).ok_or_else(|| Error::Config(format!("the LM has no linear layer {}", m.path)))?;
                // (out, r) @ (r, in) → (out, in), float32
                let d = m.b.f_to_kind(Kind::Float)?.f_mm(&m.a.f_to_kind(Kind::Float)?)?.f_mul_scalar(scale)?;
                let d = if m.fan_in_fan_out { d.f_transpose(0, 1)? } else { d };
                let merged = w.f_to_kind(Kind::Float)?.f_add(&d)?.f_to_kind(w.kind())?;
                w.shallow_clone().f_copy_(&merged)?;
            }
            Ok(())
        })?;
        self.detach(lm)
    }

    /// Removes the deltas from `lm` without merging them.
    pub fn detach(self, lm: &mut LanguageModel) -> Result<()> {
        for m in &self.modules {
            lm.set_delta(&m.path, None)?;
        }
        Ok(())
    }

    /// Writes a PEFT adapter folder (see the module docs): `module_path` maps a checkpoint path of the LM to the
    /// module's name in the transformers model the adapter is for; `target_modules` is written as is (a list of
    /// last names, or a regular expression PEFT full-matches against module names); `base_model` fills
    /// `base_model_name_or_path`. Tensors keep the adapter's kind. Both files are written atomically.
    pub fn save_peft(&self, dir: &Path, module_path: impl Fn(&str) -> String, target_modules: Value, base_model: Option<&str>) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut tensors = BTreeMap::new();
        for m in &self.modules {
            let base = format!("base_model.model.{}", module_path(&m.path));
            tensors.insert(format!("{base}.lora_A.weight"), m.a.detach().f_contiguous()?);
            tensors.insert(format!("{base}.lora_B.weight"), m.b.detach().f_contiguous()?);
        }
        let c = &self.cfg;
        let config = json!({
            "alpha_pattern": {},
            "auto_mapping": null,
            "base_model_name_or_path": base_model,
            "bias": "none",
            "fan_in_fan_out": self.modules.iter().any(|m| m.fan_in_fan_out),
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": if c.alpha.fract() == 0.0 { json!(c.alpha as i64) } else { json!(c.alpha) },
            "lora_dropout": c.dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": c.rank,
            "rank_pattern": {},
            "revision": null,
            "target_modules": target_modules,
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": false
        });
        let text = serde_json::to_string_pretty(&config).map_err(|e| Error::Config(e.to_string()))? + "\n";
        let md = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&dir.join(ADAPTER_MODEL_FILE), &tensors, md)?;
        write_atomic(&dir.join(ADAPTER_CONFIG_FILE), text.as_bytes())
    }

    /// The last names of the adapted projections, sorted (PEFT's list form of `target_modules`).
    pub fn target_names(&self) -> Vec<String> {
        let names: BTreeSet<String> = self.modules.iter().map(|m| m.path.rsplit('.').next().unwrap_or(&m.path).to_string()).collect();
        names.into_iter().collect()
    }
}

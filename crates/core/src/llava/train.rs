//! [`LlavaTrainer`]: the two LLaVA training stages (issue #16) on the shared harness ([`crate::train`]), built as
//! [`crate::rrg::train::ReportTrainer`] is.
//!
//! - **Stages** ([`LlavaTrainConfig::stage`]): `align` trains the projector only (LLaVA's stage 1,
//!   `--tune_mm_mlp_adapter`); `finetune` trains the projector and the LM, through LoRA adapters (`lora` an
//!   object: [`LoraSpec`]) or every LM weight (`lora` absent or `"full"`). The vision tower is always frozen
//!   (`trainVision` false). The trainer takes a [`LlavaModel`] (moved in), attaches the adapters when asked and
//!   selects the trainable variables with [`LlavaModel::set_stage`]: the others get no gradient and stay bit for
//!   bit unchanged.
//! - **Inputs** ([`LlavaBatch`]): normalised pixels (N, 3, H, W), input ids (B, T) with one image token per image
//!   (expanded by the model) or already expanded, an optional attention mask (B, T) (left padding) and labels
//!   (B, T) int64 = the ids on report tokens and −100 elsewhere ([`super::report_labels`]).
//! - **Loss**: [`LlavaModel::loss`], transformers' shifted causal-LM cross-entropy, mean over the report tokens of
//!   the global batch. **Gradient accumulation** (`gradAccumSteps` = k micro-batches per optimizer step): each
//!   micro-batch back-propagates its loss × its target count nᵢ (a sum), and once the global count K = Σ nᵢ over
//!   the micro-batches and ranks is known the gradients are scaled by W/K before DDP's mean over the W ranks, so
//!   that k micro-batches of b equal one batch of k·b (and W ranks × b equal one process × W·b) up to float
//!   order, whatever the number of report tokens in each.
//! - **Optimizer**: AdamW ([`crate::train::optim::AdamW`], torch semantics) over exactly the stage's trainable
//!   variables: the projector at `lr`, the LM (LoRA A/B or its weights) at `lmLr` (a group lr multiplier
//!   `lmLr / lr`); decoupled weight decay on 2-D tensors only (never biases or norms).
//! - **Schedule**, per optimizer step s: linspace(0, lr, W) warm-up then cosine to 0 at T (or constant),
//!   [`crate::train::schedule::lr_at`]; both groups follow it.
//! - **Step order** ([`crate::train::step`]): dropout (LoRA's) seeded from (seed, step, rank)
//!   ([`crate::train::step::seed_drop_path`], under the crate's generator lock) → for each micro-batch: forward
//!   (bf16 autocast when `precision` is bf16 and the device is CUDA; f32 otherwise) → loss → backward of loss·nᵢ →
//!   then one all-reduce of [K, loss·K] ([`LossTerms::over_ranks`]) → NaN check (gradients dropped, nothing else
//!   modified on failure) → gradients × W/K → gradient all-reduce ([`Collective`]) → total-norm clipping
//!   (`clipGrad`) → AdamW. A step without any report token (on every process) takes no update and only advances
//!   the schedule.
//! - **Data parallelism** ([`LlavaTrainer::set_dist`]): the ranks check that they hold the same frozen base, then
//!   rank 0's trainable state is broadcast (also after every load). Dropout streams differ per rank, so W ranks ×
//!   b equal 1 process × W·b exactly only without dropout.
//! - **State** ([`LlavaTrainer::save_state`] / [`LlavaTrainer::load_state`]) in the one training-state format
//!   ([`crate::train::state`], kind `llava`): only the trainable tensors under their variable names
//!   (`multi_modal_projector.linear_1.weight`, `language_model.model.layers.0.self_attn.q_proj.lora_A.weight`, …),
//!   their moments `optim.exp_avg.<name>` / `optim.exp_avg_sq.<name>`, the optimizer step and the counters
//!   `scheduled_steps` and `seed`. The frozen base (tower, LM unless fully fine-tuned) is not stored: it is
//!   reloaded from its folder, and its fingerprint ([`base_fingerprint`], a 64-bit hash of every frozen tensor's
//!   name, dtype, shape and bytes) is written in the metadata entry [`BASE_KEY`]. A state of another stage or of
//!   another base is refused by name, also when a config change is allowed; atomic writes, strict loads, exact
//!   resume. The plumbing is the shared [`crate::train::state::TrainerState`] (the stage and base checks are this
//!   trainer's own hook); this file says where the state lives.
//! - **Export**: [`LlavaTrainer::save_hf`] writes a transformers `LlavaForConditionalGeneration` folder with the
//!   adapters merged (into a float32 copy on the CPU: the trainer keeps its adapters and goes on);
//!   [`LlavaTrainer::save_peft`] the PEFT adapter folder.
//!
//! Defaults follow LLaVA-Rad (github.com/microsoft/LLaVA-Rad): `scripts/pretrain.sh` (stage 1: learning_rate
//! 1e-3, weight_decay 0, warmup_ratio 0.03, cosine, bf16) and `scripts/finetune_lora.sh` (stage 2:
//! learning_rate 1e-4 for the LoRA adapters and the projector alike, no `mm_projector_lr`; `lora_alpha 128` with
//! `llava/train/train.py`'s `lora_r 64`, `lora_dropout 0.05`, LoRA on every linear layer of the LM). LLaVA-1.5
//! (github.com/haotian-liu/LLaVA `scripts/v1_5/finetune_lora.sh`) uses r 128, α 256, lr 2e-4 and a projector lr
//! of 2e-5 instead: set `lora`, `lr` and `lmLr` for that recipe.
use super::{LM_PREFIX, LlavaModel, LoraConfig, SaveOptions, Stage};
use crate::backbone::Precision;
use crate::bail_shape;
use crate::error::{Error, Result};
use crate::model::sorted_vars;
use crate::train::collective::{Collective, SingleProcess};
use crate::train::optim::{AdamW, ParamGroup};
use crate::train::schedule::{Schedule, lr_at};
use crate::train::state::{SCHEDULED_STEPS, StateKind, TrainState, TrainerState};
use crate::train::step::{LossTerms, UpdateValues, apply_update, seed_drop_path};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The state counter holding the trainer's seed (the dropout streams depend on it).
pub const SEED_COUNTER: &str = "seed";
/// Metadata key of a state's frozen-base fingerprint ([`base_fingerprint`]).
pub const BASE_KEY: &str = "cxformer_llava_base";

/// The two LLaVA training stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainStage {
    /// Stage 1: the projector only.
    Align,
    /// Stage 2: the projector and the LM (LoRA or full).
    Finetune,
}

/// LoRA settings of the finetune stage (PEFT's names in parentheses).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoraSpec {
    /// r (`r`). @default 64 (LLaVA-Rad: LLaVA's `lora_r` default)
    #[serde(default = "d_rank")]
    pub rank: i64,
    /// α (`lora_alpha`): the update is scaled by α / r. @default 128 (LLaVA-Rad `finetune_lora.sh`)
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    /// Dropout on the adapters' input in training (`lora_dropout`). @default 0.05
    #[serde(default = "d_lora_dropout")]
    pub dropout: f64,
    /// Last names of the adapted projections (`q_proj`, `c_attn`, …); empty = every linear layer of the LM
    /// (LLaVA's `find_all_linear_names`). @default []
    #[serde(default)]
    pub target_modules: Vec<String>,
}

fn d_rank() -> i64 {
    64
}
fn d_alpha() -> f64 {
    128.0
}
fn d_lora_dropout() -> f64 {
    0.05
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec { rank: d_rank(), alpha: d_alpha(), dropout: d_lora_dropout(), target_modules: Vec::new() }
    }
}

impl LoraSpec {
    /// The adapters' [`LoraConfig`], A drawn from `seed`.
    pub fn lora_config(&self, seed: u64) -> LoraConfig {
        LoraConfig { rank: self.rank, alpha: self.alpha, dropout: self.dropout, targets: self.target_modules.clone(), seed }
    }
}

/// How the finetune stage trains the LM: `"full"` (every weight) or LoRA adapters (an object).
#[derive(Clone, Debug, PartialEq)]
pub enum LmTuning {
    Full,
    Lora(LoraSpec),
}

impl Serialize for LmTuning {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            LmTuning::Full => s.serialize_str("full"),
            LmTuning::Lora(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for LmTuning {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) if s == "full" => Ok(LmTuning::Full),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v).map(LmTuning::Lora).map_err(|e| D::Error::custom(format!("lora: {e}"))),
            v => Err(D::Error::custom(format!("lora: expected \"full\" or an object {{rank, alpha, dropout, targetModules}}, got {v}"))),
        }
    }
}

/// The training values of [`LlavaTrainer`] (camelCase JSON, unknown fields rejected; see the module docs for the
/// defaults' sources). Values left out of the JSON are resolved on parsing, so that [`LlavaTrainConfig::to_json`]
/// (compared when a state is loaded) always holds every value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawConfig")]
pub struct LlavaTrainConfig {
    pub stage: TrainStage,
    /// Peak lr of the projector. @default 1e-3 (align), 1e-4 (finetune)
    pub lr: f64,
    /// Peak lr of the LM's trained tensors (LoRA A/B or all its weights); finetune only (absent in align).
    /// @default 1e-4
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lm_lr: Option<f64>,
    /// Decoupled weight decay of the 2-D tensors. @default 0
    pub weight_decay: f64,
    /// Warm-up steps W (linspace(0, lr, W)). @default ⌈0.03 · totalSteps⌉ (LLaVA's warmup_ratio 0.03)
    pub warmup_steps: i64,
    /// Optimizer steps T of the schedule (cosine reaches 0 at T). @default 1000
    pub total_steps: i64,
    /// @default "cosine"
    pub schedule: Schedule,
    /// Max total gradient norm, 0 = off. @default 1 (transformers' max_grad_norm)
    pub clip_grad: f64,
    /// bf16 autocast of the forward pass, on CUDA only (the CPU always runs f32). @default "bf16"
    pub precision: Precision,
    /// @default [0.9, 0.999]
    pub adamw_betas: [f64; 2],
    /// @default 1e-8
    pub adamw_eps: f64,
    /// finetune: LoRA adapters (an object, [`LoraSpec`]) or `"full"` (absent = full); align: absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lora: Option<LmTuning>,
    /// Micro-batches per optimizer step (k). @default 1
    pub grad_accum_steps: i64,
    /// Must be false: the vision tower stays frozen. @default false
    pub train_vision: bool,
}

/// The JSON as written, before the stage's defaults are resolved.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConfig {
    stage: TrainStage,
    lr: Option<f64>,
    lm_lr: Option<f64>,
    #[serde(default)]
    weight_decay: f64,
    warmup_steps: Option<i64>,
    #[serde(default = "crate::train::defaults::total_steps")]
    total_steps: i64,
    #[serde(default = "crate::train::defaults::schedule")]
    schedule: Schedule,
    #[serde(default = "crate::train::defaults::clip_grad")]
    clip_grad: f64,
    #[serde(default = "d_precision")]
    precision: Precision,
    #[serde(default = "crate::train::defaults::adamw_betas")]
    adamw_betas: [f64; 2],
    #[serde(default = "crate::train::defaults::adamw_eps")]
    adamw_eps: f64,
    lora: Option<LmTuning>,
    #[serde(default = "d_one")]
    grad_accum_steps: i64,
    #[serde(default)]
    train_vision: bool,
}

fn d_precision() -> Precision {
    Precision::Bf16
}
fn d_one() -> i64 {
    1
}

/// LLaVA-Rad's projector lr of each stage.
fn d_lr(stage: TrainStage) -> f64 {
    match stage {
        TrainStage::Align => 1e-3,
        TrainStage::Finetune => 1e-4,
    }
}
/// LLaVA-Rad's LoRA lr.
const D_LM_LR: f64 = 1e-4;

/// ⌈0.03 · T⌉ (transformers' `get_warmup_steps` for warmup_ratio 0.03).
fn d_warmup(total: i64) -> i64 {
    (0.03 * total as f64).ceil() as i64
}

impl TryFrom<RawConfig> for LlavaTrainConfig {
    type Error = String;
    fn try_from(r: RawConfig) -> std::result::Result<Self, String> {
        let lm_lr = match (r.stage, r.lm_lr) {
            (TrainStage::Align, Some(_)) => return Err("lmLr applies to the finetune stage only (align trains the projector alone)".into()),
            (TrainStage::Align, None) => None,
            (TrainStage::Finetune, v) => Some(v.unwrap_or(D_LM_LR)),
        };
        let lora = match (r.stage, r.lora) {
            (TrainStage::Align, Some(_)) => return Err("lora applies to the finetune stage only (align trains the projector alone)".into()),
            (TrainStage::Align, None) => None,
            (TrainStage::Finetune, v) => Some(v.unwrap_or(LmTuning::Full)),
        };
        let c = LlavaTrainConfig {
            stage: r.stage,
            lr: r.lr.unwrap_or(d_lr(r.stage)),
            lm_lr,
            weight_decay: r.weight_decay,
            warmup_steps: r.warmup_steps.unwrap_or(d_warmup(r.total_steps)),
            total_steps: r.total_steps,
            schedule: r.schedule,
            clip_grad: r.clip_grad,
            precision: r.precision,
            adamw_betas: r.adamw_betas,
            adamw_eps: r.adamw_eps,
            lora,
            grad_accum_steps: r.grad_accum_steps,
            train_vision: r.train_vision,
        };
        c.check().map(|_| c)
    }
}

impl LlavaTrainConfig {
    /// Stage 1 with LLaVA-Rad's values (see the module docs).
    pub fn align() -> Self {
        Self::from_json(r#"{"stage":"align"}"#).expect("valid defaults")
    }

    /// Stage 2 with LoRA and LLaVA-Rad's values (see the module docs).
    pub fn finetune_lora() -> Self {
        Self::from_json(r#"{"stage":"finetune","lora":{}}"#).expect("valid defaults")
    }

    /// Stage 2 training every LM weight.
    pub fn finetune_full() -> Self {
        Self::from_json(r#"{"stage":"finetune","lora":"full"}"#).expect("valid defaults")
    }

    /// Parses the camelCase JSON (unknown fields rejected), resolves the defaults and validates it.
    pub fn from_json(s: &str) -> Result<Self> {
        serde_json::from_str(s).map_err(|e| Error::Config(format!("LLaVA training config: {e}")))
    }

    /// The camelCase JSON, every value resolved (compared when a training state is loaded).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("serializable")
    }

    /// Checks every value, naming the field.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|m| Error::Config(format!("LLaVA training config: {m}")))
    }

    fn check(&self) -> std::result::Result<(), String> {
        let pos = |name: &str, v: f64| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{name} must be a finite number > 0, got {v}")) };
        let nonneg = |name: &str, v: f64| if v.is_finite() && v >= 0.0 { Ok(()) } else { Err(format!("{name} must be a finite number ≥ 0, got {v}")) };
        pos("lr", self.lr)?;
        match (self.stage, self.lm_lr) {
            (TrainStage::Finetune, Some(v)) => pos("lmLr", v)?,
            (TrainStage::Finetune, None) => return Err("lmLr is missing for the finetune stage".into()),
            (TrainStage::Align, Some(_)) => return Err("lmLr applies to the finetune stage only".into()),
            (TrainStage::Align, None) => {}
        }
        nonneg("weightDecay", self.weight_decay)?;
        nonneg("clipGrad", self.clip_grad)?;
        if self.total_steps < 1 {
            return Err(format!("totalSteps must be ≥ 1, got {}", self.total_steps));
        }
        if self.warmup_steps < 0 || self.warmup_steps > self.total_steps {
            return Err(format!("warmupSteps must lie in [0, totalSteps = {}], got {}", self.total_steps, self.warmup_steps));
        }
        for (i, b) in self.adamw_betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(format!("adamwBetas[{i}] must lie in [0, 1), got {b}"));
            }
        }
        pos("adamwEps", self.adamw_eps)?;
        if self.grad_accum_steps < 1 {
            return Err(format!("gradAccumSteps must be ≥ 1, got {}", self.grad_accum_steps));
        }
        if self.train_vision {
            return Err("trainVision must be false: the vision tower stays frozen in both stages (as in LLaVA-Rad)".into());
        }
        match (self.stage, &self.lora) {
            (TrainStage::Align, Some(_)) => return Err("lora applies to the finetune stage only".into()),
            (TrainStage::Finetune, Some(LmTuning::Lora(l))) => {
                l.lora_config(0).validate().map_err(|e| format!("lora: {}", e.to_string().trim_start_matches("invalid configuration: ")))?
            }
            _ => {}
        }
        Ok(())
    }

    /// The model stage this config trains.
    pub fn model_stage(&self) -> Stage {
        match (self.stage, &self.lora) {
            (TrainStage::Align, _) => Stage::Align,
            (TrainStage::Finetune, Some(LmTuning::Lora(_))) => Stage::FinetuneLora,
            (TrainStage::Finetune, _) => Stage::FinetuneFull,
        }
    }

    /// The projector's lr at optimizer step `step` (see the module docs).
    pub fn lr_at(&self, step: i64) -> f64 {
        lr_at(step, self.lr, self.warmup_steps, self.total_steps, self.schedule)
    }
}

/// The stage of a config JSON in words ("align", "finetune (LoRA)", "finetune (full)"), for messages.
fn stage_words(config: &str) -> String {
    match LlavaTrainConfig::from_json(config) {
        Ok(c) => stage_name(c.model_stage()).into(),
        Err(_) => {
            let v: Option<serde_json::Value> = serde_json::from_str(config).ok();
            v.and_then(|v| v.get("stage").and_then(|s| s.as_str()).map(str::to_string)).unwrap_or_else(|| "unknown".into())
        }
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::Align => "align",
        Stage::FinetuneLora => "finetune (LoRA)",
        Stage::FinetuneFull => "finetune (full)",
    }
}

/// One (micro-)batch.
///
/// # Shapes
/// pixel_values: (N, 3, H, W) float; input_ids, labels: (B, T) int64; attention_mask: (B, T) or None (all real)
#[derive(Clone, Copy)]
pub struct LlavaBatch<'a> {
    pub pixel_values: &'a Tensor,
    pub input_ids: &'a Tensor,
    pub attention_mask: Option<&'a Tensor>,
    pub labels: &'a Tensor,
}

impl<'a> LlavaBatch<'a> {
    pub fn new(pixel_values: &'a Tensor, input_ids: &'a Tensor, attention_mask: Option<&'a Tensor>, labels: &'a Tensor) -> Self {
        LlavaBatch { pixel_values, input_ids, attention_mask, labels }
    }
}

/// What one optimizer step reports.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// The scheduled step this was (0-based).
    pub step: i64,
    /// Mean loss over the report tokens of the global batch (every micro-batch, every process); 0 when none.
    pub loss: f64,
    /// Report tokens counted (targets), of every micro-batch and process.
    pub tokens: i64,
    /// The projector's learning rate of the step.
    pub lr: f64,
    /// The LM's learning rate of the step (0 in align).
    pub lm_lr: f64,
    /// Total gradient norm before clipping (0 when skipped).
    pub grad_norm: f64,
    /// No update was taken (no report token on any process).
    pub skipped: bool,
}

/// The loss of an evaluation batch.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    /// Mean loss over the report tokens (0 when none); combine batches weighted by `tokens`.
    pub loss: f64,
    /// Report tokens counted.
    pub tokens: i64,
}

/// A 64-bit hash (16 hex digits) of the frozen variables of `model`'s VarStore (every variable not named in
/// `trainable`, in name order): each one's name, dtype, shape and bytes. The same on every device.
pub fn base_fingerprint(model: &LlavaModel, trainable: &BTreeSet<String>) -> Result<String> {
    let mut h = WordHash::default();
    let mut buf: Vec<u8> = Vec::new();
    for (name, t) in sorted_vars(&model.vs) {
        if trainable.contains(&name) {
            continue;
        }
        h.bytes(name.as_bytes());
        h.bytes(format!("{:?}{:?}", t.kind(), t.size()).as_bytes());
        let c = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let n = c.numel();
        buf.resize(n * c.kind().elt_size_in_bytes(), 0);
        c.f_copy_data_u8(&mut buf, n)?;
        h.bytes(&buf);
    }
    Ok(format!("{:016x}", h.0))
}

/// FNV-1a's offset basis, then a 64-bit multiply-xorshift over 8-byte little-endian words (not cryptographic:
/// it tells bases apart).
struct WordHash(u64);

impl Default for WordHash {
    fn default() -> Self {
        WordHash(0xcbf2_9ce4_8422_2325)
    }
}

impl WordHash {
    fn word(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 ^= self.0 >> 29;
    }

    /// The length, then the bytes (the last word zero-padded).
    fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut last = [0u8; 8];
        last[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(last));
    }
}

/// The LLaVA trainer (see the module docs).
pub struct LlavaTrainer {
    /// The training config (its JSON is compared when a state is loaded).
    pub cfg: LlavaTrainConfig,
    /// The model being trained (adapters attached in the LoRA stage).
    pub model: LlavaModel,
    /// AdamW over the stage's trainable variables, in sorted name order (slot names = variable names).
    pub optimizer: AdamW,
    /// Gradient averaging across processes (SingleProcess by default).
    pub dist: Box<dyn Collective>,
    /// Dropout seed (and the LoRA A init's).
    pub seed: i64,
    /// Scheduled steps taken (step calls, skipped ones included).
    pub step: i64,
    base: String,
}

impl std::fmt::Debug for LlavaTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlavaTrainer").field("cfg", &self.cfg).field("step", &self.step).field("base", &self.base).finish()
    }
}

impl LlavaTrainer {
    /// Takes `model` for `cfg`'s stage: attaches LoRA adapters (A drawn from `seed`) unless the model already has
    /// adapters of the same settings, selects the trainable variables ([`LlavaModel::set_stage`]) and builds AdamW
    /// over them (see the module docs); fingerprints the frozen base.
    pub fn new(mut model: LlavaModel, cfg: LlavaTrainConfig, seed: i64) -> Result<Self> {
        cfg.validate()?;
        let stage = cfg.model_stage();
        if let Some(LmTuning::Lora(spec)) = &cfg.lora {
            let want = spec.lora_config(seed as u64);
            match model.lora() {
                None => model.attach_lora(&want)?,
                Some(l) => {
                    let have = &l.cfg;
                    if (have.rank, have.alpha, have.dropout, &have.targets) != (want.rank, want.alpha, want.dropout, &want.targets) {
                        return Err(Error::Config(format!(
                            "LLaVA trainer: the model's LoRA adapters (rank {}, alpha {}, dropout {}, targets {:?}) differ from the config's lora (rank {}, alpha {}, dropout {}, targetModules {:?})",
                            have.rank, have.alpha, have.dropout, have.targets, want.rank, want.alpha, want.dropout, want.targets
                        )));
                    }
                }
            }
        } else if model.lora().is_some() {
            return Err(Error::Config(format!(
                "LLaVA trainer: the model has LoRA adapters but the {} stage does not train them (merge them first, or set lora)",
                stage_name(stage)
            )));
        }
        let trainable = model.set_stage(stage)?;
        let names: BTreeSet<String> = trainable.iter().map(|(n, _)| n.clone()).collect();
        let base = base_fingerprint(&model, &names)?;
        let lm_mult = cfg.lm_lr.map(|l| l / cfg.lr).unwrap_or(1.0);
        let params = trainable
            .into_iter()
            .map(|(name, t)| {
                let lr_mult = if name.starts_with(LM_PREFIX) { lm_mult } else { 1.0 };
                let wd_mult = if t.dim() >= 2 { 1.0 } else { 0.0 };
                (name, t, ParamGroup { lr_mult, wd_mult, is_last_layer: false })
            })
            .collect();
        let optimizer = AdamW::new(params, cfg.adamw_betas[0], cfg.adamw_betas[1], cfg.adamw_eps);
        model.set_train(false);
        Ok(LlavaTrainer { cfg, model, optimizer, dist: Box::new(SingleProcess), seed, step: 0, base })
    }

    /// Joins a process group: the ranks check that they hold the same frozen base, then every rank's trainable
    /// state becomes rank 0's; from then on gradients and reported losses are global. Collective.
    pub fn set_dist(&mut self, dist: Box<dyn Collective>) -> Result<()> {
        self.dist = dist;
        if self.dist.world() > 1 {
            let mine = u64::from_str_radix(&self.base, 16).map_err(|e| Error::Config(e.to_string()))? as i64;
            let all = self.dist.all_gather(&Tensor::from_slice(&[mine]))?;
            let other: Vec<String> =
                all.iter().enumerate().filter(|(_, t)| t.int64_value(&[0]) != mine).map(|(r, t)| format!("rank {r}: {:016x}", t.int64_value(&[0]) as u64)).collect();
            if !other.is_empty() {
                return Err(Error::Dist(format!(
                    "LLaVA trainer: the ranks hold different frozen base models (rank {}: {}; {}); load the same base on every rank",
                    self.dist.rank(),
                    self.base,
                    other.join(", ")
                )));
            }
        }
        self.sync_from_rank0()
    }

    /// Broadcasts rank 0's trainable tensors, AdamW moments, counters and seed. Collective; no-op on one process.
    pub fn sync_from_rank0(&mut self) -> Result<()> {
        TrainerState::sync_from_rank0(self)
    }

    /// The frozen base's fingerprint ([`base_fingerprint`]).
    pub fn base_fingerprint(&self) -> &str {
        &self.base
    }

    /// The trained variables' names, sorted.
    pub fn trainable_names(&self) -> Vec<String> {
        self.optimizer.slots.iter().map(|s| s.name.clone()).collect()
    }

    /// (variable name, lr multiplier, weight-decay multiplier) of every optimised variable.
    pub fn groups(&self) -> Vec<(String, f64, f64)> {
        self.optimizer.slots.iter().map(|s| (s.name.clone(), s.group.lr_mult, s.group.wd_mult)).collect()
    }

    fn check_batch(b: &LlavaBatch) -> Result<()> {
        if b.input_ids.dim() != 2 || b.input_ids.kind() != Kind::Int64 || b.input_ids.size()[0] == 0 {
            bail_shape!("input_ids: expected a (B, T) int64 tensor with B ≥ 1, got {:?} {:?}", b.input_ids.size(), b.input_ids.kind());
        }
        if b.labels.size() != b.input_ids.size() || b.labels.kind() != Kind::Int64 {
            bail_shape!("labels: expected an int64 tensor of input_ids' shape {:?}, got {:?} {:?}", b.input_ids.size(), b.labels.size(), b.labels.kind());
        }
        if b.pixel_values.dim() != 4 {
            bail_shape!("pixel_values: expected (N, 3, H, W), got {:?}", b.pixel_values.size());
        }
        Ok(())
    }

    /// Loss and report-token count of one batch (autocast on CUDA when configured).
    fn batch_loss(&self, b: &LlavaBatch) -> Result<(Tensor, i64)> {
        Self::check_batch(b)?;
        let device = self.model.device();
        let _ac = if device.is_cuda() { self.cfg.precision.autocast(device)? } else { None };
        self.model.loss(b.pixel_values, b.input_ids, b.attention_mask, b.labels)
    }

    /// One optimizer step over `micro_batches` (exactly `gradAccumSteps` of them; see the module docs for the
    /// order).
    ///
    /// Errors: Config for a wrong number of micro-batches, Shape for bad inputs, NonFinite when the loss is NaN/∞
    /// (the gradients are dropped and nothing else is modified).
    pub fn step(&mut self, micro_batches: &[LlavaBatch]) -> Result<StepReport> {
        let k = self.cfg.grad_accum_steps as usize;
        if micro_batches.len() != k {
            return Err(Error::Config(format!("LLaVA trainer: a step takes gradAccumSteps = {k} micro-batches, got {}", micro_batches.len())));
        }
        let step = self.step;
        let lr = self.cfg.lr_at(step);
        let lm_lr = self.cfg.lm_lr.map(|l| lr_at(step, l, self.cfg.warmup_steps, self.cfg.total_steps, self.cfg.schedule)).unwrap_or(0.0);
        let params = self.optimizer.params();
        // Forward and backward of each micro-batch: gradients of Σᵢ lossᵢ·nᵢ.
        let local = {
            let _rng = crate::backbone::RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            seed_drop_path(self.seed, step, self.dist.rank());
            self.model.set_train(true);
            let r = self.accumulate(micro_batches);
            self.model.set_train(false);
            r
        };
        let (sum, n) = match local {
            Ok(v) => v,
            Err(e) => {
                crate::shim::clear_grads(&params)?;
                return Err(e);
            }
        };
        let device = self.model.device();
        let mean = if n > 0 { sum / n as f64 } else { 0.0 };
        let global = match LossTerms::new(n as f64, ["LLaVA train loss"], [mean]).over_ranks(self.dist.as_ref(), device, step) {
            Ok(g) => g,
            Err(e) => {
                crate::shim::clear_grads(&params)?;
                return Err(e);
            }
        };
        let ([loss], total) = (global.values, global.weight);
        self.step += 1;
        if total == 0.0 {
            crate::shim::clear_grads(&params)?;
            return Ok(StepReport { step, loss: 0.0, tokens: 0, lr, lm_lr, grad_norm: 0.0, skipped: true });
        }
        // Σ over micro-batches and ranks of ∇(lossᵢ·nᵢ) / K: × W/K here, ÷ W in the gradient all-reduce.
        let scale = self.dist.world() as f64 / total;
        tch::no_grad(|| -> Result<()> {
            for p in &params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.f_mul_scalar_(scale)?;
                }
            }
            Ok(())
        })?;
        let values = UpdateValues { lr, last_layer_lr: lr, wd: self.cfg.weight_decay, max_norm: self.cfg.clip_grad };
        let norms = apply_update(self.dist.as_ref(), &mut self.optimizer, &[params], values)?;
        Ok(StepReport { step, loss, tokens: total as i64, lr, lm_lr, grad_norm: norms[0], skipped: false })
    }

    /// Σᵢ lossᵢ·nᵢ and Σᵢ nᵢ over the micro-batches, each back-propagated as lossᵢ·nᵢ.
    fn accumulate(&self, micro_batches: &[LlavaBatch]) -> Result<(f64, i64)> {
        let (mut sum, mut count) = (0.0, 0i64);
        for b in micro_batches {
            let (loss, n) = self.batch_loss(b)?;
            if n == 0 {
                continue;
            }
            let v = loss.f_double_value(&[])?;
            sum += v * n as f64;
            count += n;
            loss.f_mul_scalar(n as f64)?.f_backward()?;
        }
        Ok((sum, count))
    }

    /// Eval-mode loss of a batch (no dropout, no gradients). Local to this process.
    pub fn evaluate(&self, batch: &LlavaBatch) -> Result<EvalReport> {
        self.model.set_train(false);
        tch::no_grad(|| {
            let (loss, n) = self.batch_loss(batch)?;
            Ok(EvalReport { loss: if n > 0 { loss.f_double_value(&[])? } else { 0.0 }, tokens: n })
        })
    }

    /// Every tensor of the training state on the CPU (CPU tensors share storage with the model).
    pub fn state(&self) -> Result<BTreeMap<String, Tensor>> {
        TrainerState::state(self)
    }

    /// The whole training state: tensors, optimizer step, counters, config and the base fingerprint.
    pub fn train_state(&self) -> Result<TrainState> {
        TrainerState::train_state(self)
    }

    /// Writes the training state atomically with the caller's `metadata` (epoch, batch position…); the base fingerprint
    /// [`BASE_KEY`] wins over a caller entry of that name.
    pub fn save_state(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        TrainerState::save_state(self, path, metadata)
    }

    /// Restores a state of [`LlavaTrainer::save_state`] strictly: kind `llava`, the same stage and the same frozen base
    /// (always, checked first), the same config unless `allow_config_change`, every trainable tensor with its shape and
    /// nothing extra, the counters `scheduled_steps` and `seed`; else nothing is loaded. Returns the caller's metadata.
    /// Collective under a process group ([`TrainerState::restore_checked`]).
    pub fn load_state(&mut self, path: &Path, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::load_state(self, path, allow_config_change)
    }

    /// [`LlavaTrainer::load_state`] of a state in memory.
    pub fn restore(&mut self, state: TrainState, allow_config_change: bool) -> Result<HashMap<String, String>> {
        TrainerState::restore(self, state, allow_config_change)
    }

    /// Writes a transformers `LlavaForConditionalGeneration` folder ([`LlavaModel::save_hf`]) of the model being
    /// trained, LoRA adapters merged: the merge happens in a float32 copy on the CPU, so the trainer keeps its
    /// adapters.
    pub fn save_hf(&self, dir: &Path, opts: &SaveOptions) -> Result<()> {
        let Some(lora) = self.model.lora() else { return self.model.save_hf(dir, opts) };
        let mut copy = LlavaModel::new(self.model.config(), self.model.generation.clone(), Device::Cpu, Kind::Float)?;
        copy.attach_lora(&lora.cfg)?;
        let src: HashMap<String, Tensor> = self.model.vs.variables().into_iter().chain(lora.vs.variables().into_iter().map(|(k, v)| (format!("lora:{k}"), v))).collect();
        let dst = copy.vs.variables().into_iter().chain(copy.lora().expect("attached").vs.variables().into_iter().map(|(k, v)| (format!("lora:{k}"), v)));
        tch::no_grad(|| -> Result<()> {
            for (name, d) in dst {
                let s = src.get(&name).ok_or_else(|| Error::Config(format!("LLaVA export: no variable {name} in the trained model")))?;
                d.shallow_clone().f_copy_(&s.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
            }
            Ok(())
        })?;
        copy.merge_lora()?;
        copy.save_hf(dir, opts)
    }

    /// Writes the LoRA adapters as a PEFT folder ([`LlavaModel::save_peft`]). Errors outside the LoRA stage.
    pub fn save_peft(&self, dir: &Path, base_model: Option<&str>) -> Result<()> {
        self.model.save_peft(dir, base_model)
    }

    /// The model, adapters still attached (e.g. to merge them in place: [`LlavaModel::merge_lora`]).
    pub fn into_model(self) -> LlavaModel {
        self.model
    }
}

/// The state plumbing ([`crate::train::state::TrainerState`]): kind `llava`, the live tensors = the trainable
/// ones and their moments, the counters `scheduled_steps` and `seed`, the frozen-base fingerprint in the metadata
/// ([`BASE_KEY`]), and the stage and base checked before anything else.
impl TrainerState for LlavaTrainer {
    const KIND: StateKind = StateKind::Llava;
    const LOADING: &'static str = "loading the LLaVA training state";
    const COUNTERS: &'static [&'static str] = &[SCHEDULED_STEPS, SEED_COUNTER];

    fn config_json(&self) -> String {
        self.cfg.to_json()
    }

    /// Trainable tensors and AdamW moments under their state names (sharing storage with the model).
    fn live(&self) -> BTreeMap<String, Tensor> {
        let mut out = BTreeMap::new();
        for s in &self.optimizer.slots {
            out.insert(s.name.clone(), s.param.shallow_clone());
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

    /// The same stage, then the same frozen base (its [`BASE_KEY`] entry taken out of the metadata), also when a
    /// config change is allowed.
    fn check_own(&self, s: &mut TrainState) -> Result<()> {
        let ours = stage_name(self.cfg.model_stage());
        let theirs = stage_words(&s.config);
        if theirs != ours {
            return Err(Error::weights(
                &s.source,
                format!("a state of the {theirs} stage; this trainer is in the {ours} stage; nothing was loaded (start a new stage from an exported model)"),
            ));
        }
        match s.metadata.remove(BASE_KEY) {
            None => Err(Error::weights(&s.source, format!("the state has no '{BASE_KEY}' metadata (frozen-base fingerprint); nothing was loaded"))),
            Some(b) if b != self.base => Err(Error::weights(
                &s.source,
                format!("the state was trained on another base model (frozen-base fingerprint {b}; this trainer's base is {}); nothing was loaded", self.base),
            )),
            Some(_) => Ok(()),
        }
    }

    fn own_metadata(&self) -> Vec<(&'static str, String)> {
        vec![(BASE_KEY, self.base.clone())]
    }
}

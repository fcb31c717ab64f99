//! The LLaVA recipe on LibTorch (issue #16, docs report-generation.md §4.2): cxformer's ViT → multimodal
//! projector → a Hugging Face causal LM of [`crate::lm`], computed as transformers 4.57's
//! `LlavaForConditionalGeneration` computes it (float32 vision features, image features and logits within 1e-4
//! of it; greedy and beam tokens identical; tests: `crates/core/tests/llava_golden.rs` against
//! `fixtures/golden/lm/llava`).
//!
//! # Model
//! pixel_values (N, 3, H, W) → [`Vit`] → `hidden_states[vision_feature_layer]` → token selection → optional
//! pooling ([`vision`]) → projector ([`projector`]: D_vit · layers → d_lm) → image features (N, T, d_lm). The
//! prompt's image tokens ([`inputs`]: expanded here or already expanded, T per image) have their embeddings
//! replaced by the image features in order (`masked_scatter`); the LM ([`crate::lm::LanguageModel`]) runs on
//! those embeddings with the attention mask (positions cumsum(mask) − 1, left padding).
//!
//! # Variables and keys
//! One VarStore: the tower under `vision_tower.` with cxformer's original DINOv2 names (fused
//! `blocks.N.attn.qkv`), the projector under `multi_modal_projector.linear_{i}`, the LM under `language_model.`
//! with its own checkpoint names (`language_model.model.layers.0.…`, `language_model.transformer.h.0.…` for
//! GPT-2, `language_model.lm_head.weight` unless tied). On disk ([`KeyLayout`]):
//! - `Legacy`, what transformers 4.57's `save_pretrained` writes (it reverses its `_checkpoint_conversion_mapping`)
//!   and what the golden folder and the published llava-hf checkpoints hold: `vision_tower.<HF Dinov2 keys>`,
//!   `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.weight`;
//! - `Nested`, transformers 4.57's module names (and transformers 5's files): `model.vision_tower.*`,
//!   `model.multi_modal_projector.*`, `model.language_model.*`, `lm_head.weight`.
//!
//! Both load (even mixed); [`LlavaModel::save_hf`] writes `Legacy` unless asked. The load is strict
//! ([`crate::lm::load_strict`]): every variable set once (q/k/v assembled from their three keys), unknown and
//! missing keys listed, a tied LM head resolved as [`crate::lm`] does, nothing loaded on failure. Before it, the
//! projector's stored widths are checked against the tower and the LM, naming both numbers.
//!
//! # Building from parts
//! [`LlavaModel::from_parts`] ([`parts`]) joins a tower config (with its weights, or drawn at its from-scratch init),
//! a transformers causal LM folder and a projector drawn from a seed, growing the LM's vocabulary by one row
//! when the image token is the id after its last.
//!
//! # Decoding
//! [`LlavaModel::generate`]: [`crate::lm::generate`] from the prompt's embeddings; the sequences returned
//! start with the (expanded) prompt ids, as transformers' `generate` returns them for `input_ids`.
//!
//! # Training pieces
//! [`LlavaModel::set_stage`] selects the trainable variables (align: the projector only; the others get
//! `requires_grad(false)` and no gradient, so they stay bit-for-bit unchanged), [`lora`] adds LoRA to the LM,
//! [`inputs::causal_lm_loss`] is transformers' shifted loss on the report labels; [`train::LlavaTrainer`] trains
//! both stages on the shared harness (state, resume, data parallelism, gradient accumulation, export).
pub mod config;
pub mod inputs;
pub mod lora;
pub mod parts;
pub mod projector;
pub mod train;
pub mod vision;

pub use config::{FeatureSelect, LlavaConfig, LlavaOptions, ProjectorKind};
pub use inputs::{IGNORE_INDEX, LlavaInputs, causal_lm_loss, causal_lm_loss_on_targets, expand_image_tokens, report_labels};
pub use lora::{Lora, LoraConfig};
pub use parts::{FromPartsReport, VocabGrowth};
pub use projector::Projector;
pub use train::{LlavaBatch, LlavaTrainConfig, LlavaTrainer, LmTuning, LoraSpec, TrainStage};

use crate::error::{Error, Result};
use crate::lm::{
    self, Checkpoint, GenerateOptions, GenerationConfig, KeyRole, LanguageModel, LmConfig, LmGeneration, LmLoadOptions, LmLoadReport,
    Prompt, load_strict, load_strict_into,
};
use crate::model::{Vit, sorted_vars};
use crate::weights::{LoadOptions, LoadReport, WeightFile, load_backbone_with, write_atomic, write_safetensors};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor, nn};

/// The transformers version whose folder layout [`LlavaModel::save_hf`] writes (`transformers_version`).
pub const TRANSFORMERS_VERSION: &str = "4.57.6";
/// Variable prefixes of the three parts.
pub const VISION_PREFIX: &str = "vision_tower.";
pub const PROJECTOR_PREFIX: &str = "multi_modal_projector.";
pub const LM_PREFIX: &str = "language_model.";
/// Tokenizer and processor files copied by [`LlavaModel::save_hf`] when they exist in the source folder.
pub const TOKENIZER_FILES: [&str; 9] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
];

/// Key names of a LLaVA checkpoint (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyLayout {
    /// `vision_tower.*`, `multi_modal_projector.*`, `language_model.model.*`, `language_model.lm_head.*`.
    #[default]
    Legacy,
    /// `model.vision_tower.*`, `model.multi_modal_projector.*`, `model.language_model.*`, `lm_head.*`.
    Nested,
}

/// What [`LlavaModel::load`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LlavaLoadReport {
    pub weights: LmLoadReport,
    /// The layout of the keys read (`Nested` if any key is in it).
    pub layout: KeyLayout,
}

/// Which variables a training stage updates ([`LlavaModel::set_stage`]); the vision tower is always frozen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Stage 1: the projector only.
    Align,
    /// Stage 2: the projector and the LM's LoRA adapters (attached first, [`LlavaModel::attach_lora`]).
    FinetuneLora,
    /// Stage 2 for small LMs: the projector and every LM variable.
    FinetuneFull,
}

/// How [`LlavaModel::save_hf`] writes a folder.
#[derive(Clone, Debug)]
pub struct SaveOptions {
    /// The weights' dtype: Float (default), BFloat16 or Half.
    pub kind: Kind,
    pub layout: KeyLayout,
    /// A folder whose tokenizer files ([`TOKENIZER_FILES`]) are copied (e.g. the loaded LLaVA or LM folder).
    pub tokenizer_from: Option<PathBuf>,
    /// Also write a model transformers does not compute (patch pooling, another projector) with cxformer's
    /// config keys ([`config::CXFORMER_POOL_KEY`]), for cxformer to load back; false refuses it.
    pub cxformer_extensions: bool,
}

impl Default for SaveOptions {
    fn default() -> Self {
        SaveOptions { kind: Kind::Float, layout: KeyLayout::Legacy, tokenizer_from: None, cxformer_extensions: false }
    }
}

/// A LLaVA (see the module docs).
pub struct LlavaModel {
    /// Every base variable (tower, projector, LM; see the module docs for the names).
    pub vs: nn::VarStore,
    cfg: LlavaConfig,
    vit: Vit,
    projector: Projector,
    lm: LanguageModel,
    /// `generation_config.json` (or the LM config's ids).
    pub generation: GenerationConfig,
    lora: Option<Lora>,
}

impl std::fmt::Debug for LlavaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlavaModel").field("cfg", &self.cfg).field("lora", &self.lora).finish()
    }
}

fn dtype_name(kind: Kind) -> Result<&'static str> {
    Ok(match kind {
        Kind::Float => "float32",
        Kind::BFloat16 => "bfloat16",
        Kind::Half => "float16",
        k => return Err(Error::Config(format!("a LLaVA is saved as Float, BFloat16 or Half, got {k:?}"))),
    })
}

/// The LM checkpoint key of a LLaVA key (None: not an LM key).
fn lm_key(key: &str, base: &str) -> Option<String> {
    if let Some(r) = key.strip_prefix("model.language_model.").or_else(|| key.strip_prefix("language_model.model.")) {
        return Some(format!("{base}.{r}"));
    }
    if let Some(r) = key.strip_prefix("language_model.lm_head.").or_else(|| key.strip_prefix("lm_head.")) {
        return Some(format!("lm_head.{r}"));
    }
    // Older folders holding the whole causal LM under language_model (e.g. `language_model.transformer.h.0.…`).
    key.strip_prefix(LM_PREFIX).map(str::to_string)
}

impl LlavaModel {
    /// A LLaVA of `cfg` with every variable built (zeros, the tower at its from-scratch draws) in `kind` on
    /// `device`: load it ([`LlavaModel::load`]) or fill its parts ([`LlavaModel::load_vision`],
    /// [`LlavaModel::load_language_model`], [`LlavaModel::init_projector`]).
    pub fn new(cfg: &LlavaConfig, generation: GenerationConfig, device: Device, kind: Kind) -> Result<Self> {
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double) {
            return Err(Error::Config(format!("a LLaVA's variables must be Float, BFloat16, Half or Double, got {kind:?}")));
        }
        cfg.validate()?;
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let root = vs.root();
        // Building the variables draws from LibTorch's process-global generator: not while another thread's
        // seeded step draws its dropout (crate::backbone::RNG_LOCK).
        let _rng = crate::backbone::RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let vit = Vit::new(&(&root / "vision_tower"), &cfg.vision)?;
        let projector = Projector::new(
            &root / "multi_modal_projector",
            cfg.projector_in(),
            cfg.text.hidden_size,
            cfg.options.projector.depth,
            cfg.options.multimodal_projector_bias,
            cfg.projector_act,
        );
        let lm_root = &root / "language_model";
        let lm = LanguageModel::new(&lm_root / LanguageModel::base_name(cfg.text.family), &lm_root / "lm_head", &cfg.text)?;
        Ok(LlavaModel { vs, cfg: cfg.clone(), vit, projector, lm, generation, lora: None })
    }

    /// Loads a transformers `LlavaForConditionalGeneration` folder: `config.json`, optional
    /// `generation_config.json`, `model.safetensors` or a sharded index (see the module docs for the keys).
    pub fn load(dir: &Path, opts: &LmLoadOptions) -> Result<(Self, LlavaLoadReport)> {
        let cfg = LlavaConfig::from_file(&dir.join(lm::CONFIG_FILE))?;
        let generation = GenerationConfig::load(&dir.join(lm::GENERATION_CONFIG_FILE), &cfg.text)?;
        let ckpt = Checkpoint::open_dir(dir)?;
        let model = LlavaModel::new(&cfg, generation, opts.device, opts.kind)?;
        model.check_projector_widths(&ckpt)?;
        let roles = model.key_roles()?;
        let weights = load_strict(&model.vs, &ckpt, |k| roles(k), opts.allow_non_finite)?;
        let nested = ckpt.names().iter().any(|k| k.starts_with("model.") || k.starts_with("lm_head."));
        Ok((model, LlavaLoadReport { weights, layout: if nested { KeyLayout::Nested } else { KeyLayout::Legacy } }))
    }

    /// The projector's stored widths against the tower and the LM: `linear_1` must take D_vit · layers features
    /// and the last layer give the LM's hidden size.
    fn check_projector_widths(&self, ckpt: &Checkpoint) -> Result<()> {
        let shape = |name: &str| ckpt.shape(&format!("{PROJECTOR_PREFIX}{name}")).or(ckpt.shape(&format!("model.{PROJECTOR_PREFIX}{name}")));
        let (d_in, d_lm) = (self.cfg.projector_in(), self.cfg.text.hidden_size);
        let layers = self.cfg.options.vision_feature_layers.len();
        let tower = if layers > 1 { format!("D_vit = {} × {layers} feature layers = {d_in}", self.cfg.vision.embed_dim) } else { format!("D_vit = {d_in}") };
        if let Some(&[_, i]) = shape("linear_1.weight") {
            if i != d_in {
                return Err(Error::weights(
                    &ckpt.path,
                    format!("the projector's linear_1 takes {i} features, but the vision tower gives {tower} (vision_config.hidden_size); the widths do not match"),
                ));
            }
        }
        let last = format!("linear_{}.weight", self.cfg.options.projector.depth);
        if let Some(&[o, _]) = shape(&last) {
            if o != d_lm {
                return Err(Error::weights(
                    &ckpt.path,
                    format!("the projector's {} gives {o} features, but the LM's hidden_size is d_lm = {d_lm}; the widths do not match", &last[..last.len() - 7]),
                ));
            }
        }
        Ok(())
    }

    /// What each key of a LLaVA checkpoint is (see the module docs).
    fn key_roles(&self) -> Result<impl Fn(&str) -> Option<KeyRole> + use<>> {
        let mut vision: HashMap<String, KeyRole> = HashMap::new();
        for (name, _) in sorted_vars(&self.vs) {
            let Some(orig) = name.strip_prefix(VISION_PREFIX) else { continue };
            let keys = vision::hf_keys(orig).ok_or_else(|| Error::Config(format!("vision tower variable {orig} has no transformers key")))?;
            let n = keys.len() as i64;
            for (i, k) in keys.into_iter().enumerate() {
                let role = if n == 1 { KeyRole::Var(name.clone()) } else { KeyRole::Part { var: name.clone(), index: i as i64, parts: n } };
                vision.insert(k, role);
            }
        }
        let text = self.cfg.text.clone();
        let base = LanguageModel::base_name(text.family);
        Ok(move |key: &str| -> Option<KeyRole> {
            let k = key.strip_prefix("model.").filter(|r| r.starts_with(VISION_PREFIX) || r.starts_with(PROJECTOR_PREFIX)).unwrap_or(key);
            if let Some(r) = k.strip_prefix(VISION_PREFIX) {
                return vision.get(r).cloned();
            }
            if k.starts_with(PROJECTOR_PREFIX) {
                return Some(KeyRole::Var(k.to_string()));
            }
            let lk = lm_key(key, base)?;
            match lm::checkpoint_role(&text, &lk)? {
                KeyRole::Var(v) => Some(KeyRole::Var(format!("{LM_PREFIX}{v}"))),
                KeyRole::Tied(v) => Some(KeyRole::Tied(format!("{LM_PREFIX}{v}"))),
                KeyRole::Part { var, index, parts } => Some(KeyRole::Part { var: format!("{LM_PREFIX}{var}"), index, parts }),
                KeyRole::Ignore => Some(KeyRole::Ignore),
            }
        })
    }

    /// Loads the vision tower from a cxformer / DINOv2 weight file (any layout [`crate::weights`] reads,
    /// strictly, [`crate::weights::load_backbone`]; NaN / ±Inf values refused).
    pub fn load_vision(&self, file: &WeightFile) -> Result<LoadReport> {
        self.load_vision_with(file, LoadOptions::default())
    }

    /// [`LlavaModel::load_vision`] with the options of [`load_backbone_with`] (e.g. non-finite values allowed).
    pub fn load_vision_with(&self, file: &WeightFile, opts: LoadOptions) -> Result<LoadReport> {
        let mut tmp = nn::VarStore::new(self.vs.device());
        tmp.set_kind(self.lm.kind());
        let _vit = Vit::new(&tmp.root(), &self.cfg.vision)?;
        let report = load_backbone_with(&tmp, file, opts)?;
        self.set_vision(&tmp)?;
        Ok(report)
    }

    /// Copies a tower's variables (original DINOv2 names, e.g. a [`crate::Backbone`]'s) into the vision tower.
    pub(crate) fn set_vision(&self, src: &nn::VarStore) -> Result<()> {
        let vars = self.vs.variables();
        tch::no_grad(|| -> Result<()> {
            for (name, t) in src.variables() {
                let dst = vars.get(&format!("{VISION_PREFIX}{name}")).ok_or_else(|| Error::Config(format!("no vision tower variable {name}")))?;
                dst.shallow_clone().f_copy_(&t)?;
            }
            Ok(())
        })
    }

    /// Loads the LM from a transformers causal LM folder whose config.json is this LLaVA's `text_config`
    /// (strictly, [`crate::lm::load_strict_into`]); its generation ids become the LLaVA's.
    ///
    /// A folder of one token fewer, whose `vocab_size` is this LLaVA's image token id (the vocabulary grown for
    /// the image token, [`parts`]), loads into the first rows of the token embedding and of an untied head; their
    /// last row becomes the mean of the rows above it ([`parts::fill_mean_rows`]).
    pub fn load_language_model(&mut self, dir: &Path, allow_non_finite: bool) -> Result<LmLoadReport> {
        let cfg = LmConfig::from_file(&dir.join(lm::CONFIG_FILE))?;
        let text = self.cfg.text.clone();
        let grown = cfg.vocab_size + 1 == text.vocab_size
            && cfg.vocab_size == self.cfg.options.image_token_index
            && LmConfig { vocab_size: text.vocab_size, ..cfg.clone() } == text;
        if cfg != text && !grown {
            return Err(Error::weights(dir, "config.json describes another LM than this LLaVA's text_config"));
        }
        let ckpt = Checkpoint::open_dir(dir)?;
        let mut vars: HashMap<String, Tensor> = self.vs.variables().into_iter().filter(|(n, _)| n.starts_with(LM_PREFIX)).collect();
        let rows = if grown { parts::vocab_rows(&vars, &text)? } else { Vec::new() };
        // The grown variables are loaded through views of their first rows (created without gradient tracking,
        // as the load writes them in place).
        for name in &rows {
            let view = tch::no_grad(|| vars[name].f_narrow(0, 0, cfg.vocab_size))?;
            vars.insert(name.clone(), view);
        }
        let role = |k: &str| match lm::checkpoint_role(&text, k)? {
            KeyRole::Var(v) => Some(KeyRole::Var(format!("{LM_PREFIX}{v}"))),
            KeyRole::Tied(v) => Some(KeyRole::Tied(format!("{LM_PREFIX}{v}"))),
            other => Some(other),
        };
        let report = load_strict_into(vars, &ckpt, role, allow_non_finite)?;
        let all = self.vs.variables();
        parts::fill_mean_rows(rows.iter().map(|n| &all[n]), cfg.vocab_size)?;
        self.generation = GenerationConfig::load(&dir.join(lm::GENERATION_CONFIG_FILE), &cfg)?;
        Ok(report)
    }

    /// Draws the projector's initial values ([`Projector::init`]).
    pub fn init_projector(&self, seed: u64) -> Result<()> {
        self.projector.init(seed)
    }

    pub fn config(&self) -> &LlavaConfig {
        &self.cfg
    }

    pub fn vision_tower(&self) -> &Vit {
        &self.vit
    }

    pub fn projector(&self) -> &Projector {
        &self.projector
    }

    pub fn language_model(&self) -> &LanguageModel {
        &self.lm
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The tower's selected (and pooled) tokens before the projector ([`vision`]).
    ///
    /// # Shapes
    /// pixel_values: (N, C, H, W) normalised → (N, T, D_vit · layers)
    pub fn vision_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let kind = self.lm.kind();
        let x = pixel_values.f_to_device(self.device())?.f_to_kind(kind)?;
        vision::selected_features(&self.vit, &self.cfg, &x, &self.vs)
    }

    /// The projector: vision features → image features.
    ///
    /// # Shapes
    /// features: (N, T, D_vit · layers) → (N, T, d_lm)
    pub fn project(&self, features: &Tensor) -> Result<Tensor> {
        self.projector.forward(features)
    }

    /// [`LlavaModel::project`] of [`LlavaModel::vision_features`].
    ///
    /// # Shapes
    /// pixel_values: (N, C, H, W) → (N, T, d_lm)
    pub fn image_features(&self, pixel_values: &Tensor) -> Result<Tensor> {
        self.project(&self.vision_features(pixel_values)?)
    }

    /// The LM's input embeddings with the image features in place of the image tokens, and the text inputs
    /// they correspond to (image tokens expanded when the prompt has one per image; [`inputs`]).
    ///
    /// # Shapes
    /// pixel_values: (N, C, H, W); input_ids, attention_mask, labels: (B, T) → (B, T', d_lm) and (B, T') inputs
    pub fn inputs_embeds(
        &self,
        pixel_values: &Tensor,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        labels: Option<&Tensor>,
    ) -> Result<(Tensor, LlavaInputs)> {
        let feats = self.image_features(pixel_values)?;
        let (n, per, _) = feats.size3()?;
        let image = self.cfg.options.image_token_index;
        let pad = self.generation.pad_or_eos().filter(|p| (0..self.cfg.text.vocab_size).contains(p)).unwrap_or(0);
        let inputs = expand_image_tokens(input_ids, attention_mask, labels, image, n, per, pad)?;
        let ids = inputs.input_ids.f_to_device(self.device())?;
        let is_image = ids.f_eq(image)?;
        // The image token's own embedding is never used; id 0 keeps the lookup inside the vocabulary.
        let embeds = self.lm.embed(&ids.f_masked_fill(&is_image, 0)?)?;
        let mask = is_image.f_unsqueeze(-1)?.f_expand_as(&embeds)?;
        let embeds = embeds.f_masked_scatter(&mask, &feats.f_to_kind(embeds.kind())?)?;
        Ok((embeds, inputs))
    }

    /// Logits of every position of the (expanded) prompt, float32.
    ///
    /// # Shapes
    /// pixel_values: (N, C, H, W), input_ids: (B, T) int64, attention_mask: (B, T) (None = all real) →
    /// (B, T', V), T' = T + N·(tokens per image − 1) when the image tokens are expanded here, else T
    pub fn forward(&self, pixel_values: &Tensor, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (embeds, inputs) = self.inputs_embeds(pixel_values, input_ids, attention_mask, None)?;
        self.lm.forward_embeds(&embeds, Some(&inputs.attention_mask), None, None)
    }

    /// The causal LM loss on `labels` (−100 = ignored; [`inputs::causal_lm_loss`], computed with the LM head on the
    /// target positions only, [`inputs::causal_lm_loss_on_targets`]) and the number of labels it averages over.
    /// Labels are expanded with the image tokens (−100 there).
    ///
    /// # Shapes
    /// as [`LlavaModel::forward`]; labels: (B, T) int64 → scalar
    pub fn loss(&self, pixel_values: &Tensor, input_ids: &Tensor, attention_mask: Option<&Tensor>, labels: &Tensor) -> Result<(Tensor, i64)> {
        let (embeds, inputs) = self.inputs_embeds(pixel_values, input_ids, attention_mask, Some(labels))?;
        let hidden = self.lm.hidden_states(&embeds, Some(&inputs.attention_mask), None, None)?;
        causal_lm_loss_on_targets(&self.lm, &hidden, inputs.labels.as_ref().expect("labels were given"))
    }

    /// Decodes after the prompt ([`crate::lm::generate`] from its embeddings). `sequences` holds the
    /// (expanded) prompt ids followed by the new tokens, as transformers returns them.
    ///
    /// # Shapes
    /// pixel_values: (N, C, H, W), input_ids: (B, P), attention_mask: (B, P) (left padding)
    pub fn generate(
        &self,
        pixel_values: &Tensor,
        input_ids: &Tensor,
        attention_mask: Option<&Tensor>,
        opts: &GenerateOptions,
        on_token: impl FnMut(usize, i64) -> bool,
    ) -> Result<LmGeneration> {
        let (embeds, inputs) = tch::no_grad(|| self.inputs_embeds(pixel_values, input_ids, attention_mask, None))?;
        let mut out = lm::generate(&self.lm, Prompt::Embeds(&embeds), Some(&inputs.attention_mask), opts, on_token)?;
        out.sequences = Tensor::f_cat(&[&inputs.input_ids, &out.sequences], 1)?;
        Ok(out)
    }

    /// Makes the variables of `stage` trainable and every other one frozen (`requires_grad(false)`: no
    /// gradient, so an optimizer over the returned list leaves them bit-for-bit unchanged); the vision tower is
    /// always frozen. Returns the trainable variables sorted by name (LoRA's under
    /// `language_model.<module>.lora_A|B.weight`).
    pub fn set_stage(&mut self, stage: Stage) -> Result<Vec<(String, Tensor)>> {
        if stage == Stage::FinetuneLora && self.lora.is_none() {
            return Err(Error::Config("the finetune stage with LoRA needs adapters: attach_lora first".into()));
        }
        let mut out = Vec::new();
        for (name, t) in sorted_vars(&self.vs) {
            let on = name.starts_with(PROJECTOR_PREFIX) || (stage == Stage::FinetuneFull && name.starts_with(LM_PREFIX));
            let _ = t.set_requires_grad(on);
            if on {
                out.push((name, t));
            }
        }
        if let Some(l) = &self.lora {
            for (name, t) in l.parameters() {
                let on = stage == Stage::FinetuneLora;
                let _ = t.set_requires_grad(on);
                if on {
                    out.push((format!("{LM_PREFIX}{name}"), t));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Training mode of the LoRA adapters (their dropout).
    pub fn set_train(&self, on: bool) {
        if let Some(l) = &self.lora {
            l.set_train(on);
        }
    }

    /// Adds LoRA adapters to the LM ([`lora`]).
    pub fn attach_lora(&mut self, cfg: &LoraConfig) -> Result<()> {
        if self.lora.is_some() {
            return Err(Error::Config("LoRA adapters are already attached".into()));
        }
        self.lora = Some(Lora::attach(&mut self.lm, cfg)?);
        Ok(())
    }

    /// The attached adapters.
    pub fn lora(&self) -> Option<&Lora> {
        self.lora.as_ref()
    }

    /// Folds the adapters into the LM's weights and removes them ([`Lora::merge`]).
    pub fn merge_lora(&mut self) -> Result<()> {
        let l = self.lora.take().ok_or_else(|| Error::Config("no LoRA adapters to merge".into()))?;
        l.merge(&mut self.lm)
    }

    /// Writes the adapters as a PEFT folder for this model in transformers 4.57 (module names
    /// `model.language_model.<path>`, `target_modules` a pattern limited to the language model).
    pub fn save_peft(&self, dir: &Path, base_model: Option<&str>) -> Result<()> {
        let l = self.lora.as_ref().ok_or_else(|| Error::Config("no LoRA adapters to save".into()))?;
        let base = LanguageModel::base_name(self.cfg.text.family);
        let module = |p: &str| format!("model.language_model.{}", p.strip_prefix(base).and_then(|r| r.strip_prefix('.')).unwrap_or(p));
        let targets = json!(format!(r"^model\.language_model\..*\.(?:{})$", l.target_names().join("|")));
        l.save_peft(dir, module, targets, base_model)
    }

    /// Writes a transformers `LlavaForConditionalGeneration` folder (see the module docs): `config.json`
    /// ([`LlavaConfig::to_hf_json`]), `generation_config.json`, `model.safetensors` (metadata format "pt") and the
    /// tokenizer files of `opts.tokenizer_from`, each written atomically. Refused while LoRA adapters are
    /// attached (merge or save them first), and for models transformers does not compute unless
    /// `opts.cxformer_extensions` (then written with cxformer's config keys, for cxformer only).
    pub fn save_hf(&self, dir: &Path, opts: &SaveOptions) -> Result<()> {
        if self.lora.is_some() {
            return Err(Error::Config("LoRA adapters are attached: merge them (merge_lora) or save them (save_peft) first".into()));
        }
        if !opts.cxformer_extensions {
            self.cfg.transformers_compatible().map_err(|why| Error::Config(format!("this LLaVA cannot be exported for transformers: {why}")))?;
        }
        let config = self.cfg.to_hf_json(dtype_name(opts.kind)?)?;
        let nested = opts.layout == KeyLayout::Nested;
        let base = LanguageModel::base_name(self.cfg.text.family);
        let mut tensors: BTreeMap<String, Tensor> = BTreeMap::new();
        let value = |t: &Tensor| -> Result<Tensor> { Ok(t.detach().f_to_device(Device::Cpu)?.f_to_kind(opts.kind)?.f_contiguous()?) };
        let vision_prefix = if nested { "model.vision_tower." } else { VISION_PREFIX };
        for (name, t) in sorted_vars(&self.vs) {
            if let Some(orig) = name.strip_prefix(VISION_PREFIX) {
                let keys = vision::hf_keys(orig).ok_or_else(|| Error::Config(format!("vision tower variable {orig} has no transformers key")))?;
                let chunks = if keys.len() == 3 { t.f_chunk(3, 0)? } else { vec![t] };
                for (k, c) in keys.into_iter().zip(chunks) {
                    tensors.insert(format!("{vision_prefix}{k}"), value(&c)?);
                }
            } else if name.starts_with(PROJECTOR_PREFIX) {
                tensors.insert(if nested { format!("model.{name}") } else { name.clone() }, value(&t)?);
            } else if let Some(r) = name.strip_prefix(LM_PREFIX) {
                let key = if let Some(body) = r.strip_prefix(base).and_then(|x| x.strip_prefix('.')) {
                    if nested { format!("model.language_model.{body}") } else { format!("language_model.model.{body}") }
                } else if nested {
                    r.to_string() // lm_head.weight
                } else {
                    name.clone()
                };
                tensors.insert(key, value(&t)?);
            } else {
                return Err(Error::Config(format!("variable {name} belongs to no part of the LLaVA")));
            }
        }
        // transformers' Dinov2WithRegisters always has a mask token; a tower trained without one gets zeros.
        let mask_key = format!("{vision_prefix}embeddings.mask_token");
        if self.cfg.vision.num_register_tokens > 0 && !tensors.contains_key(&mask_key) {
            tensors.insert(mask_key, Tensor::f_zeros([1, self.cfg.vision.embed_dim], (opts.kind, Device::Cpu))?);
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let md = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&dir.join(lm::MODEL_FILE), &tensors, md)?;
        write_json(&dir.join(lm::CONFIG_FILE), &config)?;
        write_json(&dir.join(lm::GENERATION_CONFIG_FILE), &generation_json(&self.generation))?;
        if let Some(src) = &opts.tokenizer_from {
            for f in TOKENIZER_FILES {
                let p = src.join(f);
                if p.exists() {
                    let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
                    write_atomic(&dir.join(f), &bytes)?;
                }
            }
        }
        Ok(())
    }
}

/// transformers' `generation_config.json` of a model config's ids.
fn generation_json(g: &GenerationConfig) -> Value {
    let mut m = Map::new();
    m.insert("_from_model_config".into(), json!(true));
    if let Some(b) = g.bos_token_id {
        m.insert("bos_token_id".into(), json!(b));
    }
    match g.eos_token_ids.as_slice() {
        [] => {}
        [one] => {
            m.insert("eos_token_id".into(), json!(one));
        }
        many => {
            m.insert("eos_token_id".into(), json!(many));
        }
    }
    if let Some(p) = g.pad_token_id {
        m.insert("pad_token_id".into(), json!(p));
    }
    m.insert("transformers_version".into(), json!(TRANSFORMERS_VERSION));
    Value::Object(m)
}

/// JSON with a 2-space indent and a final newline, written atomically.
fn write_json(path: &Path, v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Config(e.to_string()))? + "\n";
    write_atomic(path, text.as_bytes())
}

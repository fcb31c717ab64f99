//! Hugging Face causal language models on LibTorch: load a transformers folder, run it, decode with it, with
//! the numbers of transformers (float32 logits within 1e-4 of its eager attention; greedy and beam-search tokens
//! identical; tests: `crates/core/tests/lm_golden.rs` against `fixtures/golden/lm/`).
//!
//! # Folders
//! `config.json` ([`LmConfig`]), `model.safetensors` or a sharded `model.safetensors.index.json`
//! ([`Checkpoint`]: every shard opened by the strict reader of [`crate::weights`]), optional
//! `generation_config.json` ([`GenerationConfig`]: `eos_token_id` an int or a list, `bos_token_id`,
//! `pad_token_id`). The load is strict ([`load_strict`]): every variable set exactly once from a tensor of its
//! shape, unknown or missing keys refused and listed, nothing loaded on failure. Any stored float dtype (BF16 in
//! the fixtures) is converted to float32 unless [`LmLoadOptions::kind`] asks for BFloat16 (CUDA) or another kind.
//!
//! Tied embeddings (`tie_word_embeddings`; default false for llama, mistral, qwen2, qwen3 as in their
//! transformers config classes, true for gpt2): the LM head is the token embedding matrix and there is no
//! `lm_head.weight` variable. A tied folder without `lm_head.weight` loads; one that stores it anyway loads only
//! if the stored head equals the embedding exactly (checked, listed in [`LmLoadReport::tied`]) and is refused
//! otherwise (transformers would silently keep one of the two). An untied folder must store `lm_head.weight`.
//!
//! Variable names are the checkpoint keys (`model.layers.3.self_attn.q_proj.weight`,
//! `transformer.h.0.attn.c_attn.weight`, `lm_head.weight`), so a model saves back under the same keys.
//!
//! # Families
//! - `llama` (transformers `models/llama/modeling_llama.py`): RMSNorm (float32 inside), SwiGLU MLP
//!   (`down(silu(gate(x)) ⊙ up(x))`), RoPE with `rope_theta` and `rope_scaling` `default`, `linear` or `llama3`
//!   (`modeling_rope_utils.py` `_compute_llama3_parameters`: factor, low/high_freq_factor,
//!   original_max_position_embeddings), GQA through `num_key_value_heads`, optional `head_dim`,
//!   `attention_bias` (q, k, v, o) and `mlp_bias`. Module: [`llama`].
//! - `mistral` (`models/mistral/modeling_mistral.py`): the llama path without biases. Its `sliding_window`
//!   is not applied as a window: sequences longer than it are refused (below it the window changes nothing).
//! - `qwen2` (`models/qwen2/modeling_qwen2.py`): the llama path with biases on q, k and v (never on o, never
//!   on the MLP); `use_sliding_window` treated as mistral's window.
//! - `qwen3` (`models/qwen3/modeling_qwen3.py`): the llama path with RMSNorm of each head of q and k (`q_norm`,
//!   `k_norm`, over `head_dim`) before RoPE, an explicit `head_dim` (default 128) that need not be d / H, and
//!   `attention_bias`.
//! - `gpt2` (`models/gpt2/modeling_gpt2.py`): Conv1D weights stored (in, out), fused `c_attn` (q, k, v
//!   columns), learned positions `wpe` bounded by `n_positions`, LayerNorm (`layer_norm_epsilon`), MLP
//!   activation `activation_function` (`gelu_new` = tanh GELU), `ln_f`, `n_embd`/`n_head`/`n_layer`/`n_inner`;
//!   `scale_attn_weights` and `scale_attn_by_inverse_layer_idx` honoured. Keys are `transformer.*`; the
//!   original OpenAI export's unprefixed keys (`h.0.…`, `wte.weight`) map to them and its causal-mask buffers
//!   (`h.N.attn.bias`, `h.N.attn.masked_bias`) are ignored by design. Module: [`gpt2`].
//!
//! Older llama-family conversions that stored RoPE's `model.layers.N.self_attn.rotary_emb.inv_freq` buffers
//! load with those ignored (the frequencies are recomputed from the config). An unsupported `model_type` is
//! refused naming itself and the supported ones.
//!
//! # Forward
//! [`LanguageModel::forward`] (ids) and [`LanguageModel::forward_embeds`] (`inputs_embeds`, e.g. with image
//! features spliced in; [`LanguageModel::embed`] gives the token embeddings) return float32 logits. Attention
//! is `scaled_dot_product_attention` with an explicit boolean mask (causal AND key padding, each query also
//! seeing itself so that padding rows stay finite), so left-padded batches give each row what it gives alone
//! at its real positions; k/v heads are repeated for GQA. `position_ids` default to transformers' generate
//! rule: cumsum(mask) − 1 with padding positions set to 1 (without a mask, past..past+T). A [`KvCache`]
//! (preallocated for a capacity, filled in place) carries keys and values across calls; the mask then covers
//! past and new positions.
//!
//! # Adapters
//! Each projection of a decoder layer can carry a delta added to its output ([`adapter`],
//! [`LanguageModel::set_delta`]; LoRA in [`crate::llava::lora`]); without one it computes exactly as before.
//!
//! # Decoding
//! [`fn@generate`]: greedy, beam search (transformers' `_beam_search`) and seeded sampling, stopping on any EOS
//! id, rows continuing with the pad id after their EOS (rules: module [`mod@generate`]).
pub mod adapter;
pub mod cache;
pub mod config;
pub mod generate;
pub mod gpt2;
pub mod llama;
pub mod load;
pub mod rope;

pub use adapter::{LinearDelta, LinearLayer};
pub use cache::KvCache;
pub use config::{Activation, Family, GenerationConfig, LmConfig, RopeScaling, SUPPORTED_MODEL_TYPES};
pub use generate::{BeamOptions, EarlyStopping, GenerateOptions, Hypothesis, LmGeneration, Prompt, SampleOptions, Strategy, generate};
pub use load::{Checkpoint, INDEX_FILE, KeyRole, LmLoadOptions, LmLoadReport, MODEL_FILE, load_strict, load_strict_into};

use crate::bail_shape;
use crate::error::{Error, Result};
use cache::default_positions;
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// Config file of a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// Generation defaults of a model folder (optional).
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// The decoder stack of a family.
#[derive(Debug)]
enum Body {
    Llama(llama::LlamaModel),
    Gpt2(gpt2::Gpt2Model),
}

/// A causal LM's modules in some VarStore (a standalone [`CausalLm`], or the text part of a larger model):
/// the decoder under `base` (`model` or `transformer` in a transformers folder) and, unless tied, the head
/// `weight` under `head` (`lm_head`).
#[derive(Debug)]
pub struct LanguageModel {
    cfg: LmConfig,
    body: Body,
    lm_head: Option<Tensor>,
}

impl LanguageModel {
    /// The name of the decoder's root in a transformers checkpoint of `family`: `transformer` (gpt2) or `model`.
    pub fn base_name(family: Family) -> &'static str {
        match family {
            Family::Gpt2 => "transformer",
            _ => "model",
        }
    }

    /// Builds the variables (zeros, to be loaded) in `base`'s and `head`'s VarStore, in its kind and device.
    pub fn new(base: nn::Path, head: nn::Path, cfg: &LmConfig) -> Result<Self> {
        cfg.validate()?;
        let body = match cfg.family {
            Family::Gpt2 => Body::Gpt2(gpt2::Gpt2Model::new(base, cfg)),
            _ => Body::Llama(llama::LlamaModel::new(base, cfg)),
        };
        let lm_head = (!cfg.tie_word_embeddings).then(|| head.var("weight", &[cfg.vocab_size, cfg.hidden_size], nn::Init::Const(0.0)));
        Ok(LanguageModel { cfg: cfg.clone(), body, lm_head })
    }

    /// The architecture.
    pub fn config(&self) -> &LmConfig {
        &self.cfg
    }

    /// The token embedding matrix (V, d) (also the head when tied).
    pub fn embedding_matrix(&self) -> &Tensor {
        match &self.body {
            Body::Llama(m) => &m.embed_tokens,
            Body::Gpt2(m) => &m.wte,
        }
    }

    /// The device of the variables.
    pub fn device(&self) -> Device {
        self.embedding_matrix().device()
    }

    /// The kind of the variables (and of the hidden states).
    pub fn kind(&self) -> Kind {
        self.embedding_matrix().kind()
    }

    fn num_layers(&self) -> usize {
        match &self.body {
            Body::Llama(m) => m.num_layers(),
            Body::Gpt2(m) => m.num_layers(),
        }
    }

    /// The projections of every decoder layer that an adapter can extend ([`adapter`]: q/k/v/o and the MLP's
    /// for the llama family, GPT-2's four Conv1D), layer by layer, paths as in the checkpoint
    /// (`model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`).
    pub fn linear_layers(&mut self) -> Vec<LinearLayer> {
        let base = Self::base_name(self.cfg.family);
        let mut layers = match &mut self.body {
            Body::Llama(m) => m.linear_layers(),
            Body::Gpt2(m) => m.linear_layers(),
        };
        for l in &mut layers {
            l.path = format!("{base}.{}", l.path);
        }
        layers
    }

    /// Sets (Some) or removes (None) the delta added to the output of the projection at `path` (one of
    /// [`LanguageModel::linear_layers`]).
    pub fn set_delta(&mut self, path: &str, delta: Option<Box<dyn LinearDelta>>) -> Result<()> {
        let base = Self::base_name(self.cfg.family);
        let found = match path.strip_prefix(base).and_then(|r| r.strip_prefix('.')) {
            None => false,
            Some(rest) => match &mut self.body {
                Body::Llama(m) => m.set_delta(rest, delta),
                Body::Gpt2(m) => m.set_delta(rest, delta),
            },
        };
        if !found {
            let example = if self.cfg.family == Family::Gpt2 { "h.0.attn.c_attn" } else { "layers.0.self_attn.q_proj" };
            return Err(Error::Config(format!("the LM has no adaptable linear layer \"{path}\" (e.g. {base}.{example})")));
        }
        Ok(())
    }

    /// An empty cache of `capacity` positions for `batch` rows, in the model's kind and device.
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        let c = &self.cfg;
        KvCache::new(c.num_layers, batch, c.num_kv_heads, capacity, c.head_dim, self.kind(), self.device())
    }

    /// Checks ids: (B, T) int64 in [0, V).
    fn check_ids(&self, ids: &Tensor) -> Result<(i64, i64)> {
        if ids.dim() != 2 || ids.kind() != Kind::Int64 {
            bail_shape!("input_ids: expected a (B, T) int64 tensor, got {:?} {:?}", ids.size(), ids.kind());
        }
        if ids.numel() > 0 {
            let (lo, hi) = (ids.f_min()?.f_int64_value(&[])?, ids.f_max()?.f_int64_value(&[])?);
            if lo < 0 || hi >= self.cfg.vocab_size {
                bail_shape!("input_ids: ids must lie in [0, {}) (vocab_size), found {lo}..={hi}", self.cfg.vocab_size);
            }
        }
        ids.size2().map_err(Error::from)
    }

    /// Token embeddings (no positions: GPT-2 adds its learned positions inside the forward, as transformers does
    /// for `inputs_embeds`).
    ///
    /// # Shapes
    /// ids: (B, T) int64 → (B, T, d) in the model's kind
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.check_ids(ids)?;
        Ok(Tensor::f_embedding(self.embedding_matrix(), &ids.f_to_device(self.device())?, -1, false, false)?)
    }

    /// Logits of every position.
    ///
    /// # Shapes
    /// input_ids: (B, T) int64; attention_mask: (B, past + T) (1/true = real token; None = all real);
    /// position_ids: (B, T) int64 or None (see the module docs) → (B, T, V) float32
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, position_ids: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let x = self.embed(input_ids)?;
        self.forward_embeds(&x, attention_mask, position_ids, cache)
    }

    /// [`LanguageModel::forward`] from input embeddings.
    ///
    /// # Shapes
    /// inputs_embeds: (B, T, d) float → (B, T, V) float32
    pub fn forward_embeds(&self, inputs_embeds: &Tensor, attention_mask: Option<&Tensor>, position_ids: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        let h = self.hidden_states(inputs_embeds, attention_mask, position_ids, cache)?;
        self.logits(&h)
    }

    /// Hidden states after the final norm (the LM head's input). With a cache, the new keys and values are
    /// written at its end and its length grows by T.
    ///
    /// # Shapes
    /// inputs_embeds: (B, T, d) float; attention_mask: (B, past + T); position_ids: (B, T) int64 → (B, T, d)
    pub fn hidden_states(&self, inputs_embeds: &Tensor, attention_mask: Option<&Tensor>, position_ids: Option<&Tensor>, mut cache: Option<&mut KvCache>) -> Result<Tensor> {
        let d = self.cfg.hidden_size;
        if inputs_embeds.dim() != 3 || inputs_embeds.size()[2] != d || !inputs_embeds.is_floating_point() {
            bail_shape!("inputs_embeds: expected a (B, T, {d}) float tensor (hidden_size {d}), got {:?} {:?}", inputs_embeds.size(), inputs_embeds.kind());
        }
        let (b, t, _) = inputs_embeds.size3()?;
        if t < 1 {
            bail_shape!("inputs_embeds: no position (T = 0)");
        }
        let dev = self.device();
        let past = cache.as_ref().map_or(0, |c| c.len());
        if let Some(c) = cache.as_ref() {
            c.check(b, t, self.num_layers())?;
        }
        if let Some(w) = self.cfg.sliding_window.filter(|w| past + t > *w) {
            bail_shape!("{} positions exceed sliding_window {w}, which this implementation does not apply", past + t);
        }
        let key_mask = match attention_mask {
            None => None,
            Some(m) => {
                if m.size() != [b, past + t] {
                    bail_shape!("attention_mask: expected shape [{b}, {}] (cached {past} + new {t} positions), got {:?}", past + t, m.size());
                }
                Some(m.f_to_device(dev)?.f_ne(0)?)
            }
        };
        let positions = match position_ids {
            Some(p) => {
                if p.size() != [b, t] || p.kind() != Kind::Int64 {
                    bail_shape!("position_ids: expected a [{b}, {t}] int64 tensor, got {:?} {:?}", p.size(), p.kind());
                }
                p.f_to_device(dev)?
            }
            None => default_positions(key_mask.as_ref(), b, past, t, dev)?,
        };
        let mask = cache::attention_mask(key_mask.as_ref(), past, t, dev)?;
        let x = inputs_embeds.f_to_device(dev)?.f_to_kind(self.kind())?;
        let h = match &self.body {
            Body::Llama(m) => m.forward(&x, &positions, &mask, cache.as_deref_mut())?,
            Body::Gpt2(m) => m.forward(&x, &positions, &mask, cache.as_deref_mut())?,
        };
        if let Some(c) = cache {
            c.advance(t);
        }
        Ok(h)
    }

    /// The LM head: hidden states × Wᵀ (W = `lm_head.weight`, or the embedding when tied), float32.
    ///
    /// # Shapes
    /// hidden: (..., d) → (..., V) float32
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let w = self.lm_head.as_ref().unwrap_or(self.embedding_matrix());
        Ok(hidden.f_linear::<Tensor>(w, None)?.f_to_kind(Kind::Float)?)
    }
}

/// A causal LM loaded from a transformers folder: its own VarStore (variables named as the checkpoint's
/// keys), the modules, and the folder's generation ids.
#[derive(Debug)]
pub struct CausalLm {
    /// Every parameter.
    pub vs: nn::VarStore,
    /// The modules.
    pub model: LanguageModel,
    /// `generation_config.json` (or config.json's ids).
    pub generation: GenerationConfig,
}

/// What each key of a transformers checkpoint of `cfg` is (see the module docs: tied heads, GPT-2 aliases).
pub fn checkpoint_role(cfg: &LmConfig, key: &str) -> Option<KeyRole> {
    let base = LanguageModel::base_name(cfg.family);
    if key == "lm_head.weight" && cfg.tie_word_embeddings {
        let embed = match cfg.family {
            Family::Gpt2 => "transformer.wte.weight",
            _ => "model.embed_tokens.weight",
        };
        return Some(KeyRole::Tied(embed.into()));
    }
    if cfg.family == Family::Gpt2 {
        let full = if key.starts_with("transformer.") || key.starts_with("lm_head.") { key.to_string() } else { format!("{base}.{key}") };
        if full.starts_with("transformer.h.") && (full.ends_with(".attn.bias") || full.ends_with(".attn.masked_bias")) {
            return Some(KeyRole::Ignore);
        }
        return Some(KeyRole::Var(full));
    }
    if key.starts_with("model.layers.") && key.ends_with(".self_attn.rotary_emb.inv_freq") {
        return Some(KeyRole::Ignore);
    }
    Some(KeyRole::Var(key.to_string()))
}

impl CausalLm {
    /// An LM of `cfg` with every variable zero, built in `kind` on `device` (load or initialise it next).
    pub fn from_config(cfg: &LmConfig, generation: GenerationConfig, device: Device, kind: Kind) -> Result<Self> {
        if !matches!(kind, Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double) {
            return Err(Error::Config(format!("an LM's variables must be Float, BFloat16, Half or Double, got {kind:?}")));
        }
        let mut vs = nn::VarStore::new(device);
        vs.set_kind(kind);
        let root = vs.root();
        let model = LanguageModel::new(&root / LanguageModel::base_name(cfg.family), &root / "lm_head", cfg)?;
        Ok(CausalLm { vs, model, generation })
    }

    /// Loads a transformers folder (see the module docs): config, generation ids, strict weights.
    pub fn load(dir: &Path, opts: &LmLoadOptions) -> Result<(Self, LmLoadReport)> {
        let cfg = LmConfig::from_file(&dir.join(CONFIG_FILE))?;
        let generation = GenerationConfig::load(&dir.join(GENERATION_CONFIG_FILE), &cfg)?;
        let ckpt = Checkpoint::open_dir(dir)?;
        let lm = CausalLm::from_config(&cfg, generation, opts.device, opts.kind)?;
        let report = load_strict(&lm.vs, &ckpt, |k| checkpoint_role(&cfg, k), opts.allow_non_finite)?;
        Ok((lm, report))
    }

    /// The architecture.
    pub fn config(&self) -> &LmConfig {
        self.model.config()
    }

    /// [`LanguageModel::forward`].
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>, position_ids: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.model.forward(input_ids, attention_mask, position_ids, cache)
    }

    /// [`LanguageModel::forward_embeds`].
    pub fn forward_embeds(&self, inputs_embeds: &Tensor, attention_mask: Option<&Tensor>, position_ids: Option<&Tensor>, cache: Option<&mut KvCache>) -> Result<Tensor> {
        self.model.forward_embeds(inputs_embeds, attention_mask, position_ids, cache)
    }

    /// [`LanguageModel::embed`].
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        self.model.embed(ids)
    }

    /// [`LanguageModel::new_cache`].
    pub fn new_cache(&self, batch: i64, capacity: i64) -> Result<KvCache> {
        self.model.new_cache(batch, capacity)
    }
}

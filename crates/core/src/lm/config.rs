//! `config.json` and `generation_config.json` of a Hugging Face causal LM folder, read into one flat
//! [`LmConfig`] (the family's own key names and defaults: each field says where it comes from) and a
//! [`GenerationConfig`].
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The `model_type`s this module runs (see the module docs of [`crate::lm`] for each one's conventions).
pub const SUPPORTED_MODEL_TYPES: [&str; 5] = ["llama", "mistral", "qwen2", "qwen3", "gpt2"];

/// A family of causal LMs: one code path per architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `LlamaForCausalLM`.
    Llama,
    /// `MistralForCausalLM` (the Llama path; its sliding window only bounds the length, see [`LmConfig::sliding_window`]).
    Mistral,
    /// `Qwen2ForCausalLM`: q/k/v biases.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head q/k RMSNorm, explicit `head_dim`.
    Qwen3,
    /// `GPT2LMHeadModel`: Conv1D weights, learned positions, LayerNorm.
    Gpt2,
}

impl Family {
    /// From `model_type`; an unknown one is named with the supported ones.
    pub fn from_model_type(t: &str) -> Result<Self> {
        Ok(match t {
            "llama" => Family::Llama,
            "mistral" => Family::Mistral,
            "qwen2" => Family::Qwen2,
            "qwen3" => Family::Qwen3,
            "gpt2" => Family::Gpt2,
            _ => {
                return Err(Error::Config(format!(
                    "model_type \"{t}\" is not a supported causal LM family; supported: {}",
                    SUPPORTED_MODEL_TYPES.join(", ")
                )));
            }
        })
    }

    /// The `model_type` string.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gpt2 => "gpt2",
        }
    }
}

/// The MLP (or gate) activation (`hidden_act` / `activation_function`, transformers `activations.py` names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `silu` / `swish`.
    Silu,
    /// `gelu`: exact (erf).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    /// `relu`.
    Relu,
}

impl Activation {
    /// From a transformers activation name (`hidden_act`, `projector_hidden_act`, …); `key` names the field in
    /// the error.
    pub fn parse(name: &str, key: &str) -> Result<Self> {
        Ok(match name {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            _ => {
                return Err(Error::Config(format!(
                    "{key} \"{name}\" is not supported; supported: silu, swish, gelu, gelu_new, gelu_pytorch_tanh, relu"
                )));
            }
        })
    }

    /// Applies the activation.
    pub fn apply(self, x: &tch::Tensor) -> tch::Tensor {
        match self {
            Activation::Silu => x.silu(),
            Activation::Gelu => x.gelu("none"),
            Activation::GeluTanh => x.gelu("tanh"),
            Activation::Relu => x.relu(),
        }
    }
}

/// How RoPE frequencies are scaled (`rope_scaling`, or transformers 5's `rope_parameters`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    /// No scaling (`null` or `rope_type: "default"`).
    Default,
    /// `rope_type: "linear"`: every inverse frequency divided by `factor`.
    Linear { factor: f64 },
    /// `rope_type: "llama3"` (Llama 3.1+): low frequencies divided by `factor`, high ones kept, a smooth ramp
    /// between (transformers `modeling_rope_utils.py` `_compute_llama3_parameters`).
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

/// The architecture of one causal LM, read from its `config.json` (see [`LmConfig::from_json`]).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LmConfig {
    pub family: Family,
    /// `vocab_size`.
    pub vocab_size: i64,
    /// `hidden_size` (gpt2: `n_embd`).
    pub hidden_size: i64,
    /// `intermediate_size` (gpt2: `n_inner`, null → 4·n_embd).
    pub intermediate_size: i64,
    /// `num_hidden_layers` (gpt2: `n_layer`).
    pub num_layers: i64,
    /// `num_attention_heads` (gpt2: `n_head`).
    pub num_heads: i64,
    /// `num_key_value_heads` (absent → num_heads; gpt2: num_heads).
    pub num_kv_heads: i64,
    /// `head_dim` (absent or null → hidden_size / num_heads; qwen3's default 128).
    pub head_dim: i64,
    /// `max_position_embeddings` (gpt2: `n_positions`, a hard bound of its learned positions).
    pub max_positions: i64,
    /// `rms_norm_eps` (gpt2: `layer_norm_epsilon`).
    pub norm_eps: f64,
    /// `hidden_act` (gpt2: `activation_function`).
    pub act: Activation,
    /// `rope_theta` (not gpt2).
    pub rope_theta: f64,
    /// `rope_scaling` (not gpt2).
    pub rope_scaling: RopeScaling,
    /// Biases on q/k/v (llama, mistral, qwen3: `attention_bias`; qwen2: always; gpt2: always).
    pub qkv_bias: bool,
    /// Bias on the output projection (llama, qwen3: `attention_bias`; qwen2: never; gpt2: always).
    pub o_bias: bool,
    /// Biases on the MLP (llama: `mlp_bias`; gpt2: always).
    pub mlp_bias: bool,
    /// Per-head RMSNorm of q and k before RoPE (qwen3).
    pub qk_norm: bool,
    /// `tie_word_embeddings` (default: false for llama, mistral, qwen2, qwen3; true for gpt2).
    pub tie_word_embeddings: bool,
    /// The longest attended span where some layer uses sliding-window attention (mistral `sliding_window`;
    /// qwen2/qwen3 only with `use_sliding_window`). Not implemented as a window: longer sequences are refused.
    pub sliding_window: Option<i64>,
    /// gpt2 `scale_attn_weights` (q·k / √Dh when true, q·k otherwise); true for the others.
    pub scale_attn_weights: bool,
    /// gpt2 `scale_attn_by_inverse_layer_idx`: layer i divides the scores by i + 1 too.
    pub scale_attn_by_inverse_layer_idx: bool,
    /// `bos_token_id` of config.json.
    pub bos_token_id: Option<i64>,
    /// `eos_token_id` of config.json (an int or a list).
    pub eos_token_ids: Vec<i64>,
    /// `pad_token_id` of config.json.
    pub pad_token_id: Option<i64>,
}

/// A JSON object with typed getters that name the key on failure.
struct Obj<'a>(&'a serde_json::Map<String, Value>);

impl Obj<'_> {
    fn present(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }
    fn int(&self, k: &str) -> Result<Option<i64>> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| Error::Config(format!("\"{k}\" must be an integer, got {v}"))),
        }
    }
    fn req_int(&self, k: &str) -> Result<i64> {
        self.int(k)?.ok_or_else(|| Error::Config(format!("\"{k}\" is missing")))
    }
    fn float(&self, k: &str) -> Result<Option<f64>> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| Error::Config(format!("\"{k}\" must be a number, got {v}"))),
        }
    }
    fn bool(&self, k: &str) -> Result<Option<bool>> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| Error::Config(format!("\"{k}\" must be true or false, got {v}"))),
        }
    }
    fn str(&self, k: &str) -> Result<Option<&str>> {
        match self.present(k) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| Error::Config(format!("\"{k}\" must be a string, got {v}"))),
        }
    }
    /// An id that may be an int or a list of ints (`eos_token_id`).
    fn ids(&self, k: &str) -> Result<Vec<i64>> {
        match self.present(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_i64().ok_or_else(|| Error::Config(format!("\"{k}\" must hold integers, got {v}"))))
                .collect(),
            Some(v) => v.as_i64().map(|i| vec![i]).ok_or_else(|| Error::Config(format!("\"{k}\" must be an integer or a list of integers, got {v}"))),
        }
    }
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<Obj<'a>> {
    v.as_object().map(Obj).ok_or_else(|| Error::Config(format!("{what} must be a JSON object")))
}

/// `rope_scaling` (transformers ≤ 4.x) or `rope_parameters` (5.x, which also carries `rope_theta`).
fn rope(o: &Obj<'_>) -> Result<(f64, RopeScaling)> {
    let params = o.present("rope_parameters").or(o.present("rope_scaling"));
    let mut theta = o.float("rope_theta")?;
    let scaling = match params {
        None => RopeScaling::Default,
        Some(p) => {
            let p = as_object(p, "\"rope_scaling\"")?;
            if let Some(t) = p.float("rope_theta")? {
                theta = Some(t);
            }
            let kind = p.str("rope_type")?.or(p.str("type")?).unwrap_or("default");
            let need = |k: &str| p.float(k)?.ok_or_else(|| Error::Config(format!("rope_scaling of rope_type \"{kind}\" needs \"{k}\"")));
            match kind {
                "default" => RopeScaling::Default,
                "linear" => RopeScaling::Linear { factor: need("factor")? },
                "llama3" => RopeScaling::Llama3 {
                    factor: need("factor")?,
                    low_freq_factor: need("low_freq_factor")?,
                    high_freq_factor: need("high_freq_factor")?,
                    original_max_position_embeddings: need("original_max_position_embeddings")?,
                },
                other => {
                    return Err(Error::Config(format!(
                        "rope_scaling rope_type \"{other}\" is not supported; supported: default, linear, llama3"
                    )));
                }
            }
        }
    };
    if let Some(f) = o.float("partial_rotary_factor")?.filter(|f| *f != 1.0) {
        return Err(Error::Config(format!("partial_rotary_factor {f} is not supported (only 1.0)")));
    }
    Ok((theta.unwrap_or(10000.0), scaling))
}

/// Parses the JSON file `path` with `parse`; a read error, invalid JSON or a config error names the file.
pub(crate) fn read_config_file<T>(path: &Path, parse: impl FnOnce(&Value) -> Result<T>) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| Error::weights(path, format!("not valid JSON: {e}")))?;
    parse(&v).map_err(|e| match e {
        Error::Config(m) => Error::weights(path, m),
        e => e,
    })
}

impl LmConfig {
    /// Reads `path` (a `config.json`); errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config_file(path, Self::from_json)
    }

    /// Parses a config object (a whole `config.json`, or a LLaVA `text_config`).
    pub fn from_json(v: &Value) -> Result<Self> {
        let o = as_object(v, "config")?;
        let t = o.str("model_type")?.ok_or_else(|| {
            Error::Config(format!("\"model_type\" is missing; supported: {}", SUPPORTED_MODEL_TYPES.join(", ")))
        })?;
        let family = Family::from_model_type(t)?;
        let cfg = match family {
            Family::Gpt2 => Self::gpt2(&o)?,
            _ => Self::llama_like(family, &o)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn gpt2(o: &Obj<'_>) -> Result<Self> {
        let d = o.req_int("n_embd")?;
        let heads = o.req_int("n_head")?;
        Ok(LmConfig {
            family: Family::Gpt2,
            vocab_size: o.req_int("vocab_size")?,
            hidden_size: d,
            intermediate_size: o.int("n_inner")?.unwrap_or(4 * d),
            num_layers: o.req_int("n_layer")?,
            num_heads: heads,
            num_kv_heads: heads,
            head_dim: if heads > 0 { d / heads } else { 0 },
            max_positions: o.req_int("n_positions")?,
            norm_eps: o.float("layer_norm_epsilon")?.unwrap_or(1e-5),
            act: Activation::parse(o.str("activation_function")?.unwrap_or("gelu_new"), "activation_function")?,
            rope_theta: 0.0,
            rope_scaling: RopeScaling::Default,
            qkv_bias: true,
            o_bias: true,
            mlp_bias: true,
            qk_norm: false,
            tie_word_embeddings: o.bool("tie_word_embeddings")?.unwrap_or(true),
            sliding_window: None,
            scale_attn_weights: o.bool("scale_attn_weights")?.unwrap_or(true),
            scale_attn_by_inverse_layer_idx: o.bool("scale_attn_by_inverse_layer_idx")?.unwrap_or(false),
            bos_token_id: o.int("bos_token_id")?,
            eos_token_ids: o.ids("eos_token_id")?,
            pad_token_id: o.int("pad_token_id")?,
        })
    }

    fn llama_like(family: Family, o: &Obj<'_>) -> Result<Self> {
        let d = o.req_int("hidden_size")?;
        let heads = o.req_int("num_attention_heads")?;
        let default_head_dim = if family == Family::Qwen3 { 128 } else if heads > 0 { d / heads } else { 0 };
        let (rope_theta, rope_scaling) = rope(o)?;
        let attention_bias = o.bool("attention_bias")?.unwrap_or(false);
        let sliding_window = match family {
            Family::Mistral => o.int("sliding_window")?,
            Family::Qwen2 | Family::Qwen3 if o.bool("use_sliding_window")?.unwrap_or(false) => o.int("sliding_window")?,
            _ => None,
        };
        Ok(LmConfig {
            family,
            vocab_size: o.req_int("vocab_size")?,
            hidden_size: d,
            intermediate_size: o.req_int("intermediate_size")?,
            num_layers: o.req_int("num_hidden_layers")?,
            num_heads: heads,
            num_kv_heads: o.int("num_key_value_heads")?.unwrap_or(heads),
            head_dim: o.int("head_dim")?.unwrap_or(default_head_dim),
            max_positions: o.int("max_position_embeddings")?.unwrap_or(2048),
            norm_eps: o.float("rms_norm_eps")?.unwrap_or(1e-6),
            act: Activation::parse(o.str("hidden_act")?.unwrap_or("silu"), "hidden_act")?,
            rope_theta,
            rope_scaling,
            qkv_bias: match family {
                Family::Qwen2 => true,
                _ => attention_bias,
            },
            o_bias: match family {
                Family::Qwen2 | Family::Mistral => false,
                _ => attention_bias,
            },
            mlp_bias: family == Family::Llama && o.bool("mlp_bias")?.unwrap_or(false),
            qk_norm: family == Family::Qwen3,
            tie_word_embeddings: o.bool("tie_word_embeddings")?.unwrap_or(false),
            sliding_window,
            scale_attn_weights: true,
            scale_attn_by_inverse_layer_idx: false,
            bos_token_id: o.int("bos_token_id")?,
            eos_token_ids: o.ids("eos_token_id")?,
            pad_token_id: o.int("pad_token_id")?,
        })
    }

    /// Checks sizes and their divisibility.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("{} config: {m}", self.family.model_type())));
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_layers),
            ("num_attention_heads", self.num_heads),
            ("num_key_value_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("max_position_embeddings", self.max_positions),
        ] {
            if v < 1 {
                return bad(format!("{name} must be ≥ 1, got {v}"));
            }
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return bad(format!("num_attention_heads {} is not a multiple of num_key_value_heads {}", self.num_heads, self.num_kv_heads));
        }
        if self.family == Family::Gpt2 && self.hidden_size % self.num_heads != 0 {
            return bad(format!("n_embd {} is not a multiple of n_head {}", self.hidden_size, self.num_heads));
        }
        if self.family != Family::Gpt2 && self.head_dim % 2 != 0 {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim));
        }
        if let Some(w) = self.sliding_window.filter(|w| *w < 1) {
            return bad(format!("sliding_window must be ≥ 1, got {w}"));
        }
        Ok(())
    }
}

/// Token ids of `generation_config.json` (falling back on config.json's).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct GenerationConfig {
    pub bos_token_id: Option<i64>,
    /// Every id that ends a sequence (`eos_token_id`: an int or a list).
    pub eos_token_ids: Vec<i64>,
    /// The id that fills a row after its EOS (`pad_token_id`; transformers falls back on the first EOS id).
    pub pad_token_id: Option<i64>,
}

impl GenerationConfig {
    /// `generation_config.json` at `path` if it exists, each id absent there taken from `cfg`.
    pub fn load(path: &Path, cfg: &LmConfig) -> Result<Self> {
        let mut g = GenerationConfig { bos_token_id: cfg.bos_token_id, eos_token_ids: cfg.eos_token_ids.clone(), pad_token_id: cfg.pad_token_id };
        if !path.exists() {
            return Ok(g);
        }
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| Error::weights(path, format!("not valid JSON: {e}")))?;
        let o = as_object(&v, "generation config").map_err(|e| Error::weights(path, e.to_string()))?;
        let wrap = |e: Error| Error::weights(path, e.to_string());
        if let Some(b) = o.int("bos_token_id").map_err(wrap)? {
            g.bos_token_id = Some(b);
        }
        let eos = o.ids("eos_token_id").map_err(wrap)?;
        if !eos.is_empty() {
            g.eos_token_ids = eos;
        }
        if let Some(p) = o.int("pad_token_id").map_err(wrap)? {
            g.pad_token_id = Some(p);
        }
        Ok(g)
    }

    /// The pad id transformers' `generate` uses: `pad_token_id`, else the first EOS id.
    pub fn pad_or_eos(&self) -> Option<i64> {
        self.pad_token_id.or(self.eos_token_ids.first().copied())
    }
}

//! `config.json` of a transformers `LlavaForConditionalGeneration` folder ([`LlavaConfig`]), read and written
//! with transformers 4.57's field names and defaults (`models/llava/configuration_llava.py`), plus cxformer's two
//! options that transformers' LLaVA does not have ([`LlavaOptions::pool`], [`ProjectorKind`] other than
//! `mlp2x_gelu`).
use crate::config::VitConfig;
use crate::error::{Error, Result};
use crate::lm::{Activation, LmConfig};
use serde_json::{Map, Value, json};
use std::path::Path;

/// Which vision tokens enter the projector (transformers' `vision_feature_select_strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSelect {
    /// `"default"`: `hidden_states[layer][:, 1:]`, every token but the first. With a DINOv2 tower that drops
    /// the CLS token only: the register tokens stay (transformers has no "patches only" strategy).
    Default,
    /// `"full"`: every token, [CLS, registers, patches].
    Full,
}

impl FeatureSelect {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "default" => Ok(FeatureSelect::Default),
            "full" => Ok(FeatureSelect::Full),
            other => Err(Error::Config(format!("vision_feature_select_strategy \"{other}\" is not supported; supported: default, full"))),
        }
    }

    /// The config.json value.
    pub fn name(self) -> &'static str {
        match self {
            FeatureSelect::Default => "default",
            FeatureSelect::Full => "full",
        }
    }
}

/// The projector's depth: `linear` = one Linear(D_in → d), `mlpNx_gelu` = N Linears (D_in → d, then d → d) with
/// the activation (`projector_hidden_act`, GELU by default) between them. transformers' `LlavaMultiModalProjector`
/// is `mlp2x_gelu` (`linear_1`, act, `linear_2`); the others load and run in cxformer only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProjectorKind {
    /// Linear layers (≥ 1), named `linear_1` … `linear_N`.
    pub depth: i64,
}

impl ProjectorKind {
    pub const LINEAR: ProjectorKind = ProjectorKind { depth: 1 };
    /// LLaVA-1.5's and transformers' projector (the default).
    pub const MLP2X_GELU: ProjectorKind = ProjectorKind { depth: 2 };

    /// `linear`, `mlp2x_gelu`, `mlp3x_gelu`, … (LLaVA's `mm_projector_type` names).
    pub fn parse(name: &str) -> Result<Self> {
        if name == "linear" {
            return Ok(Self::LINEAR);
        }
        let depth = name.strip_prefix("mlp").and_then(|r| r.strip_suffix("x_gelu")).and_then(|n| n.parse::<i64>().ok());
        match depth {
            Some(d) if (2..=16).contains(&d) => Ok(ProjectorKind { depth: d }),
            _ => Err(Error::Config(format!("projector \"{name}\" is not supported; supported: linear, mlp2x_gelu, mlpNx_gelu (N in 2..=16)"))),
        }
    }

    pub fn name(self) -> String {
        if self.depth == 1 { "linear".into() } else { format!("mlp{}x_gelu", self.depth) }
    }
}

/// config.json key of cxformer's patch pooling (k, written when k > 1; transformers' LLaVA has none).
pub const CXFORMER_POOL_KEY: &str = "cxformer_patch_pool";
/// config.json key of cxformer's projector name (written when it is not `mlp2x_gelu`).
pub const CXFORMER_PROJECTOR_KEY: &str = "cxformer_projector";

/// The LLaVA-specific choices of a model built from a vision tower and a causal LM ([`LlavaConfig::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LlavaOptions {
    /// The id of the image placeholder token in the LM's vocabulary (`image_token_index`).
    pub image_token_index: i64,
    /// `vision_feature_layer`: hidden_states index (HF counting: 0 = the embeddings, i = the output of block i,
    /// negative from the end, −1 = the last block, before the final LayerNorm); several are concatenated along
    /// the features (transformers' list form). Default [−2].
    pub vision_feature_layers: Vec<i64>,
    /// `vision_feature_select_strategy`. Default [`FeatureSelect::Default`] (transformers' default).
    pub select: FeatureSelect,
    /// cxformer: the patch grid average-pooled in k×k windows before the projector (1 = off; see
    /// [`super::vision`]). Not representable in transformers: such a model does not export ([`super::LlavaModel::save_hf`]).
    pub pool: i64,
    /// cxformer: the projector's depth. Default `mlp2x_gelu` (the only one transformers loads).
    pub projector: ProjectorKind,
    /// `projector_hidden_act` (transformers `ACT2FN` name). Default "gelu" (exact).
    pub projector_hidden_act: String,
    /// `multimodal_projector_bias`. Default true.
    pub multimodal_projector_bias: bool,
}

impl LlavaOptions {
    /// transformers' defaults with `image_token_index`.
    pub fn new(image_token_index: i64) -> Self {
        LlavaOptions {
            image_token_index,
            vision_feature_layers: vec![-2],
            select: FeatureSelect::Default,
            pool: 1,
            projector: ProjectorKind::MLP2X_GELU,
            projector_hidden_act: "gelu".into(),
            multimodal_projector_bias: true,
        }
    }
}

/// A LLaVA's architecture: the vision tower, the LM and how they are joined.
#[derive(Clone, Debug)]
pub struct LlavaConfig {
    /// The vision tower, from `vision_config` (model_type `dinov2_with_registers` or `dinov2`).
    pub vision: VitConfig,
    /// `vision_config` as written back to config.json (the folder's own object when loaded).
    pub vision_config: Value,
    /// The LM, from `text_config` (a family of [`crate::lm`]).
    pub text: LmConfig,
    /// `text_config` as written back to config.json.
    pub text_config: Value,
    /// `image_seq_length` as read (transformers' processor uses it to expand the image token); written back as
    /// [`LlavaConfig::tokens_per_image`].
    pub image_seq_length: i64,
    pub options: LlavaOptions,
    /// `projector_hidden_act`, parsed.
    pub projector_act: Activation,
}

/// A JSON object's key that must be of one type when present (the key is named on failure).
fn get<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

fn int(o: &Map<String, Value>, k: &str, default: i64) -> Result<i64> {
    match get(o, k) {
        None => Ok(default),
        Some(v) => v.as_i64().ok_or_else(|| Error::Config(format!("\"{k}\" must be an integer, got {v}"))),
    }
}

impl LlavaConfig {
    /// Reads a folder's `config.json`; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::lm::config::read_config_file(path, Self::from_json)
    }

    /// Parses a LLaVA config object (transformers' defaults for absent keys: `image_token_index` 32000,
    /// `projector_hidden_act` "gelu", `vision_feature_select_strategy` "default", `vision_feature_layer` −2,
    /// `image_seq_length` 576, `multimodal_projector_bias` true). cxformer's own options are not part of
    /// transformers' config: a folder has pool 1 and an `mlp2x_gelu` projector unless it holds cxformer's keys
    /// [`CXFORMER_POOL_KEY`] / [`CXFORMER_PROJECTOR_KEY`] ([`LlavaConfig::to_hf_json`]).
    pub fn from_json(v: &Value) -> Result<Self> {
        let o = v.as_object().ok_or_else(|| Error::Config("config must be a JSON object".into()))?;
        match get(o, "model_type").map(|t| t.as_str()) {
            None | Some(Some("llava")) => {}
            Some(t) => return Err(Error::Config(format!("model_type must be \"llava\", got {}", t.map_or("a non-string".into(), |s| format!("\"{s}\""))))),
        }
        let vision_config = get(o, "vision_config").ok_or_else(|| Error::Config("\"vision_config\" is missing".into()))?;
        let text_config = get(o, "text_config").ok_or_else(|| Error::Config("\"text_config\" is missing".into()))?;
        let image_token_index = match get(o, "image_token_index") {
            Some(_) => int(o, "image_token_index", 32000)?,
            None => int(o, "image_token_id", 32000)?,
        };
        let vision_feature_layers = match get(o, "vision_feature_layer") {
            None => vec![-2],
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| x.as_i64().ok_or_else(|| Error::Config(format!("\"vision_feature_layer\" must hold integers, got {x}"))))
                .collect::<Result<_>>()?,
            Some(x) => vec![x.as_i64().ok_or_else(|| Error::Config(format!("\"vision_feature_layer\" must be an integer or a list of integers, got {x}")))?],
        };
        let str_of = |k: &str, d: &str| -> Result<String> {
            match get(o, k) {
                None => Ok(d.to_string()),
                Some(x) => x.as_str().map(str::to_string).ok_or_else(|| Error::Config(format!("\"{k}\" must be a string, got {x}"))),
            }
        };
        let multimodal_projector_bias = match get(o, "multimodal_projector_bias") {
            None => true,
            Some(x) => x.as_bool().ok_or_else(|| Error::Config(format!("\"multimodal_projector_bias\" must be true or false, got {x}")))?,
        };
        let options = LlavaOptions {
            image_token_index,
            vision_feature_layers,
            select: FeatureSelect::parse(&str_of("vision_feature_select_strategy", "default")?)?,
            pool: int(o, CXFORMER_POOL_KEY, 1)?,
            projector: ProjectorKind::parse(&str_of(CXFORMER_PROJECTOR_KEY, "mlp2x_gelu")?)?,
            projector_hidden_act: str_of("projector_hidden_act", "gelu")?,
            multimodal_projector_bias,
        };
        let mut cfg = Self::build(vision_config.clone(), text_config.clone(), options)?;
        cfg.image_seq_length = int(o, "image_seq_length", 576)?;
        Ok(cfg)
    }

    /// A LLaVA of the vision tower `vision` (written as a `dinov2_with_registers` / `dinov2` vision_config,
    /// [`super::vision::vision_config_json`]) and the LM whose `config.json` object is `text_config`.
    pub fn new(vision: &VitConfig, text_config: &Value, options: LlavaOptions) -> Result<Self> {
        let mut text = text_config.as_object().cloned().ok_or_else(|| Error::Config("text_config must be a JSON object".into()))?;
        // What transformers keeps of a sub-config: no architectures, dtype or version of its own.
        for k in ["architectures", "torch_dtype", "dtype", "transformers_version", "_name_or_path"] {
            text.remove(k);
        }
        let mut cfg = Self::build(super::vision::vision_config_json(vision)?, Value::Object(text), options)?;
        // The tower as given (its position-embedding interpolation, drop path and mask token are not part of
        // transformers' config; the written vision_config describes the same weights and the same outputs at
        // img_size).
        cfg.vision = vision.clone();
        cfg.validate()?;
        Ok(cfg)
    }

    fn build(vision_config: Value, text_config: Value, options: LlavaOptions) -> Result<Self> {
        let vision = VitConfig::from_hf_config(&vision_config.to_string()).map_err(|e| Error::Config(format!("vision_config: {}", strip(e))))?;
        let text = LmConfig::from_json(&text_config).map_err(|e| Error::Config(format!("text_config: {}", strip(e))))?;
        let projector_act = Activation::parse(&options.projector_hidden_act, "projector_hidden_act")?;
        let mut cfg = LlavaConfig { vision, vision_config, text, text_config, image_seq_length: 0, options, projector_act };
        cfg.validate()?;
        cfg.image_seq_length = cfg.tokens_per_image(cfg.vision.img_size, cfg.vision.img_size);
        Ok(cfg)
    }

    /// Checks the joining choices against the tower and the LM.
    pub fn validate(&self) -> Result<()> {
        let o = &self.options;
        let depth = self.vision.depth;
        if o.vision_feature_layers.is_empty() {
            return Err(Error::Config("vision_feature_layer: the list is empty".into()));
        }
        for &l in &o.vision_feature_layers {
            if l < -(depth + 1) || l > depth {
                return Err(Error::Config(format!(
                    "vision_feature_layer {l} does not exist: the vision tower has {depth} blocks, so hidden_states holds {} entries \
                     (0 = the embeddings … {depth}, or −1 … −{})",
                    depth + 1,
                    depth + 1
                )));
            }
        }
        let v = self.text.vocab_size;
        if o.image_token_index < 0 || o.image_token_index >= v {
            return Err(Error::Config(format!(
                "image_token_index {} is outside the LM's vocabulary [0, {v}): transformers looks the image token up in the \
                 token embedding, which would need resizing",
                o.image_token_index
            )));
        }
        if o.pool < 1 {
            return Err(Error::Config(format!("patch pooling must be ≥ 1 (1 = off), got {}", o.pool)));
        }
        if o.projector.depth < 1 {
            return Err(Error::Config(format!("projector depth must be ≥ 1, got {}", o.projector.depth)));
        }
        Ok(())
    }

    /// `vision_feature_layer` as hidden_states indices 0..=depth (0 = the embeddings, i = block i − 1's output).
    pub fn feature_layer_indices(&self) -> Vec<i64> {
        let n = self.vision.depth + 1;
        self.options.vision_feature_layers.iter().map(|&l| if l < 0 { n + l } else { l }).collect()
    }

    /// Width of the projector's input: D_vit × the number of feature layers.
    pub fn projector_in(&self) -> i64 {
        self.vision.embed_dim * self.options.vision_feature_layers.len() as i64
    }

    /// Visual tokens one image of `h`×`w` pixels becomes: (CLS unless `default`) + registers + the patch grid,
    /// pooled k×k with partial windows kept (⌈h/p/k⌉·⌈w/p/k⌉).
    pub fn tokens_per_image(&self, h: i64, w: i64) -> i64 {
        let p = self.vision.patch_size;
        let k = self.options.pool;
        let (gh, gw) = (h / p, w / p);
        let patches = if k > 1 { ((gh + k - 1) / k) * ((gw + k - 1) / k) } else { gh * gw };
        let cls = if self.options.select == FeatureSelect::Full { 1 } else { 0 };
        cls + self.vision.num_register_tokens + patches
    }

    /// Whether transformers' `LlavaForConditionalGeneration` computes this model (no pooling, `mlp2x_gelu`);
    /// otherwise the reason.
    pub fn transformers_compatible(&self) -> std::result::Result<(), String> {
        if self.options.pool != 1 {
            return Err(format!("patch pooling {}×{} (transformers' LLaVA has no pooling)", self.options.pool, self.options.pool));
        }
        if self.options.projector != ProjectorKind::MLP2X_GELU {
            return Err(format!("the {} projector (transformers' LlavaMultiModalProjector is mlp2x_gelu: linear_1, act, linear_2)", self.options.projector.name()));
        }
        Ok(())
    }

    /// The config.json object of a transformers 4.57 `LlavaForConditionalGeneration` folder, the keys of
    /// `save_pretrained` (`dtype`: the weights' dtype name, e.g. "float32"). A model transformers does not compute
    /// ([`LlavaConfig::transformers_compatible`]) also gets cxformer's keys [`CXFORMER_POOL_KEY`] and
    /// [`CXFORMER_PROJECTOR_KEY`], which transformers ignores (such a folder fails there loudly: its image feature
    /// count or projector keys do not match) and [`LlavaConfig::from_json`] reads.
    pub fn to_hf_json(&self, dtype: &str) -> Result<Value> {
        let o = &self.options;
        let layer = match o.vision_feature_layers.as_slice() {
            [one] => json!(one),
            many => json!(many),
        };
        let mut m = Map::new();
        // Sorted, as transformers writes them.
        m.insert("architectures".into(), json!(["LlavaForConditionalGeneration"]));
        if o.pool != 1 {
            m.insert(CXFORMER_POOL_KEY.into(), json!(o.pool));
        }
        if o.projector != ProjectorKind::MLP2X_GELU {
            m.insert(CXFORMER_PROJECTOR_KEY.into(), json!(o.projector.name()));
        }
        m.insert("dtype".into(), json!(dtype));
        m.insert("image_seq_length".into(), json!(self.tokens_per_image(self.vision.img_size, self.vision.img_size)));
        m.insert("image_token_index".into(), json!(o.image_token_index));
        m.insert("model_type".into(), json!("llava"));
        m.insert("multimodal_projector_bias".into(), json!(o.multimodal_projector_bias));
        m.insert("projector_hidden_act".into(), json!(o.projector_hidden_act));
        m.insert("text_config".into(), self.text_config.clone());
        m.insert("transformers_version".into(), json!(super::TRANSFORMERS_VERSION));
        m.insert("vision_config".into(), self.vision_config.clone());
        m.insert("vision_feature_layer".into(), layer);
        m.insert("vision_feature_select_strategy".into(), json!(o.select.name()));
        Ok(Value::Object(m))
    }
}

/// An error's message without the "invalid configuration: " of [`Error::Config`].
fn strip(e: Error) -> String {
    match e {
        Error::Config(m) => m,
        e => e.to_string(),
    }
}

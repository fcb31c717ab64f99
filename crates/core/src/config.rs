//! Architecture of a DINOv2 Vision Transformer (docs/recipe.md §2.1, §2.8): presets, Hugging Face config.json mapping,
//! dotted overrides and validation. Serialized as JSON between TypeScript and the core.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// Feed-forward network of each block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FfnKind {
    /// Linear(D, h) → exact GELU → Linear(h, D), h = int(D · mlp_ratio).
    Mlp,
    /// SwiGLU: w12: D → 2h', w3: h' → D, out = w3(silu(x1) ⊙ x2), h' = ((int(int(D·mlp_ratio)·2/3) + 7) / 8) · 8.
    Swiglu,
}

/// How the learned position embedding is resized to another patch grid (docs/recipe.md §2.3).
///
/// * `offset > 0`: original DINOv2 (`interpolate_offset` 0.1): bicubic with
///   `scale_factor = ((h0 + offset)/M, (w0 + offset)/M)`, which PyTorch also uses in the coordinate mapping.
/// * `offset == 0`: bicubic to the explicit size `(h0, w0)` (HF Dinov2, hub register models, HF with registers).
/// * `antialias`: PyTorch's antialiased bicubic (hub register models and HF Dinov2WithRegisters: true).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosInterp {
    pub offset: f64,
    pub antialias: bool,
}

impl PosInterp {
    /// facebookresearch/dinov2 `DinoVisionTransformer` defaults (used for CXformer training).
    pub const ORIGINAL: PosInterp = PosInterp { offset: 0.1, antialias: false };
    /// Torch-hub register models and HF `Dinov2WithRegistersModel`.
    pub const REGISTERS_AA: PosInterp = PosInterp { offset: 0.0, antialias: true };
    /// HF `Dinov2Model` (current transformers).
    pub const HF_SIZE: PosInterp = PosInterp { offset: 0.0, antialias: false };
}

/// Complete description of a backbone; every field has a meaning in docs/recipe.md §2.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    pub embed_dim: i64,
    pub depth: i64,
    pub num_heads: i64,
    pub mlp_ratio: f64,
    pub ffn: FfnKind,
    pub patch_size: i64,
    /// Training resolution: the position-embedding grid is img_size / patch_size on each side.
    pub img_size: i64,
    pub in_chans: i64,
    pub num_register_tokens: i64,
    /// LayerScale initial value; None = no LayerScale.
    pub layerscale_init: Option<f64>,
    pub layer_norm_eps: f64,
    pub qkv_bias: bool,
    pub proj_bias: bool,
    pub ffn_bias: bool,
    pub drop_path_rate: f64,
    /// true: the same rate in every block; false: linear 0 → rate over the blocks.
    pub drop_path_uniform: bool,
    pub use_mask_token: bool,
    pub interpolation: PosInterp,
}

/// Upper bounds on architecture values (see [`VitConfig::validate`]); src/model/config.ts `ARCH_LIMITS` holds the same.
pub mod limits {
    pub const EMBED_DIM: i64 = 16384;
    pub const DEPTH: i64 = 512;
    pub const PATCH_SIZE: i64 = 256;
    pub const IMG_SIZE: i64 = 16384;
    pub const POS_CELLS: i64 = 100_000;
    pub const IN_CHANS: i64 = 64;
    pub const REGISTERS: i64 = 1024;
    pub const MLP_RATIO: f64 = 64.0;
    pub const PARAMETERS: f64 = 4e9;
    pub const LAYER_NORM_EPS: f64 = 0.1;
    pub const LAYERSCALE_ABS: f64 = 1e6;
}

impl VitConfig {
    fn preset(embed_dim: i64, depth: i64, num_heads: i64, ffn: FfnKind) -> Self {
        VitConfig {
            embed_dim,
            depth,
            num_heads,
            mlp_ratio: 4.0,
            ffn,
            patch_size: 14,
            img_size: 518,
            in_chans: 3,
            num_register_tokens: 4,
            layerscale_init: Some(1.0),
            layer_norm_eps: 1e-6,
            qkv_bias: true,
            proj_bias: true,
            ffn_bias: true,
            drop_path_rate: 0.0,
            drop_path_uniform: true,
            use_mask_token: true,
            interpolation: PosInterp::REGISTERS_AA,
        }
    }
    /// ViT-S/14, 4 registers (CXformer(S)): D 384, 12 blocks, 6 heads.
    pub fn vit_small() -> Self {
        Self::preset(384, 12, 6, FfnKind::Mlp)
    }
    /// ViT-B/14, 4 registers (CXformer(B)): D 768, 12 blocks, 12 heads.
    pub fn vit_base() -> Self {
        Self::preset(768, 12, 12, FfnKind::Mlp)
    }
    /// ViT-L/14, 4 registers: D 1024, 24 blocks, 16 heads (MLP FFN, as the public weights).
    pub fn vit_large() -> Self {
        Self::preset(1024, 24, 16, FfnKind::Mlp)
    }
    /// ViT-g/14 ("giant2"), 4 registers: D 1536, 40 blocks, 24 heads, SwiGLU.
    pub fn vit_giant2() -> Self {
        Self::preset(1536, 40, 24, FfnKind::Swiglu)
    }
    pub fn from_preset(name: &str) -> Result<Self> {
        match name {
            "vit_small" => Ok(Self::vit_small()),
            "vit_base" => Ok(Self::vit_base()),
            "vit_large" => Ok(Self::vit_large()),
            "vit_giant2" => Ok(Self::vit_giant2()),
            _ => Err(Error::Config(format!(
                "unknown architecture preset '{name}': expected one of vit_small, vit_base, vit_large, vit_giant2"
            ))),
        }
    }

    /// Side of the position-embedding grid (M = img_size / patch_size).
    pub fn pos_grid(&self) -> i64 {
        self.img_size / self.patch_size
    }
    /// Hidden width of the FFN.
    pub fn ffn_hidden(&self) -> i64 {
        let h = (self.embed_dim as f64 * self.mlp_ratio) as i64;
        match self.ffn {
            FfnKind::Mlp => h,
            FfnKind::Swiglu => ((h * 2 / 3) + 7) / 8 * 8,
        }
    }

    /// Checks every value for range and consistency. Values that tensor shapes cannot confirm are bounded
    /// (mirrors `ARCH_LIMITS` in src/model/config.ts) so that a hostile config fails here, with the key named,
    /// and never as a failed multi-GB allocation.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let int = |k: &str, v: i64, lo: i64, hi: i64| -> Result<()> {
            if v < lo || v > hi {
                return Err(Error::Config(format!("model.{k} must be an integer in [{lo}, {hi}], got {v}")));
            }
            Ok(())
        };
        int("embed_dim", self.embed_dim, 1, limits::EMBED_DIM)?;
        int("depth", self.depth, 1, limits::DEPTH)?;
        int("num_heads", self.num_heads, 1, self.embed_dim)?;
        int("patch_size", self.patch_size, 1, limits::PATCH_SIZE)?;
        int("img_size", self.img_size, 1, limits::IMG_SIZE)?;
        int("in_chans", self.in_chans, 1, limits::IN_CHANS)?;
        int("num_register_tokens", self.num_register_tokens, 0, limits::REGISTERS)?;
        if self.embed_dim % self.num_heads != 0 {
            return bad(format!("embed_dim {} is not divisible by num_heads {}", self.embed_dim, self.num_heads));
        }
        if self.img_size < self.patch_size || self.img_size % self.patch_size != 0 {
            return bad(format!(
                "img_size {} must be a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.pos_grid() * self.pos_grid() > limits::POS_CELLS {
            return bad(format!(
                "img_size / patch_size = {}: at most {} position cells in all, got {}",
                self.pos_grid(),
                limits::POS_CELLS,
                self.pos_grid() * self.pos_grid()
            ));
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio <= limits::MLP_RATIO) || self.ffn_hidden() <= 0 {
            return bad(format!("mlp_ratio must be in (0, {}] giving an FFN at least 1 wide, got {}", limits::MLP_RATIO, self.mlp_ratio));
        }
        if let Some(ls) = self.layerscale_init {
            if !(ls.is_finite() && ls.abs() <= limits::LAYERSCALE_ABS) {
                return bad(format!("layerscale_init must be finite with magnitude <= {}, got {ls}", limits::LAYERSCALE_ABS));
            }
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!("drop_path_rate must be in [0, 1), got {}", self.drop_path_rate));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps <= limits::LAYER_NORM_EPS) {
            return bad(format!("layer_norm_eps must be in (0, {}], got {}", limits::LAYER_NORM_EPS, self.layer_norm_eps));
        }
        if !(0.0..1.0).contains(&self.interpolation.offset) {
            return bad(format!("interpolation.offset must be in [0, 1), got {}", self.interpolation.offset));
        }
        let n = self.num_params();
        if n as f64 > limits::PARAMETERS {
            return bad(format!(
                "the architecture has {n} parameters, more than the {:e} this tool allocates (check depth, embed_dim, mlp_ratio, img_size)",
                limits::PARAMETERS
            ));
        }
        Ok(())
    }

    /// Expected shape of every backbone variable (original DINOv2 names), computed without allocating anything:
    /// what a weight file is checked against before the model is built.
    pub fn expected_shapes(&self) -> std::collections::BTreeMap<String, Vec<i64>> {
        let (d, m, h) = (self.embed_dim, self.pos_grid(), self.ffn_hidden());
        let mut s = std::collections::BTreeMap::new();
        let mut put = |k: String, v: Vec<i64>| {
            s.insert(k, v);
        };
        put("cls_token".into(), vec![1, 1, d]);
        put("pos_embed".into(), vec![1, 1 + m * m, d]);
        if self.num_register_tokens > 0 {
            put("register_tokens".into(), vec![1, self.num_register_tokens, d]);
        }
        if self.use_mask_token {
            put("mask_token".into(), vec![1, d]);
        }
        put("patch_embed.proj.weight".into(), vec![d, self.in_chans, self.patch_size, self.patch_size]);
        put("patch_embed.proj.bias".into(), vec![d]);
        for i in 0..self.depth {
            let b = |n: &str| format!("blocks.{i}.{n}");
            for n in ["norm1", "norm2"] {
                put(b(&format!("{n}.weight")), vec![d]);
                put(b(&format!("{n}.bias")), vec![d]);
            }
            put(b("attn.qkv.weight"), vec![3 * d, d]);
            if self.qkv_bias {
                put(b("attn.qkv.bias"), vec![3 * d]);
            }
            put(b("attn.proj.weight"), vec![d, d]);
            if self.proj_bias {
                put(b("attn.proj.bias"), vec![d]);
            }
            if self.layerscale_init.is_some() {
                put(b("ls1.gamma"), vec![d]);
                put(b("ls2.gamma"), vec![d]);
            }
            let (fc_in, fc_out, width) = match self.ffn {
                FfnKind::Mlp => ("mlp.fc1", "mlp.fc2", h),
                FfnKind::Swiglu => ("mlp.w12", "mlp.w3", 2 * h),
            };
            put(b(&format!("{fc_in}.weight")), vec![width, d]);
            put(b(&format!("{fc_out}.weight")), vec![d, h]);
            if self.ffn_bias {
                put(b(&format!("{fc_in}.bias")), vec![width]);
                put(b(&format!("{fc_out}.bias")), vec![d]);
            }
        }
        put("norm.weight".into(), vec![d]);
        put("norm.bias".into(), vec![d]);
        s
    }

    /// Maps a Hugging Face `config.json` (model_type `dinov2` or `dinov2_with_registers`) onto a VitConfig.
    /// Unknown activation functions are refused: the model implements exact GELU (and SiLU in SwiGLU).
    pub fn from_hf_config(json: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Config(format!("config.json is not valid JSON: {e}")))?;
        let model_type = v.get("model_type").and_then(|x| x.as_str()).unwrap_or("");
        let with_registers = match model_type {
            "dinov2" => false,
            "dinov2_with_registers" => true,
            other => {
                return Err(Error::Config(format!(
                    "config.json: expected model_type 'dinov2' or 'dinov2_with_registers', found '{other}'"
                )));
            }
        };
        // A key that is present must have the right JSON type ("hidden_size": "96" is an error, not the default 768),
        // as in src/model/config.ts fromHfConfig.
        let get = |k: &str, want: &str| -> Result<Option<&serde_json::Value>> {
            Ok(v.get(k).filter(|x| !x.is_null())).and_then(|x| match x {
                Some(x) if want == "an integer" && !x.is_i64() || want == "a number" && !x.is_number() || want == "true or false" && !x.is_boolean() => {
                    Err(Error::Config(format!("config.json: \"{k}\" must be {want}, found {x}")))
                }
                x => Ok(x),
            })
        };
        let int = |k: &str, d: i64| -> Result<i64> { Ok(get(k, "an integer")?.and_then(|x| x.as_i64()).unwrap_or(d)) };
        let float = |k: &str, d: f64| -> Result<f64> { Ok(get(k, "a number")?.and_then(|x| x.as_f64()).unwrap_or(d)) };
        let boolean = |k: &str, d: bool| -> Result<bool> { Ok(get(k, "true or false")?.and_then(|x| x.as_bool()).unwrap_or(d)) };
        let act = v.get("hidden_act").and_then(|x| x.as_str()).unwrap_or("gelu");
        let swiglu = boolean("use_swiglu_ffn", false)?;
        if !swiglu && act != "gelu" {
            return Err(Error::Config(format!("config.json: hidden_act '{act}' is not supported (expected 'gelu')")));
        }
        let cfg = VitConfig {
            embed_dim: int("hidden_size", 768)?,
            depth: int("num_hidden_layers", 12)?,
            num_heads: int("num_attention_heads", 12)?,
            mlp_ratio: float("mlp_ratio", 4.0)?,
            ffn: if swiglu { FfnKind::Swiglu } else { FfnKind::Mlp },
            patch_size: int("patch_size", 14)?,
            img_size: int("image_size", 518)?,
            in_chans: int("num_channels", 3)?,
            num_register_tokens: if with_registers { int("num_register_tokens", 4)? } else { 0 },
            layerscale_init: Some(float("layerscale_value", 1.0)?),
            layer_norm_eps: float("layer_norm_eps", 1e-6)?,
            qkv_bias: boolean("qkv_bias", true)?,
            proj_bias: true,
            ffn_bias: true,
            drop_path_rate: float("drop_path_rate", 0.0)?,
            drop_path_uniform: true,
            use_mask_token: if with_registers { true } else { boolean("use_mask_token", true)? },
            interpolation: if with_registers { PosInterp::REGISTERS_AA } else { PosInterp::HF_SIZE },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses the JSON form used across the N-API boundary (all fields required).
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: VitConfig =
            serde_json::from_str(json).map_err(|e| Error::Config(format!("model config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("VitConfig serializes")
    }

    /// Number of parameters of the backbone (all tokens, embeddings, blocks and final norm).
    pub fn num_params(&self) -> i64 {
        let d = self.embed_dim;
        let m = self.pos_grid();
        let h = self.ffn_hidden();
        let mut n = d /*cls*/ + (1 + m * m) * d + self.num_register_tokens * d;
        if self.use_mask_token {
            n += d;
        }
        n += d * self.in_chans * self.patch_size * self.patch_size + d; // patch embed
        let ffn = match self.ffn {
            FfnKind::Mlp => d * h + h + h * d + d,
            FfnKind::Swiglu => d * 2 * h + 2 * h + h * d + d,
        };
        let ls = if self.layerscale_init.is_some() { 2 * d } else { 0 };
        let block = 2 * 2 * d /*norms*/ + 3 * d * d + if self.qkv_bias { 3 * d } else { 0 } + d * d + d + ffn + ls;
        n + self.depth * block + 2 * d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_param_counts() {
        // docs/recipe.md §2.1: ViT-S/14 with 4 registers at 518 px has 22,058,112 parameters.
        assert_eq!(VitConfig::vit_small().num_params(), 22_058_112);
        let b = VitConfig::vit_base().num_params() as f64 / 1e6;
        assert!((b - 86.58).abs() < 0.01, "vit_base {b} M");
    }

    #[test]
    fn swiglu_hidden_giant2() {
        assert_eq!(VitConfig::vit_giant2().ffn_hidden(), 4096);
    }

    #[test]
    fn hf_config_mapping() {
        let cfg = VitConfig::from_hf_config(
            r#"{"model_type":"dinov2_with_registers","hidden_size":96,"num_hidden_layers":3,"num_attention_heads":3,
                "image_size":56,"patch_size":14,"num_register_tokens":2,"layerscale_value":1.0}"#,
        )
        .unwrap();
        assert_eq!((cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_register_tokens), (96, 3, 3, 2));
        assert_eq!(cfg.interpolation, PosInterp::REGISTERS_AA);
        let e = VitConfig::from_hf_config(r#"{"model_type":"dinov2","hidden_size":"96"}"#).unwrap_err().to_string();
        assert!(e.contains(r#""hidden_size" must be an integer, found "96""#), "{e}");
        let e = VitConfig::from_hf_config(r#"{"model_type":"dinov2","qkv_bias":1}"#).unwrap_err().to_string();
        assert!(e.contains(r#""qkv_bias" must be true or false, found 1"#), "{e}");
        let e = VitConfig::from_hf_config(r#"{"model_type":"vit"}"#).unwrap_err().to_string();
        assert!(e.contains("model_type"), "{e}");
        let e = VitConfig::from_hf_config(r#"{"model_type":"dinov2","hidden_size":100,"num_attention_heads":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not divisible"), "{e}");
    }
}

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

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.embed_dim <= 0 || self.depth <= 0 || self.num_heads <= 0 {
            return bad(format!(
                "embed_dim, depth and num_heads must be positive, got {}, {}, {}",
                self.embed_dim, self.depth, self.num_heads
            ));
        }
        if self.embed_dim % self.num_heads != 0 {
            return bad(format!("embed_dim {} is not divisible by num_heads {}", self.embed_dim, self.num_heads));
        }
        if self.patch_size <= 0 || self.img_size < self.patch_size || self.img_size % self.patch_size != 0 {
            return bad(format!(
                "img_size {} must be a positive multiple of patch_size {}",
                self.img_size, self.patch_size
            ));
        }
        if self.num_register_tokens < 0 || self.in_chans <= 0 {
            return bad(format!(
                "num_register_tokens must be >= 0 and in_chans > 0, got {} and {}",
                self.num_register_tokens, self.in_chans
            ));
        }
        if !(self.mlp_ratio > 0.0) || self.ffn_hidden() <= 0 {
            return bad(format!("mlp_ratio must be > 0, got {}", self.mlp_ratio));
        }
        if !(0.0..1.0).contains(&self.drop_path_rate) {
            return bad(format!("drop_path_rate must be in [0, 1), got {}", self.drop_path_rate));
        }
        if !(self.layer_norm_eps > 0.0) || self.interpolation.offset < 0.0 {
            return bad("layer_norm_eps must be > 0 and interpolation.offset >= 0".into());
        }
        Ok(())
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
        let int = |k: &str, d: i64| v.get(k).and_then(|x| x.as_i64()).unwrap_or(d);
        let float = |k: &str, d: f64| v.get(k).and_then(|x| x.as_f64()).unwrap_or(d);
        let boolean = |k: &str, d: bool| v.get(k).and_then(|x| x.as_bool()).unwrap_or(d);
        let act = v.get("hidden_act").and_then(|x| x.as_str()).unwrap_or("gelu");
        let swiglu = boolean("use_swiglu_ffn", false);
        if !swiglu && act != "gelu" {
            return Err(Error::Config(format!("config.json: hidden_act '{act}' is not supported (expected 'gelu')")));
        }
        let cfg = VitConfig {
            embed_dim: int("hidden_size", 768),
            depth: int("num_hidden_layers", 12),
            num_heads: int("num_attention_heads", 12),
            mlp_ratio: float("mlp_ratio", 4.0),
            ffn: if swiglu { FfnKind::Swiglu } else { FfnKind::Mlp },
            patch_size: int("patch_size", 14),
            img_size: int("image_size", 518),
            in_chans: int("num_channels", 3),
            num_register_tokens: if with_registers { int("num_register_tokens", 4) } else { 0 },
            layerscale_init: Some(float("layerscale_value", 1.0)),
            layer_norm_eps: float("layer_norm_eps", 1e-6),
            qkv_bias: boolean("qkv_bias", true),
            proj_bias: true,
            ffn_bias: true,
            drop_path_rate: float("drop_path_rate", 0.0),
            drop_path_uniform: true,
            use_mask_token: if with_registers { true } else { boolean("use_mask_token", true) },
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
        let e = VitConfig::from_hf_config(r#"{"model_type":"vit"}"#).unwrap_err().to_string();
        assert!(e.contains("model_type"), "{e}");
        let e = VitConfig::from_hf_config(r#"{"model_type":"dinov2","hidden_size":100,"num_attention_heads":3}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not divisible"), "{e}");
    }
}

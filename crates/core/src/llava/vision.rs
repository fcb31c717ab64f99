//! The vision side of the LLaVA: cxformer's [`Vit`] as transformers' `Dinov2WithRegistersModel` /
//! `Dinov2Model` tower (`vision_tower.*` keys, `vision_config`), and the tokens it hands to the projector.
//!
//! **Feature** (transformers `LlavaModel.get_image_features`): `hidden_states[vision_feature_layer]` of the
//! tower, counted as transformers' Dinov2 returns them: hidden_states[0] = the embeddings (CLS, registers and
//! patches, position embeddings added), hidden_states[i] = the output of block i − 1, all **before** the final
//! LayerNorm (which only `last_hidden_state` gets); −1 = the last block's output, −2 (the default) the one
//! before. Several layers are concatenated along the features. Then `vision_feature_select_strategy`: "full"
//! keeps [CLS, registers, patches]; "default" drops token 0 only (`[:, 1:]`), so a DINOv2-with-registers tower
//! keeps its registers. Then cxformer's optional pooling: the patch grid (h, w) average-pooled in k×k windows
//! with stride k, partial windows at the right and bottom edges averaged over the tokens they hold (torch
//! `avg_pool2d(k, k, ceil_mode=True)`, the convention of [`crate::rrg::memory_tokens`]), CLS and registers kept.
//!
//! The tower always runs to its last block ([`Vit::forward`]); the blocks after the feature layer and the
//! final norm are computed and unused. It runs without gradients unless one of its variables requires them.
//!
//! **Keys**: the tower's variables keep cxformer's original DINOv2 names under `vision_tower.` (fused
//! `blocks.N.attn.qkv`); [`hf_keys`] gives the transformers key(s) of each (`embeddings.*`, `encoder.layer.N.*`,
//! `layernorm.*`; q/k/v split into row thirds), the same table as [`crate::weights`]' HF layout.
use super::config::{FeatureSelect, LlavaConfig};
use crate::config::{FfnKind, VitConfig};
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Vit};
use crate::rrg::memory::pool_patch_grid as pool_patches;
use serde_json::{Map, Value, json};
use tch::{Tensor, nn};

pub use crate::weights::hf_keys;

/// transformers' `vision_config` of a cxformer tower: `dinov2_with_registers` with registers, `dinov2` without,
/// the keys `Dinov2WithRegistersConfig.to_diff_dict()` writes (as in the golden LLaVA folder), floats as JSON
/// floats (transformers 5's strict configs refuse `1` for `layerscale_value`). Refused for a tower transformers'
/// Dinov2 cannot hold: no LayerScale, no bias on the attention output or the FFN, a fractional `mlp_ratio`.
pub fn vision_config_json(v: &VitConfig) -> Result<Value> {
    let refuse = |why: &str| Err(Error::Config(format!("this vision tower cannot be written as a transformers Dinov2 config: {why}")));
    let Some(ls) = v.layerscale_init else { return refuse("it has no LayerScale") };
    if !v.proj_bias || !v.ffn_bias {
        return refuse("its attention output or FFN has no bias");
    }
    if v.mlp_ratio.fract() != 0.0 {
        return refuse(&format!("transformers declares mlp_ratio an int, the tower has {}", v.mlp_ratio));
    }
    let reg = v.num_register_tokens > 0;
    let stages: Vec<String> = std::iter::once("stem".to_string()).chain((1..=v.depth).map(|i| format!("stage{i}"))).collect();
    let mut m = Map::new();
    m.insert("apply_layernorm".into(), json!(true));
    m.insert("attention_probs_dropout_prob".into(), json!(0.0));
    m.insert("drop_path_rate".into(), json!(v.drop_path_rate));
    m.insert("hidden_act".into(), json!("gelu"));
    m.insert("hidden_dropout_prob".into(), json!(0.0));
    m.insert("hidden_size".into(), json!(v.embed_dim));
    m.insert("image_size".into(), json!(v.img_size));
    m.insert("initializer_range".into(), json!(0.02));
    m.insert("layer_norm_eps".into(), json!(v.layer_norm_eps));
    m.insert("layerscale_value".into(), json!(ls));
    m.insert("mlp_ratio".into(), json!(v.mlp_ratio as i64));
    m.insert("model_type".into(), json!(if reg { "dinov2_with_registers" } else { "dinov2" }));
    m.insert("num_attention_heads".into(), json!(v.num_heads));
    m.insert("num_channels".into(), json!(v.in_chans));
    m.insert("num_hidden_layers".into(), json!(v.depth));
    if reg {
        m.insert("num_register_tokens".into(), json!(v.num_register_tokens));
    }
    m.insert("out_features".into(), json!([stages[stages.len() - 1]]));
    m.insert("out_indices".into(), json!([v.depth]));
    m.insert("patch_size".into(), json!(v.patch_size));
    m.insert("qkv_bias".into(), json!(v.qkv_bias));
    m.insert("reshape_hidden_states".into(), json!(true));
    m.insert("stage_names".into(), json!(stages));
    if !reg {
        m.insert("use_mask_token".into(), json!(v.use_mask_token));
    }
    m.insert("use_swiglu_ffn".into(), json!(v.ffn == FfnKind::Swiglu));
    Ok(Value::Object(m))
}

/// The selected (and pooled) tower tokens of `pixels` (see the module docs), in the tower's kind.
///
/// # Shapes
/// pixels: (N, C, H, W) normalised → (N, T, D_vit · layers), T = [`LlavaConfig::tokens_per_image`]
pub(crate) fn selected_features(vit: &Vit, cfg: &LlavaConfig, pixels: &Tensor, vs: &nn::VarStore) -> Result<Tensor> {
    let frozen = vs.variables().iter().filter(|(n, _)| n.starts_with(super::VISION_PREFIX)).all(|(_, t)| !t.requires_grad());
    let run = || -> Result<(Tensor, (i64, i64))> {
        let idx = cfg.feature_layer_indices();
        let blocks: Vec<i64> = idx.iter().filter(|&&i| i > 0).map(|&i| i - 1).collect();
        let out = vit.forward(pixels, &ForwardOptions { intermediate_layers: blocks.clone(), ..Default::default() })?;
        let embeddings = if idx.contains(&0) { Some(vit.prepare_tokens(pixels, None)?.0) } else { None };
        let mut picked = Vec::with_capacity(idx.len());
        for i in idx {
            if i == 0 {
                picked.push(embeddings.as_ref().expect("computed above").shallow_clone());
            } else {
                let j = blocks.iter().position(|&b| b == i - 1).expect("requested above");
                picked.push(out.intermediates[j].shallow_clone());
            }
        }
        let x = if picked.len() == 1 { picked.pop().expect("one") } else { Tensor::f_cat(&picked, -1)? };
        Ok((x, out.grid))
    };
    let (x, grid) = if frozen { tch::no_grad(run)? } else { run()? };
    let x = match cfg.options.select {
        FeatureSelect::Full => x,
        FeatureSelect::Default => x.f_narrow(1, 1, x.size()[1] - 1)?,
    };
    pool_patches(&x, grid, cfg.options.pool)
}

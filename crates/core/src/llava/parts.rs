//! [`LlavaModel::from_parts`]: a LLaVA built from its parts, as LLaVA's training scripts build one before stage
//! 1: a vision tower (a [`VitConfig`] with its weights, or drawn at its from-scratch init), a transformers causal
//! LM folder (loaded strictly) and a projector, the draws seeded.
//!
//! # The image token
//! LLaVA appends `<image>` to the LM's tokenizer, so its id is the tokenizer's size. Where the LM's embedding has
//! no spare row (`image_token_index` = `vocab_size`: GPT-2, Llama, the golden tiny LMs), the vocabulary grows by
//! one row ([`image_token_growth`]): the token embedding (`embed_tokens`, GPT-2's `wte`) and an untied
//! `lm_head` get a last row equal to the mean of their rows, and `vocab_size` becomes V + 1 in the LM config and
//! in the `text_config` written to config.json. transformers' `resize_token_embeddings(mean_resizing=True)` draws
//! the new rows from a normal distribution around that mean (with the rows' covariance); we take the mean itself,
//! which is deterministic. Where the embedding already holds the id (Qwen2.5 pads it beyond its tokenizer),
//! nothing grows. The image token's own embedding is never used (image features replace it), and its head row
//! only scores the token as an output.
use super::{LM_PREFIX, LlavaConfig, LlavaModel, LlavaOptions};
use crate::backbone::Backbone;
use crate::config::VitConfig;
use crate::error::{Error, Result};
use crate::lm::{self, Family, GenerationConfig, LanguageModel, LmConfig, LmLoadOptions, LmLoadReport};
use crate::weights::{LoadOptions, LoadReport, WeightFile};
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// The LM's vocabulary grown for the image token: `from` rows to `to` = `from` + 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct VocabGrowth {
    pub from: i64,
    pub to: i64,
}

/// What [`LlavaModel::from_parts`] did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FromPartsReport {
    /// The vocabulary grown for the image token (None: the id lies inside the LM's vocabulary).
    pub vocab_grown: Option<VocabGrowth>,
    /// The LM's strict load.
    pub lm: LmLoadReport,
    /// The tower's strict load (None: no weights; the tower is DINOv2's from-scratch init seeded with
    /// `projector_seed`, [`Backbone::random`]).
    pub vision: Option<LoadReport>,
    /// The seed of the projector's draws (and of the tower's without weights).
    pub projector_seed: u64,
}

/// Whether the LM's vocabulary of `vocab_size` rows must grow by one for `image_token_index`: false for an id
/// inside it, true for the next id (`vocab_size`); a Config error naming both numbers for any other id.
pub fn image_token_growth(image_token_index: i64, vocab_size: i64) -> Result<bool> {
    if (0..vocab_size).contains(&image_token_index) {
        return Ok(false);
    }
    if image_token_index == vocab_size {
        return Ok(true);
    }
    Err(Error::Config(format!(
        "image_token_index {image_token_index} does not fit the LM's vocab_size {vocab_size}: the image token must lie inside \
         the vocabulary [0, {vocab_size}) or be the next id {vocab_size} (an <image> token appended to a tokenizer of \
         {vocab_size} tokens, for which the vocabulary grows by one row)"
    )))
}

/// The names of the variables that hold a row per token among `vars` (a LLaVA's LM variables): the token
/// embedding and, unless tied, the head. Each must have `text.vocab_size` rows.
pub(super) fn vocab_rows(vars: &HashMap<String, Tensor>, text: &LmConfig) -> Result<Vec<String>> {
    let embed = match text.family {
        Family::Gpt2 => "wte.weight",
        _ => "embed_tokens.weight",
    };
    let mut names = vec![format!("{LM_PREFIX}{}.{embed}", LanguageModel::base_name(text.family))];
    if !text.tie_word_embeddings {
        names.push(format!("{LM_PREFIX}lm_head.weight"));
    }
    for n in &names {
        match vars.get(n).map(|t| t.size()) {
            Some(s) if s.first() == Some(&text.vocab_size) => {}
            s => return Err(Error::Config(format!("the LM variable {n} should have vocab_size {} rows, found {s:?}", text.vocab_size))),
        }
    }
    Ok(names)
}

/// Sets row `from` of each variable to the mean of its rows 0..`from` (computed in float64, stored in the
/// variable's kind).
pub(super) fn fill_mean_rows<'a>(vars: impl IntoIterator<Item = &'a Tensor>, from: i64) -> Result<()> {
    tch::no_grad(|| -> Result<()> {
        for w in vars {
            let mean = w.f_narrow(0, 0, from)?.f_to_kind(Kind::Double)?.f_mean_dim(Some([0i64].as_slice()), true, Kind::Double)?;
            w.f_narrow(0, from, 1)?.f_copy_(&mean.f_to_kind(w.kind())?)?;
        }
        Ok(())
    })
}

impl LlavaModel {
    /// A LLaVA of the tower `vision` and the causal LM folder `lm_dir` (config.json, optional
    /// generation_config.json, safetensors weights), joined by `options` (see the module docs for the image
    /// token): the LM loaded strictly ([`LlavaModel::load_language_model`]; its generation ids become the
    /// LLaVA's), the tower loaded strictly from `vision_weights` (any layout [`crate::weights`] reads) or, when
    /// None, drawn at DINOv2's from-scratch init ([`Backbone::random`]) from `projector_seed`, and the projector
    /// drawn from `projector_seed` ([`LlavaModel::init_projector`]): the same arguments give the same model (the
    /// same base on every rank of a process group).
    /// `load` gives the device, the variables' kind and whether non-finite weights are accepted (in both files).
    /// Nothing is returned unless every part loaded.
    ///
    /// Errors: Config for an image token id outside [0, vocab_size] (naming both numbers) or an unsupported LM;
    /// Weights (naming the file and the keys or shapes) when a weight file does not match its part.
    pub fn from_parts(
        vision: &VitConfig,
        vision_weights: Option<&Path>,
        lm_dir: &Path,
        options: LlavaOptions,
        load: &LmLoadOptions,
        projector_seed: u64,
    ) -> Result<(Self, FromPartsReport)> {
        let (mut text_config, text) = lm::config::read_config_file(&lm_dir.join(lm::CONFIG_FILE), |v| Ok((v.clone(), LmConfig::from_json(v)?)))?;
        let grow = image_token_growth(options.image_token_index, text.vocab_size)?;
        if grow {
            let o = text_config.as_object_mut().expect("LmConfig::from_json accepted it: an object");
            o.insert("vocab_size".into(), json!(text.vocab_size + 1));
        }
        let cfg = LlavaConfig::new(vision, &text_config, options)?;
        let mut model = LlavaModel::new(&cfg, GenerationConfig::default(), load.device, load.kind)?;
        let lm = model.load_language_model(lm_dir, load.allow_non_finite)?;
        let vision = match vision_weights {
            None => {
                model.set_vision(&Backbone::random(vision, load.device, projector_seed as i64)?.vs)?;
                None
            }
            Some(p) => Some(model.load_vision_with(&WeightFile::open(p)?, LoadOptions { allow_non_finite: load.allow_non_finite })?),
        };
        model.init_projector(projector_seed)?;
        let vocab_grown = grow.then_some(VocabGrowth { from: text.vocab_size, to: text.vocab_size + 1 });
        Ok((model, FromPartsReport { vocab_grown, lm, vision, projector_seed }))
    }
}


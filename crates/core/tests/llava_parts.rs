//! `LlavaModel::from_parts` (crates/core/src/llava/parts.rs): the golden tiny ViT of cxformer (vit_tiny_hf: 56 px,
//! patch 14, 2 registers, D 96) or a from-scratch tower, joined to the golden tiny LMs of fixtures/golden/lm
//! (vocab 500 = their tokenizer's size) with the image token 500. The vocabulary grows 500 → 501 with the mean
//! row in the embedding and in an untied head, and the LM computes what it computes alone on text; an id inside
//! the vocabulary grows nothing; any other id is refused naming both numbers; without tower weights the seed
//! gives the whole model; a tower file of another width is refused naming both shapes; the built model's export
//! reloads with the same logits; a pooled model with a deeper projector is refused for transformers and saved with
//! cxformer's config keys, reloading with the same logits.
mod common;

use common::{golden_dir, lcg_values, max_abs_diff, tiny_config, tiny_weights, tmpdir};
use cxformer_core::llava::{LlavaModel, LlavaOptions, SaveOptions, VocabGrowth};
use cxformer_core::lm::{CausalLm, LmLoadOptions};
use cxformer_core::model::sorted_vars;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

const IMAGE: i64 = 500;
const V: i64 = 500;

fn lm_dir(name: &str) -> PathBuf {
    golden_dir().join("lm").join(name)
}

fn build(lm: &str, image_token: i64, weights: bool) -> cxformer_core::Result<(LlavaModel, cxformer_core::llava::FromPartsReport)> {
    let w = tiny_weights();
    LlavaModel::from_parts(&tiny_config(), weights.then_some(w.as_path()), &lm_dir(lm), LlavaOptions::new(image_token), &LmLoadOptions::default(), 3)
}

fn var(m: &LlavaModel, name: &str) -> Tensor {
    m.vs.variables().remove(name).unwrap_or_else(|| panic!("no variable {name}")).detach()
}

/// The mean of a matrix's rows as float32 (computed in float64).
fn mean_row(w: &Tensor) -> Tensor {
    w.to_kind(Kind::Double).mean_dim(Some([0i64].as_slice()), true, Kind::Double).to_kind(Kind::Float)
}

/// Two text-only prompts, the second left-padded.
fn text_prompt() -> (Tensor, Tensor) {
    let ids = Tensor::from_slice(&[11i64, 57, 93, 200, 7, 1, 1, 42, 300, 499]).view([2, 5]);
    let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 0, 0, 1, 1, 1]).view([2, 5]);
    (ids, mask)
}

/// The grown LLaVA of `lm` against the LM loaded alone: vocabulary, the grown rows (embedding and, with
/// `head`, an untied head) and the text-only logits over the first 500 ids.
fn check_grown(lm: &str, embed: &str, head: Option<&str>) {
    let (m, report) = build(lm, IMAGE, true).unwrap();
    let (alone, _) = CausalLm::load(&lm_dir(lm), &LmLoadOptions::default()).unwrap();
    assert_eq!(report.vocab_grown, Some(VocabGrowth { from: V, to: V + 1 }), "{lm}");
    assert_eq!(m.config().text.vocab_size, V + 1, "{lm}");
    assert_eq!(m.config().text_config["vocab_size"], Value::from(V + 1), "{lm}: text_config written to config.json");
    assert_eq!(m.config().to_hf_json("float32").unwrap()["text_config"]["vocab_size"], Value::from(V + 1), "{lm}");
    assert!(report.vision.as_ref().is_some_and(|r| r.loaded > 0) && report.lm.loaded > 0, "{lm}: {report:?}");
    assert_eq!(m.generation, alone.generation, "{lm}: the LM's generation ids");
    let alone_vars = alone.vs.variables();
    for (name, alone_name) in std::iter::once((embed, embed)).chain(head.map(|h| (h, "lm_head.weight"))) {
        let w = var(&m, &format!("language_model.{name}"));
        let old = alone_vars[alone_name].detach();
        assert_eq!(w.size()[0], V + 1, "{lm}: {name}");
        assert_eq!(w.narrow(0, 0, V), old, "{lm}: {name}: the first {V} rows are the LM's");
        let d = max_abs_diff(&w.narrow(0, V, 1), &mean_row(&old));
        assert!(d < 1e-7, "{lm}: {name}: the new row is the mean of the old rows (max diff {d:e})");
    }
    let (ids, mask) = text_prompt();
    let got = m.language_model().forward(&ids, Some(&mask), None, None).unwrap();
    assert_eq!(got.size()[2], V + 1);
    let want = alone.forward(&ids, Some(&mask), None, None).unwrap();
    // Padding positions are implementation-defined: compare the real ones.
    let real = mask.ne(0).unsqueeze(-1);
    let d = max_abs_diff(&got.narrow(2, 0, V).masked_fill(&real.logical_not(), 0.0), &want.masked_fill(&real.logical_not(), 0.0));
    assert!(d < 1e-5, "{lm}: text logits over the first {V} ids differ from the LM alone by {d:e}");
}

#[test]
fn qwen2_vocab_grows_with_the_mean_row_and_text_logits_are_the_lm_s() {
    check_grown("qwen2", "model.embed_tokens.weight", None);
}

#[test]
fn an_untied_head_grows_its_mean_row_too() {
    check_grown("llama", "model.embed_tokens.weight", Some("lm_head.weight"));
    check_grown("gpt2", "transformer.wte.weight", None);
}

#[test]
fn an_image_token_inside_the_vocabulary_grows_nothing_and_others_are_refused() {
    let (m, report) = build("qwen2", V - 1, false).unwrap();
    assert_eq!(report.vocab_grown, None);
    assert!(report.vision.is_none(), "no tower weights: from-scratch init");
    assert_eq!(m.config().text.vocab_size, V);
    assert_eq!(var(&m, "language_model.model.embed_tokens.weight").size()[0], V);
    for bad in [V + 2, -1] {
        let e = build("qwen2", bad, true).unwrap_err().to_string();
        assert!(e.contains(&format!("image_token_index {bad}")) && e.contains(&format!("vocab_size {V}")), "{e}");
    }
}

#[test]
fn without_tower_weights_the_seed_gives_the_whole_model() {
    let values = |seed: u64| -> BTreeMap<String, Tensor> {
        let m = LlavaModel::from_parts(&tiny_config(), None, &lm_dir("qwen2"), LlavaOptions::new(IMAGE), &LmLoadOptions::default(), seed).unwrap().0;
        sorted_vars(&m.vs).into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
    };
    let (a, b, c) = (values(4), values(4), values(5));
    assert_eq!(a, b, "the same seed: the same tower and projector");
    for part in ["vision_tower.", "multi_modal_projector."] {
        assert!(a.iter().filter(|(n, _)| n.starts_with(part)).any(|(n, t)| *t != c[n]), "another seed draws another {part}");
    }
    assert!(a.iter().filter(|(n, _)| n.starts_with("language_model.")).all(|(n, t)| *t == c[n]), "the LM is the folder's");
}

#[test]
fn a_tower_file_of_another_width_is_refused_naming_both_shapes() {
    let mut narrow = tiny_config();
    narrow.embed_dim = 48;
    let w = tiny_weights();
    let e = LlavaModel::from_parts(&narrow, Some(&w), &lm_dir("qwen2"), LlavaOptions::new(IMAGE), &LmLoadOptions::default(), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("model.safetensors") && e.contains("shape mismatch") && e.contains("file [1, 1, 96], model [1, 1, 48]"), "{e}");
}

#[test]
fn the_built_model_s_export_reloads_with_identical_logits() {
    let (m, _) = build("qwen2", IMAGE, false).unwrap();
    let px = Tensor::from_slice(&lcg_values(3 * 56 * 56, 5)).view([1, 3, 56, 56]);
    let ids = Tensor::from_slice(&[11i64, 57, IMAGE, 93, 200]).view([1, 5]);
    let want = m.forward(&px, &ids, None).unwrap();
    assert_eq!(want.size(), [1, 5 - 1 + m.config().tokens_per_image(56, 56), V + 1]);
    let dir = tmpdir("llava-parts-export");
    m.save_hf(&dir, &SaveOptions { tokenizer_from: Some(lm_dir("qwen2")), ..Default::default() }).unwrap();
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["image_token_index"].as_i64(), cfg["text_config"]["vocab_size"].as_i64()), (Some(IMAGE), Some(V + 1)));
    let (back, _) = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap();
    assert_eq!(back.generation, m.generation);
    assert_eq!(back.forward(&px, &ids, None).unwrap(), want, "reloaded export: logits differ");
    assert_eq!(back.device(), Device::Cpu);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pooling_and_deeper_projectors_save_with_cxformer_keys_and_reload_but_not_for_transformers() {
    let mut o = LlavaOptions::new(IMAGE);
    o.pool = 2;
    o.projector = cxformer_core::llava::ProjectorKind::parse("mlp3x_gelu").unwrap();
    let w = tiny_weights();
    let (m, _) = LlavaModel::from_parts(&tiny_config(), Some(&w), &lm_dir("qwen2"), o, &LmLoadOptions::default(), 4).unwrap();
    let px = Tensor::from_slice(&lcg_values(3 * 56 * 56, 6)).view([1, 3, 56, 56]);
    let ids = Tensor::from_slice(&[11i64, IMAGE, 93]).view([1, 3]);
    let want = m.forward(&px, &ids, None).unwrap();
    // 56 px, patch 14: a 4×4 grid pooled 2×2 → 4 patch tokens + 2 registers (strategy "default": no CLS).
    assert_eq!(m.config().tokens_per_image(56, 56), 6);
    let dir = tmpdir("llava-parts-cxformer-keys");
    let refused = m.save_hf(&dir, &SaveOptions::default()).unwrap_err().to_string();
    assert!(refused.contains("cannot be exported for transformers") && refused.contains("patch pooling 2×2"), "{refused}");
    m.save_hf(&dir, &SaveOptions { cxformer_extensions: true, ..Default::default() }).unwrap();
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["cxformer_patch_pool"].as_i64(), cfg["cxformer_projector"].as_str()), (Some(2), Some("mlp3x_gelu")));
    let (back, _) = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap();
    assert_eq!((back.config().options.pool, back.config().options.projector.depth), (2, 3));
    assert_eq!(back.forward(&px, &ids, None).unwrap(), want, "reloaded cxformer-keyed folder: logits differ");
    let _ = std::fs::remove_dir_all(dir);
}

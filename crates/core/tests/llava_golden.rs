//! The LLaVA of `cxformer_core::llava` against the transformers 4.57 golden of fixtures/golden/lm/llava
//! (README `lm/`, manifest.json → models.llava): `LlavaForConditionalGeneration` with a Dinov2WithRegisters tower
//! (56 px, patch 14, 2 registers, 2 blocks, D 96), an `mlp2x_gelu` projector (96 → 64 → 64) and a tiny Qwen2
//! (d 64, tied embeddings, vocab 501), `vision_feature_layer` −2, strategy "full", image token 500; BF16 on disk,
//! loaded as float32. One prompt "Findings:<image>×19 The heart" (28 ids, already expanded), 12 new tokens.
mod common;

use common::{golden_dir, lcg_values, max_abs_diff, tmpdir};
use cxformer_core::llava::{
    FeatureSelect, IGNORE_INDEX, KeyLayout, LlavaConfig, LlavaModel, LlavaOptions, Lora, LoraConfig, SaveOptions, Stage, causal_lm_loss,
    report_labels, vision,
};
use cxformer_core::lm::{GenerateOptions, GenerationConfig, LmLoadOptions};
use cxformer_core::model::{Vit, sorted_vars};
use cxformer_core::train::optim::{AdamW, ParamGroup};
use cxformer_core::weights::{SaveLayout, WeightFile, save_backbone, write_safetensors};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor, nn};

const TOL: f64 = 1e-4;
const IMAGE: i64 = 500;
const PER_IMAGE: i64 = 19;

fn folder() -> PathBuf {
    golden_dir().join("lm/llava")
}

fn expected(key: &str) -> Tensor {
    common::golden("lm/llava.expected.safetensors", key)
}

fn load(dir: &Path) -> LlavaModel {
    LlavaModel::load(dir, &LmLoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).0
}

fn golden_model() -> LlavaModel {
    load(&folder())
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The golden prompt with its 19 image tokens collapsed into one.
fn collapsed_ids() -> Tensor {
    let ids: Vec<i64> = Vec::try_from(&expected("input_ids").view([-1])).unwrap();
    let first = ids.iter().position(|&x| x == IMAGE).unwrap();
    let mut out: Vec<i64> = ids[..first].to_vec();
    out.push(IMAGE);
    out.extend(ids[first + PER_IMAGE as usize..].iter().copied());
    Tensor::from_slice(&out).view([1, -1])
}

/// A copy of the golden folder with config.json edited.
fn with_config(tag: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dir = tmpdir(&format!("llava-{tag}"));
    let mut cfg = read_json(&folder().join("config.json"));
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    std::fs::copy(folder().join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    std::fs::copy(folder().join("generation_config.json"), dir.join("generation_config.json")).unwrap();
    dir
}

fn all_values(vs: &nn::VarStore) -> BTreeMap<String, Tensor> {
    sorted_vars(vs).into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

#[test]
fn features_image_features_and_logits_match_transformers() {
    let (m, report) = LlavaModel::load(&folder(), &LmLoadOptions::default()).unwrap();
    assert_eq!(report.layout, KeyLayout::Legacy, "the golden holds transformers 4.57's saved (legacy) names");
    assert_eq!(report.weights.source_dtypes, vec!["BF16".to_string()]);
    assert_eq!(m.config().options.select, FeatureSelect::Full);
    assert_eq!(m.config().tokens_per_image(56, 56), PER_IMAGE);
    let px = expected("pixel_values");
    // hidden_states[-2] = the output of block 0 of 2, before the final LayerNorm: all 19 tokens.
    let d = max_abs_diff(&m.vision_features(&px).unwrap(), &expected("vision_selected_features"));
    assert!(d <= TOL, "vision_selected_features differ from transformers by {d:.2e}");
    let d = max_abs_diff(&m.image_features(&px).unwrap(), &expected("image_features"));
    assert!(d <= TOL, "image_features differ from transformers by {d:.2e}");
    let logits = m.forward(&px, &expected("input_ids"), Some(&expected("attention_mask"))).unwrap();
    let d = max_abs_diff(&logits, &expected("logits"));
    assert!(d <= TOL, "logits differ from transformers by {d:.2e}");
}

#[test]
fn greedy_beam_and_kv_cache_match_transformers_generate() {
    let m = golden_model();
    let (px, ids, mask) = (expected("pixel_values"), expected("input_ids"), expected("attention_mask"));
    let g = GenerateOptions::greedy(12, &m.generation);
    assert_eq!((g.eos_token_ids.as_slice(), g.pad_token_id), (&[0i64][..], 1));
    let out = m.generate(&px, &ids, Some(&mask), &g, |_, _| true).unwrap();
    assert_eq!(out.sequences, expected("greedy_ids"), "greedy ids");
    let out = m.generate(&px, &ids, Some(&mask), &GenerateOptions::beam(3, 12, &m.generation), |_, _| true).unwrap();
    assert_eq!(out.sequences, expected("beam_ids"), "beam ids");
    let want = f64::try_from(&expected("beam_sequence_scores").get(0)).unwrap();
    assert!((out.scores[0] - want).abs() <= TOL, "beam score {} vs transformers {want}", out.scores[0]);
    // Prompt embeddings into a cache, then the argmax token alone.
    let lm = m.language_model();
    let (embeds, inputs) = m.inputs_embeds(&px, &ids, Some(&mask), None).unwrap();
    let p = ids.size()[1];
    let mut cache = lm.new_cache(1, p + 1).unwrap();
    let step1 = lm.forward_embeds(&embeds, Some(&inputs.attention_mask), None, Some(&mut cache)).unwrap();
    let t1 = step1.select(1, p - 1).argmax(-1, true);
    assert_eq!(t1, expected("kv_step2_input_ids"));
    let mask2 = Tensor::cat(&[&mask, &Tensor::ones([1, 1], (Kind::Int64, Device::Cpu))], 1);
    let step2 = lm.forward(&t1, Some(&mask2), None, Some(&mut cache)).unwrap().select(1, 0);
    let d = max_abs_diff(&step2, &expected("kv_step2_logits"));
    assert!(d <= TOL, "KV step-2 logits differ from transformers by {d:.2e}");
}

#[test]
fn one_image_token_per_image_is_expanded_and_batches_are_left_padded() {
    let m = golden_model();
    let px = expected("pixel_values");
    let short = collapsed_ids();
    assert_eq!(short.size(), [1, 10]);
    let logits = m.forward(&px, &short, None).unwrap();
    assert_eq!(logits, m.forward(&px, &expected("input_ids"), None).unwrap(), "expanded here = expanded by the processor");
    // Two rows of different lengths, one image each (the second image mirrored): left padding, images in order.
    let other = Tensor::from_slice(&[39i64, IMAGE, 222, 284]).view([1, -1]);
    let px2 = px.flip([3]);
    let pad = Tensor::ones([1, 6], (Kind::Int64, Device::Cpu));
    let batch_ids = Tensor::cat(&[short.shallow_clone(), Tensor::cat(&[&pad, &other], 1)], 0);
    let batch_mask = Tensor::cat(&[Tensor::ones([1, 10], (Kind::Int64, Device::Cpu)), Tensor::cat(&[pad.zeros_like(), other.ones_like()], 1)], 0);
    let (_, inputs) = m.inputs_embeds(&Tensor::cat(&[&px, &px2], 0), &batch_ids, Some(&batch_mask), None).unwrap();
    assert!(inputs.expanded);
    assert_eq!(inputs.input_ids.size(), [2, 28]);
    assert_eq!(i64::try_from(inputs.attention_mask.get(1).sum(Kind::Int64)).unwrap(), 3 + PER_IMAGE);
    let both = m.forward(&Tensor::cat(&[&px, &px2], 0), &batch_ids, Some(&batch_mask)).unwrap();
    let alone = m.forward(&px2, &other, None).unwrap();
    let d0 = max_abs_diff(&both.get(0), &logits.get(0));
    let d1 = max_abs_diff(&both.get(1).narrow(0, 28 - 22, 22), &alone.get(0));
    assert!(d0 <= TOL && d1 <= TOL, "a left-padded batch differs from its rows alone: {d0:.2e}, {d1:.2e}");
}

#[test]
fn a_prompt_with_the_wrong_number_of_image_tokens_is_refused_with_both_counts() {
    let m = golden_model();
    let ids = Tensor::from_slice(&[39i64, IMAGE, IMAGE, IMAGE, IMAGE, IMAGE, 222]).view([1, -1]);
    let e = m.forward(&expected("pixel_values"), &ids, None).unwrap_err().to_string();
    assert!(e.contains("5 image token(s)") && e.contains("expected 1") && e.contains("or 19"), "{e}");
}

#[test]
fn export_reloads_with_identical_logits_and_the_golden_layout() {
    let m = golden_model();
    let (px, ids) = (expected("pixel_values"), expected("input_ids"));
    let want = m.forward(&px, &ids, None).unwrap();
    let dir = tmpdir("llava-export");
    m.save_hf(&dir, &SaveOptions { tokenizer_from: Some(folder()), ..Default::default() }).unwrap();
    // Same files, keys and config fields as transformers' save_pretrained of the golden.
    for f in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"] {
        assert!(dir.join(f).exists(), "{f} written");
    }
    let (got, gold) = (read_json(&dir.join("config.json")), read_json(&folder().join("config.json")));
    assert_eq!(keys(&got), keys(&gold), "config.json keys");
    for sub in ["vision_config", "text_config"] {
        assert_eq!(got[sub], gold[sub], "{sub}");
    }
    for k in ["image_seq_length", "image_token_index", "model_type", "projector_hidden_act", "vision_feature_layer", "vision_feature_select_strategy", "multimodal_projector_bias", "architectures"] {
        assert_eq!(got[k], gold[k], "config.json {k}");
    }
    assert_eq!(got["dtype"], "float32");
    assert_eq!(keys(&read_json(&dir.join("generation_config.json"))), keys(&read_json(&folder().join("generation_config.json"))));
    let names = WeightFile::open(dir.join("model.safetensors")).unwrap().names();
    assert_eq!(names, WeightFile::open(folder().join("model.safetensors")).unwrap().names(), "tensor names");
    assert_eq!(WeightFile::open(dir.join("model.safetensors")).unwrap().metadata().get("format").map(String::as_str), Some("pt"));
    let (back, report) = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap();
    assert_eq!(report.layout, KeyLayout::Legacy);
    assert_eq!(back.forward(&px, &ids, None).unwrap(), want, "reloaded export: logits differ");
    // transformers 4.57's module names load too and give the same logits.
    let nested = tmpdir("llava-export-nested");
    m.save_hf(&nested, &SaveOptions { layout: KeyLayout::Nested, ..Default::default() }).unwrap();
    let names = WeightFile::open(nested.join("model.safetensors")).unwrap().names();
    assert!(names.iter().all(|n| n.starts_with("model.vision_tower.") || n.starts_with("model.multi_modal_projector.") || n.starts_with("model.language_model.")), "{names:?}");
    let (back, report) = LlavaModel::load(&nested, &LmLoadOptions::default()).unwrap();
    assert_eq!(report.layout, KeyLayout::Nested);
    assert_eq!(back.forward(&px, &ids, None).unwrap(), want, "reloaded nested export: logits differ");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(nested);
}

#[test]
fn a_llava_built_from_a_tower_and_an_lm_folder_equals_the_golden() {
    let gold = golden_model();
    let cfg_json = read_json(&folder().join("config.json"));
    let text = cfg_json["text_config"].clone();
    // A standalone tower file (HF Dinov2 names) and an LM folder, cut out of the golden checkpoint.
    let all = WeightFile::open(folder().join("model.safetensors")).unwrap().tensors().unwrap();
    let dir = tmpdir("llava-parts");
    let tower: BTreeMap<String, Tensor> = all.iter().filter_map(|(k, t)| k.strip_prefix("vision_tower.").map(|r| (r.to_string(), t.shallow_clone()))).collect();
    write_safetensors(&dir.join("tower.safetensors"), &tower, HashMap::new()).unwrap();
    let lm_dir = dir.join("lm");
    std::fs::create_dir_all(&lm_dir).unwrap();
    let lm: BTreeMap<String, Tensor> = all.iter().filter_map(|(k, t)| k.strip_prefix("language_model.").map(|r| (r.to_string(), t.shallow_clone()))).collect();
    write_safetensors(&lm_dir.join("model.safetensors"), &lm, HashMap::new()).unwrap();
    std::fs::write(lm_dir.join("config.json"), serde_json::to_string(&text).unwrap()).unwrap();
    std::fs::copy(folder().join("generation_config.json"), lm_dir.join("generation_config.json")).unwrap();

    let vision_cfg = cxformer_core::VitConfig::from_hf_config(&cfg_json["vision_config"].to_string()).unwrap();
    let opts = LlavaOptions { select: FeatureSelect::Full, ..LlavaOptions::new(IMAGE) };
    let cfg = LlavaConfig::new(&vision_cfg, &text, opts).unwrap();
    // The vision_config written for the tower is the golden's, key for key and value for value.
    let written = cfg.to_hf_json("bfloat16").unwrap();
    assert_eq!(written["vision_config"], cfg_json["vision_config"]);
    assert_eq!(keys(&written), keys(&cfg_json));
    let mut m = LlavaModel::new(&cfg, GenerationConfig::default(), Device::Cpu, Kind::Float).unwrap();
    m.load_vision(&WeightFile::open(dir.join("tower.safetensors")).unwrap()).unwrap();
    m.load_language_model(&lm_dir, false).unwrap();
    assert_eq!(m.generation, gold.generation);
    m.init_projector(7).unwrap();
    let projector_values = |m: &LlavaModel| -> Vec<Tensor> {
        sorted_vars(&m.vs).into_iter().filter(|(n, _)| n.starts_with("multi_modal_projector.")).map(|(_, t)| t).collect()
    };
    let bound = 1.0 / 96f64.sqrt();
    let w1 = &projector_values(&m)[1];
    assert!(w1.abs().max().double_value(&[]) <= bound && w1.abs().max().double_value(&[]) > 0.5 * bound, "nn.Linear init bound");
    tch::no_grad(|| {
        for (mut dst, src) in projector_values(&m).into_iter().zip(projector_values(&gold)) {
            dst.copy_(&src);
        }
    });
    let (px, ids) = (expected("pixel_values"), expected("input_ids"));
    assert_eq!(m.forward(&px, &ids, None).unwrap(), gold.forward(&px, &ids, None).unwrap());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn strategy_default_drops_only_cls_and_pooling_averages_the_patch_grid() {
    let px = expected("pixel_values");
    let full = expected("vision_selected_features");
    let dir = with_config("default", |c| c["vision_feature_select_strategy"] = "default".into());
    let m = load(&dir);
    assert_eq!(m.config().tokens_per_image(56, 56), 18);
    let d = max_abs_diff(&m.vision_features(&px).unwrap(), &full.narrow(1, 1, 18));
    assert!(d <= TOL, "\"default\" = every token but CLS (registers kept): {d:.2e}");
    let _ = std::fs::remove_dir_all(dir);
    // Pooling 2×2 of the 4×4 grid: CLS and 2 registers, then 4 window means.
    let gold = golden_model();
    let mut cfg = gold.config().clone();
    cfg.options.pool = 2;
    let mut m = LlavaModel::new(&cfg, gold.generation.clone(), Device::Cpu, Kind::Float).unwrap();
    m.vs.copy(&gold.vs).unwrap();
    let f = m.vision_features(&px).unwrap();
    assert_eq!(f.size(), [1, 7, 96]);
    let want_lead = gold.vision_features(&px).unwrap().narrow(1, 0, 3);
    assert_eq!(f.narrow(1, 0, 3), want_lead);
    let grid = gold.vision_features(&px).unwrap().narrow(1, 3, 16).view([4, 4, 96]);
    let w00 = (grid.get(0).get(0) + grid.get(0).get(1) + grid.get(1).get(0) + grid.get(1).get(1)) / 4.0;
    assert!(max_abs_diff(&f.get(0).get(3), &w00) <= 1e-6);
    // The prompt must now carry 7 tokens per image (or one).
    let e = m.forward(&px, &expected("input_ids"), None).unwrap_err().to_string();
    assert!(e.contains("19 image token(s)") && e.contains("or 7"), "{e}");
    assert_eq!(m.forward(&px, &collapsed_ids(), None).unwrap().size(), [1, 16, 501]);
    let e = m.save_hf(&tmpdir("llava-pooled"), &SaveOptions::default()).unwrap_err().to_string();
    assert!(e.contains("pooling"), "{e}");
}

#[test]
fn the_loss_is_shifted_and_counts_report_tokens_only() {
    let m = golden_model();
    let (px, ids) = (expected("pixel_values"), expected("input_ids"));
    let t = ids.size()[1];
    // " The heart" = the last 3 ids are the report.
    let target = Tensor::cat(&[Tensor::zeros([1, t - 3], (Kind::Int64, Device::Cpu)), Tensor::ones([1, 3], (Kind::Int64, Device::Cpu))], 1);
    let labels = report_labels(&ids, &target).unwrap();
    assert_eq!(i64::try_from(labels.ne(IGNORE_INDEX).sum(Kind::Int64)).unwrap(), 3);
    let logits = expected("logits");
    let (loss, n) = causal_lm_loss(&logits, &labels).unwrap();
    assert_eq!(n, 3);
    let lp = logits.get(0).log_softmax(-1, Kind::Double);
    let manual: f64 = (t - 3..t).map(|j| -lp.get(j - 1).double_value(&[ids.int64_value(&[0, j])])).sum::<f64>() / 3.0;
    assert!((loss.double_value(&[]) - manual).abs() < 1e-5, "{} vs {manual}", loss.double_value(&[]));
    // Logits that predict ignored labels do not matter.
    let noisy = logits.copy();
    let _ = noisy.narrow(1, 0, t - 4).fill_(3.0);
    assert_eq!(causal_lm_loss(&noisy, &labels).unwrap().0, loss);
    // Through the model, with the image tokens expanded here (their labels −100).
    let short = collapsed_ids();
    let short_labels = report_labels(&short, &Tensor::cat(&[Tensor::zeros([1, 7], (Kind::Int64, Device::Cpu)), Tensor::ones([1, 3], (Kind::Int64, Device::Cpu))], 1)).unwrap();
    let (l2, n2) = m.loss(&px, &short, None, &short_labels).unwrap();
    let (l1, _) = m.loss(&px, &ids, None, &labels).unwrap();
    assert_eq!(n2, 3);
    assert!((l2.double_value(&[]) - l1.double_value(&[])).abs() < 1e-6);
    assert!((l1.double_value(&[]) - manual).abs() < TOL);
}

#[test]
fn the_loss_on_target_positions_equals_the_full_logits_loss_and_its_gradients() {
    let m = golden_model();
    let px = Tensor::cat(&[expected("pixel_values"), expected("pixel_values").flip([3])], 0);
    // Two rows of the collapsed prompt; row 1 left-padded by two positions; the reports are the last ids.
    let short = collapsed_ids();
    let t = short.size()[1];
    let row1 = Tensor::cat(&[Tensor::from_slice(&[1i64, 1]), short.get(0).narrow(0, 0, t - 2)], 0).view([1, t]);
    let ids = Tensor::cat(&[short.shallow_clone(), row1], 0);
    let mask = Tensor::cat(&[Tensor::ones([1, t], (Kind::Int64, Device::Cpu)), Tensor::cat(&[Tensor::zeros([1, 2], (Kind::Int64, Device::Cpu)), Tensor::ones([1, t - 2], (Kind::Int64, Device::Cpu))], 1)], 0);
    let target = Tensor::cat(&[Tensor::zeros([2, t - 3], (Kind::Int64, Device::Cpu)), Tensor::ones([2, 3], (Kind::Int64, Device::Cpu))], 1);
    let labels = report_labels(&ids, &target).unwrap();
    let grads = |f: &dyn Fn() -> Tensor| -> (f64, Vec<Tensor>) {
        let params: Vec<Tensor> = sorted_vars(&m.vs).into_iter().filter(|(n, _)| n.starts_with("multi_modal_projector.")).map(|(_, t)| t).collect();
        for p in &params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let loss = f();
        loss.backward();
        (loss.double_value(&[]), params.iter().map(|p| p.grad().copy()).collect())
    };
    let (full, g_full) = grads(&|| {
        let (embeds, inputs) = m.inputs_embeds(&px, &ids, Some(&mask), Some(&labels)).unwrap();
        let logits = m.language_model().forward_embeds(&embeds, Some(&inputs.attention_mask), None, None).unwrap();
        causal_lm_loss(&logits, inputs.labels.as_ref().unwrap()).unwrap().0
    });
    let (selected, g_sel) = grads(&|| m.loss(&px, &ids, Some(&mask), &labels).unwrap().0);
    assert!((full - selected).abs() < 1e-6, "{full} vs {selected}");
    for (a, b) in g_full.iter().zip(&g_sel) {
        assert!(max_abs_diff(a, b) < 1e-6, "gradients differ by {}", max_abs_diff(a, b));
    }
    // No target at all: a zero loss that still back-propagates.
    let (zero, n) = m.loss(&px, &ids, Some(&mask), &labels.full_like(IGNORE_INDEX)).unwrap();
    assert_eq!((zero.double_value(&[]), n), (0.0, 0));
    zero.backward();
}

#[test]
fn the_align_stage_changes_only_the_projector() {
    let mut m = golden_model();
    let trainable = m.set_stage(Stage::Align).unwrap();
    let names: Vec<&str> = trainable.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["multi_modal_projector.linear_1.bias", "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_2.bias", "multi_modal_projector.linear_2.weight"]);
    let before = all_values(&m.vs);
    let params = trainable.iter().map(|(n, t)| (n.clone(), t.shallow_clone(), ParamGroup { lr_mult: 1.0, wd_mult: 1.0, is_last_layer: false })).collect();
    let mut opt = AdamW::new(params, 0.9, 0.999, 1e-8);
    let (px, ids) = (expected("pixel_values"), expected("input_ids"));
    let t = ids.size()[1];
    let target = Tensor::cat(&[Tensor::zeros([1, t - 3], (Kind::Int64, Device::Cpu)), Tensor::ones([1, 3], (Kind::Int64, Device::Cpu))], 1);
    let labels = report_labels(&ids, &target).unwrap();
    let mut losses = Vec::new();
    for _ in 0..4 {
        let (loss, _) = m.loss(&px, &ids, None, &labels).unwrap();
        losses.push(loss.double_value(&[]));
        loss.backward();
        for (n, v) in sorted_vars(&m.vs) {
            if !n.starts_with("multi_modal_projector.") {
                assert!(!v.grad().defined(), "{n} got a gradient");
            }
        }
        opt.update(1e-2, 0.0, 0.01).unwrap();
    }
    assert!(losses[3] < losses[0], "the loss should fall: {losses:?}");
    for (n, v) in all_values(&m.vs) {
        if n.starts_with("multi_modal_projector.") {
            assert!(!v.equal(&before[&n]), "{n} did not change");
        } else {
            assert!(v.equal(&before[&n]), "{n} changed in the align stage");
        }
    }
}

/// Fills every LoRA B with small deterministic values (so that the adapters do something).
fn randomize_b(m: &LlavaModel) {
    tch::no_grad(|| {
        for (i, lm) in m.lora().unwrap().modules().iter().enumerate() {
            let vals = lcg_values(lm.b.numel() as i64, 11 + i as u64);
            let _ = lm.b.shallow_clone().copy_(&(Tensor::from_slice(&vals).view(lm.b.size().as_slice()) * 0.1));
        }
    });
}

#[test]
fn lora_zero_b_is_the_base_model_and_merged_equals_unmerged() {
    let mut m = golden_model();
    let (px, ids) = (expected("pixel_values"), expected("input_ids"));
    let base = m.forward(&px, &ids, None).unwrap();
    m.attach_lora(&LoraConfig { dropout: 0.05, ..LoraConfig::new(4, 8.0) }).unwrap();
    assert_eq!(m.lora().unwrap().modules().len(), 2 * 7, "q/k/v/o + gate/up/down in 2 layers");
    assert!(base.equal(&m.forward(&px, &ids, None).unwrap()), "B = 0: the base model's logits exactly");
    randomize_b(&m);
    let unmerged = m.forward(&px, &ids, None).unwrap();
    assert!(max_abs_diff(&unmerged, &base) > 1e-3, "the adapters should change the logits");
    // Dropout only in training mode.
    m.set_train(true);
    assert!(!m.forward(&px, &ids, None).unwrap().equal(&unmerged));
    m.set_train(false);
    assert!(m.forward(&px, &ids, None).unwrap().equal(&unmerged));
    let trainable = m.set_stage(Stage::FinetuneLora).unwrap();
    assert_eq!(trainable.len(), 4 + 2 * 14);
    assert!(trainable.iter().any(|(n, _)| n == "language_model.model.layers.1.mlp.down_proj.lora_B.weight"), "LoRA names");
    let e = m.save_hf(&tmpdir("llava-lora"), &SaveOptions::default()).unwrap_err().to_string();
    assert!(e.contains("merge"), "{e}");
    m.merge_lora().unwrap();
    assert!(m.lora().is_none());
    // Float32: this random model's own rounding noise is ~4e-5 (manifest: f64 vs f32 logits 3.9e-5), and any
    // change of the weights' low bits (W + s·BA) shows at that level, whatever the size of BA.
    let d = max_abs_diff(&m.forward(&px, &ids, None).unwrap(), &unmerged);
    assert!(d <= TOL, "float32: merged differs from unmerged by {d:.2e}");
    // Float64: merged = unmerged within 1e-5 (the algebra, without float32's noise).
    let opts = LmLoadOptions { kind: Kind::Double, ..Default::default() };
    let mut m = LlavaModel::load(&folder(), &opts).unwrap().0;
    m.attach_lora(&LoraConfig::new(4, 8.0)).unwrap();
    randomize_b(&m);
    let px = px.to_kind(Kind::Double);
    let unmerged = m.forward(&px, &ids, None).unwrap();
    m.merge_lora().unwrap();
    let d = max_abs_diff(&m.forward(&px, &ids, None).unwrap(), &unmerged);
    assert!(d <= 1e-5, "float64: merged differs from unmerged by {d:.2e}");
}

#[test]
fn peft_export_uses_peft_key_names() {
    let mut m = golden_model();
    let cfg = LoraConfig { targets: vec!["q_proj".into(), "v_proj".into()], ..LoraConfig::new(4, 8.0) };
    m.attach_lora(&cfg).unwrap();
    let dir = tmpdir("llava-peft");
    m.save_peft(&dir, Some("exported-llava")).unwrap();
    let f = WeightFile::open(dir.join("adapter_model.safetensors")).unwrap();
    let mut want = Vec::new();
    for l in 0..2 {
        for p in ["q_proj", "v_proj"] {
            for ab in ["lora_A", "lora_B"] {
                want.push(format!("base_model.model.model.language_model.layers.{l}.self_attn.{p}.{ab}.weight"));
            }
        }
    }
    want.sort();
    assert_eq!(f.names(), want);
    assert_eq!(f.tensor("base_model.model.model.language_model.layers.0.self_attn.q_proj.lora_A.weight").unwrap().size(), [4, 64]);
    assert_eq!(f.tensor("base_model.model.model.language_model.layers.0.self_attn.v_proj.lora_B.weight").unwrap().size(), [32, 4]);
    let c = read_json(&dir.join("adapter_config.json"));
    assert_eq!((c["peft_type"].as_str(), c["r"].as_i64(), c["lora_alpha"].as_f64()), (Some("LORA"), Some(4), Some(8.0)));
    assert_eq!((c["bias"].as_str(), c["task_type"].as_str(), c["base_model_name_or_path"].as_str()), (Some("none"), Some("CAUSAL_LM"), Some("exported-llava")));
    assert_eq!(c["target_modules"], r"^model\.language_model\..*\.(?:q_proj|v_proj)$");
    let e = LlavaModel::load(&folder(), &LmLoadOptions::default()).map(|(mut g, _)| g.attach_lora(&LoraConfig { targets: vec!["qkv".into()], ..LoraConfig::new(4, 8.0) }));
    let e = e.unwrap().unwrap_err().to_string();
    assert!(e.contains("\"qkv\"") && e.contains("q_proj") && e.contains("down_proj"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn mismatched_widths_name_both_numbers() {
    // A tower 48 wide under a projector that takes 96.
    let dir = with_config("width", |c| c["vision_config"]["hidden_size"] = 48.into());
    let e = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("takes 96 features") && e.contains("D_vit = 48"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
    // An LM 32 wide under a projector that gives 64.
    let dir = with_config("lm-width", |c| {
        c["text_config"]["hidden_size"] = 32.into();
        c["text_config"]["num_attention_heads"] = 2.into();
    });
    let e = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("gives 64 features") && e.contains("d_lm = 32"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
    let e = golden_model().project(&Tensor::zeros([1, 19, 80], (Kind::Float, Device::Cpu))).unwrap_err().to_string();
    assert!(e.contains("96") && e.contains("[1, 19, 80]") && e.contains("d_lm = 64"), "{e}");
}

#[test]
fn an_unsupported_lm_family_names_itself_and_the_supported_ones() {
    let dir = with_config("phi3", |c| c["text_config"]["model_type"] = "phi3".into());
    let e = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("text_config") && e.contains("\"phi3\"") && e.contains("llama, mistral, qwen2, qwen3, gpt2"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_and_unknown_keys_are_listed_and_nothing_loads() {
    let dir = with_config("keys", |_| {});
    let mut t = WeightFile::open(folder().join("model.safetensors")).unwrap().tensors().unwrap();
    t.remove("multi_modal_projector.linear_2.bias");
    t.insert("vision_tower.pooler.dense.weight".into(), Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)));
    write_safetensors(&dir.join("model.safetensors"), &t, HashMap::new()).unwrap();
    let e = LlavaModel::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("missing (1): multi_modal_projector.linear_2.bias") && e.contains("unexpected (1): vision_tower.pooler.dense.weight"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_tower_key_table_is_the_weights_module_hf_layout() {
    let cfg = common::small_vit(16, 2, 28, 2);
    let mut swiglu = common::small_swiglu();
    swiglu.num_register_tokens = 0;
    for c in [cfg, swiglu] {
        let vs = nn::VarStore::new(Device::Cpu);
        let _vit = Vit::new(&vs.root(), &c).unwrap();
        let dir = tmpdir("llava-keys");
        save_backbone(&vs, dir.join("t.safetensors"), SaveLayout::Hf, Kind::Float, HashMap::new()).unwrap();
        let saved: BTreeSet<String> = WeightFile::open(dir.join("t.safetensors")).unwrap().names().into_iter().collect();
        let ours: BTreeSet<String> = sorted_vars(&vs).iter().flat_map(|(n, _)| vision::hf_keys(n).unwrap()).collect();
        assert_eq!(ours, saved);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn lora_on_gpt2_conv1d_merges_transposed_and_exports_for_the_plain_lm() {
    // GPT-2 stores its projections (in, out) (PEFT's fan_in_fan_out): the merge must transpose B·A.
    let opts = LmLoadOptions { kind: Kind::Double, ..Default::default() };
    let mut lm = cxformer_core::lm::CausalLm::load(&golden_dir().join("lm/gpt2"), &opts).unwrap().0;
    let ids = common::golden("lm/gpt2.expected.safetensors", "input_ids");
    let mask = common::golden("lm/gpt2.expected.safetensors", "attention_mask");
    let base = lm.forward(&ids, Some(&mask), None, None).unwrap();
    let lora = Lora::attach(&mut lm.model, &LoraConfig::new(2, 4.0)).unwrap();
    assert_eq!(lora.target_names(), ["c_attn", "c_fc", "c_proj"]);
    assert!(lora.modules().iter().all(|m| m.fan_in_fan_out));
    assert!(lm.forward(&ids, Some(&mask), None, None).unwrap().equal(&base), "B = 0: the base model exactly");
    tch::no_grad(|| {
        for (i, m) in lora.modules().iter().enumerate() {
            let vals = lcg_values(m.b.numel() as i64, 40 + i as u64);
            let _ = m.b.shallow_clone().copy_(&(Tensor::from_slice(&vals).view(m.b.size().as_slice()).to_kind(Kind::Double) * 0.1));
        }
    });
    let dir = tmpdir("gpt2-peft");
    lora.save_peft(&dir, |p| p.to_string(), serde_json::json!(lora.target_names()), None).unwrap();
    let names = WeightFile::open(dir.join("adapter_model.safetensors")).unwrap().names();
    assert!(names.contains(&"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight".to_string()), "{names:?}");
    assert_eq!(read_json(&dir.join("adapter_config.json"))["fan_in_fan_out"], true);
    let unmerged = lm.forward(&ids, Some(&mask), None, None).unwrap();
    assert!(max_abs_diff(&unmerged, &base) > 1e-3);
    lora.merge(&mut lm.model).unwrap();
    let valid = mask.unsqueeze(-1).to_kind(Kind::Double);
    let d = ((lm.forward(&ids, Some(&mask), None, None).unwrap() - &unmerged).abs() * valid).max().double_value(&[]);
    assert!(d <= 1e-5, "merged differs from unmerged by {d:.2e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_model_moves_to_a_compute_thread() {
    fn send<T: Send>() {}
    send::<LlavaModel>();
}

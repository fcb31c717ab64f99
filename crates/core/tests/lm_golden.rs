//! Hugging Face causal LMs (`cxformer_core::lm`) against the transformers 4.57 goldens of
//! fixtures/golden/lm/ (README `lm/`, manifest.json): tiny random gpt2, llama (GQA, llama3 RoPE), qwen2 (qkv
//! bias, tied) and qwen3 (q/k norm, head_dim 24), BF16 on disk (gpt2 F32), loaded as float32. Three left-padded
//! prompts; 12 new tokens; pad 1, EOS 0.
mod common;

use common::{golden_dir, max_abs_diff, tmpdir};
use cxformer_core::lm::{
    CausalLm, Checkpoint, EarlyStopping, GenerateOptions, LmLoadOptions, Prompt, SampleOptions, Strategy, generate,
};
use cxformer_core::weights::write_safetensors;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

const FAMILIES: [&str; 4] = ["gpt2", "llama", "qwen2", "qwen3"];
const TOL: f64 = 1e-4;
const NEW: i64 = 12;

fn folder(name: &str) -> PathBuf {
    golden_dir().join("lm").join(name)
}

fn expected(name: &str, key: &str) -> Tensor {
    common::golden(&format!("lm/{name}.expected.safetensors"), key)
}

fn load(dir: &Path) -> CausalLm {
    CausalLm::load(dir, &LmLoadOptions::default()).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).0
}

/// max |a − b| over the valid positions (mask == 1) of (B, T, V) logits.
fn masked_diff(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    ((a - b).abs() * mask.unsqueeze(-1).to_kind(Kind::Float)).max().double_value(&[])
}

fn ones_col(b: i64) -> Tensor {
    Tensor::ones([b, 1], (Kind::Int64, tch::Device::Cpu))
}

#[test]
fn logits_match_transformers_at_valid_positions() {
    for name in FAMILIES {
        let lm = load(&folder(name));
        let (ids, mask, pos) = (expected(name, "input_ids"), expected(name, "attention_mask"), expected(name, "position_ids"));
        let want = expected(name, "logits");
        let derived = lm.forward(&ids, Some(&mask), None, None).unwrap();
        let given = lm.forward(&ids, Some(&mask), Some(&pos), None).unwrap();
        let (d1, d2) = (masked_diff(&derived, &want, &mask), masked_diff(&given, &want, &mask));
        assert!(d1 <= TOL && d2 <= TOL, "{name}: logits differ from transformers by {d1:.2e} (derived positions), {d2:.2e} (given)");
        assert!(bool::try_from(derived.isfinite().all()).unwrap(), "{name}: non-finite logits (padding rows included)");
    }
}

#[test]
fn greedy_and_beam_search_match_transformers_generate() {
    for name in FAMILIES {
        let lm = load(&folder(name));
        let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
        let g = GenerateOptions::greedy(NEW, &lm.generation);
        assert_eq!((g.eos_token_ids.as_slice(), g.pad_token_id), (&[0i64][..], 1), "{name}: generation_config ids");
        let out = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &g, |_, _| true).unwrap();
        assert_eq!(out.sequences, expected(name, "greedy_ids"), "{name}: greedy ids");
        let beam = GenerateOptions::beam(3, NEW, &lm.generation);
        let out = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &beam, |_, _| true).unwrap();
        assert_eq!(out.sequences, expected(name, "beam_ids"), "{name}: beam ids");
        let want: Vec<f32> = Vec::try_from(&expected(name, "beam_sequence_scores")).unwrap();
        for (r, (&got, &w)) in out.scores.iter().zip(&want).enumerate() {
            assert!((got - w as f64).abs() <= TOL, "{name}: beam score of row {r}: {got} vs transformers {w}");
        }
        assert_eq!(out.beams.iter().map(Vec::len).collect::<Vec<_>>(), vec![3; 3], "{name}: three finished hypotheses per row");
    }
}

#[test]
fn kv_cache_second_step_matches_transformers_and_full_recompute() {
    for name in FAMILIES {
        let lm = load(&folder(name));
        let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
        let (b, p) = ids.size2().unwrap();
        let mut cache = lm.new_cache(b, p + 4).unwrap();
        let step1 = lm.forward(&ids, Some(&mask), None, Some(&mut cache)).unwrap();
        assert_eq!(cache.len(), p);
        let t1 = step1.select(1, p - 1).argmax(-1, true);
        assert_eq!(t1, expected(name, "kv_step2_input_ids"), "{name}: step-1 argmax");
        let mask2 = Tensor::cat(&[&mask, &ones_col(b)], 1);
        let step2 = lm.forward(&t1, Some(&mask2), None, Some(&mut cache)).unwrap().select(1, 0);
        let d = max_abs_diff(&step2, &expected(name, "kv_step2_logits"));
        assert!(d <= TOL, "{name}: KV step-2 logits differ from transformers by {d:.2e}");
        let full = lm.forward(&Tensor::cat(&[&ids, &t1], 1), Some(&mask2), None, None).unwrap().select(1, p);
        let d = max_abs_diff(&step2, &full);
        assert!(d <= TOL, "{name}: KV step 2 differs from the full recompute by {d:.2e}");
    }
}

#[test]
fn kv_cache_decoding_equals_full_recompute() {
    for name in FAMILIES {
        let lm = load(&folder(name));
        let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
        let (b, p) = ids.size2().unwrap();
        // Cached: the prompt once, then one token per step.
        let mut cache = lm.new_cache(b, p + NEW).unwrap();
        let mut cached_mask = mask.shallow_clone();
        let mut logits = lm.forward(&ids, Some(&mask), None, Some(&mut cache)).unwrap().select(1, p - 1);
        // Full recompute: the whole sequence every step.
        let mut seq = ids.shallow_clone();
        let mut full_mask = mask.shallow_clone();
        let mut worst = 0f64;
        for s in 0..NEW {
            let full = lm.forward(&seq, Some(&full_mask), None, None).unwrap().select(1, p + s - 1);
            worst = worst.max(max_abs_diff(&logits, &full));
            let tok = full.argmax(-1, true);
            assert_eq!(logits.argmax(-1, true), tok, "{name}: step {s} tokens differ");
            seq = Tensor::cat(&[&seq, &tok], 1);
            full_mask = Tensor::cat(&[&full_mask, &ones_col(b)], 1);
            cached_mask = Tensor::cat(&[&cached_mask, &ones_col(b)], 1);
            logits = lm.forward(&tok, Some(&cached_mask), None, Some(&mut cache)).unwrap().select(1, 0);
        }
        assert!(worst <= TOL, "{name}: cached logits differ from the full recompute by {worst:.2e}");
        assert_eq!(seq, expected(name, "greedy_ids"), "{name}: recomputed greedy ids");
    }
}

#[test]
fn left_padded_batch_equals_each_sequence_alone() {
    for name in FAMILIES {
        let lm = load(&folder(name));
        let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
        let (b, p) = ids.size2().unwrap();
        let batch = lm.forward(&ids, Some(&mask), None, None).unwrap();
        let greedy = GenerateOptions::greedy(NEW, &lm.generation);
        let batch_gen = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &greedy, |_, _| true).unwrap();
        let beam = GenerateOptions::beam(3, NEW, &lm.generation);
        let batch_beam = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &beam, |_, _| true).unwrap();
        for r in 0..b {
            let n = mask.get(r).sum(Kind::Int64).int64_value(&[]);
            let alone_ids = ids.get(r).narrow(0, p - n, n).unsqueeze(0);
            let alone = lm.forward(&alone_ids, None, None, None).unwrap();
            let d = max_abs_diff(&alone.get(0), &batch.get(r).narrow(0, p - n, n));
            assert!(d <= TOL, "{name}: row {r} alone differs from the batch by {d:.2e}");
            let g = generate(&lm.model, Prompt::Ids(&alone_ids), None, &greedy, |_, _| true).unwrap();
            assert_eq!(g.tokens[0], batch_gen.tokens[r as usize], "{name}: greedy row {r} alone");
            let g = generate(&lm.model, Prompt::Ids(&alone_ids), None, &beam, |_, _| true).unwrap();
            assert_eq!(g.tokens[0], batch_beam.tokens[r as usize], "{name}: beam row {r} alone");
            assert!((g.scores[0] - batch_beam.scores[r as usize]).abs() <= TOL, "{name}: beam score row {r} alone");
        }
    }
}

/// Writes the folder's tensors into two shards + model.safetensors.index.json (with config.json and
/// generation_config.json) under a temp dir.
fn shard(name: &str) -> PathBuf {
    let src = folder(name);
    let dir = tmpdir(&format!("lm-shard-{name}"));
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let all = Checkpoint::open_dir(&src).unwrap();
    let names = all.names();
    let mut parts = [BTreeMap::new(), BTreeMap::new()];
    let mut map = serde_json::Map::new();
    for (i, n) in names.iter().enumerate() {
        let which = usize::from(i >= names.len() / 2);
        parts[which].insert(n.clone(), all.tensor(n).unwrap());
        map.insert(n.clone(), format!("model-0000{}-of-00002.safetensors", which + 1).into());
    }
    for (i, p) in parts.iter().enumerate() {
        let md = HashMap::from([("format".to_string(), "pt".to_string())]);
        write_safetensors(&dir.join(format!("model-0000{}-of-00002.safetensors", i + 1)), p, md).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    dir
}

#[test]
fn sharded_index_loads_the_same_as_one_file() {
    for name in FAMILIES {
        let dir = shard(name);
        let (sharded, report) = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap();
        assert_eq!(report.files.len(), 2, "{name}: two shards read");
        let single = load(&folder(name));
        let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
        let a = sharded.forward(&ids, Some(&mask), None, None).unwrap();
        let b = single.forward(&ids, Some(&mask), None, None).unwrap();
        assert_eq!(a, b, "{name}: sharded and single-file logits");
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn a_shard_that_disagrees_with_the_index_is_refused() {
    let dir = shard("qwen2");
    let idx = dir.join("model.safetensors.index.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
    v["weight_map"]["model.norm.weight"] = "model-00001-of-00002.safetensors".into();
    v["weight_map"]["model.extra.weight"] = "../elsewhere.safetensors".into();
    std::fs::write(&idx, v.to_string()).unwrap();
    let e = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("model.extra.weight") && e.contains("plain file name"), "{e}");
    v["weight_map"].as_object_mut().unwrap().remove("model.extra.weight");
    std::fs::write(&idx, v.to_string()).unwrap();
    let e = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("model.norm.weight") && e.contains("index.json"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A copy of a fixture folder whose tensors are edited by `edit`.
fn edited(name: &str, tag: &str, edit: impl FnOnce(&mut BTreeMap<String, Tensor>)) -> PathBuf {
    let src = folder(name);
    let dir = tmpdir(&format!("lm-{tag}-{name}"));
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let ck = Checkpoint::open_dir(&src).unwrap();
    let mut t = ck.names().into_iter().map(|n| (n.clone(), ck.tensor(&n).unwrap())).collect();
    edit(&mut t);
    write_safetensors(&dir.join("model.safetensors"), &t, HashMap::new()).unwrap();
    dir
}

#[test]
fn an_unsupported_model_type_names_itself_and_the_supported_families() {
    let dir = tmpdir("lm-bert");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "bert", "vocab_size": 10}"#).unwrap();
    let e = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    for w in ["\"bert\"", "llama", "mistral", "qwen2", "qwen3", "gpt2", "config.json"] {
        assert!(e.contains(w), "{w} not in: {e}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn missing_and_unexpected_keys_are_named_and_nothing_loads() {
    let dir = edited("llama", "keys", |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
        t.insert("model.layers.1.mlp.extra.weight".into(), Tensor::zeros([2], (Kind::Float, tch::Device::Cpu)));
        let w = t["model.norm.weight"].narrow(0, 0, 10);
        t.insert("model.norm.weight".into(), w);
    });
    let e = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    for w in ["missing (1): model.layers.1.mlp.up_proj.weight", "unexpected (1): model.layers.1.mlp.extra.weight", "model.norm.weight (file [10], model [64])", "model.safetensors"] {
        assert!(e.contains(w), "{w} not in: {e}");
    }
    let _ = std::fs::remove_dir_all(dir);
    // An untied model needs its head.
    let dir = edited("llama", "head", |t| {
        t.remove("lm_head.weight");
    });
    let e = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("missing (1): lm_head.weight"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_tied_head_stored_anyway_must_equal_the_embedding() {
    let same = edited("qwen2", "tied-same", |t| {
        let e = t["model.embed_tokens.weight"].copy();
        t.insert("lm_head.weight".into(), e);
    });
    let (_, report) = CausalLm::load(&same, &LmLoadOptions::default()).unwrap();
    assert_eq!(report.tied, vec!["lm_head.weight".to_string()]);
    let other = edited("qwen2", "tied-other", |t| {
        let e = t["model.embed_tokens.weight"].to_kind(Kind::Float) * 2.0;
        t.insert("lm_head.weight".into(), e);
    });
    let e = CausalLm::load(&other, &LmLoadOptions::default()).unwrap_err().to_string();
    assert!(e.contains("lm_head.weight differs from model.embed_tokens.weight") && e.contains("tie_word_embeddings"), "{e}");
    for d in [same, other] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn sampling_is_seeded_per_row_and_cold_sampling_is_greedy() {
    let name = "qwen3";
    let lm = load(&folder(name));
    let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
    let sample = |seed: u64, temperature: f64, ids: &Tensor, mask: Option<&Tensor>| {
        let s = Strategy::Sample(SampleOptions { temperature, top_p: 0.9, top_k: 0, seed });
        generate(&lm.model, Prompt::Ids(ids), mask, &GenerateOptions::new(s, NEW, &lm.generation), |_, _| true).unwrap()
    };
    let a = sample(7, 1.0, &ids, Some(&mask));
    assert_eq!(a.tokens, sample(7, 1.0, &ids, Some(&mask)).tokens, "same seed, same tokens");
    assert_ne!(a.tokens, sample(8, 1.0, &ids, Some(&mask)).tokens, "another seed, other tokens");
    let (_, p) = ids.size2().unwrap();
    let n = mask.get(2).sum(Kind::Int64).int64_value(&[]);
    let alone = sample(7, 1.0, &ids.get(2).narrow(0, p - n, n).unsqueeze(0), None);
    assert_eq!(alone.tokens[0], a.tokens[2], "a row samples the same alone");
    let cold = sample(7, 1e-4, &ids, Some(&mask));
    assert_eq!(cold.sequences, expected(name, "greedy_ids"), "T → 0 is greedy");
}

#[test]
fn eos_ends_a_row_which_continues_with_pad() {
    // Make the 3rd greedy token of row 0 an EOS id (gpt2: [210, 137, 497, …]) alongside 0.
    let name = "gpt2";
    let lm = load(&folder(name));
    let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
    let mut g = GenerateOptions::greedy(NEW, &lm.generation);
    g.eos_token_ids = vec![0, 497];
    let mut seen = vec![Vec::new(); 3];
    let out = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &g, |r, t| {
        seen[r].push(t);
        true
    })
    .unwrap();
    assert_eq!(out.tokens[0], vec![210, 137, 497]);
    assert_eq!(seen[0], out.tokens[0], "the callback sees the new tokens up to EOS, no pads");
    let row0: Vec<i64> = Vec::try_from(&out.sequences.get(0).narrow(0, 8, NEW)).unwrap();
    assert_eq!(&row0[3..], &[1i64; 9], "pads after EOS");
    // Row 1 ([231, 497, …]) stops at its 2nd token too; row 2 never meets 497.
    assert_eq!(out.tokens[1], vec![231, 497]);
    assert_eq!(out.tokens[2].len(), NEW as usize);
    // Beam search with several EOS ids runs and ends each hypothesis at most at one EOS.
    let mut b = GenerateOptions::beam(3, NEW, &lm.generation);
    b.eos_token_ids = vec![0, 497];
    if let Strategy::Beam(ref mut o) = b.strategy {
        o.early_stopping = EarlyStopping::Never;
    }
    let out = generate(&lm.model, Prompt::Ids(&ids), Some(&mask), &b, |_, _| true).unwrap();
    for h in out.beams.iter().flatten() {
        let eos_at = h.tokens.iter().position(|t| *t == 0 || *t == 497);
        assert!(eos_at.is_none_or(|i| i + 1 == h.tokens.len()), "{:?}", h.tokens);
    }
}

#[test]
fn embeddings_prompt_equals_ids_prompt() {
    let name = "llama";
    let lm = load(&folder(name));
    let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
    let embeds = lm.embed(&ids).unwrap();
    let a = lm.forward_embeds(&embeds, Some(&mask), None, None).unwrap();
    let b = lm.forward(&ids, Some(&mask), None, None).unwrap();
    assert_eq!(a, b);
    let g = GenerateOptions::beam(3, NEW, &lm.generation);
    let from_embeds = generate(&lm.model, Prompt::Embeds(&embeds), Some(&mask), &g, |_, _| true).unwrap();
    assert_eq!(from_embeds.sequences, expected(name, "beam_ids").narrow(1, 8, NEW), "no prompt part for an embeddings prompt");
}

#[test]
fn bf16_variables_run_close_to_float32() {
    let name = "qwen2";
    let opts = LmLoadOptions { kind: Kind::BFloat16, ..Default::default() };
    let (lm, report) = CausalLm::load(&folder(name), &opts).unwrap();
    assert_eq!(report.source_dtypes, vec!["BF16".to_string()]);
    assert_eq!(lm.model.kind(), Kind::BFloat16);
    let (ids, mask) = (expected(name, "input_ids"), expected(name, "attention_mask"));
    let got = lm.forward(&ids, Some(&mask), None, None).unwrap();
    assert_eq!(got.kind(), Kind::Float);
    let want = expected(name, "logits");
    let (d, scale) = (masked_diff(&got, &want, &mask), want.abs().max().double_value(&[]));
    assert!(d < 0.05 * scale, "bf16 logits differ from float32 by {d} (logits up to {scale})");
}

#[test]
fn config_reading_eos_lists_rope_parameters_and_refusals() {
    use cxformer_core::lm::{LmConfig, RopeScaling};
    let v: serde_json::Value = serde_json::from_str(
        r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 2, "eos_token_id": [3, 4],
            "rope_parameters": {"rope_type": "default", "rope_theta": 123.0}}"#,
    )
    .unwrap();
    let c = LmConfig::from_json(&v).unwrap();
    assert_eq!((c.eos_token_ids.as_slice(), c.rope_theta, c.num_kv_heads, c.head_dim), (&[3i64, 4][..], 123.0, 2, 4));
    assert!(!c.tie_word_embeddings && c.rope_scaling == RopeScaling::Default);
    // The fixtures: llama3 scaling, qwen3's explicit head_dim, gpt2's tied head.
    let llama = LmConfig::from_file(&folder("llama").join("config.json")).unwrap();
    assert!(matches!(llama.rope_scaling, RopeScaling::Llama3 { factor: 8.0, .. }));
    assert_eq!(LmConfig::from_file(&folder("qwen3").join("config.json")).unwrap().head_dim, 24);
    assert!(LmConfig::from_file(&folder("gpt2").join("config.json")).unwrap().tie_word_embeddings);
    let bad = |json: &str| LmConfig::from_json(&serde_json::from_str(json).unwrap()).unwrap_err().to_string();
    let e = bad(r#"{"model_type": "qwen2", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2, "rope_scaling": {"type": "yarn", "factor": 4}}"#);
    assert!(e.contains("yarn") && e.contains("llama3"), "{e}");
    let e = bad(r#"{"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2}"#);
    assert!(e.contains("num_attention_heads 3") && e.contains("num_key_value_heads 2"), "{e}");
}

#[test]
fn gpt2_original_export_keys_load_with_mask_buffers_ignored() {
    // OpenAI's export: no `transformer.` prefix, and the causal-mask buffers `h.N.attn.bias`.
    let dir = edited("gpt2", "openai-keys", |t| {
        let old = std::mem::take(t);
        for (k, v) in old {
            t.insert(k.strip_prefix("transformer.").unwrap_or(&k).to_string(), v);
        }
        t.insert("h.0.attn.bias".into(), Tensor::ones([1, 1, 64, 64], (Kind::Float, tch::Device::Cpu)).tril(0));
    });
    let (lm, report) = CausalLm::load(&dir, &LmLoadOptions::default()).unwrap();
    assert_eq!(report.ignored, vec!["h.0.attn.bias".to_string()]);
    let (ids, mask) = (expected("gpt2", "input_ids"), expected("gpt2", "attention_mask"));
    let a = lm.forward(&ids, Some(&mask), None, None).unwrap();
    assert_eq!(a, load(&folder("gpt2")).forward(&ids, Some(&mask), None, None).unwrap());
    assert!(lm.vs.variables().contains_key("transformer.h.0.attn.c_attn.weight"), "variables keep transformers' names");
    let _ = std::fs::remove_dir_all(dir);
}

//! LLaVA across N-API (crates/core/src/llava/ and crates/core/src/lm/ hold every convention): the tokenizer of a
//! Hugging Face LM (LLaVA adds its `<image>` token to it), a trainer of the two stages on a LLaVA folder or on a
//! tower and an LM folder (steps, evaluation, decoding, training state, export), and an exported LLaVA loaded to
//! generate. Every long call is a [`Job`]; calls on one instance are serialised. With a process group
//! (worldSize > 1) the trainer is data-parallel: creation, every step and every `loadState` are collective.
use crate::dist::NativeProcessGroup;
use crate::job::{Job, Shared, job, job_with, report};
use crate::rrg::{Decoding, EncodedTexts, TokenCallback, decoding_options, ids_of, pixels_of, stream_to};
use crate::{invalid, js_error};
use cxformer_core::VitConfig;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::llava::{FeatureSelect, FromPartsReport, KeyLayout, LlavaBatch, LlavaLoadReport, LlavaModel, LlavaOptions, LlavaTrainConfig, LlavaTrainer, ProjectorKind, SaveOptions};
use cxformer_core::lm::{GenerateOptions, GenerationConfig, LmLoadOptions};
use cxformer_core::text::HfTokenizer;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::{Kind, Tensor};

// ---- tokenizer ----

/// What `addSpecialToken` did: the token's id, and whether it was added (false: the tokenizer already had it).
#[napi(object)]
pub struct AddedTokenJs {
    pub id: i64,
    pub added: bool,
}

/// The tokenizer of a Hugging Face LM folder (`tokenizer.json`, used as it is).
#[napi]
pub struct NativeLmTokenizer {
    inner: HfTokenizer,
}

#[napi]
impl NativeLmTokenizer {
    /// Parses `tokenizer.json` text; `source` (a file name) is used in errors.
    #[napi(factory)]
    pub fn from_json(json: String, source: String) -> napi::Result<Self> {
        Ok(NativeLmTokenizer { inner: HfTokenizer::from_json(&json, &source).map_err(js_error)? })
    }

    /// The `tokenizer.json` text (pretty-printed; added tokens included).
    #[napi]
    pub fn to_json(&self) -> napi::Result<String> {
        self.inner.to_json().map_err(js_error)
    }

    /// Vocabulary size with the added tokens (transformers' `len(tokenizer)`).
    #[napi(getter)]
    pub fn vocab_size(&self) -> i64 {
        self.inner.vocab_size()
    }

    /// The id of a token of the vocabulary or of the added tokens (null when absent).
    #[napi]
    pub fn token_to_id(&self, token: String) -> Option<i64> {
        self.inner.token_to_id(&token)
    }

    /// The token of an id (null outside the vocabulary).
    #[napi]
    pub fn id_to_token(&self, id: i64) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Adds `content` as a special token (special, not normalized, no lstrip/rstrip/single_word) unless the
    /// tokenizer already has it as any token; never adds twice. A new token takes the next id (`vocabSize`
    /// before the call).
    #[napi]
    pub fn add_special_token(&mut self, content: String) -> napi::Result<AddedTokenJs> {
        let (id, added) = self.inner.add_special_token(&content).map_err(js_error)?;
        Ok(AddedTokenJs { id, added })
    }

    /// Encodes each text (with what the tokenizer's post-processor adds when `addSpecialTokens`).
    #[napi]
    pub fn encode_batch(&self, texts: Vec<String>, add_special_tokens: bool) -> napi::Result<EncodedTexts> {
        let mut ids: Vec<i32> = Vec::new();
        let mut lengths = Vec::with_capacity(texts.len());
        for t in &texts {
            let e = self.inner.encode(t, add_special_tokens).map_err(js_error)?;
            lengths.push(e.len() as u32);
            ids.extend(e.into_iter().map(|x| x as i32));
        }
        Ok(EncodedTexts { ids: Int32Array::new(ids), lengths })
    }

    /// Decodes ids to text (special tokens skipped when `skipSpecialTokens`); an id outside the vocabulary is an
    /// error.
    #[napi]
    pub fn decode(&self, ids: Vec<i64>, skip_special_tokens: bool) -> napi::Result<String> {
        self.inner.decode(&ids, skip_special_tokens).map_err(js_error)
    }
}

// ---- decoding ----

/// The LM decoder's choices of a `generate` options JSON (crate::rrg's parser; `noRepeatNgramSize` refused).
fn lm_decoding(json: &str) -> napi::Result<Decoding> {
    let d = decoding_options(json)?;
    if d.no_repeat_ngram_size != 0 {
        return Err(invalid(format!(
            "generate: noRepeatNgramSize {} is not supported by the LM decoder (LLaVA); leave it out or set it to 0",
            d.no_repeat_ngram_size
        )));
    }
    Ok(d)
}

/// One generated text per row: its new token ids (EOS and everything after it removed) and score.
#[derive(Serialize)]
struct GeneratedJs {
    tokens: Vec<Vec<i64>>,
    scores: Vec<f64>,
}

/// A model's generation ids as JSON `{bosTokenId, eosTokenIds, padTokenId}`.
fn generation_json(g: &GenerationConfig) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GenerationJs<'a> {
        bos_token_id: Option<i64>,
        eos_token_ids: &'a [i64],
        pad_token_id: Option<i64>,
    }
    serde_json::to_string(&GenerationJs { bos_token_id: g.bos_token_id, eos_token_ids: &g.eos_token_ids, pad_token_id: g.pad_token_id }).expect("serializable")
}

/// What a step, an evaluation or a decoding reads, moved into its job.
///
/// # Shapes
/// pixels: (N, 3, H, W) float32; ids, mask: (B, T) int64 with B = N; labels: (B, T) int64 (steps, evaluations)
struct Inputs {
    pixels: Tensor,
    ids: Tensor,
    mask: Tensor,
    labels: Option<Tensor>,
}

impl Inputs {
    /// The tensors of the JS arguments, every shape checked (one image per row).
    fn new(pixels: &[f32], pixels_shape: &[i64], input_ids: &[i32], attention_mask: &[i32], labels: Option<&[i32]>, ids_shape: &[i64]) -> napi::Result<Self> {
        let px = pixels_of(pixels, pixels_shape)?;
        let ids = ids_of(input_ids, ids_shape, "inputIds", "idsShape")?;
        let mask = ids_of(attention_mask, ids_shape, "attentionMask", "idsShape")?;
        let labels = labels.map(|l| ids_of(l, ids_shape, "labels", "idsShape")).transpose()?;
        if pixels_shape[0] != ids_shape[0] {
            return Err(invalid(format!(
                "pixelsShape {pixels_shape:?} holds {} image(s) but idsShape {ids_shape:?} has {} row(s): one image per row",
                pixels_shape[0], ids_shape[0]
            )));
        }
        Ok(Inputs { pixels: px, ids, mask, labels })
    }

    /// `k` equal consecutive chunks of the rows (the caller checked that k divides them).
    fn split(&self, k: i64) -> cxformer_core::Result<Vec<Inputs>> {
        let n = self.ids.size()[0] / k;
        let part = |t: &Tensor, i: i64| t.f_narrow(0, i * n, n);
        (0..k)
            .map(|i| {
                Ok(Inputs {
                    pixels: part(&self.pixels, i)?,
                    ids: part(&self.ids, i)?,
                    mask: part(&self.mask, i)?,
                    labels: self.labels.as_ref().map(|l| part(l, i)).transpose()?,
                })
            })
            .collect()
    }

    fn batch(&self) -> LlavaBatch<'_> {
        LlavaBatch::new(&self.pixels, &self.ids, Some(&self.mask), self.labels.as_ref().expect("a training input has labels"))
    }
}

/// Decodes after each row's prompt with `model` (see [`GeneratedJs`]).
fn run_generate(model: &LlavaModel, x: &Inputs, d: &Decoding, on_token: impl FnMut(usize, i64) -> bool) -> napi::Result<String> {
    let mut opts = GenerateOptions::new(d.strategy, d.max_new_tokens, &model.generation);
    if let Some(ids) = &d.eos_token_ids {
        opts.eos_token_ids = ids.clone();
    }
    let g = model.generate(&x.pixels, &x.ids, Some(&x.mask), &opts, on_token).map_err(js_error)?;
    let eos = &opts.eos_token_ids;
    let tokens = g.tokens.into_iter().map(|t| t.into_iter().take_while(|x| !eos.contains(x)).collect()).collect();
    Ok(serde_json::to_string(&GeneratedJs { tokens, scores: g.scores }).expect("serializable"))
}

/// `tokensPerImage`: the visual tokens one image of `height`×`width` pixels becomes.
fn tokens_per_image(model: &LlavaModel, height: i64, width: i64) -> napi::Result<i64> {
    if height < 1 || width < 1 {
        return Err(invalid(format!("tokensPerImage: height and width must be ≥ 1, got {height}×{width}")));
    }
    Ok(model.config().tokens_per_image(height, width))
}

/// The config.json object of a model (float32), as JSON text.
fn config_json(model: &LlavaModel) -> napi::Result<String> {
    Ok(model.config().to_hf_json("float32").map_err(js_error)?.to_string())
}

/// Where and in which kind a model's variables live: `device` ("cpu", "cuda", "cuda:N"; default "cpu"), `dtype`
/// ("f32" | "bf16"; default "f32").
fn load_options(device: Option<&str>, dtype: Option<&str>, allow_non_finite: bool) -> napi::Result<LmLoadOptions> {
    let device = cxformer_core::runtime::parse_device(device.unwrap_or("cpu")).map_err(js_error)?;
    let kind = match dtype.unwrap_or("f32") {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        o => return Err(invalid(format!("dtype \"{o}\": expected \"f32\" or \"bf16\""))),
    };
    Ok(LmLoadOptions { device, kind, allow_non_finite })
}

// ---- trainer ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOptions {
    /// `{llava: DIR}` or `{lm: DIR, vision, imageTokenIndex, …}` ([`Base`]).
    base: serde_json::Value,
    /// LlavaTrainConfig JSON (camelCase).
    train: serde_json::Value,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
    /// The variables' kind: "f32" | "bf16". @default "f32"
    #[serde(default)]
    dtype: Option<String>,
    /// Dropout seed and the LoRA A init's. @default 0
    #[serde(default)]
    seed: i64,
    /// Load weights holding NaN / Inf (refused by default). @default false
    #[serde(default)]
    allow_non_finite: bool,
}

/// A transformers LLaVA folder (e.g. an earlier stage's export).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LlavaBase {
    llava: String,
}

/// A LLaVA built from its parts ([`LlavaModel::from_parts`]).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PartsBase {
    /// A causal LM folder.
    lm: String,
    vision: VisionBase,
    /// The image token's id: inside the LM's vocabulary, or its vocab_size (the vocabulary then grows by one row).
    image_token_index: i64,
    /// `vision_feature_layer`s. @default [-2]
    #[serde(default)]
    feature_layers: Option<Vec<i64>>,
    /// "default" | "full". @default "default"
    #[serde(default)]
    select: Option<String>,
    /// k×k pooling of the patch grid (1 = off). @default 1
    #[serde(default)]
    pool: Option<i64>,
    /// "linear" | "mlp2x_gelu" | "mlpNx_gelu". @default "mlp2x_gelu"
    #[serde(default)]
    projector: Option<String>,
    /// The projector's draws, and the tower's from-scratch draws when `vision.weights` is absent. @default 0
    #[serde(default)]
    projector_seed: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VisionBase {
    /// VitConfig JSON (snake_case fields as in crates/core).
    config: serde_json::Value,
    /// The tower's weights (safetensors, any layout crates/core reads); absent = the from-scratch init.
    #[serde(default)]
    weights: Option<String>,
}

/// The trainer's base.
enum Base {
    Llava(LlavaBase),
    Parts(PartsBase),
}

impl Base {
    fn parse(v: serde_json::Value) -> napi::Result<Self> {
        let what = |e: serde_json::Error| invalid(format!("createLlavaTrainer options: base: {e}"));
        match v.as_object() {
            Some(o) if o.contains_key("llava") => Ok(Base::Llava(serde_json::from_value(v).map_err(what)?)),
            Some(o) if o.contains_key("lm") => Ok(Base::Parts(serde_json::from_value(v).map_err(what)?)),
            _ => Err(invalid(format!(
                "createLlavaTrainer options: base must be {{llava: DIR}} or {{lm: DIR, vision: {{config, weights?}}, imageTokenIndex, …}}, got {v}"
            ))),
        }
    }

    /// The LlavaOptions of a parts base.
    fn options(p: &PartsBase) -> napi::Result<LlavaOptions> {
        let mut o = LlavaOptions::new(p.image_token_index);
        if let Some(l) = &p.feature_layers {
            o.vision_feature_layers = l.clone();
        }
        if let Some(s) = &p.select {
            o.select = FeatureSelect::parse(s).map_err(js_error)?;
        }
        if let Some(k) = p.pool {
            o.pool = k;
        }
        if let Some(name) = &p.projector {
            o.projector = ProjectorKind::parse(name).map_err(js_error)?;
        }
        Ok(o)
    }
}

/// What building or loading the base did (JSON of `baseReport`): `{"llava": LlavaLoadReport}` or `{"lm":
/// FromPartsReport}`, tagged as the `base` option.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum BaseReport {
    Llava(LlavaLoadReport),
    Lm(FromPartsReport),
}

type Created = (LlavaTrainer, String, Option<Arc<ProcessGroup>>);

fn create(options: &str, pg: Option<Arc<ProcessGroup>>) -> napi::Result<Created> {
    let o: CreateOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createLlavaTrainer options: {e}")))?;
    let cfg = LlavaTrainConfig::from_json(&o.train.to_string()).map_err(js_error)?;
    let load = load_options(o.device.as_deref(), o.dtype.as_deref(), o.allow_non_finite)?;
    let (model, report) = match Base::parse(o.base)? {
        Base::Llava(b) => {
            let (m, r) = LlavaModel::load(Path::new(&b.llava), &load).map_err(js_error)?;
            (m, BaseReport::Llava(r))
        }
        Base::Parts(p) => {
            let vision = VitConfig::from_json(&p.vision.config.to_string()).map_err(js_error)?;
            let weights = p.vision.weights.as_ref().map(PathBuf::from);
            let opts = Base::options(&p)?;
            let (m, r) = LlavaModel::from_parts(&vision, weights.as_deref(), Path::new(&p.lm), opts, &load, p.projector_seed).map_err(js_error)?;
            (m, BaseReport::Lm(r))
        }
    };
    let mut t = LlavaTrainer::new(model, cfg, o.seed).map_err(js_error)?;
    let pg = pg.filter(|pg| pg.world() > 1);
    if let Some(pg) = &pg {
        t.set_dist(Box::new(pg.clone())).map_err(js_error)?;
    }
    Ok((t, serde_json::to_string(&report).expect("serializable"), pg))
}

/// Builds a LLaVA trainer off the JS thread. `options`: JSON `{base, train, device?, dtype?, seed?,
/// allowNonFinite?}`: `base` is `{llava: DIR}` (a transformers LLaVA folder) or `{lm: DIR, vision: {config,
/// weights?}, imageTokenIndex, featureLayers?, select?, pool?, projector?, projectorSeed?}` (a LLaVA built from a
/// tower and a causal LM folder, the vocabulary grown by one row when `imageTokenIndex` is the LM's vocab_size;
/// `projectorSeed` also seeds the tower's from-scratch init when `vision.weights` is absent);
/// `train` a LlavaTrainConfig; `dtype` the variables' kind ("f32" | "bf16"). With a `processGroup` of
/// worldSize > 1 every rank must create it (the ranks check that they hold the same frozen base; rank 0's
/// trainable state is broadcast) and every step and `loadState` is collective.
#[napi(ts_return_type = "Promise<NativeLlavaTrainer>")]
pub fn create_llava_trainer(options: String, process_group: Option<&NativeProcessGroup>) -> AsyncTask<Job<Created, NativeLlavaTrainer>> {
    let pg = process_group.map(|p| p.pg.clone());
    job_with("createLlavaTrainer", move || create(&options, pg), |(t, base_report, pg)| {
        Ok(NativeLlavaTrainer { inner: Shared::new("LLaVA trainer", t), pg, base_report })
    })
}

/// A LLaVA trainer (crates/core/src/llava/train.rs).
#[napi]
pub struct NativeLlavaTrainer {
    inner: Shared<LlavaTrainer>,
    pg: Option<Arc<ProcessGroup>>,
    base_report: String,
}

/// The number of micro-batches `k` of a batch of `ids_shape` rows: k ≥ 1 dividing them.
fn micro_batch_count(k: u32, ids_shape: &[i64]) -> napi::Result<i64> {
    let (k, b) = (k as i64, ids_shape[0]);
    if k < 1 || b % k != 0 {
        return Err(invalid(format!("microBatches {k} must be ≥ 1 and divide the batch: idsShape {ids_shape:?} has {b} row(s)")));
    }
    Ok(k)
}

#[napi]
impl NativeLlavaTrainer {
    /// The resolved LlavaTrainConfig (JSON, defaults filled in).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.cfg.to_json())
    }

    /// The LLaVA's config.json object (float32), as JSON text.
    #[napi(getter)]
    pub fn llava_config(&self) -> napi::Result<String> {
        config_json(&self.inner.lock()?.model)
    }

    /// The generation ids: JSON `{bosTokenId, eosTokenIds, padTokenId}` (null when absent).
    #[napi(getter)]
    pub fn generation(&self) -> napi::Result<String> {
        Ok(generation_json(&self.inner.lock()?.model.generation))
    }

    /// Optimizer steps taken (scheduled ones, skipped included).
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.step)
    }

    /// Values of every variable: the base (tower, projector, LM) and the LoRA adapters.
    #[napi(getter)]
    pub fn num_parameters(&self) -> napi::Result<i64> {
        let t = self.inner.lock()?;
        let count = |vs: &tch::nn::VarStore| vs.variables().values().map(|v| v.numel() as i64).sum::<i64>();
        Ok(count(&t.model.vs) + t.model.lora().map_or(0, |l| count(&l.vs)))
    }

    /// Values of the trained variables (the stage's).
    #[napi(getter)]
    pub fn num_trainable(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.optimizer.slots.iter().map(|s| s.param.numel() as i64).sum())
    }

    /// The trained variables' names, sorted.
    #[napi(getter)]
    pub fn trainable_names(&self) -> napi::Result<Vec<String>> {
        Ok(self.inner.lock()?.trainable_names())
    }

    /// The frozen base's fingerprint (16 hex digits).
    #[napi(getter)]
    pub fn base_fingerprint(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.base_fingerprint().to_string())
    }

    /// What building or loading the base did (JSON): `{"llava": {weights, layout}}` for a LLaVA folder, `{"lm":
    /// {vocab_grown: {from, to} | null, lm, vision | null, projector_seed}}` for a base built from its parts.
    #[napi(getter)]
    pub fn base_report(&self) -> String {
        self.base_report.clone()
    }

    /// Visual tokens one image of `height`×`width` pixels becomes (what each image token expands to).
    #[napi]
    pub fn tokens_per_image(&self, height: i64, width: i64) -> napi::Result<i64> {
        tokens_per_image(&self.inner.lock()?.model, height, width)
    }

    /// One optimizer step: `pixels` (N, 3, H, W) float32 normalised, one image per row; `inputIds`,
    /// `attentionMask` (1/0, left padding), `labels` (−100 = ignored) of shape `idsShape` (B, T), B = N, one image
    /// token per row (expanded by the model) or already expanded. The rows are split into `microBatches` equal
    /// consecutive chunks (the config's gradAccumSteps). Resolves to the step report (JSON {step, loss, tokens,
    /// lr, lmLr, gradNorm, skipped}). Collective under a process group.
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &self,
        pixels: Float32Array,
        pixels_shape: Vec<i64>,
        input_ids: Int32Array,
        attention_mask: Int32Array,
        labels: Int32Array,
        ids_shape: Vec<i64>,
        micro_batches: u32,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = Inputs::new(&pixels, &pixels_shape, &input_ids, &attention_mask, Some(&labels), &ids_shape)?;
        let k = micro_batch_count(micro_batches, &ids_shape)?;
        let (inner, pg) = (self.inner.clone(), self.pg.clone());
        Ok(job("LLaVA step", move || {
            let mut t = inner.lock()?;
            let r = x.split(k).and_then(|parts| t.step(&parts.iter().map(Inputs::batch).collect::<Vec<_>>()));
            let rep = report(pg.as_deref(), || format!("LLaVA step {}", t.step), r)?;
            Ok(serde_json::to_string(&rep).expect("serializable"))
        }))
    }

    /// Eval-mode loss of a batch (the inputs of `step`, one batch): JSON {loss, tokens}. Local to this process.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn evaluate(
        &self,
        pixels: Float32Array,
        pixels_shape: Vec<i64>,
        input_ids: Int32Array,
        attention_mask: Int32Array,
        labels: Int32Array,
        ids_shape: Vec<i64>,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = Inputs::new(&pixels, &pixels_shape, &input_ids, &attention_mask, Some(&labels), &ids_shape)?;
        let inner = self.inner.clone();
        Ok(job("LLaVA evaluate", move || {
            let r = inner.lock()?.evaluate(&x.batch()).map_err(js_error)?;
            Ok(serde_json::to_string(&r).expect("serializable"))
        }))
    }

    /// Decodes after each row's prompt with the model being trained (adapters active, eval mode): the inputs of
    /// `step` without labels; `options` as `NativeLlavaModel.generate`. Resolves to JSON {tokens: [[ids]], scores:
    /// [..]}: each row's new tokens, EOS and everything after it removed.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn generate(
        &self,
        pixels: Float32Array,
        pixels_shape: Vec<i64>,
        input_ids: Int32Array,
        attention_mask: Int32Array,
        ids_shape: Vec<i64>,
        options: String,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = Inputs::new(&pixels, &pixels_shape, &input_ids, &attention_mask, None, &ids_shape)?;
        let d = lm_decoding(&options)?;
        let inner = self.inner.clone();
        Ok(job("LLaVA generate", move || run_generate(&inner.lock()?.model, &x, &d, |_, _| true)))
    }

    /// Writes the training state (trainable tensors, AdamW moments, counters, the base fingerprint; atomic) with
    /// `metadata`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_state(&self, path: String, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("saveState", move || inner.lock()?.save_state(&PathBuf::from(&path), metadata.unwrap_or_default()).map_err(js_error))
    }

    /// Restores a state written by `saveState` (strict; the same stage and base always, another configuration
    /// only with `force`); resolves to its metadata. Collective under a process group.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load_state(&self, path: String, force: Option<bool>) -> AsyncTask<Job<HashMap<String, String>, HashMap<String, String>>> {
        let (inner, pg) = (self.inner.clone(), self.pg.clone());
        job("loadState", move || {
            let mut t = inner.lock()?;
            let r = t.load_state(&PathBuf::from(&path), force.unwrap_or(false));
            report(pg.as_deref(), || format!("loading {path}"), r)
        })
    }

    /// Writes a transformers LlavaForConditionalGeneration folder (LoRA adapters merged in a copy; atomic files).
    /// `options`: JSON `{dtype?: "f32" | "bf16" | "f16", layout?: "legacy" | "nested", tokenizerFrom?: DIR}`
    /// (defaults f32, legacy; `tokenizerFrom`: a folder whose tokenizer files are copied; `cxformerExtensions`: also
    /// a model transformers does not compute, with cxformer's config keys).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_hf(&self, dir: String, options: String) -> napi::Result<AsyncTask<Job<(), ()>>> {
        let opts = save_options(&options)?;
        let inner = self.inner.clone();
        Ok(job("saveHf", move || inner.lock()?.save_hf(&PathBuf::from(&dir), &opts).map_err(js_error)))
    }

    /// Writes the LoRA adapters as a PEFT folder (`baseModel`: its base_model_name_or_path). Errors outside the
    /// LoRA stage.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_peft(&self, dir: String, base_model: Option<String>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("savePeft", move || inner.lock()?.save_peft(&PathBuf::from(&dir), base_model.as_deref()).map_err(js_error))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SaveHfJs {
    /// "f32" | "bf16" | "f16". @default "f32"
    #[serde(default)]
    dtype: Option<String>,
    /// "legacy" | "nested". @default "legacy"
    #[serde(default)]
    layout: Option<String>,
    #[serde(default)]
    tokenizer_from: Option<String>,
    /// Also write a model transformers does not compute (patch pooling, another projector) with cxformer's config
    /// keys. @default false
    #[serde(default)]
    cxformer_extensions: bool,
}

fn save_options(json: &str) -> napi::Result<SaveOptions> {
    let o: SaveHfJs = serde_json::from_str(json).map_err(|e| invalid(format!("saveHf options: {e}")))?;
    let kind = match o.dtype.as_deref().unwrap_or("f32") {
        "f32" => Kind::Float,
        "bf16" => Kind::BFloat16,
        "f16" => Kind::Half,
        d => return Err(invalid(format!("saveHf: dtype \"{d}\": expected \"f32\", \"bf16\" or \"f16\""))),
    };
    let layout = match o.layout.as_deref().unwrap_or("legacy") {
        "legacy" => KeyLayout::Legacy,
        "nested" => KeyLayout::Nested,
        l => return Err(invalid(format!("saveHf: layout \"{l}\": expected \"legacy\" or \"nested\""))),
    };
    Ok(SaveOptions { kind, layout, tokenizer_from: o.tokenizer_from.map(PathBuf::from), cxformer_extensions: o.cxformer_extensions })
}

// ---- an exported model ----

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoadModelJs {
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
    /// "f32" | "bf16". @default "f32"
    #[serde(default)]
    dtype: Option<String>,
    /// @default false
    #[serde(default)]
    allow_non_finite: bool,
}

/// Loads a transformers LlavaForConditionalGeneration folder (strict) off the JS thread. `options`: JSON
/// `{device?, dtype?: "f32" | "bf16", allowNonFinite?}`.
#[napi(ts_return_type = "Promise<NativeLlavaModel>")]
pub fn load_llava_model(dir: String, options: String) -> AsyncTask<Job<(LlavaModel, String), NativeLlavaModel>> {
    job_with(
        "loadLlavaModel",
        move || {
            let o: LoadModelJs = serde_json::from_str(&options).map_err(|e| invalid(format!("loadLlavaModel options: {e}")))?;
            let load = load_options(o.device.as_deref(), o.dtype.as_deref(), o.allow_non_finite)?;
            let (m, r) = LlavaModel::load(Path::new(&dir), &load).map_err(js_error)?;
            Ok((m, serde_json::to_string(&r).expect("serializable")))
        },
        |(m, load_report)| Ok(NativeLlavaModel { inner: Shared::new("LLaVA model", m), load_report }),
    )
}

/// An exported LLaVA, for generation.
#[napi]
pub struct NativeLlavaModel {
    inner: Shared<LlavaModel>,
    load_report: String,
}

#[napi]
impl NativeLlavaModel {
    /// The config.json object (float32), as JSON text.
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        config_json(&*self.inner.lock()?)
    }

    /// The generation ids: JSON `{bosTokenId, eosTokenIds, padTokenId}` (null when absent).
    #[napi(getter)]
    pub fn generation(&self) -> napi::Result<String> {
        Ok(generation_json(&self.inner.lock()?.generation))
    }

    /// What the load did (JSON {weights: {files, loaded, ignored, tied, source_dtypes}, layout}).
    #[napi(getter)]
    pub fn load_report(&self) -> String {
        self.load_report.clone()
    }

    /// Visual tokens one image of `height`×`width` pixels becomes (what each image token expands to).
    #[napi]
    pub fn tokens_per_image(&self, height: i64, width: i64) -> napi::Result<i64> {
        tokens_per_image(&*self.inner.lock()?, height, width)
    }

    /// Writes the model again as a transformers LlavaForConditionalGeneration folder (`LlavaModel::save_hf`, each
    /// file atomic). `options`: JSON `{dtype?: "f32" | "bf16" | "f16", layout?: "legacy" | "nested",
    /// tokenizerFrom?: DIR}` (defaults f32, legacy; `tokenizerFrom`: a folder whose tokenizer files are copied).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_hf(&self, dir: String, options: String) -> napi::Result<AsyncTask<Job<(), ()>>> {
        let opts = save_options(&options)?;
        let inner = self.inner.clone();
        Ok(job("saveHf", move || inner.lock()?.save_hf(&PathBuf::from(&dir), &opts).map_err(js_error)))
    }

    /// Decodes after each row's prompt: `pixels` (N, 3, H, W) float32 normalised, one image per row; `inputIds`
    /// and `attentionMask` (1/0, left padding) of shape `idsShape` (B, T), B = N, one image token per row or
    /// already expanded. `options`: JSON `{strategy?: "greedy" | "beam" | "sample", maxNewTokens? (100),
    /// numBeams?, lengthPenalty?, earlyStopping?, temperature?, topP?, seed?, eosTokenIds? (the ids that end a row;
    /// default the model's generation_config.json ones)}` (`noRepeatNgramSize` is refused).
    /// Resolves to JSON {tokens: [[ids]], scores: [..]}: each row's new tokens, EOS and everything after it removed.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn generate(
        &self,
        pixels: Float32Array,
        pixels_shape: Vec<i64>,
        input_ids: Int32Array,
        attention_mask: Int32Array,
        ids_shape: Vec<i64>,
        options: String,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = Inputs::new(&pixels, &pixels_shape, &input_ids, &attention_mask, None, &ids_shape)?;
        let d = lm_decoding(&options)?;
        let inner = self.inner.clone();
        Ok(job("LLaVA generate", move || run_generate(&*inner.lock()?, &x, &d, |_, _| true)))
    }

    /// `generate` that also hands each new token to `onToken(row, token)` on the JS thread as soon as it is chosen
    /// (greedy and sampling; beam search hands the best hypothesis's tokens over at the end, row by row; EOS
    /// included), as `NativeReportModel.generateStream` does: the calls are queued, never blocking the decoder,
    /// and arrive in order; the promise may settle before the last of them has arrived (its result holds every
    /// token). `onToken` returning `false` cancels the decoding: it stops at the next token it would hand over
    /// and the promise rejects with `cancelled`.
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn generate_stream(
        &self,
        pixels: Float32Array,
        pixels_shape: Vec<i64>,
        input_ids: Int32Array,
        attention_mask: Int32Array,
        ids_shape: Vec<i64>,
        options: String,
        #[napi(ts_arg_type = "(row: number, token: number) => boolean | void")] on_token: TokenCallback,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = Inputs::new(&pixels, &pixels_shape, &input_ids, &attention_mask, None, &ids_shape)?;
        let d = lm_decoding(&options)?;
        let inner = self.inner.clone();
        let on_token = stream_to(on_token);
        Ok(job("LLaVA generate", move || run_generate(&*inner.lock()?, &x, &d, on_token)))
    }
}

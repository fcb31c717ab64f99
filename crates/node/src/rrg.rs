//! The report captioner across N-API (crates/core/src/rrg/ and crates/core/src/text/ hold every convention):
//! train or load a tokenizer, create a trainer (teacher-forced steps on visual-memory features, evaluation, decoding,
//! training state, export), load an exported model to generate reports. Every long call is a [`Job`]; calls on one
//! instance are serialised. With a process group (worldSize > 1) the trainer is data-parallel: creation, every step
//! and every `loadState` are collective.
use crate::dist::NativeProcessGroup;
use crate::job::{Job, Shared, job, job_with, report};
use crate::{invalid, js_error, tensor_from};
use cxformer_core::dist::ProcessGroup;
use cxformer_core::rrg::generate::strip_eos;
use cxformer_core::rrg::{BeamOptions, EarlyStopping, GenerateOptions, MemoryInput, ReportModel, ReportTrainer, RrgTrainConfig, SampleOptions, Strategy, generate};
use cxformer_core::text::ReportTokenizer;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tch::Tensor;

// ---- tokenizer ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenizerOptions {
    /// "word" (R2Gen-like word level) or "bpe" (byte-level BPE).
    kind: String,
    /// word: words seen fewer times become [UNK]. @default 3
    #[serde(default)]
    min_count: Option<u64>,
    /// word: lowercase the text first. @default true
    #[serde(default)]
    lowercase: Option<bool>,
    /// bpe: vocabulary size. @default 4096
    #[serde(default)]
    vocab_size: Option<usize>,
}

/// Trains a tokenizer on `texts` off the JS thread; resolves to its `tokenizer.json` text. `options`: JSON
/// `{kind: "word" | "bpe", minCount?, lowercase?, vocabSize?}`.
#[napi(ts_return_type = "Promise<string>")]
pub fn train_report_tokenizer(texts: Vec<String>, options: String) -> napi::Result<AsyncTask<Job<String, String>>> {
    let o: TokenizerOptions = serde_json::from_str(&options).map_err(|e| invalid(format!("trainReportTokenizer options: {e}")))?;
    if o.kind != "word" && o.kind != "bpe" {
        return Err(invalid(format!("trainReportTokenizer: kind must be \"word\" or \"bpe\", got {:?}", o.kind)));
    }
    Ok(job("trainReportTokenizer", move || {
        let t = if o.kind == "word" {
            ReportTokenizer::train_word_level(&texts, o.min_count.unwrap_or(3), o.lowercase.unwrap_or(true))
        } else {
            ReportTokenizer::train_bpe(&texts, o.vocab_size.unwrap_or(4096))
        };
        t.and_then(|t| t.to_json()).map_err(js_error)
    }))
}

/// Token ids of several texts, back to back, with each text's length.
#[napi(object)]
pub struct EncodedTexts {
    pub ids: Int32Array,
    pub lengths: Vec<u32>,
}

/// A tokenizer (`tokenizer.json`), for encoding reports and decoding generated ids.
#[napi]
pub struct NativeReportTokenizer {
    inner: ReportTokenizer,
}

#[napi]
impl NativeReportTokenizer {
    /// Parses `tokenizer.json` text; `source` (a file name) is used in errors.
    #[napi(factory)]
    pub fn from_json(json: String, source: String) -> napi::Result<Self> {
        Ok(NativeReportTokenizer { inner: ReportTokenizer::from_json(&json, &source).map_err(js_error)? })
    }

    /// The `tokenizer.json` text.
    #[napi]
    pub fn to_json(&self) -> napi::Result<String> {
        self.inner.to_json().map_err(js_error)
    }

    /// Vocabulary size, special tokens included.
    #[napi(getter)]
    pub fn vocab_size(&self) -> i64 {
        self.inner.vocab_size()
    }

    /// JSON `{pad, bos, eos, unk}` ids.
    #[napi(getter)]
    pub fn specials(&self) -> String {
        let s = self.inner.specials();
        format!("{{\"pad\":{},\"bos\":{},\"eos\":{},\"unk\":{}}}", s.pad, s.bos, s.eos, s.unk)
    }

    /// Encodes each text (with `[BOS] … [EOS]` when `withSpecial`).
    #[napi]
    pub fn encode_batch(&self, texts: Vec<String>, with_special: bool) -> napi::Result<EncodedTexts> {
        let mut ids: Vec<i32> = Vec::new();
        let mut lengths = Vec::with_capacity(texts.len());
        for t in &texts {
            let e = self.inner.encode(t, with_special).map_err(js_error)?;
            lengths.push(e.len() as u32);
            ids.extend(e.into_iter().map(|x| x as i32));
        }
        Ok(EncodedTexts { ids: Int32Array::new(ids), lengths })
    }

    /// Decodes ids to text (special tokens skipped).
    #[napi]
    pub fn decode(&self, ids: Vec<i64>) -> napi::Result<String> {
        self.inner.decode(&ids).map_err(js_error)
    }
}

// ---- decoding options ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GenerateJs {
    /// "greedy" | "beam" | "sample". @default "greedy"
    #[serde(default)]
    strategy: Option<String>,
    /// @default 100
    #[serde(default)]
    max_new_tokens: Option<i64>,
    /// beam: @default 3
    #[serde(default)]
    num_beams: Option<i64>,
    /// beam: α. @default 1
    #[serde(default)]
    length_penalty: Option<f64>,
    /// beam: "heuristic" | "never" | "always". @default "heuristic"
    #[serde(default)]
    early_stopping: Option<EarlyStopping>,
    /// @default 0 (off)
    #[serde(default)]
    no_repeat_ngram_size: Option<i64>,
    /// sample: @default 1
    #[serde(default)]
    temperature: Option<f64>,
    /// sample: @default 1
    #[serde(default)]
    top_p: Option<f64>,
    /// sample: keep the k most probable tokens (0 = off). @default 0
    #[serde(default)]
    top_k: Option<i64>,
    /// sample: @default 0
    #[serde(default)]
    seed: Option<u64>,
    /// LM decoder only: the ids that end a row, instead of the model's generation_config.json EOS ids (e.g. those
    /// and a chat template's end-of-turn token).
    #[serde(default)]
    eos_token_ids: Option<Vec<i64>>,
}

/// The decoding choices of a `generate` options JSON, shared by the report decoder and the LM decoder
/// (crate::llava), each of which builds its own options from them.
pub(crate) struct Decoding {
    pub strategy: Strategy,
    /// @default 100
    pub max_new_tokens: i64,
    /// 0 = off.
    pub no_repeat_ngram_size: i64,
    /// The ids that end a row instead of the model's own (LM decoder only).
    pub eos_token_ids: Option<Vec<i64>>,
}

/// Parses a `generate` options JSON (`{strategy?, maxNewTokens?, numBeams?, lengthPenalty?, earlyStopping?,
/// noRepeatNgramSize?, temperature?, topP?, topK?, seed?, eosTokenIds?}`, unknown fields refused) with the defaults of [`GenerateJs`].
pub(crate) fn decoding_options(json: &str) -> napi::Result<Decoding> {
    let o: GenerateJs = serde_json::from_str(json).map_err(|e| invalid(format!("generate options: {e}")))?;
    let strategy = match o.strategy.as_deref().unwrap_or("greedy") {
        "greedy" => Strategy::Greedy,
        "beam" => Strategy::Beam(BeamOptions {
            num_beams: o.num_beams.unwrap_or(3),
            length_penalty: o.length_penalty.unwrap_or(1.0),
            early_stopping: o.early_stopping.unwrap_or(EarlyStopping::Heuristic),
        }),
        "sample" => Strategy::Sample(SampleOptions { temperature: o.temperature.unwrap_or(1.0), top_p: o.top_p.unwrap_or(1.0), top_k: o.top_k.unwrap_or(0), seed: o.seed.unwrap_or(0) }),
        s => return Err(invalid(format!("generate: strategy must be \"greedy\", \"beam\" or \"sample\", got {s:?}"))),
    };
    Ok(Decoding { strategy, max_new_tokens: o.max_new_tokens.unwrap_or(100), no_repeat_ngram_size: o.no_repeat_ngram_size.unwrap_or(0), eos_token_ids: o.eos_token_ids })
}

fn generate_options(json: &str) -> napi::Result<GenerateOptions> {
    let d = decoding_options(json)?;
    if d.eos_token_ids.is_some() {
        return Err(invalid("generate: eosTokenIds applies to the LM decoder (LLaVA) only; the captioner ends a report at its [EOS]"));
    }
    Ok(GenerateOptions { strategy: d.strategy, max_new_tokens: d.max_new_tokens, no_repeat_ngram_size: d.no_repeat_ngram_size, return_step_logits: false })
}

/// One generated report per row: its token ids (EOS removed) and score.
#[derive(Serialize)]
struct GeneratedJs {
    tokens: Vec<Vec<i64>>,
    scores: Vec<f64>,
}

fn run_generate(model: &ReportModel, features: &Tensor, opts: &GenerateOptions, on_token: impl FnMut(usize, i64) -> bool) -> napi::Result<String> {
    let device = model.vs.device();
    let x = features.f_to_device(device).map_err(|e| js_error(e.into()))?;
    let g = generate(model, &x, None, opts, on_token).map_err(js_error)?;
    let eos = model.cfg.eos_id;
    let out = GeneratedJs { tokens: g.tokens.iter().map(|t| strip_eos(t, eos).to_vec()).collect(), scores: g.scores };
    Ok(serde_json::to_string(&out).expect("serializable"))
}

fn features_of(features: &[f32], shape: &[i64]) -> napi::Result<Tensor> {
    if shape.len() != 3 {
        return Err(invalid(format!("featuresShape: expected [batch, memory tokens, width], got {shape:?}")));
    }
    tensor_from(features, shape, "features")
}

pub(crate) fn pixels_of(pixels: &[f32], shape: &[i64]) -> napi::Result<Tensor> {
    if shape.len() != 4 || shape[1] != 3 {
        return Err(invalid(format!("pixelsShape: expected [batch, 3, height, width], got {shape:?}")));
    }
    tensor_from(pixels, shape, "pixels")
}

fn tokens_of(tokens: &[i32], shape: &[i64]) -> napi::Result<Tensor> {
    ids_of(tokens, shape, "tokens", "tokensShape")
}

/// A (batch, length) int64 tensor of an Int32Array (`name`) and its shape (`shape_name`), both named in errors.
pub(crate) fn ids_of(values: &[i32], shape: &[i64], name: &str, shape_name: &str) -> napi::Result<Tensor> {
    if shape.len() != 2 || shape.iter().any(|&s| s < 0) {
        return Err(invalid(format!("{shape_name}: expected [batch, length], got {shape:?}")));
    }
    let n: i64 = shape.iter().product();
    if n as usize != values.len() {
        return Err(invalid(format!("{name}: {shape_name} {shape:?} needs {n} values but the Int32Array has {}", values.len())));
    }
    let v: Vec<i64> = values.iter().map(|&t| t as i64).collect();
    let shape = shape.to_vec();
    Ok(crate::compute::run(move || Tensor::from_slice(&v).reshape(&shape)))
}

// ---- trainer ----

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOptions {
    /// RrgTrainConfig JSON (camelCase).
    config: serde_json::Value,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
    /// Initialisation and dropout seed. @default 0
    #[serde(default)]
    seed: i64,
    /// With an `encoder` in the config: its initial weights (safetensors, any supported layout); absent = DINOv2's
    /// from-scratch init.
    #[serde(default)]
    encoder_weights: Option<String>,
}

fn create(options: &str, pg: Option<Arc<ProcessGroup>>) -> napi::Result<(ReportTrainer, Option<Arc<ProcessGroup>>)> {
    let o: CreateOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createReportTrainer options: {e}")))?;
    let cfg = RrgTrainConfig::from_json(&o.config.to_string()).map_err(js_error)?;
    let device = cxformer_core::runtime::parse_device(o.device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
    let weights = o.encoder_weights.as_ref().map(PathBuf::from);
    let (mut t, _) = ReportTrainer::create_with(cfg, device, o.seed, weights.as_deref()).map_err(js_error)?;
    let pg = pg.filter(|pg| pg.world() > 1);
    if let Some(pg) = &pg {
        t.set_dist(Box::new(pg.clone())).map_err(js_error)?;
    }
    Ok((t, pg))
}

/// Builds a captioner trainer (fresh model + AdamW) off the JS thread. `options`: JSON `{config, device?, seed?,
/// encoderWeights?}` (`encoderWeights`: the initial weights of the encoder trained end to end, config `encoder`).
/// With a `processGroup` of worldSize > 1 every rank must create it (rank 0's state is broadcast) and every step
/// and `loadState` is collective.
#[napi(ts_return_type = "Promise<NativeReportTrainer>")]
#[allow(clippy::type_complexity)]
pub fn create_report_trainer(
    options: String,
    process_group: Option<&NativeProcessGroup>,
) -> AsyncTask<Job<(ReportTrainer, Option<Arc<ProcessGroup>>), NativeReportTrainer>> {
    let pg = process_group.map(|p| p.pg.clone());
    job_with("createReportTrainer", move || create(&options, pg), |(t, pg)| Ok(NativeReportTrainer { inner: Shared::new("report trainer", t), pg }))
}

#[napi]
pub struct NativeReportTrainer {
    inner: Shared<ReportTrainer>,
    pg: Option<Arc<ProcessGroup>>,
}

/// What a step or an evaluation reads, moved into its job.
enum Input {
    Features(Tensor),
    Pixels(Tensor),
}

impl Input {
    fn memory(&self) -> MemoryInput<'_> {
        match self {
            Input::Features(t) => MemoryInput::Features(t),
            Input::Pixels(t) => MemoryInput::Pixels(t),
        }
    }
}

impl NativeReportTrainer {
    /// A training step as a job (collective under a process group; a failure is recorded for the peers).
    fn step_job(&self, input: Input, tokens: Tensor) -> AsyncTask<Job<String, String>> {
        let (inner, pg) = (self.inner.clone(), self.pg.clone());
        job("report step", move || {
            let mut t = inner.lock()?;
            let r = t.step_input(input.memory(), None, &tokens);
            let rep = report(pg.as_deref(), || format!("report step {}", t.step), r)?;
            Ok(serde_json::to_string(&rep).expect("serializable"))
        })
    }

    /// An evaluation as a job (local to this process).
    fn evaluate_job(&self, input: Input, tokens: Tensor) -> AsyncTask<Job<String, String>> {
        let inner = self.inner.clone();
        job("report evaluate", move || {
            let r = inner.lock()?.evaluate_input(input.memory(), None, &tokens).map_err(js_error)?;
            Ok(serde_json::to_string(&r).expect("serializable"))
        })
    }
}

#[napi]
impl NativeReportTrainer {
    /// The resolved RrgTrainConfig (JSON, defaults filled in).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.cfg.to_json())
    }

    /// Scheduled steps taken.
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.step)
    }

    /// Parameters of the model.
    #[napi(getter)]
    pub fn num_parameters(&self) -> napi::Result<i64> {
        let t = self.inner.lock()?;
        Ok(t.optimizer.slots.iter().map(|s| s.param.numel() as i64).sum())
    }

    /// One teacher-forced step: `features` (B, M, D_vit) float32, `tokens` (B, T) `[BOS] … [EOS]` right-padded with
    /// the pad id. Resolves to the step report (JSON {step, loss, tokens, lr, gradNorm, skipped}).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step(&self, features: Float32Array, features_shape: Vec<i64>, tokens: Int32Array, tokens_shape: Vec<i64>) -> napi::Result<AsyncTask<Job<String, String>>> {
        Ok(self.step_job(Input::Features(features_of(&features, &features_shape)?), tokens_of(&tokens, &tokens_shape)?))
    }

    /// `step` of a trainer with an encoder (config `encoder`): normalised pixels (B, 3, H, W) instead of features.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step_pixels(&self, pixels: Float32Array, pixels_shape: Vec<i64>, tokens: Int32Array, tokens_shape: Vec<i64>) -> napi::Result<AsyncTask<Job<String, String>>> {
        Ok(self.step_job(Input::Pixels(pixels_of(&pixels, &pixels_shape)?), tokens_of(&tokens, &tokens_shape)?))
    }

    /// `evaluate` of a trainer with an encoder, on normalised pixels: JSON {loss, tokens}.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn evaluate_pixels(&self, pixels: Float32Array, pixels_shape: Vec<i64>, tokens: Int32Array, tokens_shape: Vec<i64>) -> napi::Result<AsyncTask<Job<String, String>>> {
        Ok(self.evaluate_job(Input::Pixels(pixels_of(&pixels, &pixels_shape)?), tokens_of(&tokens, &tokens_shape)?))
    }

    /// The memory features (B, M, D_vit) of normalised pixels under the encoder being trained (eval mode), for
    /// `generate` and retrieval.
    #[napi(ts_return_type = "Promise<NamedTensor>")]
    pub fn memory(&self, pixels: Float32Array, pixels_shape: Vec<i64>) -> napi::Result<AsyncTask<Job<Tensor, crate::NamedTensor>>> {
        let x = pixels_of(&pixels, &pixels_shape)?;
        let inner = self.inner.clone();
        Ok(job_with("report memory", move || Ok(crate::cpu_contiguous(&inner.lock()?.memory(&x).map_err(js_error)?)), |t| crate::named("memory", &t)))
    }

    /// Writes the encoder being trained (HF names, float32; atomic) to `file`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn export_encoder(&self, file: String) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("exportEncoder", move || inner.lock()?.export_encoder(&PathBuf::from(&file)).map_err(js_error))
    }

    /// Eval-mode loss of a batch: JSON {loss, tokens}.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn evaluate(&self, features: Float32Array, features_shape: Vec<i64>, tokens: Int32Array, tokens_shape: Vec<i64>) -> napi::Result<AsyncTask<Job<String, String>>> {
        Ok(self.evaluate_job(Input::Features(features_of(&features, &features_shape)?), tokens_of(&tokens, &tokens_shape)?))
    }

    /// Decodes a report per row of `features` (B, M, D_vit) with the model being trained; `options` as
    /// `NativeReportModel.generate`. Resolves to JSON {tokens: [[ids]], scores: [..]} (EOS removed).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn generate(&self, features: Float32Array, features_shape: Vec<i64>, options: String) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = features_of(&features, &features_shape)?;
        let opts = generate_options(&options)?;
        let inner = self.inner.clone();
        Ok(job("report generate", move || run_generate(&inner.lock()?.model, &x, &opts, |_, _| true)))
    }

    /// Writes the whole training state (atomic) with `metadata`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_state(&self, path: String, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("saveState", move || inner.lock()?.save_state(&PathBuf::from(&path), metadata.unwrap_or_default()).map_err(js_error))
    }

    /// Restores a state written by `saveState` (strict; another configuration only with `force`); resolves to its
    /// metadata. Collective under a process group.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load_state(&self, path: String, force: Option<bool>) -> AsyncTask<Job<HashMap<String, String>, HashMap<String, String>>> {
        let (inner, pg) = (self.inner.clone(), self.pg.clone());
        job("loadState", move || {
            let mut t = inner.lock()?;
            let r = t.load_state(&PathBuf::from(&path), force.unwrap_or(false));
            report(pg.as_deref(), || format!("loading {path}"), r)
        })
    }

    /// Writes `model.safetensors` + `config.json` into `dir` (atomic files) with `metadata`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn export(&self, dir: String, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("export", move || inner.lock()?.export(&PathBuf::from(&dir), metadata.unwrap_or_default()).map_err(js_error))
    }
}

// ---- an exported model ----

/// Loads an exported captioner folder (`model.safetensors` + `config.json`, strict) off the JS thread.
#[napi(ts_return_type = "Promise<NativeReportModel>")]
pub fn load_report_model(dir: String, device: Option<String>) -> AsyncTask<Job<ReportModel, NativeReportModel>> {
    job_with(
        "loadReportModel",
        move || {
            let device = cxformer_core::runtime::parse_device(device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
            ReportModel::load(&PathBuf::from(&dir), device).map_err(js_error)
        },
        |m| Ok(NativeReportModel { inner: Shared::new("report model", m) }),
    )
}

#[napi]
pub struct NativeReportModel {
    inner: Shared<ReportModel>,
}

#[napi]
impl NativeReportModel {
    /// The model's RrgConfig (JSON).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.cfg.to_json())
    }

    /// Decodes a report per row of `features` (B, M, D_vit). `options`: JSON `{strategy?: "greedy" | "beam" |
    /// "sample", maxNewTokens?, numBeams?, lengthPenalty?, earlyStopping?, noRepeatNgramSize?, temperature?, topP?,
    /// seed?}`. Resolves to JSON {tokens: [[ids]], scores: [..]} (EOS removed).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn generate(&self, features: Float32Array, features_shape: Vec<i64>, options: String) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = features_of(&features, &features_shape)?;
        let opts = generate_options(&options)?;
        let inner = self.inner.clone();
        Ok(job("report generate", move || {
            let m = inner.lock()?;
            run_generate(&m, &x, &opts, |_, _| true)
        }))
    }

    /// `generate` that also hands each token to `onToken(row, token)` on the JS thread as soon as it is chosen
    /// (greedy and sampling; beam search knows its tokens only at the end and hands them over then, row by row;
    /// EOS included). The calls are queued, never blocking the decoder, and arrive in order; the promise may settle
    /// before the last of them has arrived (its result holds every token). `onToken` returning `false` cancels the decoding: it stops at the next token it would
    /// hand over (a few tokens later, as the calls are asynchronous) and the promise rejects with `cancelled`.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn generate_stream(
        &self,
        features: Float32Array,
        features_shape: Vec<i64>,
        options: String,
        #[napi(ts_arg_type = "(row: number, token: number) => boolean | void")] on_token: TokenCallback,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = features_of(&features, &features_shape)?;
        let opts = generate_options(&options)?;
        let inner = self.inner.clone();
        let on_token = stream_to(on_token);
        Ok(job("report generate", move || {
            let m = inner.lock()?;
            run_generate(&m, &x, &opts, on_token)
        }))
    }
}

/// `onToken(row, token)` of `generateStream`, called from the compute thread; its return value says whether to go on.
pub(crate) type TokenCallback = ThreadsafeFunction<FnArgs<(u32, u32)>, Option<bool>, FnArgs<(u32, u32)>, napi::Status, false>;

/// The `on_token(row, token)` of a decoder that streams to `callback` (the semantics of `generateStream`): each
/// token is queued for the JS thread without blocking; once `callback` has answered `false` (or thrown) the next
/// call says stop, and so does a call that finds the JS side gone; the decoder then fails with `cancelled`.
pub(crate) fn stream_to(callback: TokenCallback) -> impl FnMut(usize, i64) -> bool + Send {
    let stop = Arc::new(AtomicBool::new(false));
    move |row, token| {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let stop = stop.clone();
        let status = callback.call_with_return_value(FnArgs::from((row as u32, token as u32)), ThreadsafeFunctionCallMode::NonBlocking, move |r: napi::Result<Option<bool>>, _| {
            if matches!(r, Ok(Some(false)) | Err(_)) {
                stop.store(true, Ordering::Relaxed);
            }
            Ok(())
        });
        // Closing: the JS side is gone (the environment is shutting down); nothing is listening.
        status == napi::Status::Ok
    }
}

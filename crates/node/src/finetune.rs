//! Full fine-tuning across N-API (crates/core/src/finetune.rs has every convention): create a fine-tuner, train
//! steps on decoded images + a crop plan (augmented natively) or on normalised pixels, predict, save/load the
//! training state, export backbone + head. Every call is an AsyncTask; calls on one instance are serialised.
//! With a process group (worldSize > 1) the fine-tuner is data-parallel: creation, every step and every
//! `loadState` are collective (docs/distributed.md).
use crate::dist::NativeProcessGroup;
use crate::{NamedTensor, guarded, invalid, js_error, named, tensor_from};
use cxformer_core::augment::parse_crops;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::finetune::{FineTuner, FinetuneConfig, StepReport};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tch::{Kind, Tensor};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOptions {
    /// FinetuneConfig JSON (camelCase, `model` snake_case VitConfig).
    config: serde_json::Value,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
    /// Backbone weights (safetensors, any supported layout); absent = DINOv2's from-scratch init.
    #[serde(default)]
    init_weights: Option<String>,
    /// Seed of the from-scratch backbone init. @default 0
    #[serde(default)]
    seed: i64,
}

type Shared = Arc<Mutex<FineTuner>>;

fn lock(s: &Shared) -> napi::Result<std::sync::MutexGuard<'_, FineTuner>> {
    s.lock().map_err(|_| invalid("fine-tuner is poisoned by an earlier panic"))
}

pub struct CreateTask {
    options: String,
    pg: Option<Arc<ProcessGroup>>,
}

impl Task for CreateTask {
    type Output = (FineTuner, String, Option<Arc<ProcessGroup>>);
    type JsValue = NativeFinetuner;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("createFinetuner", || {
            let o: CreateOptions = serde_json::from_str(&self.options).map_err(|e| invalid(format!("createFinetuner options: {e}")))?;
            let cfg = FinetuneConfig::from_json(&o.config.to_string()).map_err(js_error)?;
            let device = cxformer_core::runtime::parse_device(o.device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
            let init = o.init_weights.as_ref().map(PathBuf::from);
            let (mut ft, report) = FineTuner::new(cfg, device, init.as_deref(), o.seed).map_err(js_error)?;
            let report = match report {
                Some(r) => serde_json::to_string(&r).expect("serializable"),
                None => format!("{{\"random_init\":true,\"seed\":{}}}", o.seed),
            };
            // Data parallelism: rank 0's initial state is broadcast (collective: every rank creates its fine-tuner).
            let pg = self.pg.take().filter(|pg| pg.world() > 1);
            if let Some(pg) = &pg {
                ft.set_dist(Box::new(pg.clone())).map_err(js_error)?;
            }
            Ok((ft, report, pg))
        })
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<NativeFinetuner> {
        Ok(NativeFinetuner { inner: Arc::new(Mutex::new(out.0)), report: out.1, pg: out.2 })
    }
}

/// Builds a fine-tuner (backbone + classification head + AdamW) off the JS thread. `options`: JSON
/// `{config, device?, initWeights?, seed?}`. With a `processGroup` of worldSize > 1 the fine-tuner is
/// data-parallel: every rank must create it (rank 0's initial state is broadcast), and every step and every
/// `loadState` is collective (each rank reads the file, then rank 0's state is broadcast); step reports hold the
/// loss and supervised entries of the global batch, gradients are averaged over all its supervised entries.
#[napi(ts_return_type = "Promise<NativeFinetuner>")]
pub fn create_finetuner(options: String, process_group: Option<&NativeProcessGroup>) -> AsyncTask<CreateTask> {
    AsyncTask::new(CreateTask { options, pg: process_group.map(|p| p.pg.clone()) })
}

#[napi]
pub struct NativeFinetuner {
    inner: Shared,
    report: String,
    /// The process group of a data-parallel run (world > 1), shared with its JS handle.
    pg: Option<Arc<ProcessGroup>>,
}

enum StepInput {
    Pixels(Tensor),
    Images { planes: Vec<Tensor>, crops: String, size: i64 },
}

pub struct StepTask {
    inner: Shared,
    pg: Option<Arc<ProcessGroup>>,
    input: Option<StepInput>,
    targets: Tensor,
    mask: Tensor,
}

impl Task for StepTask {
    type Output = StepReport;
    type JsValue = String;
    fn compute(&mut self) -> napi::Result<StepReport> {
        guarded("finetune step", || {
            let input = self.input.take().ok_or_else(|| invalid("step task ran twice"))?;
            let mut ft = lock(&self.inner)?;
            let result = match input {
                StepInput::Pixels(x) => ft.train_step(&x, &self.targets, &self.mask),
                StepInput::Images { planes, crops, size } => {
                    let crops = parse_crops(&crops).map_err(js_error)?;
                    if let Some((i, c)) = crops.iter().enumerate().find(|(_, c)| c.globals.len() != 1 || !c.locals.is_empty()) {
                        return Err(invalid(format!(
                            "crops: image {i} has {} global and {} local crop(s); fine-tuning takes exactly one global crop per image",
                            c.globals.len(),
                            c.locals.len()
                        )));
                    }
                    ft.train_step_images(&planes, &crops, size, &self.targets, &self.mask)
                }
            };
            if let (Err(e), Some(pg)) = (&result, &self.pg) {
                // Let the peers' failing collectives name this rank and its error.
                pg.report_error(&format!("fine-tuning step {}: [{}] {e}", ft.step, e.code()));
            }
            result.map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, out: StepReport) -> napi::Result<String> {
        Ok(serde_json::to_string(&out).expect("serializable"))
    }
}

/// Probabilities (and, with targets, the summed loss over the supervised entries and their count).
#[napi(object)]
pub struct FinetunePrediction {
    pub probs: NamedTensor,
    pub loss_sum: Option<f64>,
    pub entries: Option<i64>,
}

pub struct PredictTask {
    inner: Shared,
    pixels: Tensor,
    targets: Option<(Tensor, Tensor)>,
}

impl Task for PredictTask {
    type Output = (Tensor, Option<f64>, Option<i64>);
    type JsValue = FinetunePrediction;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("finetune predict", || {
            let ft = lock(&self.inner)?;
            let p = ft.predict(&self.pixels, self.targets.as_ref().map(|(y, m)| (y, m))).map_err(js_error)?;
            Ok((p.probs, p.loss_sum, p.entries))
        })
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<FinetunePrediction> {
        Ok(FinetunePrediction { probs: named("probs", &out.0)?, loss_sum: out.1, entries: out.2 })
    }
}

pub struct SaveTask {
    inner: Shared,
    path: String,
    metadata: HashMap<String, String>,
}

impl Task for SaveTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        guarded("saveState", || {
            let ft = lock(&self.inner)?;
            ft.save_state(&PathBuf::from(&self.path), std::mem::take(&mut self.metadata)).map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, _o: ()) -> napi::Result<()> {
        Ok(())
    }
}

pub struct LoadTask {
    inner: Shared,
    path: String,
    force: bool,
}

impl Task for LoadTask {
    type Output = HashMap<String, String>;
    type JsValue = HashMap<String, String>;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("loadState", || {
            let mut ft = lock(&self.inner)?;
            ft.load_state(&PathBuf::from(&self.path), self.force).map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, o: Self::Output) -> napi::Result<Self::JsValue> {
        Ok(o)
    }
}

pub struct ExportTask {
    inner: Shared,
    backbone: String,
    head: String,
    metadata: HashMap<String, String>,
}

impl Task for ExportTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        guarded("exportModel", || {
            let ft = lock(&self.inner)?;
            ft.export(&PathBuf::from(&self.backbone), &PathBuf::from(&self.head), std::mem::take(&mut self.metadata)).map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, _o: ()) -> napi::Result<()> {
        Ok(())
    }
}

fn targets_of(targets: &[f32], shape: &[i64], mask: &[u8]) -> napi::Result<(Tensor, Tensor)> {
    if shape.len() != 2 {
        return Err(invalid(format!("targetsShape: expected [rows, classes], got {shape:?}")));
    }
    let y = tensor_from(targets, shape, "targets")?;
    let n: i64 = shape.iter().product();
    if mask.len() as i64 != n {
        return Err(invalid(format!("mask: targetsShape {shape:?} needs {n} values but the Uint8Array has {}", mask.len())));
    }
    let m = Tensor::from_slice(mask).reshape(shape).to_kind(Kind::Uint8);
    Ok((y, m))
}

#[napi]
impl NativeFinetuner {
    /// JSON: what loading the initial backbone did (layout, ignored keys), or {random_init, seed}.
    #[napi(getter)]
    pub fn init_report(&self) -> String {
        self.report.clone()
    }

    /// The resolved FinetuneConfig (JSON, defaults filled in).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(lock(&self.inner)?.cfg.to_json())
    }

    /// Ranks of the data-parallel group (1 without a process group).
    #[napi(getter)]
    pub fn world_size(&self) -> i64 {
        self.pg.as_ref().map(|p| p.world()).unwrap_or(1)
    }

    /// Scheduled steps taken (train-step calls, skipped batches included).
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(lock(&self.inner)?.step)
    }

    /// Optimizer updates taken.
    #[napi(getter)]
    pub fn optimizer_steps(&self) -> napi::Result<i64> {
        Ok(lock(&self.inner)?.optimizer.step)
    }

    /// JSON array of [name, lr multiplier relative to the head lr, weight-decay multiplier] per parameter.
    #[napi(getter)]
    pub fn param_groups(&self) -> napi::Result<String> {
        Ok(serde_json::to_string(&lock(&self.inner)?.groups()).expect("serializable"))
    }

    /// One step on decoded images: `images` holds the uint8 gray planes back to back, `sizes` their [h0, w0, …];
    /// `crops` the JSON crop plan (one {globals: [one crop], locals: []} per image), `size` the crop side;
    /// targets/mask (B, C) row-major (mask nonzero = supervised). Resolves to the step report (JSON).
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn step_images(
        &self,
        images: Uint8Array,
        sizes: Vec<i64>,
        crops: String,
        size: i64,
        targets: Float32Array,
        targets_shape: Vec<i64>,
        mask: Uint8Array,
    ) -> napi::Result<AsyncTask<StepTask>> {
        let planes = crate::planes_from(&images, &sizes)?;
        let (targets, mask) = targets_of(&targets, &targets_shape, &mask)?;
        Ok(AsyncTask::new(StepTask { inner: self.inner.clone(), pg: self.pg.clone(), input: Some(StepInput::Images { planes, crops, size }), targets, mask }))
    }

    /// One step on normalised pixels (B, 3, H, W) float32.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step_pixels(
        &self,
        pixels: Float32Array,
        shape: Vec<i64>,
        targets: Float32Array,
        targets_shape: Vec<i64>,
        mask: Uint8Array,
    ) -> napi::Result<AsyncTask<StepTask>> {
        let x = tensor_from(&pixels, &shape, "pixels")?;
        let (targets, mask) = targets_of(&targets, &targets_shape, &mask)?;
        Ok(AsyncTask::new(StepTask { inner: self.inner.clone(), pg: self.pg.clone(), input: Some(StepInput::Pixels(x)), targets, mask }))
    }

    /// Eval-mode probabilities of normalised pixels; with targets + mask also the summed loss and entry count.
    #[napi(ts_return_type = "Promise<FinetunePrediction>")]
    pub fn predict(
        &self,
        pixels: Float32Array,
        shape: Vec<i64>,
        targets: Option<Float32Array>,
        targets_shape: Option<Vec<i64>>,
        mask: Option<Uint8Array>,
    ) -> napi::Result<AsyncTask<PredictTask>> {
        let x = tensor_from(&pixels, &shape, "pixels")?;
        let targets = match (targets, targets_shape, mask) {
            (Some(t), Some(s), Some(m)) => Some(targets_of(&t, &s, &m)?),
            (None, None, None) => None,
            _ => return Err(invalid("targets, targetsShape and mask must be given together")),
        };
        Ok(AsyncTask::new(PredictTask { inner: self.inner.clone(), pixels: x, targets }))
    }

    /// Writes the whole training state (atomic) with `metadata` (epoch, batch position, history…).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_state(&self, path: String, metadata: Option<HashMap<String, String>>) -> AsyncTask<SaveTask> {
        AsyncTask::new(SaveTask { inner: self.inner.clone(), path, metadata: metadata.unwrap_or_default() })
    }

    /// Restores a state written by `saveState` (strict on tensors; another configuration only with `force`);
    /// resolves to its metadata.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load_state(&self, path: String, force: Option<bool>) -> AsyncTask<LoadTask> {
        AsyncTask::new(LoadTask { inner: self.inner.clone(), path, force: force.unwrap_or(false) })
    }

    /// Writes the backbone (HF names, float32) and the head (`cxformer-probe-head`, `headMetadata` added), atomically.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn export_model(&self, backbone_file: String, head_file: String, head_metadata: Option<HashMap<String, String>>) -> AsyncTask<ExportTask> {
        AsyncTask::new(ExportTask { inner: self.inner.clone(), backbone: backbone_file, head: head_file, metadata: head_metadata.unwrap_or_default() })
    }
}

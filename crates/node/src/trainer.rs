//! The SSL trainer across N-API: create (from scratch, pretrained weights or a checkpoint), step on
//! explicit crops or on decoded images + a crop plan, save/load checkpoints. Every call is a [`Job`].
use crate::dist::NativeProcessGroup;
use crate::job::{Job, Shared, job, job_with, report};
use crate::{guarded, invalid, js_error, tensor_from};
use cxformer_core::augment::multicrop::multicrop_imagenet;
use cxformer_core::augment::params::parse_crops;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::ssl::{SslBatch, SslConfig, SslInput, SslModel, StepSchedule, init};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Kind, Tensor};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TrainerOptions {
    ssl: SslConfig,
    #[serde(default = "cpu")]
    device: String,
    #[serde(default)]
    seed: i64,
    /// Pretrained backbone (continual pretraining).
    init_weights: Option<String>,
    /// Pretrained heads (dino_head.safetensors).
    init_heads: Option<String>,
}

fn cpu() -> String {
    "cpu".into()
}

pub struct Inner {
    model: SslModel,
    /// The process group of a data-parallel run (world > 1), shared with its JS handle.
    pg: Option<Arc<ProcessGroup>>,
}

/// Builds the trainer of `createTrainer`: the model, its initialisation report (JSON) and, with W > 1, the process
/// group it joined (collective: rank 0's initial state is broadcast).
fn create(options: &str, pg: Option<Arc<ProcessGroup>>) -> napi::Result<(Inner, String)> {
    let o: TrainerOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createTrainer options: {e}")))?;
    o.ssl.model.validate().map_err(js_error)?;
    let device = cxformer_core::runtime::parse_device(&o.device).map_err(js_error)?;
    let mut model = SslModel::new(o.ssl, device, o.seed).map_err(js_error)?;
    let mut report = serde_json::Map::new();
    if let Some(w) = &o.init_weights {
        let r = init::init_backbone(&mut model, &PathBuf::from(w)).map_err(js_error)?;
        report.insert("initWeights".into(), serde_json::to_value(r).expect("serializable"));
    }
    if let Some(h) = &o.init_heads {
        let keys = init::init_heads(&mut model, &PathBuf::from(h)).map_err(js_error)?;
        report.insert("initHeads".into(), keys.len().into());
    }
    let pg = pg.filter(|pg| pg.world() > 1);
    if let Some(pg) = &pg {
        model.set_dist(Box::new(pg.clone())).map_err(js_error)?;
        report.insert("worldSize".into(), pg.world().into());
    }
    Ok((Inner { model, pg }, serde_json::Value::Object(report).to_string()))
}

/// Builds the SSL model (student, EMA teacher, heads, AdamW) off the JS thread. `options`: JSON
/// `{ssl, device?, seed?, initWeights?, initHeads?}`. With a `processGroup` of worldSize > 1 the trainer is
/// data-parallel (DDP): every rank must create it (rank 0's initial state is broadcast), and every step, and
/// every `loadCheckpoint`, is collective; step records hold losses averaged over the ranks.
#[napi(ts_return_type = "Promise<NativeTrainer>")]
pub fn create_trainer(options: String, process_group: Option<&NativeProcessGroup>) -> AsyncTask<Job<(Inner, String), NativeTrainer>> {
    let pg = process_group.map(|p| p.pg.clone());
    job_with("createTrainer", move || create(&options, pg), |(inner, report)| Ok(NativeTrainer { inner: Shared::new("trainer", inner), report }))
}

#[napi]
pub struct NativeTrainer {
    inner: Shared<Inner>,
    report: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StepOptions {
    iteration: i64,
    schedule: StepSchedule,
    /// Gradient accumulation: this call is micro-batch `micro` of `of`; the update happens on the last one.
    #[serde(default)]
    micro: Option<i64>,
    #[serde(default)]
    of: Option<i64>,
    /// Synchronise CUDA at stage boundaries for exact per-stage timings.
    #[serde(default)]
    profile: bool,
}

fn masks_tensor(masks: &[u8], shape: &[i64]) -> napi::Result<Tensor> {
    let n: i64 = shape.iter().product();
    if shape.len() != 2 || n as usize != masks.len() {
        return Err(invalid(format!("masks: expected a [rows, patches] shape matching {} bytes, got {shape:?}", masks.len())));
    }
    Ok(crate::bytes_tensor(masks, shape, Kind::Bool))
}

#[napi]
impl NativeTrainer {
    /// JSON: what initialisation loaded (layout, ignored keys, head keys).
    #[napi(getter)]
    pub fn init_report(&self) -> String {
        self.report.clone()
    }

    /// Number of optimizer updates taken so far.
    #[napi(getter)]
    pub fn optimizer_steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.model.optimizer.step)
    }

    /// One step on explicit, normalised crops (crop-major float32 NCHW) and iBOT masks ([n_g·B, N] bytes).
    /// `options`: JSON `{iteration, schedule: {lr, wd, momentum, teacherTemp, lastLayerLr}, micro?, of?}`.
    /// Resolves to the step record (JSON): every loss term and the gradient norms.
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn step_crops(
        &self,
        globals: Float32Array,
        globals_shape: Vec<i64>,
        locals: Option<Float32Array>,
        locals_shape: Option<Vec<i64>>,
        masks: Uint8Array,
        masks_shape: Vec<i64>,
        options: String,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let options: StepOptions = serde_json::from_str(&options).map_err(|e| invalid(format!("step options: {e}")))?;
        let global_crops = tensor_from(&globals, &globals_shape, "globals")?;
        let local_crops = match (locals, locals_shape) {
            (Some(l), Some(s)) => Some(tensor_from(&l, &s, "locals")?),
            (None, None) => None,
            _ => return Err(invalid("locals and localsShape must be given together")),
        };
        let masks = masks_tensor(&masks, &masks_shape)?;
        Ok(self.step(SslInput::Crops(SslBatch { global_crops, local_crops, masks }), options))
    }

    /// One step on decoded images: `images` holds the uint8 gray planes back to back, `sizes` their
    /// [h0, w0, h1, w1, …]; `crops` is the JSON crop plan (one {globals, locals} per image, crop-major output);
    /// the multi-crop augmentation runs natively on the training device (ImageNet mean/std).
    #[napi(ts_return_type = "Promise<string>")]
    #[allow(clippy::too_many_arguments)]
    pub fn step_images(
        &self,
        images: Uint8Array,
        sizes: Vec<i64>,
        crops: String,
        global_size: i64,
        local_size: i64,
        masks: Uint8Array,
        masks_shape: Vec<i64>,
        options: String,
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let options: StepOptions = serde_json::from_str(&options).map_err(|e| invalid(format!("step options: {e}")))?;
        let planes = crate::planes_from(&images, &sizes)?;
        let crops = parse_crops(&crops).map_err(js_error)?;
        let masks = masks_tensor(&masks, &masks_shape)?;
        Ok(self.step(SslInput::Images { images: planes, crops, global_size, local_size, masks }, options))
    }

    /// Writes a checkpoint (atomic); `iteration` is the last completed iteration.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_checkpoint(&self, path: String, iteration: i64, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("saveCheckpoint", move || {
            inner.lock()?.model.save_checkpoint(&PathBuf::from(&path), iteration, metadata.unwrap_or_default()).map_err(js_error)
        })
    }

    /// Restores a checkpoint written by `saveCheckpoint`, or by a version before the one training-state format
    /// (strict; a checkpoint of another SSL configuration only with `force`); resolves to its metadata.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load_checkpoint(&self, path: String, force: Option<bool>) -> AsyncTask<Job<HashMap<String, String>, HashMap<String, String>>> {
        let inner = self.inner.clone();
        job("loadCheckpoint", move || inner.lock()?.model.load_checkpoint(&PathBuf::from(&path), force.unwrap_or(false)).map_err(js_error))
    }
}

impl NativeTrainer {
    /// One training call (collective under a process group): resolves to the step record (JSON).
    fn step(&self, input: SslInput, o: StepOptions) -> AsyncTask<Job<String, String>> {
        let inner = self.inner.clone();
        job("step", move || {
            let mut inner = inner.lock()?;
            inner.model.profile = o.profile;
            let result = inner.model.train_step(input, &o.schedule, o.iteration, o.micro.unwrap_or(0), o.of.unwrap_or(1));
            let rec = report(inner.pg.as_deref(), || format!("iteration {}", o.iteration), result)?;
            Ok(serde_json::to_string(&rec).expect("serializable"))
        })
    }
}

/// Runs the multi-crop augmentation alone (to preview crops, or to benchmark it): same inputs as
/// `NativeTrainer.stepImages`; returns `globals` (n_g·B, 3, G, G) and `locals` (n_l·B, 3, L, L), normalised.
#[napi(catch_unwind)]
pub fn multicrop_images(
    images: Uint8Array,
    sizes: Vec<i64>,
    crops: String,
    global_size: i64,
    local_size: i64,
    device: Option<String>,
) -> napi::Result<Vec<crate::NamedTensor>> {
    guarded("multicropImages", || {
        let planes = crate::planes_from(&images, &sizes)?;
        let crops = parse_crops(&crops).map_err(js_error)?;
        let device = cxformer_core::runtime::parse_device(device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
        let mc = multicrop_imagenet(&planes, &crops, global_size, local_size, device).map_err(js_error)?;
        Ok(vec![crate::named("globals", &mc.globals)?, crate::named("locals", &mc.locals)?])
    })
}


//! Full fine-tuning across N-API (crates/core/src/classify/finetune.rs has every convention): create a fine-tuner, train
//! steps on decoded images + a crop plan (augmented natively) or on normalised pixels, predict, save/load the
//! training state, export backbone + head. Every call is a [`Job`]; calls on one instance are serialised.
//! With a process group (worldSize > 1) the fine-tuner is data-parallel: creation, every step and every
//! `loadState` are collective (docs/distributed.md).
use crate::dist::NativeProcessGroup;
use crate::job::{Job, Shared, job, job_with, report};
use crate::{NamedTensor, invalid, js_error, named, tensor_from};
use cxformer_core::augment::params::parse_crops;
use cxformer_core::dist::ProcessGroup;
use cxformer_core::classify::config::FinetuneConfig;
use cxformer_core::classify::finetune::FineTuner;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
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

/// Builds the fine-tuner of `createFinetuner`, its initialisation report (JSON) and, with W > 1, the process group
/// it joined (collective: rank 0's initial state is broadcast).
fn create(options: &str, pg: Option<Arc<ProcessGroup>>) -> napi::Result<(FineTuner, String, Option<Arc<ProcessGroup>>)> {
    let o: CreateOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createFinetuner options: {e}")))?;
    let cfg = FinetuneConfig::from_json(&o.config.to_string()).map_err(js_error)?;
    let device = cxformer_core::runtime::parse_device(o.device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
    let init = o.init_weights.as_ref().map(PathBuf::from);
    let (mut ft, report) = FineTuner::new(cfg, device, init.as_deref(), o.seed).map_err(js_error)?;
    let report = match report {
        Some(r) => serde_json::to_string(&r).expect("serializable"),
        None => format!("{{\"random_init\":true,\"seed\":{}}}", o.seed),
    };
    let pg = pg.filter(|pg| pg.world() > 1);
    if let Some(pg) = &pg {
        ft.set_dist(Box::new(pg.clone())).map_err(js_error)?;
    }
    Ok((ft, report, pg))
}

/// Builds a fine-tuner (backbone + classification head + AdamW) off the JS thread. `options`: JSON
/// `{config, device?, initWeights?, seed?}`. With a `processGroup` of worldSize > 1 the fine-tuner is
/// data-parallel: every rank must create it (rank 0's initial state is broadcast), and every step and every
/// `loadState` is collective (each rank reads the file, then rank 0's state is broadcast); step reports hold the
/// loss and supervised entries of the global batch, gradients are averaged over all its supervised entries.
#[napi(ts_return_type = "Promise<NativeFinetuner>")]
#[allow(clippy::type_complexity)]
pub fn create_finetuner(
    options: String,
    process_group: Option<&NativeProcessGroup>,
) -> AsyncTask<Job<(FineTuner, String, Option<Arc<ProcessGroup>>), NativeFinetuner>> {
    let pg = process_group.map(|p| p.pg.clone());
    job_with("createFinetuner", move || create(&options, pg), |(ft, report, pg)| {
        Ok(NativeFinetuner { inner: Shared::new("fine-tuner", ft), report, pg })
    })
}

#[napi]
pub struct NativeFinetuner {
    inner: Shared<FineTuner>,
    report: String,
    /// The process group of a data-parallel run (world > 1), shared with its JS handle.
    pg: Option<Arc<ProcessGroup>>,
}

enum StepInput {
    Pixels(Tensor),
    Images { planes: Vec<Tensor>, crops: String, size: i64 },
}

/// Probabilities (and, with targets, the summed loss over the supervised entries and their count).
#[napi(object)]
pub struct FinetunePrediction {
    pub probs: NamedTensor,
    pub loss_sum: Option<f64>,
    pub entries: Option<i64>,
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
    let m = crate::bytes_tensor(mask, shape, Kind::Uint8);
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
        Ok(self.inner.lock()?.cfg.to_json())
    }

    /// Ranks of the data-parallel group (1 without a process group).
    #[napi(getter)]
    pub fn world_size(&self) -> i64 {
        self.pg.as_ref().map(|p| p.world()).unwrap_or(1)
    }

    /// Scheduled steps taken (train-step calls, skipped batches included).
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.step)
    }

    /// Optimizer updates taken.
    #[napi(getter)]
    pub fn optimizer_steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.optimizer.step)
    }

    /// JSON array of [name, lr multiplier relative to the head lr, weight-decay multiplier] per parameter.
    #[napi(getter)]
    pub fn param_groups(&self) -> napi::Result<String> {
        Ok(serde_json::to_string(&self.inner.lock()?.groups()).expect("serializable"))
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
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let planes = crate::planes_from(&images, &sizes)?;
        let (targets, mask) = targets_of(&targets, &targets_shape, &mask)?;
        Ok(self.step(StepInput::Images { planes, crops, size }, targets, mask))
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
    ) -> napi::Result<AsyncTask<Job<String, String>>> {
        let x = tensor_from(&pixels, &shape, "pixels")?;
        let (targets, mask) = targets_of(&targets, &targets_shape, &mask)?;
        Ok(self.step(StepInput::Pixels(x), targets, mask))
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
    ) -> napi::Result<AsyncTask<Job<(Tensor, Option<f64>, Option<i64>), FinetunePrediction>>> {
        let x = tensor_from(&pixels, &shape, "pixels")?;
        let targets = match (targets, targets_shape, mask) {
            (Some(t), Some(s), Some(m)) => Some(targets_of(&t, &s, &m)?),
            (None, None, None) => None,
            _ => return Err(invalid("targets, targetsShape and mask must be given together")),
        };
        let inner = self.inner.clone();
        let work = move || {
            let p = inner.lock()?.predict(&x, targets.as_ref().map(|(y, m)| (y, m))).map_err(js_error)?;
            Ok((crate::cpu_contiguous(&p.probs), p.loss_sum, p.entries))
        };
        Ok(job_with("finetune predict", work, |(probs, loss_sum, entries)| {
            Ok(FinetunePrediction { probs: named("probs", &probs)?, loss_sum, entries })
        }))
    }

    /// Writes the whole training state (atomic) with `metadata` (epoch, batch position, history…).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save_state(&self, path: String, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("saveState", move || inner.lock()?.save_state(&PathBuf::from(&path), metadata.unwrap_or_default()).map_err(js_error))
    }

    /// Restores a state written by `saveState` (strict on tensors; another configuration only with `force`);
    /// resolves to its metadata.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load_state(&self, path: String, force: Option<bool>) -> AsyncTask<Job<HashMap<String, String>, HashMap<String, String>>> {
        let inner = self.inner.clone();
        job("loadState", move || inner.lock()?.load_state(&PathBuf::from(&path), force.unwrap_or(false)).map_err(js_error))
    }

    /// Writes the backbone (HF names, float32) and the head (`cxformer-probe-head`, `headMetadata` added), atomically.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn export_model(&self, backbone_file: String, head_file: String, head_metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("exportModel", move || {
            inner.lock()?.export(&PathBuf::from(&backbone_file), &PathBuf::from(&head_file), head_metadata.unwrap_or_default()).map_err(js_error)
        })
    }
}

impl NativeFinetuner {
    /// One training step (collective under a process group): resolves to the step report (JSON).
    fn step(&self, input: StepInput, targets: Tensor, mask: Tensor) -> AsyncTask<Job<String, String>> {
        let (inner, pg) = (self.inner.clone(), self.pg.clone());
        job("finetune step", move || {
            let mut ft = inner.lock()?;
            let result = match input {
                StepInput::Pixels(x) => ft.train_step(&x, &targets, &mask),
                StepInput::Images { planes, crops, size } => {
                    let crops = parse_crops(&crops).map_err(js_error)?;
                    if let Some((i, c)) = crops.iter().enumerate().find(|(_, c)| c.globals.len() != 1 || !c.locals.is_empty()) {
                        return Err(invalid(format!(
                            "crops: image {i} has {} global and {} local crop(s); fine-tuning takes exactly one global crop per image",
                            c.globals.len(),
                            c.locals.len()
                        )));
                    }
                    ft.train_step_images(&planes, &crops, size, &targets, &mask)
                }
            };
            let rep = report(pg.as_deref(), || format!("fine-tuning step {}", ft.step), result)?;
            Ok(serde_json::to_string(&rep).expect("serializable"))
        })
    }
}

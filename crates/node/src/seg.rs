//! Segmentation across N-API (crates/core/src/seg.rs has every convention): `createSegmenter` builds a backbone
//! with a segmentation head; a `NativeSegmenter` takes training steps, predicts class maps and saves/loads its
//! state. Every call that computes is an AsyncTask on libuv's pool; calls on one instance are serialised.
//! With a process group (worldSize > 1) the segmenter is data-parallel: creation, every step and `syncFromRank0`
//! are collective (docs/distributed.md); `load`, `predict` and `save` stay local.
use crate::dist::NativeProcessGroup;
use crate::{guarded, invalid, js_error, tensor_from};
use cxformer_core::dist::ProcessGroup;
use cxformer_core::seg::{SegConfig, SegModel};
use cxformer_core::{Backbone, VitConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tch::{Kind, Tensor};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateOptions {
    /// SegConfig JSON (camelCase); checked by the core (CXF_CONFIG). @default {}
    #[serde(default)]
    seg: Option<serde_json::Value>,
    /// The backbone architecture (VitConfig JSON, snake_case as in crates/core).
    backbone: serde_json::Value,
    /// Backbone safetensors; absent = random initialisation with `seed`.
    weights: Option<String>,
    #[serde(default)]
    seed: i64,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
}

type Shared = Arc<Mutex<SegModel>>;

fn lock(s: &Shared) -> napi::Result<std::sync::MutexGuard<'_, SegModel>> {
    s.lock().map_err(|_| invalid("segmenter is poisoned by an earlier panic"))
}

pub struct CreateTask {
    options: String,
    pg: Option<Arc<ProcessGroup>>,
}

impl Task for CreateTask {
    type Output = (SegModel, String, Option<Arc<ProcessGroup>>);
    type JsValue = NativeSegmenter;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("createSegmenter", || {
            let o: CreateOptions = serde_json::from_str(&self.options).map_err(|e| invalid(format!("createSegmenter options: {e}")))?;
            let seg = match &o.seg {
                Some(v) => SegConfig::from_json(&v.to_string()).map_err(js_error)?,
                None => SegConfig::default(),
            };
            let vit = VitConfig::from_json(&o.backbone.to_string()).map_err(js_error)?;
            let device = cxformer_core::runtime::parse_device(o.device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
            let (backbone, report) = match &o.weights {
                Some(w) => {
                    let (b, r) = Backbone::load(&vit, w, device).map_err(js_error)?;
                    (b, serde_json::to_string(&r).expect("serializable"))
                }
                None => (Backbone::random(&vit, device, o.seed).map_err(js_error)?, format!("{{\"random_init\":true,\"seed\":{}}}", o.seed)),
            };
            let mut model = SegModel::new(seg, backbone).map_err(js_error)?;
            // Data parallelism: rank 0's initial state is broadcast (collective: every rank creates its segmenter).
            let pg = self.pg.take().filter(|pg| pg.world() > 1);
            if let Some(pg) = &pg {
                model.set_dist(Box::new(pg.clone())).map_err(js_error)?;
            }
            Ok((model, report, pg))
        })
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<NativeSegmenter> {
        Ok(NativeSegmenter { inner: Arc::new(Mutex::new(out.0)), report: out.1, pg: out.2 })
    }
}

/// Builds a backbone (weights or random) with a freshly initialised segmentation head, off the JS thread.
/// `options`: JSON `{seg?, backbone, weights?, seed?, device?}`. With a `processGroup` of worldSize > 1 the
/// segmenter is data-parallel: every rank must create it (rank 0's initial state is broadcast); every `step` is
/// collective (each rank passes its share of the global batch, possibly empty; gradients and the step record are
/// the global batch's); `load` is local, `syncFromRank0` (collective) then makes every rank hold rank 0's state.
#[napi(ts_return_type = "Promise<NativeSegmenter>")]
pub fn create_segmenter(options: String, process_group: Option<&NativeProcessGroup>) -> AsyncTask<CreateTask> {
    AsyncTask::new(CreateTask { options, pg: process_group.map(|p| p.pg.clone()) })
}

#[napi]
pub struct NativeSegmenter {
    inner: Shared,
    report: String,
    /// The process group of a data-parallel run (world > 1), shared with its JS handle.
    pg: Option<Arc<ProcessGroup>>,
}

/// A prediction: argmax class maps (B, H, W) and, when asked, the logits (B, C, H, W).
#[napi(object)]
pub struct SegPrediction {
    pub labels: Uint8Array,
    pub shape: Vec<i64>,
    pub logits: Option<Float32Array>,
    pub logits_shape: Option<Vec<i64>>,
}

fn images(pixels: &[f32], shape: &[i64]) -> napi::Result<Tensor> {
    if shape.len() != 4 {
        return Err(invalid(format!("shape: expected [B, 3, H, W], got {shape:?}")));
    }
    tensor_from(pixels, shape, "pixelValues")
}

pub struct StepTask {
    inner: Shared,
    pg: Option<Arc<ProcessGroup>>,
    pixels: Vec<f32>,
    shape: Vec<i64>,
    labels: Vec<u8>,
    lr: f64,
}

impl Task for StepTask {
    type Output = String;
    type JsValue = String;
    fn compute(&mut self) -> napi::Result<String> {
        guarded("segStep", || {
            let x = images(&self.pixels, &self.shape)?;
            let (b, h, w) = (self.shape[0], self.shape[2], self.shape[3]);
            if self.labels.len() as i64 != b * h * w {
                return Err(invalid(format!("labels: {} values, expected B·H·W = {b}·{h}·{w} = {}", self.labels.len(), b * h * w)));
            }
            let y = Tensor::from_slice(&self.labels).reshape([b, h, w]);
            let mut m = lock(&self.inner)?;
            let result = m.train_step(&x, &y, self.lr);
            if let (Err(e), Some(pg)) = (&result, &self.pg) {
                // Let the peers' failing collectives name this rank and its error.
                pg.report_error(&format!("segmentation step {}: [{}] {e}", m.steps(), e.code()));
            }
            let rec = result.map_err(js_error)?;
            Ok(serde_json::to_string(&rec).expect("serializable"))
        })
    }
    fn resolve(&mut self, _env: Env, out: String) -> napi::Result<String> {
        Ok(out)
    }
}

pub struct PredictTask {
    inner: Shared,
    pixels: Vec<f32>,
    shape: Vec<i64>,
    with_logits: bool,
}

impl Task for PredictTask {
    type Output = (Vec<u8>, Vec<i64>, Option<(Vec<f32>, Vec<i64>)>);
    type JsValue = SegPrediction;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("segPredict", || {
            let x = images(&self.pixels, &self.shape)?;
            let m = lock(&self.inner)?;
            let (labels, logits) = m.predict(&x, self.with_logits).map_err(js_error)?;
            let shape = labels.size();
            let l = Vec::<u8>::try_from(labels.flatten(0, -1)).map_err(|e| js_error(e.into()))?;
            let z = match logits {
                Some(z) => Some((Vec::<f32>::try_from(z.to_kind(Kind::Float).flatten(0, -1)).map_err(|e| js_error(e.into()))?, z.size())),
                None => None,
            };
            Ok((l, shape, z))
        })
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<SegPrediction> {
        let (logits, logits_shape) = match out.2 {
            Some((d, s)) => (Some(Float32Array::new(d)), Some(s)),
            None => (None, None),
        };
        Ok(SegPrediction { labels: Uint8Array::new(out.0), shape: out.1, logits, logits_shape })
    }
}

pub struct SaveTask {
    inner: Shared,
    path: String,
    with_optimizer: bool,
    metadata: HashMap<String, String>,
}

impl Task for SaveTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        guarded("segSave", || {
            let m = lock(&self.inner)?;
            m.save(&self.path, self.with_optimizer, std::mem::take(&mut self.metadata)).map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, _o: ()) -> napi::Result<()> {
        Ok(())
    }
}

pub struct LoadTask {
    inner: Shared,
    path: String,
}

impl Task for LoadTask {
    type Output = HashMap<String, String>;
    type JsValue = HashMap<String, String>;
    fn compute(&mut self) -> napi::Result<Self::Output> {
        guarded("segLoad", || {
            let mut m = lock(&self.inner)?;
            m.load(&self.path).map_err(js_error)
        })
    }
    fn resolve(&mut self, _env: Env, out: Self::Output) -> napi::Result<Self::Output> {
        Ok(out)
    }
}

pub struct SyncTask {
    inner: Shared,
}

impl Task for SyncTask {
    type Output = ();
    type JsValue = ();
    fn compute(&mut self) -> napi::Result<()> {
        guarded("segSyncFromRank0", || lock(&self.inner)?.sync_from_rank0().map_err(js_error))
    }
    fn resolve(&mut self, _env: Env, _o: ()) -> napi::Result<()> {
        Ok(())
    }
}

#[napi]
impl NativeSegmenter {
    /// Ranks of the data-parallel group (1 without a process group).
    #[napi(getter)]
    pub fn world_size(&self) -> i64 {
        self.pg.as_ref().map(|p| p.world()).unwrap_or(1)
    }

    /// Collective (every rank of the group): every rank's state becomes rank 0's (backbone, head, AdamW moments and
    /// step). Call it on every rank after `load` to resume a data-parallel run; a no-op without a process group.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn sync_from_rank0(&self) -> AsyncTask<SyncTask> {
        AsyncTask::new(SyncTask { inner: self.inner.clone() })
    }

    /// What loading the backbone did (JSON).
    #[napi(getter)]
    pub fn load_report(&self) -> String {
        self.report.clone()
    }

    /// The SegConfig in use (JSON, defaults filled in).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(lock(&self.inner)?.cfg.to_json())
    }

    /// Optimizer steps taken (restored by `load` from a state with optimizer).
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(lock(&self.inner)?.steps())
    }

    /// One training step on a normalised NCHW float32 batch `[B, 3, H, W]` with class maps `labels` (B·H·W bytes,
    /// row-major) at head learning rate `lr`. Resolves to the step record (JSON: step, lr, loss, ce, softDice, gradNorm).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step(&self, pixel_values: Float32Array, shape: Vec<i64>, labels: Uint8Array, lr: f64) -> AsyncTask<StepTask> {
        AsyncTask::new(StepTask { inner: self.inner.clone(), pg: self.pg.clone(), pixels: pixel_values.to_vec(), shape, labels: labels.to_vec(), lr })
    }

    /// Argmax class maps (and the logits with `withLogits`) of a normalised NCHW float32 batch.
    #[napi(ts_return_type = "Promise<SegPrediction>")]
    pub fn predict(&self, pixel_values: Float32Array, shape: Vec<i64>, with_logits: Option<bool>) -> AsyncTask<PredictTask> {
        AsyncTask::new(PredictTask { inner: self.inner.clone(), pixels: pixel_values.to_vec(), shape, with_logits: with_logits.unwrap_or(false) })
    }

    /// Writes the state atomically (safetensors): head (+ backbone when unfrozen) and, with `withOptimizer`, the
    /// AdamW moments and step count; `metadata` as extra header entries.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(&self, path: String, with_optimizer: bool, metadata: Option<HashMap<String, String>>) -> AsyncTask<SaveTask> {
        AsyncTask::new(SaveTask { inner: self.inner.clone(), path, with_optimizer, metadata: metadata.unwrap_or_default() })
    }

    /// Loads a state written by `save` (strict); resolves to its metadata.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load(&self, path: String) -> AsyncTask<LoadTask> {
        AsyncTask::new(LoadTask { inner: self.inner.clone(), path })
    }
}

//! Segmentation across N-API (crates/core/src/seg/ has every convention): `createSegmenter` builds a backbone
//! with a segmentation head; a `NativeSegmenter` takes training steps, predicts class maps and saves/loads its
//! state. Every call that computes is a [`Job`] on libuv's pool; calls on one instance are serialised.
//! With a process group (worldSize > 1) the segmenter is data-parallel: creation, every step, `load` of a training
//! state and `syncFromRank0` are collective (docs/distributed.md); `load` of a model saved without its optimizer,
//! `predict` and `save` stay local.
use crate::dist::NativeProcessGroup;
use crate::job::{Job, Shared, job, job_with, report};
use crate::{invalid, js_error, tensor_from};
use cxformer_core::dist::ProcessGroup;
use cxformer_core::seg::config::SegConfig;
use cxformer_core::seg::model::SegModel;
use cxformer_core::{Backbone, VitConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
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

/// Builds the segmenter of `createSegmenter`, its backbone's load report (JSON) and, with W > 1, the process group
/// it joined (collective: rank 0's initial state is broadcast).
fn create(options: &str, pg: Option<Arc<ProcessGroup>>) -> napi::Result<(SegModel, String, Option<Arc<ProcessGroup>>)> {
    let o: CreateOptions = serde_json::from_str(options).map_err(|e| invalid(format!("createSegmenter options: {e}")))?;
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
    let pg = pg.filter(|pg| pg.world() > 1);
    if let Some(pg) = &pg {
        model.set_dist(Box::new(pg.clone())).map_err(js_error)?;
    }
    Ok((model, report, pg))
}

/// Builds a backbone (weights or random) with a freshly initialised segmentation head, off the JS thread.
/// `options`: JSON `{seg?, backbone, weights?, seed?, device?}`. With a `processGroup` of worldSize > 1 the
/// segmenter is data-parallel: every rank must create it (rank 0's initial state is broadcast); every `step` is
/// collective (each rank passes its share of the global batch, possibly empty; gradients and the step record are
/// the global batch's); `load` of a training state is collective (every rank reads it, then holds rank 0's state).
#[napi(ts_return_type = "Promise<NativeSegmenter>")]
#[allow(clippy::type_complexity)]
pub fn create_segmenter(
    options: String,
    process_group: Option<&NativeProcessGroup>,
) -> AsyncTask<Job<(SegModel, String, Option<Arc<ProcessGroup>>), NativeSegmenter>> {
    let pg = process_group.map(|p| p.pg.clone());
    job_with("createSegmenter", move || create(&options, pg), |(model, report, pg)| {
        Ok(NativeSegmenter { inner: Shared::new("segmenter", model), report, pg })
    })
}

#[napi]
pub struct NativeSegmenter {
    inner: Shared<SegModel>,
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

/// Class maps (B·H·W bytes), their shape and, when asked, the logits (B·C·H·W floats) with theirs.
type Predicted = (Vec<u8>, Vec<i64>, Option<(Vec<f32>, Vec<i64>)>);

#[napi]
impl NativeSegmenter {
    /// Ranks of the data-parallel group (1 without a process group).
    #[napi(getter)]
    pub fn world_size(&self) -> i64 {
        self.pg.as_ref().map(|p| p.world()).unwrap_or(1)
    }

    /// Collective (every rank of the group): every rank's state becomes rank 0's (backbone, head, AdamW moments and
    /// step). `load` of a training state already does it, so after it this is a harmless second sync; a no-op
    /// without a process group.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn sync_from_rank0(&self) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("segSyncFromRank0", move || inner.lock()?.sync_from_rank0().map_err(js_error))
    }

    /// What loading the backbone did (JSON).
    #[napi(getter)]
    pub fn load_report(&self) -> String {
        self.report.clone()
    }

    /// The SegConfig in use (JSON, defaults filled in).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.cfg.to_json())
    }

    /// Optimizer steps taken (restored by `load` from a state with optimizer).
    #[napi(getter)]
    pub fn steps(&self) -> napi::Result<i64> {
        Ok(self.inner.lock()?.steps())
    }

    /// One training step on a normalised NCHW float32 batch `[B, 3, H, W]` with class maps `labels` (B·H·W bytes,
    /// row-major) at head learning rate `lr`. Resolves to the step record (JSON: step, lr, loss, ce, softDice, gradNorm).
    #[napi(ts_return_type = "Promise<string>")]
    pub fn step(&self, pixel_values: Float32Array, shape: Vec<i64>, labels: Uint8Array, lr: f64) -> AsyncTask<Job<String, String>> {
        let (inner, pg, pixels, labels) = (self.inner.clone(), self.pg.clone(), pixel_values.to_vec(), labels.to_vec());
        job("segStep", move || {
            let x = images(&pixels, &shape)?;
            let (b, h, w) = (shape[0], shape[2], shape[3]);
            if labels.len() as i64 != b * h * w {
                return Err(invalid(format!("labels: {} values, expected B·H·W = {b}·{h}·{w} = {}", labels.len(), b * h * w)));
            }
            let y = Tensor::from_slice(&labels).reshape([b, h, w]);
            let mut m = inner.lock()?;
            let result = m.train_step(&x, &y, lr);
            let rec = report(pg.as_deref(), || format!("segmentation step {}", m.steps()), result)?;
            Ok(serde_json::to_string(&rec).expect("serializable"))
        })
    }

    /// Argmax class maps (and the logits with `withLogits`) of a normalised NCHW float32 batch.
    #[napi(ts_return_type = "Promise<SegPrediction>")]
    pub fn predict(&self, pixel_values: Float32Array, shape: Vec<i64>, with_logits: Option<bool>) -> AsyncTask<Job<Predicted, SegPrediction>> {
        let (inner, pixels) = (self.inner.clone(), pixel_values.to_vec());
        let work = move || {
            let x = images(&pixels, &shape)?;
            let m = inner.lock()?;
            let (labels, logits) = m.predict(&x, with_logits.unwrap_or(false)).map_err(js_error)?;
            let shape = labels.size();
            let l = Vec::<u8>::try_from(labels.flatten(0, -1)).map_err(|e| js_error(e.into()))?;
            let z = match logits {
                Some(z) => Some((Vec::<f32>::try_from(z.to_kind(Kind::Float).flatten(0, -1)).map_err(|e| js_error(e.into()))?, z.size())),
                None => None,
            };
            Ok((l, shape, z))
        };
        job_with("segPredict", work, |(labels, shape, z)| {
            let (logits, logits_shape) = match z {
                Some((d, s)) => (Some(Float32Array::new(d)), Some(s)),
                None => (None, None),
            };
            Ok(SegPrediction { labels: Uint8Array::new(labels), shape, logits, logits_shape })
        })
    }

    /// Writes the state atomically (safetensors): head (+ backbone when unfrozen) and, with `withOptimizer`, the
    /// AdamW moments and step count in the one training-state format (to resume), without it the model alone
    /// (`format: cxformer-seg`); `metadata` as extra header entries.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(&self, path: String, with_optimizer: bool, metadata: Option<HashMap<String, String>>) -> AsyncTask<Job<(), ()>> {
        let inner = self.inner.clone();
        job("segSave", move || inner.lock()?.save(&path, with_optimizer, metadata.unwrap_or_default()).map_err(js_error))
    }

    /// Loads a file written by `save` (strict), or by a version before the one training-state format; resolves to
    /// its metadata. A training state (saved with the optimizer) is loaded collectively under a process group (a
    /// state of another segmentation configuration only with `force`); a model saved without it, locally.
    #[napi(ts_return_type = "Promise<Record<string, string>>")]
    pub fn load(&self, path: String, force: Option<bool>) -> AsyncTask<Job<HashMap<String, String>, HashMap<String, String>>> {
        let inner = self.inner.clone();
        job("segLoad", move || inner.lock()?.load(&path, force.unwrap_or(false)).map_err(js_error))
    }
}

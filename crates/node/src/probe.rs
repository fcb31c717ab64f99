//! Linear-probe head training across N-API (crates/core/src/classify/probe.rs has every convention): `fitHead` trains a
//! head on precomputed features off the JS thread, `predictHead` turns features into probabilities.
use crate::job::Job;
use crate::{NamedTensor, guarded, invalid, js_error, named, tensor_from};
use cxformer_core::Error as CoreError;
use cxformer_core::classify::config::ProbeConfig;
use cxformer_core::classify::head::FittedHead;
use cxformer_core::classify::probe::fit;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tch::{Kind, Tensor};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FitOptions {
    /// ProbeConfig JSON (camelCase); checked by the core (errors are CXF_CONFIG). @default {}
    #[serde(default)]
    config: Option<serde_json::Value>,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default)]
    device: Option<String>,
}

/// One split as copied from JS.
struct Split {
    features: Vec<f32>,
    features_shape: Vec<i64>,
    targets: Vec<f32>,
    mask: Vec<u8>,
    targets_shape: Vec<i64>,
}

fn matrix_shape(shape: &[i64], what: &str, dims: &str) -> napi::Result<()> {
    if shape.len() != 2 || shape.iter().any(|&s| s < 0) {
        return Err(invalid(format!("{what}: expected a [{dims}] shape, got {shape:?}")));
    }
    Ok(())
}

/// The JS argument name: `features` or, for the validation split, `valFeatures`.
fn arg(prefix: &str, base: &str) -> String {
    if prefix.is_empty() {
        return base.to_string();
    }
    let mut c = base.chars();
    match c.next() {
        Some(first) => format!("{prefix}{}{}", first.to_ascii_uppercase(), c.as_str()),
        None => prefix.to_string(),
    }
}

impl Split {
    /// Checks the shapes are 2-D and that every typed array has exactly the values its shape needs; errors name
    /// the JS arguments (`features`, `valMask`, …).
    fn new(
        prefix: &str,
        features: &[f32],
        features_shape: Vec<i64>,
        targets: &[f32],
        mask: &[u8],
        targets_shape: Vec<i64>,
    ) -> napi::Result<Self> {
        let (fs_name, ts_name) = (arg(prefix, "featuresShape"), arg(prefix, "targetsShape"));
        matrix_shape(&features_shape, &fs_name, "rows, features")?;
        matrix_shape(&targets_shape, &ts_name, "rows, classes")?;
        let n = |s: &[i64]| s.iter().product::<i64>() as usize;
        let check = |what: &str, kind: &str, len: usize, shape_name: &str, shape: &[i64]| {
            if len != n(shape) {
                return Err(invalid(format!(
                    "{}: {shape_name} {shape:?} needs {} values but the {kind} has {len}",
                    arg(prefix, what),
                    n(shape)
                )));
            }
            Ok(())
        };
        check("features", "Float32Array", features.len(), &fs_name, &features_shape)?;
        check("targets", "Float32Array", targets.len(), &ts_name, &targets_shape)?;
        check("mask", "Uint8Array", mask.len(), &ts_name, &targets_shape)?;
        if features_shape[0] != targets_shape[0] {
            return Err(invalid(format!(
                "{} have {} rows ({fs_name} {features_shape:?}) but {} have {} ({ts_name} {targets_shape:?})",
                arg(prefix, "features"),
                features_shape[0],
                arg(prefix, "targets"),
                targets_shape[0]
            )));
        }
        Ok(Split { features: features.to_vec(), features_shape, targets: targets.to_vec(), mask: mask.to_vec(), targets_shape })
    }

    fn tensors(&self, prefix: &str) -> napi::Result<(Tensor, Tensor, Tensor)> {
        let x = tensor_from(&self.features, &self.features_shape, &arg(prefix, "features"))?;
        let y = tensor_from(&self.targets, &self.targets_shape, &arg(prefix, "targets"))?;
        let m = crate::bytes_tensor(&self.mask, &self.targets_shape, Kind::Uint8);
        Ok((x, y, m))
    }
}

/// A trained head: `head` holds `head.<i>.weight` (out, in) and `head.<i>.bias` (out) per Linear layer,
/// `history` the per-epoch records (JSON array of {epoch, steps, lr, trainLoss, trainEntries, skippedBatches,
/// valLoss, valAuroc}), `config` the ProbeConfig actually used (defaults filled in, JSON).
#[napi(object)]
pub struct FittedProbe {
    pub head: Vec<NamedTensor>,
    pub history: String,
    pub config: String,
    /// The epoch whose weights `head` holds (`selectBest` may pick one before the last).
    pub best_epoch: Option<i64>,
}

/// A fitted head as `fitHead` resolves it: tensors, history (JSON), config (JSON), best epoch.
type Fitted = (Vec<(String, Tensor)>, String, String, Option<i64>);

fn fitted_to_js(out: Fitted) -> napi::Result<FittedProbe> {
    let head = out.0.iter().map(|(n, t)| named(n, t)).collect::<napi::Result<_>>()?;
    Ok(FittedProbe { head, history: out.1, config: out.2, best_epoch: out.3 })
}

/// Trains a linear-probe head on precomputed (frozen-backbone) features, off the JS thread.
/// `features` (N, F) float32 as `featuresShape` = [N, F]; `targets` (N, C) float32 and `mask` (N, C) bytes
/// (nonzero = supervised) as `targetsShape` = [N, C]; `options`: JSON `{config?, device?}`; the optional
/// validation split comes as the `val*` arguments (all or none). Features are used as given (no
/// standardisation). An aborted `signal` stops after the current epoch with CXF_CANCELLED.
#[napi(ts_return_type = "Promise<FittedProbe>")]
#[allow(clippy::too_many_arguments)]
pub fn fit_head(
    features: Float32Array,
    features_shape: Vec<i64>,
    targets: Float32Array,
    mask: Uint8Array,
    targets_shape: Vec<i64>,
    options: String,
    val_features: Option<Float32Array>,
    val_features_shape: Option<Vec<i64>>,
    val_targets: Option<Float32Array>,
    val_mask: Option<Uint8Array>,
    val_targets_shape: Option<Vec<i64>>,
    signal: Option<AbortSignal>,
) -> napi::Result<AsyncTask<Job<Fitted, FittedProbe>>> {
    let o: FitOptions = serde_json::from_str(&options).map_err(|e| invalid(format!("fitHead options: {e}")))?;
    let config = match &o.config {
        Some(v) => ProbeConfig::from_json(&v.to_string()).map_err(js_error)?,
        None => ProbeConfig::default(),
    };
    let train = Split::new("", &features, features_shape, &targets, &mask, targets_shape)?;
    let val = match (val_features, val_features_shape, val_targets, val_mask, val_targets_shape) {
        (None, None, None, None, None) => None,
        (Some(f), Some(fs), Some(t), Some(m), Some(ts)) => Some(Split::new("val", &f, fs, &t, &m, ts)?),
        _ => {
            return Err(invalid(
                "valFeatures, valFeaturesShape, valTargets, valMask and valTargetsShape must be given together (or all omitted)",
            ));
        }
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    if let Some(s) = &signal {
        let flag = cancelled.clone();
        s.on_abort(move || flag.store(true, Ordering::Relaxed));
    }
    let device = o.device.unwrap_or_else(|| "cpu".into());
    let work = move || {
        let device = cxformer_core::runtime::parse_device(&device).map_err(js_error)?;
        let (x, y, m) = train.tensors("")?;
        let val = match &val {
            Some(v) => Some(v.tensors("val")?),
            None => None,
        };
        let go_on = cancelled.clone();
        let head = fit(&x, &y, &m, val.as_ref().map(|(a, b, c)| (a, b, c)), &config, device, |_| !go_on.load(Ordering::Relaxed)).map_err(js_error)?;
        if cancelled.load(Ordering::Relaxed) {
            return Err(js_error(CoreError::Cancelled));
        }
        let history = serde_json::to_string(&head.history).expect("serializable");
        let tensors = head.tensors().into_iter().map(|(n, t)| (n, crate::cpu_contiguous(&t))).collect();
        Ok((tensors, history, head.config.to_json(), head.best_epoch))
    };
    Ok(AsyncTask::with_optional_signal(Job::new("fitHead", work, fitted_to_js), signal))
}

/// Probabilities (N, C) of a head from `fitHead` for features (N, F) given as `featuresShape` = [N, F]:
/// sigmoid (multilabel, binary) or softmax (multiclass). `config` is the head's ProbeConfig JSON (`FittedProbe.config`);
/// `head` must be exactly the layers it describes. Runs on `device` (default "cpu").
#[napi(catch_unwind)]
pub fn predict_head(
    head: Vec<NamedTensor>,
    config: String,
    features: Float32Array,
    features_shape: Vec<i64>,
    device: Option<String>,
) -> napi::Result<NamedTensor> {
    guarded("predictHead", || {
        let cfg = ProbeConfig::from_json(&config).map_err(js_error)?;
        matrix_shape(&features_shape, "featuresShape", "rows, features")?;
        let mut tensors = BTreeMap::new();
        for t in &head {
            let v = tensor_from(&t.data, &t.shape, &format!("head tensor '{}'", t.name))?;
            if tensors.insert(t.name.clone(), v).is_some() {
                return Err(invalid(format!("head: tensor '{}' given twice", t.name)));
            }
        }
        let fitted = FittedHead::from_tensors(cfg, &tensors).map_err(js_error)?;
        let device = cxformer_core::runtime::parse_device(device.as_deref().unwrap_or("cpu")).map_err(js_error)?;
        let x = tensor_from(&features, &features_shape, "features")?
            .f_to_device(device)
            .map_err(|e| js_error(e.into()))?;
        let p = fitted.predict(&x).map_err(js_error)?;
        named("probabilities", &p.to_kind(Kind::Float))
    })
}

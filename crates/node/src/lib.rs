//! cxformer's Node-API binding (napi-rs): glue only. Each export reads its arguments, converts options
//! (JSON text from TypeScript, bulk data as copied typed arrays), calls cxformer-core, converts the result.
//! Long work runs as [`job::Job`]s on libuv's pool, each handing its LibTorch work to the one compute thread
//! ([`compute`]); panics are caught and every failure becomes a JS Error
//! whose message starts with a stable code in brackets (`[CXF_WEIGHTS] …`), which src/native turns into
//! `err.code`.
#![deny(clippy::all)]

use cxformer_core::weights::SaveLayout;
use cxformer_core::{Backbone, Error as CoreError, ForwardOptions, Precision, VitConfig};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use serde::Deserialize;
use std::collections::HashMap;
use job::{Job, Shared, job, job_with};
use std::panic::{AssertUnwindSafe, catch_unwind};
use tch::{Device, Kind, Tensor};

mod compute;
mod dist;
mod finetune;
mod job;
mod llava;
mod probe;
mod rrg;
mod seg;
mod trainer;

pub(crate) fn js_error(e: CoreError) -> napi::Error {
    let status = match e {
        CoreError::Shape(_) | CoreError::Config(_) | CoreError::Weights { .. } | CoreError::Io { .. } => Status::InvalidArg,
        CoreError::Cancelled => Status::Cancelled,
        _ => Status::GenericFailure,
    };
    napi::Error::new(status, format!("[{}] {}", e.code(), e))
}

pub(crate) fn invalid(msg: impl Into<String>) -> napi::Error {
    napi::Error::new(Status::InvalidArg, format!("[CXF_ARG] {}", msg.into()))
}

/// Runs `f` on the compute thread ([`compute::run`]: all LibTorch work of the addon happens on one thread), with
/// the configured thread count, turning a panic (tch's non-`f_` methods panic on C++ errors) into a JS error.
pub(crate) fn guarded<T: Send>(what: &str, f: impl FnOnce() -> napi::Result<T> + Send) -> napi::Result<T> {
    compute::run(move || guarded_here(what, f))
}

/// [`guarded`] on the calling thread (process-group calls, see job.rs).
pub(crate) fn guarded_here<T>(what: &str, f: impl FnOnce() -> napi::Result<T>) -> napi::Result<T> {
    cxformer_core::runtime::apply_threads();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(napi::Error::new(Status::GenericFailure, format!("[CXF_TORCH] {what}: {msg}")))
        }
    }
}

/// 8-bit gray image planes from one byte buffer and their sizes `[h0, w0, h1, w1, …]` (row-major, concatenated).
pub(crate) fn planes_from(images: &[u8], sizes: &[i64]) -> napi::Result<Vec<Tensor>> {
    if !sizes.len().is_multiple_of(2) || sizes.iter().any(|&s| s <= 0) {
        return Err(invalid(format!("sizes must be [h0, w0, h1, w1, …] with positive values, got {} values", sizes.len())));
    }
    let total: i64 = sizes.chunks(2).map(|c| c[0] * c[1]).sum();
    if total as usize != images.len() {
        return Err(invalid(format!("images has {} bytes but sizes describe {total}", images.len())));
    }
    // Tensors are made (zero-filled, then copied: parallel kernels) on the compute thread, also when called on the
    // JS thread: an OpenMP team there would throttle the compute thread's (see compute.rs).
    let planes = compute::run(|| {
        let mut planes = Vec::with_capacity(sizes.len() / 2);
        let mut off = 0usize;
        for c in sizes.chunks(2) {
            let n = (c[0] * c[1]) as usize;
            planes.push(Tensor::from_slice(&images[off..off + n]).reshape([c[0], c[1]]));
            off += n;
        }
        planes
    });
    Ok(planes)
}

pub(crate) fn tensor_from(data: &[f32], shape: &[i64], what: &str) -> napi::Result<Tensor> {
    if shape.iter().any(|&s| s < 0) {
        return Err(invalid(format!("{what}: shape {shape:?} has a negative dimension")));
    }
    let n: i64 = shape.iter().product();
    if n as usize != data.len() {
        return Err(invalid(format!(
            "{what}: shape {shape:?} needs {n} values but the Float32Array has {}",
            data.len()
        )));
    }
    Ok(compute::run(|| Tensor::from_slice(data).reshape(shape)))
}

/// Bytes (masks, labels) as a tensor of `shape` and `kind`, made on the compute thread like [`tensor_from`]'s.
/// The caller has checked that `shape` holds `data.len()` values.
pub(crate) fn bytes_tensor(data: &[u8], shape: &[i64], kind: Kind) -> Tensor {
    compute::run(|| Tensor::from_slice(data).reshape(shape).to_kind(kind))
}

/// A named float32 tensor returned to JS (row-major data).
#[napi(object)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: Float32Array,
}

pub(crate) fn named(name: &str, t: &Tensor) -> napi::Result<NamedTensor> {
    // Also called on the JS thread (jobs' output conversions). A contiguous float32 CPU tensor is one memcpy, done
    // here; anything else (a cast, a gather) runs on the compute thread, which may first finish another job, so the
    // jobs hand back their outputs already contiguous ([`cpu_contiguous`]).
    if t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous() {
        let v = Vec::<f32>::try_from(t.flatten(0, -1)).map_err(|e| js_error(e.into()))?;
        return Ok(NamedTensor { name: name.to_string(), shape: t.size(), data: Float32Array::new(v) });
    }
    let t = t.shallow_clone();
    let (shape, v) = compute::run(move || {
        let t = t.to_kind(Kind::Float).contiguous();
        Vec::<f32>::try_from(t.flatten(0, -1)).map(|v| (t.size(), v))
    })
    .map_err(|e| js_error(e.into()))?;
    Ok(NamedTensor { name: name.to_string(), shape, data: Float32Array::new(v) })
}

/// `t` as a contiguous float32 CPU tensor (inside a job, so that [`named`] on the JS thread is a copy only).
pub(crate) fn cpu_contiguous(t: &Tensor) -> Tensor {
    t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous()
}

/// LibTorch runtime: torch version, CUDA, threads, BLAS, oneDNN (JSON text).
#[napi(catch_unwind)]
pub fn runtime_info() -> napi::Result<String> {
    let info = cxformer_core::runtime::runtime_info().map_err(js_error)?;
    Ok(serde_json::to_string(&info).expect("serializable"))
}

/// Sets LibTorch's intra-op thread count (0 or undefined = all cores); returns the count in effect.
#[napi(catch_unwind)]
pub fn set_threads(n: Option<u32>) -> u32 {
    cxformer_core::runtime::set_threads(n.map(|n| n as usize)) as u32
}

/// `a @ b` through LibTorch (benchmarks of the boundary and of BLAS; LibTorch errors surface as JS errors).
#[napi(catch_unwind)]
pub fn matmul(a: Float32Array, a_shape: Vec<i64>, b: Float32Array, b_shape: Vec<i64>) -> napi::Result<NamedTensor> {
    guarded("matmul", || {
        let ta = tensor_from(&a, &a_shape, "a")?;
        let tb = tensor_from(&b, &b_shape, "b")?;
        let out = ta.f_matmul(&tb).map_err(|e| js_error(e.into()))?;
        named("out", &out)
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoadOptions {
    /// The resolved architecture (VitConfig JSON, snake_case fields as in crates/core).
    config: serde_json::Value,
    /// safetensors file; absent = random initialisation with `seed`.
    weights: Option<String>,
    #[serde(default)]
    seed: i64,
    /// "cpu", "cuda", "cuda:N". @default "cpu"
    #[serde(default = "default_device")]
    device: String,
    /// Load weights holding NaN / Inf (refused by default). @default false
    #[serde(default)]
    allow_non_finite: bool,
}

fn default_device() -> String {
    "cpu".into()
}

/// The backbone of `loadBackbone` and its load report (JSON).
fn load(options: &str) -> napi::Result<(Backbone, String)> {
    let o: LoadOptions = serde_json::from_str(options).map_err(|e| invalid(format!("loadBackbone options: {e}")))?;
    let cfg = VitConfig::from_json(&o.config.to_string()).map_err(js_error)?;
    let device = cxformer_core::runtime::parse_device(&o.device).map_err(js_error)?;
    match o.weights {
        Some(w) => {
            let opts = cxformer_core::weights::LoadOptions { allow_non_finite: o.allow_non_finite };
            let (backbone, report) = Backbone::load_with(&cfg, &w, device, opts).map_err(js_error)?;
            Ok((backbone, serde_json::to_string(&report).expect("serializable")))
        }
        None => {
            let backbone = Backbone::random(&cfg, device, o.seed).map_err(js_error)?;
            Ok((backbone, format!("{{\"random_init\":true,\"seed\":{}}}", o.seed)))
        }
    }
}

/// Builds a backbone on a libuv thread: `options` is JSON `{config, weights?, seed?, device?}`.
#[napi(ts_return_type = "Promise<NativeBackbone>")]
pub fn load_backbone(options: String) -> AsyncTask<Job<(Backbone, String), NativeBackbone>> {
    job_with("loadBackbone", move || load(&options), |(backbone, report)| Ok(NativeBackbone { inner: Shared::new("backbone", backbone), report }))
}

/// A loaded backbone. Calls on one instance are serialised.
#[napi]
pub struct NativeBackbone {
    inner: Shared<Backbone>,
    report: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EmbedOptions {
    /// Block indices (negative from the end) whose full output sequences are returned.
    #[serde(default)]
    intermediate_layers: Vec<i64>,
    /// Apply the final norm to those outputs. @default false
    #[serde(default)]
    norm_intermediates: bool,
    /// "f32" | "bf16". @default "f32"
    #[serde(default)]
    precision: Option<Precision>,
}

/// Named outputs of `embed` (cls, registers, patches, last_hidden_state, prenorm, layer_<i>…).
type Embedded = Vec<(String, Tensor)>;

fn embed(model: &Backbone, pixels: &[f32], shape: &[i64], masks: Option<(Vec<u8>, Vec<i64>)>, options: EmbedOptions) -> napi::Result<Embedded> {
    let x = tensor_from(pixels, shape, "pixelValues")?;
    let masks = match masks {
        None => None,
        Some((m, shape)) => {
            let n: i64 = shape.iter().product();
            if n as usize != m.len() {
                return Err(invalid(format!("masks: shape {shape:?} needs {n} values, got {}", m.len())));
            }
            Some(bytes_tensor(&m, &shape, Kind::Bool))
        }
    };
    let opts = ForwardOptions {
        masks,
        intermediate_layers: options.intermediate_layers.clone(),
        norm_intermediates: options.norm_intermediates,
        train: false,
    };
    let out = model.embed(&x, &opts, options.precision.unwrap_or(Precision::F32)).map_err(js_error)?;
    let mut v = vec![
        ("cls".to_string(), out.cls),
        ("registers".to_string(), out.registers),
        ("patches".to_string(), out.patches),
        ("last_hidden_state".to_string(), out.last_hidden_state),
        ("prenorm".to_string(), out.prenorm),
    ];
    for (i, t) in options.intermediate_layers.iter().zip(out.intermediates) {
        v.push((format!("layer_{i}"), t));
    }
    Ok(v)
}

#[napi]
impl NativeBackbone {
    /// The resolved architecture (VitConfig JSON).
    #[napi(getter)]
    pub fn config(&self) -> napi::Result<String> {
        Ok(self.inner.lock()?.vit.cfg.to_json())
    }

    /// What the load did (layout, ignored keys, source dtypes) as JSON.
    #[napi(getter)]
    pub fn load_report(&self) -> String {
        self.report.clone()
    }

    /// "cpu" or "cuda:N".
    #[napi(getter)]
    pub fn device(&self) -> napi::Result<String> {
        Ok(match self.inner.lock()?.device() {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".into(),
        })
    }

    /// Runs the backbone on a normalised NCHW float32 batch (copied) off the JS thread.
    /// `masks`: optional (B, N) 0/1 bytes. Resolves to the named outputs
    /// (cls, registers, patches, last_hidden_state, prenorm, layer_<i>…).
    #[napi(ts_return_type = "Promise<NamedTensor[]>")]
    pub fn embed(
        &self,
        pixel_values: Float32Array,
        shape: Vec<i64>,
        options: String,
        masks: Option<Uint8Array>,
        mask_shape: Option<Vec<i64>>,
        signal: Option<AbortSignal>,
    ) -> napi::Result<AsyncTask<Job<Embedded, Vec<NamedTensor>>>> {
        let options: EmbedOptions =
            serde_json::from_str(&options).map_err(|e| invalid(format!("embed options: {e}")))?;
        let masks = match (masks, mask_shape) {
            (Some(m), Some(s)) => Some((m.to_vec(), s)),
            (None, None) => None,
            _ => return Err(invalid("masks and maskShape must be given together")),
        };
        let (inner, pixels) = (self.inner.clone(), pixel_values.to_vec());
        let work = move || {
            let out = embed(&*inner.lock()?, &pixels, &shape, masks, options)?;
            Ok(out.into_iter().map(|(n, t)| (n, cpu_contiguous(&t))).collect::<Embedded>())
        };
        let to_js: fn(Embedded) -> napi::Result<Vec<NamedTensor>> = |out| out.iter().map(|(n, t)| named(n, t)).collect();
        Ok(AsyncTask::with_optional_signal(Job::new("embed", work, to_js), signal))
    }

    /// Writes the weights as safetensors (atomically): layout "hf" | "original", dtype "f32" | "bf16" | "f16",
    /// `metadata` as extra header entries.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn save(
        &self,
        path: String,
        layout: String,
        dtype: String,
        metadata: Option<HashMap<String, String>>,
    ) -> napi::Result<AsyncTask<Job<(), ()>>> {
        let layout = match layout.as_str() {
            "hf" => SaveLayout::Hf,
            "original" => SaveLayout::Original,
            o => return Err(invalid(format!("layout '{o}': expected 'hf' or 'original'"))),
        };
        let kind = match dtype.as_str() {
            "f32" => Kind::Float,
            "bf16" => Kind::BFloat16,
            "f16" => Kind::Half,
            o => return Err(invalid(format!("dtype '{o}': expected 'f32', 'bf16' or 'f16'"))),
        };
        let inner = self.inner.clone();
        Ok(job("save", move || inner.lock()?.save(&path, layout, kind, metadata.unwrap_or_default()).map_err(js_error)))
    }
}

//! A ready-to-run backbone: VarStore + ViT on a device, with strict loading, inference and export.
use crate::config::VitConfig;
use crate::error::{Error, Result};
use crate::model::{ForwardOptions, Vit, VitOutput};
use crate::shim::{AutocastDevice, AutocastGuard};
use crate::weights::{LoadOptions, LoadReport, SaveLayout, WeightFile, check_weights, load_backbone_with, save_backbone};
use std::collections::HashMap;
use std::path::Path;
use tch::{Device, Kind, Tensor, nn};

/// Compute precision for inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// float32 everywhere.
    F32,
    /// bf16 autocast (matmuls, convolutions and attention in bf16; norms and softmax statistics in f32),
    /// on CPU and CUDA; parameters stay f32.
    Bf16,
}

impl Precision {
    /// The autocast region of this precision on `device`: none for f32, bf16 autocast (CPU or CUDA) for bf16.
    /// Autocast lasts as long as the returned guard.
    pub fn autocast(self, device: Device) -> Result<Option<AutocastGuard>> {
        Ok(match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(AutocastGuard::bf16(if device.is_cuda() { AutocastDevice::Cuda } else { AutocastDevice::Cpu })?),
        })
    }
}

/// LibTorch's default CPU generator is process-global: building a model draws from it, so seeding and
/// initialising must not interleave with another thread building a model.
pub(crate) static RNG_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Backbone {
    pub vs: nn::VarStore,
    pub vit: Vit,
}

impl Backbone {
    /// A model with DINOv2's from-scratch initialisation, seeded with `seed`.
    pub fn random(cfg: &VitConfig, device: Device, seed: i64) -> Result<Self> {
        let _rng = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(device);
        let vit = Vit::new(&vs.root(), cfg)?;
        crate::model::init_from_scratch(&vs);
        Ok(Backbone { vs, vit })
    }

    /// Builds `cfg` and loads it strictly from a safetensors file (any of the supported key layouts), refusing
    /// non-finite values.
    pub fn load(cfg: &VitConfig, path: impl AsRef<Path>, device: Device) -> Result<(Self, LoadReport)> {
        Self::load_with(cfg, path, device, LoadOptions::default())
    }

    /// [`Backbone::load`] with explicit [`LoadOptions`]. The file's names, shapes and dtypes are checked against
    /// `cfg` before the model is allocated, so a wrong or hostile architecture fails with the tensors named.
    pub fn load_with(cfg: &VitConfig, path: impl AsRef<Path>, device: Device, opts: LoadOptions) -> Result<(Self, LoadReport)> {
        let file = WeightFile::open(path)?;
        check_weights(&file, cfg)?;
        let vs = nn::VarStore::new(device);
        let vit = {
            let _rng = RNG_LOCK.lock().unwrap_or_else(|p| p.into_inner());
            Vit::new(&vs.root(), cfg)?
        };
        let report = load_backbone_with(&vs, &file, opts)?;
        Ok((Backbone { vs, vit }, report))
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Inference: eval mode, no autograd, optional bf16 autocast. Outputs are float32 on the CPU.
    ///
    /// # Shapes
    /// pixel_values: (B, C, H, W) float32 (normalised); masks: (B, N) bool.
    pub fn embed(&self, pixel_values: &Tensor, opts: &ForwardOptions, precision: Precision) -> Result<VitOutput> {
        if pixel_values.kind() != Kind::Float {
            return Err(Error::Shape(format!("pixel_values must be float32, got {:?}", pixel_values.kind())));
        }
        let dev = self.device();
        let x = pixel_values.to_device(dev);
        let opts = ForwardOptions {
            masks: opts.masks.as_ref().map(|m| m.to_device(dev)),
            intermediate_layers: opts.intermediate_layers.clone(),
            norm_intermediates: opts.norm_intermediates,
            train: false,
        };
        if dev.is_cuda() {
            // f32 means float32: no TF32 (LibTorch enables it for cuDNN convolutions by default).
            // bf16 autocast does not go through TF32 anyway.
            crate::shim::set_tf32(false, false)?;
        }
        let out = tch::no_grad(|| -> Result<VitOutput> {
            let _guard = precision.autocast(dev)?;
            self.vit.forward(&x, &opts)
        })?;
        let host = |t: Tensor| t.to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
        Ok(VitOutput {
            cls: host(out.cls),
            registers: host(out.registers),
            patches: host(out.patches),
            prenorm: host(out.prenorm),
            last_hidden_state: host(out.last_hidden_state),
            intermediates: out.intermediates.into_iter().map(host).collect(),
            grid: out.grid,
        })
    }

    /// Writes the weights (HF or original names) atomically, with the resolved config in the metadata
    /// (`cxformer_config`) and `format: pt` as HF expects.
    pub fn save(&self, path: impl AsRef<Path>, layout: SaveLayout, kind: Kind, extra: HashMap<String, String>) -> Result<()> {
        let mut md = extra;
        md.insert("format".into(), "pt".into());
        md.insert("cxformer_config".into(), self.vit.cfg.to_json());
        md.insert(
            "cxformer_layout".into(),
            match layout {
                SaveLayout::Hf => "hf",
                SaveLayout::Original => "original",
            }
            .into(),
        );
        save_backbone(&self.vs, path, layout, kind, md)
    }
}

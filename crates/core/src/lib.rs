//! cxformer native core: the DINOv2 Vision Transformer with registers on LibTorch (through tch),
//! safetensors weights in the HF and original DINOv2 layouts, and runtime settings.
//! No Node-API types here: crates/node is the only binding.
pub mod augment;
pub mod backbone;
pub mod classify;
pub mod config;
pub mod dist;
pub mod downstream;
pub mod error;
pub mod llava;
pub mod lm;
pub mod model;
pub mod rrg;
pub mod runtime;
pub mod seg;
pub mod shim;
pub mod ssl;
pub mod text;
pub mod train;
pub mod weights;

pub use backbone::{Backbone, Precision};
pub use config::{FfnKind, PosInterp, VitConfig};
pub use error::{Error, Result};
pub use model::{ForwardOptions, Vit, VitOutput};
pub use weights::{LoadReport, Layout, SaveLayout, WeightFile};

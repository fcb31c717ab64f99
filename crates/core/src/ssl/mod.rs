//! Self-supervised pretraining (DINOv2 / CXformer recipe, spec §3): heads, losses, teacher targets,
//! optimizer and the SSL model with its training step.
pub mod center;
pub mod checkpoint;
pub mod dist;
pub mod head;
pub mod init;
pub mod loss;
pub mod model;
pub mod optim;

pub use model::{CenteringKind, SslBatch, SslConfig, SslModel, StepRecord, StepSchedule};

//! Self-supervised pretraining (DINOv2 / CXformer recipe, docs/recipe.md §3): heads, losses, teacher targets
//! and the SSL model with its training step.
pub mod center;
pub mod head;
pub mod init;
pub mod loss;
pub mod model;

pub use model::{CenteringKind, ITERATION_KEY, SslBatch, SslConfig, SslInput, SslModel, StepRecord, StepSchedule};

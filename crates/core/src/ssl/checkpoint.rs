//! Training checkpoints: one safetensors file with the whole [`SslModel::state`] (student, teacher,
//! optimizer moments, centres and pending statistics) and metadata (iteration, configs), written atomically.
//! The teacher backbone keys (`teacher.backbone.*`, original DINOv2 names) make a checkpoint directly
//! loadable by `cxformer embed` and `export`.
use super::model::SslModel;
use crate::error::{Error, Result};
use crate::weights::{WeightFile, write_safetensors};
use std::collections::HashMap;
use std::path::Path;

/// Metadata key holding the iteration that the checkpoint has completed (its next iteration is +1).
pub const ITERATION_KEY: &str = "cxformer_iteration";

/// Writes the model state and `metadata` (plus format, iteration and the backbone config) atomically.
pub fn save(model: &SslModel, path: &Path, iteration: i64, mut metadata: HashMap<String, String>) -> Result<()> {
    metadata.insert("format".into(), "pt".into());
    metadata.insert("cxformer_checkpoint".into(), "1".into());
    metadata.insert(ITERATION_KEY.into(), iteration.to_string());
    metadata.insert("cxformer_config".into(), model.cfg.model.to_json());
    metadata.insert("cxformer_ssl_config".into(), serde_json::to_string(&model.cfg).expect("serializable"));
    write_safetensors(path, &model.state(), metadata)
}

/// Restores a checkpoint into `model` (strict: shapes and names must match) and returns its metadata.
pub fn load(model: &mut SslModel, path: &Path) -> Result<HashMap<String, String>> {
    let file = WeightFile::open(path)?;
    let md = file.metadata();
    if md.get("cxformer_checkpoint").map(String::as_str) != Some("1") {
        return Err(Error::weights(path, "not a cxformer training checkpoint (metadata cxformer_checkpoint is missing)"));
    }
    let state = file.tensors()?;
    model.load_state(&state, &path.display().to_string())?;
    Ok(md)
}

//! Continual pretraining: initialise the student from pretrained backbone weights (HF or original DINOv2
//! layout, strict) and optionally the DINO/iBOT heads from a `dino_head.safetensors`; the teacher is then
//! re-copied from the student, as DINOv2 does.
use super::model::SslModel;
use crate::error::{Error, Result};
use crate::weights::{LoadReport, WeightFile, load_backbone};
use std::path::Path;

/// Loads the student backbone strictly from `path` and copies it to the teacher.
pub fn init_backbone(model: &mut SslModel, path: &Path) -> Result<LoadReport> {
    let file = WeightFile::open(path)?;
    let report = load_backbone(&model.student.backbone_vs, &file)?;
    model.copy_student_to_teacher()?;
    Ok(report)
}

/// Loads heads from a safetensors file whose keys are the DINO head's own (`mlp.0.weight`, …,
/// `last_layer.weight_g/v`), optionally prefixed `dino_head.` (and `ibot_head.` for a separate iBOT head).
/// Every parameter of the heads present in the model must be found with the right shape.
pub fn init_heads(model: &mut SslModel, path: &Path) -> Result<Vec<String>> {
    let file = WeightFile::open(path)?;
    let names = file.names();
    let has_prefix = names.iter().any(|n| n.starts_with("dino_head."));
    let mut loaded = Vec::new();
    let mut stores = vec![("dino_head.", &model.student.dino_vs)];
    if let Some(vs) = &model.student.ibot_vs {
        if names.iter().any(|n| n.starts_with("ibot_head.")) {
            stores.push(("ibot_head.", vs));
        }
    }
    for (prefix, vs) in stores {
        let p = if has_prefix { prefix } else { "" };
        tch::no_grad(|| -> Result<()> {
            for (name, mut var) in vs.variables() {
                let key = format!("{p}{name}");
                let t = file
                    .tensor(&key)
                    .map_err(|_| Error::weights(path, format!("head parameter '{key}' is missing (expected keys like {p}mlp.0.weight, {p}last_layer.weight_v)")))?;
                if t.size() != var.size() {
                    return Err(Error::weights(path, format!("'{key}' has shape {:?}, the head expects {:?}", t.size(), var.size())));
                }
                var.f_copy_(&t.to_kind(var.kind()).to_device(var.device()))?;
                loaded.push(key);
            }
            Ok(())
        })?;
    }
    model.copy_student_to_teacher()?;
    Ok(loaded)
}

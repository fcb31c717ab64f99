//! Best-epoch selection on a validation split (`selectBest: valAuroc`, docs/recipe.md §5.1): the macro AUROC of a
//! head, a Rust copy of what src/eval/metrics.ts computes.
use super::config::ProbeTask;
use super::head::forward;
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// AUROC of one class (Mann–Whitney with average ranks for ties, = scikit-learn's roc_auc_score); None when
/// only one label value is present.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let npos = labels.iter().filter(|&&l| l).count();
    let nneg = labels.len() - npos;
    if npos == 0 || nneg == 0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0; // 1-based average rank of the tie group
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    Some((rank_sum_pos - (npos * (npos + 1)) as f64 / 2.0) / (npos * nneg) as f64)
}

/// Macro AUROC of a head on a split over the classes defined there (multiclass: one-vs-rest on column-0
/// class indices); None when no class is defined.
pub(crate) fn macro_auroc(layers: &[(Tensor, Tensor)], x: &Tensor, y: &Tensor, m: &Tensor, task: ProbeTask) -> Result<Option<f64>> {
    let logits = tch::no_grad(|| forward(layers, x))?;
    let probs = match task {
        ProbeTask::Multiclass => logits.f_softmax(-1, Kind::Float)?,
        _ => logits.f_sigmoid()?,
    };
    let c = probs.size()[1];
    let p = Vec::<Vec<f32>>::try_from(probs.f_to_device(Device::Cpu)?)?;
    let yy = Vec::<Vec<f32>>::try_from(y.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
    let mm = Vec::<Vec<f32>>::try_from(m.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?)?;
    let mut vals = Vec::new();
    for k in 0..c as usize {
        let (mut s, mut l) = (Vec::new(), Vec::new());
        for r in 0..p.len() {
            let (col, lab) = match task {
                ProbeTask::Multiclass => (0, yy[r][0] as usize == k),
                _ => (k, yy[r][k] > 0.5),
            };
            if mm[r][col] > 0.0 {
                s.push(p[r][k] as f64);
                l.push(lab);
            }
        }
        if let Some(a) = auroc(&s, &l) {
            vals.push(a);
        }
    }
    Ok((!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64))
}

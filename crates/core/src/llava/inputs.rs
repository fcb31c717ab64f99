//! Text inputs of the LLaVA: the image placeholder tokens, the report labels and the loss.
//!
//! **Image tokens** ([`expand_image_tokens`]): transformers' processor writes `image_seq_length` copies of the
//! image token per image and the model replaces their embeddings, in order, by the projected visual tokens
//! (`masked_scatter`: image i fills the i-th run of placeholders in row-major order). Both prompt forms are
//! accepted: already expanded (T image tokens per image: kept as they are) or one token per image (each expanded
//! here to T copies; rows that grow to different lengths are left-padded to the longest with mask 0 and label
//! −100). Any other count is refused with both counts.
//!
//! **Loss** ([`causal_lm_loss`]): transformers' `ForCausalLMLoss`: the logits at position t predict the label at
//! t + 1; mean cross-entropy over the labels that are not [`IGNORE_INDEX`], in float32. Labels are the token ids
//! of the report (and its EOS) and −100 elsewhere: prompt, image tokens and padding ([`report_labels`]).
//! [`causal_lm_loss_on_targets`] computes the same loss from the hidden states with the LM head applied to the
//! target positions only: the head (d × V, e.g. 896 × 151,936) and its (positions × V) logits are paid for the
//! report tokens, not for the hundreds of visual and prompt tokens (same value up to float summation order).
use crate::bail_shape;
use crate::error::Result;
use crate::lm::LanguageModel;
use tch::{Device, Kind, Tensor};

/// transformers' ignored label.
pub const IGNORE_INDEX: i64 = -100;

/// Text inputs with the image tokens expanded (CPU, int64).
#[derive(Debug)]
pub struct LlavaInputs {
    /// (B, T') ids.
    pub input_ids: Tensor,
    /// (B, T') 1 = real token, 0 = padding.
    pub attention_mask: Tensor,
    /// (B, T') labels (−100 on image tokens, given or expanded, and on added padding), when labels were given.
    pub labels: Option<Tensor>,
    /// Whether the image tokens were expanded here (false: the prompt was already expanded).
    pub expanded: bool,
}

fn rows(t: &Tensor, what: &str, b: i64, len: i64) -> Result<Vec<Vec<i64>>> {
    if t.size() != [b, len] {
        bail_shape!("{what}: expected shape [{b}, {len}] (input_ids'), got {:?}", t.size());
    }
    Ok(Vec::<Vec<i64>>::try_from(&t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Int64)?)?)
}

/// Expands each `image_token` of `input_ids` to `per_image` copies unless the prompt already holds `per_image`
/// per image (see the module docs); `pad_id` fills added left padding.
///
/// # Shapes
/// input_ids, attention_mask, labels: (B, T) → (B, T') each
pub fn expand_image_tokens(
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    labels: Option<&Tensor>,
    image_token: i64,
    n_images: i64,
    per_image: i64,
    pad_id: i64,
) -> Result<LlavaInputs> {
    if input_ids.dim() != 2 || input_ids.kind() != Kind::Int64 {
        bail_shape!("input_ids: expected a (B, T) int64 tensor, got {:?} {:?}", input_ids.size(), input_ids.kind());
    }
    let (b, t) = input_ids.size2()?;
    let ids = rows(input_ids, "input_ids", b, t)?;
    let mask = match attention_mask {
        Some(m) => rows(m, "attention_mask", b, t)?,
        None => vec![vec![1; t as usize]; b as usize],
    };
    let lab = labels.map(|l| rows(l, "labels", b, t)).transpose()?;
    let count: i64 = ids.iter().flatten().filter(|&&x| x == image_token).count() as i64;
    let to_tensors = |ids: Vec<Vec<i64>>, mask: Vec<Vec<i64>>, lab: Option<Vec<Vec<i64>>>, expanded: bool| -> Result<LlavaInputs> {
        let len = ids.first().map_or(0, Vec::len) as i64;
        let t2 = |v: Vec<Vec<i64>>| -> Result<Tensor> { Ok(Tensor::from_slice(&v.concat()).f_view([b, len])?) };
        Ok(LlavaInputs { input_ids: t2(ids)?, attention_mask: t2(mask)?, labels: lab.map(t2).transpose()?, expanded })
    };
    if count == n_images * per_image {
        // Image positions are never targets.
        let lab = lab.map(|l| {
            l.into_iter().zip(&ids).map(|(lr, ir)| lr.into_iter().zip(ir).map(|(x, &i)| if i == image_token { IGNORE_INDEX } else { x }).collect()).collect()
        });
        return to_tensors(ids, mask, lab, false);
    }
    if count != n_images {
        bail_shape!(
            "input_ids hold {count} image token(s) (id {image_token}) for {n_images} image(s): expected {n_images} (one per image, \
             expanded here to {per_image} each) or {} ({per_image} per image, already expanded)",
            n_images * per_image
        );
    }
    let (mut out_ids, mut out_mask, mut out_lab) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..b as usize {
        let (mut i2, mut m2, mut l2) = (Vec::new(), Vec::new(), Vec::new());
        for j in 0..t as usize {
            let n = if ids[r][j] == image_token { per_image as usize } else { 1 };
            i2.extend(std::iter::repeat_n(ids[r][j], n));
            m2.extend(std::iter::repeat_n(mask[r][j], n));
            let l = lab.as_ref().map_or(IGNORE_INDEX, |l| if ids[r][j] == image_token { IGNORE_INDEX } else { l[r][j] });
            l2.extend(std::iter::repeat_n(l, n));
        }
        out_ids.push(i2);
        out_mask.push(m2);
        out_lab.push(l2);
    }
    let longest = out_ids.iter().map(Vec::len).max().unwrap_or(0);
    for r in 0..b as usize {
        let pad = longest - out_ids[r].len();
        let left = |v: &mut Vec<i64>, x: i64| {
            v.splice(0..0, std::iter::repeat_n(x, pad));
        };
        left(&mut out_ids[r], pad_id);
        left(&mut out_mask[r], 0);
        left(&mut out_lab[r], IGNORE_INDEX);
    }
    to_tensors(out_ids, out_mask, lab.map(|_| out_lab), true)
}

/// Labels for a loss on the report tokens only: `input_ids` where `target_mask` is true (non-zero), −100
/// elsewhere.
///
/// # Shapes
/// input_ids, target_mask: (B, T) → (B, T) int64
pub fn report_labels(input_ids: &Tensor, target_mask: &Tensor) -> Result<Tensor> {
    if input_ids.size() != target_mask.size() {
        bail_shape!("target_mask: expected shape {:?} (input_ids'), got {:?}", input_ids.size(), target_mask.size());
    }
    let keep = target_mask.f_to_device(input_ids.device())?.f_ne(0)?;
    Ok(input_ids.f_where_scalarother(&keep, IGNORE_INDEX)?)
}

/// transformers' causal LM loss (see the module docs) and the number of labels it averages over (0 → a zero
/// loss that still depends on the logits, so that backward runs).
///
/// # Shapes
/// logits: (B, T, V), labels: (B, T) int64 → scalar float32
pub fn causal_lm_loss(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, i64)> {
    if logits.dim() != 3 || labels.size() != logits.size()[..2] {
        bail_shape!("causal LM loss: expected logits (B, T, V) and labels (B, T), got {:?} and {:?}", logits.size(), labels.size());
    }
    let (b, t, v) = logits.size3()?;
    if t < 2 {
        return Ok((logits.f_sum(Kind::Float)?.f_mul_scalar(0.0)?, 0));
    }
    // Position t predicts label t + 1.
    let x = logits.f_narrow(1, 0, t - 1)?.f_to_kind(Kind::Float)?.f_reshape([b * (t - 1), v])?;
    let y = labels.f_to_device(logits.device())?.f_narrow(1, 1, t - 1)?.f_reshape([b * (t - 1)])?;
    let n = y.f_ne(IGNORE_INDEX)?.f_sum(Kind::Int64)?.f_int64_value(&[])?;
    if n == 0 {
        return Ok((x.f_sum(Kind::Float)?.f_mul_scalar(0.0)?, 0));
    }
    // Mean over the non-ignored targets (torch's cross_entropy with ignore_index).
    let loss = x.f_cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, IGNORE_INDEX, 0.0)?;
    Ok((loss, n))
}

/// [`causal_lm_loss`] from the LM's hidden states (after its final norm), the head applied only at the positions
/// whose next label is not [`IGNORE_INDEX`] (see the module docs), and the number of labels it averages over (0 → a
/// zero loss that still depends on the hidden states, so that backward runs).
///
/// # Shapes
/// hidden: (B, T, d), labels: (B, T) int64 → scalar float32
pub fn causal_lm_loss_on_targets(lm: &LanguageModel, hidden: &Tensor, labels: &Tensor) -> Result<(Tensor, i64)> {
    if hidden.dim() != 3 || labels.size() != hidden.size()[..2] {
        bail_shape!("causal LM loss: expected hidden states (B, T, d) and labels (B, T), got {:?} and {:?}", hidden.size(), labels.size());
    }
    let (b, t, d) = hidden.size3()?;
    let zero = || -> Result<(Tensor, i64)> { Ok((hidden.f_sum(Kind::Float)?.f_mul_scalar(0.0)?, 0)) };
    if t < 2 {
        return zero();
    }
    // Position t predicts label t + 1: keep the positions with a target.
    let y = labels.f_to_device(hidden.device())?.f_narrow(1, 1, t - 1)?.f_reshape([b * (t - 1)])?;
    let keep = y.f_ne(IGNORE_INDEX)?.f_nonzero()?.f_reshape([-1])?;
    let n = keep.size()[0];
    if n == 0 {
        return zero();
    }
    let h = hidden.f_narrow(1, 0, t - 1)?.f_reshape([b * (t - 1), d])?.f_index_select(0, &keep)?;
    let logits = lm.logits(&h)?;
    let loss = logits.f_cross_entropy_loss::<Tensor>(&y.f_index_select(0, &keep)?, None, tch::Reduction::Mean, IGNORE_INDEX, 0.0)?;
    Ok((loss, n))
}

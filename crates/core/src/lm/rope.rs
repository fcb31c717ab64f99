//! Rotary position embeddings (Su et al. 2021) as transformers computes them: inverse frequencies
//! θ^(−2i/Dh) (`modeling_rope_utils.py` `_compute_default_rope_parameters`, optionally rescaled: `linear`,
//! `llama3`), angles = position · inverse frequency in float32, cos/sin of the angles repeated over both halves
//! of the head, and x·cos + rotate_half(x)·sin with rotate_half(x) = (−x₂, x₁) (`modeling_llama.py`
//! `apply_rotary_pos_emb`).
use super::config::RopeScaling;
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// The inverse frequencies of one head (Dh/2 values), float32.
#[derive(Debug)]
pub struct Rope {
    inv_freq: Tensor,
}

impl Rope {
    /// θ^(−2i/Dh) for i < Dh/2, rescaled per `scaling`; computed in f64, stored in float32 on `device`.
    pub fn new(head_dim: i64, theta: f64, scaling: &RopeScaling, device: Device) -> Self {
        let base: Vec<f64> = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64)).collect();
        let inv: Vec<f32> = base.iter().map(|&f| scale(f, scaling) as f32).collect();
        Rope { inv_freq: Tensor::from_slice(&inv).to_device(device) }
    }

    /// cos and sin of every position's angles, each (B, 1, T, Dh) in `kind`.
    ///
    /// # Shapes
    /// positions: (B, T) int64 → ((B, 1, T, Dh), (B, 1, T, Dh))
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
        // (B, T, 1) · (Dh/2,) → (B, T, Dh/2), float32 as transformers (autocast disabled there).
        let inv_freq = self.inv_freq.f_to_device(positions.device())?;
        let freqs = positions.f_to_kind(Kind::Float)?.f_unsqueeze(-1)?.f_mul(&inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?.f_unsqueeze(1)?;
        Ok((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?))
    }
}

/// One inverse frequency after the scaling rule.
fn scale(inv_freq: f64, scaling: &RopeScaling) -> f64 {
    match *scaling {
        RopeScaling::Default => inv_freq,
        RopeScaling::Linear { factor } => inv_freq / factor,
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
            let low_freq_wavelen = old / low_freq_factor;
            let high_freq_wavelen = old / high_freq_factor;
            let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
            if wavelen < high_freq_wavelen {
                inv_freq
            } else if wavelen > low_freq_wavelen {
                inv_freq / factor
            } else {
                // Medium frequencies: interpolate between the scaled and the original frequency.
                let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
            }
        }
    }
}

/// x·cos + rotate_half(x)·sin.
///
/// # Shapes
/// x: (B, H, T, Dh), cos/sin: (B, 1, T, Dh) → (B, H, T, Dh)
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.size()[3] / 2;
    let (x1, x2) = (x.f_narrow(3, 0, half)?, x.f_narrow(3, half, half)?);
    let rotated = Tensor::f_cat(&[&x2.f_neg()?, &x1], 3)?;
    Ok(x.f_mul(cos)?.f_add(&rotated.f_mul(sin)?)?)
}

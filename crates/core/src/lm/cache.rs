//! The key/value cache of decoding and what every family's attention shares: the boolean attention mask
//! (causal AND key padding), default position ids, and SDPA with grouped-query heads.
use crate::bail_shape;
use crate::error::Result;
use tch::{Device, Kind, Tensor};

/// Per layer, the keys and values of the positions seen so far, in buffers preallocated for `capacity`
/// positions and filled in place (no concatenation per step).
#[derive(Debug)]
pub struct KvCache {
    /// Per layer: keys and values, each (B, H_kv, capacity, Dh); positions 0..len are filled.
    layers: Vec<(Tensor, Tensor)>,
    len: i64,
    capacity: i64,
}

impl KvCache {
    /// Empty buffers for `layers` layers of (batch, kv_heads, capacity, head_dim) keys and values.
    pub fn new(layers: i64, batch: i64, kv_heads: i64, capacity: i64, head_dim: i64, kind: Kind, device: Device) -> Result<Self> {
        if capacity < 1 || batch < 1 {
            bail_shape!("KV cache: batch ({batch}) and capacity ({capacity}) must be ≥ 1");
        }
        let layers = (0..layers)
            .map(|_| {
                let k = Tensor::f_zeros([batch, kv_heads, capacity, head_dim], (kind, device))?;
                let v = Tensor::f_zeros([batch, kv_heads, capacity, head_dim], (kind, device))?;
                Ok((k, v))
            })
            .collect::<Result<_>>()?;
        Ok(KvCache { layers, len: 0, capacity })
    }

    /// Positions filled so far (the past length of the next forward).
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold.
    pub fn capacity(&self) -> i64 {
        self.capacity
    }

    /// Rows of the batch.
    pub fn batch(&self) -> i64 {
        self.layers.first().map_or(0, |l| l.0.size()[0])
    }

    /// Keeps row `index[i]` as row i (beam search: each surviving beam continues the one it extends; rows may
    /// repeat, and B' may differ from B, e.g. to expand a prompt to its beams).
    ///
    /// # Shapes
    /// index: (B',) int64 → a cache of B' rows
    pub fn reorder(&mut self, index: &Tensor) -> Result<()> {
        for (k, v) in &mut self.layers {
            let idx = index.f_to_device(k.device())?;
            *k = k.f_index_select(0, &idx)?;
            *v = v.f_index_select(0, &idx)?;
        }
        Ok(())
    }

    /// Writes layer `layer`'s keys and values of `t` new positions at len..len+t and returns the keys and values
    /// of positions 0..len+t. [`KvCache::advance`] moves `len` once every layer has written.
    ///
    /// # Shapes
    /// k, v: (B, H_kv, t, Dh) → ((B, H_kv, len+t, Dh), (B, H_kv, len+t, Dh))
    pub(crate) fn update(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.size()[2];
        let (kb, vb) = &mut self.layers[layer];
        kb.f_narrow(2, self.len, t)?.f_copy_(k)?;
        vb.f_narrow(2, self.len, t)?.f_copy_(v)?;
        Ok((kb.f_narrow(2, 0, self.len + t)?, vb.f_narrow(2, 0, self.len + t)?))
    }

    /// Checks that `t` more positions of a `batch`-row input fit.
    pub(crate) fn check(&self, batch: i64, t: i64, layers: usize) -> Result<()> {
        if self.layers.len() != layers {
            bail_shape!("KV cache: built for {} layers, the model has {layers}", self.layers.len());
        }
        if batch != self.batch() {
            bail_shape!("KV cache: {} rows, the input has {batch}", self.batch());
        }
        if self.len + t > self.capacity {
            bail_shape!("KV cache: {} cached + {t} new positions exceed its capacity {}", self.len, self.capacity);
        }
        Ok(())
    }

    pub(crate) fn advance(&mut self, t: i64) {
        self.len += t;
    }
}

/// Attention inputs of one forward, shared by every layer.
#[derive(Debug)]
pub(crate) struct AttnMask {
    /// (B, 1, T, S) bool, true = attend; None with `causal` = plain causal attention over T = S positions.
    pub mask: Option<Tensor>,
    pub causal: bool,
}

/// The mask of T new positions after `past` cached ones: query i (absolute past + i) sees key j iff
/// j ≤ past + i and `key_mask[b, j]`; every query also sees itself, so that a padding position (which no real
/// position attends to) gets finite values instead of the NaN of an empty softmax.
///
/// # Shapes
/// key_mask: (B, past + T) bool or None → (B, 1, T, past + T) bool
pub(crate) fn attention_mask(key_mask: Option<&Tensor>, past: i64, t: i64, device: Device) -> Result<AttnMask> {
    let s = past + t;
    let Some(km) = key_mask else {
        if past == 0 || t == 1 {
            // No padding: SDPA's own causal mask (top-left aligned, right when past == 0); one query sees all.
            return Ok(AttnMask { mask: None, causal: past == 0 && t > 1 });
        }
        let q = Tensor::f_arange_start(past, s, (Kind::Int64, device))?.f_view([t, 1])?;
        let k = Tensor::f_arange(s, (Kind::Int64, device))?.f_view([1, s])?;
        return Ok(AttnMask { mask: Some(k.f_le_tensor(&q)?.f_view([1, 1, t, s])?), causal: false });
    };
    let b = km.size()[0];
    let q = Tensor::f_arange_start(past, s, (Kind::Int64, device))?.f_view([t, 1])?;
    let k = Tensor::f_arange(s, (Kind::Int64, device))?.f_view([1, s])?;
    let causal = k.f_le_tensor(&q)?; // (T, S)
    let own = k.f_eq_tensor(&q)?;
    let m = causal.f_view([1, 1, t, s])?.f_logical_and(&km.f_view([b, 1, 1, s])?)?.f_logical_or(&own.f_view([1, 1, t, s])?)?;
    Ok(AttnMask { mask: Some(m), causal: false })
}

/// Position ids of T new positions: from the mask as transformers' `generate` derives them
/// (cumsum(mask) − 1, padding positions set to 1, last T columns), else past..past+T.
///
/// # Shapes
/// key_mask: (B, past + T) bool → (B, T) int64
pub(crate) fn default_positions(key_mask: Option<&Tensor>, b: i64, past: i64, t: i64, device: Device) -> Result<Tensor> {
    match key_mask {
        Some(km) => {
            let pos = km.f_to_kind(Kind::Int64)?.f_cumsum(1, Kind::Int64)?.f_sub_scalar(1)?;
            let pos = pos.f_masked_fill(&km.f_logical_not()?, 1)?;
            Ok(pos.f_narrow(1, past, t)?)
        }
        None => Ok(Tensor::f_arange_start(past, past + t, (Kind::Int64, device))?.f_view([1, t])?.f_expand([b, t], false)?),
    }
}

/// softmax(q kᵀ·scale + mask) v with H_kv key/value heads shared by groups of H / H_kv query heads (each k/v
/// head repeated, transformers `repeat_kv`), then heads merged.
///
/// # Shapes
/// q: (B, H, T, Dh), k, v: (B, H_kv, S, Dh) → (B, T, H·Dh)
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, mask: &AttnMask, scale: f64) -> Result<Tensor> {
    let (b, h, t, dh) = q.size4()?;
    let (_, hkv, s, _) = k.size4()?;
    let (k, v) = if hkv != h {
        let rep = |x: &Tensor| -> Result<Tensor> {
            // (B, H_kv, S, Dh) → (B, H_kv, n_rep, S, Dh) → (B, H, S, Dh); head j uses k/v head j / n_rep.
            Ok(x.f_unsqueeze(2)?.f_expand([b, hkv, h / hkv, s, dh], false)?.f_reshape([b, h, s, dh])?)
        };
        (rep(k)?, rep(v)?)
    } else {
        (k.shallow_clone(), v.shallow_clone())
    };
    let o = Tensor::f_scaled_dot_product_attention(q, &k, &v, mask.mask.as_ref(), 0.0, mask.causal, Some(scale), false)?;
    // (B, H, T, Dh) → (B, T, H, Dh) → (B, T, H·Dh)
    Ok(o.f_transpose(1, 2)?.f_reshape([b, t, h * dh])?)
}

//! The captioner's text decoder: token embedding + learned absolute positions, N pre-LN layers (causal
//! self-attention, cross-attention over the visual memory, GELU MLP), a final LayerNorm and the output
//! projection tied to the token embedding (GPT-2 / nanoGPT's block order, github.com/karpathy/nanoGPT
//! `model.py`, plus the cross-attention of Vaswani et al. 2017's decoder).
//!
//! Each layer (dropout p on each residual branch while training):
//! x ← x + Drop(SelfAttn(LN₁(x)))  (causal);  x ← x + Drop(CrossAttn(LN₂(x), memory));  x ← x + Drop(FC₂(GELU(FC₁(LN₃(x))))).
//! Attention is LibTorch's `scaled_dot_product_attention` (softmax(q kᵀ/√Dh) v); GELU is the exact (erf) one.
//!
//! Variable names (safetensors keys, under the model root):
//! - `decoder.embed_tokens.weight` (V, d), `decoder.embed_positions.weight` (P, d)
//! - `decoder.layers.{i}.self_attn_norm.weight|bias`, `decoder.layers.{i}.self_attn.{q,k,v,out}_proj.weight|bias`
//! - `decoder.layers.{i}.cross_attn_norm.weight|bias`, `decoder.layers.{i}.cross_attn.{q,k,v,out}_proj.weight|bias`
//!   (q from the text (d → d), k and v from the projected memory (d → d))
//! - `decoder.layers.{i}.mlp_norm.weight|bias`, `decoder.layers.{i}.mlp.fc1.weight|bias` (F, d),
//!   `decoder.layers.{i}.mlp.fc2.weight|bias` (d, F)
//! - `decoder.final_norm.weight|bias`; `lm_head.weight` (V, d) only when embeddings are not tied.
//!
//! Decoding reuses per-layer state ([`DecoderCache`]): the self-attention keys and values of the tokens so far,
//! in buffers preallocated for the whole output and filled one position per step, and the cross-attention keys
//! and values of the memory, computed once per image.
use super::config::RrgConfig;
use crate::bail_shape;
use crate::error::Result;
use tch::{Kind, Tensor, nn};

/// Multi-head attention with separate q, k, v projections (k, v may read another sequence).
#[derive(Debug)]
pub struct Mha {
    q_proj: nn::Linear,
    k_proj: nn::Linear,
    v_proj: nn::Linear,
    out_proj: nn::Linear,
    heads: i64,
}

impl Mha {
    fn new(p: nn::Path, d: i64, heads: i64) -> Self {
        let l = |n: &str| nn::linear(&p / n, d, d, Default::default());
        Mha { q_proj: l("q_proj"), k_proj: l("k_proj"), v_proj: l("v_proj"), out_proj: l("out_proj"), heads }
    }

    /// (B, T, d) → (B, H, T, Dh)
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.size3()?;
        Ok(x.reshape([b, t, self.heads, d / self.heads]).transpose(1, 2))
    }

    /// (B, H, T, Dh) → (B, T, d), then the output projection.
    fn merge(&self, o: &Tensor) -> Result<Tensor> {
        let (b, h, t, dh) = o.size4()?;
        Ok(o.transpose(1, 2).reshape([b, t, h * dh]).apply(&self.out_proj))
    }

    /// Keys and values of `x`, each (B, H, T, Dh).
    fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.split(&x.apply(&self.k_proj))?, self.split(&x.apply(&self.v_proj))?))
    }

    /// softmax(q kᵀ/√Dh + mask) v then the output projection; `mask` (B, 1, 1|Tq, Tk) bool, true = attend.
    ///
    /// # Shapes
    /// x: (B, Tq, d), k, v: (B, H, Tk, Dh) → (B, Tq, d)
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, causal: bool) -> Result<Tensor> {
        let q = self.split(&x.apply(&self.q_proj))?;
        let o = Tensor::f_scaled_dot_product_attention(&q, k, v, mask, 0.0, causal, None, false)?;
        self.merge(&o)
    }
}

/// One pre-LN decoder layer (see the module docs).
#[derive(Debug)]
pub struct DecoderLayer {
    self_attn_norm: nn::LayerNorm,
    self_attn: Mha,
    cross_attn_norm: nn::LayerNorm,
    cross_attn: Mha,
    mlp_norm: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: f64,
}

impl DecoderLayer {
    fn new(p: nn::Path, cfg: &RrgConfig) -> Self {
        let d = cfg.d_model;
        let ln = |n: &str| nn::layer_norm(&p / n, vec![d], nn::LayerNormConfig { eps: cfg.layer_norm_eps, ..Default::default() });
        DecoderLayer {
            self_attn_norm: ln("self_attn_norm"),
            self_attn: Mha::new(&p / "self_attn", d, cfg.num_heads),
            cross_attn_norm: ln("cross_attn_norm"),
            cross_attn: Mha::new(&p / "cross_attn", d, cfg.num_heads),
            mlp_norm: ln("mlp_norm"),
            fc1: nn::linear(&p / "mlp" / "fc1", d, cfg.ffn_dim, Default::default()),
            fc2: nn::linear(&p / "mlp" / "fc2", cfg.ffn_dim, d, Default::default()),
            dropout: cfg.dropout,
        }
    }

    fn mlp(&self, x: &Tensor, train: bool) -> Tensor {
        x.apply(&self.mlp_norm).apply(&self.fc1).gelu("none").apply(&self.fc2).dropout(self.dropout, train)
    }

    /// Teacher forcing over whole sequences.
    ///
    /// # Shapes
    /// x: (B, T, d), memory k/v: (B, H, M, Dh), memory_mask: (B, 1, 1, M) → (B, T, d)
    fn forward(&self, x: &Tensor, mk: &Tensor, mv: &Tensor, mmask: Option<&Tensor>, train: bool) -> Result<Tensor> {
        let h = x.apply(&self.self_attn_norm);
        let (k, v) = self.self_attn.kv(&h)?;
        let x = x + self.self_attn.attend(&h, &k, &v, None, true)?.dropout(self.dropout, train);
        let h = x.apply(&self.cross_attn_norm);
        let x = &x + self.cross_attn.attend(&h, mk, mv, mmask, false)?.dropout(self.dropout, train);
        Ok(&x + self.mlp(&x, train))
    }

    /// One decoding position: appends this position's key and value at `pos` of the layer's buffers and attends
    /// over positions 0..=pos (eval mode).
    ///
    /// # Shapes
    /// x: (B, 1, d), buffers (B, H, capacity, Dh) → (B, 1, d)
    fn step(&self, x: &Tensor, cache: &mut LayerCache, pos: i64, mmask: Option<&Tensor>) -> Result<Tensor> {
        let h = x.apply(&self.self_attn_norm);
        let (k, v) = self.self_attn.kv(&h)?;
        cache.self_k.narrow(2, pos, 1).copy_(&k);
        cache.self_v.narrow(2, pos, 1).copy_(&v);
        let (ks, vs) = (cache.self_k.narrow(2, 0, pos + 1), cache.self_v.narrow(2, 0, pos + 1));
        let x = x + self.self_attn.attend(&h, &ks, &vs, None, false)?;
        let h = x.apply(&self.cross_attn_norm);
        let x = &x + self.cross_attn.attend(&h, &cache.cross_k, &cache.cross_v, mmask, false)?;
        Ok(&x + self.mlp(&x, false))
    }
}

/// One layer's decoding state.
#[derive(Debug)]
struct LayerCache {
    /// (B, H, capacity, Dh), positions 0..len filled.
    self_k: Tensor,
    self_v: Tensor,
    /// (B, H, M, Dh), computed once.
    cross_k: Tensor,
    cross_v: Tensor,
}

/// The decoding state of a batch: per layer, the self-attention keys/values of the positions decoded so far
/// (preallocated for `capacity` positions) and the cross-attention keys/values of the memory.
#[derive(Debug)]
pub struct DecoderCache {
    layers: Vec<LayerCache>,
    /// (B, 1, 1, M) bool, true = a real memory token.
    memory_mask: Option<Tensor>,
    len: i64,
    capacity: i64,
}

impl DecoderCache {
    /// Positions decoded so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    /// Whether nothing has been decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Rows of the batch.
    pub fn batch(&self) -> i64 {
        self.layers.first().map_or(0, |l| l.self_k.size()[0])
    }

    /// Keeps row `index[i]` as row i of every buffer (beam search: each surviving beam continues the
    /// hypothesis it extends). Rows may repeat; the memory part is reordered too.
    ///
    /// # Shapes
    /// index: (B',) int64 → a cache of B' rows
    pub fn reorder(&mut self, index: &Tensor) -> Result<()> {
        for l in &mut self.layers {
            l.self_k = l.self_k.f_index_select(0, index)?;
            l.self_v = l.self_v.f_index_select(0, index)?;
            l.cross_k = l.cross_k.f_index_select(0, index)?;
            l.cross_v = l.cross_v.f_index_select(0, index)?;
        }
        if let Some(m) = &self.memory_mask {
            self.memory_mask = Some(m.f_index_select(0, index)?);
        }
        Ok(())
    }
}

/// The decoder (see the module docs).
#[derive(Debug)]
pub struct Decoder {
    cfg: RrgConfig,
    embed_tokens: Tensor,
    embed_positions: Tensor,
    layers: Vec<DecoderLayer>,
    final_norm: nn::LayerNorm,
    lm_head: Option<Tensor>,
}

/// (B, M) bool → (B, 1, 1, M), checked against the memory.
fn attn_mask(mask: Option<&Tensor>, b: i64, m: i64) -> Result<Option<Tensor>> {
    match mask {
        None => Ok(None),
        Some(k) => {
            if k.size() != [b, m] || k.kind() != Kind::Bool {
                bail_shape!("memory mask: expected a bool tensor of shape [{b}, {m}] (true = a real token), got {:?} {:?}", k.kind(), k.size());
            }
            Ok(Some(k.reshape([b, 1, 1, m])))
        }
    }
}

impl Decoder {
    /// Builds the decoder under `p` (the model root's `decoder`); `lm_head` (untied output projection) under `head`.
    pub fn new(p: nn::Path, head: nn::Path, cfg: &RrgConfig) -> Self {
        let d = cfg.d_model;
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let embed_tokens = (&p / "embed_tokens").var("weight", &[cfg.vocab_size, d], init);
        let embed_positions = (&p / "embed_positions").var("weight", &[cfg.max_positions, d], init);
        let layers = (0..cfg.num_layers).map(|i| DecoderLayer::new(&p / "layers" / i, cfg)).collect();
        let final_norm = nn::layer_norm(&p / "final_norm", vec![d], nn::LayerNormConfig { eps: cfg.layer_norm_eps, ..Default::default() });
        let lm_head = (!cfg.tie_embeddings).then(|| head.var("weight", &[cfg.vocab_size, d], init));
        Decoder { cfg: cfg.clone(), embed_tokens, embed_positions, layers, final_norm, lm_head }
    }

    fn check_tokens(&self, tokens: &Tensor, start: i64) -> Result<(i64, i64)> {
        if tokens.dim() != 2 || tokens.kind() != Kind::Int64 {
            bail_shape!("tokens: expected a (B, T) int64 tensor, got {:?} {:?}", tokens.size(), tokens.kind());
        }
        let (b, t) = tokens.size2()?;
        if start + t > self.cfg.max_positions {
            bail_shape!("tokens: positions {start}..{} exceed maxPositions {}", start + t, self.cfg.max_positions);
        }
        if tokens.numel() > 0 {
            let (lo, hi) = (tokens.min().int64_value(&[]), tokens.max().int64_value(&[]));
            if lo < 0 || hi >= self.cfg.vocab_size {
                bail_shape!("tokens: ids must lie in [0, {}) (vocabSize), found {lo}..={hi}", self.cfg.vocab_size);
            }
        }
        Ok((b, t))
    }

    /// Token + position embeddings of positions start..start+T.
    fn embed(&self, tokens: &Tensor, start: i64, train: bool) -> Tensor {
        let t = tokens.size()[1];
        let pos = self.embed_positions.narrow(0, start, t);
        (Tensor::embedding(&self.embed_tokens, tokens, -1, false, false) + pos).dropout(self.cfg.dropout, train)
    }

    /// Final norm and output projection, float32 logits.
    fn logits(&self, x: &Tensor) -> Tensor {
        let w = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        x.apply(&self.final_norm).matmul(&w.tr()).to_kind(Kind::Float)
    }

    /// Teacher-forced logits of every position (causal: position t sees tokens 0..=t and the whole memory).
    ///
    /// # Shapes
    /// memory: (B, M, d) projected ([`super::memory::MemoryProjector`]); memory_mask: (B, M) bool, true = real
    /// token; tokens: (B, T) int64, T ≤ maxPositions → logits (B, T, V) float32
    pub fn forward(&self, memory: &Tensor, memory_mask: Option<&Tensor>, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let (b, _) = self.check_tokens(tokens, 0)?;
        let (mb, m, _) = memory.size3()?;
        if mb != b {
            bail_shape!("memory has {mb} rows but tokens have {b}");
        }
        let mmask = attn_mask(memory_mask, b, m)?;
        let mut x = self.embed(tokens, 0, train);
        for l in &self.layers {
            let (mk, mv) = l.cross_attn.kv(memory)?;
            x = l.forward(&x, &mk, &mv, mmask.as_ref(), train)?;
        }
        Ok(self.logits(&x))
    }

    /// An empty decoding state for `capacity` positions with the memory's cross-attention keys and values.
    ///
    /// # Shapes
    /// memory: (B, M, d) projected; memory_mask: (B, M) bool
    pub fn new_cache(&self, memory: &Tensor, memory_mask: Option<&Tensor>, capacity: i64) -> Result<DecoderCache> {
        if capacity < 1 || capacity > self.cfg.max_positions {
            bail_shape!("decoding capacity {capacity} must lie in 1..={} (maxPositions)", self.cfg.max_positions);
        }
        let (b, m, _) = memory.size3()?;
        let memory_mask = attn_mask(memory_mask, b, m)?;
        let (h, dh) = (self.cfg.num_heads, self.cfg.head_dim());
        let layers = self
            .layers
            .iter()
            .map(|l| {
                let (cross_k, cross_v) = l.cross_attn.kv(memory)?;
                let opts = (cross_k.kind(), cross_k.device());
                Ok(LayerCache { self_k: Tensor::zeros([b, h, capacity, dh], opts), self_v: Tensor::zeros([b, h, capacity, dh], opts), cross_k, cross_v })
            })
            .collect::<Result<_>>()?;
        Ok(DecoderCache { layers, memory_mask, len: 0, capacity })
    }

    /// Decodes one position for every row: embeds `tokens` at position `cache.len()`, runs every layer with the
    /// cache (eval mode) and returns the next-token logits; the cache grows by one.
    ///
    /// # Shapes
    /// tokens: (B,) int64 → (B, V) float32
    pub fn step(&self, cache: &mut DecoderCache, tokens: &Tensor) -> Result<Tensor> {
        let pos = cache.len;
        if pos >= cache.capacity {
            bail_shape!("the decoding cache is full ({} positions)", cache.capacity);
        }
        let tokens = tokens.reshape([-1, 1]);
        let (b, _) = self.check_tokens(&tokens, pos)?;
        if b != cache.batch() {
            bail_shape!("step: {b} tokens for a cache of {} rows", cache.batch());
        }
        let mut x = self.embed(&tokens, pos, false);
        for (l, c) in self.layers.iter().zip(cache.layers.iter_mut()) {
            x = l.step(&x, c, pos, cache.memory_mask.as_ref())?;
        }
        cache.len += 1;
        Ok(self.logits(&x).squeeze_dim(1))
    }
}

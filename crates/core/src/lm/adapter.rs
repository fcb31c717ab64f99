//! Hooks for adapters on an LM's linear layers (LoRA: [`crate::llava::lora`]): each projection of a decoder
//! layer (llama family: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`; gpt2:
//! `attn.c_attn`, `attn.c_proj`, `mlp.c_fc`, `mlp.c_proj`) computes y = W x + b + Δ(x) when a delta Δ is set
//! ([`super::LanguageModel::set_delta`]); without one it is the plain layer, bit for bit.
use crate::error::Result;
use tch::{Tensor, nn};

/// A term added to a linear layer's output.
pub trait LinearDelta: std::fmt::Debug + Send {
    /// # Shapes
    /// x: (..., in) → (..., out), in the layer's kind
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
}

/// One adaptable projection of an LM, as [`super::LanguageModel::linear_layers`] lists it.
#[derive(Debug)]
pub struct LinearLayer {
    /// Module path in the checkpoint (`model.layers.0.self_attn.q_proj`, `transformer.h.0.attn.c_attn`): the
    /// key of its weight without `.weight`.
    pub path: String,
    pub in_features: i64,
    pub out_features: i64,
    /// The weight is stored (in, out) (GPT-2's Conv1D, PEFT's `fan_in_fan_out`) instead of Linear's (out, in).
    pub fan_in_fan_out: bool,
    /// The weight variable itself (a shallow clone: writing into it changes the model).
    pub weight: Tensor,
    /// Whether a delta is set.
    pub adapted: bool,
}

/// A linear layer (weight (out, in)) with an optional delta.
#[derive(Debug)]
pub(crate) struct Linear {
    pub lin: nn::Linear,
    pub delta: Option<Box<dyn LinearDelta>>,
}

impl Linear {
    /// A layer whose variables start at zero (every value is loaded afterwards; no random init to pay for).
    pub fn new(p: nn::Path, i: i64, o: i64, bias: bool) -> Self {
        let c = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias };
        Linear { lin: nn::linear(p, i, o, c), delta: None }
    }

    /// # Shapes
    /// x: (..., in) → (..., out)
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.apply(&self.lin);
        match &self.delta {
            Some(d) => Ok(y.f_add(&d.forward(x)?)?),
            None => Ok(y),
        }
    }

    pub fn info(&self, path: String) -> LinearLayer {
        let (o, i) = (self.lin.ws.size()[0], self.lin.ws.size()[1]);
        LinearLayer { path, in_features: i, out_features: o, fan_in_fan_out: false, weight: self.lin.ws.shallow_clone(), adapted: self.delta.is_some() }
    }
}

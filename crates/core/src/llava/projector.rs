//! The multimodal projector (transformers `LlavaMultiModalProjector` for depth 2): `linear_1` (D_in → d), then
//! for each further layer the activation and `linear_i` (d → d). Variables `multi_modal_projector.linear_{i}.weight`
//! (out, in) and `.bias` (when `multimodal_projector_bias`).
use crate::bail_shape;
use crate::error::Result;
use crate::lm::Activation;
use crate::rrg::generate::SplitMix64;
use tch::{Tensor, nn};

#[derive(Debug)]
pub struct Projector {
    layers: Vec<nn::Linear>,
    act: Activation,
    d_in: i64,
    d_out: i64,
}

impl Projector {
    /// Builds `linear_1` … `linear_{depth}` under `p` (zeros: load or [`Projector::init`] next).
    pub fn new(p: nn::Path, d_in: i64, d_out: i64, depth: i64, bias: bool, act: Activation) -> Self {
        let c = nn::LinearConfig { ws_init: nn::Init::Const(0.0), bs_init: Some(nn::Init::Const(0.0)), bias };
        let layers = (1..=depth).map(|i| nn::linear(&p / format!("linear_{i}"), if i == 1 { d_in } else { d_out }, d_out, c)).collect();
        Projector { layers, act, d_in, d_out }
    }

    /// Input width (D_vit × feature layers).
    pub fn d_in(&self) -> i64 {
        self.d_in
    }

    /// Output width (the LM's hidden size).
    pub fn d_out(&self) -> i64 {
        self.d_out
    }

    /// torch `nn.Linear`'s default initialisation, weight and bias ~ U(−1/√in, 1/√in), drawn from a SplitMix64
    /// stream of `seed` (layer by layer, weight then bias, row-major): the same values on every device.
    pub fn init(&self, seed: u64) -> Result<()> {
        tch::no_grad(|| -> Result<()> {
            for (i, l) in self.layers.iter().enumerate() {
                let mut rng = SplitMix64::new(seed, i as u64);
                let bound = 1.0 / (l.ws.size()[1] as f64).sqrt();
                for t in std::iter::once(&l.ws).chain(l.bs.as_ref()) {
                    let vals: Vec<f32> = (0..t.numel()).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
                    let src = Tensor::from_slice(&vals).f_reshape(t.size())?;
                    t.shallow_clone().f_copy_(&src.f_to_kind(t.kind())?.f_to_device(t.device())?)?;
                }
            }
            Ok(())
        })
    }

    /// # Shapes
    /// features: (N, T, D_in) → (N, T, d)
    pub fn forward(&self, features: &Tensor) -> Result<Tensor> {
        let width = features.size().last().copied().unwrap_or(0);
        if features.dim() != 3 || width != self.d_in {
            bail_shape!(
                "projector input: expected (N, T, {}) vision features (the projector maps D_vit = {} → d_lm = {}), got {:?}",
                self.d_in,
                self.d_in,
                self.d_out,
                features.size()
            );
        }
        let mut x = features.apply(&self.layers[0]);
        for l in &self.layers[1..] {
            x = self.act.apply(&x).apply(l);
        }
        Ok(x)
    }
}

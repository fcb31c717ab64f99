//! The segmentation heads (`linear`, `progressive`; see [`crate::seg`]) with PyTorch's default convolution init.
use super::config::{SegConfig, SegHeadKind};
use crate::bail_shape;
use crate::error::Result;
use tch::{Tensor, nn};

/// PyTorch's default Conv2d init: weight and bias U(−1/√fan_in, 1/√fan_in), fan_in = in·k·k.
fn conv(p: nn::Path, cin: i64, cout: i64, k: i64) -> nn::Conv2D {
    let b = 1.0 / ((cin * k * k) as f64).sqrt();
    let init = nn::Init::Uniform { lo: -b, up: b };
    nn::conv2d(p, cin, cout, k, nn::ConvConfig { padding: k / 2, ws_init: init, bs_init: init, ..Default::default() })
}

/// The head modules (variables under the head VarStore root: `conv.*`, or `proj.*`, `up.<i>.*`, `cls.*`).
#[derive(Debug)]
pub enum Head {
    Linear { conv: nn::Conv2D },
    Progressive { proj: nn::Conv2D, ups: Vec<nn::Conv2D>, cls: nn::Conv2D },
}

impl Head {
    pub fn new(p: &nn::Path, cfg: &SegConfig, embed_dim: i64) -> Head {
        match cfg.head {
            SegHeadKind::Linear => Head::Linear { conv: conv(p / "conv", embed_dim, cfg.num_classes, 1) },
            SegHeadKind::Progressive => {
                let proj = conv(p / "proj", embed_dim * cfg.layers.len() as i64, cfg.hidden, 1);
                let mut c = cfg.hidden;
                let ups = (0..cfg.stages)
                    .map(|i| {
                        let m = conv(p / "up" / i, c, c / 2, 3);
                        c /= 2;
                        m
                    })
                    .collect();
                Head::Progressive { proj, ups, cls: conv(p / "cls", c, cfg.num_classes, 1) }
            }
        }
    }

    /// Logits (B, C, H, W) from grid features (B, F, h, w) (F = D for linear, L·D for progressive).
    pub fn forward(&self, feats: &Tensor, out_hw: (i64, i64)) -> Result<Tensor> {
        let x = match self {
            Head::Linear { conv } => apply_conv(feats, conv)?,
            Head::Progressive { proj, ups, cls } => {
                let mut x = apply_conv(feats, proj)?.f_gelu("none")?;
                for m in ups {
                    let (h, w) = (x.size()[2], x.size()[3]);
                    x = x.f_upsample_bilinear2d([2 * h, 2 * w], false, None, None)?;
                    x = apply_conv(&x, m)?.f_gelu("none")?;
                }
                apply_conv(&x, cls)?
            }
        };
        Ok(x.f_upsample_bilinear2d([out_hw.0, out_hw.1], false, None, None)?)
    }
}

/// A convolution as `Conv2D::forward`, with LibTorch errors returned instead of panicking.
/// Stride 1, padding k/2 (as built by `conv`).
fn apply_conv(x: &Tensor, c: &nn::Conv2D) -> Result<Tensor> {
    let pad = c.ws.size()[3] / 2;
    Ok(x.f_conv2d(&c.ws, c.bs.as_ref(), [1, 1], [pad, pad], [1, 1], 1)?)
}

/// (B, N, D) patch tokens → (B, D, h, w) over the row-major patch grid.
pub fn tokens_to_grid(patches: &Tensor, grid: (i64, i64)) -> Result<Tensor> {
    let (b, n, d) = patches.size3()?;
    if n != grid.0 * grid.1 {
        bail_shape!("{n} patch tokens do not fill a {}×{} grid", grid.0, grid.1);
    }
    Ok(patches.f_transpose(1, 2)?.f_reshape([b, d, grid.0, grid.1])?)
}

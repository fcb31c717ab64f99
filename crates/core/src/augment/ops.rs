//! The augmentation operations on (N, C, H, W) float32 batches in [0, 1], one parameter per row (docs/recipe.md §4):
//! colour ([`adjust_brightness`], [`adjust_contrast`], [`adjust_saturation`], [`adjust_hue`]), affine
//! ([`affine_nearest`]), blur ([`gaussian_blur`]), [`solarize`] and [`normalize`], with torchvision's semantics.
use super::params::Affine;
use crate::bail_shape;
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// ImageNet's per-channel mean and std: DINOv2's normalisation, which CXformer keeps for its gray images
/// (docs/recipe.md §4).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Side of the Gaussian blur kernel (DINOv2's `GaussianBlur` uses torchvision's with kernel_size 9).
pub const BLUR_KERNEL_SIZE: usize = 9;
/// `RandomSolarize(threshold=128)` on 8-bit images, expressed on [0, 1] data.
pub const SOLARIZE_THRESHOLD: f64 = 128.0 / 255.0;
/// Luma weights of PIL's `convert("L")` (ITU-R 601-2), which `ImageEnhance.Contrast` / `Color` use. They sum to 1,
/// so a gray RGB pixel keeps its value (torchvision's tensor backend uses 0.2989, which would scale gray by 0.9999).
pub const LUMA: [f64; 3] = [0.299, 0.587, 0.114];

// ---------------------------------------------------------------------------------------------------------------
// Building blocks on (N, C, H, W) float tensors in [0, 1], one parameter per row.

fn rows_of(x: &Tensor, what: &str) -> Result<(i64, i64, i64, i64)> {
    let s = x.size();
    if s.len() != 4 || x.kind() != Kind::Float {
        bail_shape!("{what}: expected a (N, C, H, W) float32 tensor, got {:?} {:?}", s, x.kind());
    }
    Ok((s[0], s[1], s[2], s[3]))
}

fn check_len(n: i64, len: usize, what: &str) -> Result<()> {
    if n != len as i64 {
        bail_shape!("{what}: {len} parameter(s) for a batch of {n} rows");
    }
    Ok(())
}

/// Per-row values as an (N, 1, 1, 1) float32 tensor on `device`.
fn per_row(values: &[f64], device: Device) -> Result<Tensor> {
    let v: Vec<f32> = values.iter().map(|&v| v as f32).collect();
    Ok(Tensor::f_from_slice(&v)?.f_to_device(device)?.f_view([-1, 1, 1, 1])?)
}

/// Applies `f` to the rows `rows` (ascending, distinct) of `x` and leaves the others untouched.
pub(crate) fn apply_rows(x: &Tensor, rows: &[i64], f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    if rows.is_empty() {
        return Ok(x.shallow_clone());
    }
    if rows.len() as i64 == x.size()[0] {
        return f(x);
    }
    let idx = Tensor::f_from_slice(rows)?.f_to_device(x.device())?;
    let out = f(&x.f_index_select(0, &idx)?)?;
    Ok(x.f_index_copy(0, &idx, &out)?)
}

/// torchvision `_blend`: (r·a + (1 − r)·b) clamped to [0, 1]; `b` broadcasts.
fn blend(a: &Tensor, b: &Tensor, ratio: &[f64]) -> Result<Tensor> {
    let r = per_row(ratio, a.device())?;
    let one_minus: Vec<f64> = ratio.iter().map(|r| 1.0 - r).collect();
    let q = per_row(&one_minus, a.device())?;
    Ok(a.f_mul(&r)?.f_add(&b.f_mul(&q)?)?.f_clamp(0.0, 1.0)?)
}

/// Luma (N, 1, H, W) of an (N, 3, H, W) batch with PIL's weights [`LUMA`]; a one-channel batch is returned as is.
pub fn rgb_to_grayscale(x: &Tensor) -> Result<Tensor> {
    let (_, c, _, _) = rows_of(x, "rgb_to_grayscale")?;
    match c {
        1 => Ok(x.shallow_clone()),
        3 => {
            let w = Tensor::f_from_slice(&LUMA.map(|v| v as f32))?.f_to_device(x.device())?.f_view([1, 3, 1, 1])?;
            Ok(x.f_mul(&w)?.f_sum_dim_intlist(&[1i64][..], true, Kind::Float)?)
        }
        _ => bail_shape!("rgb_to_grayscale: expected 1 or 3 channels, got {c}"),
    }
}

/// Brightness: x·f clamped to [0, 1] (torchvision `adjust_brightness` = blend with black).
pub fn adjust_brightness(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let (n, ..) = rows_of(x, "adjust_brightness")?;
    check_len(n, factors.len(), "adjust_brightness")?;
    Ok(x.f_mul(&per_row(factors, x.device())?)?.f_clamp(0.0, 1.0)?)
}

/// Contrast: blend with the mean of the row's grayscale image (one value per row), clamped to [0, 1]
/// (torchvision `adjust_contrast`, PIL `ImageEnhance.Contrast` without PIL's rounding of the mean).
pub fn adjust_contrast(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let (n, ..) = rows_of(x, "adjust_contrast")?;
    check_len(n, factors.len(), "adjust_contrast")?;
    let mean = rgb_to_grayscale(x)?.f_mean_dim(&[1i64, 2, 3][..], true, Kind::Float)?;
    blend(x, &mean, factors)
}

/// Saturation: blend with the grayscale image (torchvision `adjust_saturation`). The identity on one channel.
pub fn adjust_saturation(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let (n, c, ..) = rows_of(x, "adjust_saturation")?;
    check_len(n, factors.len(), "adjust_saturation")?;
    if c == 1 {
        return Ok(x.shallow_clone());
    }
    blend(x, &rgb_to_grayscale(x)?, factors)
}

/// torchvision `_rgb2hsv` on (N, 3, H, W): returns (h, s, v), each (N, H, W).
fn rgb2hsv(x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
    let (r, g, b) = (x.f_select(1, 0)?, x.f_select(1, 1)?, x.f_select(1, 2)?);
    let maxc = x.f_amax([1i64], false)?;
    let minc = x.f_amin([1i64], false)?;
    let eqc = maxc.f_eq_tensor(&minc)?;
    let cr = maxc.f_sub(&minc)?;
    let ones = maxc.f_ones_like()?;
    let s = cr.f_div(&ones.f_where_self(&eqc, &maxc)?)?;
    let cr_divisor = ones.f_where_self(&eqc, &cr)?;
    let rc = maxc.f_sub(&r)?.f_div(&cr_divisor)?;
    let gc = maxc.f_sub(&g)?.f_div(&cr_divisor)?;
    let bc = maxc.f_sub(&b)?.f_div(&cr_divisor)?;
    let is_r = maxc.f_eq_tensor(&r)?;
    let is_g = maxc.f_eq_tensor(&g)?;
    let hr = is_r.f_to_kind(Kind::Float)?.f_mul(&bc.f_sub(&gc)?)?;
    let hg = is_g
        .f_logical_and(&is_r.f_logical_not()?)?
        .f_to_kind(Kind::Float)?
        .f_mul(&rc.f_sub(&bc)?.f_add_scalar(2.0)?)?;
    let hb = is_g
        .f_logical_not()?
        .f_logical_and(&is_r.f_logical_not()?)?
        .f_to_kind(Kind::Float)?
        .f_mul(&gc.f_sub(&rc)?.f_add_scalar(4.0)?)?;
    let h = hr.f_add(&hg)?.f_add(&hb)?.f_div_scalar(6.0)?.f_add_scalar(1.0)?.f_fmod(1.0)?;
    Ok((h, s, maxc))
}

/// torchvision `_hsv2rgb`: (h, s, v), each (N, H, W), to (N, 3, H, W).
fn hsv2rgb(h: &Tensor, s: &Tensor, v: &Tensor) -> Result<Tensor> {
    let h6 = h.f_mul_scalar(6.0)?;
    let i = h6.f_floor()?;
    let f = h6.f_sub(&i)?;
    let i = i.f_to_kind(Kind::Int64)?.f_remainder(6)?;
    let one_minus = |t: &Tensor| -> Result<Tensor> { Ok(t.f_neg()?.f_add_scalar(1.0)?) };
    let p = v.f_mul(&one_minus(s)?)?.f_clamp(0.0, 1.0)?;
    let q = v.f_mul(&one_minus(&s.f_mul(&f)?)?)?.f_clamp(0.0, 1.0)?;
    let t = v.f_mul(&one_minus(&s.f_mul(&one_minus(&f)?)?)?)?.f_clamp(0.0, 1.0)?;
    // mask (N, 6, H, W): which of the six sectors each pixel is in.
    let sectors = Tensor::f_arange(6i64, (Kind::Int64, h.device()))?.f_view([1, 6, 1, 1])?;
    let mask = i.f_unsqueeze(1)?.f_eq_tensor(&sectors)?.f_to_kind(Kind::Float)?;
    let pick = |c: [&Tensor; 6]| -> Result<Tensor> {
        Ok(Tensor::f_stack(&c, 1)?.f_mul(&mask)?.f_sum_dim_intlist(&[1i64][..], false, Kind::Float)?)
    };
    let r = pick([v, &q, &p, &p, &t, v])?;
    let g = pick([&t, v, v, &q, &p, &p])?;
    let b = pick([&p, &p, &t, v, v, &q])?;
    Ok(Tensor::f_stack(&[r, g, b], 1)?)
}

/// Hue: shift the HSV hue by the factor (a fraction of the circle) as torchvision's tensor `adjust_hue`.
/// On one channel it is the identity: a gray pixel has saturation 0, and HSV → RGB with saturation 0 returns v for
/// every channel whatever the hue (tests check this on three equal channels).
pub fn adjust_hue(x: &Tensor, factors: &[f64]) -> Result<Tensor> {
    let (n, c, ..) = rows_of(x, "adjust_hue")?;
    check_len(n, factors.len(), "adjust_hue")?;
    if c == 1 {
        return Ok(x.shallow_clone());
    }
    if c != 3 {
        bail_shape!("adjust_hue: expected 1 or 3 channels, got {c}");
    }
    let (h, s, v) = rgb2hsv(x)?;
    let shift = per_row(factors, x.device())?.f_view([-1, 1, 1])?;
    let h = h.f_add(&shift)?.f_remainder(1.0)?;
    hsv2rgb(&h, &s, &v)
}

/// Sampling grid (N, S, S, 2) for `grid_sampler` with align_corners false, built as torchvision's `_gen_affine_grid`:
/// output pixel (i, j) has centre (j + 0.5 − S/2, i + 0.5 − S/2) relative to the image centre; the inverse matrix
/// (centre (0, 0)) maps it to an input point, which is divided by S/2 to give normalised coordinates.
fn affine_grid(params: &[Affine], size: i64, device: Device) -> Result<Tensor> {
    let half = size as f64 * 0.5;
    let mats: Vec<[f64; 6]> = params.iter().map(|a| a.inverse_matrix([0.0, 0.0]).map(|v| v / half)).collect();
    let col = |k: usize| per_row(&mats.iter().map(|m| m[k]).collect::<Vec<_>>(), device);
    // (N, 1, 1) coefficients; plain elementwise float32 ops (no matmul, so no TF32 on CUDA).
    let m: Vec<Tensor> = (0..6).map(|k| Ok(col(k)?.f_view([-1, 1, 1])?)).collect::<Result<_>>()?;
    let base = Tensor::f_arange(size, (Kind::Float, device))?.f_add_scalar(0.5 - half)?;
    let xs = base.f_view([1, 1, size])?;
    let ys = base.f_view([1, size, 1])?;
    let gx = xs.f_mul(&m[0])?.f_add(&ys.f_mul(&m[1])?)?.f_add(&m[2])?;
    let gy = xs.f_mul(&m[3])?.f_add(&ys.f_mul(&m[4])?)?.f_add(&m[5])?;
    Ok(Tensor::f_stack(&[gx, gy], 3)?)
}

/// RandomAffine with torchvision `F.affine` semantics on square (N, C, S, S) rows, one [`Affine`] per row:
/// rotation by `angle` (positive = clockwise on screen) about the image centre, then `translate`, uniform `scale`,
/// no shear, nearest neighbour, fill 0. Implemented with `grid_sampler` (nearest, zeros padding, align_corners false).
pub fn affine_nearest(x: &Tensor, params: &[Affine]) -> Result<Tensor> {
    let (n, _, h, w) = rows_of(x, "affine_nearest")?;
    check_len(n, params.len(), "affine_nearest")?;
    if h != w {
        bail_shape!("affine_nearest: expected square crops, got {h}x{w}");
    }
    for (k, a) in params.iter().enumerate() {
        a.validate().map_err(|e| Error::Config(format!("affine_nearest, row {k}: {e}")))?;
    }
    let grid = affine_grid(params, h, x.device())?;
    // interpolation 1 = nearest, padding 0 = zeros.
    Ok(x.f_grid_sampler(&grid, 1, 0, false)?)
}

/// torchvision `_get_gaussian_kernel1d(9, sigma)`: exp(−x²/(2σ²)) for x = −4..4, normalised to sum 1.
pub fn gaussian_kernel1d(sigma: f64) -> Vec<f64> {
    let half = (BLUR_KERNEL_SIZE - 1) as f64 * 0.5;
    let pdf: Vec<f64> = (0..BLUR_KERNEL_SIZE)
        .map(|i| {
            let x = (i as f64 - half) / sigma;
            (-0.5 * x * x).exp()
        })
        .collect();
    let total: f64 = pdf.iter().sum();
    pdf.into_iter().map(|v| v / total).collect()
}

/// 9×9 Gaussian blur with torchvision `gaussian_blur` semantics, one σ per row: REFLECT padding of 4 (mirror without
/// repeating the edge pixel, `torch.nn.functional.pad(mode="reflect")`), then the kernel — applied here as two 1-D
/// passes (vertical, horizontal) of one grouped convolution each, one group per row and channel. Needs H, W ≥ 5.
pub fn gaussian_blur(x: &Tensor, sigmas: &[f64]) -> Result<Tensor> {
    let (n, c, h, w) = rows_of(x, "gaussian_blur")?;
    check_len(n, sigmas.len(), "gaussian_blur")?;
    let pad = (BLUR_KERNEL_SIZE / 2) as i64;
    if h <= pad || w <= pad {
        bail_shape!("gaussian_blur: reflect padding of {pad} needs crops larger than {pad}x{pad}, got {h}x{w}");
    }
    if let Some(s) = sigmas.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(Error::Config(format!("gaussian_blur: sigma must be finite and > 0, got {s}")));
    }
    let groups = n * c;
    let mut weights = Vec::with_capacity(groups as usize * BLUR_KERNEL_SIZE);
    for &s in sigmas {
        let k: Vec<f32> = gaussian_kernel1d(s).into_iter().map(|v| v as f32).collect();
        for _ in 0..c {
            weights.extend_from_slice(&k);
        }
    }
    let k = BLUR_KERNEL_SIZE as i64;
    let weights = Tensor::f_from_slice(&weights)?.f_to_device(x.device())?;
    let wv = weights.f_view([groups, 1, k, 1])?;
    let wh = weights.f_view([groups, 1, 1, k])?;
    // Float32 depthwise convolutions: LibTorch uses its own depthwise kernel (not cuDNN, so no TF32) on CUDA.
    let padded = x.f_reshape([1, groups, h, w])?.f_reflection_pad2d([pad, pad, pad, pad])?;
    let v = padded.f_conv2d(&wv, None::<&Tensor>, [1, 1], [0, 0], [1, 1], groups)?;
    let out = v.f_conv2d(&wh, None::<&Tensor>, [1, 1], [0, 0], [1, 1], groups)?;
    Ok(out.f_reshape([n, c, h, w])?)
}

/// torchvision `solarize` for float images with threshold 128/255: x ≥ threshold → 1 − x.
pub fn solarize(x: &Tensor) -> Result<Tensor> {
    let inverted = x.f_neg()?.f_add_scalar(1.0)?;
    Ok(inverted.f_where_self(&x.f_ge(SOLARIZE_THRESHOLD)?, x)?)
}

/// Replicates a one-channel batch to three channels (a three-channel batch is kept) and normalises each channel:
/// (x − mean) / std, as torchvision `Normalize` (float32 mean and std).
pub fn normalize(x: &Tensor, mean: [f64; 3], std: [f64; 3]) -> Result<Tensor> {
    let (n, c, h, w) = rows_of(x, "normalize")?;
    if c != 1 && c != 3 {
        bail_shape!("normalize: expected 1 or 3 channels, got {c}");
    }
    if !mean.iter().all(|m| m.is_finite()) || !std.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(Error::Config(format!("normalize: mean {mean:?} must be finite and std {std:?} finite and > 0")));
    }
    let m = Tensor::f_from_slice(&mean.map(|v| v as f32))?.f_to_device(x.device())?.f_view([1, 3, 1, 1])?;
    let s = Tensor::f_from_slice(&std.map(|v| v as f32))?.f_to_device(x.device())?.f_view([1, 3, 1, 1])?;
    Ok(x.f_expand([n, 3, h, w], false)?.f_sub(&m)?.f_div(&s)?)
}

//! Native executor of the CXformer multi-crop augmentation (docs/recipe.md §4).
//!
//! The TypeScript side draws every random parameter (seeded) and sends them as JSON ([`parse_crops`]); this module
//! only applies them, batched, on the training device (CPU or CUDA). Per crop, in torchvision's order, on [0, 1] floats:
//!
//! 1. RandomResizedCrop: the box is cut out of the uint8 image and resized to S×S with PyTorch's antialiased bicubic
//!    (`_upsample_bicubic2d_aa`, align_corners false, PIL-style kernel), then clamped to [0, 1]. A box that is already
//!    S×S is copied unchanged (PIL's `resize` also returns a copy when the size does not change).
//! 2. Horizontal flip.
//! 3. RandomAffine ([`affine_nearest`]): torchvision `F.affine` semantics, rotation about the image centre, then
//!    translation, uniform scale, no shear, nearest, fill 0.
//! 4. ColorJitter ([`adjust_brightness`], [`adjust_contrast`], [`adjust_saturation`], [`adjust_hue`]) in the order
//!    sent, each with its own factor.
//! 5. RandomGrayscale: the identity here, because the crops are gray (one channel replicated to three).
//! 6. Gaussian blur ([`gaussian_blur`]): 9×9, torchvision `gaussian_blur` semantics.
//! 7. Solarize ([`solarize`]): threshold 128/255.
//! 8. Replication to three channels and normalisation ([`normalize`]).
//!
//! Inputs are gray, so the pipeline keeps one channel until step 8. The colour functions also accept three channels
//! and then implement the RGB operations of torchvision's tensor backend; on one channel saturation and hue are the
//! identity (a gray pixel has HSV saturation 0, so a hue shift gives the same pixel back, and blending a gray image
//! with its own grayscale gives the image).
//!
//! Differences from the reference pipeline (PIL images in DINOv2): PIL rounds to uint8 after the resize and after
//! every colour operation, and `ImageEnhance.Contrast` rounds the gray mean to an integer level. Here everything
//! stays float32 from the crop onwards. PIL's nearest affine rounds ties upwards, `grid_sampler` rounds ties to even;
//! the geometry (centre, direction, translation) is otherwise the same.
use crate::bail_shape;
use crate::error::{Error, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
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

/// RandomAffine parameters of one crop, as torchvision's `F.affine(img, angle, translate, scale, shear=0)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Affine {
    /// Degrees. torchvision's `F.affine` convention: a positive angle turns the picture CLOCKWISE on screen
    /// (x right, y down); `F.rotate(angle)` is `F.affine(-angle)` and turns counter-clockwise.
    pub angle: f64,
    /// Pixels (tx, ty), applied after the rotation: a pixel moves by +tx columns and +ty rows.
    pub translate: [f64; 2],
    /// Uniform scale about the image centre (> 0).
    pub scale: f64,
}

/// ColorJitter parameters of one crop (factors as torchvision's `get_params` returns them).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jitter {
    /// A permutation of 0..4: 0 brightness, 1 contrast, 2 saturation, 3 hue (torchvision's `fn_idx`).
    pub order: Vec<u8>,
    pub brightness: f64,
    pub contrast: f64,
    pub saturation: f64,
    /// In [−0.5, 0.5], a fraction of the hue circle.
    pub hue: f64,
}

/// Everything one crop needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CropParams {
    /// [top, left, height, width] in source pixels (torchvision's `RandomResizedCrop.get_params` order).
    pub r#box: [i64; 4],
    pub flip: bool,
    #[serde(default)]
    pub affine: Option<Affine>,
    #[serde(default)]
    pub jitter: Option<Jitter>,
    /// RandomGrayscale: accepted and the identity (the crops are gray).
    pub grayscale: bool,
    /// JSON `blurSigma`: the σ of the 9×9 Gaussian blur, or null / absent for no blur.
    #[serde(default)]
    pub blur_sigma: Option<f64>,
    pub solarize: bool,
}

/// The crops of one image.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageCrops {
    pub globals: Vec<CropParams>,
    pub locals: Vec<CropParams>,
}

/// The augmented batch, CROP-MAJOR: row `k·B + b` is crop k of image b (DINOv2's collate order).
#[derive(Debug)]
pub struct MultiCrop {
    /// (n_global·B, 3, G, G) float32, normalised.
    pub globals: Tensor,
    /// (n_local·B, 3, L, L) float32, normalised.
    pub locals: Tensor,
}

impl Affine {
    /// Checks the values; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.angle.is_finite() {
            return Err(format!("field `affine.angle` must be finite, got {}", self.angle));
        }
        if !self.translate.iter().all(|t| t.is_finite()) {
            return Err(format!("field `affine.translate` must be finite, got {:?}", self.translate));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(format!("field `affine.scale` must be finite and > 0, got {}", self.scale));
        }
        Ok(())
    }

    /// torchvision `_get_inverse_affine_matrix(center, angle, translate, scale, shear=[0, 0])`: the 2×3 matrix that maps
    /// an OUTPUT point to the INPUT point it samples, both relative to `center`'s frame. With `center = (0, 0)` the
    /// coordinates are relative to the image centre (torchvision's tensor backend); PIL's backend passes
    /// (W/2, H/2) in pixel-corner coordinates, which is the same point.
    pub fn inverse_matrix(&self, center: [f64; 2]) -> [f64; 6] {
        let rot = self.angle.to_radians();
        let [cx, cy] = center;
        let [tx, ty] = self.translate;
        // RSS without scale or shear: R = [[a, b], [c, d]].
        let (a, b, c, d) = (rot.cos(), -rot.sin(), rot.sin(), rot.cos());
        // Inverse rotation (det 1) divided by the scale: RSS⁻¹.
        let mut m = [d, -b, 0.0, -c, a, 0.0].map(|v| v / self.scale);
        // RSS⁻¹ · C⁻¹ · T⁻¹, then C · ….
        m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
        m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
        m[2] += cx;
        m[5] += cy;
        m
    }
}

impl Jitter {
    /// Checks the values; the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let mut seen = [false; 4];
        let is_perm = self.order.len() == 4
            && self.order.iter().all(|&o| (o as usize) < 4 && !std::mem::replace(&mut seen[o as usize], true));
        if !is_perm {
            return Err(format!("field `jitter.order` must be a permutation of [0, 1, 2, 3], got {:?}", self.order));
        }
        for (name, v) in [("brightness", self.brightness), ("contrast", self.contrast), ("saturation", self.saturation)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("field `jitter.{name}` must be a finite factor >= 0, got {v}"));
            }
        }
        if !(self.hue.is_finite() && (-0.5..=0.5).contains(&self.hue)) {
            return Err(format!("field `jitter.hue` must lie in [-0.5, 0.5], got {}", self.hue));
        }
        Ok(())
    }

    fn factor(&self, op: u8) -> f64 {
        match op {
            0 => self.brightness,
            1 => self.contrast,
            2 => self.saturation,
            _ => self.hue,
        }
    }
}

impl CropParams {
    /// Checks what does not depend on the image (the box against the image size is checked by [`multicrop`]);
    /// the message names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let [top, left, h, w] = self.r#box;
        if top < 0 || left < 0 || h < 1 || w < 1 {
            return Err(format!(
                "field `box` [top, left, height, width] = {:?} needs top, left >= 0 and height, width >= 1",
                self.r#box
            ));
        }
        if let Some(a) = &self.affine {
            a.validate()?;
        }
        if let Some(j) = &self.jitter {
            j.validate()?;
        }
        if let Some(s) = self.blur_sigma
            && !(s.is_finite() && s > 0.0)
        {
            return Err(format!("field `blurSigma` must be finite and > 0, got {s}"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON

fn json_err(at: &str, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!("augmentation parameters, {at}: {msg}"))
}

fn object<'v>(v: &'v Value, at: &str, what: &str) -> Result<&'v Map<String, Value>> {
    v.as_object().ok_or_else(|| json_err(at, format!("expected {what}, got {}", json_kind(v))))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn no_unknown(m: &Map<String, Value>, allowed: &[&str], at: &str, prefix: &str) -> Result<()> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(json_err(at, format!("unknown field `{prefix}{k}`, expected one of {allowed:?}"))),
        None => Ok(()),
    }
}

fn required<T: DeserializeOwned>(m: &Map<String, Value>, key: &str, at: &str, prefix: &str) -> Result<T> {
    match m.get(key) {
        None => Err(json_err(at, format!("missing field `{prefix}{key}`"))),
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| json_err(at, format!("field `{prefix}{key}`: {e}"))),
    }
}

/// Absent or null → None.
fn optional<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn affine_from_json(v: &Value, at: &str) -> Result<Affine> {
    let m = object(v, at, "`affine` to be an object {angle, translate, scale} or null")?;
    no_unknown(m, &["angle", "translate", "scale"], at, "affine.")?;
    Ok(Affine {
        angle: required(m, "angle", at, "affine.")?,
        translate: required(m, "translate", at, "affine.")?,
        scale: required(m, "scale", at, "affine.")?,
    })
}

fn jitter_from_json(v: &Value, at: &str) -> Result<Jitter> {
    let m = object(v, at, "`jitter` to be an object {order, brightness, contrast, saturation, hue} or null")?;
    no_unknown(m, &["order", "brightness", "contrast", "saturation", "hue"], at, "jitter.")?;
    Ok(Jitter {
        order: required(m, "order", at, "jitter.")?,
        brightness: required(m, "brightness", at, "jitter.")?,
        contrast: required(m, "contrast", at, "jitter.")?,
        saturation: required(m, "saturation", at, "jitter.")?,
        hue: required(m, "hue", at, "jitter.")?,
    })
}

fn crop_from_json(v: &Value, at: &str) -> Result<CropParams> {
    const FIELDS: [&str; 7] = ["box", "flip", "affine", "jitter", "grayscale", "blurSigma", "solarize"];
    let m = object(v, at, "a crop object")?;
    no_unknown(m, &FIELDS, at, "")?;
    let p = CropParams {
        r#box: required(m, "box", at, "")?,
        flip: required(m, "flip", at, "")?,
        affine: optional(m, "affine").map(|v| affine_from_json(v, at)).transpose()?,
        jitter: optional(m, "jitter").map(|v| jitter_from_json(v, at)).transpose()?,
        grayscale: required(m, "grayscale", at, "")?,
        blur_sigma: optional(m, "blurSigma")
            .map(|v| serde_json::from_value::<f64>(v.clone()).map_err(|e| json_err(at, format!("field `blurSigma`: {e}"))))
            .transpose()?,
        solarize: required(m, "solarize", at, "")?,
    };
    p.validate().map_err(|e| json_err(at, e))?;
    Ok(p)
}

/// Parses the JSON the TypeScript side sends: an array with one `{globals: [...], locals: [...]}` per image, each crop
/// `{box, flip, affine, jitter, grayscale, blurSigma, solarize}` (camelCase, unknown fields rejected, `affine`,
/// `jitter` and `blurSigma` may be null or absent). Errors name the image, the crop list and index, and the field,
/// e.g. "augmentation parameters, image 2, globals[1]: field `affine.angle`: invalid type: string \"x\", expected f64".
pub fn parse_crops(json: &str) -> Result<Vec<ImageCrops>> {
    let top: Value =
        serde_json::from_str(json).map_err(|e| Error::Config(format!("augmentation parameters: invalid JSON: {e}")))?;
    let Value::Array(images) = &top else {
        return Err(Error::Config(format!(
            "augmentation parameters: expected an array with one {{globals, locals}} object per image, got {}",
            json_kind(&top)
        )));
    };
    let mut out = Vec::with_capacity(images.len());
    for (i, v) in images.iter().enumerate() {
        let at = format!("image {i}");
        let m = object(v, &at, "an object {globals, locals}")?;
        no_unknown(m, &["globals", "locals"], &at, "")?;
        let mut lists: [Vec<CropParams>; 2] = [Vec::new(), Vec::new()];
        for (list, key) in lists.iter_mut().zip(["globals", "locals"]) {
            let arr = match m.get(key) {
                None => return Err(json_err(&at, format!("missing field `{key}`"))),
                Some(Value::Array(a)) => a,
                Some(other) => return Err(json_err(&at, format!("field `{key}` must be an array, got {}", json_kind(other)))),
            };
            for (k, c) in arr.iter().enumerate() {
                list.push(crop_from_json(c, &format!("image {i}, {key}[{k}]"))?);
            }
        }
        let [globals, locals] = lists;
        out.push(ImageCrops { globals, locals });
    }
    Ok(out)
}

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
fn apply_rows(x: &Tensor, rows: &[i64], f: impl FnOnce(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
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

/// RandomResizedCrop of one box of an (H, W) uint8 image: [0, 1] float32 (1, 1, S, S), antialiased bicubic,
/// clamped to [0, 1]; a box of size S×S is copied exactly.
fn resized_crop(image: &Tensor, bx: [i64; 4], size: i64) -> Result<Tensor> {
    let [top, left, h, w] = bx;
    let crop = image.f_narrow(0, top, h)?.f_narrow(1, left, w)?;
    let x = crop.f_to_kind(Kind::Float)?.f_div_scalar(255.0)?.f_view([1, 1, h, w])?;
    if h == size && w == size {
        return Ok(x);
    }
    Ok(x.f_internal_upsample_bicubic2d_aa([size, size], false, None, None)?.f_clamp(0.0, 1.0)?)
}

/// Runs steps 1–8 for the rows of one crop size. `rows[r]` = (image index, parameters) in output order.
fn crop_group(
    images: &[Tensor],
    rows: &[(usize, &CropParams)],
    size: i64,
    device: Device,
    mean: [f64; 3],
    std: [f64; 3],
) -> Result<Tensor> {
    let n = rows.len() as i64;
    if n == 0 {
        return Ok(Tensor::f_zeros([0, 3, size, size], (Kind::Float, device))?);
    }
    let rows_where = |pred: &dyn Fn(&CropParams) -> bool| -> Vec<i64> {
        rows.iter().enumerate().filter(|(_, (_, p))| pred(p)).map(|(r, _)| r as i64).collect()
    };

    // 1. RandomResizedCrop, one resize per crop, into one (N, 1, S, S) batch.
    let mut x = Tensor::f_empty([n, 1, size, size], (Kind::Float, device))?;
    for (r, (b, p)) in rows.iter().enumerate() {
        x.f_narrow(0, r as i64, 1)?.f_copy_(&resized_crop(&images[*b], p.r#box, size)?)?;
    }

    // 2. Horizontal flip.
    let flips = rows_where(&|p| p.flip);
    x = apply_rows(&x, &flips, |s| Ok(s.f_flip([3i64])?))?;

    // 3. RandomAffine.
    let aff_rows = rows_where(&|p| p.affine.is_some());
    let affs: Vec<Affine> = rows.iter().filter_map(|(_, p)| p.affine.clone()).collect();
    x = apply_rows(&x, &aff_rows, |s| affine_nearest(s, &affs))?;

    // 4. ColorJitter: at step k every row applies its own k-th op; one batched call per (step, op) pair in use.
    let channels = x.size()[1];
    for step in 0..4 {
        for op in 0..4u8 {
            // Saturation and hue are the identity on one channel (see `adjust_saturation`, `adjust_hue`).
            if channels == 1 && op >= 2 {
                continue;
            }
            let sel: Vec<(i64, f64)> = rows
                .iter()
                .enumerate()
                .filter_map(|(r, (_, p))| p.jitter.as_ref().filter(|j| j.order[step] == op).map(|j| (r as i64, j.factor(op))))
                .collect();
            let idx: Vec<i64> = sel.iter().map(|s| s.0).collect();
            let factors: Vec<f64> = sel.iter().map(|s| s.1).collect();
            x = apply_rows(&x, &idx, |s| match op {
                0 => adjust_brightness(s, &factors),
                1 => adjust_contrast(s, &factors),
                2 => adjust_saturation(s, &factors),
                _ => adjust_hue(s, &factors),
            })?;
        }
    }

    // 5. RandomGrayscale: the crops are gray (one channel, replicated only at step 8), so converting to grayscale
    //    and back to three equal channels changes nothing. `grayscale` is accepted and deliberately the identity.

    // 6. Gaussian blur.
    let blur_rows = rows_where(&|p| p.blur_sigma.is_some());
    let sigmas: Vec<f64> = rows.iter().filter_map(|(_, p)| p.blur_sigma).collect();
    x = apply_rows(&x, &blur_rows, |s| gaussian_blur(s, &sigmas))?;

    // 7. Solarize.
    let sol_rows = rows_where(&|p| p.solarize);
    x = apply_rows(&x, &sol_rows, solarize)?;

    // 8. Three channels, Normalize.
    normalize(&x, mean, std)
}

/// (H, W) of an (H, W) or (1, H, W) uint8 image.
fn image_dims(t: &Tensor, i: usize) -> Result<(i64, i64)> {
    let s = t.size();
    let hw = match s.as_slice() {
        [h, w] | [1, h, w] => (*h, *w),
        _ => bail_shape!("image {i}: expected a (H, W) or (1, H, W) uint8 gray image, got shape {s:?}"),
    };
    if t.kind() != Kind::Uint8 {
        bail_shape!("image {i}: expected uint8, got {:?}", t.kind());
    }
    if hw.0 < 1 || hw.1 < 1 {
        bail_shape!("image {i}: empty image {s:?}");
    }
    Ok(hw)
}

/// [`multicrop`] normalised with [`IMAGENET_MEAN`] and [`IMAGENET_STD`], as the trainers feed the model.
pub fn multicrop_imagenet(images: &[Tensor], crops: &[ImageCrops], global_size: i64, local_size: i64, device: Device) -> Result<MultiCrop> {
    multicrop(images, crops, global_size, local_size, device, IMAGENET_MEAN, IMAGENET_STD)
}

/// Applies the multi-crop augmentation to a batch of gray uint8 images (decoded on the CPU; sizes may differ) on
/// `device`, following `crops` (one [`ImageCrops`] per image, the same number of global and of local crops for
/// every image). Returns crop-major batches: row `k·B + b` of `globals` is global crop k of image b.
///
/// Everything is validated before any work: the counts, every parameter (see [`CropParams::validate`]) and every box
/// against its image; errors name the image, the crop and the field.
pub fn multicrop(
    images: &[Tensor],
    crops: &[ImageCrops],
    global_size: i64,
    local_size: i64,
    device: Device,
    mean: [f64; 3],
    std: [f64; 3],
) -> Result<MultiCrop> {
    if images.len() != crops.len() {
        return Err(Error::Config(format!(
            "multicrop: {} image(s) but crop parameters for {} image(s)",
            images.len(),
            crops.len()
        )));
    }
    if global_size < 1 || local_size < 1 {
        return Err(Error::Config(format!(
            "multicrop: crop sizes must be >= 1, got global {global_size}, local {local_size}"
        )));
    }
    if !mean.iter().all(|m| m.is_finite()) || !std.iter().all(|s| s.is_finite() && *s > 0.0) {
        return Err(Error::Config(format!("multicrop: mean {mean:?} must be finite and std {std:?} finite and > 0")));
    }
    let n_global = crops.first().map_or(0, |c| c.globals.len());
    let n_local = crops.first().map_or(0, |c| c.locals.len());
    let mut dims = Vec::with_capacity(images.len());
    for (i, (img, c)) in images.iter().zip(crops).enumerate() {
        if c.globals.len() != n_global || c.locals.len() != n_local {
            return Err(Error::Config(format!(
                "multicrop: image {i} has {} global and {} local crop(s), image 0 has {n_global} and {n_local}; \
                 crop-major batching needs the same counts for every image",
                c.globals.len(),
                c.locals.len()
            )));
        }
        let (h, w) = image_dims(img, i)?;
        dims.push((h, w));
        for (kind, list, size) in [("globals", &c.globals, global_size), ("locals", &c.locals, local_size)] {
            for (k, p) in list.iter().enumerate() {
                p.validate().map_err(|e| Error::Config(format!("multicrop: image {i}, {kind}[{k}]: {e}")))?;
                let [top, left, bh, bw] = p.r#box;
                let inside = top.checked_add(bh).is_some_and(|b| b <= h) && left.checked_add(bw).is_some_and(|r| r <= w);
                if !inside {
                    bail_shape!(
                        "multicrop: image {i}, {kind}[{k}]: box [top, left, height, width] = {:?} does not lie inside \
                         the {h}x{w} (HxW) image",
                        p.r#box
                    );
                }
                if p.blur_sigma.is_some() && size <= (BLUR_KERNEL_SIZE / 2) as i64 {
                    return Err(Error::Config(format!(
                        "multicrop: image {i}, {kind}[{k}]: blur needs a crop size above {}, got {size}",
                        BLUR_KERNEL_SIZE / 2
                    )));
                }
            }
        }
    }

    tch::no_grad(|| {
        // One host → device copy per image, still uint8.
        let on_device: Vec<Tensor> = images
            .iter()
            .zip(&dims)
            .map(|(t, &(h, w))| Ok(t.f_to_device(device)?.f_reshape([h, w])?))
            .collect::<Result<_>>()?;
        let crop_major = |pick: &dyn Fn(&ImageCrops) -> &Vec<CropParams>, n_crops: usize| -> Vec<(usize, &CropParams)> {
            (0..n_crops).flat_map(|k| crops.iter().enumerate().map(move |(b, c)| (b, &pick(c)[k]))).collect()
        };
        let globals = crop_group(&on_device, &crop_major(&|c| &c.globals, n_global), global_size, device, mean, std)?;
        let locals = crop_group(&on_device, &crop_major(&|c| &c.locals, n_local), local_size, device, mean, std)?;
        Ok(MultiCrop { globals, locals })
    })
}

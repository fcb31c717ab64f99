//! The augmentation plan of a batch as the TypeScript side sends it (docs/recipe.md §4): the per-crop parameters
//! ([`CropParams`] with its [`Affine`] and [`Jitter`]), their checks, and the JSON parser [`parse_crops`].
use crate::error::{Error, Result};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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

    pub(crate) fn factor(&self, op: u8) -> f64 {
        match op {
            0 => self.brightness,
            1 => self.contrast,
            2 => self.saturation,
            _ => self.hue,
        }
    }
}

impl CropParams {
    /// Checks what does not depend on the image (the box against the image size is checked by [`super::multicrop::multicrop`]);
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

//! The multi-crop executor (docs/recipe.md §4): validates a batch's plan against its images, then runs steps 1–8 of
//! [`crate::augment`] batched per crop size on the training device.
use super::ops::{
    BLUR_KERNEL_SIZE, IMAGENET_MEAN, IMAGENET_STD, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
    affine_nearest, apply_rows, gaussian_blur, normalize, solarize,
};
use super::params::{Affine, CropParams, ImageCrops};
use crate::bail_shape;
use crate::error::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The augmented batch, CROP-MAJOR: row `k·B + b` is crop k of image b (DINOv2's collate order).
#[derive(Debug)]
pub struct MultiCrop {
    /// (n_global·B, 3, G, G) float32, normalised.
    pub globals: Tensor,
    /// (n_local·B, 3, L, L) float32, normalised.
    pub locals: Tensor,
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

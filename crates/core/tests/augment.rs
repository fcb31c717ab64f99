//! Multi-crop augmentation executor (docs/recipe.md §4) against expectations computed here in plain Rust: slicing, a
//! separate antialiased-bicubic reference, hand-derived affine maps, hand-computed colour ops, the closed-form
//! Gaussian kernel with explicit reflect padding, the solarize threshold and the normalisation formula.
//! CPU by default; CXF_TEST_DEVICE=cuda additionally compares the whole pipeline on that device with the CPU.
use cxformer_core::Error;
use cxformer_core::augment::multicrop::{multicrop, multicrop_imagenet};
use cxformer_core::augment::ops::{IMAGENET_MEAN, IMAGENET_STD, adjust_hue, adjust_saturation, gaussian_kernel1d};
use cxformer_core::augment::params::{Affine, CropParams, ImageCrops, Jitter, parse_crops};
use tch::{Device, Kind, Tensor};

const NO_NORM_MEAN: [f64; 3] = [0.0; 3];
const NO_NORM_STD: [f64; 3] = [1.0; 3];

/// Deterministic pseudo-random bytes (LCG), so the tests need no RNG crate.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

fn image(h: usize, w: usize, data: &[u8]) -> Tensor {
    assert_eq!(data.len(), h * w);
    Tensor::from_slice(data).view([h as i64, w as i64])
}

fn plain(bx: [i64; 4]) -> CropParams {
    CropParams {
        r#box: bx,
        flip: false,
        affine: None,
        jitter: None,
        grayscale: false,
        blur_sigma: None,
        solarize: false,
    }
}

fn one_image(globals: Vec<CropParams>) -> Vec<ImageCrops> {
    vec![ImageCrops { globals, locals: vec![] }]
}

/// Channel `c` of row `row`, flattened row-major, on the CPU.
fn plane(t: &Tensor, row: i64, c: i64) -> Vec<f32> {
    Vec::<f32>::try_from(t.get(row).get(c).flatten(0, -1).to_device(Device::Cpu)).unwrap()
}

/// Runs the global crops of one image without normalisation; returns each row's single plane after checking
/// that the three channels are identical (the crops are gray).
fn run(img: &Tensor, crops: Vec<CropParams>, size: i64) -> Vec<Vec<f32>> {
    let n = crops.len() as i64;
    let out = multicrop(&[img.shallow_clone()], &one_image(crops), size, 4, Device::Cpu, NO_NORM_MEAN, NO_NORM_STD)
        .expect("multicrop");
    assert_eq!(out.globals.size(), vec![n, 3, size, size]);
    assert_eq!(out.globals.kind(), Kind::Float);
    (0..n)
        .map(|r| {
            let p = plane(&out.globals, r, 0);
            assert_eq!(p, plane(&out.globals, r, 1));
            assert_eq!(p, plane(&out.globals, r, 2));
            p
        })
        .collect()
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol, "{what}: element {i}: got {g}, want {w}");
    }
}

/// v / 255 as ToTensor computes it (in float32), widened for the comparisons.
fn unit(v: u8) -> f64 {
    (v as f32 / 255.0) as f64
}

// --- 1. RandomResizedCrop -----------------------------------------------------------------------------------

#[test]
fn crop_without_resize_is_exact_slicing() {
    let (h, w) = (10, 12);
    let data = bytes(h * w, 1);
    // (H, W) and (1, H, W) inputs both work.
    for img in [image(h, w, &data), image(h, w, &data).unsqueeze(0)] {
        let got = &run(&img, vec![plain([2, 3, 5, 5])], 5)[0];
        let want: Vec<f32> = (0..5).flat_map(|i| (0..5).map(move |j| (i, j))).map(|(i, j)| data[(2 + i) * w + 3 + j] as f32 / 255.0).collect();
        assert_eq!(got, &want);
    }
}

#[test]
fn resize_of_constant_image_stays_constant() {
    let img = image(30, 40, &[77u8; 1200]);
    for (bx, size) in [([0, 0, 30, 40], 13), ([3, 4, 5, 7], 16), ([0, 0, 30, 40], 64)] {
        let got = &run(&img, vec![plain(bx)], size)[0];
        assert_close(got, &vec![unit(77); (size * size) as usize], 1e-6, &format!("box {bx:?} -> {size}"));
    }
}

/// PIL-style antialiased bicubic (A = −0.5, support widened by the scale when downsampling, weights normalised),
/// written from the kernel's definition: weights matrix (out × in).
fn aa_weights(inp: usize, out: usize) -> Vec<Vec<f64>> {
    let cubic = |x: f64| {
        let (a, x) = (-0.5, x.abs());
        if x <= 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    };
    let s = inp as f64 / out as f64;
    let (support, inv) = if s >= 1.0 { (2.0 * s, 1.0 / s) } else { (2.0, 1.0) };
    (0..out)
        .map(|i| {
            let center = s * (i as f64 + 0.5);
            let lo = ((center - support + 0.5).trunc() as i64).max(0) as usize;
            let hi = ((center + support + 0.5).trunc() as usize).min(inp);
            let mut row = vec![0.0; inp];
            for j in lo..hi {
                row[j] = cubic((j as f64 - center + 0.5) * inv);
            }
            let total: f64 = row.iter().sum();
            row.iter().map(|v| v / total).collect()
        })
        .collect()
}

#[test]
fn resize_matches_antialiased_bicubic_reference() {
    let (h, w) = (20, 30);
    let data = bytes(h * w, 2);
    let img = image(h, w, &data);
    for (bx, size) in [([1usize, 2, 17, 23], 11usize), ([4, 5, 9, 7], 19)] {
        let [top, left, bh, bw] = bx;
        let (wh, ww) = (aa_weights(bh, size), aa_weights(bw, size));
        let mut want = Vec::new();
        for i in 0..size {
            for j in 0..size {
                let mut v = 0.0;
                for y in 0..bh {
                    for x in 0..bw {
                        v += wh[i][y] * ww[j][x] * unit(data[(top + y) * w + left + x]);
                    }
                }
                want.push(v.clamp(0.0, 1.0));
            }
        }
        let got = &run(&img, vec![plain(bx.map(|v| v as i64))], size as i64)[0];
        assert_close(got, &want, 2e-5, &format!("box {bx:?} -> {size}"));
    }
}

#[test]
fn row_order_is_crop_major() {
    // Three constant images of different sizes; crop k of every image gets brightness factor f_k, so row k·B + b
    // must hold v_b · f_k.
    let values = [40u8, 80, 120];
    let sizes = [(20, 30), (25, 18), (16, 16)];
    let images: Vec<Tensor> = values.iter().zip(sizes).map(|(&v, (h, w))| image(h, w, &vec![v; h * w])).collect();
    let bright = |f: f64, size: i64| {
        let mut p = plain([0, 0, size, size]);
        p.jitter = Some(Jitter { order: vec![0, 1, 2, 3], brightness: f, contrast: 1.0, saturation: 1.0, hue: 0.0 });
        p
    };
    let gf = [1.0, 1.5];
    let lf = [0.5, 1.0, 2.0];
    let crops: Vec<ImageCrops> = (0..3)
        .map(|_| ImageCrops {
            globals: gf.iter().map(|&f| bright(f, 12)).collect(),
            locals: lf.iter().map(|&f| bright(f, 6)).collect(),
        })
        .collect();
    let out = multicrop(&images, &crops, 8, 4, Device::Cpu, NO_NORM_MEAN, NO_NORM_STD).unwrap();
    assert_eq!(out.globals.size(), vec![6, 3, 8, 8]);
    assert_eq!(out.locals.size(), vec![9, 3, 4, 4]);
    for (t, factors, s) in [(&out.globals, &gf[..], 64usize), (&out.locals, &lf[..], 16)] {
        for (k, f) in factors.iter().enumerate() {
            for (b, &v) in values.iter().enumerate() {
                let row = (k * 3 + b) as i64;
                assert_close(&plane(t, row, 2), &vec![unit(v) * f; s], 1e-6, &format!("crop {k} image {b}"));
            }
        }
    }
}

// --- 2. flip, 3. affine ----------------------------------------------------------------------------------------

#[test]
fn flip_mirrors_columns() {
    let data = bytes(64, 3);
    let img = image(8, 8, &data);
    let mut p = plain([0, 0, 8, 8]);
    p.flip = true;
    let got = &run(&img, vec![p], 8)[0];
    let want: Vec<f64> = (0..8).flat_map(|i| (0..8).map(move |j| (i, j))).map(|(i, j)| unit(data[i * 8 + 7 - j])).collect();
    assert_close(got, &want, 0.0, "flip");
}

fn with_affine(s: i64, angle: f64, translate: [f64; 2], scale: f64) -> CropParams {
    let mut p = plain([0, 0, s, s]);
    p.affine = Some(Affine { angle, translate, scale });
    p
}

#[test]
fn affine_identity_is_identity() {
    let data = bytes(81, 4);
    let img = image(9, 9, &data);
    let rows = run(&img, vec![plain([0, 0, 9, 9]), with_affine(9, 0.0, [0.0, 0.0], 1.0)], 9);
    assert_eq!(rows[0], rows[1]);
}

/// Expected output of a nearest-neighbour map: out[i][j] = in[src(i, j)], or 0 (the fill) where src is None.
fn mapped(data: &[u8], s: usize, src: impl Fn(i64, i64) -> Option<(i64, i64)>) -> Vec<f64> {
    let mut out = Vec::new();
    for i in 0..s as i64 {
        for j in 0..s as i64 {
            out.push(match src(i, j) {
                Some((y, x)) if (0..s as i64).contains(&y) && (0..s as i64).contains(&x) => unit(data[y as usize * s + x as usize]),
                _ => 0.0,
            });
        }
    }
    out
}

#[test]
fn rotation_by_90_degrees_is_clockwise_like_torchvision_affine() {
    // torchvision documents F.affine's angle as "clockwise direction" (F.rotate, counter-clockwise, calls it with
    // -angle). On screen (rows down) a clockwise quarter turn moves the top row to the right column:
    // input (r, c) -> output (c, S-1-r), i.e. out[i][j] = in[S-1-j][i]. Counter-clockwise: out[i][j] = in[j][S-1-i].
    for s in [5usize, 6] {
        let data: Vec<u8> = (1..=(s * s) as u8).collect();
        let img = image(s, s, &data);
        let si = s as i64;
        let rows = run(&img, vec![with_affine(si, 90.0, [0.0, 0.0], 1.0), with_affine(si, -90.0, [0.0, 0.0], 1.0)], si);
        assert_close(&rows[0], &mapped(&data, s, |i, j| Some((si - 1 - j, i))), 0.0, &format!("+90, S={s}"));
        assert_close(&rows[1], &mapped(&data, s, |i, j| Some((j, si - 1 - i))), 0.0, &format!("-90, S={s}"));
        // The top-left pixel ends up top-right after +90.
        assert_eq!(rows[0][s - 1] as f64, unit(data[0]));
    }
}

#[test]
fn translation_shifts_pixels_and_fills_zero() {
    // translate (tx, ty) = (2, -1): a pixel moves 2 columns right and 1 row up, so out[i][j] = in[i+1][j-2].
    let data: Vec<u8> = bytes(64, 5).iter().map(|v| v.max(&1).to_owned()).collect();
    let img = image(8, 8, &data);
    let got = &run(&img, vec![with_affine(8, 0.0, [2.0, -1.0], 1.0)], 8)[0];
    let want = mapped(&data, 8, |i, j| Some((i + 1, j - 2)));
    assert_close(got, &want, 0.0, "translate");
    assert_eq!(want.iter().filter(|v| **v == 0.0).count(), 8 * 2 + 6, "fill region");
}

#[test]
fn translation_is_applied_after_rotation() {
    // F.affine: M = T · C · R · C⁻¹, so the rotated picture is then shifted one column to the right.
    let s = 6usize;
    let data: Vec<u8> = (1..=(s * s) as u8).collect();
    let img = image(s, s, &data);
    let got = &run(&img, vec![with_affine(6, 90.0, [1.0, 0.0], 1.0)], 6)[0];
    let want = mapped(&data, s, |i, j| if j == 0 { None } else { Some((5 - (j - 1), i)) });
    assert_close(got, &want, 0.0, "rotate then translate");
}

#[test]
fn scale_zooms_about_the_centre() {
    // Scale 2 on 4×4: output pixel centres sit at 0.5, 1.5, 2.5, 3.5 (centre 2.0), which sample the input at
    // 2 + (x - 2) / 2 = 1.25, 1.75, 2.25, 2.75, i.e. pixels 1, 1, 2, 2.
    let data: Vec<u8> = (1..=16).collect();
    let img = image(4, 4, &data);
    let got = &run(&img, vec![with_affine(4, 0.0, [0.0, 0.0], 2.0)], 4)[0];
    let m = [1i64, 1, 2, 2];
    assert_close(got, &mapped(&data, 4, |i, j| Some((m[i as usize], m[j as usize]))), 0.0, "scale 2");
}

// --- 4. colour jitter --------------------------------------------------------------------------------------------

fn jitter(order: [u8; 4], b: f64, c: f64, s: f64, h: f64) -> Jitter {
    Jitter { order: order.to_vec(), brightness: b, contrast: c, saturation: s, hue: h }
}

#[test]
fn brightness_and_contrast_follow_the_order() {
    let data: Vec<u8> = vec![0, 10, 50, 90, 120, 128, 150, 170, 180, 190, 200, 210, 220, 240, 250, 255];
    let img = image(4, 4, &data);
    let x: Vec<f64> = data.iter().map(|&v| unit(v)).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let brightness = |v: &[f64], f: f64| v.iter().map(|x| (x * f).clamp(0.0, 1.0)).collect::<Vec<_>>();
    let contrast = |v: &[f64], f: f64| {
        let m = mean(v);
        v.iter().map(|x| (f * x + (1.0 - f) * m).clamp(0.0, 1.0)).collect::<Vec<_>>()
    };
    let mut a = plain([0, 0, 4, 4]);
    a.jitter = Some(jitter([0, 1, 2, 3], 1.5, 0.5, 1.0, 0.0));
    let mut b = plain([0, 0, 4, 4]);
    b.jitter = Some(jitter([1, 3, 0, 2], 1.5, 0.5, 1.0, 0.0));
    let mut c = plain([0, 0, 4, 4]);
    c.jitter = Some(jitter([2, 1, 3, 0], 0.7, 1.6, 1.0, 0.0));
    let rows = run(&img, vec![a, b, c, plain([0, 0, 4, 4])], 4);
    assert_close(&rows[0], &contrast(&brightness(&x, 1.5), 0.5), 1e-6, "brightness then contrast");
    assert_close(&rows[1], &brightness(&contrast(&x, 0.5), 1.5), 1e-6, "contrast then brightness");
    assert_close(&rows[2], &brightness(&contrast(&x, 1.6), 0.7), 1e-6, "contrast 1.6 then brightness 0.7");
    assert_close(&rows[3], &x, 0.0, "no jitter");
    assert_ne!(rows[0], rows[1], "the order matters for these values");
}

#[test]
fn saturation_and_hue_are_identity_on_gray_crops() {
    let data = bytes(49, 6);
    let img = image(7, 7, &data);
    let mut p = plain([0, 0, 7, 7]);
    p.jitter = Some(jitter([2, 3, 0, 1], 1.0, 1.0, 1.7, 0.3));
    p.grayscale = true;
    let rows = run(&img, vec![plain([0, 0, 7, 7]), p], 7);
    assert_eq!(rows[0], rows[1]);
}

#[test]
fn hue_shift_is_exactly_identity_on_three_equal_channels() {
    // The claim behind treating hue as a no-op: a gray pixel has HSV saturation 0, so any hue gives it back.
    let data = bytes(2 * 6 * 6, 7);
    let gray = Tensor::from_slice(&data).view([2, 1, 6, 6]).to_kind(Kind::Float) / 255.0;
    let rgb = gray.expand([2, 3, 6, 6], false).contiguous();
    for factors in [[0.3, -0.45], [0.5, -0.5], [0.1, 0.25]] {
        let out = adjust_hue(&rgb, &factors).unwrap();
        assert_eq!(out.size(), vec![2, 3, 6, 6]);
        assert_eq!(Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(rgb.flatten(0, -1)).unwrap());
    }
    // And on a single channel the function is the identity as well.
    let out = adjust_hue(&gray, &[0.3, 0.2]).unwrap();
    assert_eq!(Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), Vec::<f32>::try_from(gray.flatten(0, -1)).unwrap());
}

#[test]
fn hue_and_saturation_act_on_colour_pixels() {
    // Rows: pure red shifted by 1/3 turn -> pure green; orange (30°) shifted by half a turn -> (0, 0.5, 1) (210°).
    let px = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.5, 0.0]).view([2, 3, 1, 1]);
    let out = adjust_hue(&px, &[1.0 / 3.0, 0.5]).unwrap();
    assert_close(&Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), &[0.0, 1.0, 0.0, 0.0, 0.5, 1.0], 1e-6, "hue");
    // Saturation blends with the luma 0.299·r + 0.587·g + 0.114·b: red with factor 0 -> gray 0.299,
    // with factor 0.5 -> 0.5·(1, 0, 0) + 0.5·0.299.
    let red = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.0, 0.0]).view([2, 3, 1, 1]);
    let out = adjust_saturation(&red, &[0.0, 0.5]).unwrap();
    let want = [0.299, 0.299, 0.299, 0.6495, 0.1495, 0.1495];
    assert_close(&Vec::<f32>::try_from(out.flatten(0, -1)).unwrap(), &want, 1e-6, "saturation");
}

// --- 6. blur -----------------------------------------------------------------------------------------------------

#[test]
fn blur_kernel_matches_closed_form() {
    for sigma in [0.1, 0.7, 1.3, 2.0] {
        let g = |x: f64| (-(x * x) / (2.0 * sigma * sigma)).exp();
        let z: f64 = (-4..=4).map(|x| g(x as f64)).sum();
        let want: Vec<f64> = (-4..=4).map(|x| g(x as f64) / z).collect();
        let got = gaussian_kernel1d(sigma);
        assert_eq!(got.len(), 9);
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "sigma {sigma}: {got:?} vs {want:?}");
        }
    }
}

#[test]
fn blurred_impulse_equals_the_2d_kernel() {
    let mut data = vec![0u8; 15 * 15];
    data[7 * 15 + 7] = 255;
    let img = image(15, 15, &data);
    let sigma = 1.1;
    let k = gaussian_kernel1d(sigma);
    let mut p = plain([0, 0, 15, 15]);
    p.blur_sigma = Some(sigma);
    let rows = run(&img, vec![p, plain([0, 0, 15, 15])], 15);
    let at = |i: usize| if (3..=11).contains(&i) { k[i - 3] } else { 0.0 };
    let want: Vec<f64> = (0..15).flat_map(|i| (0..15).map(move |j| (i, j))).map(|(i, j)| at(i) * at(j)).collect();
    assert_close(&rows[0], &want, 1e-6, "impulse");
    // Rows without blur are untouched.
    assert_close(&rows[1], &data.iter().map(|&v| unit(v)).collect::<Vec<_>>(), 0.0, "no blur");
}

#[test]
fn blur_uses_reflect_padding() {
    // Impulse in the corner: with reflect padding (mirror without repeating the edge: index -1 -> 1, -k -> k,
    // S-1+k -> S-1-k) the 1-D response is e[i] = Σ_t k[t]·[reflect(i + t - 4) == 0].
    let s = 12usize;
    let mut data = vec![0u8; s * s];
    data[0] = 255;
    let img = image(s, s, &data);
    for sigma in [0.6, 1.7] {
        let k = gaussian_kernel1d(sigma);
        let reflect = |p: i64| if p < 0 { -p } else if p >= s as i64 { 2 * (s as i64 - 1) - p } else { p };
        let e: Vec<f64> = (0..s as i64).map(|i| (0..9).filter(|&t| reflect(i + t - 4) == 0).map(|t| k[t as usize]).sum()).collect();
        let mut p = plain([0, 0, s as i64, s as i64]);
        p.blur_sigma = Some(sigma);
        let got = &run(&img, vec![p], s as i64)[0];
        let want: Vec<f64> = (0..s).flat_map(|i| (0..s).map(move |j| (i, j))).map(|(i, j)| e[i] * e[j]).collect();
        assert_close(got, &want, 1e-6, &format!("corner impulse, sigma {sigma}"));
    }
}

// --- 7. solarize, 8. normalisation -----------------------------------------------------------------------------

#[test]
fn solarize_threshold_is_128() {
    let data = [0u8, 126, 127, 128, 129, 200, 255, 64, 130];
    let img = image(3, 3, &data);
    let mut p = plain([0, 0, 3, 3]);
    p.solarize = true;
    let got = &run(&img, vec![p], 3)[0];
    let want: Vec<f64> = data.iter().map(|&v| if v < 128 { unit(v) } else { 1.0 - unit(v) }).collect();
    assert_close(got, &want, 1e-6, "solarize");
    assert!((got[3] as f64 - 127.0 / 255.0).abs() < 1e-6, "128 is solarised");
    assert!((got[2] as f64 - 127.0 / 255.0).abs() < 1e-6, "127 is kept");
}

#[test]
fn normalisation_uses_per_channel_mean_and_std() {
    let data = bytes(16, 8);
    let img = image(4, 4, &data);
    let out = multicrop(&[img], &one_image(vec![plain([0, 0, 4, 4])]), 4, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    assert_eq!(out.globals.size(), vec![1, 3, 4, 4]);
    assert_eq!(out.locals.size(), vec![0, 3, 4, 4]);
    for c in 0..3 {
        let want: Vec<f64> = data.iter().map(|&v| (unit(v) - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).collect();
        assert_close(&plane(&out.globals, 0, c as i64), &want, 1e-5, &format!("channel {c}"));
    }
}

#[test]
fn imagenet_normalisation_is_torchvisions() {
    assert_eq!((IMAGENET_MEAN, IMAGENET_STD), ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]));
    let img = image(4, 4, &bytes(16, 9));
    let crops = one_image(vec![plain([0, 0, 4, 4])]);
    let want = multicrop(&[img.shallow_clone()], &crops, 4, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    let got = multicrop_imagenet(&[img], &crops, 4, 4, Device::Cpu).unwrap();
    assert!(got.globals.equal(&want.globals) && got.locals.equal(&want.locals));
}

#[test]
fn empty_batch_gives_empty_tensors() {
    let out = multicrop(&[], &[], 8, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    assert_eq!(out.globals.size(), vec![0, 3, 8, 8]);
    assert_eq!(out.locals.size(), vec![0, 3, 4, 4]);
}

// --- JSON and validation -----------------------------------------------------------------------------------------

const VALID: &str = r#"[
  {"globals": [{"box": [1, 2, 30, 40], "flip": true, "affine": {"angle": -12.5, "translate": [3, -2], "scale": 1.1},
                "jitter": {"order": [3, 1, 0, 2], "brightness": 1.2, "contrast": 0.8, "saturation": 1.1, "hue": -0.05},
                "grayscale": false, "blurSigma": null, "solarize": false}],
   "locals": [{"box": [0, 0, 5, 5], "flip": false, "affine": null, "grayscale": true, "blurSigma": 0.4, "solarize": true}]},
  {"globals": [{"box": [0, 0, 8, 8], "flip": false, "grayscale": false, "solarize": false}], "locals": []}
]"#;

#[test]
fn parse_crops_reads_every_field() {
    let crops = parse_crops(VALID).unwrap();
    assert_eq!(crops.len(), 2);
    let g = &crops[0].globals[0];
    assert_eq!(g.r#box, [1, 2, 30, 40]);
    assert!(g.flip);
    assert_eq!(g.affine, Some(Affine { angle: -12.5, translate: [3.0, -2.0], scale: 1.1 }));
    assert_eq!(g.jitter, Some(jitter([3, 1, 0, 2], 1.2, 0.8, 1.1, -0.05)));
    assert_eq!(g.blur_sigma, None);
    let l = &crops[0].locals[0];
    assert_eq!((l.affine.is_none(), l.jitter.is_none(), l.grayscale, l.blur_sigma, l.solarize), (true, true, true, Some(0.4), true));
    assert_eq!(crops[1].globals[0], plain([0, 0, 8, 8]));
    assert!(crops[1].locals.is_empty());
    // The serde derive reads the same JSON the same way.
    let derived: Vec<ImageCrops> = serde_json::from_str(VALID).unwrap();
    assert_eq!(derived, crops);
}

fn parse_err(json: &str) -> String {
    match parse_crops(json) {
        Err(e @ Error::Config(_)) => e.to_string(),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn crop_json(extra: &str) -> String {
    format!(r#"[{{"globals": [], "locals": [{{"box": [0, 0, 5, 5], "flip": false, "grayscale": false, "solarize": false{extra}}}]}}]"#)
}

#[test]
fn parse_errors_name_image_crop_and_field() {
    let two = |second: &str| format!(r#"[{{"globals": [], "locals": []}}, {{"globals": [], "locals": [{second}]}}]"#);
    let m = parse_err(&two(r#"{"box": [0, 0, 5, 5], "flip": false, "grayscale": false, "solarize": false, "blursigma": 1}"#));
    assert!(m.contains("image 1") && m.contains("locals[0]") && m.contains("unknown field `blursigma`"), "{m}");

    let m = parse_err(&two(r#"{"box": [0, 0, 5, 5], "grayscale": false, "solarize": false}"#));
    assert!(m.contains("image 1, locals[0]") && m.contains("missing field `flip`"), "{m}");

    let cases = [
        (r#", "affine": {"angle": "x", "translate": [0, 0], "scale": 1}"#, "`affine.angle`"),
        (r#", "affine": {"angle": 1, "translate": [0, 0], "scale": 0}"#, "`affine.scale`"),
        (r#", "affine": {"angle": 1, "translate": [0], "scale": 1}"#, "`affine.translate`"),
        (r#", "affine": {"angle": 1, "translate": [0, 0], "scale": 1, "shear": 3}"#, "`affine.shear`"),
        (r#", "jitter": {"order": [0, 1, 1, 3], "brightness": 1, "contrast": 1, "saturation": 1, "hue": 0}"#, "`jitter.order`"),
        (r#", "jitter": {"order": [0, 1, 2, 3], "brightness": 1, "contrast": 1, "saturation": 1, "hue": 0.7}"#, "`jitter.hue`"),
        (r#", "jitter": {"order": [0, 1, 2, 3], "brightness": -1, "contrast": 1, "saturation": 1, "hue": 0}"#, "`jitter.brightness`"),
        (r#", "jitter": {"order": [0, 1, 2, 3], "contrast": 1, "saturation": 1, "hue": 0}"#, "`jitter.brightness`"),
        (r#", "blurSigma": -0.5"#, "`blurSigma`"),
        (r#", "blurSigma": "big""#, "`blurSigma`"),
        (r#", "jitter": 3"#, "`jitter`"),
    ];
    for (extra, field) in cases {
        let m = parse_err(&crop_json(extra));
        assert!(m.contains("image 0, locals[0]") && m.contains(field), "{extra}: {m}");
    }
    let m = parse_err(r#"[{"globals": [{"box": [0, 0, 5], "flip": false, "grayscale": false, "solarize": false}], "locals": []}]"#);
    assert!(m.contains("image 0, globals[0]") && m.contains("`box`"), "{m}");
    let m = parse_err(r#"[{"globals": [{"box": [0, 0, 0, 5], "flip": false, "grayscale": false, "solarize": false}], "locals": []}]"#);
    assert!(m.contains("`box`") && m.contains("height, width >= 1"), "{m}");
    let m = parse_err(r#"[{"globals": []}]"#);
    assert!(m.contains("image 0") && m.contains("missing field `locals`"), "{m}");
    let m = parse_err(r#"{"globals": [], "locals": []}"#);
    assert!(m.contains("expected an array"), "{m}");
    let m = parse_err("[1, 2");
    assert!(m.contains("invalid JSON"), "{m}");
}

#[test]
fn boxes_outside_the_image_are_rejected() {
    let img = image(10, 12, &[9u8; 120]);
    for bx in [[5, 5, 6, 4], [0, 9, 4, 4], [0, 0, 10, 13], [0, i64::MAX, 1, 2]] {
        let crops = vec![ImageCrops { globals: vec![plain([0, 0, 4, 4])], locals: vec![plain(bx)] }];
        match multicrop(&[img.shallow_clone()], &crops, 4, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD) {
            Err(e @ Error::Shape(_)) => {
                let m = e.to_string();
                let shown = format!("{bx:?}");
                assert!(m.contains("image 0, locals[0]") && m.contains(&shown) && m.contains("10x12"), "{m}");
            }
            other => panic!("box {bx:?}: expected a shape error, got {other:?}"),
        }
    }
    let crops = vec![ImageCrops { globals: vec![plain([-1, 0, 4, 4])], locals: vec![] }];
    let e = multicrop(&[img.shallow_clone()], &crops, 4, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap_err();
    assert!(e.to_string().contains("image 0, globals[0]") && e.to_string().contains("`box`"), "{e}");
}

#[test]
fn inconsistent_inputs_are_rejected() {
    let a = image(8, 8, &[1u8; 64]);
    let one = ImageCrops { globals: vec![plain([0, 0, 4, 4])], locals: vec![] };
    let two = ImageCrops { globals: vec![plain([0, 0, 4, 4]), plain([0, 0, 4, 4])], locals: vec![] };
    let run = |imgs: &[Tensor], crops: &[ImageCrops], g: i64| {
        multicrop(imgs, crops, g, 4, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap_err().to_string()
    };
    let m = run(&[a.shallow_clone(), a.shallow_clone()], &[one.clone(), two.clone()], 4);
    assert!(m.contains("image 1") && m.contains("same counts"), "{m}");
    let m = run(&[a.shallow_clone()], &[one.clone(), one.clone()], 4);
    assert!(m.contains("1 image(s) but crop parameters for 2"), "{m}");
    let m = run(&[a.to_kind(Kind::Float)], &[one.clone()], 4);
    assert!(m.contains("image 0") && m.contains("uint8"), "{m}");
    let m = run(&[a.view([1, 1, 8, 8])], &[one.clone()], 4);
    assert!(m.contains("image 0") && m.contains("(H, W)"), "{m}");
    let mut blur = plain([0, 0, 4, 4]);
    blur.blur_sigma = Some(1.0);
    let m = run(&[a.shallow_clone()], &[ImageCrops { globals: vec![blur], locals: vec![] }], 4);
    assert!(m.contains("globals[0]") && m.contains("blur"), "{m}");
    let e = multicrop(&[a.shallow_clone()], &[one], 4, 4, Device::Cpu, IMAGENET_MEAN, [0.2, 0.0, 0.2]).unwrap_err();
    assert!(e.to_string().contains("std"), "{e}");
}

// --- Device parity -------------------------------------------------------------------------------------------------

/// The full pipeline, every op in use, on CXF_TEST_DEVICE (cuda, cuda:N) must agree with the CPU.
/// Needs a GPU: ignored by default; scripts/gpu-check.sh runs it with --include-ignored.
#[test]
#[ignore = "needs a CUDA device (CXF_TEST_DEVICE=cuda); run by scripts/gpu-check.sh"]
fn device_matches_cpu_when_requested() {
    let name = std::env::var("CXF_TEST_DEVICE").expect("set CXF_TEST_DEVICE=cuda to run this test");
    let device = cxformer_core::runtime::parse_device(&name).expect("CXF_TEST_DEVICE");
    assert!(device != Device::Cpu, "CXF_TEST_DEVICE must name a CUDA device");
    let sizes = [(60usize, 50usize), (45, 70), (64, 64)];
    let images: Vec<Tensor> = sizes.iter().enumerate().map(|(i, &(h, w))| image(h, w, &bytes(h * w, 10 + i as u64))).collect();
    let crops: Vec<ImageCrops> = (0..3)
        .map(|i| {
            let mut g1 = with_affine(30, 13.0 * i as f64 - 10.0, [2.0, -3.0], 0.9 + 0.1 * i as f64);
            g1.r#box = [2, 3, 40, 35];
            g1.flip = i % 2 == 0;
            g1.jitter = Some(jitter([1, 0, 3, 2], 1.2, 0.7, 1.3, 0.05));
            let mut g2 = plain([1, 1, 30, 30]);
            g2.blur_sigma = Some(0.5 + 0.4 * i as f64);
            g2.solarize = true;
            let mut l = plain([5, 5, 12, 20]);
            l.blur_sigma = Some(1.5);
            l.jitter = Some(jitter([0, 1, 2, 3], 0.8, 1.4, 1.0, -0.1));
            ImageCrops { globals: vec![g1, g2], locals: vec![l.clone(), l] }
        })
        .collect();
    let cpu = multicrop(&images, &crops, 30, 12, Device::Cpu, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    let dev = multicrop(&images, &crops, 30, 12, device, IMAGENET_MEAN, IMAGENET_STD).unwrap();
    assert_eq!(dev.globals.device(), device);
    for (a, b, what) in [(&cpu.globals, &dev.globals, "globals"), (&cpu.locals, &dev.locals, "locals")] {
        let diff = (a - b.to_device(Device::Cpu)).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{what}: max |cpu - {name}| = {diff}");
    }
}

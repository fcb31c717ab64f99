//! Position-embedding interpolation (docs/recipe.md §2.3) against a separate plain-Rust implementation of the
//! two kernels: PyTorch's bicubic (Keys A = −0.75, align_corners = false, border clamp, optional explicit
//! scale) and the antialiased bicubic (PIL-style A = −0.5, support widened when downsampling, weights
//! normalised to sum 1).
use cxformer_core::PosInterp;
use cxformer_core::model::pos_embed::interpolate_pos_encoding;
use tch::{Device, Kind, Tensor};

fn cubic(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Weights matrix (out × in) of the 1-D resampling.
fn weights(inp: usize, out: usize, scale: Option<f64>, antialias: bool) -> Vec<Vec<f64>> {
    // area_pixel_compute_scale: 1/scale_factor when one is given, else in/out.
    let s = scale.map(|f| 1.0 / f).unwrap_or(inp as f64 / out as f64);
    let mut w = vec![vec![0.0; inp]; out];
    for (i, row) in w.iter_mut().enumerate() {
        if antialias {
            let support = if s >= 1.0 { 2.0 * s } else { 2.0 };
            let inv = if s >= 1.0 { 1.0 / s } else { 1.0 };
            let center = s * (i as f64 + 0.5);
            let xmin = ((center - support + 0.5).trunc() as i64).max(0) as usize;
            let xmax = ((center + support + 0.5).trunc() as usize).min(inp);
            let mut total = 0.0;
            for j in xmin..xmax {
                let v = cubic((j as f64 - center + 0.5) * inv, -0.5);
                row[j] = v;
                total += v;
            }
            row.iter_mut().for_each(|v| *v /= total);
        } else {
            let real = s * (i as f64 + 0.5) - 0.5;
            let base = real.floor();
            let t = real - base;
            for k in -1i64..=2 {
                let idx = (base as i64 + k).clamp(0, inp as i64 - 1) as usize;
                row[idx] += cubic(t - k as f64, -0.75);
            }
        }
    }
    w
}

/// Reference: resize a (M, M, D) grid to (h0, w0, D) separably.
fn reference(grid: &[f64], m: usize, d: usize, h0: usize, w0: usize, interp: PosInterp) -> Vec<f64> {
    let (sh, sw) = if interp.offset > 0.0 {
        (Some((h0 as f64 + interp.offset) / m as f64), Some((w0 as f64 + interp.offset) / m as f64))
    } else {
        (None, None)
    };
    let wh = weights(m, h0, sh, interp.antialias);
    let ww = weights(m, w0, sw, interp.antialias);
    let mut out = vec![0.0; h0 * w0 * d];
    for y in 0..h0 {
        for x in 0..w0 {
            for c in 0..d {
                let mut acc = 0.0;
                for (sy, wy) in wh[y].iter().enumerate() {
                    for (sx, wx) in ww[x].iter().enumerate() {
                        acc += wy * wx * grid[(sy * m + sx) * d + c];
                    }
                }
                out[(y * w0 + x) * d + c] = acc;
            }
        }
    }
    out
}

fn run(m: usize, d: usize, h0: usize, w0: usize, interp: PosInterp) {
    tch::manual_seed(3);
    let pos = Tensor::randn([1, (1 + m * m) as i64, d as i64], (Kind::Float, Device::Cpu));
    let got = interpolate_pos_encoding(&pos, h0 as i64, w0 as i64, interp).unwrap();
    assert_eq!(got.size(), vec![1, (1 + h0 * w0) as i64, d as i64]);
    // CLS position is carried over unchanged.
    assert_eq!((got.get(0).get(0) - pos.get(0).get(0)).abs().max().double_value(&[]), 0.0);
    let grid: Vec<f64> = Vec::<f64>::try_from(pos.narrow(1, 1, (m * m) as i64).flatten(0, -1).to_kind(Kind::Double)).unwrap();
    let want = reference(&grid, m, d, h0, w0, interp);
    let got: Vec<f64> = Vec::<f64>::try_from(got.narrow(1, 1, (h0 * w0) as i64).flatten(0, -1).to_kind(Kind::Double)).unwrap();
    let max = want.iter().zip(&got).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(max < 1e-5, "{interp:?} {m}->{h0}x{w0}: max |diff| {max:e}");
}

#[test]
fn original_offset_upsample_and_downsample() {
    run(6, 3, 9, 7, PosInterp::ORIGINAL);
    run(6, 3, 4, 3, PosInterp::ORIGINAL);
    // 98-px local crops of a 518-px model: 37 -> 7 with offset 0.1, as in CXformer pretraining.
    run(37, 2, 7, 7, PosInterp::ORIGINAL);
}

#[test]
fn hf_size_based_no_antialias() {
    run(6, 3, 9, 7, PosInterp::HF_SIZE);
    run(6, 3, 4, 3, PosInterp::HF_SIZE);
}

#[test]
fn antialiased_registers_family() {
    run(6, 3, 9, 7, PosInterp::REGISTERS_AA);
    run(6, 3, 4, 3, PosInterp::REGISTERS_AA);
    run(37, 2, 16, 16, PosInterp::REGISTERS_AA);
}

#[test]
fn families_differ_and_identity_is_kept() {
    tch::manual_seed(1);
    let pos = Tensor::randn([1, 37, 4], (Kind::Float, Device::Cpu));
    let a = interpolate_pos_encoding(&pos, 4, 4, PosInterp::ORIGINAL).unwrap();
    let b = interpolate_pos_encoding(&pos, 4, 4, PosInterp::REGISTERS_AA).unwrap();
    assert!((a - b).abs().max().double_value(&[]) > 1e-3, "offset and AA rules must give different grids");
    // Same square grid: returned unchanged (no resampling at all).
    let same = interpolate_pos_encoding(&pos, 6, 6, PosInterp::ORIGINAL).unwrap();
    assert_eq!((same - &pos).abs().max().double_value(&[]), 0.0);
    // Same count but non-square (9x4 = 36): interpolates.
    let ns = interpolate_pos_encoding(&pos, 9, 4, PosInterp::HF_SIZE).unwrap();
    assert_eq!(ns.size(), vec![1, 37, 4]);
    let bad = Tensor::randn([1, 11, 4], (Kind::Float, Device::Cpu));
    let e = interpolate_pos_encoding(&bad, 2, 2, PosInterp::HF_SIZE).unwrap_err().to_string();
    assert!(e.contains("not a square grid"), "{e}");
}

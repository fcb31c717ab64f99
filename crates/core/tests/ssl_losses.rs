//! DINO, iBOT and KoLeo losses and teacher targets against the reference modules
//! (../shared/fixtures/golden/losses.safetensors; formulas in losses.json). Tolerance: rtol 1e-5 or atol 1e-6.
mod common;
use common::*;
use cxformer_core::ssl::center::{Centering, sinkhorn_knopp};
use cxformer_core::train::collective::SingleProcess;
use cxformer_core::ssl::loss::{dino_cross_entropy, dino_losses, ibot_loss, koleo, koleo_weighted};
use tch::{Kind, Tensor};

fn g(name: &str) -> Tensor {
    golden("losses.safetensors", name)
}

fn close(got: &Tensor, want: &Tensor, what: &str) {
    let got = got.to_kind(Kind::Float).reshape(want.size());
    let diff = (&got - want).abs();
    let tol = want.abs() * 1e-5 + 1e-6;
    let bad = diff.gt_tensor(&tol).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(bad, 0, "{what}: max |diff| {:e}", diff.max().double_value(&[]));
}

const TS: f64 = 0.1;

#[test]
fn dino_centering() {
    let t = g("dino.teacher_logits");
    let mut c = Centering::new(g("dino.center_in"), 0.9);
    let probs = c.targets(&t, 0.04);
    close(&probs, &g("dino.centering.teacher_probs"), "teacher_probs");
    c.record_mean_rows(&t, &SingleProcess).unwrap();
    // Lagged: the centre moves only when the next step applies the statistic.
    close(&c.center, &g("dino.center_in"), "center before apply");
    c.apply_pending();
    close(&c.center, &g("dino.centering.center_out"), "center_out");

    let sl = g("dino.student_local_logits");
    let sg = g("dino.student_global_logits");
    let raw_local = dino_cross_entropy(&sl.chunk(3, 0), &probs.chunk(2, 0), TS);
    close(&raw_local, &g("dino.centering.loss_local_raw"), "loss_local_raw");
    let raw_global = dino_cross_entropy(std::slice::from_ref(&sg), std::slice::from_ref(&probs), TS);
    close(&raw_global, &g("dino.centering.loss_global_raw"), "loss_global_raw");
    let (local, global) = dino_losses(Some(&sl), &sg, &probs, 2, 3, TS);
    close(&local, &g("dino.centering.dino_local_crops_loss"), "dino_local_crops_loss");
    close(&global, &g("dino.centering.dino_global_crops_loss"), "dino_global_crops_loss");
}

#[test]
fn dino_sinkhorn_knopp() {
    let t = g("dino.teacher_logits");
    let probs = sinkhorn_knopp(&t, 0.07, 3, 8, &SingleProcess).unwrap();
    close(&probs, &g("dino.sinkhorn.teacher_probs"), "SK teacher_probs");
    let rows = probs.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    close(&rows, &Tensor::ones([8], (Kind::Float, tch::Device::Cpu)), "rows sum to 1");
    let sl = g("dino.student_local_logits");
    let sg = g("dino.student_global_logits");
    close(&dino_cross_entropy(&sl.chunk(3, 0), &probs.chunk(2, 0), TS), &g("dino.sinkhorn.loss_local_raw"), "SK local");
    close(&dino_cross_entropy(std::slice::from_ref(&sg), std::slice::from_ref(&probs), TS), &g("dino.sinkhorn.loss_global_raw"), "SK global");
}

#[test]
fn ibot_centering_and_sinkhorn() {
    let masks = g("ibot.masks");
    // Indices and weights derived from the masks as the trainer does.
    let idx = masks.flatten(0, 1).nonzero().squeeze_dim(1);
    assert_eq!(Vec::<i64>::try_from(&idx).unwrap(), Vec::<i64>::try_from(&g("ibot.mask_indices")).unwrap());
    let counts = masks.sum_dim_intlist([1i64].as_slice(), false, Kind::Float).clamp_min(1.0);
    let w = counts.reciprocal().unsqueeze(1).expand([4, 16], false).flatten(0, 1).index_select(0, &idx);
    close(&w, &g("ibot.masks_weight"), "masks_weight");

    let t = g("ibot.teacher_logits");
    let s = g("ibot.student_logits");
    let mut c = Centering::new(g("ibot.center_in"), 0.9);
    let probs = c.targets(&t, 0.04);
    close(&probs, &g("ibot.centering.teacher_probs"), "iBOT teacher_probs");
    c.record_mean_of_means(&t, &SingleProcess).unwrap();
    c.apply_pending();
    close(&c.center, &g("ibot.centering.center_out"), "iBOT center_out");
    close(&ibot_loss(&s, &probs, &w, 4, TS), &g("ibot.centering.loss"), "iBOT loss");

    let sk = sinkhorn_knopp(&t, 0.07, 3, 14, &SingleProcess).unwrap();
    close(&sk, &g("ibot.sinkhorn.teacher_probs"), "iBOT SK probs");
    close(&ibot_loss(&s, &sk, &w, 4, TS), &g("ibot.sinkhorn.loss"), "iBOT SK loss");
}

#[test]
fn koleo_reference_and_duplicate_rows() {
    let f = g("koleo.features");
    close(&koleo(&f).unwrap(), &g("koleo.loss"), "koleo");
    close(&koleo(&g("koleo.features_dup")).unwrap(), &g("koleo.loss_dup"), "koleo with a duplicate row");
    close(&koleo_weighted(&f, 2, 0.1).unwrap(), &g("koleo.ssl_weighted_chunked_loss"), "0.1·(koleo(x[:4]) + koleo(x[4:]))");
}

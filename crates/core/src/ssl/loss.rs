//! DINO, iBOT and KoLeo losses (docs/recipe.md §3.5–3.7; dinov2/loss/*).
use crate::error::Result;
use tch::{Kind, Tensor};

/// Σ over (student view, teacher view) pairs of −mean_rows Σ_k t·log_softmax(s/τ_s).
///
/// # Shapes
/// each student and teacher tensor: (rows, K), rows equal across all of them.
pub fn dino_cross_entropy(students: &[Tensor], teachers: &[Tensor], student_temp: f64) -> Tensor {
    let mut total = Tensor::zeros([], (Kind::Float, students[0].device()));
    for s in students {
        let lsm = (s.to_kind(Kind::Float) / student_temp).log_softmax(-1, Kind::Float);
        for t in teachers {
            total = total - (t * &lsm).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float).mean(Kind::Float);
        }
    }
    total
}

/// The two DINO terms as SSLMetaArch scales them (normaliser n_g(n_g−1) + n_g·n_l, docs/recipe.md §3.5).
///
/// # Shapes
/// * student_local: (n_l·B, K) crop-major; student_global: (n_g·B, K) crop-major
/// * teacher_probs: (n_g·B, K), row i the target of student_global row i (halves already swapped)
///
/// Returns (local term, global term).
pub fn dino_losses(
    student_local: Option<&Tensor>,
    student_global: &Tensor,
    teacher_probs: &Tensor,
    n_global: i64,
    n_local: i64,
    student_temp: f64,
) -> (Tensor, Tensor) {
    let terms = (n_global * (n_global - 1) + n_global * n_local) as f64;
    let teacher_views = teacher_probs.chunk(n_global, 0);
    let local = match student_local {
        Some(sl) if n_local > 0 => dino_cross_entropy(&sl.chunk(n_local, 0), &teacher_views, student_temp) / terms,
        _ => Tensor::zeros([], (Kind::Float, student_global.device())),
    };
    let global = dino_cross_entropy(std::slice::from_ref(student_global), std::slice::from_ref(teacher_probs), student_temp)
        * 2.0
        / terms;
    (local, global)
}

/// iBOT masked-patch loss: −(1/n_images)·Σ_j w_j Σ_k t_jk log_softmax(s_j/τ_s)_k, w_j = 1/(masked count of
/// the image of token j), n_images counting every global-crop image, masked or not.
///
/// # Shapes
/// student, teacher_probs: (n_masked, K); weights: (n_masked,)
pub fn ibot_loss(student: &Tensor, teacher_probs: &Tensor, weights: &Tensor, n_images: i64, student_temp: f64) -> Tensor {
    let lsm = (student.to_kind(Kind::Float) / student_temp).log_softmax(-1, Kind::Float);
    let per_token = (teacher_probs * lsm).sum_dim_intlist([-1i64].as_slice(), false, Kind::Float);
    -(per_token * weights).sum(Kind::Float) / n_images as f64
}

/// Kozachenko-Leonenko entropy estimator on one crop's CLS tokens (float32, no autocast):
/// x̂ = x/max(‖x‖, 1e-8); nn(i) = argmax_{j≠i} x̂_i·x̂_j; −mean log(‖x̂_i − x̂_nn(i) + 1e-8‖ + 1e-8).
///
/// # Shapes
/// x: (B, D) → scalar
pub fn koleo(x: &Tensor) -> Result<Tensor> {
    // The reference leaves autocast for KoLeo (dinov2/loss/koleo_loss.py: `autocast(enabled=False)`); under a
    // bf16 step the neighbour search would otherwise run its matmul in bf16.
    let _f32 = crate::shim::AutocastGuard::disabled(x.device())?;
    let eps = 1e-8;
    let x = x.to_kind(Kind::Float);
    let norm = x.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(eps);
    let x = &x / norm;
    let nn = koleo_similarities(&x).argmax(1, false);
    let neighbours = x.f_index_select(0, &nn)?;
    // PairwiseDistance(p=2, eps=1e-8) adds eps to the difference before the norm.
    let d = (&x - neighbours + eps).norm_scalaropt_dim(2, [-1i64].as_slice(), false);
    Ok(-(d + eps).log().mean(Kind::Float))
}

/// The neighbour search of [`koleo`]: cosine similarities of the unit rows of `x` with the diagonal set to −1 (never
/// its own neighbour), as `pairwise_NNs_inner`; no gradient. Float32 because `koleo` runs outside autocast.
///
/// # Shapes
/// x: (B, D) unit rows → (B, B)
pub fn koleo_similarities(x: &Tensor) -> Tensor {
    tch::no_grad(|| {
        let n = x.size()[0];
        let d = x.matmul(&x.transpose(0, 1));
        let eye = Tensor::eye(n, (Kind::Bool, x.device()));
        d.masked_fill(&eye, -1.0)
    })
}

/// 0.1·Σ_g koleo(student CLS of global crop g), per crop over the local batch (docs/recipe.md §3.7).
pub fn koleo_weighted(student_global_cls: &Tensor, n_global: i64, weight: f64) -> Result<Tensor> {
    let mut total = Tensor::zeros([], (Kind::Float, student_global_cls.device()));
    for chunk in student_global_cls.chunk(n_global, 0) {
        total = total + koleo(&chunk)?;
    }
    Ok(total * weight)
}


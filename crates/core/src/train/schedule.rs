//! The learning-rate schedule of the downstream trainers (docs/recipe.md §5.1), per optimizer step: DINOv2's
//! CosineScheduler with final value 0, as src/augment/schedule.ts. W warm-up steps follow
//! `numpy.linspace(0, lr, W)` (both ends included), then `cosine`: lr·½(1 + cos(π·i/(T − W))) for i = 0..T−W−1, or
//! `constant`: lr. With W = 0 the cosine equals torch's CosineAnnealingLR(T, 0), the schedule of DINOv2's
//! eval/linear.py. Plain numbers in, no trainer config: the linear probe ([`crate::classify::probe::lr_at`]) and
//! fine-tuning ([`crate::classify::config::FinetuneConfig::lr_factor`]) both call [`lr_at`].
use serde::{Deserialize, Serialize};

/// Learning-rate schedule after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Constant,
}

/// The learning rate of optimizer step `step` (0-based) for peak `base`, `warmup_steps` W warm-up steps and
/// `total_steps` T steps in all (see the module docs); 0 for step ≥ T under `cosine` (the schedule's final value),
/// `base` under `constant`.
pub fn lr_at(step: i64, base: f64, warmup_steps: i64, total_steps: i64, schedule: Schedule) -> f64 {
    let t = total_steps;
    let w = warmup_steps;
    if step < w {
        // numpy.linspace(0, base, w)[step]
        return if w == 1 { 0.0 } else if step == w - 1 { base } else { base * step as f64 / (w - 1) as f64 };
    }
    match schedule {
        Schedule::Constant => base,
        Schedule::Cosine => {
            if step >= t {
                return 0.0;
            }
            let c = (t - w) as f64;
            let i = (step - w) as f64;
            0.5 * base * (1.0 + (std::f64::consts::PI * i / c).cos())
        }
    }
}

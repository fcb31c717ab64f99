//! The serde default values that the trainers' configs share (the report captioner's
//! [`crate::rrg::RrgTrainConfig`] and the LLaVA trainer's [`crate::llava::train::LlavaTrainConfig`]): one function per
//! value, for `#[serde(default = "crate::train::defaults::…")]`. A value that differs between trainers (e.g.
//! `precision`: f32 for the captioner, bf16 for LLaVA) stays with its trainer.
use crate::train::schedule::Schedule;

/// Optimizer steps T of the schedule. @default 1000
pub fn total_steps() -> i64 {
    1000
}

/// The lr schedule after the warm-up. @default "cosine"
pub fn schedule() -> Schedule {
    Schedule::Cosine
}

/// Max total gradient norm (transformers' max_grad_norm). @default 1
pub fn clip_grad() -> f64 {
    1.0
}

/// AdamW's (β₁, β₂) (torch's). @default [0.9, 0.999]
pub fn adamw_betas() -> [f64; 2] {
    [0.9, 0.999]
}

/// AdamW's ε (torch's). @default 1e-8
pub fn adamw_eps() -> f64 {
    1e-8
}

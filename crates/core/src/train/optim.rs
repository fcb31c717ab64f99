//! AdamW with DINOv2's parameter groups (docs/recipe.md §3.9) and the fine-tuning weight-decay rule, written over
//! tensors so that its whole state (moments, step count) lives in our checkpoints and resumes exactly. Same update
//! as torch.optim.AdamW:
//! θ ← θ·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
//! θ ← θ − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε).
use crate::error::Result;
use tch::{Kind, Tensor};

/// Learning-rate and weight-decay multipliers of one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    pub lr_mult: f64,
    pub wd_mult: f64,
    /// The prototype layer (`last_layer.*`): follows the last-layer lr schedule (0 while frozen).
    pub is_last_layer: bool,
}

/// DINOv2's rule for a backbone parameter (`get_vit_lr_decay_rate` + `get_params_groups_with_decay`):
/// layer_id 0 for pos_embed / patch_embed / mask_token / cls_token / register_tokens, i+1 for blocks.i,
/// depth+1 otherwise; lr_mult = decay^(depth+1−layer_id), ×patch_embed_lr_mult for patch_embed.*;
/// no weight decay for biases, names containing "norm" and LayerScale gammas.
pub fn backbone_group(name: &str, depth: i64, layerwise_decay: f64, patch_embed_lr_mult: f64) -> ParamGroup {
    let layer_id = if ["pos_embed", "patch_embed", "mask_token", "cls_token", "register_tokens"].iter().any(|p| name.starts_with(p)) {
        0
    } else if let Some(rest) = name.strip_prefix("blocks.") {
        rest.split('.').next().and_then(|i| i.parse::<i64>().ok()).map(|i| i + 1).unwrap_or(depth + 1)
    } else {
        depth + 1
    };
    let mut lr_mult = layerwise_decay.powi((depth + 1 - layer_id) as i32);
    if name.starts_with("patch_embed") {
        lr_mult *= patch_embed_lr_mult;
    }
    ParamGroup { lr_mult, wd_mult: wd_mult(name), is_last_layer: false }
}

/// Heads: lr multiplier 1, weight-decay rule as the backbone, `last_layer` marked.
pub fn head_group(name: &str) -> ParamGroup {
    ParamGroup { lr_mult: 1.0, wd_mult: wd_mult(name), is_last_layer: name.contains("last_layer") }
}

/// DINOv2's weight-decay multiplier: 0 for biases, norms and LayerScale gammas, 1 otherwise.
fn wd_mult(name: &str) -> f64 {
    if name.ends_with(".bias") || name.contains("norm") || name.contains("gamma") { 0.0 } else { 1.0 }
}

/// Weight-decay multiplier of a fine-tuned parameter: DINOv2's rule, and also 0 for the position embedding and
/// the learned tokens (BEiT / timm `no_weight_decay`), so that only weight matrices decay.
pub fn finetune_wd_mult(name: &str) -> f64 {
    let tokens = ["pos_embed", "cls_token", "register_tokens", "mask_token"];
    if tokens.iter().any(|t| name.ends_with(t)) { 0.0 } else { wd_mult(name) }
}

/// One optimised parameter with its moments.
pub struct Slot {
    pub name: String,
    pub param: Tensor,
    pub group: ParamGroup,
    pub exp_avg: Tensor,
    pub exp_avg_sq: Tensor,
}

pub struct AdamW {
    pub slots: Vec<Slot>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Number of updates taken (t in the bias corrections).
    pub step: i64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Tensor, ParamGroup)>, beta1: f64, beta2: f64, eps: f64) -> Self {
        let slots = params
            .into_iter()
            .map(|(name, param, group)| {
                let exp_avg = tch::no_grad(|| param.zeros_like());
                let exp_avg_sq = tch::no_grad(|| param.zeros_like());
                Slot { name, param, group, exp_avg, exp_avg_sq }
            })
            .collect();
        AdamW { slots, beta1, beta2, eps, step: 0 }
    }

    /// The optimised parameters (shallow clones), in slot order.
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.shallow_clone()).collect()
    }

    /// One update with base values `lr`, `last_layer_lr`, `wd` (multiplied per group). Parameters without a
    /// gradient are skipped. Gradients are zeroed afterwards.
    pub fn update(&mut self, lr: f64, last_layer_lr: f64, wd: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        let (beta1, beta2, eps) = (self.beta1, self.beta2, self.eps);
        tch::no_grad(|| -> Result<()> {
            for s in self.slots.iter_mut() {
                let g = s.param.grad();
                if !g.defined() {
                    continue;
                }
                let lr_g = s.group.lr_mult * if s.group.is_last_layer { last_layer_lr } else { lr };
                let wd_g = s.group.wd_mult * wd;
                if lr_g * wd_g != 0.0 {
                    let _ = s.param.f_mul_(&Tensor::from(1.0 - lr_g * wd_g))?;
                }
                let g = g.f_to_kind(s.exp_avg.kind())?;
                let _ = s.exp_avg.f_lerp_(&g, 1.0 - beta1)?;
                let _ = s.exp_avg_sq.f_mul_scalar_(beta2)?.f_addcmul_(&g, &g.f_mul_scalar(1.0 - beta2)?)?;
                let denom = s.exp_avg_sq.f_sqrt()?.f_div_scalar(bc2.sqrt())?.f_add_scalar(eps)?;
                let upd = s.exp_avg.f_div(&denom)?.f_mul_scalar(lr_g / bc1)?;
                let _ = s.param.f_sub_(&upd.f_to_kind(s.param.kind())?)?;
            }
            Ok(())
        })?;
        for s in self.slots.iter_mut() {
            let mut g = s.param.grad();
            if g.defined() {
                let _ = g.f_zero_()?;
            }
        }
        Ok(())
    }
}

/// Clips the total L2 norm of the gradients of `params` to `max_norm` (torch clip_grad_norm_, coefficient
/// max_norm/(total+1e-6) when below 1) and returns the norm before clipping. No gradient → 0.
pub fn clip_grad_norm(params: &[&Tensor], max_norm: f64) -> Result<f64> {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return Ok(0.0);
        }
        let sq = grads.iter().map(|g| g.f_to_kind(Kind::Float)?.f_square()?.f_sum(Kind::Float)).collect::<std::result::Result<Vec<_>, _>>()?;
        let total = Tensor::f_stack(&sq, 0)?.f_sum(Kind::Float)?.f_sqrt()?.f_double_value(&[])?;
        if max_norm > 0.0 {
            let coef = max_norm / (total + 1e-6);
            if coef < 1.0 {
                for mut g in grads {
                    let _ = g.f_mul_scalar_(coef)?;
                }
            }
        }
        Ok(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_groups_follow_dinov2() {
        // depth 12, decay 0.9, patch-embed ×0.2 (hand-computed).
        let g = |n: &str| backbone_group(n, 12, 0.9, 0.2);
        assert!((g("cls_token").lr_mult - 0.9f64.powi(13)).abs() < 1e-12);
        assert!((g("patch_embed.proj.weight").lr_mult - 0.2 * 0.9f64.powi(13)).abs() < 1e-12);
        assert!((g("blocks.0.attn.qkv.weight").lr_mult - 0.9f64.powi(12)).abs() < 1e-12);
        assert!((g("blocks.11.mlp.fc1.weight").lr_mult - 0.9).abs() < 1e-12);
        assert_eq!(g("norm.weight").lr_mult, 1.0);
        assert_eq!(g("blocks.3.attn.qkv.weight").wd_mult, 1.0);
        assert_eq!(g("blocks.3.attn.qkv.bias").wd_mult, 0.0);
        assert_eq!(g("blocks.3.norm1.weight").wd_mult, 0.0);
        assert_eq!(g("blocks.3.ls1.gamma").wd_mult, 0.0);
        assert_eq!(g("pos_embed").wd_mult, 1.0);
        let h = head_group("last_layer.weight_g");
        assert!(h.is_last_layer && h.lr_mult == 1.0 && h.wd_mult == 1.0);
        assert!(!head_group("mlp.0.weight").is_last_layer);
        assert_eq!(head_group("mlp.0.bias").wd_mult, 0.0);
        // Fine-tuning: weight matrices only.
        assert_eq!(finetune_wd_mult("blocks.3.attn.qkv.weight"), 1.0);
        for n in ["pos_embed", "cls_token", "register_tokens", "mask_token", "blocks.3.attn.qkv.bias", "norm.weight", "blocks.3.ls1.gamma"] {
            assert_eq!(finetune_wd_mult(n), 0.0, "{n}");
        }
    }

    #[test]
    fn adamw_matches_hand_computation() {
        // One scalar parameter θ = 1, gradient 0.5, lr 0.1, wd 0.1, β = (0.9, 0.999), ε = 1e-8:
        // θ1 = 1·(1 − 0.01) − 0.1 · (0.05/0.1) / (sqrt(0.00025)/sqrt(0.001) + 1e-8) = 0.99 − 0.1·0.5/0.5 = 0.89
        let p = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("w".into(), p.shallow_clone(), ParamGroup { lr_mult: 1.0, wd_mult: 1.0, is_last_layer: false })], 0.9, 0.999, 1e-8);
        (&p * 0.5).sum(tch::Kind::Float).backward();
        opt.update(0.1, 0.0, 0.1).unwrap();
        assert!((p.double_value(&[0]) - 0.89).abs() < 1e-6, "{}", p.double_value(&[0]));
        // Gradients were zeroed; a frozen last layer (lr 0) does not move.
        assert_eq!(p.grad().double_value(&[0]), 0.0);
        let q = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("last_layer.weight_g".into(), q.shallow_clone(), head_group("last_layer.weight_g"))], 0.9, 0.999, 1e-8);
        (&q * 3.0).sum(tch::Kind::Float).backward();
        opt.update(0.1, 0.0, 0.0).unwrap();
        assert_eq!(q.double_value(&[0]), 1.0);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let a = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        (&a * Tensor::from_slice(&[3.0f32, 4.0])).sum(tch::Kind::Float).backward();
        let n = clip_grad_norm(&[&a], 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let g = a.grad();
        assert!((g.double_value(&[0]) - 0.6).abs() < 1e-5 && (g.double_value(&[1]) - 0.8).abs() < 1e-5);
    }
}

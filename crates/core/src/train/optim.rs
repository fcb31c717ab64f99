//! AdamW with DINOv2's parameter groups (docs/recipe.md §3.9) and the fine-tuning weight-decay rule, written over
//! tensors so that its whole state (moments, step count) lives in our checkpoints and resumes exactly. Same update
//! as torch.optim.AdamW:
//! θ ← θ·(1 − lr·wd); m ← β1 m + (1−β1) g; v ← β2 v + (1−β2) g²;
//! θ ← θ − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε),
//! computed by ATen's fused AdamW kernel (`_fused_adamw_`, torch.optim.AdamW(fused=True)) per group of
//! parameters that share (lr, wd), and clipping by the multi-tensor norm of torch's clip_grad_norm_.
use crate::error::Result;
use crate::shim;
use tch::Tensor;

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
    /// gradient are skipped, as torch does. The parameters that share (lr, wd) are updated by one fused AdamW call
    /// ([`crate::shim::fused_adamw`]: ATen's `_fused_adamw_`, one pass over each tensor instead of a chain of
    /// element-wise ops). Gradients are then set to undefined (zero_grad(set_to_none=True)).
    pub fn update(&mut self, lr: f64, last_layer_lr: f64, wd: f64) -> Result<()> {
        self.step += 1;
        // One group per distinct (lr, wd), in first-seen order: [params, grads, exp_avg, exp_avg_sq].
        let mut groups: Vec<((f64, f64), [Vec<Tensor>; 4])> = Vec::new();
        for s in &self.slots {
            let g = s.param.grad();
            if !g.defined() {
                continue;
            }
            let key = (s.group.lr_mult * if s.group.is_last_layer { last_layer_lr } else { lr }, s.group.wd_mult * wd);
            let i = match groups.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    groups.push((key, Default::default()));
                    groups.len() - 1
                }
            };
            let [p, gs, m, v] = &mut groups[i].1;
            p.push(s.param.shallow_clone());
            gs.push(g);
            m.push(s.exp_avg.shallow_clone());
            v.push(s.exp_avg_sq.shallow_clone());
        }
        tch::no_grad(|| -> Result<()> {
            for ((lr_g, wd_g), [p, g, m, v]) in &groups {
                shim::fused_adamw(p, g, m, v, *lr_g, (self.beta1, self.beta2), *wd_g, self.eps, self.step)?;
            }
            Ok(())
        })?;
        drop(groups);
        shim::clear_grads(&self.params())
    }
}

/// Clips the total L2 norm of the gradients of `params` to `max_norm` (torch clip_grad_norm_ with foreach:
/// coefficient min(1, max_norm/(total+1e-6)), [`crate::shim::clip_grad_norm`]) and returns the norm before
/// clipping. Parameters without a gradient are skipped; none → 0.
pub fn clip_grad_norm(params: &[&Tensor], max_norm: f64) -> Result<f64> {
    let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
    if grads.is_empty() {
        return Ok(0.0);
    }
    tch::no_grad(|| shim::clip_grad_norm(&grads, max_norm))
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
        // Gradients were cleared (set to undefined); a frozen last layer (lr 0) does not move.
        assert!(!p.grad().defined());
        let q = Tensor::from_slice(&[1.0f32]).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("last_layer.weight_g".into(), q.shallow_clone(), head_group("last_layer.weight_g"))], 0.9, 0.999, 1e-8);
        (&q * 3.0).sum(tch::Kind::Float).backward();
        opt.update(0.1, 0.0, 0.0).unwrap();
        assert_eq!(q.double_value(&[0]), 1.0);
    }

    /// torch.optim.AdamW's multi-tensor (foreach) sequence for one tensor, op by op (torch/optim/adamw.py,
    /// `_multi_tensor_adam` with decoupled decay), as the independent expectation of the fused kernel.
    fn foreach_adamw(p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, lr: f64, wd: f64, t: i32) {
        let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
        let (mut p, mut m, mut v) = (p.shallow_clone(), m.shallow_clone(), v.shallow_clone());
        let _ = p.f_mul_scalar_(1.0 - lr * wd).unwrap();
        let _ = m.lerp_(g, 1.0 - b1);
        let _ = v.f_mul_scalar_(b2).unwrap().addcmul_(g, &(g * (1.0 - b2)));
        let (bc1, bc2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let denom = (v.sqrt() / bc2.sqrt()) + eps;
        let _ = p.addcdiv_(&(&m * (-lr / bc1)), &denom);
    }

    #[test]
    fn fused_update_matches_torch_foreach_sequence_per_group() {
        // Three groups (decayed weight, undecayed bias with another lr, last layer on its own lr) and a parameter
        // without a gradient, which must not move, over 5 steps with fresh random gradients.
        let shapes: [&[i64]; 4] = [&[64, 33], &[33], &[16, 8], &[5]];
        let groups = [
            ParamGroup { lr_mult: 0.9, wd_mult: 1.0, is_last_layer: false },
            ParamGroup { lr_mult: 0.5, wd_mult: 0.0, is_last_layer: false },
            ParamGroup { lr_mult: 1.0, wd_mult: 1.0, is_last_layer: true },
            ParamGroup { lr_mult: 1.0, wd_mult: 1.0, is_last_layer: false },
        ];
        tch::manual_seed(3);
        let ps: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true)).collect();
        let refs: Vec<(Tensor, Tensor, Tensor)> =
            ps.iter().map(|p| (p.detach().copy(), p.detach().zeros_like(), p.detach().zeros_like())).collect();
        let named = ps.iter().zip(&groups).enumerate().map(|(i, (p, g))| (format!("p{i}"), p.shallow_clone(), g.clone())).collect();
        let mut opt = AdamW::new(named, 0.9, 0.999, 1e-8);
        let frozen_before = ps[3].detach().copy();
        let (lr, last_lr, wd) = (1e-2, 3e-3, 0.04);
        for t in 1..=5 {
            let grads: Vec<Tensor> = ps[..3].iter().map(|p| p.detach().randn_like()).collect();
            for (p, g) in ps.iter().zip(&grads) {
                (p * g).sum(tch::Kind::Float).backward();
            }
            opt.update(lr, last_lr, wd).unwrap();
            for (i, g) in grads.iter().enumerate() {
                let grp = &groups[i];
                let lr_g = grp.lr_mult * if grp.is_last_layer { last_lr } else { lr };
                foreach_adamw(&refs[i].0, g, &refs[i].1, &refs[i].2, lr_g, grp.wd_mult * wd, t);
            }
        }
        for (i, (p, (rp, rm, rv))) in ps.iter().zip(&refs).take(3).enumerate() {
            for (got, want, what) in [(p, rp, "param"), (&opt.slots[i].exp_avg, rm, "exp_avg"), (&opt.slots[i].exp_avg_sq, rv, "exp_avg_sq")] {
                let d = (got - want).abs().max().double_value(&[]);
                let scale = want.abs().max().double_value(&[]).max(1e-30);
                assert!(d <= 4.0 * f32::EPSILON as f64 * scale, "slot {i} {what}: max |diff| {d:e} (scale {scale:e})");
            }
        }
        assert!(ps[3].detach().equal(&frozen_before), "a parameter without a gradient moved");
        assert_eq!(opt.slots[3].exp_avg.abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
        assert_eq!(opt.step, 5);
    }

    #[test]
    fn clipping_scales_to_max_norm() {
        let a = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        (&a * Tensor::from_slice(&[3.0f32, 4.0])).sum(tch::Kind::Float).backward();
        let n = clip_grad_norm(&[&a], 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-6);
        let g = a.grad();
        assert!((g.double_value(&[0]) - 0.6).abs() < 1e-5 && (g.double_value(&[1]) - 0.8).abs() < 1e-5);
        // Below the threshold nothing changes; several tensors clip by their joint norm (13 = √(3²+4²+12²)).
        let b = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        let c = Tensor::from_slice(&[0.0f32]).set_requires_grad(true);
        ((&b * Tensor::from_slice(&[3.0f32, 4.0])).sum(tch::Kind::Float) + &c * 12.0).sum(tch::Kind::Float).backward();
        assert!((clip_grad_norm(&[&b, &c], 100.0).unwrap() - 13.0).abs() < 1e-5);
        assert_eq!(Vec::<f32>::try_from(b.grad()).unwrap(), vec![3.0, 4.0]);
        assert!((clip_grad_norm(&[&b, &c], 6.5).unwrap() - 13.0).abs() < 1e-5);
        assert!((c.grad().double_value(&[0]) - 6.0).abs() < 1e-5 && (b.grad().double_value(&[1]) - 2.0).abs() < 1e-5);
    }
}

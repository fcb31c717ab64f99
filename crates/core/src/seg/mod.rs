//! Semantic segmentation on a DINOv2/CXformer backbone (docs/recipe.md §5.2): heads, the `ce_dice_loss`, the training step
//! (AdamW, gradient clipping, optional bf16 autocast), prediction and resumable safetensors state.
//!
//! - **Heads.** `linear` is CXformer's head: the last block's patch tokens after the final norm (registers
//!   stripped), (B, N, D) → (B, D, h, w) over the patch grid → `Conv2d(D, C, 1)` → bilinear upsampling
//!   (align_corners false) to the input size H×W. `progressive` is the stronger option users expect: the normed
//!   patch tokens of several blocks (`layers`, default the last four, or all of a shallower model) concatenated on the channels (B, L·D, h, w)
//!   → `Conv2d(L·D, hidden, 1)` → GELU → `stages` × [bilinear ×2 → `Conv2d(c, c/2, 3, padding 1)` → GELU]
//!   → `Conv2d(c, C, 1)` → bilinear upsampling to H×W. Every convolution starts from PyTorch's default init
//!   (weight and bias U(−1/√fan_in, 1/√fan_in)), drawn from LibTorch's generator seeded with `seed`.
//! - **Backbone.** Frozen by default (docs/recipe.md §5.2): its features are computed under `no_grad` in eval mode at every
//!   step (the augmentations differ per epoch, so nothing is cached). With `unfreeze` it trains too (drop path
//!   active), at `backboneLr` (a fixed ratio to the head's lr, so the schedule scales both).
//! - **Loss** [`ce_dice_loss`](loss::ce_dice_loss) = 0.5·CE + 0.5·(1 − mean_{b,c} Dice_soft(b, c)), Dice_soft = (2Σp·y + ε)/(Σp + Σy + ε),
//!   ε = 1e-6, p = softmax probabilities, y = one-hot targets, all classes including background (docs/recipe.md §5.2).
//! - **Optimizer** AdamW (β 0.9/0.999, ε 1e-8, torch semantics, [`crate::train::optim::AdamW`]) with weight decay on
//!   weights only (HF Trainer's rule: not biases or norms), total-norm gradient clipping (`clipGrad`, default 1.0).
//!   The learning rate of each step is given by the caller (the TS loop computes the cosine schedule).
//! - **Precision.** `bf16` runs the forward passes under bf16 autocast (CPU or CUDA, through the shim, as the SSL
//!   model); the loss and the parameters stay float32.
//! - **State** ([`SegModel::save`](model::SegModel::save) / [`SegModel::load`](model::SegModel::load)): one safetensors file, written atomically, holding
//!   `head.*` (the head's variables) and `backbone.*` (original DINOv2 names, only when unfrozen). To resume, with
//!   the AdamW moments (`optim.exp_avg.<param>` / `optim.exp_avg_sq.<param>`) in the one training-state format of
//!   [`crate::train::state`] (step count and config in its metadata); without the optimizer, the model alone
//!   (`format: cxformer-seg`, read by `cxformer evaluate`). Loading is strict.
//! - **Data parallelism** ([`SegModel::set_dist`](model::SegModel::set_dist), docs/distributed.md): rank 0's whole state (backbone, head, AdamW
//!   moments and step) is broadcast when a process group is set and by every training-state load (collective: every
//!   rank loads; a model saved without its optimizer loads locally, so that one rank can evaluate alone). Every image
//!   of the global batch weighs the same in the loss (CE is a pixel mean, Dice a mean over images × classes, all
//!   images of a batch have one size), so each rank back-propagates its loss × bᵣ·W/B (bᵣ its images, B their sum)
//!   and the gradients are averaged: exactly the single-process gradient of the concatenated batch, also for
//!   unequal shares; a rank with an empty share (0 images) contributes zero. The step record's loss, CE and soft
//!   Dice are those of the global batch (one all-reduce, before the finiteness check, so every rank stops at the
//!   same step). Stochastic depth of an unfrozen backbone is seeded from (seed, step, rank). This is the protocol
//!   of [`crate::train::step`].
pub mod config;
pub mod head;
pub mod loss;
pub mod model;

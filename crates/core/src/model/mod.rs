//! The DINOv2 Vision Transformer with register tokens (docs/recipe.md §2).
mod block;
pub mod pos_embed;
mod vit;

pub use block::{Attention, Block, Ffn, drop_path};
pub use vit::{ForwardOptions, Vit, VitOutput, init_from_scratch};

use tch::{Tensor, nn};

/// The variables of a VarStore sorted by name. Its HashMap order is random per process, and initial draws,
/// optimizer slots, clipping, broadcasts and state files must all see one order.
pub fn sorted_vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

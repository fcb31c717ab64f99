//! The DINOv2 Vision Transformer with register tokens (spec §2).
mod block;
pub mod pos_embed;
mod vit;

pub use block::{Attention, Block, Ffn, drop_path};
pub use vit::{ForwardOptions, Vit, VitOutput, init_from_scratch};

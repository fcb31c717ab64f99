//! Classification on top of the backbone (docs/recipe.md §5.1): the linear probe on precomputed features
//! ([`probe`]) and full fine-tuning ([`finetune`]), sharing their settings ([`config`]), the head ([`head`]), the
//! masked loss ([`loss`]) and best-epoch selection ([`select`]).
pub mod config;
pub mod finetune;
pub mod head;
pub mod loss;
pub mod probe;
pub mod select;

//! The training pieces shared by every trainer (SSL pretraining, fine-tuning, segmentation, linear probe) and
//! knowing none of them: the collective seam with its DDP helpers, AdamW with its parameter groups, and the
//! global-batch step protocol.
pub mod collective;
pub mod optim;
pub mod step;

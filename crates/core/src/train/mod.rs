//! The training pieces shared by every trainer (SSL pretraining, fine-tuning, segmentation, linear probe) and
//! knowing none of them: the collective seam with its DDP helpers, AdamW with its parameter groups, the
//! global-batch step protocol, the one training-state format and the downstream lr schedule.
pub mod collective;
pub mod defaults;
pub mod optim;
pub mod schedule;
pub mod state;
pub mod step;

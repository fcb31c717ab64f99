//! Text for report generation: the report tokenizer (HF `tokenizer.json`, trained on the training reports).
pub mod tokenizer;

pub use tokenizer::{ReportTokenizer, SpecialIds, BOS, EOS, PAD, UNK};

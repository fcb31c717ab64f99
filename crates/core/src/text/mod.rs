//! Text: the report tokenizer (HF `tokenizer.json`, trained on the training reports) and the tokenizer of a
//! Hugging Face LM folder, used as it is.
pub mod hf;
pub mod tokenizer;

pub use hf::HfTokenizer;
pub use tokenizer::{ReportTokenizer, SpecialIds, BOS, EOS, PAD, UNK};

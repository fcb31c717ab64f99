//! The report tokenizer of the R1 captioner: a HuggingFace `tokenizers` pipeline saved as `tokenizer.json`
//! (huggingface/tokenizers, tokenizers/src/tokenizer/serialization.rs), so that the same file loads in Python
//! (`tokenizers.Tokenizer.from_file`, `transformers.PreTrainedTokenizerFast(tokenizer_file=…)`).
//!
//! Conventions:
//! - **Special tokens**: `[PAD]` = 0, `[BOS]` = 1, `[EOS]` = 2, `[UNK]` = 3 in every tokenizer trained here
//!   (the trainers put the special tokens first, in that order). The model pads with 0 and ignores it in the
//!   loss. A loaded `tokenizer.json` must hold the four tokens and `[PAD]` must be 0; the other ids are read
//!   from the file ([`ReportTokenizer::specials`]).
//! - **Word level** ([`ReportTokenizer::train_word_level`], R2Gen-like, Chen et al. 2020,
//!   github.com/zhjohnchan/R2Gen `modules/tokenizers.py`): optional lowercasing; BERT's pre-tokenizer (split on
//!   whitespace, every punctuation character its own token: "enlarged." → `enlarged`, `.`); words seen fewer
//!   than `min_count` times map to `[UNK]`. Vocabulary order: the specials, then by count (descending), ties by
//!   the word's bytes (tokenizers' `WordLevelTrainer`), so that training is deterministic. Decoding joins words
//!   with spaces and attaches `. , ? ! ; : )` and the English clitics to the previous word (tokenizers' WordPiece
//!   decoder with `cleanup`, then `Replace` decoders for `;`, `:`, `)`): "the heart is enlarged." round-trips;
//!   other punctuation ("x - ray", "( left") stays spaced.
//! - **BPE** ([`ReportTokenizer::train_bpe`]): byte-level BPE as GPT-2 (Radford et al. 2019; tokenizers'
//!   `ByteLevel` pre-tokenizer with a leading space, all 256 byte symbols in the initial alphabet, so nothing is
//!   ever unknown), no lowercasing; decoding restores the text exactly (up to the added leading space).
//! - **BOS/EOS** are added by [`ReportTokenizer::encode`] itself (`with_special = true`), not by a post-processor
//!   in the file, so a Python user of the file gets the bare ids.
//! - **Determinism**: the same texts and options give a byte-identical `tokenizer.json` ([`ReportTokenizer::to_json`]:
//!   pretty JSON, vocabulary in id order); [`ReportTokenizer::save`] writes it atomically (temp + rename).
use crate::error::{Error, Result};
use crate::weights::write_atomic;
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainer};
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::utils::Lowercase;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{AddedToken, Tokenizer};

/// The padding token (id 0).
pub const PAD: &str = "[PAD]";
/// The begin-of-sequence token (id 1 when trained here).
pub const BOS: &str = "[BOS]";
/// The end-of-sequence token (id 2 when trained here).
pub const EOS: &str = "[EOS]";
/// The unknown-word token (id 3 when trained here).
pub const UNK: &str = "[UNK]";

/// The ids of the four special tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    /// `[PAD]` (always 0).
    pub pad: i64,
    /// `[BOS]`.
    pub bos: i64,
    /// `[EOS]`.
    pub eos: i64,
    /// `[UNK]`.
    pub unk: i64,
}

/// A report tokenizer: a `tokenizers::Tokenizer` plus its special ids. See the module docs for the conventions.
#[derive(Clone)]
pub struct ReportTokenizer {
    inner: Tokenizer,
    specials: SpecialIds,
}

impl std::fmt::Debug for ReportTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportTokenizer").field("vocab_size", &self.vocab_size()).field("specials", &self.specials).finish()
    }
}

fn special_tokens() -> Vec<AddedToken> {
    [PAD, BOS, EOS, UNK].iter().map(|t| AddedToken::from(t.to_string(), true)).collect()
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("tokenizer: {what}: {e}"))
}

impl ReportTokenizer {
    /// Wraps a `tokenizers::Tokenizer`, checking the special tokens (`source` names it in errors).
    pub fn from_tokenizer(inner: Tokenizer, source: &str) -> Result<Self> {
        let id = |t: &str| {
            inner.token_to_id(t).map(i64::from).ok_or_else(|| {
                Error::weights(source, format!("the tokenizer has no special token {t} (expected {PAD}, {BOS}, {EOS} and {UNK})"))
            })
        };
        let specials = SpecialIds { pad: id(PAD)?, bos: id(BOS)?, eos: id(EOS)?, unk: id(UNK)? };
        if specials.pad != 0 {
            return Err(Error::weights(source, format!("{PAD} must have id 0 (the model pads with 0), found id {}", specials.pad)));
        }
        Ok(ReportTokenizer { inner, specials })
    }

    /// Loads a HF `tokenizer.json`. Errors name the file: unreadable (Io), not a tokenizer (the serde message,
    /// with line and column), or without the four special tokens / `[PAD]` ≠ 0.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// [`ReportTokenizer::load`] from the JSON text; `source` names it in errors.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let inner: Tokenizer = serde_json::from_str(text)
            .map_err(|e| Error::weights(source, format!("not a valid tokenizer.json: {e}")))?;
        Self::from_tokenizer(inner, source)
    }

    /// The `tokenizer.json` text (pretty-printed; byte-identical for identical tokenizers).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| tok_err("serialising", e))
    }

    /// Writes `tokenizer.json` atomically (temp file in the same folder + fsync + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json()?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Trains a word-level tokenizer (see the module docs): `min_count` ≥ 1 occurrences to get an id,
    /// `lowercase` the texts first.
    pub fn train_word_level<S: AsRef<str> + Sync>(texts: &[S], min_count: u64, lowercase: bool) -> Result<Self> {
        if min_count == 0 {
            return Err(Error::Config("tokenizer: min_count must be at least 1".into()));
        }
        let model = WordLevel::builder().unk_token(UNK.to_string()).build().map_err(|e| tok_err("word-level model", e))?;
        let mut tk = Tokenizer::new(model);
        if lowercase {
            tk.with_normalizer(Some(Lowercase));
        }
        tk.with_pre_tokenizer(Some(BertPreTokenizer));
        let mut decoders: Vec<DecoderWrapper> = vec![WordPieceDecoder::new("##".into(), true).into()];
        for p in [";", ":", ")"] {
            decoders.push(Replace::new(format!(" {p}"), p).map_err(|e| tok_err("decoder", e))?.into());
        }
        tk.with_decoder(Some(DecoderSequence::new(decoders)));
        let trainer = WordLevelTrainer::builder()
            .min_frequency(min_count)
            .vocab_size(usize::MAX)
            .show_progress(false)
            .special_tokens(special_tokens())
            .build()
            .map_err(|e| tok_err("word-level trainer", e))?;
        let mut trainer: TrainerWrapper = trainer.into();
        tk.train(&mut trainer, texts.iter().map(|t| t.as_ref())).map_err(|e| tok_err("training", e))?;
        tk.add_special_tokens(&special_tokens());
        Self::from_tokenizer(tk, "trained tokenizer")
    }

    /// Trains a byte-level BPE tokenizer of `vocab_size` entries at most (the 4 specials + 256 byte symbols +
    /// merges; at least 260).
    pub fn train_bpe<S: AsRef<str> + Sync>(texts: &[S], vocab_size: usize) -> Result<Self> {
        if vocab_size < 260 {
            return Err(Error::Config(format!("tokenizer: a byte-level BPE vocabulary needs at least 260 entries (4 specials + 256 bytes), got {vocab_size}")));
        }
        let mut tk = Tokenizer::new(BPE::default());
        tk.with_pre_tokenizer(Some(ByteLevel::new(true, true, true)));
        tk.with_decoder(Some(ByteLevel::new(true, true, true)));
        let trainer = BpeTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(special_tokens())
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut trainer: TrainerWrapper = trainer.into();
        tk.train(&mut trainer, texts.iter().map(|t| t.as_ref())).map_err(|e| tok_err("training", e))?;
        tk.add_special_tokens(&special_tokens());
        Self::from_tokenizer(tk, "trained tokenizer")
    }

    /// The special-token ids.
    pub fn specials(&self) -> SpecialIds {
        self.specials
    }

    /// Vocabulary size, added tokens included: the model's `vocabSize`.
    pub fn vocab_size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }

    /// The token of an id (None outside the vocabulary).
    pub fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id).ok().and_then(|i| self.inner.id_to_token(i))
    }

    /// The id of a token (None when absent).
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The ids of `text`; with `with_special`, `[BOS] … [EOS]` around them.
    pub fn encode(&self, text: &str, with_special: bool) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| tok_err("encoding", e))?;
        let mut ids = Vec::with_capacity(enc.len() + 2);
        if with_special {
            ids.push(self.specials.bos);
        }
        ids.extend(enc.get_ids().iter().map(|&i| i64::from(i)));
        if with_special {
            ids.push(self.specials.eos);
        }
        Ok(ids)
    }

    /// The text of `ids`: special tokens (PAD, BOS, EOS, UNK…) are skipped, and so is everything after the first
    /// EOS (a generated row is padded after it). Ids outside the vocabulary are an error.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let end = ids.iter().position(|&i| i == self.specials.eos).unwrap_or(ids.len());
        let v = self.vocab_size();
        let ids: Vec<u32> = ids[..end]
            .iter()
            .map(|&i| {
                if i < 0 || i >= v {
                    Err(Error::Config(format!("tokenizer: id {i} is outside the vocabulary [0, {v})")))
                } else {
                    Ok(i as u32)
                }
            })
            .collect::<Result<_>>()?;
        let text = self.inner.decode(&ids, true).map_err(|e| tok_err("decoding", e))?;
        Ok(text.trim().to_string())
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

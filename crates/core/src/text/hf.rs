//! The tokenizer of a Hugging Face LM folder ([`HfTokenizer`]): its `tokenizer.json` read by huggingface/tokenizers
//! as transformers' fast tokenizers read it, used as it is (no special-token conventions of its own, unlike the
//! report tokenizer of [`super::tokenizer`]). LLaVA adds its `<image>` token to it
//! ([`HfTokenizer::add_special_token`]).
use crate::error::{Error, Result};
use std::path::Path;
use tokenizers::{AddedToken, Tokenizer};

/// A Hugging Face `tokenizer.json` (see the module docs).
#[derive(Clone)]
pub struct HfTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for HfTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HfTokenizer").field("vocab_size", &self.vocab_size()).finish()
    }
}

fn tok_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("tokenizer: {what}: {e}"))
}

impl HfTokenizer {
    /// Wraps a `tokenizers::Tokenizer`.
    pub fn new(inner: Tokenizer) -> Self {
        HfTokenizer { inner }
    }

    /// Reads a `tokenizer.json`; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses `tokenizer.json` text; `source` (a file name) names it in errors (the serde message, with line and
    /// column).
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let inner: Tokenizer = serde_json::from_str(text).map_err(|e| Error::weights(source, format!("not a valid tokenizer.json: {e}")))?;
        Ok(HfTokenizer { inner })
    }

    /// The `tokenizer.json` text, pretty-printed (the added tokens included).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(|e| tok_err("serialising", e))
    }

    /// Vocabulary size with the added tokens (transformers' `len(tokenizer)`).
    pub fn vocab_size(&self) -> i64 {
        self.inner.get_vocab_size(true) as i64
    }

    /// The id of a token of the vocabulary or of the added tokens (None when absent).
    pub fn token_to_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// The token of an id (None outside the vocabulary).
    pub fn id_to_token(&self, id: i64) -> Option<String> {
        u32::try_from(id).ok().and_then(|i| self.inner.id_to_token(i))
    }

    /// Adds `content` as a special token (transformers' `add_special_tokens` of an `AddedToken`: special, not
    /// normalized, no lstrip, rstrip or single_word) unless the tokenizer already has it, as a token of the
    /// vocabulary or an added one. Returns its id and whether it was added (a new token takes the next id,
    /// [`HfTokenizer::vocab_size`] before the call).
    pub fn add_special_token(&mut self, content: &str) -> Result<(i64, bool)> {
        if let Some(id) = self.token_to_id(content) {
            return Ok((id, false));
        }
        if content.is_empty() {
            return Err(Error::Config("tokenizer: a special token cannot be empty".into()));
        }
        self.inner.add_special_tokens(&[AddedToken::from(content.to_string(), true)]);
        let id = self.token_to_id(content).ok_or_else(|| Error::Config(format!("tokenizer: adding the special token {content:?} failed")))?;
        Ok((id, true))
    }

    /// The ids of `text`; with `add_special_tokens`, what the file's post-processor adds (e.g. a BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, add_special_tokens).map_err(|e| tok_err("encoding", e))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// The text of `ids` (special tokens skipped with `skip_special_tokens`). Ids outside the vocabulary are an
    /// error naming the id.
    pub fn decode(&self, ids: &[i64], skip_special_tokens: bool) -> Result<String> {
        let v = self.vocab_size();
        let ids: Vec<u32> = ids
            .iter()
            .map(|&i| if (0..v).contains(&i) { Ok(i as u32) } else { Err(Error::Config(format!("tokenizer: id {i} is outside the vocabulary [0, {v})"))) })
            .collect::<Result<_>>()?;
        self.inner.decode(&ids, skip_special_tokens).map_err(|e| tok_err("decoding", e))
    }

    /// The wrapped `tokenizers::Tokenizer`.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }
}

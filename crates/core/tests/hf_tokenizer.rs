//! `cxformer_core::text::HfTokenizer` on the golden tiny LMs' tokenizer (fixtures/golden/lm/qwen2/tokenizer.json:
//! byte-level BPE, 500 ids, `<|endoftext|>` = 0 and `<pad>` = 1 added as special tokens): LLaVA's `<image>` is
//! added once as a special token with the next id and encodes as one token; text round-trips; ids outside the
//! vocabulary are refused.
mod common;

use common::golden_dir;
use cxformer_core::text::HfTokenizer;

fn tokenizer() -> HfTokenizer {
    HfTokenizer::load(&golden_dir().join("lm/qwen2/tokenizer.json")).unwrap()
}

#[test]
fn image_token_is_added_once_with_the_next_id() {
    let mut t = tokenizer();
    assert_eq!(t.vocab_size(), 500);
    assert_eq!(t.add_special_token("<image>").unwrap(), (500, true));
    assert_eq!(t.add_special_token("<image>").unwrap(), (500, false));
    assert_eq!(t.vocab_size(), 501);
    assert_eq!((t.token_to_id("<image>"), t.id_to_token(500).as_deref()), (Some(500), Some("<image>")));
    // Tokens the tokenizer has already are never added again.
    assert_eq!(t.add_special_token("<pad>").unwrap(), (1, false));
    assert_eq!(t.vocab_size(), 501);
    // The token survives a round trip through tokenizer.json and encodes as itself, whole.
    let back = HfTokenizer::from_json(&t.to_json().unwrap(), "round trip").unwrap();
    let ids = back.encode("Findings:<image> The heart", false).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 500).count(), 1, "{ids:?}");
    assert_eq!(back.decode(&ids, true).unwrap(), "Findings: The heart");
    assert_eq!(back.decode(&ids, false).unwrap(), "Findings:<image> The heart");
}

#[test]
fn text_round_trips_and_bad_ids_are_named() {
    let t = tokenizer();
    let text = "The heart size is normal. No pleural effusion.";
    let ids = t.encode(text, true).unwrap();
    assert!(ids.iter().all(|&i| (0..500).contains(&i)));
    assert_eq!(t.decode(&ids, true).unwrap(), text);
    let e = t.decode(&[3, 500], true).unwrap_err().to_string();
    assert!(e.contains("id 500") && e.contains("[0, 500)"), "{e}");
    let e = HfTokenizer::from_json("{", "broken.json").unwrap_err().to_string();
    assert!(e.contains("broken.json"), "{e}");
    assert_eq!(t.id_to_token(-1), None);
}

//! The report tokenizer (crates/core/src/text/tokenizer.rs): special-token ids, encode/decode round trips
//! (word level: readable text with punctuation attached; BPE: exact), min-count → [UNK], byte-identical
//! tokenizer.json from the same texts (and the saved file loads back to the same ids), a file that is not a
//! tokenizer → an error naming the file. Texts: the phantom reports of the golden set (text/phantom/reports.csv).
mod common;

use cxformer_core::text::{BOS, EOS, PAD, ReportTokenizer, UNK};

/// The Findings column of the golden phantom reports (one report per line; RFC 4180 quoting when the report
/// holds a comma).
fn phantom_reports() -> Vec<String> {
    let text = std::fs::read_to_string(common::golden_dir().join("text/phantom/reports.csv")).expect("golden reports.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("Path,Findings"));
    lines
        .map(|l| {
            let f = l.split_once(',').expect("path,findings").1;
            match f.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
                Some(q) => q.replace("\"\"", "\""),
                None => f.to_string(),
            }
        })
        .collect()
}

#[test]
fn word_level_special_ids_and_readable_round_trip() {
    let texts = ["The heart is enlarged.", "the heart is normal. No effusion; no pneumothorax.", "Rare: heart (left)."];
    let tk = ReportTokenizer::train_word_level(&texts, 1, true).unwrap();
    let s = tk.specials();
    assert_eq!((s.pad, s.bos, s.eos, s.unk), (0, 1, 2, 3));
    for (t, id) in [(PAD, 0), (BOS, 1), (EOS, 2), (UNK, 3)] {
        assert_eq!(tk.token_to_id(t), Some(id));
    }
    // Lowercased words and punctuation: the, heart, is, enlarged, ., normal, no, effusion, ;, pneumothorax, rare,
    // :, (, left, ) — 15 types + 4 specials.
    assert_eq!(tk.vocab_size(), 19);
    // Most frequent first: "." (4), "heart" (3), then "is", "no", "the" (2 each, by bytes).
    assert_eq!(tk.token_to_id("."), Some(4));
    assert_eq!(tk.token_to_id("heart"), Some(5));
    assert_eq!(tk.token_to_id("is"), Some(6));
    assert_eq!(tk.token_to_id("no"), Some(7));
    assert_eq!(tk.token_to_id("the"), Some(8));

    let ids = tk.encode("The heart is enlarged.", true).unwrap();
    assert_eq!(ids.len(), 7);
    assert_eq!((ids[0], ids[6]), (1, 2));
    assert_eq!(&ids[1..6], &[8, 5, 6, tk.token_to_id("enlarged").unwrap(), 4]);
    assert_eq!(tk.decode(&ids).unwrap(), "the heart is enlarged.");
    let ids = tk.encode("No effusion; no pneumothorax.", false).unwrap();
    assert_eq!(tk.decode(&ids).unwrap(), "no effusion; no pneumothorax.");
    assert_eq!(tk.decode(&tk.encode("Rare: heart (left).", false).unwrap()).unwrap(), "rare: heart ( left).");
    // Everything after the first EOS (a generated row's padding) is ignored.
    let mut padded = tk.encode("the heart.", true).unwrap();
    padded.extend([0, 0, 8]);
    assert_eq!(tk.decode(&padded).unwrap(), "the heart.");
    assert!(tk.decode(&[4, 99]).unwrap_err().to_string().contains("outside the vocabulary"));
}

#[test]
fn word_level_min_count_maps_rare_words_to_unk() {
    let texts = ["a b b c c c", "c b"];
    let tk = ReportTokenizer::train_word_level(&texts, 3, false).unwrap();
    // Only b (3) and c (4) reach 3 occurrences.
    assert_eq!(tk.vocab_size(), 6);
    assert_eq!(tk.encode("c b a zebra", false).unwrap(), vec![4, 5, 3, 3]);
    // Without lowercasing, "C" is another word (unknown here).
    assert_eq!(tk.encode("C", false).unwrap(), vec![3]);
    assert!(ReportTokenizer::train_word_level(&texts, 0, false).is_err());
}

#[test]
fn training_is_deterministic_and_the_saved_file_loads_back() {
    let reports = phantom_reports();
    assert_eq!(reports.len(), 300);
    let dir = common::tmpdir("tokenizer");
    for (name, a, b) in [
        ("word", ReportTokenizer::train_word_level(&reports, 2, true).unwrap(), ReportTokenizer::train_word_level(&reports, 2, true).unwrap()),
        ("bpe", ReportTokenizer::train_bpe(&reports, 400).unwrap(), ReportTokenizer::train_bpe(&reports, 400).unwrap()),
    ] {
        let (pa, pb) = (dir.join(format!("{name}-a.json")), dir.join(format!("{name}-b.json")));
        a.save(&pa).unwrap();
        b.save(&pb).unwrap();
        let (ba, bb) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
        assert!(ba == bb, "{name}: two trainings on the same texts gave different tokenizer.json files");
        let back = ReportTokenizer::load(&pa).unwrap();
        assert_eq!(back.vocab_size(), a.vocab_size());
        assert_eq!(back.specials(), a.specials());
        for r in reports.iter().take(50) {
            let ids = a.encode(r, true).unwrap();
            assert_eq!(back.encode(r, true).unwrap(), ids, "{name}: {r}");
            assert!(!ids[1..ids.len() - 1].contains(&3), "{name}: a training report has an unknown word: {r}");
            let text = back.decode(&ids).unwrap();
            if name == "bpe" {
                assert_eq!(text, *r, "byte-level BPE decodes exactly");
            } else {
                assert_eq!(text, r.to_lowercase(), "word level decodes the lowercased report");
            }
        }
        // No temp file is left next to the saved one.
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("tmp")).collect();
        assert!(left.is_empty());
    }
    let bpe = ReportTokenizer::train_bpe(&reports, 400).unwrap();
    assert_eq!((bpe.specials().pad, bpe.specials().bos, bpe.specials().eos, bpe.specials().unk), (0, 1, 2, 3));
    assert!(bpe.vocab_size() <= 400 && bpe.vocab_size() > 260, "{}", bpe.vocab_size());
    // Merges make the reports shorter than their bytes.
    let r = &reports[2];
    assert!((bpe.encode(r, false).unwrap().len() as f64) < r.len() as f64 / 2.0);
    assert!(ReportTokenizer::train_bpe(&reports, 100).unwrap_err().to_string().contains("at least 260"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_file_that_is_not_a_tokenizer_is_named_in_the_error() {
    let dir = common::tmpdir("tokenizer-bad");
    let bad = dir.join("tokenizer.json");
    std::fs::write(&bad, "{\"version\": \"1.0\", \"model\": {\"type\": \"WordLevel\"").unwrap();
    let e = ReportTokenizer::load(&bad).unwrap_err().to_string();
    assert!(e.contains(&bad.display().to_string()) && e.contains("not a valid tokenizer.json") && e.contains("line 1"), "{e}");
    // Valid JSON tokenizer without the special tokens.
    let plain = ReportTokenizer::train_word_level(&["a b"], 1, false).unwrap().to_json().unwrap().replace("[BOS]", "[CLS]");
    let e = ReportTokenizer::from_json(&plain, "other.json").unwrap_err().to_string();
    assert!(e.contains("other.json") && e.contains("no special token [BOS]"), "{e}");
    let missing = dir.join("absent.json");
    let e = ReportTokenizer::load(&missing).unwrap_err().to_string();
    assert!(e.contains("absent.json"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

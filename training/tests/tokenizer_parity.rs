//! Our CLIP tokenizer gives the ids of open_clip's reference tokenizer (fixture made by
//! `fixtures/make_tokenizer_reference.py`): every text label of the paper, its example
//! descriptions, and sentences that exercise cleaning and truncation.

use sd2_models::paths;
use sd2_train::tokenizer::{CONTEXT_LENGTH, ClipTokenizer, EOT, SOT};

fn tokenizer() -> ClipTokenizer {
    let vocab = paths::clip_vocab();
    assert!(
        vocab.exists(),
        "{} is missing: run scripts/setup.sh",
        vocab.display()
    );
    ClipTokenizer::from_vocab_file(&vocab).unwrap()
}

#[test]
fn same_ids_as_the_reference_tokenizer() {
    let fx: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/tokenizer_reference.json")).unwrap();
    let texts: Vec<String> = serde_json::from_value(fx["texts"].clone()).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(fx["ids"].clone()).unwrap();
    assert!(texts.len() >= 50);
    let tok = tokenizer();
    let mut mismatches = Vec::new();
    for (text, want) in texts.iter().zip(&ids) {
        let got = tok.tokenize(text);
        let mut padded = want.clone();
        padded.resize(CONTEXT_LENGTH, 0);
        if got.as_slice() != padded.as_slice() {
            mismatches.push(format!(
                "{text:?}\n  ours      {:?}\n  reference {:?}",
                &got[..want.len().min(CONTEXT_LENGTH)],
                want
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} texts differ:\n{}",
        mismatches.len(),
        texts.len(),
        mismatches.join("\n")
    );
}

#[test]
fn sequences_start_end_and_truncate_as_clip_expects() {
    let tok = tokenizer();
    let short = tok.tokenize("a photo of a real face.");
    assert_eq!(short[0], SOT);
    let end = short.iter().position(|&t| t == EOT).unwrap();
    assert!(short[end + 1..].iter().all(|&t| t == 0));
    let long = tok.tokenize(&"face ".repeat(200));
    assert_eq!(long[0], SOT);
    assert_eq!(
        long[CONTEXT_LENGTH - 1],
        EOT,
        "the last token of a cut sequence is still the end token"
    );
}

#[test]
fn a_missing_vocabulary_says_where_it_comes_from() {
    let err = ClipTokenizer::from_vocab_file(std::path::Path::new("/nonexistent/bpe.txt.gz"))
        .unwrap_err();
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
}

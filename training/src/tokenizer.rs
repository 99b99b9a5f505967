//! The CLIP tokenizer, built with the `tokenizers` crate from OpenAI's
//! `bpe_simple_vocab_16e6.txt.gz` (as `open_clip`'s `SimpleTokenizer` builds it).
//!
//! Text is cleaned as the reference cleans it (HTML entities unescaped, curly quotes made
//! straight as `ftfy` does, whitespace collapsed, lowercased), split by CLIP's pattern,
//! byte-level encoded and merged by BPE with `</w>` ending each word. Every sequence is
//! `<start_of_text> … <end_of_text>`, cut to 77 tokens (the last one stays
//! `<end_of_text>`) and padded with zeros.

use std::io::Read;
use std::path::Path;

use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

/// Tokens per text sequence.
pub const CONTEXT_LENGTH: usize = 77;
/// Size of the vocabulary: 256 bytes, 256 word-final bytes, 48,894 merges, 2 special tokens.
pub const VOCAB_SIZE: usize = 49408;
/// `<start_of_text>`.
pub const SOT: u32 = 49406;
/// `<end_of_text>`, whose position the text tower pools.
pub const EOT: u32 = 49407;

const MERGES: usize = 49152 - 256 - 2;
const PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "{path}: cannot read the CLIP vocabulary: {reason} (scripts/setup.sh extracts it from the open-clip-torch wheel)"
    )]
    Read { path: String, reason: String },
    #[error("{path}: not a CLIP BPE vocabulary: {reason}")]
    Format { path: String, reason: MergesError },
}

/// Merges text that is not CLIP's BPE vocabulary.
#[derive(Debug, thiserror::Error)]
pub enum MergesError {
    #[error("{found} merges, expected {MERGES}")]
    TooFew { found: usize },
    #[error("merge {number} is not two symbols: {line:?}")]
    NotAPair { number: usize, line: String },
    #[error("{0}")]
    Tokenizer(String),
}

/// GPT-2's reversible map from bytes to printable characters, in the reference's order
/// (printable bytes first, then the rest), which is also the order of the first 256 ids.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut printable: Vec<u32> = (u32::from('!')..=u32::from('~'))
        .chain(u32::from('¡')..=u32::from('¬'))
        .chain(u32::from('®')..=u32::from('ÿ'))
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    printable
        .into_iter()
        .zip(chars)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid code point")))
        .collect()
}

/// What `ftfy.fix_text` and `html.unescape` do to the texts CLIP is fed, as far as they
/// change tokens: entities unescaped (twice, as the reference does), curly quotes made
/// straight, surrounding whitespace removed.
pub fn clean(text: &str) -> String {
    let mut s = text.to_owned();
    for _ in 0..2 {
        s = s
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&nbsp;", " ")
            .replace("&amp;", "&");
    }
    s.chars()
        .map(|c| match c {
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The CLIP tokenizer.
pub struct ClipTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClipTokenizer")
    }
}

impl ClipTokenizer {
    /// Builds the tokenizer from `bpe_simple_vocab_16e6.txt.gz`.
    pub fn from_vocab_file(path: &Path) -> Result<Self, TokenizerError> {
        let read = |reason: String| TokenizerError::Read {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| read(e.to_string()))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .map_err(|e| read(format!("not a gzip text file: {e}")))?;
        Self::from_merges_text(&text).map_err(|reason| TokenizerError::Format {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Builds the tokenizer from the decompressed vocabulary (a version line, then merges).
    pub fn from_merges_text(text: &str) -> Result<Self, MergesError> {
        let lines: Vec<&str> = text.split('\n').skip(1).take(MERGES).collect();
        if lines.len() < MERGES {
            return Err(MergesError::TooFew { found: lines.len() });
        }
        let merges: Vec<(String, String)> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let mut parts = l.split(' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(a), Some(b), None) => Ok((a.to_owned(), b.to_owned())),
                    _ => Err(MergesError::NotAPair {
                        number: i + 1,
                        line: (*l).to_owned(),
                    }),
                }
            })
            .collect::<Result<_, _>>()?;
        let bytes = bytes_to_unicode();
        let mut tokens: Vec<String> = bytes.iter().map(|(_, c)| c.to_string()).collect();
        tokens.extend(bytes.iter().map(|(_, c)| format!("{c}</w>")));
        tokens.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        tokens.push("<start_of_text>".into());
        tokens.push("<end_of_text>".into());
        debug_assert_eq!(tokens.len(), VOCAB_SIZE);
        let vocab: tokenizers::models::bpe::Vocab = tokens.into_iter().zip(0u32..).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .build()
            .map_err(|e| MergesError::Tokenizer(e.to_string()))?;
        let mut inner = Tokenizer::new(bpe);
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(|e| MergesError::Tokenizer(e.to_string()))?;
        inner.with_normalizer(Some(NormalizerSequence::new(vec![
            NormalizerWrapper::NFC(NFC),
            NormalizerWrapper::Replace(whitespace),
            NormalizerWrapper::Lowercase(Lowercase),
        ])));
        let split = Split::new(
            SplitPattern::Regex(PATTERN.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| MergesError::Tokenizer(e.to_string()))?;
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ])));
        Ok(ClipTokenizer { inner })
    }

    /// The BPE ids of `text`, without start and end tokens.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode(clean(text), false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// `<start_of_text> ids <end_of_text>`, cut to [`CONTEXT_LENGTH`] and zero-padded.
    pub fn tokenize(&self, text: &str) -> [u32; CONTEXT_LENGTH] {
        let mut out = [0u32; CONTEXT_LENGTH];
        let ids = self.encode(text);
        out[0] = SOT;
        let n = ids.len().min(CONTEXT_LENGTH - 2);
        out[1..1 + n].copy_from_slice(&ids[..n]);
        out[1 + n] = EOT;
        out
    }

    /// [`tokenize`](Self::tokenize) for each text, concatenated (`[texts, 77]` row-major).
    pub fn tokenize_batch<S: AsRef<str>>(&self, texts: &[S]) -> Vec<u32> {
        texts
            .iter()
            .flat_map(|t| self.tokenize(t.as_ref()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_map_is_a_bijection_onto_printable_characters() {
        let map = bytes_to_unicode();
        let mut bytes: Vec<u8> = map.iter().map(|p| p.0).collect();
        let mut chars: Vec<char> = map.iter().map(|p| p.1).collect();
        bytes.sort();
        bytes.dedup();
        chars.sort();
        chars.dedup();
        assert_eq!((bytes.len(), chars.len()), (256, 256));
        assert_eq!(map[0], (b'!', '!'));
        assert!(map.contains(&(b'a', 'a')) && map.contains(&(b' ', 'Ġ')));
        assert!(
            map.iter()
                .all(|(_, c)| !c.is_whitespace() && !c.is_control())
        );
    }

    #[test]
    fn cleaning_straightens_quotes_and_unescapes() {
        assert_eq!(
            clean("  the subject’s “face” &amp;amp; more "),
            "the subject's \"face\" & more"
        );
    }
}

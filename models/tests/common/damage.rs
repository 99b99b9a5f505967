//! Damage done to a valid file, for property tests of the parsers of users' files: flipped
//! bytes, truncations, insertions, and huge values written where lengths, counts and
//! offsets live.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::sample::Index;

/// `cases` cases, or as many as `PROPTEST_CASES` asks for (a longer search by hand). Failing
/// inputs are printed, shrunk, not saved under the source tree.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Lengths a hostile file declares: a few that allocate hundreds of MiB if trusted, the
/// edges of 32-bit and 64-bit fields.
pub const HUGE: [u64; 8] = [
    1 << 24,
    1 << 28,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    1 << 62,
    u64::MAX,
];

pub fn huge() -> impl Strategy<Value = u64> {
    prop_oneof![prop::sample::select(HUGE.to_vec()), any::<u64>()]
}

/// A damage done to a file.
#[derive(Clone, Debug)]
pub enum Damage {
    /// One byte xor-ed with a non-zero mask.
    Flip(Index, u8),
    /// Everything from a point on lost.
    Truncate(Index),
    /// Bytes inserted at a point.
    Insert(Index, Vec<u8>),
    /// A value written over 4 or 8 bytes (little-endian), as over a length field.
    Huge(Index, u64, bool),
    /// A size, count or offset field of a ZIP record (local header, central directory
    /// entry or end of central directory) set to a huge value.
    ZipField(Index, u32),
}

/// Where in a file damage lands.
#[derive(Clone, Copy, Debug)]
pub enum Spots {
    Anywhere,
    /// In the first `head` or the last `tail` bytes, where a large file's structure is
    /// (a safetensors header, a ZIP's first entries and its central directory).
    Ends {
        head: usize,
        tail: usize,
    },
}

impl Spots {
    /// The byte `i` picks among `len` bytes (and the end, when `end` is true).
    fn pick(self, i: &Index, len: usize, end: bool) -> usize {
        let len = len + usize::from(end);
        match self {
            Spots::Ends { head, tail } if head + tail < len => {
                let k = i.index(head + tail);
                if k < head { k } else { len - tail + (k - head) }
            }
            _ => i.index(len),
        }
    }
}

pub fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<Index>(), 1u8..).prop_map(|(i, m)| Damage::Flip(i, m)),
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Damage::Insert(i, b)),
        (any::<Index>(), huge(), any::<bool>()).prop_map(|(i, v, wide)| Damage::Huge(i, v, wide)),
        (
            any::<Index>(),
            prop::sample::select(vec![0x7fff_ffffu32, 0xffff_ffff, 0x0100_0000, 0xffff])
        )
            .prop_map(|(field, v)| Damage::ZipField(field, v)),
    ]
}

/// The offsets, from a record's signature, of the fields of ZIP records that hold sizes,
/// counts and offsets.
const ZIP_FIELDS: [(&[u8; 4], &[usize]); 3] = [
    (b"PK\x03\x04", &[18, 22, 26, 28]),
    (b"PK\x01\x02", &[20, 24, 28, 30, 32, 42]),
    (b"PK\x05\x06", &[8, 10, 12, 16, 20]),
];

impl Damage {
    pub fn apply(&self, mut bytes: Vec<u8>, spots: Spots) -> Vec<u8> {
        if bytes.is_empty() {
            return bytes;
        }
        let len = bytes.len();
        match self {
            Damage::Flip(i, mask) => bytes[spots.pick(i, len, false)] ^= mask,
            Damage::Truncate(i) => bytes.truncate(spots.pick(i, len, false)),
            Damage::Insert(i, extra) => {
                let at = spots.pick(i, len, true);
                bytes.splice(at..at, extra.iter().copied());
            }
            Damage::Huge(i, v, wide) => {
                let raw = v.to_le_bytes();
                let at = spots.pick(i, len, false);
                let end = (at + if *wide { 8 } else { 4 }).min(len);
                bytes[at..end].copy_from_slice(&raw[..end - at]);
            }
            Damage::ZipField(i, v) => {
                let fields: Vec<usize> = ZIP_FIELDS
                    .iter()
                    .flat_map(|(signature, offsets)| {
                        let starts: Vec<usize> = bytes
                            .windows(4)
                            .enumerate()
                            .filter(|(_, w)| w == signature)
                            .map(|(at, _)| at)
                            .collect();
                        starts
                            .into_iter()
                            .flat_map(move |at| offsets.iter().map(move |o| at + o))
                    })
                    .filter(|&at| at < len)
                    .collect();
                if let Some(&at) = fields.get(i.index(fields.len().max(1))) {
                    let end = (at + 4).min(len);
                    bytes[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
                }
            }
        }
        bytes
    }
}

//! One message as a spool segment stores it:
//!
//! ```text
//! len: u32 LE (of the body) | crc32(body): u32 LE | body
//! body = seq: u64 LE | topic_len: u16 LE | topic (UTF-8) | payload
//! ```
//!
//! A record is written with one `write` call, so a killed process leaves whole records; a
//! power cut may leave a torn one at the end of the newest segment, which the spool cuts
//! off when it opens.

use std::io::{self, Read};

/// Bytes before the body.
pub const HEADER: usize = 8;
/// The largest body read back: MQTT's largest packet. A length above it is damage.
const MAX_BODY: usize = 268_435_455;

/// A spooled message: its sequence number, where it goes and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    /// The MQTT topic (for HTTP, the `X-Sd2-Topic` header); unused by the file target.
    pub topic: String,
    /// The message, a JSON object without a trailing newline.
    pub payload: Vec<u8>,
}

/// What reading at a position found.
#[derive(Debug)]
pub enum Found {
    /// A whole record and the bytes it took.
    Record(Record, u64),
    /// The end of the data, between records.
    End,
    /// A record cut short, or one whose checksum or layout is wrong.
    Torn,
}

impl Record {
    /// The bytes of this record in a segment.
    pub fn encode(&self) -> Vec<u8> {
        let topic = self.topic.as_bytes();
        let topic_len = u16::try_from(topic.len()).unwrap_or(u16::MAX);
        let topic = &topic[..topic_len as usize];
        let body_len = 8 + 2 + topic.len() + self.payload.len();
        let mut out = Vec::with_capacity(HEADER + body_len);
        out.extend_from_slice(&(body_len as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&topic_len.to_le_bytes());
        out.extend_from_slice(topic);
        out.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&out[HEADER..]);
        out[4..8].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads the record at the reader's position.
    pub fn read(r: &mut impl Read) -> io::Result<Found> {
        let mut header = [0u8; HEADER];
        match read_full(r, &mut header)? {
            0 => return Ok(Found::End),
            HEADER => {}
            _ => return Ok(Found::Torn),
        }
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if !(10..=MAX_BODY).contains(&len) {
            return Ok(Found::Torn);
        }
        let mut body = vec![0u8; len];
        if read_full(r, &mut body)? != len || crc32fast::hash(&body) != crc {
            return Ok(Found::Torn);
        }
        let seq = u64::from_le_bytes(body[..8].try_into().expect("8 bytes"));
        let topic_len = u16::from_le_bytes(body[8..10].try_into().expect("2 bytes")) as usize;
        let Some(topic) = body.get(10..10 + topic_len) else {
            return Ok(Found::Torn);
        };
        let Ok(topic) = String::from_utf8(topic.to_vec()) else {
            return Ok(Found::Torn);
        };
        let payload = body[10 + topic_len..].to_vec();
        Ok(Found::Record(
            Record {
                seq,
                topic,
                payload,
            },
            (HEADER + len) as u64,
        ))
    }
}

/// Reads until `buf` is full or the data ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64) -> Record {
        Record {
            seq,
            topic: "sd2/cam1/frames".into(),
            payload: format!("{{\"seq\":{seq}}}").into_bytes(),
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let bytes = [record(7).encode(), record(8).encode()].concat();
        let mut r = &bytes[..];
        for seq in [7, 8] {
            match Record::read(&mut r).unwrap() {
                Found::Record(rec, len) => {
                    assert_eq!(rec, record(seq));
                    assert_eq!(len, record(seq).encode().len() as u64);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(Record::read(&mut r).unwrap(), Found::End));
    }

    #[test]
    fn a_cut_or_altered_record_is_torn() {
        let bytes = record(1).encode();
        for cut in [1, HEADER, bytes.len() - 1] {
            assert!(matches!(
                Record::read(&mut &bytes[..cut]).unwrap(),
                Found::Torn
            ));
        }
        let mut altered = bytes.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Record::read(&mut &altered[..]).unwrap(),
            Found::Torn
        ));
    }
}

//! The spool under `sd2publish`: what it keeps across a restart, a torn or damaged record,
//! a full spool, and a spool in use.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use gstsd2::publish::spool::{Counts, Spool, SpoolError};

fn append(spool: &Spool, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            spool
                .append("sd2/cam1/frames", |seq| {
                    format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(64)).into_bytes()
                })
                .unwrap()
                .seq
        })
        .collect()
}

/// Every message a fresh reader returns, damage reported as `None`.
fn read_all(spool: &Spool) -> Vec<Option<u64>> {
    let mut r = spool.reader();
    let mut out = Vec::new();
    loop {
        match r.next(spool) {
            Ok(Some(rec)) => {
                let v: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
                assert_eq!(v["seq"], rec.seq, "the payload is the one appended with it");
                assert_eq!(rec.topic, "sd2/cam1/frames");
                out.push(Some(rec.seq));
            }
            Ok(None) => return out,
            Err(SpoolError::Damaged { .. }) => out.push(None),
            Err(e) => panic!("{e}"),
        }
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut s: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    s.sort();
    s
}

#[test]
fn unacknowledged_messages_survive_a_reopen_and_numbering_continues() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(append(&spool, 10), (0..10).collect::<Vec<_>>());
    spool.acknowledge(4);
    spool.sync().unwrap();
    drop(spool);

    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(read_all(&spool), (4..10).map(Some).collect::<Vec<_>>());
    assert_eq!(
        spool.counts(),
        Counts {
            published: 0,
            waiting: 6,
            dropped: 0
        }
    );
    assert_eq!(append(&spool, 1), [10]);
}

#[test]
fn numbering_continues_when_everything_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 2 KiB: the 100 messages fill five.
    let spool = Spool::open(dir.path(), 16384).unwrap();
    append(&spool, 100);
    assert!(segments(dir.path()).len() > 1);
    spool.acknowledge(100);
    assert_eq!(
        spool.counts(),
        Counts {
            published: 100,
            waiting: 0,
            dropped: 0
        }
    );
    spool.sync().unwrap();
    drop(spool);
    let spool = Spool::open(dir.path(), 16384).unwrap();
    assert_eq!(read_all(&spool), []);
    assert_eq!(append(&spool, 1), [100]);
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "delivered segments are deleted, the newest kept"
    );
}

#[test]
fn an_acknowledgement_not_yet_recorded_costs_a_duplicate_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    append(&spool, 5);
    spool.acknowledge(2);
    spool.sync().unwrap();
    spool.acknowledge(5);
    // Killed before the watermark was recorded again.
    drop(spool);
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(read_all(&spool), [Some(2), Some(3), Some(4)]);
}

#[test]
fn a_record_torn_by_a_power_cut_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    append(&spool, 3);
    drop(spool);
    let newest = segments(dir.path()).pop().unwrap();
    let whole = std::fs::metadata(&newest).unwrap().len();
    // Half of a fourth record.
    OpenOptions::new()
        .append(true)
        .open(&newest)
        .unwrap()
        .write_all(&[40, 0, 0, 0, 1, 2, 3, 4, 3, 0])
        .unwrap();
    let spool = Spool::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(std::fs::metadata(&newest).unwrap().len(), whole);
    assert_eq!(append(&spool, 1), [3]);
    assert_eq!(read_all(&spool), (0..4).map(Some).collect::<Vec<_>>());
}

#[test]
fn a_damaged_record_skips_the_rest_of_its_segment_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 1 KiB: about ten messages each.
    let spool = Spool::open(dir.path(), 8192).unwrap();
    append(&spool, 30);
    drop(spool);
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&first, bytes).unwrap();

    let spool = Spool::open(dir.path(), 8192).unwrap();
    let read = read_all(&spool);
    let damaged = read
        .iter()
        .position(Option::is_none)
        .expect("the damage is reported");
    let after: Vec<u64> = read[damaged + 1..].iter().map(|s| s.unwrap()).collect();
    let skipped = after[0] - damaged as u64;
    assert!(skipped > 0 && after.len() as u64 + damaged as u64 + skipped == 30);
    assert_eq!(
        after,
        (after[0]..30).collect::<Vec<_>>(),
        "the next segments are read on"
    );
    assert_eq!(spool.counts().dropped, skipped);
}

#[test]
fn a_full_spool_drops_the_oldest_messages_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 4096).unwrap();
    let dropped: u64 = (0..200)
        .map(|_| {
            spool
                .append("t", |seq| {
                    format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "x".repeat(64)).into_bytes()
                })
                .unwrap()
                .dropped
        })
        .sum();
    let c = spool.counts();
    assert!(dropped > 0);
    assert_eq!(c.dropped, dropped);
    assert_eq!(c.waiting + c.dropped, 200);
    assert!(spool.bytes() <= 4096, "{} bytes", spool.bytes());
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(on_disk, spool.bytes());
    let mut r = spool.reader();
    let mut seqs = Vec::new();
    while let Some(rec) = r.next(&spool).unwrap() {
        seqs.push(rec.seq);
    }
    assert_eq!(
        seqs,
        (200 - c.waiting..200).collect::<Vec<_>>(),
        "the newest are kept"
    );
}

#[test]
fn a_spool_in_use_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Spool::open(dir.path(), 1 << 20).unwrap();
    let e = Spool::open(dir.path(), 1 << 20)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains(&dir.path().display().to_string()) && e.contains("in use"),
        "{e}"
    );
}

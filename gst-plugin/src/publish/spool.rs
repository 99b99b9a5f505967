//! The spool: a bounded queue of messages on disk that survives the publisher's restart.
//!
//! A spool directory holds append-only segment files named after the sequence number of
//! their first record (`00000000000000000042.seg`, records as [`super::record`] writes
//! them), a file `acked` with the first sequence number not yet acknowledged (every
//! message below it was delivered or dropped), and a `lock` file a publisher holds while it
//! uses the directory.
//!
//! - Appending writes a whole record with one `write` call before it returns, so what a
//!   killed process appended is in the spool when it starts again.
//! - Acknowledging moves the watermark; segments entirely below it are deleted. The newest
//!   segment is never deleted, so the sequence numbers continue after a restart.
//! - The spool holds at most `limit` bytes of segments: beyond, the oldest segments are
//!   deleted and their unacknowledged messages counted as dropped; the newest message is
//!   always kept. Segments are at most an eighth of the limit, so a drop removes at most
//!   an eighth of the spool.
//! - Durability: [`Spool::sync`] fsyncs the segments written since the last sync, then the
//!   acknowledgement, then the directory; the sender calls it every second, so a power cut
//!   costs at most the last second of appended messages, and resends (as duplicates, the
//!   same `seq`) at most the last second of acknowledged ones.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::record::{Found, Record};

const LOCK: &str = "lock";
const ACKED: &str = "acked";
const SEGMENT_EXT: &str = "seg";
/// The largest segment, whatever the limit.
const MAX_SEGMENT: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the spool {dir} is in use by another publisher (it holds {dir}/lock): give each publisher a spool directory of its own"
    )]
    Busy { dir: PathBuf },
    #[error("spool {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "spool segment {path} is damaged at message {seq}: the {skipped} messages from there to the segment's end were skipped"
    )]
    Damaged {
        path: PathBuf,
        seq: u64,
        skipped: u64,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a spool has done since it was opened, and what waits in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Messages acknowledged by the destination.
    pub published: u64,
    /// Messages in the spool not yet acknowledged (those of an earlier run included).
    pub waiting: u64,
    /// Messages deleted unacknowledged because the spool was full, or unreadable.
    pub dropped: u64,
}

/// A message appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// Messages this append pushed out of the full spool.
    pub dropped: u64,
}

struct Segment {
    first: u64,
    bytes: u64,
}

struct Inner {
    /// Oldest first; the last is the one appended to.
    segments: VecDeque<Segment>,
    active: File,
    next_seq: u64,
    /// The first sequence number neither acknowledged nor dropped.
    watermark: u64,
    bytes: u64,
    published: u64,
    dropped: u64,
    /// A write failed: the next append starts a new segment.
    roll_pending: bool,
    active_dirty: bool,
    /// Segments rolled over since the last sync.
    unsynced: Vec<File>,
    dir_dirty: bool,
    ack_dirty: bool,
}

impl Inner {
    /// The segment holding `seq` and the sequence number after its last record.
    fn containing(&self, seq: u64) -> (u64, u64) {
        let i = self
            .segments
            .partition_point(|s| s.first <= seq)
            .saturating_sub(1);
        let end = self.segments.get(i + 1).map_or(self.next_seq, |s| s.first);
        (self.segments[i].first, end)
    }
}

pub struct Spool {
    dir: PathBuf,
    limit: u64,
    segment_limit: u64,
    inner: Mutex<Inner>,
    /// Notified on every append, acknowledgement and drop.
    changed: Condvar,
    /// Serialises writing the `acked` file.
    persist: Mutex<()>,
    _lock: File,
}

impl Spool {
    /// Opens the spool in `dir` (created if missing) holding at most `limit` bytes, and
    /// locks it; cuts off a record torn by a power cut at the end of the newest segment.
    pub fn open(dir: &Path, limit: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(SpoolError::Busy {
                    dir: dir.to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        let acked = read_acked(&dir.join(ACKED));
        let mut firsts = list_segments(dir)?;
        if firsts.is_empty() {
            firsts.push(acked.unwrap_or(0));
        }
        let last = *firsts.last().expect("at least one segment");
        let last_path = segment_path(dir, last);
        let active = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&last_path)
            .map_err(io_error(&last_path))?;
        let (count, valid) = scan(&active, last).map_err(io_error(&last_path))?;
        active.set_len(valid).map_err(io_error(&last_path))?;
        let mut segments = VecDeque::new();
        for &first in &firsts[..firsts.len() - 1] {
            let path = segment_path(dir, first);
            let bytes = fs::metadata(&path).map_err(io_error(&path))?.len();
            segments.push_back(Segment { first, bytes });
        }
        segments.push_back(Segment {
            first: last,
            bytes: valid,
        });
        let next_seq = last + count;
        let watermark = acked.unwrap_or(0).clamp(firsts[0], next_seq);
        let spool = Spool {
            dir: dir.to_owned(),
            limit,
            segment_limit: (limit / 8).clamp(1, MAX_SEGMENT),
            inner: Mutex::new(Inner {
                bytes: segments.iter().map(|s| s.bytes).sum(),
                segments,
                active,
                next_seq,
                watermark,
                published: 0,
                dropped: 0,
                roll_pending: false,
                active_dirty: false,
                unsynced: Vec::new(),
                dir_dirty: true,
                ack_dirty: false,
            }),
            changed: Condvar::new(),
            persist: Mutex::new(()),
            _lock: lock,
        };
        spool.remove_acknowledged(&mut spool.lock());
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn segment_path(&self, first: u64) -> PathBuf {
        segment_path(&self.dir, first)
    }

    /// Appends a message to `topic` whose payload `payload` makes from its sequence number.
    /// On an error nothing is appended and the sequence number is not used.
    pub fn append(
        &self,
        topic: &str,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<Appended, SpoolError> {
        let mut g = self.lock();
        let seq = g.next_seq;
        let bytes = Record {
            seq,
            topic: topic.to_owned(),
            payload: payload(seq),
        }
        .encode();
        let len = bytes.len() as u64;
        let active = g.segments.back().expect("an active segment").bytes;
        if g.roll_pending || (active > 0 && active + len > self.segment_limit) {
            self.roll(&mut g, seq)?;
        }
        if let Err(e) = g.active.write_all(&bytes) {
            // Whatever part reached the file lies past the segment's last record, where no
            // reader looks; the next append starts a new segment.
            g.roll_pending = true;
            return Err(io_error(
                &self.segment_path(g.segments.back().expect("active").first),
            )(e));
        }
        g.next_seq += 1;
        g.segments.back_mut().expect("an active segment").bytes += len;
        g.bytes += len;
        g.active_dirty = true;
        let dropped = self.drop_oldest(&mut g);
        drop(g);
        self.changed.notify_all();
        Ok(Appended { seq, dropped })
    }

    /// Starts a new segment whose first record will be `seq`.
    fn roll(&self, g: &mut Inner, seq: u64) -> Result<(), SpoolError> {
        let path = self.segment_path(seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let back = g.segments.back().expect("an active segment");
        if back.first == seq {
            // The active segment has no record (its first write failed): start it again.
            file.set_len(0).map_err(io_error(&path))?;
            g.bytes -= back.bytes;
            g.segments.pop_back();
        }
        let old = std::mem::replace(&mut g.active, file);
        if g.active_dirty {
            g.unsynced.push(old);
        }
        g.segments.push_back(Segment {
            first: seq,
            bytes: 0,
        });
        g.roll_pending = false;
        g.active_dirty = false;
        g.dir_dirty = true;
        Ok(())
    }

    /// Deletes the oldest segments while the spool is over its limit; returns the
    /// unacknowledged messages they held.
    fn drop_oldest(&self, g: &mut Inner) -> u64 {
        let mut dropped = 0;
        while g.bytes > self.limit && g.segments.len() > 1 {
            let seg = g.segments.pop_front().expect("two segments");
            let end = g.segments[0].first;
            dropped += end.saturating_sub(seg.first.max(g.watermark));
            g.watermark = g.watermark.max(end);
            g.bytes -= seg.bytes;
            // A segment left behind lies below the watermark: the next open deletes it.
            let _ = fs::remove_file(self.segment_path(seg.first));
            g.dir_dirty = true;
            g.ack_dirty = true;
        }
        g.dropped += dropped;
        dropped
    }

    /// Deletes the segments every message of which is below the watermark (not the
    /// active one).
    fn remove_acknowledged(&self, g: &mut Inner) {
        while g.segments.len() > 1 && g.segments[1].first <= g.watermark {
            let seg = g.segments.pop_front().expect("two segments");
            g.bytes -= seg.bytes;
            let _ = fs::remove_file(self.segment_path(seg.first));
            g.dir_dirty = true;
        }
    }

    /// Records that every message below `upto` was delivered.
    pub fn acknowledge(&self, upto: u64) {
        let mut g = self.lock();
        let upto = upto.min(g.next_seq);
        if upto <= g.watermark {
            return;
        }
        g.published += upto - g.watermark;
        g.watermark = upto;
        g.ack_dirty = true;
        self.remove_acknowledged(&mut g);
        drop(g);
        self.changed.notify_all();
    }

    /// Skips the messages from `from` to the end of the segment starting at `first`,
    /// which cannot be read; returns how many. A damaged active segment is rolled over.
    fn skip_damaged(&self, first: u64, from: u64) -> u64 {
        let mut g = self.lock();
        let (segment, end) = g.containing(from);
        if segment != first || from < g.watermark {
            return 0;
        }
        let skipped = end - from;
        g.dropped += skipped;
        g.watermark = end;
        g.ack_dirty = true;
        if g.segments.back().is_some_and(|s| s.first == first) {
            g.roll_pending = true;
        }
        self.remove_acknowledged(&mut g);
        drop(g);
        self.changed.notify_all();
        skipped
    }

    pub fn counts(&self) -> Counts {
        let g = self.lock();
        Counts {
            published: g.published,
            waiting: g.next_seq - g.watermark,
            dropped: g.dropped,
        }
    }

    /// The sequence number the next message appended gets.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// The bytes of segments on disk.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// Waits up to `timeout` for a message numbered `seq` or later to be appended.
    pub fn wait_appended(&self, seq: u64, timeout: Duration) {
        let g = self.lock();
        let _ = self
            .changed
            .wait_timeout_while(g, timeout, |g| g.next_seq <= seq);
    }

    /// Waits up to `timeout` for every message to be acknowledged or dropped; true when
    /// none waits.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let g = self.lock();
        let (g, _) = self
            .changed
            .wait_timeout_while(g, timeout, |g| g.watermark < g.next_seq)
            .unwrap_or_else(|e| e.into_inner());
        g.watermark == g.next_seq
    }

    /// Writes the watermark to `acked` when it moved (replacing the file, so that it is
    /// never half written); with `durable`, syncs it first.
    pub fn persist_ack(&self, durable: bool) -> Result<(), SpoolError> {
        let _p = self.persist.lock().unwrap_or_else(|e| e.into_inner());
        let watermark = {
            let mut g = self.lock();
            if !std::mem::take(&mut g.ack_dirty) {
                return Ok(());
            }
            g.watermark
        };
        let path = self.dir.join(ACKED);
        let tmp = self.dir.join(".acked.tmp");
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{watermark}\n").as_bytes())?;
            if durable {
                f.sync_data()?;
            }
            fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            self.lock().ack_dirty = true;
        }
        result.map_err(io_error(&path))
    }

    /// Makes what was appended and acknowledged durable: the segments written since the
    /// last sync, then the watermark, then the directory's entries.
    pub fn sync(&self) -> Result<(), SpoolError> {
        let (files, dir) = {
            let mut g = self.lock();
            let mut files = std::mem::take(&mut g.unsynced);
            if std::mem::take(&mut g.active_dirty) {
                match g.active.try_clone() {
                    Ok(f) => files.push(f),
                    Err(e) => {
                        g.active_dirty = true;
                        return Err(io_error(&self.dir)(e));
                    }
                }
            }
            (files, std::mem::take(&mut g.dir_dirty))
        };
        let result = (|| {
            for f in &files {
                f.sync_data().map_err(io_error(&self.dir))?;
            }
            self.persist_ack(true)?;
            if dir {
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_error(&self.dir))?;
            }
            Ok(())
        })();
        if result.is_err() {
            let mut g = self.lock();
            g.active_dirty = true;
            g.dir_dirty |= dir;
        }
        result
    }

    /// A reader from the first message not yet acknowledged.
    pub fn reader(&self) -> Reader {
        Reader {
            seq: self.lock().watermark,
            file: None,
        }
    }
}

/// Reads a spool's messages in order, from the first unacknowledged one, without holding
/// the spool while it reads.
pub struct Reader {
    seq: u64,
    /// The open segment (its first sequence number) and the next record in it.
    file: Option<(u64, BufReader<File>)>,
}

impl Reader {
    /// The sequence number of the next message this reader returns.
    pub fn position(&self) -> u64 {
        self.seq
    }

    /// Goes back to the first message not yet acknowledged (after a lost connection).
    pub fn rewind(&mut self, spool: &Spool) {
        self.seq = spool.lock().watermark;
        self.file = None;
    }

    /// The next message, or `None` when the reader has read every message appended.
    /// Messages acknowledged or dropped meanwhile are passed over. An unreadable message
    /// skips the rest of its segment and returns [`SpoolError::Damaged`]; reading on
    /// continues after it.
    pub fn next(&mut self, spool: &Spool) -> Result<Option<Record>, SpoolError> {
        loop {
            let (first, _) = {
                let g = spool.lock();
                if self.seq < g.watermark {
                    self.seq = g.watermark;
                    self.file = None;
                }
                if self.seq >= g.next_seq {
                    return Ok(None);
                }
                g.containing(self.seq)
            };
            if self.file.as_ref().is_none_or(|f| f.0 != first) {
                let path = spool.segment_path(first);
                match File::open(&path) {
                    Ok(f) => self.file = Some((first, BufReader::new(f))),
                    // Dropped since: the watermark moved past it.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&path)(e)),
                }
            }
            let (_, file) = self.file.as_mut().expect("opened above");
            loop {
                let found = Record::read(file).map_err(io_error(&spool.segment_path(first)))?;
                match found {
                    Found::Record(r, _) if r.seq < self.seq => continue,
                    Found::Record(r, _) if r.seq == self.seq => {
                        self.seq += 1;
                        return Ok(Some(r));
                    }
                    _ => {
                        let seq = self.seq;
                        let skipped = spool.skip_damaged(first, seq);
                        self.file = None;
                        if skipped == 0 {
                            // Dropped or acknowledged meanwhile: read on from the watermark.
                            break;
                        }
                        return Err(SpoolError::Damaged {
                            path: spool.segment_path(first),
                            seq,
                            skipped,
                        });
                    }
                }
            }
        }
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.{SEGMENT_EXT}"))
}

/// The first sequence numbers of the segments in `dir`, in order.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut firsts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.extension().is_some_and(|e| e == SEGMENT_EXT)
            && let Some(first) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse().ok())
        {
            firsts.push(first);
        }
    }
    firsts.sort_unstable();
    Ok(firsts)
}

/// The watermark written last; `None` when there is none or it does not read (then every
/// message in the spool is sent again: duplicates, never a loss).
fn read_acked(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The records of the segment starting at `first`, counted while they read whole and in
/// sequence: their number and the bytes they take.
fn scan(file: &File, first: u64) -> io::Result<(u64, u64)> {
    let mut r = BufReader::new(file);
    let (mut count, mut bytes) = (0, 0);
    while let Found::Record(rec, len) = Record::read(&mut r)? {
        if rec.seq != first + count {
            break;
        }
        count += 1;
        bytes += len;
    }
    Ok((count, bytes))
}

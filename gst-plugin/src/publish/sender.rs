//! The sender: a thread that delivers what the spool holds, in order, to the destination.
//!
//! It connects, sends up to the link's window of messages from the first unconfirmed one,
//! and moves the spool's watermark over the confirmed prefix. When the destination fails
//! it reports the outage once, waits (100 ms, doubling to 2 s), connects again and sends
//! again everything unconfirmed; the first confirmation after the start or an outage is
//! reported too: a message may arrive twice (with the same `seq`), never
//! not at all while it is in the spool. Every 200 ms it records the watermark, every
//! second it syncs the spool.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::destination::Destination;
use super::link::{Link, LinkError};
use super::spool::{Spool, SpoolError};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the sender waits for new messages or confirmations before it looks again.
const POLL: Duration = Duration::from_millis(100);
/// A message unconfirmed this long on a live connection means the connection is broken.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);
const ACK_PERIOD: Duration = Duration::from_millis(200);
const SYNC_PERIOD: Duration = Duration::from_secs(1);

/// What the sender tells its owner.
#[derive(Debug)]
pub enum Event {
    /// The destination confirms messages: the first time, and again after each outage.
    Delivering { destination: String, waiting: u64 },
    /// The destination failed; reported once an outage, not on each retry.
    Unreachable { error: LinkError, waiting: u64 },
    /// The spool could not be read, synced or recorded (reported once until it recovers).
    Spool(SpoolError),
}

pub type Observer = Arc<dyn Fn(Event) + Send + Sync>;

/// The running sender thread.
pub struct Sender {
    stop: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
    thread: JoinHandle<()>,
}

impl Sender {
    pub fn spawn(
        spool: Arc<Spool>,
        destination: Destination,
        observer: Observer,
    ) -> io::Result<Sender> {
        let stop = Arc::new(AtomicBool::new(false));
        let (done_tx, done) = mpsc::channel();
        let delivery = Delivery {
            reader: spool.reader(),
            spool,
            destination,
            observer,
            stop: stop.clone(),
            backoff: MIN_BACKOFF,
            down: false,
            delivering: false,
            read_error: None,
            upkeep: Upkeep::new(),
        };
        let thread = std::thread::Builder::new()
            .name("sd2publish-sender".into())
            .spawn(move || {
                delivery.run();
                drop(done_tx);
            })?;
        Ok(Sender { stop, done, thread })
    }

    /// Stops the thread, waiting up to `timeout` for a call to the network to return;
    /// beyond, the thread is left to end by itself. True when it ended.
    pub fn stop(self, timeout: Duration) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        if std::thread::current().id() == self.thread.thread().id() {
            // Stopped by its own observer (the owner dropped there): it ends on return.
            return false;
        }
        match self.done.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Disconnected) | Ok(()) => {
                let _ = self.thread.join();
                true
            }
            Err(mpsc::RecvTimeoutError::Timeout) => false,
        }
    }
}

/// A message sent and not yet confirmed.
struct Sent {
    seq: u64,
    at: Instant,
    confirmed: bool,
}

struct Delivery {
    spool: Arc<Spool>,
    reader: super::spool::Reader,
    destination: Destination,
    observer: Observer,
    stop: Arc<AtomicBool>,
    backoff: Duration,
    /// An outage was reported and has not ended.
    down: bool,
    /// Delivering was reported since the start or the last outage.
    delivering: bool,
    /// The spool read error last reported, until a read succeeds.
    read_error: Option<String>,
    upkeep: Upkeep,
}

impl Delivery {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(mut self) {
        while !self.stopped() {
            let result = self.destination.connect().and_then(|link| {
                self.reader.rewind(&self.spool);
                self.session(link)
            });
            if let Err(error) = result {
                self.delivering = false;
                if !self.down {
                    self.down = true;
                    (self.observer)(Event::Unreachable {
                        error,
                        waiting: self.spool.counts().waiting,
                    });
                }
                self.pause(self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        self.upkeep.report(&*self.observer, self.spool.sync());
    }

    /// Waits `d` (or until stopped), keeping the spool synced.
    fn pause(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stopped() && Instant::now() < end {
            std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
            let _ = self.upkeep.tick(&self.spool, None, &*self.observer);
        }
    }

    /// The destination confirmed something: an outage, if any, is over.
    fn delivered(&mut self) {
        self.backoff = MIN_BACKOFF;
        self.down = false;
        if !self.delivering {
            self.delivering = true;
            (self.observer)(Event::Delivering {
                destination: self.destination.describe(),
                waiting: self.spool.counts().waiting,
            });
        }
    }

    /// Reports a read error: every damaged record (the reader passed it), an I/O error
    /// once while it lasts (the reader waits before it tries again).
    fn read_failed(&mut self, e: SpoolError) {
        if let SpoolError::Damaged { .. } = e {
            (self.observer)(Event::Spool(e));
            return;
        }
        let text = e.to_string();
        if self.read_error.as_deref() != Some(text.as_str()) {
            self.read_error = Some(text);
            (self.observer)(Event::Spool(e));
        }
        std::thread::sleep(POLL);
    }

    /// Delivers until stopped or until the link fails.
    fn session(&mut self, mut link: Box<dyn Link>) -> Result<(), LinkError> {
        let mut sent: VecDeque<Sent> = VecDeque::new();
        let mut confirmed = Vec::new();
        while !self.stopped() {
            while sent.len() < link.window() {
                match self.reader.next(&self.spool) {
                    Ok(Some(record)) => {
                        self.read_error = None;
                        link.send(&record)?;
                        sent.push_back(Sent {
                            seq: record.seq,
                            at: Instant::now(),
                            confirmed: false,
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        self.read_failed(e);
                        break;
                    }
                }
            }
            let wait = if sent.is_empty() {
                self.spool.wait_appended(self.reader.position(), POLL);
                Duration::ZERO
            } else {
                POLL
            };
            link.poll(wait, &mut confirmed)?;
            for seq in confirmed.drain(..) {
                if let Some(s) = sent.iter_mut().find(|s| s.seq == seq) {
                    s.confirmed = true;
                }
            }
            let mut upto = None;
            while sent.front().is_some_and(|s| s.confirmed) {
                upto = sent.pop_front().map(|s| s.seq + 1);
            }
            if let Some(upto) = upto {
                self.spool.acknowledge(upto);
                self.delivered();
            }
            if let Some(s) = sent.front().filter(|s| s.at.elapsed() > CONFIRM_TIMEOUT) {
                return Err(LinkError::Unconfirmed {
                    destination: self.destination.describe(),
                    seq: s.seq,
                    waited: s.at.elapsed(),
                });
            }
            self.upkeep
                .tick(&self.spool, Some(&mut *link), &*self.observer)?;
        }
        Ok(())
    }
}

/// The periodic work: the watermark recorded, the spool synced.
struct Upkeep {
    last_ack: Instant,
    last_sync: Instant,
    /// The spool error last reported, until an operation succeeds.
    reported: Option<String>,
}

impl Upkeep {
    fn new() -> Upkeep {
        Upkeep {
            last_ack: Instant::now(),
            last_sync: Instant::now(),
            reported: None,
        }
    }

    fn tick(
        &mut self,
        spool: &Spool,
        link: Option<&mut dyn Link>,
        observer: &(dyn Fn(Event) + Send + Sync),
    ) -> Result<(), LinkError> {
        if self.last_ack.elapsed() >= ACK_PERIOD {
            self.last_ack = Instant::now();
            // What the destination confirmed is made durable there before the spool
            // forgets it.
            if let Some(link) = link {
                link.sync()?;
            }
            if self.last_sync.elapsed() >= SYNC_PERIOD {
                self.last_sync = Instant::now();
                self.report(observer, spool.sync());
            } else {
                self.report(observer, spool.persist_ack(false));
            }
        }
        Ok(())
    }

    /// Reports a spool error once, until an operation succeeds.
    fn report(&mut self, observer: &(dyn Fn(Event) + Send + Sync), result: Result<(), SpoolError>) {
        match result {
            Ok(()) => self.reported = None,
            Err(e) => {
                let text = e.to_string();
                if self.reported.as_deref() != Some(text.as_str()) {
                    self.reported = Some(text);
                    observer(Event::Spool(e));
                }
            }
        }
    }
}

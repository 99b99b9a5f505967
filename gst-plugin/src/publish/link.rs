//! A connection to a destination, as the sender drives it: messages go out in order,
//! confirmations come back (possibly later, and for MQTT possibly out of order).

use std::time::Duration;

use super::record::Record;

/// Why a destination did not take a message. The sender reconnects after a backoff and
/// sends again everything not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// It cannot be reached (connection refused or lost, timeout, TLS failure, I/O error).
    #[error("{destination} is unreachable: {reason}")]
    Unreachable { destination: String, reason: String },
    /// It answered, and refused (bad credentials, not authorised, an HTTP error status).
    #[error("{destination} refused: {reason}")]
    Refused { destination: String, reason: String },
    /// It took a message and never confirmed it.
    #[error("{destination} has not confirmed message {seq} for {waited:?}")]
    Unconfirmed {
        destination: String,
        seq: u64,
        waited: Duration,
    },
}

pub trait Link: Send {
    /// Most messages sent and not yet confirmed.
    fn window(&self) -> usize;

    /// Sends one message; [`poll`](Link::poll) reports when it is confirmed.
    fn send(&mut self, record: &Record) -> Result<(), LinkError>;

    /// Waits up to `timeout` for the destination, and pushes the sequence numbers it
    /// confirmed to `confirmed`. Returns early once something was confirmed.
    fn poll(&mut self, timeout: Duration, confirmed: &mut Vec<u64>) -> Result<(), LinkError>;

    /// Makes what was confirmed durable at the destination, before the spool forgets it.
    fn sync(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}

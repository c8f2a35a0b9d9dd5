//! The messages the daemon writes back on an ingest connection, one JSON
//! object per line, in the order of the lines they answer:
//!
//! ```json
//! {"line":17,"error":"unknown_kind","message":"unknown kind `scan`; the kinds are …"}
//! {"ack":1200,"accepted":1195,"rejected":2,"discarded":3}
//! ```
//!
//! An `ack` covers every line up to and including `ack` (lines count from
//! 1 on each connection, blank lines included); its counters are running
//! totals for the connection. Every error line comes before the ack that
//! covers its line. `accepted` lines are durable: records queued, or counts
//! folded into the committed KSN window.

use serde::{Deserialize, Serialize};

/// One line the daemon writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Reply {
    /// Every line up to `ack` is handled; running totals.
    Ack {
        ack: u64,
        accepted: u64,
        rejected: u64,
        discarded: u64,
    },
    /// Line `line` was rejected: nothing of it was kept.
    Error {
        line: u64,
        error: String,
        message: String,
    },
}

/// A line's error code for lines whose chunk could not be committed: the
/// client should send them again.
pub const NOT_STORED: &str = "not_stored";

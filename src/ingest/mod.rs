//! The ingest socket: how the product's components (scanner, updater,
//! installer, licensing) hand events to the agent.
//!
//! `runtime_dir/ingest.sock` is a Unix stream socket carrying newline-
//! delimited JSON, one event per line (`docs/ingest.md` is the long form).
//! Each connection reads in large chunks, parses every complete line of a
//! chunk (`event`), runs the records through the gate and folds KSN events
//! into a per-chunk delta, then hands the chunk to the store writer as one
//! job. The answer (`protocol::Reply`) comes back in order: per-line errors
//! first, then a cumulative acknowledgement sent only once the chunk's
//! records and aggregate delta are committed. A client holding an ack may
//! forget those lines; a `kill -9` right after loses none of them.
//!
//! Bad lines never break the connection, and never cost a valid neighbour.
//! Events whose purpose is not allowed now are counted per purpose
//! ([`Discards`]) and dropped at the door: they never reach the disk. This
//! module never decides consent (it asks the gate) and never sends anything
//! over the network.
//!
//! An `activation` event changes what may be sent (some purposes wait for
//! an activation by code), so its line ends its chunk: its own record is
//! gated knowing it, the store records it with the chunk, and the
//! connection then tells the consent owner ([`Activated`]) and waits until
//! the owner has published decisions that know it before it parses the
//! next line or acknowledges. It never publishes anything itself.

pub mod client;
mod connection;
pub mod event;
pub mod protocol;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::catalogue::ActivationMethod;
use crate::collect::CollectContext;
use crate::collect::ksn::KsnAggregate;
use crate::gate::Gate;
use crate::socket::{self, BindError};
use crate::store::Writer;

/// Longest line accepted: far above any real event (a few hundred bytes),
/// low enough that a broken client cannot make the agent buffer without
/// bound. A longer line is rejected (`too_long`) and skipped to its newline.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Bytes read from a connection at a time. Large reads amortise the parse
/// set-up and the writer round trip over thousands of lines.
const READ_BUFFER: usize = 256 * 1024;

/// Chunks of one connection waiting for their commit before the connection
/// stops reading (back-pressure on a client faster than the disk).
const MAX_IN_FLIGHT: usize = 8;

/// Events dropped at the door because their purpose was not allowed, per
/// purpose, since the daemon started. KSN events are added once per chunk;
/// other records one by one (a short lock, and only on the refusal path).
#[derive(Debug, Default)]
pub struct Discards(Mutex<BTreeMap<String, u64>>);

impl Discards {
    pub fn add(&self, purpose: &str, count: u64) {
        if count == 0 {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry(purpose.to_owned()).or_default() += count;
    }

    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What every ingest connection shares.
pub struct Ingest {
    pub gate: Arc<Gate>,
    pub context: CollectContext,
    pub writer: Writer<KsnAggregate>,
    pub discards: Arc<Discards>,
    /// The consent owner's inbox for activations the store has recorded.
    pub activations: mpsc::Sender<Activated>,
}

/// An activation the store has committed, for the consent owner, who
/// publishes decisions that know it (and, for a key file, deletes what
/// waited for an activation by code), then answers on `done`.
#[derive(Debug)]
pub struct Activated {
    pub method: ActivationMethod,
    pub done: oneshot::Sender<()>,
}

impl Ingest {
    /// Tells the consent owner of a committed activation and waits until
    /// it is in force (at once if the owner is gone: the daemon is
    /// stopping, and its next start reads the activation from the store).
    async fn activated(&self, method: ActivationMethod) {
        let (done, in_force) = oneshot::channel();
        if self
            .activations
            .send(Activated { method, done })
            .await
            .is_ok()
        {
            let _ = in_force.await;
        }
    }
}

/// Binds `ingest.sock` (see [`socket::bind`]; the control socket's binder
/// has already refused to displace a live daemon). Must be called inside a
/// tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    socket::bind(path)
}

/// Serves ingest connections until `shutdown`. Whoever may open the
/// socket (the daemon's user and group: its mode) may submit events; what
/// they submit is checked like anything else. A connection cut by shutdown
/// loses nothing acknowledged: unacknowledged lines are the client's to
/// resend.
pub async fn serve(listener: UnixListener, ingest: Arc<Ingest>, shutdown: CancellationToken) {
    socket::serve(listener, "ingest", shutdown, move |stream| {
        let ingest = Arc::clone(&ingest);
        async move {
            if let Ok(peer) = socket::Peer::of(&stream) {
                tracing::debug!(uid = peer.uid, pid = ?peer.pid, "ingest connection");
            }
            connection::handle(stream, ingest).await
        }
    })
    .await;
}

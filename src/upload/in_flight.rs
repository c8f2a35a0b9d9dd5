//! The batches being sent right now, and how a withdrawal stops them before
//! the CLI's revoke returns.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

/// The batches being sent right now (at most two, both on the wire:
/// `sender::window`), so that a withdrawal can stop them: the control handler
/// publishes the new consent, then cancels each batch in flight that
/// carries a purpose it no longer allows, and waits until the uploader has
/// let go of them. The uploader registers a batch *before* its last look
/// at the consent snapshot, so either the handler sees the batch or the
/// uploader sees the new consent: never neither. A delivered batch stays
/// registered until its removal from the queue commits, so a purge never
/// takes it for one still queued.
#[derive(Default)]
pub struct InFlight {
    batches: std::sync::Mutex<Batches>,
    released: tokio::sync::Notify,
}

#[derive(Default)]
struct Batches {
    next_id: u64,
    entries: Vec<Entry>,
}

struct Entry {
    id: u64,
    purposes: Vec<String>,
    token: CancellationToken,
}

/// One batch's place in [`InFlight`], from [`InFlight::start`] until it is
/// dropped: every way out of sending a batch (an answer, an error, the
/// upload abandoned at shutdown) lets go of it.
pub(super) struct Registration {
    id: u64,
    /// Cancelled when a withdrawal stops the batch.
    token: CancellationToken,
    in_flight: Arc<InFlight>,
}

impl Registration {
    /// Cancelled when a withdrawal stops the batch.
    pub(super) fn token(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.in_flight.lock().entries.retain(|e| e.id != self.id);
        self.in_flight.released.notify_waiters();
    }
}

impl InFlight {
    /// Registers a batch carrying `purposes`, until the registration is
    /// dropped.
    pub(super) fn start(self: &Arc<Self>, purposes: Vec<String>) -> Registration {
        let token = CancellationToken::new();
        let mut batches = self.lock();
        batches.next_id += 1;
        let id = batches.next_id;
        batches.entries.push(Entry {
            id,
            purposes,
            token: token.clone(),
        });
        Registration {
            id,
            token,
            in_flight: Arc::clone(self),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batches> {
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels each batch in flight that carries a purpose `still_allowed`
    /// refuses, and returns once the uploader has let go of all of them.
    /// Returns whether a batch was stopped.
    pub async fn stop_unless(&self, still_allowed: impl Fn(&str) -> bool) -> bool {
        let stopped: Vec<u64> = self
            .lock()
            .entries
            .iter()
            .filter(|e| !e.purposes.iter().all(|p| still_allowed(p)))
            .map(|e| {
                e.token.cancel();
                e.id
            })
            .collect();
        if stopped.is_empty() {
            return false;
        }
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.lock().entries.iter().any(|e| stopped.contains(&e.id)) {
                return true;
            }
            released.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    /// Polls `future` once: its output, if it is done.
    fn done<F: Future>(future: std::pin::Pin<&mut F>) -> Option<F::Output> {
        let mut context = Context::from_waker(Waker::noop());
        match future.poll(&mut context) {
            Poll::Ready(output) => Some(output),
            Poll::Pending => None,
        }
    }

    #[test]
    fn a_withdrawal_stops_every_batch_that_carries_it_and_waits_for_each() {
        let in_flight = Arc::new(InFlight::default());
        let delivered = in_flight.start(vec!["a".into()]);
        let next = in_flight.start(vec!["a".into(), "b".into()]);
        let other = in_flight.start(vec!["b".into()]);
        let stop = in_flight.stop_unless(|p| p != "a");
        tokio::pin!(stop);
        assert_eq!(done(stop.as_mut()), None, "two stopped batches are held");
        assert!(delivered.token().is_cancelled() && next.token().is_cancelled());
        assert!(
            !other.token().is_cancelled(),
            "it carries no withdrawn purpose"
        );
        drop(delivered);
        assert_eq!(done(stop.as_mut()), None, "one stopped batch is still held");
        drop(next);
        assert_eq!(done(stop.as_mut()), Some(true), "both were let go");
        let again = in_flight.stop_unless(|p| p != "a");
        tokio::pin!(again);
        assert_eq!(done(again.as_mut()), Some(false), "none left to stop");
        assert_eq!(in_flight.lock().entries.len(), 1);
        drop(other);
        assert!(in_flight.lock().entries.is_empty());
    }
}

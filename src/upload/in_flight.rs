//! The batch being sent right now, and how a withdrawal stops it before the
//! CLI's revoke returns.

use tokio_util::sync::CancellationToken;

/// The batch being sent right now, so that a withdrawal can stop it: the
/// control handler publishes the new consent, then cancels an in-flight
/// batch that carries a purpose it no longer allows, and waits until the
/// uploader has let go of it. The uploader registers a batch *before* its
/// last look at the consent snapshot, so either the handler sees the batch
/// or the uploader sees the new consent: never neither.
#[derive(Default)]
pub struct InFlight {
    batch: std::sync::Mutex<Option<(Vec<String>, CancellationToken)>>,
    released: tokio::sync::Notify,
}

impl InFlight {
    pub(super) fn start(&self, purposes: Vec<String>) -> CancellationToken {
        let token = CancellationToken::new();
        *self.lock() = Some((purposes, token.clone()));
        token
    }

    pub(super) fn finish(&self) {
        *self.lock() = None;
        self.released.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Vec<String>, CancellationToken)>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels the batch in flight if it carries a purpose `still_allowed`
    /// refuses, and returns once the uploader has let go of it. Returns
    /// whether a batch was stopped.
    pub async fn stop_unless(&self, still_allowed: impl Fn(&str) -> bool) -> bool {
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        {
            let batch = self.lock();
            let Some((purposes, token)) = batch.as_ref() else {
                return false;
            };
            if purposes.iter().all(|p| still_allowed(p)) {
                return false;
            }
            token.cancel();
        }
        released.await;
        true
    }
}

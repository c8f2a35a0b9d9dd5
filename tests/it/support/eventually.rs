//! Waiting for something to happen, instead of sleeping and hoping it has.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// How often a probe runs again.
const EVERY: Duration = Duration::from_millis(50);

/// Runs `probe` every 50 ms until it returns `Ok`, and returns what it
/// found. A probe that is not there yet returns `Err` with what it saw
/// instead; after `patience` the test fails with `what` (worded to follow
/// "never": "emptied the queue") and that last observation.
pub async fn eventually<T, E: Display>(
    what: &str,
    patience: Duration,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    match within(patience, probe).await {
        Ok(found) => found,
        Err(seen) => panic!("never {what} within {patience:?}; last seen: {seen}"),
    }
}

/// [`eventually`] for a test with more to say when it fails (a daemon's
/// log, say): the probe's last `Err` after `patience`, instead of a panic.
pub async fn within<T, E>(
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = Instant::now() + patience;
    loop {
        match probe().await {
            Ok(found) => return Ok(found),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}

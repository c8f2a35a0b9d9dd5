//! Waiting for something to happen, instead of sleeping and hoping it has.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::Instant;

/// How often [`eventually`] looks again.
const EVERY: Duration = Duration::from_millis(50);

/// Runs `probe` every 50 ms until it returns `Ok`, and returns what it
/// found. A probe that is not there yet returns `Err` with what it saw
/// instead; after `patience` the test fails with `what` (worded to follow
/// "never": "emptied the queue") and that last observation.
pub async fn eventually<T, E: Display>(
    what: &str,
    patience: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + patience;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) if Instant::now() >= deadline => {
                panic!("never {what} within {patience:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(EVERY).await,
        }
    }
}

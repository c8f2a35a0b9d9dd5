//! `state_dir/send.lock`: one sender per state directory (the daemon, or a
//! `flush` when no daemon runs).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::StoreError;

/// The file lock that makes one process at a time the sender for a
/// `state_dir` (the daemon, or a `flush` when no daemon runs).
pub struct SendLock {
    file: Arc<File>,
    path: PathBuf,
}

/// The words for an upload skipped because another process is sending.
pub const ANOTHER_SENDER: &str = "another consentry process is sending from this state directory";

impl SendLock {
    /// Opens (creating) `state_dir/send.lock`; takes nothing yet.
    pub fn open(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join("send.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::StateDir {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            file: Arc::new(file),
            path,
        })
    }

    /// Takes the lock if nobody holds it; it is let go when the guard
    /// drops.
    pub(super) fn try_hold(&self) -> Result<Option<SendGuard>, StoreError> {
        match self.file.try_lock() {
            Ok(()) => Ok(Some(SendGuard(Arc::clone(&self.file)))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(source)) => Err(StoreError::StateDir {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// [`SendLock::try_hold`], trying again for up to `patience` while
    /// another process holds it (an explicit flush waits for a sender that
    /// is about to finish rather than report it).
    pub(super) async fn hold_within(
        &self,
        patience: std::time::Duration,
    ) -> Result<Option<SendGuard>, StoreError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(guard) = self.try_hold()? {
                return Ok(Some(guard));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

pub(super) struct SendGuard(Arc<File>);

impl Drop for SendGuard {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

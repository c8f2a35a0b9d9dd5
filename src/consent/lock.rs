//! The consent file's lock, `.NAME.lock` beside the file it guards (beside
//! the file a symbolic link names, since that is the file replaced).
//!
//! A command that changes the consent file holds it exclusively from
//! before it reads the file until its act is recorded, so two commands do
//! not overwrite each other's change, and the daemon never reads a
//! command's change before the command has declared it: the daemon's own
//! looks (a file watch event, SIGHUP) take it shared first and, while a
//! command holds it, leave the recording to the command's notice. The
//! daemon only needs to read the lock file: a service whose configuration
//! directory is read-only can still take a shared lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::ConsentError;

/// A held lock; let go when dropped (or when the process dies).
#[derive(Debug)]
pub struct ConsentLock {
    _file: Option<File>,
}

/// The lock file of the consent file at `consent_file`.
pub fn lock_path(consent_file: &Path) -> PathBuf {
    let target = super::file::resolve_links(consent_file).unwrap_or_else(|_| consent_file.into());
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "consent".into());
    target.with_file_name(format!(".{name}.lock"))
}

impl ConsentLock {
    /// Takes the lock exclusively, creating its file, waiting for another
    /// command that holds it.
    pub fn exclusive(consent_file: &Path) -> Result<Self, ConsentError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = lock_path(consent_file);
        let wrap = |source| ConsentError::Write {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(&path)
            .map_err(wrap)?;
        file.lock().map_err(wrap)?;
        Ok(Self { _file: Some(file) })
    }

    /// Takes the lock shared if no command holds it (`None`: one does).
    /// No lock file (no command ever ran) or one that cannot be opened is
    /// no command at work: the read goes ahead.
    pub fn try_shared(consent_file: &Path) -> Option<Self> {
        let Ok(file) = File::open(lock_path(consent_file)) else {
            return Some(Self { _file: None });
        };
        match file.try_lock_shared() {
            Ok(()) => Some(Self { _file: Some(file) }),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Error(_)) => Some(Self { _file: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_holding_the_lock_keeps_the_daemons_look_out() {
        let dir = tempfile::tempdir().unwrap();
        let consent = dir.path().join("consent.toml");
        assert!(
            ConsentLock::try_shared(&consent).is_some(),
            "no lock file yet"
        );
        let held = ConsentLock::exclusive(&consent).unwrap();
        assert!(dir.path().join(".consent.toml.lock").is_file());
        assert!(ConsentLock::try_shared(&consent).is_none());
        drop(held);
        let shared = ConsentLock::try_shared(&consent);
        assert!(shared.is_some());
        // Through a symbolic link, the lock is beside the real file.
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(real.join("consent.toml"), &link).unwrap();
        assert_eq!(lock_path(&link), real.join(".consent.toml.lock"));
    }
}

//! One daemon per `state_dir`: `state_dir/daemon.lock`, held exclusively
//! for the daemon's whole life, with its pid written in for whoever finds
//! it taken. (The CLI's own short-lived users of the store take
//! `store.lock` and `send.lock` instead, so a `flush` with no daemon
//! running still works.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside `state_dir`.
pub const DAEMON_LOCK: &str = "daemon.lock";

/// Why this daemon may not run.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another consentry daemon{} already runs on state_dir {state_dir}; stop it first, or give this one its own state_dir",
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    Running {
        state_dir: PathBuf,
        pid: Option<u32>,
    },
    #[error("cannot take the daemon lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Instance {
    _file: File,
}

impl Instance {
    /// Takes the lock of `state_dir` (which must exist), or says who holds
    /// it.
    pub fn acquire(state_dir: &Path) -> Result<Self, InstanceError> {
        let path = state_dir.join(DAEMON_LOCK);
        let io = |source| InstanceError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(InstanceError::Running {
                    state_dir: state_dir.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(err)) => return Err(io(err)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::acquire(dir.path()).unwrap();
        let err = Instance::acquire(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        Instance::acquire(dir.path()).unwrap();
    }
}

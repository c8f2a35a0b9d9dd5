//! One writer per `state_dir`: `state_dir/daemon.lock`, held exclusively
//! by the daemon for its whole life, or by a command that writes the store
//! while no daemon runs (`flush`, a consent change), with the holder's pid
//! and role written in for whoever finds it taken. A daemon finds a
//! command's hold and waits for it (commands are short); a command finds a
//! daemon's hold and asks the daemon instead (over the control socket,
//! once it answers); a second daemon is refused. (`store.lock` and
//! `send.lock` remain for what they guard: opening and sending.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The lock file's name inside `state_dir`.
pub const DAEMON_LOCK: &str = "daemon.lock";

/// How long a starting daemon waits for a command that writes the store.
pub const COMMAND_PATIENCE: Duration = Duration::from_secs(60);

/// Who holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Daemon,
    Command,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Daemon => "daemon",
            Role::Command => "command",
        }
    }
}

/// Why this process may not write the store now.
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
    #[error(
        "a consentry command{} has been using state_dir {state_dir} for longer than {waited:?}; let it finish, or stop it",
        match pid { Some(pid) => format!(" (pid {pid})"), None => String::new() }
    )]
    Busy {
        state_dir: PathBuf,
        pid: Option<u32>,
        waited: Duration,
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
    /// Takes the lock of `state_dir` (which must exist) as `role`: a daemon
    /// waits up to [`COMMAND_PATIENCE`] for a command holding it; anyone
    /// finding a daemon there is refused with [`InstanceError::Running`].
    pub fn acquire(state_dir: &Path, role: Role) -> Result<Self, InstanceError> {
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
        let started = Instant::now();
        let mut logged = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(err)) => return Err(io(err)),
            }
            let (pid, holder) = holder(&mut file);
            let state_dir = state_dir.to_path_buf();
            if holder == Some(Role::Daemon) || holder.is_none() && role == Role::Command {
                return Err(InstanceError::Running { state_dir, pid });
            }
            if role == Role::Command {
                return Err(InstanceError::Busy {
                    state_dir,
                    pid,
                    waited: Duration::ZERO,
                });
            }
            if started.elapsed() >= COMMAND_PATIENCE {
                let waited = COMMAND_PATIENCE;
                return Err(InstanceError::Busy {
                    state_dir,
                    pid,
                    waited,
                });
            }
            if !logged {
                tracing::info!(
                    pid,
                    "waiting for a consentry command that is using the state directory"
                );
                logged = true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{} {}", std::process::id(), role.as_str()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// The pid and role written in a held lock file (a file from before roles
/// were written holds a pid alone: a daemon's).
fn holder(file: &mut File) -> (Option<u32>, Option<Role>) {
    let mut text = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut text);
    let mut words = text.split_whitespace();
    let pid = words.next().and_then(|w| w.parse().ok());
    let role = match words.next() {
        Some("command") => Some(Role::Command),
        Some(_) => Some(Role::Daemon),
        None if pid.is_some() => Some(Role::Daemon),
        None => None,
    };
    (pid, role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = Instance::acquire(dir.path(), Role::Daemon).unwrap();
        let err = Instance::acquire(dir.path(), Role::Daemon).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        // A command finds the daemon too, and asks it instead.
        let err = Instance::acquire(dir.path(), Role::Command).unwrap_err();
        assert!(matches!(err, InstanceError::Running { .. }), "{err}");
        drop(first);
        Instance::acquire(dir.path(), Role::Daemon).unwrap();
    }

    #[test]
    fn a_daemon_waits_for_a_command_and_a_command_does_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let command = Instance::acquire(dir.path(), Role::Command).unwrap();
        let err = Instance::acquire(dir.path(), Role::Command).unwrap_err();
        assert!(matches!(err, InstanceError::Busy { .. }), "{err}");
        let path = dir.path().to_path_buf();
        let daemon = std::thread::spawn(move || Instance::acquire(&path, Role::Daemon));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!daemon.is_finished(), "the daemon waits for the command");
        drop(command);
        daemon.join().unwrap().unwrap();
    }
}

//! Who owns the agent's directories, and with what modes: `state_dir`
//! (0700: the queue, the installation id) and `runtime_dir` (0750: the
//! sockets, reachable by the daemon's group).
//!
//! A directory is created with its mode, or, when it exists, checked: it
//! must be a real directory (not a symlink) owned by this user (or by root
//! when this user is root), and any permission beyond the wanted mode is
//! taken away (a `state_dir` made 0755 by hand, a `runtime_dir` of 1777).
//! One owned by someone else is refused, never used as it is: another user
//! could have planted files in it, or could read what is put there.
//!
//! A leaf module: it imports nothing from the crate.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PermsError {
    #[error(
        "{path} is owned by uid {owner}, not by this user (uid {me}); another user's directory is never used: chown it to uid {me}, or choose another directory"
    )]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} is not a directory{}", if *.symlink { " (it is a symbolic link, which is not followed)" } else { "" })]
    NotADirectory { path: PathBuf, symlink: bool },
    #[error("cannot use directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What [`ensure_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    /// It was fine as it was.
    Kept,
    /// Its mode was looser than wanted (the old mode) and was tightened.
    Tightened {
        from: u32,
    },
}

/// What to do about an existing directory, from its owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Keep,
    Tighten,
    Refuse,
}

/// The decision, apart from the file system: an owner other than `me` (or
/// root, when `me` is root) is refused; permissions beyond `wanted` are
/// taken away.
fn judge(owner: u32, mode: u32, me: u32, wanted: u32) -> Verdict {
    if owner != me {
        return Verdict::Refuse;
    }
    if mode & 0o7777 & !wanted != 0 {
        Verdict::Tighten
    } else {
        Verdict::Keep
    }
}

/// Creates `path` with `mode` (its missing parents with the usual 0755),
/// or checks and tightens an existing one (see the module).
pub fn ensure_dir(path: &Path, mode: u32) -> Result<Outcome, PermsError> {
    let io = |source| PermsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let created = match std::fs::symlink_metadata(path) {
        Ok(_) => false,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(mode).create(path) {
                Ok(()) => true,
                // Someone made it meanwhile: check it like any other.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(err) => return Err(io(err)),
            }
        }
        Err(err) => return Err(io(err)),
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if !meta.is_dir() {
        return Err(PermsError::NotADirectory {
            path: path.to_path_buf(),
            symlink: meta.file_type().is_symlink(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    match judge(meta.uid(), meta.mode(), me, mode) {
        Verdict::Refuse => Err(PermsError::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        }),
        // The umask may have narrowed a new directory; never widened it.
        Verdict::Keep if created => Ok(Outcome::Created),
        Verdict::Keep => Ok(Outcome::Kept),
        Verdict::Tighten => {
            let kept = meta.mode() & 0o7777 & mode;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(kept)).map_err(io)?;
            if created {
                Ok(Outcome::Created)
            } else {
                Ok(Outcome::Tightened {
                    from: meta.mode() & 0o7777,
                })
            }
        }
    }
}

/// [`ensure_dir`], logging a tightened mode.
pub fn ensure_dir_logged(path: &Path, mode: u32, what: &str) -> Result<(), PermsError> {
    if let Outcome::Tightened { from } = ensure_dir(path, mode)? {
        tracing::warn!(
            path = %path.display(),
            from = format!("{from:04o}"),
            to = format!("{mode:04o}"),
            "{what} was open to others; its mode was tightened"
        );
    }
    Ok(())
}

/// Gives `path` exactly `mode` if it exists (a database, its WAL, the
/// consent file): files this agent writes are never readable by others.
pub fn restrict_file(path: &Path, mode: u32) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() && meta.mode() & 0o7777 != mode => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_users_directory_is_refused_and_a_loose_one_tightened() {
        assert_eq!(judge(1000, 0o40700, 1000, 0o700), Verdict::Keep);
        assert_eq!(judge(1000, 0o40755, 1000, 0o700), Verdict::Tighten);
        assert_eq!(judge(0, 0o41777, 0, 0o750), Verdict::Tighten);
        assert_eq!(judge(1000, 0o40750, 1000, 0o750), Verdict::Keep);
        assert_eq!(judge(1000, 0o40700, 0, 0o700), Verdict::Refuse);
        assert_eq!(judge(0, 0o40700, 1000, 0o700), Verdict::Refuse);
    }

    #[test]
    fn directories_are_created_checked_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b/state");
        assert_eq!(ensure_dir(&state, 0o700).unwrap(), Outcome::Created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(ensure_dir(&state, 0o700).unwrap(), Outcome::Kept);

        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            ensure_dir(&state, 0o750).unwrap(),
            Outcome::Tightened { from: 0o1777 }
        );
        assert_eq!(mode(&state), 0o750);

        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            ensure_dir(&file, 0o700),
            Err(PermsError::NotADirectory { symlink: false, .. })
        ));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert!(matches!(
            ensure_dir(&link, 0o700),
            Err(PermsError::NotADirectory { symlink: true, .. })
        ));
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: changing a directory's owner needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = ensure_dir(&theirs, 0o700).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }

    #[test]
    fn files_get_exactly_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("db");
        std::fs::write(&file, "").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        restrict_file(&file, 0o600).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
        restrict_file(&dir.path().join("missing"), 0o600).unwrap();
    }
}

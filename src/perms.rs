//! Which directories are the agent's own, and with what modes: `state_dir`
//! (0700: the queue, the installation id) and `runtime_dir` (0750: the
//! sockets, reachable by the daemon's group).
//!
//! The agent changes only what is its own. A directory is its own when
//! the agent creates it, or when it exists, belongs to this user, is not
//! shared, and holds nothing but the agent's own files (an empty one
//! included); the agent then leaves its marker ([`MARKER`]) in it. Any
//! other directory is refused, untouched, with an error that names the
//! path and what to do:
//!
//! - an empty path, or the root directory;
//! - a symbolic link, or something other than a directory;
//! - a directory of another user (who could read what is put there, or
//!   plant files in it);
//! - a shared directory: sticky or writable by everyone (`/tmp`, a 1777
//!   runtime directory), whoever owns it;
//! - a directory holding any file that is not the agent's (`/`, `/etc`,
//!   a home directory): nothing of anyone else's is ever chmodded, and
//!   no file of the agent's is ever dropped among someone else's;
//! - a directory this user cannot write (a read-only mount).
//!
//! Only then are permissions beyond the wanted mode taken away (a
//! `state_dir` made 0755 by systemd or by hand). [`assess`] decides
//! without changing anything (the preflight, `consentry check`);
//! [`ensure_dir`] decides the same way and then acts.
//!
//! A leaf module: it imports nothing from the crate.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The file that marks a directory as the agent's own.
pub const MARKER: &str = ".consentry";

/// Every name the agent itself puts in its directories (`state_dir`: the
/// database and its companions, the locks, `quarantine/`; `runtime_dir`:
/// the two sockets), and `lost+found`, which a file system made for a
/// dedicated partition holds. A directory holding anything else is not
/// the agent's own. `store::tests` checks the store's names are here.
pub const OWN_NAMES: &[&str] = &[
    MARKER,
    "consentry.sqlite3",
    "consentry.sqlite3-wal",
    "consentry.sqlite3-shm",
    "consentry.sqlite3-journal",
    "store.lock",
    "store.created",
    "send.lock",
    "daemon.lock",
    "quarantine",
    "control.sock",
    "ingest.sock",
    "lost+found",
];

/// What the marker says to whoever finds it.
const MARKER_TEXT: &str = "This directory belongs to consentry. Put nothing else in it: \
consentry refuses to use a directory that holds files not its own.\n";

/// Which of the agent's directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentDir {
    State,
    Runtime,
}

impl AgentDir {
    /// Its key in the config.
    pub fn key(self) -> &'static str {
        match self {
            AgentDir::State => "state_dir",
            AgentDir::Runtime => "runtime_dir",
        }
    }

    /// The mode it is given: the queue is nobody else's; the sockets are
    /// reachable by the daemon's group.
    pub const fn mode(self) -> u32 {
        match self {
            AgentDir::State => 0o700,
            AgentDir::Runtime => 0o750,
        }
    }

    /// Where the packaged service keeps it.
    fn example(self) -> &'static str {
        match self {
            AgentDir::State => "/var/lib/consentry",
            AgentDir::Runtime => "/run/consentry",
        }
    }
}

/// Why a directory cannot be used. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PermsError {
    #[error("{key} is empty: give the directory of its own the agent should use, such as {example}", key = .dir.key(), example = .dir.example())]
    Empty { dir: AgentDir },
    #[error("{key} {path} is the root directory: point {key} at a directory of its own, such as {example}", key = .dir.key(), path = .path.display(), example = .dir.example())]
    Root { dir: AgentDir, path: PathBuf },
    #[error(
        "{key} {path} is owned by uid {owner}, not by this user (uid {me}); another user's directory is never used: chown it to uid {me}, or choose another directory",
        key = .dir.key(), path = .path.display()
    )]
    ForeignOwner {
        dir: AgentDir,
        path: PathBuf,
        owner: u32,
        me: u32,
    },
    #[error("{key} {path} is not a directory{}", if *.symlink { " (it is a symbolic link, which is not followed)" } else { "" }, key = .dir.key(), path = .path.display())]
    NotADirectory {
        dir: AgentDir,
        path: PathBuf,
        symlink: bool,
    },
    #[error(
        "{key} {path} is a shared directory (mode {mode:04o}{}): point {key} at a directory of its own, such as {example}",
        foreign_files(*.foreign), key = .dir.key(), path = .path.display(), example = .dir.example()
    )]
    Shared {
        dir: AgentDir,
        path: PathBuf,
        mode: u32,
        foreign: Foreign,
    },
    #[error(
        "{key} {path} holds files that are not consentry's ({}, e.g. `{example_name}`): point {key} at a directory of its own, such as {example}, or empty this one",
        foreign_count(*.foreign), key = .dir.key(), path = .path.display(), example = .dir.example()
    )]
    NotOurs {
        dir: AgentDir,
        path: PathBuf,
        foreign: Foreign,
        example_name: String,
    },
    #[error("{key} {path} is not writable by this user: {source}", key = .dir.key(), path = .path.display())]
    NotWritable {
        dir: AgentDir,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot use {key} {path}: {source}", key = .dir.key(), path = .path.display())]
    Io {
        dir: AgentDir,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How many entries of a directory are not the agent's: the first
/// [`Foreign::COUNTED`] are counted, then "at least".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Foreign {
    pub count: usize,
    pub more: bool,
}

impl Foreign {
    /// Enough to say how bad it is without listing `/usr/lib`.
    const COUNTED: usize = 1000;
}

fn foreign_count(foreign: Foreign) -> String {
    let plural = if foreign.count == 1 { "" } else { "s" };
    let least = if foreign.more { "at least " } else { "" };
    format!("{least}{} file{plural} not ours", foreign.count)
}

fn foreign_files(foreign: Foreign) -> String {
    if foreign.count == 0 {
        String::new()
    } else {
        format!(", {}", foreign_count(foreign))
    }
}

/// What using a directory takes, as [`assess`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// It does not exist: it is created with its mode.
    Create,
    /// It is the agent's and its mode is right; `marked` tells whether
    /// the marker is there already (else it is added).
    Keep { marked: bool },
    /// It is the agent's but open to others beyond its mode (`from`):
    /// the extra permissions are taken away.
    Tighten { from: u32, marked: bool },
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

/// Decides, changing nothing, whether `path` can be `dir` and what using
/// it would take (see the module for the rules).
pub fn assess(path: &Path, dir: AgentDir) -> Result<Plan, PermsError> {
    if path.as_os_str().is_empty() {
        return Err(PermsError::Empty { dir });
    }
    let owned = || path.to_path_buf();
    if path.parent().is_none() || path.components().all(is_root_like) {
        return Err(PermsError::Root { dir, path: owned() });
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Plan::Create),
        Err(source) => {
            return Err(PermsError::Io {
                dir,
                path: owned(),
                source,
            });
        }
    };
    if !meta.is_dir() {
        return Err(PermsError::NotADirectory {
            dir,
            path: owned(),
            symlink: meta.file_type().is_symlink(),
        });
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PermsError::ForeignOwner {
            dir,
            path: owned(),
            owner: meta.uid(),
            me,
        });
    }
    let contents = Contents::read(path, me).map_err(|source| PermsError::Io {
        dir,
        path: owned(),
        source,
    })?;
    let mode = meta.mode() & 0o7777;
    if is_shared(mode) {
        return Err(PermsError::Shared {
            dir,
            path: owned(),
            mode,
            foreign: contents.foreign,
        });
    }
    if let Some(example_name) = contents.example {
        return Err(PermsError::NotOurs {
            dir,
            path: owned(),
            foreign: contents.foreign,
            example_name,
        });
    }
    writable(path).map_err(|source| PermsError::NotWritable {
        dir,
        path: owned(),
        source,
    })?;
    let marked = contents.marked;
    Ok(if mode & !dir.mode() != 0 {
        Plan::Tighten { from: mode, marked }
    } else {
        Plan::Keep { marked }
    })
}

/// `/`, `/.`, `/..`: names of the root directory.
fn is_root_like(component: std::path::Component<'_>) -> bool {
    use std::path::Component;
    matches!(
        component,
        Component::RootDir | Component::CurDir | Component::ParentDir
    )
}

/// Sticky, or writable by everyone: a directory made for sharing.
fn is_shared(mode: u32) -> bool {
    mode & 0o1000 != 0 || mode & 0o002 != 0
}

/// Whether this user may create files in `path` (a read-only mount says
/// no even to root).
fn writable(path: &Path) -> std::io::Result<()> {
    use rustix::fs::Access;
    rustix::fs::access(path, Access::WRITE_OK | Access::EXEC_OK).map_err(std::io::Error::from)
}

/// What a directory holds, as far as ownership goes.
struct Contents {
    foreign: Foreign,
    /// One entry that is not the agent's, for the message.
    example: Option<String>,
    marked: bool,
}

impl Contents {
    /// Reads `path` as seen by uid `me`.
    fn read(path: &Path, me: u32) -> std::io::Result<Self> {
        let mut contents = Contents {
            foreign: Foreign {
                count: 0,
                more: false,
            },
            example: None,
            marked: false,
        };
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name();
            // One of our names as a symbolic link, or owned by another
            // user, was planted, not made by us: following it would write
            // somewhere else; trusting it would talk to someone else.
            let ours = name.to_str().is_some_and(|n| OWN_NAMES.contains(&n)) && {
                match std::fs::symlink_metadata(entry.path()) {
                    Ok(meta) => !meta.file_type().is_symlink() && meta.uid() == me,
                    // Gone meanwhile (a socket removed at shutdown).
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(err),
                }
            };
            if ours {
                contents.marked |= name == MARKER;
                continue;
            }
            if contents.foreign.count == Foreign::COUNTED {
                contents.foreign.more = true;
                break;
            }
            contents.foreign.count += 1;
            contents
                .example
                .get_or_insert_with(|| name.to_string_lossy().into_owned());
        }
        Ok(contents)
    }
}

/// Creates `path` as `dir` (its missing parents with the usual 0755), or
/// checks an existing one and, when it is the agent's own, tightens its
/// mode; marks it either way (see the module).
pub fn ensure_dir(path: &Path, dir: AgentDir) -> Result<Outcome, PermsError> {
    let io = |source| PermsError::Io {
        dir,
        path: path.to_path_buf(),
        source,
    };
    let outcome = match assess(path, dir)? {
        Plan::Create => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            match std::fs::DirBuilder::new().mode(dir.mode()).create(path) {
                // The umask may have narrowed it; never widened it.
                Ok(()) => Outcome::Created,
                // Someone made it meanwhile: judge it like any other.
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    return ensure_existing(path, dir);
                }
                Err(err) => return Err(io(err)),
            }
        }
        _ => return ensure_existing(path, dir),
    };
    mark(path).map_err(io)?;
    Ok(outcome)
}

/// [`ensure_dir`] for a directory that exists.
fn ensure_existing(path: &Path, dir: AgentDir) -> Result<Outcome, PermsError> {
    let io = |source| PermsError::Io {
        dir,
        path: path.to_path_buf(),
        source,
    };
    let (outcome, marked) = match assess(path, dir)? {
        Plan::Create => {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "it was removed while being checked",
            )));
        }
        Plan::Keep { marked } => (Outcome::Kept, marked),
        Plan::Tighten { from, marked } => {
            let kept = from & dir.mode();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(kept)).map_err(io)?;
            (Outcome::Tightened { from }, marked)
        }
    };
    if !marked {
        mark(path).map_err(io)?;
    }
    Ok(outcome)
}

/// Leaves the marker in `path` (never following a link, never replacing
/// one that is there).
fn mark(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let opened = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path.join(MARKER));
    match opened {
        Ok(mut file) => file.write_all(MARKER_TEXT.as_bytes()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

/// [`ensure_dir`], logging a tightened mode.
pub fn ensure_dir_logged(path: &Path, dir: AgentDir) -> Result<(), PermsError> {
    if let Outcome::Tightened { from } = ensure_dir(path, dir)? {
        tracing::warn!(
            path = %path.display(),
            from = format!("{from:04o}"),
            to = format!("{:04o}", from & dir.mode()),
            "{} was open to others; its mode was tightened",
            dir.key()
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
mod tests;

//! The start-up preflight: everything the daemon checks before it starts,
//! in one place, so that `consentry check` runs exactly the same checks and
//! passes only what the daemon would accept.
//!
//! The config itself was validated when it loaded (keys, types, values,
//! each at its line and column). This adds what needs the machine: the
//! catalogue and the policy file load, the `[upload]` files (CA,
//! certificate, token) are usable, the admin group exists, `state_dir` can
//! hold a database (not a pseudo file system like /proc, not another
//! user's), and `runtime_dir` can hold the sockets (a directory, with paths
//! short enough for a Unix socket). Nothing is created or changed here.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::consent::Policy;
use crate::upload::Transport;

/// The longest path a Unix socket can have (`sun_path` is 108 bytes,
/// ending in a NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// What the preflight found.
#[derive(Debug)]
pub struct Preflight {
    pub catalogue: Catalogue,
    /// The HTTPS client the daemon would send with.
    pub transport: Transport,
    /// Whether `state_dir` exists already (else the daemon creates it).
    pub state_dir_exists: bool,
    /// Whether `runtime_dir` exists already.
    pub runtime_dir_exists: bool,
    /// Things that work but deserve a look (a token file others can read).
    pub warnings: Vec<String>,
}

/// Why the daemon would refuse to start.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Catalogue(#[from] crate::document::ReadError),
    #[error(transparent)]
    Transport(#[from] crate::upload::TransportError),
    #[error("{0}")]
    Unusable(String),
}

/// Runs every check, or returns the first that fails.
pub fn run(config: &Config) -> Result<Preflight, PreflightError> {
    let catalogue = catalogue(config)?;
    if let Some(path) = &config.policy_file {
        Policy::read(path, &catalogue)?;
    }
    let transport = Transport::new(&config.upload)?;
    config.admin_gid().map_err(PreflightError::Unusable)?;
    let state_dir_exists = usable_dir(&config.state_dir, "state_dir")?;
    let runtime_dir_exists = usable_dir(&config.runtime_dir, "runtime_dir")?;
    for socket in [config.control_socket(), config.ingest_socket()] {
        let length = socket.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            return Err(PreflightError::Unusable(format!(
                "runtime_dir {} is too long for a Unix socket: {} is {length} bytes, the most is {MAX_SOCKET_PATH}; choose a shorter runtime_dir",
                config.runtime_dir.display(),
                socket.display()
            )));
        }
    }
    Ok(Preflight {
        catalogue,
        warnings: transport.warnings().to_vec(),
        transport,
        state_dir_exists,
        runtime_dir_exists,
    })
}

/// The catalogue `config` names, with a purpose for every built-in
/// collector (what `Agent::open` needs even without the rest).
pub fn catalogue(config: &Config) -> Result<Catalogue, PreflightError> {
    let catalogue = config.load_catalogue()?;
    if let Some(orphan) = crate::collect::BUILT_IN
        .into_iter()
        .find(|purpose| catalogue.purpose(purpose).is_none())
    {
        return Err(PreflightError::Unusable(format!(
            "collector `{orphan}` serves a purpose the catalogue does not define; add it to the catalogue or use the embedded one"
        )));
    }
    Ok(catalogue)
}

/// File systems that cannot hold the agent's files however they look.
const PSEUDO_FILE_SYSTEMS: &[(i64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0102_1994, "tmpfs (devtmpfs)"),
    (0x2762_3a62, "cgroup2"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7363_6673, "securityfs"),
];

/// Whether `path` exists, after checking that it (or, when missing, the
/// nearest directory above it) can be used: a directory, on a real file
/// system, this user's when it exists, writable by this user when it does
/// not (the daemon creates it there).
fn usable_dir(path: &Path, what: &str) -> Result<bool, PreflightError> {
    let unusable = |why: String| {
        PreflightError::Unusable(format!("{what} {} cannot be used: {why}", path.display()))
    };
    let (existing, exists) = nearest_existing(path);
    let meta = std::fs::metadata(&existing).map_err(|err| unusable(err.to_string()))?;
    if !meta.is_dir() {
        return Err(unusable(if exists {
            "it is not a directory".into()
        } else {
            format!("{} is not a directory", existing.display())
        }));
    }
    let statfs = rustix::fs::statfs(&existing).map_err(|err| unusable(err.to_string()))?;
    #[allow(clippy::unnecessary_cast)]
    let kind = statfs.f_type as i64;
    if let Some((_, name)) = PSEUDO_FILE_SYSTEMS.iter().find(|(magic, _)| *magic == kind) {
        // A tmpfs /dev is refused by name: tmpfs in general is fine for
        // runtime_dir (/run is one).
        if *name != "tmpfs (devtmpfs)" || existing.starts_with("/dev") {
            return Err(unusable(format!(
                "{} is on {name}, a pseudo file system",
                existing.display()
            )));
        }
    }
    let me = rustix::process::geteuid().as_raw();
    if exists && meta.uid() != me {
        return Err(unusable(format!(
            "it is owned by uid {}, not by this user (uid {me}); chown it or choose another directory",
            meta.uid()
        )));
    }
    if !exists
        && rustix::fs::access(
            &existing,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .is_err()
    {
        return Err(unusable(format!(
            "it does not exist, and this user may not create it in {}",
            existing.display()
        )));
    }
    Ok(exists)
}

/// `path` itself with `true` if it exists, else its nearest existing
/// ancestor with `false`.
fn nearest_existing(path: &Path) -> (PathBuf, bool) {
    if path.exists() {
        return (path.to_path_buf(), true);
    }
    let mut at = path.to_path_buf();
    while let Some(parent) = at.parent() {
        if parent.as_os_str().is_empty() {
            break;
        }
        if parent.exists() {
            return (parent.to_path_buf(), false);
        }
        at = parent.to_path_buf();
    }
    (PathBuf::from("/"), false)
}

/// The preflight in the form `check --json` prints.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub state_dir_exists: bool,
    pub runtime_dir_exists: bool,
    pub warnings: Vec<String>,
}

impl Preflight {
    pub fn summary(&self) -> Summary {
        Summary {
            state_dir_exists: self.state_dir_exists,
            runtime_dir_exists: self.runtime_dir_exists,
            warnings: self.warnings.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_and_files_are_refused_and_missing_directories_are_fine() {
        let err = usable_dir(Path::new("/proc/consentry/state"), "state_dir").unwrap_err();
        assert!(err.to_string().contains("pseudo file system"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = usable_dir(&file, "runtime_dir").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = usable_dir(&file.join("below"), "runtime_dir").unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(!usable_dir(&dir.path().join("new/state"), "state_dir").unwrap());
        assert!(usable_dir(dir.path(), "state_dir").unwrap());
    }
}

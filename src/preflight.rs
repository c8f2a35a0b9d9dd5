//! The start-up preflight: everything the daemon checks before it starts,
//! in one place, so that `consentry check` runs exactly the same checks and
//! passes only what the daemon would accept.
//!
//! The config itself was validated when it loaded (keys, types, values,
//! each at its line and column). This adds what needs the machine: the
//! catalogue and the policy file load, the `[upload]` files (CA,
//! certificate, token) are usable, the admin group exists, `state_dir` and
//! `runtime_dir` are the agent's own or can be created (`perms::assess`,
//! the same rules the daemon applies when it creates or tightens them; not
//! on a pseudo file system like /proc), the sockets' paths are short
//! enough, and `consent_file` names a file (it may be missing or broken:
//! the daemon then runs and sends nothing; a directory is a mistake).
//! Nothing is created or changed here.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::consent::Policy;
use crate::perms::{self, AgentDir, Plan};
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
    /// Things that work but deserve a look (a token file others can read,
    /// a clause text that says it carries no personal data while fields it
    /// allows are marked otherwise).
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
    let state_dir_exists = usable_dir(&config.state_dir, AgentDir::State)?;
    let runtime_dir_exists = usable_dir(&config.runtime_dir, AgentDir::Runtime)?;
    consent_file(&config.consent_file)?;
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
    // A clause text that says it carries no personal data while its fields
    // are marked otherwise: the vendor's to fix, never repeated in silence.
    let mut warnings = transport.warnings().to_vec();
    warnings.extend(
        catalogue
            .contradicted_claims()
            .iter()
            .map(|c| c.to_string()),
    );
    Ok(Preflight {
        catalogue,
        warnings,
        transport,
        state_dir_exists,
        runtime_dir_exists,
    })
}

/// The catalogue `config` names. A built-in collector whose purpose it
/// does not define stays idle: each product's catalogue names only what
/// its seed names (`ksv` has no `geo_distribution`, say).
pub fn catalogue(config: &Config) -> Result<Catalogue, PreflightError> {
    Ok(config.load_catalogue()?)
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

/// Whether `dir` exists, after checking that it can be used: an existing
/// one must be the agent's own (`perms::assess`, the very rules the daemon
/// applies when it starts), a missing one must be creatable (its nearest
/// existing ancestor a directory this user may write to); either way on a
/// real file system.
fn usable_dir(path: &Path, dir: AgentDir) -> Result<bool, PreflightError> {
    let what = dir.key();
    let unusable = |why: String| {
        PreflightError::Unusable(format!("{what} {} cannot be used: {why}", path.display()))
    };
    let (existing, exists) = nearest_existing(path);
    let meta = std::fs::metadata(&existing).map_err(|err| unusable(err.to_string()))?;
    if !meta.is_dir() {
        return Err(unusable(format!(
            "{} is not a directory",
            existing.display()
        )));
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
    let plan = perms::assess(path, dir).map_err(|err| PreflightError::Unusable(err.to_string()))?;
    if plan == Plan::Create
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

/// The consent file may be missing (nothing is accepted yet) or broken
/// (nothing is allowed until it is fixed: the daemon runs, fails closed and
/// watches for the fix), but a path that can never hold it is a mistake in
/// the config: a directory, a device, a path below a file.
fn consent_file(path: &Path) -> Result<(), PreflightError> {
    let refuse = |why: &str| {
        PreflightError::Unusable(format!(
            "consent_file {} {why}; point consent_file at the consent file (it may not exist yet), such as /etc/consentry/consent.toml",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) if meta.is_dir() => Err(refuse("is a directory")),
        Ok(_) => Err(refuse("is not a regular file")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            match path.parent().map(std::fs::metadata) {
                Some(Ok(parent)) if !parent.is_dir() => {
                    Err(refuse("is below something that is not a directory"))
                }
                _ => Ok(()),
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotADirectory => {
            Err(refuse("is below something that is not a directory"))
        }
        // Unreadable: the daemon fails closed and says so; `check` reads
        // it next and reports the error.
        Err(_) => Ok(()),
    }
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
        let err = usable_dir(Path::new("/proc/consentry/state"), AgentDir::State).unwrap_err();
        assert!(err.to_string().contains("pseudo file system"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = usable_dir(&file, AgentDir::Runtime).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = usable_dir(&file.join("below"), AgentDir::Runtime).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(!usable_dir(&dir.path().join("new/state"), AgentDir::State).unwrap());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert!(usable_dir(&empty, AgentDir::State).unwrap());
        // The directory holding `file` is someone's, not the agent's.
        let err = usable_dir(dir.path(), AgentDir::State).unwrap_err();
        assert!(err.to_string().contains("not consentry's"), "{err}");
    }

    #[test]
    fn a_consent_file_path_that_can_never_hold_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        consent_file(&dir.path().join("consent.toml")).unwrap();
        std::fs::write(dir.path().join("consent.toml"), "not toml at all [").unwrap();
        consent_file(&dir.path().join("consent.toml")).unwrap();
        let err = consent_file(dir.path()).unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let below = dir.path().join("consent.toml/consent.toml");
        let err = consent_file(&below).unwrap_err();
        assert!(err.to_string().contains("below something"), "{err}");
    }
}

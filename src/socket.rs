//! The daemon's Unix sockets, both of them (`control.sock`, `ingest.sock`):
//! binding without displacing a live daemon, and serving connections as
//! tracked tasks that end with the shutdown token.
//!
//! The runtime directory is the daemon's own (`perms`: created 0750, or
//! an existing one of its own tightened; another user's, a shared one or
//! one holding files not the agent's refused), so nobody else can put a
//! socket there. A stale socket (left by a crashed daemon) is detected by
//! trying to connect to it before it is removed: a live daemon of this user
//! is never displaced; a socket file owned by someone else is removed. A
//! socket is created with its mode (0660: the daemon's group may connect)
//! by setting the umask around `bind`, never widened by a chmod after.
//! The handlers check each peer's credentials themselves.
//!
//! The client side opens them with [`connect`], which tells "no daemon"
//! apart from other failures, and trusts only a server running as root,
//! as the client's own user, or as the owner of the socket's directory:
//! a socket squatted by another user is refused.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The mode of the runtime directory.
pub const RUNTIME_DIR_MODE: u32 = crate::perms::AgentDir::Runtime.mode();
/// The mode of each socket: the daemon's user and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another daemon is already listening on {0}")]
    InUse(PathBuf),
    #[error(transparent)]
    Dir(#[from] crate::perms::PermsError),
    #[error("cannot create socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes sure the socket's directory is the daemon's own (`perms`),
/// removes a stale socket file or one another user put there, and binds
/// with [`SOCKET_MODE`]. Must be called inside a tokio runtime, before
/// other threads create files (the umask is the process's).
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        crate::perms::ensure_dir_logged(dir, crate::perms::AgentDir::Runtime)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            tracing::warn!(path = %path.display(), owner = meta.uid(), "removing a socket file another user put in the runtime directory");
        } else if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let wanted = rustix::fs::Mode::from_raw_mode(0o777 & !SOCKET_MODE);
    let bound = {
        // The umask is the process's: two binds at once (two listeners,
        // or tests in parallel) would restore each other's and leave a
        // socket with the wrong mode, or the process with a narrowed
        // umask. One at a time.
        static UMASK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = UMASK.lock().unwrap_or_else(|p| p.into_inner());
        let previous = rustix::process::umask(wanted);
        let bound = UnixListener::bind(path);
        rustix::process::umask(previous);
        bound
    };
    let listener = bound.map_err(io)?;
    // Proof, not repair: the mode came from the umask.
    let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    debug_assert_eq!(mode, SOCKET_MODE);
    Ok(listener)
}

/// Accepts connections until `shutdown`, one tracked task per connection,
/// and waits for them before returning. A connection task is cut at
/// shutdown; what it had not answered, its client sends again.
pub async fn serve<F, Fut>(
    listener: UnixListener,
    name: &'static str,
    shutdown: CancellationToken,
    handle: F,
) where
    F: Fn(UnixStream) -> Fut,
    Fut: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let tracker = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(socket = name, error = %err, "accept failed");
                    continue;
                }
            },
        };
        let connection = handle(stream);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection => {
                    if let Err(err) = result {
                        tracing::debug!(socket = name, error = %err, "connection ended with an error");
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Who is asking, from the socket (SO_PEERCRED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Peer {
    /// The peer of a connected stream.
    pub fn of(stream: &UnixStream) -> std::io::Result<Self> {
        let cred = stream.peer_cred()?;
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid: cred.pid(),
        })
    }

    /// Whether the peer is in group `gid`: its primary group, or one of the
    /// groups the system's group database lists its user in.
    fn in_group(&self, gid: u32) -> bool {
        if self.gid == gid {
            return true;
        }
        use nix::unistd::{Gid, Uid, User, getgrouplist};
        let Ok(Some(user)) = User::from_uid(Uid::from_raw(self.uid)) else {
            return false;
        };
        if user.gid.as_raw() == gid {
            return true;
        }
        let Ok(name) = std::ffi::CString::new(user.name) else {
            return false;
        };
        getgrouplist(&name, Gid::from_raw(self.gid))
            .map(|groups| groups.contains(&Gid::from_raw(gid)))
            .unwrap_or(false)
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads (`status`) or submits events: anyone who may open the socket
    /// (its mode admits the daemon's group).
    Read,
    /// Changes what the daemon does (`consent` changes, `flush`): root, the
    /// daemon's user, or a member of the configured admin group.
    Change,
}

/// Who may do what on the daemon's sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessPolicy {
    pub own_uid: u32,
    pub admin_gid: Option<u32>,
}

impl AccessPolicy {
    /// This process's user, and the admin group if one is configured.
    pub fn new(admin_gid: Option<u32>) -> Self {
        Self {
            own_uid: rustix::process::geteuid().as_raw(),
            admin_gid,
        }
    }

    pub fn allows(&self, peer: &Peer, access: Access) -> bool {
        match access {
            Access::Read => true,
            Access::Change => {
                peer.uid == 0
                    || peer.uid == self.own_uid
                    || self.admin_gid.is_some_and(|gid| peer.in_group(gid))
            }
        }
    }
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there: no daemon runs.
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    /// Something listens, but not as the daemon's user.
    #[error(
        "the socket {path} is served by uid {server}, which is neither root, this user, nor the owner of its directory (uid {owner}); refusing to trust it"
    )]
    Untrusted {
        path: String,
        server: u32,
        owner: u32,
    },
    #[error("socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether a client may trust a server running as `server`: root, the
/// client's own user, or the owner of the socket's directory.
pub fn server_trusted(server: u32, me: u32, dir_owner: u32) -> bool {
    server == 0 || server == me || server == dir_owner
}

/// Connects to a daemon socket and checks who serves it.
pub async fn connect(path: &Path) -> Result<UnixStream, ConnectError> {
    use std::os::unix::fs::MetadataExt;
    let shown = path.display().to_string();
    let stream = UnixStream::connect(path)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ConnectError::NotRunning(shown.clone())
            }
            _ => ConnectError::Io {
                path: shown.clone(),
                source: err,
            },
        })?;
    let io = |source| ConnectError::Io {
        path: shown.clone(),
        source,
    };
    let server = stream.peer_cred().map_err(io)?.uid();
    let dir_owner = match path.parent().map(std::fs::metadata) {
        Some(Ok(meta)) => meta.uid(),
        _ => 0,
    };
    let me = rustix::process::geteuid().as_raw();
    if !server_trusted(server, me, dir_owner) {
        return Err(ConnectError::Untrusted {
            path: shown,
            server,
            owner: dir_owner,
        });
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_need_root_the_daemons_user_or_the_admin_group() {
        let policy = AccessPolicy {
            own_uid: 999,
            admin_gid: Some(4242),
        };
        let peer = |uid, gid| Peer {
            uid,
            gid,
            pid: None,
        };
        for who in [peer(0, 0), peer(999, 999), peer(1000, 4242)] {
            assert!(policy.allows(&who, Access::Change), "{who:?}");
        }
        assert!(!policy.allows(&peer(1000, 1000), Access::Change));
        assert!(policy.allows(&peer(1000, 1000), Access::Read));
        let no_admins = AccessPolicy {
            admin_gid: None,
            ..policy
        };
        assert!(!no_admins.allows(&peer(1000, 4242), Access::Change));
    }

    #[test]
    fn supplementary_groups_count() {
        // Root (uid 0) is in the groups the database lists for it; find
        // one that is not its primary group, if the machine has one.
        let root = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(0))
            .unwrap()
            .unwrap();
        let name = std::ffi::CString::new(root.name).unwrap();
        let groups = nix::unistd::getgrouplist(&name, root.gid).unwrap();
        let peer = Peer {
            uid: 0,
            gid: u32::MAX - 1,
            pid: None,
        };
        for gid in groups.iter().filter(|g| **g != root.gid) {
            assert!(peer.in_group(gid.as_raw()));
        }
        assert!(
            peer.in_group(root.gid.as_raw()),
            "the database's primary group"
        );
        assert!(!peer.in_group(u32::MAX - 2));
    }

    #[test]
    fn a_client_trusts_root_itself_or_the_directory_owner_only() {
        assert!(server_trusted(0, 1000, 1000));
        assert!(server_trusted(1000, 1000, 0));
        assert!(server_trusted(999, 1000, 999), "the daemon's user");
        assert!(
            !server_trusted(1001, 1000, 0),
            "a squatter in root's directory"
        );
    }

    #[tokio::test]
    async fn socket_is_private_and_a_live_one_is_not_displaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("control.sock");
        let _listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, RUNTIME_DIR_MODE);
        assert!(matches!(bind(&path), Err(BindError::InUse(_))));
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_a_missing_one_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(bind(&path).unwrap());
        assert!(path.exists(), "a dropped listener leaves its file behind");
        assert!(matches!(
            connect(&path).await,
            Err(ConnectError::NotRunning(_))
        ));
        let _listener = bind(&path).unwrap();
        assert!(connect(&path).await.is_ok());
        assert!(matches!(
            connect(&dir.path().join("none.sock")).await,
            Err(ConnectError::NotRunning(_))
        ));
    }
}

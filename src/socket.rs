//! The daemon's Unix sockets, both of them (`control.sock`, `ingest.sock`):
//! binding without displacing a live daemon, and serving connections as
//! tracked tasks that end with the shutdown token.
//!
//! A stale socket (left by a crashed daemon) is detected by trying to
//! connect to it before it is removed: a live daemon is never displaced.
//! Sockets are created mode 0600 inside a 0700 runtime directory; the
//! handlers check each peer's uid themselves. The client side opens them
//! with [`connect`], which tells "no daemon" apart from other failures.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why a socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another daemon is already listening on {0}")]
    InUse(PathBuf),
    #[error("cannot create socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates the socket's directory (0700) if needed, replaces a stale socket
/// file, and binds (0600). Must be called inside a tokio runtime.
pub fn bind(path: &Path) -> Result<UnixListener, BindError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |source| BindError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(BindError::InUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(io)?;
    }
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
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

/// Whether a peer may talk to the daemon: the same user, or root.
pub fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Nothing listens there: no daemon runs.
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    #[error("socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Connects to a daemon socket.
pub async fn connect(path: &Path) -> Result<UnixStream, ConnectError> {
    UnixStream::connect(path).await.map_err(|err| {
        let shown = path.display().to_string();
        match err.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                ConnectError::NotRunning(shown)
            }
            _ => ConnectError::Io {
                path: shown,
                source: err,
            },
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_same_user_or_root_may_ask() {
        assert!(peer_allowed(1000, 1000));
        assert!(peer_allowed(0, 1000));
        assert!(!peer_allowed(1001, 1000));
    }

    #[tokio::test]
    async fn socket_is_private_and_a_live_one_is_not_displaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("control.sock");
        let _listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
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

//! The control socket's server side: binds `control.sock` safely, checks who
//! is asking, reads one request line, hands it to the daemon loop and writes
//! the answer back.
//!
//! A stale socket (left by a crashed daemon) is detected by trying to
//! connect to it before it is removed: a live daemon is never displaced. The
//! socket is created mode 0600 inside a 0700 runtime directory, and every
//! peer must be this daemon's own user or root.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::control::Handler;
use crate::control::{MAX_LINE_BYTES, Request, Response};

/// Why the control socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("another daemon is already listening on {0}")]
    InUse(PathBuf),
    #[error("cannot create control socket {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Creates `runtime_dir` (0700) if needed and binds the socket (0600).
/// Must be called inside a tokio runtime.
pub fn bind_control_socket(path: &Path) -> Result<UnixListener, BindError> {
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

/// Accepts connections until `shutdown`; one tracked task per connection,
/// each answered by `handler` directly (no queue behind a busy loop).
pub(crate) async fn serve(
    listener: UnixListener,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let own_uid = rustix::process::geteuid().as_raw();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "control socket accept failed");
                    continue;
                }
            },
        };
        let handler = Arc::clone(&handler);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = handle_connection(stream, own_uid, &handler) => {
                    if let Err(err) = result {
                        tracing::debug!(error = %err, "control connection ended with an error");
                    }
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
}

/// Whether a peer may talk to the daemon: the same user, or root.
fn peer_allowed(peer_uid: u32, own_uid: u32) -> bool {
    peer_uid == own_uid || peer_uid == 0
}

async fn handle_connection(
    stream: UnixStream,
    own_uid: u32,
    handler: &Handler,
) -> std::io::Result<()> {
    let peer_uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let response = if !peer_allowed(peer_uid, own_uid) {
        tracing::warn!(peer_uid, "refused a control request from another user");
        Response::Error {
            message: format!("uid {peer_uid} may not control this daemon"),
        }
    } else {
        let mut line = String::new();
        BufReader::new(read)
            .take(MAX_LINE_BYTES as u64)
            .read_line(&mut line)
            .await?;
        match serde_json::from_str::<Request>(line.trim_end()) {
            Err(err) => Response::Error {
                message: format!("unreadable request: {err}"),
            },
            Ok(request) => handler.handle(request).await,
        }
    };
    let mut line = serde_json::to_string(&response).expect("responses always serialize");
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    write.shutdown().await
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
        let _listener = bind_control_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(matches!(
            bind_control_socket(&path),
            Err(BindError::InUse(_))
        ));
    }

    #[tokio::test]
    async fn stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        drop(bind_control_socket(&path).unwrap());
        assert!(path.exists(), "a dropped listener leaves its file behind");
        bind_control_socket(&path).unwrap();
    }
}

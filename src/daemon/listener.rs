//! The control socket's server side: checks who is asking, reads one
//! request line, hands it to the [`Handler`] and writes the answer back.
//! Binding and the accept loop are `socket`'s.

use std::path::Path;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::control::Handler;
use crate::control::{MAX_LINE_BYTES, Request, Response};
use crate::socket::{self, Access, AccessPolicy, Peer};

pub use crate::socket::BindError;

/// Binds `control.sock` (see [`socket::bind`]).
pub fn bind_control_socket(path: &Path) -> Result<UnixListener, BindError> {
    socket::bind(path)
}

/// Serves control connections until `shutdown`, each answered by
/// `handler` directly (no queue behind a busy loop).
pub(crate) async fn serve(
    listener: UnixListener,
    handler: Arc<Handler>,
    policy: AccessPolicy,
    shutdown: CancellationToken,
) {
    socket::serve(listener, "control", shutdown, move |stream| {
        let handler = Arc::clone(&handler);
        async move { handle_connection(stream, policy, &handler).await }
    })
    .await;
}

/// What a request does, for the access check.
fn access(request: &Request) -> Access {
    match request {
        Request::Status => Access::Read,
        Request::Flush | Request::ConsentChanged { .. } => Access::Change,
    }
}

async fn handle_connection(
    stream: UnixStream,
    policy: AccessPolicy,
    handler: &Handler,
) -> std::io::Result<()> {
    let peer = Peer::of(&stream)?;
    let (read, mut write) = stream.into_split();
    // The request is always read, so that a refusal reaches the client as
    // an answer rather than a broken pipe.
    let mut line = String::new();
    BufReader::new(read)
        .take(MAX_LINE_BYTES as u64)
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<Request>(line.trim_end()) {
        Err(err) => Response::Error {
            message: format!("unreadable request: {err}"),
        },
        Ok(request) if !policy.allows(&peer, access(&request)) => {
            tracing::warn!(uid = peer.uid, pid = ?peer.pid, ?request, "refused a control request");
            Response::Denied {
                message: format!(
                    "uid {} may read this daemon's status but not change it; changes need root, the daemon's user (uid {}){}",
                    peer.uid,
                    policy.own_uid,
                    match policy.admin_gid {
                        Some(gid) => format!(" or the admin group (gid {gid})"),
                        None => String::new(),
                    }
                ),
            }
        }
        Ok(request) => handler.handle(request).await,
    };
    let mut line = serde_json::to_string(&response).expect("responses always serialize");
    line.push('\n');
    write.write_all(line.as_bytes()).await?;
    write.shutdown().await
}

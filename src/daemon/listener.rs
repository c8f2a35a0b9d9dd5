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
use crate::socket::{self, peer_allowed};

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
    shutdown: CancellationToken,
) {
    let own_uid = rustix::process::geteuid().as_raw();
    socket::serve(listener, "control", shutdown, move |stream| {
        let handler = Arc::clone(&handler);
        async move { handle_connection(stream, own_uid, &handler).await }
    })
    .await;
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

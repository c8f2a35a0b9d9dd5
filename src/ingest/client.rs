//! The client side of the ingest socket, for `consentry emit`: streams
//! lines to the daemon, reads its answers, and returns once every line is
//! acknowledged (or the daemon went away, which is then an error naming the
//! lines that were not).

use std::path::Path;

use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::protocol::Reply;
use crate::socket::{self, ConnectError};

/// Rejected lines kept for the report; the count goes on past it.
const MAX_ERRORS_KEPT: usize = 1000;

/// What the daemon said about everything sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EmitSummary {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub discarded: u64,
    /// The first rejected lines: line number, code, message.
    pub errors: Vec<LineRejected>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineRejected {
    pub line: u64,
    pub error: String,
    pub message: String,
}

/// Why the lines could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no daemon is listening on {0}; start it with `consentry daemon`")]
    NotRunning(String),
    #[error("ingest socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the daemon stopped answering after acknowledging line {acked} of {sent}; lines {} to {sent} were not acknowledged, send them again",
        acked + 1
    )]
    Unacknowledged { acked: u64, sent: u64 },
    /// What answers on the socket is not the daemon's user.
    #[error("{0}")]
    Untrusted(String),
    #[error("the daemon sent an unreadable answer: {0}")]
    Garbled(String),
    /// The lines to send could not be read (the input, not the socket).
    #[error("cannot read the lines to send: {0}")]
    Input(#[source] std::io::Error),
}

/// Sends everything `input` holds, line by line, and waits for the acks.
pub async fn send(
    socket: &Path,
    mut input: impl AsyncRead + Unpin,
) -> Result<EmitSummary, ClientError> {
    let path = socket.display().to_string();
    let io = |source| ClientError::Io {
        path: path.clone(),
        source,
    };
    let stream = socket::connect(socket).await.map_err(|err| match err {
        ConnectError::NotRunning(path) => ClientError::NotRunning(path),
        ConnectError::Io { path, source } => ClientError::Io { path, source },
        untrusted @ ConnectError::Untrusted { .. } => ClientError::Untrusted(untrusted.to_string()),
    })?;
    let (read, mut write) = stream.into_split();
    // Lines handed to the socket so far, kept when writing fails (the
    // daemon went away): what was acknowledged until then still counts.
    let mut sent = 0u64;
    let sending = async {
        let mut buffer = vec![0u8; 256 * 1024];
        let mut last = b'\n';
        // Err(Ok(_)): the input could not be read; Err(Err(_)): the socket
        // could not be written.
        loop {
            let n = input.read(&mut buffer).await.map_err(Ok)?;
            if n == 0 {
                break;
            }
            sent += memchr::memchr_iter(b'\n', &buffer[..n]).count() as u64;
            last = buffer[n - 1];
            write.write_all(&buffer[..n]).await.map_err(Err)?;
        }
        if last != b'\n' {
            sent += 1; // an unterminated last line still counts
        }
        write.shutdown().await.map_err(Err)
    };
    let receiving = async {
        let mut summary = EmitSummary::default();
        let mut acked = 0u64;
        let mut reader = BufReader::new(read).lines();
        // A reset connection ends the answers like a closed one does.
        while let Ok(Some(line)) = reader.next_line().await {
            match serde_json::from_str::<Reply>(&line) {
                Ok(Reply::Ack {
                    ack,
                    accepted,
                    rejected,
                    discarded,
                }) => {
                    acked = ack;
                    (summary.accepted, summary.rejected, summary.discarded) =
                        (accepted, rejected, discarded);
                }
                Ok(Reply::Error {
                    line,
                    error,
                    message,
                }) => {
                    if summary.errors.len() < MAX_ERRORS_KEPT {
                        summary.errors.push(LineRejected {
                            line,
                            error,
                            message,
                        });
                    }
                }
                Err(err) => return Err(ClientError::Garbled(err.to_string())),
            }
        }
        Ok((summary, acked))
    };
    let (written, received): (Result<(), Result<std::io::Error, std::io::Error>>, _) =
        tokio::join!(sending, receiving);
    if let Err(Ok(unreadable)) = written {
        return Err(ClientError::Input(unreadable));
    }
    let (mut summary, acked) = received?;
    if acked < sent {
        return Err(ClientError::Unacknowledged { acked, sent });
    }
    if let Err(Err(err)) = written
        && sent == 0
    {
        return Err(io(err));
    }
    summary.lines = sent;
    Ok(summary)
}

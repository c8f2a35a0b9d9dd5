//! The control protocol between the CLI and a running daemon: one JSON
//! [`Request`] line in, one JSON [`Response`] line out, over the Unix socket
//! `runtime_dir/control.sock` (mode 0600; the daemon also checks the peer's
//! uid). This module holds the message types and the client side; the
//! server side is `daemon::listener`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::consent::Decision;
use crate::socket::{self, ConnectError};
use crate::store::StoreHealth;
use crate::upload::UploadSummary;

/// Longest request or response line accepted, so a confused peer cannot
/// make either side buffer without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// How long the CLI waits for the daemon to answer (a flush may include an
/// upload that itself times out after `[upload] timeout`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectSummary {
    /// Records that passed the check and the gate, and are now queued.
    pub queued: u64,
    /// Every collector whose records were not queued, and why.
    pub blocked: Vec<Blocked>,
    /// Collector or catalogue-check failures.
    pub errors: Vec<String>,
}

/// A purpose a collection skipped because its decision is blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub purpose: String,
    /// The decision's reason, as `status` gives it.
    pub reason: String,
}

/// A collection followed by an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushSummary {
    pub collect: CollectSummary,
    pub upload: UploadSummary,
}

/// What the daemon did about a consent change before answering.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentApplied {
    /// Queued records purged because their purpose is no longer allowed.
    pub purged: u64,
    /// Whether an open KSN window was discarded (its consent is gone).
    pub ksn_window_discarded: bool,
    /// Records still queued.
    pub queued: u64,
    /// Whether the installation id was replaced (a withdrawal of the clause
    /// whose purposes carry it).
    #[serde(default)]
    pub installation_id_rotated: bool,
    /// The consent receipts this change appended (the act's own first
    /// when it declared one).
    #[serde(default)]
    pub receipts: Vec<uuid::Uuid>,
    /// Why nothing could be recorded from the consent file (missing,
    /// empty or broken: everything is held), if so.
    #[serde(default)]
    pub holding: Option<String>,
}

/// What the CLI asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Decisions, queue depth and the last results.
    Status,
    /// Collect and upload now, ignoring any wait after a failure.
    Flush,
    /// The consent file changed: re-read it, record the receipts and
    /// delete what was withdrawn before answering; collecting and uploading
    /// what now is allowed happens after the answer, never in its way.
    /// `act` is the act the command declares (its receipt gets the act's
    /// own time and means); without one, the change is observed.
    ConsentChanged {
        #[serde(default)]
        act: Option<crate::consent::Act>,
    },
}

/// What the last reload (SIGHUP) did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    pub at: String,
    /// Whether the new config is in force.
    pub applied: bool,
    /// Why it was rejected (the daemon runs on with the last good config).
    pub error: Option<String>,
    /// Changed settings that only a restart applies.
    #[serde(default)]
    pub restart_needed: Vec<String>,
}

/// A running daemon's view of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub records_queued: u64,
    /// Events dropped at the ingest socket because their purpose was not
    /// allowed, per purpose, since the daemon started.
    #[serde(default)]
    pub discarded: BTreeMap<String, u64>,
    /// Records refused for a value their field's declaration does not
    /// allow, per purpose and code (`personal_data`, `out_of_shape`),
    /// since the daemon started: counts only, the values are never kept.
    #[serde(default)]
    pub refused: BTreeMap<String, BTreeMap<String, u64>>,
    pub decisions: Vec<Decision>,
    pub last_collect: Option<CollectSummary>,
    pub last_upload: Option<UploadSummary>,
    /// When the last upload attempt ended.
    #[serde(default)]
    pub last_upload_at: Option<String>,
    /// When the uploader tries next, at the latest (sooner for a full
    /// batch, a collection or a `flush`).
    #[serde(default)]
    pub next_upload_at: Option<String>,
    /// Quarantine, dead letters and trouble with the store.
    #[serde(default)]
    pub store: StoreHealth,
    /// The last reload, if there was one.
    #[serde(default)]
    pub reload: Option<ReloadReport>,
    /// The consent snapshot in force.
    #[serde(default)]
    pub consent: ConsentState,
    /// Per purpose with randomised fields: its local differential
    /// privacy and what today's reports spent of its budget.
    #[serde(default)]
    pub privacy_budget: BTreeMap<String, BudgetStatus>,
}

/// A purpose's privacy budget, and today's reports against it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetStatus {
    /// Reports sent today (UTC) since the daemon started.
    pub reports_today: u32,
    pub reports_per_day: u32,
    /// The sum of its randomised fields' ε: what each report spends.
    pub epsilon_per_report: crate::privacy::ldp::Epsilon,
    pub epsilon_per_day: crate::privacy::ldp::Epsilon,
    /// Each randomised field: its mechanism and ε.
    pub fields: BTreeMap<String, FieldPrivacy>,
}

/// One randomised field, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldPrivacy {
    pub mechanism: crate::privacy::ldp::Mechanism,
    pub epsilon: crate::privacy::ldp::Epsilon,
}

impl BudgetStatus {
    /// Every purpose of `catalogue` with a budget, with `spent` (today's
    /// reports per purpose; none when no daemon runs).
    pub fn of(
        catalogue: &crate::catalogue::Catalogue,
        spent: &BTreeMap<String, u32>,
    ) -> BTreeMap<String, BudgetStatus> {
        catalogue
            .purposes()
            .filter_map(|purpose| {
                let budget = purpose.privacy_budget?;
                let fields = purpose
                    .fields
                    .iter()
                    .filter_map(|f| {
                        let ldp = f.ldp.as_ref()?;
                        let privacy = FieldPrivacy {
                            mechanism: ldp.mechanism,
                            epsilon: ldp.epsilon,
                        };
                        Some((f.name.clone(), privacy))
                    })
                    .collect();
                let status = BudgetStatus {
                    reports_today: spent.get(&purpose.id).copied().unwrap_or(0),
                    reports_per_day: budget.reports_per_day,
                    epsilon_per_report: crate::privacy::ldp::Epsilon::new(
                        purpose.epsilon_per_report(),
                    )
                    .ok()?,
                    epsilon_per_day: budget.epsilon_per_day,
                    fields,
                };
                Some((purpose.id.clone(), status))
            })
            .collect()
    }
}

/// The consent snapshot in force, as its owner published it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// Its generation: one more at every publication.
    pub generation: u64,
    /// Why the consent file holds everything (missing, empty, broken).
    pub holding: Option<String>,
    /// Whether deletion waits: a withdrawal read from the file waits for
    /// the file to stay the same, or a command is changing it.
    pub deletion_waits: bool,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Status(Box<DaemonStatus>),
    Flushed(FlushSummary),
    ConsentApplied(ConsentApplied),
    Error {
        message: String,
    },
    /// The asking user may not make this request (see `daemon::listener`).
    Denied {
        message: String,
    },
}

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no daemon is listening on {0}")]
    NotRunning(String),
    #[error("control socket {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the daemon sent an unreadable answer: {0}")]
    Garbled(String),
    /// What answers on the socket is not the daemon's user.
    #[error("{0}")]
    Untrusted(String),
    /// The daemon refused the request: the asking user may not make it.
    #[error("permission denied: {0}")]
    Denied(String),
}

/// Sends one request and reads one response.
pub async fn request(socket: &Path, request: &Request) -> Result<Response, ControlError> {
    let path = socket.display().to_string();
    let io = |source| ControlError::Io {
        path: path.clone(),
        source,
    };
    let stream = socket::connect(socket).await.map_err(|err| match err {
        ConnectError::NotRunning(path) => ControlError::NotRunning(path),
        ConnectError::Io { path, source } => ControlError::Io { path, source },
        untrusted @ ConnectError::Untrusted { .. } => {
            ControlError::Untrusted(untrusted.to_string())
        }
    })?;
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_string(request).expect("requests always serialize");
        line.push('\n');
        write.write_all(line.as_bytes()).await.map_err(io)?;
        let mut answer = String::new();
        let mut reader = BufReader::new(read).take(MAX_LINE_BYTES as u64);
        reader.read_line(&mut answer).await.map_err(io)?;
        serde_json::from_str(answer.trim_end())
            .map_err(|err| ControlError::Garbled(err.to_string()))
    };
    match tokio::time::timeout(REPLY_TIMEOUT, exchange)
        .await
        .map_err(|_| ControlError::Timeout(REPLY_TIMEOUT))??
    {
        Response::Denied { message } => Err(ControlError::Denied(message)),
        response => Ok(response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_json_lines() {
        assert_eq!(
            serde_json::to_string(&Request::Flush).unwrap(),
            r#"{"request":"flush"}"#
        );
        let back: Request = serde_json::from_str(r#"{"request":"consent_changed"}"#).unwrap();
        assert_eq!(back, Request::ConsentChanged { act: None });
    }

    #[test]
    fn blocked_purposes_travel_as_objects() {
        let summary = CollectSummary {
            queued: 1,
            blocked: vec![Blocked {
                purpose: "update_identity".into(),
                reason: "eula not accepted: it says: no".into(),
            }],
            errors: Vec::new(),
        };
        let line = serde_json::to_string(&summary).unwrap();
        assert_eq!(
            line,
            r#"{"queued":1,"blocked":[{"purpose":"update_identity","reason":"eula not accepted: it says: no"}],"errors":[]}"#
        );
        assert_eq!(
            serde_json::from_str::<CollectSummary>(&line).unwrap(),
            summary
        );
    }
}

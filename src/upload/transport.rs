//! The HTTPS transport: reqwest over the rustls configuration `tls` builds
//! (TLS 1.2 or 1.3; system roots plus `ca_file`, or exactly
//! `server_certificate`; `pin_sha256` on top), the bearer token from
//! `token_file`, no proxies, no redirects, and plain HTTP only to loopback
//! when the config explicitly allows it (checked when the config is loaded).
//!
//! [`Transport::new`] is the preflight the daemon and `check` share: it
//! reads and validates every file named in `[upload]`, and opens no
//! connection. The transport sends bytes and reports an [`UploadResult`];
//! it never reads the queue and never decides consent. The token is never
//! logged, printed or shown by `Debug`.

use super::compression::Compression;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde::Serialize;
use uuid::Uuid;

use super::UploadConfig;
use super::diagnose;
use super::otlp;
use super::policy::{Protocol, UploadResult, parse_retry_after};
use super::tls::{self, TlsError, TrustSettings};

/// The header that makes a retried batch safe to deliver twice.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// The answer header with which a receiver sets this agent's upload
/// interval (seconds, within `[upload] upload_interval_min` and
/// `upload_interval_max`): the fleet slows down, or speeds up again, at
/// the server's word. See `docs/fleet.md`.
pub const UPLOAD_INTERVAL: &str = "Consentry-Upload-Interval";

/// The most of an answer's body read (an OTLP export response is a few
/// bytes; anything longer is not one).
const MAX_ANSWER: usize = 64 << 10;

/// What an answer asked of the agent's pace, whatever its status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pacing {
    /// `Retry-After`: send nothing more before this long.
    pub retry_after: Option<Duration>,
    /// [`UPLOAD_INTERVAL`]: the interval between uploads from now on.
    pub upload_interval: Option<Duration>,
}

/// One upload attempt's outcome and what the answer said of the pace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub result: UploadResult,
    pub pacing: Pacing,
}

/// The header of a connection probe (`check --connect`): an empty POST the
/// receiver answers without storing anything (`docs/protocol.md`).
pub const PROBE_HEADER: &str = "Consentry-Probe";

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read token_file {path}: {source}")]
    TokenUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token_file {path} {problem}; put the bearer token alone in it")]
    TokenInvalid {
        path: PathBuf,
        problem: &'static str,
    },
    #[error("cannot build the HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A client bound to one endpoint, with its credentials.
#[derive(Clone)]
pub struct Transport {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    /// `Bearer <token>`, marked sensitive.
    authorization: Option<HeaderValue>,
    protocol: Protocol,
    warnings: Vec<String>,
}

/// Shows whether a token is set, never the token.
impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("endpoint", &super::redacted(self.endpoint.as_str()))
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// What a connection probe found: reached and accepted, or not and why.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub ok: bool,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// What went wrong, in words a person can act on.
    pub explanation: Option<String>,
    /// The error as the libraries reported it, for the curious.
    pub detail: Option<String>,
}

impl Transport {
    /// Reads and checks every file `[upload]` names (CA file, server
    /// certificate, token file; the pins were checked at load) and builds
    /// the client. Opens no connection: an unreachable receiver is no
    /// reason not to start.
    pub fn new(config: &UploadConfig) -> Result<Self, TransportError> {
        let endpoint = config
            .endpoint_url()
            .expect("endpoint is validated when the config loads");
        let tls = tls::client_config(TrustSettings {
            ca_file: config.ca_file.as_deref(),
            server_certificate: config.server_certificate.as_deref(),
            pins: &config.pin_sha256,
        })?;
        let mut warnings = Vec::new();
        let authorization = match &config.token_file {
            Some(path) => {
                let (value, warning) = read_token_file(path)?;
                warnings.extend(warning);
                Some(value)
            }
            None => None,
        };
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0.min(Duration::from_secs(10)))
            .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!config.allow_plaintext_loopback)
            .build()
            .map_err(TransportError::Client)?;
        Ok(Self {
            client,
            endpoint,
            authorization,
            protocol: config.protocol,
            warnings,
        })
    }

    pub fn endpoint(&self) -> &reqwest::Url {
        &self.endpoint
    }

    /// Things that work but should be fixed (a token file others can read).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    fn post(&self) -> reqwest::RequestBuilder {
        let request = self.client.post(self.endpoint.clone());
        match &self.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    /// The wire format this transport sends.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// POSTs one body (a batch, or a deletion request), compressed with
    /// `compression`, and classifies the outcome by the protocol's rules.
    pub async fn send(&self, batch_id: Uuid, body: Vec<u8>, compression: Compression) -> Answer {
        let content_type = match self.protocol {
            Protocol::ConsentryJson => "application/json",
            Protocol::OtlpHttp => otlp::CONTENT_TYPE,
        };
        let request = self
            .post()
            .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
            .header(
                CONTENT_ENCODING,
                HeaderValue::from_static(compression.content_encoding()),
            )
            .header(IDEMPOTENCY_KEY, batch_id.to_string())
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Answer {
                    result: UploadResult::Retryable {
                        status: None,
                        retry_after: None,
                        detail: describe(&err),
                    },
                    pacing: Pacing::default(),
                };
            }
        };
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let pacing = Pacing {
            retry_after: header(RETRY_AFTER.as_str()).and_then(|v| parse_retry_after(&v)),
            upload_interval: header(UPLOAD_INTERVAL)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
        };
        let status = response.status().as_u16();
        let mut result = UploadResult::classify(self.protocol, status, pacing.retry_after);
        if let (Protocol::OtlpHttp, UploadResult::Accepted { rejected, .. }) =
            (self.protocol, &mut result)
        {
            *rejected = self.partial_success(batch_id, response).await;
        }
        Answer { result, pacing }
    }

    /// The records an OTLP receiver's 2xx answer says it rejected. An
    /// answer that cannot be read rejects nothing (the receiver took the
    /// batch: sending it again would duplicate it), and is logged.
    async fn partial_success(
        &self,
        batch_id: Uuid,
        response: reqwest::Response,
    ) -> Option<otlp::Rejected> {
        let json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("json"));
        let body = match read_bounded(response, MAX_ANSWER).await {
            Ok(body) => body,
            Err(why) => {
                tracing::warn!(batch = %batch_id, "cannot read the receiver's answer: {why}");
                return None;
            }
        };
        let read = if json {
            otlp::rejected_json(&body)
        } else {
            otlp::rejected(&body)
        };
        read.unwrap_or_else(|why| {
            tracing::warn!(batch = %batch_id, "{why}");
            None
        })
    }

    /// A real handshake and an empty probe POST: what `check --connect`
    /// does. Nothing is stored by a receiver that follows the protocol
    /// (with `otlp-http`, the empty body is an empty OTLP request, which
    /// a Collector answers 200 and stores nothing of).
    pub async fn probe(&self) -> Probe {
        let mut probe = self.post().header(PROBE_HEADER, "1");
        if self.protocol == Protocol::OtlpHttp {
            // An empty body is an empty ExportLogsServiceRequest: a
            // Collector accepts it and stores nothing.
            probe = probe.header(CONTENT_TYPE, HeaderValue::from_static(otlp::CONTENT_TYPE));
        }
        match probe.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let explanation = diagnose::explain_status(status, self.authorization.is_some());
                Probe {
                    ok: explanation.is_none(),
                    status: Some(status),
                    explanation,
                    detail: None,
                }
            }
            Err(err) => Probe {
                ok: false,
                status: None,
                explanation: Some(
                    diagnose::explain(&err).unwrap_or_else(|| "the request failed".to_owned()),
                ),
                detail: Some(chain(&err)),
            },
        }
    }
}

/// Reads at most `limit` bytes of an answer's body.
async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(format!("longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What a failed send says in the log and the audit trail: the advice
/// `diagnose` gives, when one applies, then the error and its causes
/// (reqwest's own message alone, "error sending request", says nothing).
pub fn describe(err: &reqwest::Error) -> String {
    match diagnose::explain(err) {
        Some(advice) => format!("{advice} ({})", chain(err)),
        None => chain(err),
    }
}

/// The error and its causes on one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // io::Error repeats the message of the error it wraps.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The token, trimmed, as a sensitive `Authorization` value; and a warning
/// when the file is readable by others.
fn read_token_file(path: &Path) -> Result<(HeaderValue, Option<String>), TransportError> {
    let unreadable = |source| TransportError::TokenUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |problem| TransportError::TokenInvalid {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(unreadable)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid("is empty"));
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(invalid(
            "holds more than one word or a control character (a token is one line without spaces)",
        ));
    }
    let mut value =
        HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| invalid("is not ASCII"))?;
    value.set_sensitive(true);
    Ok((value, token_file_warning(path)))
}

#[cfg(unix)]
fn token_file_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| {
        format!(
            "token_file {} can be read by other users (mode {mode:04o}); make it private: chmod 600 {}",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
fn token_file_warning(_path: &Path) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write_token(dir: &Path, text: &str, mode: u32) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_token_is_trimmed_sensitive_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_token(dir.path(), "  s3cr3t-token\n", 0o600);
        let (value, warning) = read_token_file(&path).unwrap();
        assert_eq!(value.to_str().unwrap(), "Bearer s3cr3t-token");
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cr3t"));
        assert_eq!(warning, None);

        let config: UploadConfig = toml::from_str(&format!(
            "endpoint = \"https://127.0.0.1:9/\"\ntoken_file = \"{}\"",
            path.display()
        ))
        .unwrap();
        let transport = Transport::new(&config).unwrap();
        let shown = format!("{transport:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn empty_or_unreadable_tokens_are_refused_and_loose_modes_warned() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write_token(dir.path(), " \n", 0o600);
        let err = read_token_file(&empty).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let missing = dir.path().join("nope");
        let err = read_token_file(&missing).unwrap_err().to_string();
        assert!(err.starts_with("cannot read token_file"), "{err}");
        let two = write_token(dir.path(), "a b", 0o600);
        assert!(read_token_file(&two).is_err());

        let loose = write_token(dir.path(), "zq-secret", 0o644);
        let (_, warning) = read_token_file(&loose).unwrap();
        let warning = warning.expect("a world-readable token is warned about");
        assert!(warning.contains("chmod 600"), "{warning}");
        assert!(!warning.contains("zq-secret"));
    }
}

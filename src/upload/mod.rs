//! Delivery: from the queue to the receiver, batch by batch, up to two on
//! the wire at once.
//!
//! `UploadConfig` (the `[upload]` section) lives here; `sender` owns the
//! [`Uploader`] (claim, send, apply the outcome), `policy` the pure
//! decisions (classification, backoff, what a refusal means), `protocol`
//! the wire format and `transport` the HTTPS client. A 2xx deletes the
//! batch; anything else leaves it queued, dead-letters what the receiver
//! refused record by record, and sets when to try again.

pub mod compression;
mod diagnose;
mod in_flight;
pub mod otlp;
pub mod policy;
pub mod protocol;
pub mod schedule;
mod send_lock;
mod sender;
pub mod shown;
pub mod tls;
pub mod transport;

use std::path::PathBuf;

use serde::Deserialize;

use crate::clock::HumanDuration;
use crate::ranges;
pub use in_flight::InFlight;
pub use policy::{Protocol, Refusal, RetryPolicy, UploadResult};
pub use send_lock::{ANOTHER_SENDER, SendLock};
pub use sender::{UploadError, UploadSummary, Uploader};
pub use tls::Pin;
pub use transport::{Transport, TransportError};

/// Most records one batch may carry, whatever the config says: keeps one
/// request well under common receiver body limits.
pub const BATCH_MAX_RECORDS_LIMIT: usize = 10_000;

/// `[upload]` in the agent config. It holds paths, never secrets: the
/// token is read from `token_file` when the transport is built, so this
/// struct can be printed (Debug) without leaking anything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// `https://…`, or `http://127.0.0.1…`/`http://[::1]…` (written so)
    /// with the flag below; no user info, query or fragment.
    pub endpoint: String,
    /// The wire format: `consentry-json` (compressed JSON envelopes,
    /// `docs/protocol.md`) or `otlp-http` (OTLP logs, compressed protobuf,
    /// `docs/fleet.md`). The endpoint is used as written: for an
    /// OpenTelemetry Collector, its `/v1/logs` URL.
    #[serde(default)]
    pub protocol: Protocol,
    /// How bodies are compressed: `zstd` (the default) or `gzip`. A
    /// receiver that answers 415 to zstd is sent gzip from then on
    /// (remembered per endpoint).
    #[serde(default)]
    pub compression: compression::Compression,
    /// Extra CA certificates (PEM) trusted besides the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trust exactly this certificate (PEM) instead of any CA: see `tls`.
    #[serde(default)]
    pub server_certificate: Option<PathBuf>,
    /// The server's leaf key must match one of these (base64 SHA-256 of its
    /// SubjectPublicKeyInfo); checked at load.
    #[serde(default)]
    pub pin_sha256: Vec<Pin>,
    /// A file holding the bearer token sent as `Authorization`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_plaintext_loopback: bool,
    /// The longest a queued record waits for its batch to fill: the queue
    /// is offered to the uploader at least this often (formerly `interval`).
    #[serde(default = "defaults::batch_max_delay", alias = "interval")]
    pub batch_max_delay: HumanDuration,
    /// Largest batch, uncompressed (the records' sizes added up); a single
    /// larger record still goes, alone.
    #[serde(default = "defaults::batch_max_bytes")]
    pub batch_max_bytes: u64,
    #[serde(default = "defaults::batch_max_records")]
    pub batch_max_records: usize,
    #[serde(default = "defaults::timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "defaults::retry_initial")]
    pub retry_initial: HumanDuration,
    #[serde(default = "defaults::retry_max")]
    pub retry_max: HumanDuration,
    /// The shortest upload interval a receiver may set with its
    /// `Consentry-Upload-Interval` answer header (`docs/fleet.md`).
    #[serde(default = "defaults::interval_min")]
    pub interval_min: HumanDuration,
    /// The longest: a receiver may slow this agent down this far, and no
    /// further.
    #[serde(default = "defaults::interval_max")]
    pub interval_max: HumanDuration,
}

mod defaults {
    use super::HumanDuration;
    use std::time::Duration;
    pub fn batch_max_bytes() -> u64 {
        4 << 20
    }
    pub fn batch_max_delay() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    /// 4,000: each batch's fixed costs (a synced commit to keep its
    /// body, a round trip, its removal) are what bounds a drain. Against
    /// 2,000, once ingest was cheaper, 4,000 took end-to-end events/s up
    /// by about a fifth and the CPU per event down by a tenth, for 2-4
    /// MiB more peak RSS; 8,000 gained nothing more for 12 MiB more
    /// (BENCHMARKS.md). A batch of install tasks is about 800 KB of JSON,
    /// 23 KB on the wire (what a retry resends), well under
    /// `batch_max_bytes`.
    pub fn batch_max_records() -> usize {
        4000
    }
    pub fn timeout() -> HumanDuration {
        HumanDuration(Duration::from_secs(30))
    }
    pub fn retry_initial() -> HumanDuration {
        HumanDuration(Duration::from_secs(5))
    }
    pub fn retry_max() -> HumanDuration {
        HumanDuration(Duration::from_secs(15 * 60))
    }
    pub fn interval_min() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
    pub fn interval_max() -> HumanDuration {
        HumanDuration(Duration::from_secs(3600))
    }
}

/// `endpoint` with any user info (`user:password@`), query and fragment
/// cut out, for messages and logs: a secret someone put in the URL is
/// never printed. Such an endpoint is refused ([`UploadConfig::endpoint_url`]),
/// and this is how the refusal shows it.
pub fn redacted(endpoint: &str) -> String {
    let shown = without_user_info(endpoint);
    match shown.find(['?', '#']) {
        Some(at) => format!("{}{}<removed>", &shown[..at], &shown[at..=at]),
        None => shown,
    }
}

/// `endpoint` with any user info cut out. The authority is taken to run
/// to the first `/`, past any `?` or `#`: a password may hold those.
fn without_user_info(endpoint: &str) -> String {
    let Some(scheme_end) = endpoint.find("://") else {
        return endpoint.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = endpoint[authority_start..]
        .find('/')
        .map_or(endpoint.len(), |i| authority_start + i);
    match endpoint[authority_start..authority_end].rfind('@') {
        Some(at) => format!(
            "{}<credentials removed>@{}",
            &endpoint[..authority_start],
            &endpoint[authority_start + at + 1..]
        ),
        None => endpoint.to_owned(),
    }
}

/// The hosts plain http:// may go to, as written in the config: what the
/// documentation promises, and nothing the URL parser would also read as
/// 127.0.0.1 (`2130706433`, `0x7f.1`, `127.1`) or as another loopback
/// address (`127.0.0.2`, `localhost`, which a resolver could send
/// anywhere).
const PLAINTEXT_HOSTS: [&str; 2] = ["127.0.0.1", "[::1]"];

/// The host of an `http://` endpoint as written, without its port; `None`
/// for another scheme.
fn written_host(endpoint: &str) -> Option<&str> {
    let scheme = endpoint.get(..7)?;
    if !scheme.eq_ignore_ascii_case("http://") {
        return None;
    }
    let rest = &endpoint[7..];
    let authority = &rest[..rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len())];
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => Some(host),
        _ => Some(authority),
    }
}

/// Why `[upload] endpoint` is not one the agent sends to; each names the
/// endpoint as it may be shown (no credentials, query or fragment).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEndpoint {
    #[error("upload endpoint `{shown}` is not a URL: {why}")]
    NotAUrl { shown: String, why: String },
    #[error(
        "upload endpoint `{0}` carries credentials (user info before `@`); remove them: consentry never sends credentials taken from a URL"
    )]
    Credentials(String),
    #[error(
        "upload endpoint `{0}` has a query or fragment (after `?` or `#`); remove it: a URL the agent logs and shows must not carry a secret, so put a token in the file token_file names"
    )]
    QueryOrFragment(String),
    #[error("upload endpoint `{0}` has port 0, which no server listens on")]
    PortZero(String),
    #[error("upload endpoint `{0}` has no host")]
    NoHost(String),
    #[error("upload endpoint's host is {0} characters long; a host name has at most 253")]
    HostTooLong(usize),
    #[error("upload endpoint `{shown}` has scheme `{scheme}`; use https://")]
    Scheme { shown: String, scheme: String },
    #[error(
        "upload endpoint `{0}` must use https:// (plain http:// is allowed only to a loopback address written exactly as 127.0.0.1 or [::1])"
    )]
    PlainToNonLoopback(String),
    #[error(
        "upload endpoint `{0}` is plain http://; use https://, or set allow_plaintext_loopback = true for a loopback test receiver"
    )]
    PlainNotAllowed(String),
}

impl UploadConfig {
    /// The endpoint as it may be shown: without credentials, query or
    /// fragment ([`redacted`]).
    pub fn endpoint_shown(&self) -> String {
        redacted(&self.endpoint)
    }

    /// The endpoint as a URL, or why it cannot be one the agent sends to.
    pub fn endpoint_url(&self) -> Result<reqwest::Url, BadEndpoint> {
        let shown = self.endpoint_shown();
        let url = reqwest::Url::parse(&self.endpoint).map_err(|err| BadEndpoint::NotAUrl {
            shown: shown.clone(),
            why: err.to_string(),
        })?;
        let refused = |why: fn(String) -> BadEndpoint| Err(why(shown.clone()));
        if !url.username().is_empty() || url.password().is_some() {
            return refused(BadEndpoint::Credentials);
        }
        // A token in the query (`?token=…`) would be logged and shown
        // wherever the endpoint is; no receiver needs one there.
        if url.query().is_some() || url.fragment().is_some() {
            return refused(BadEndpoint::QueryOrFragment);
        }
        if url.port() == Some(0) {
            return refused(BadEndpoint::PortZero);
        }
        match url.host_str() {
            None | Some("") => return refused(BadEndpoint::NoHost),
            Some(host) if host.len() > 253 => {
                return Err(BadEndpoint::HostTooLong(host.len()));
            }
            Some(_) => {}
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" => self.plaintext(url, shown),
            other => Err(BadEndpoint::Scheme {
                shown,
                scheme: other.to_owned(),
            }),
        }
    }

    /// A plain http:// `url`, if allowed: to a host written exactly as
    /// 127.0.0.1 or [::1], with the flag set.
    fn plaintext(&self, url: reqwest::Url, shown: String) -> Result<reqwest::Url, BadEndpoint> {
        let host = written_host(&self.endpoint);
        if !host.is_some_and(|host| PLAINTEXT_HOSTS.contains(&host)) {
            return Err(BadEndpoint::PlainToNonLoopback(shown));
        }
        if !self.allow_plaintext_loopback {
            return Err(BadEndpoint::PlainNotAllowed(shown));
        }
        Ok(url)
    }

    /// Checks what the types do not: the endpoint, the limits, the TLS
    /// settings together, every duration against its range. Each problem
    /// names the key at fault so that it can point at its line.
    pub(crate) fn validate_keyed(&self) -> Result<(), Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        if let Err(problem) = self.check_endpoint() {
            problems.push(problem);
        }
        problems.extend(self.check_limits().err());
        problems.extend(self.check_durations());
        problems.extend(self.empty_paths());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The endpoint, and the TLS settings that depend on it.
    fn check_endpoint(&self) -> Result<(), (&'static str, String)> {
        let url = self
            .endpoint_url()
            .map_err(|m| ("endpoint", m.to_string()))?;
        if self.ca_file.is_some() && self.server_certificate.is_some() {
            return Err(("server_certificate", "[upload] sets both ca_file and server_certificate; choose one: ca_file for the CA that issued the server's certificate, server_certificate for exactly the server's own (self-signed) certificate".into()));
        }
        // A pin on a plain-http endpoint would promise a protection that
        // is not there. (`ca_file` is older and merely unused there.)
        if url.scheme() != "https"
            && (self.server_certificate.is_some() || !self.pin_sha256.is_empty())
        {
            return Err((
                "endpoint",
                format!(
                    "[upload] server_certificate and pin_sha256 need an https:// endpoint, and `{}` is plain http://",
                    self.endpoint_shown()
                ),
            ));
        }
        Ok(())
    }

    /// The path keys set but left empty, each with what to write instead
    /// (an empty path would name the config's own directory).
    fn empty_paths(&self) -> Vec<(&'static str, String)> {
        let keys = [
            (
                "ca_file",
                &self.ca_file,
                "give a PEM file of the certificate authorities to trust, or remove the line to trust the system roots only",
            ),
            (
                "server_certificate",
                &self.server_certificate,
                "give the receiver's own certificate (PEM), or remove the line",
            ),
            (
                "token_file",
                &self.token_file,
                "give the file holding the bearer token, or remove the line to send none",
            ),
        ];
        keys.into_iter()
            .filter(|(_, path, _)| path.as_ref().is_some_and(|p| p.as_os_str().is_empty()))
            .map(|(key, _, instead)| (key, format!("[upload] {key} is empty: {instead}")))
            .collect()
    }

    /// The size of a batch.
    fn check_limits(&self) -> Result<(), (&'static str, String)> {
        if self.batch_max_records == 0 || self.batch_max_records > BATCH_MAX_RECORDS_LIMIT {
            return Err((
                "batch_max_records",
                format!(
                    "[upload] batch_max_records must be between 1 and {BATCH_MAX_RECORDS_LIMIT}, not {}",
                    self.batch_max_records
                ),
            ));
        }
        if self.batch_max_bytes < 1024 {
            return Err((
                "batch_max_bytes",
                format!(
                    "[upload] batch_max_bytes must be at least 1024, not {}",
                    self.batch_max_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Every duration within its range (`crate::ranges`), then the pairs
    /// that bound each other.
    fn check_durations(&self) -> Vec<(&'static str, String)> {
        let out_of_range: Vec<_> = [
            (ranges::BATCH_MAX_DELAY, self.batch_max_delay),
            (ranges::TIMEOUT, self.timeout),
            (ranges::RETRY_INITIAL, self.retry_initial),
            (ranges::RETRY_MAX, self.retry_max),
            (ranges::INTERVAL_MIN, self.interval_min),
            (ranges::INTERVAL_MAX, self.interval_max),
        ]
        .into_iter()
        .filter_map(|(range, value)| range.check(value).err())
        .collect();
        if !out_of_range.is_empty() {
            return out_of_range;
        }
        let mut problems = Vec::new();
        if self.retry_initial.0 > self.retry_max.0 {
            problems.push((
                "retry_initial",
                "[upload] retry_initial must not be longer than retry_max".into(),
            ));
        }
        if self.interval_min.0 > self.interval_max.0 {
            problems.push((
                "interval_min",
                "[upload] interval_min must not be longer than interval_max".into(),
            ));
        }
        problems
    }

    /// How much one batch may carry.
    pub fn batch_limits(&self) -> crate::store::BatchLimits {
        crate::store::BatchLimits {
            records: self.batch_max_records,
            bytes: self.batch_max_bytes,
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: self.retry_initial.0,
            max: self.retry_max.0,
        }
    }

    /// The bounds of a receiver-set upload interval.
    pub fn interval_bounds(&self) -> schedule::IntervalBounds {
        schedule::IntervalBounds {
            min: self.interval_min.0,
            max: self.interval_max.0,
        }
    }

    /// The upload pace these settings make.
    pub fn pace(&self) -> schedule::Pace {
        schedule::Pace::new(
            self.retry_policy(),
            self.batch_max_delay.0,
            self.interval_bounds(),
        )
    }
}

/// Who is sending: what an OTLP resource names besides the records' own
/// fields (the region), and the installation whose id seeds the jitter of
/// every schedule. The id is read at each use: after a withdrawal replaces
/// it, the new one's phase applies, so the old and the new cannot be
/// linked by when they send.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub region: crate::catalogue::Region,
    installation_id: std::sync::Arc<arc_swap::ArcSwap<uuid::Uuid>>,
}

impl AgentIdentity {
    pub fn new(
        region: crate::catalogue::Region,
        installation_id: std::sync::Arc<arc_swap::ArcSwap<uuid::Uuid>>,
    ) -> Self {
        Self {
            region,
            installation_id,
        }
    }

    /// An identity whose installation id never changes (tests, tools).
    pub fn fixed(region: crate::catalogue::Region, installation_id: uuid::Uuid) -> Self {
        Self::new(
            region,
            std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(installation_id)),
        )
    }

    /// The jitter of the installation as it is now.
    pub fn jitter(&self) -> schedule::Jitter {
        schedule::Jitter::of(&self.installation_id.load())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(extra: &str) -> Result<UploadConfig, String> {
        let text = format!("endpoint = \"https://127.0.0.1:9/v1/batches\"\n{extra}");
        let config: UploadConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config
            .validate_keyed()
            .map(|()| config)
            .map_err(|problems| {
                let messages: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
                messages.join("; ")
            })
    }

    #[test]
    fn pins_are_validated_at_load_naming_the_bad_entry() {
        let good = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let config = upload(&format!("pin_sha256 = [\"{good}\", \"sha256//{good}\"]")).unwrap();
        assert_eq!(config.pin_sha256.len(), 2);
        let err = upload(&format!("pin_sha256 = [\"{good}\", \"abc=\"]")).unwrap_err();
        assert!(err.contains("`abc=`"), "{err}");
        assert!(err.contains("not 32"), "{err}");
    }

    #[test]
    fn ca_file_and_server_certificate_conflict() {
        let err = upload("ca_file = \"ca.pem\"\nserver_certificate = \"server.pem\"").unwrap_err();
        assert!(err.contains("choose one"), "{err}");
        assert!(upload("server_certificate = \"server.pem\"").is_ok());
    }

    #[test]
    fn debug_shows_the_token_path_only() {
        let config = upload("token_file = \"/etc/consentry/token\"").unwrap();
        assert!(format!("{config:?}").contains("/etc/consentry/token"));
    }

    #[test]
    fn user_info_query_and_fragment_are_cut_from_endpoints_shown() {
        assert_eq!(
            redacted("https://alice:s3cret@host:8443/v1/batches?x=1"),
            "https://<credentials removed>@host:8443/v1/batches?<removed>"
        );
        assert_eq!(
            redacted("https://alice:s3?cr#et@host/v1"),
            "https://<credentials removed>@host/v1"
        );
        assert_eq!(
            redacted("https://host/v1#token=abc"),
            "https://host/v1#<removed>"
        );
        assert_eq!(
            redacted("https://host?token=abc#x"),
            "https://host?<removed>"
        );
        assert_eq!(redacted("host/v1?token=abc"), "host/v1?<removed>");
        assert_eq!(redacted("https://host/a@b"), "https://host/a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn a_query_or_fragment_is_refused_without_showing_it() {
        for endpoint in [
            "https://host/v1?token=abc",
            "https://host/v1?",
            "https://host/v1#abc",
            "https://host/v1?a=1#abc",
            "http://127.0.0.1:9/?token=abc",
        ] {
            let config: UploadConfig = toml::from_str(&format!(
                "endpoint = \"{endpoint}\"\nallow_plaintext_loopback = true"
            ))
            .unwrap();
            let (key, message) = &config.validate_keyed().unwrap_err()[0];
            assert_eq!(*key, "endpoint");
            assert!(message.contains("has a query or fragment"), "{message}");
            assert!(message.contains("token_file"), "{message}");
            assert!(message.contains("<removed>`"), "{message}");
            assert!(
                !message.contains("abc") && !message.contains("a=1"),
                "{message}"
            );
        }
    }
}

//! Delivery: from the queue to the receiver, one batch at a time.
//!
//! [`Uploader::upload_pending`] reads the consent snapshot (the gate's, read
//! again before every batch) and purges what is no longer allowed, then
//! claims batches through the store writer, encodes them (`protocol`), sends
//! them (`transport`) and applies the outcome (`policy`): a 2xx deletes the
//! batch, anything else leaves it queued and sets when to try again. Every
//! outcome is written to the audit trail. The uploader never decides
//! consent itself: it asks the gate.

pub mod diagnose;
pub mod policy;
pub mod protocol;
pub mod tls;
pub mod transport;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::HumanDuration;
use crate::consent::Registry;
use crate::gate::Gate;
use crate::store::{Batch, Durable, Store, StoreError, Writer, WriterError};
pub use policy::{Refusal, RetryPolicy, UploadResult};
use protocol::Envelope;
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
    /// `https://…`, or `http://127.0.0.1…`/`http://[::1]…` with the flag below.
    pub endpoint: String,
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
    #[serde(default = "defaults::interval")]
    pub interval: HumanDuration,
    #[serde(default = "defaults::batch_max_records")]
    pub batch_max_records: usize,
    #[serde(default = "defaults::timeout")]
    pub timeout: HumanDuration,
    #[serde(default = "defaults::retry_initial")]
    pub retry_initial: HumanDuration,
    #[serde(default = "defaults::retry_max")]
    pub retry_max: HumanDuration,
}

mod defaults {
    use super::HumanDuration;
    use std::time::Duration;
    pub fn interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(60))
    }
    pub fn batch_max_records() -> usize {
        500
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
}

/// `endpoint` with any user info (`user:password@`) cut out, for messages
/// and logs: a secret someone put in the URL is never printed.
pub fn redacted(endpoint: &str) -> String {
    let Some(scheme_end) = endpoint.find("://") else {
        return endpoint.to_owned();
    };
    let authority_start = scheme_end + 3;
    let authority_end = endpoint[authority_start..]
        .find(['/', '?', '#'])
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

impl UploadConfig {
    /// The endpoint as it may be shown: without credentials.
    pub fn endpoint_shown(&self) -> String {
        redacted(&self.endpoint)
    }

    pub fn endpoint_url(&self) -> Result<reqwest::Url, String> {
        let shown = self.endpoint_shown();
        let url = reqwest::Url::parse(&self.endpoint)
            .map_err(|err| format!("upload endpoint `{shown}` is not a URL: {err}"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "upload endpoint `{shown}` carries credentials (user info before `@`); remove them: consentry never sends credentials taken from a URL"
            ));
        }
        match url.scheme() {
            "https" => Ok(url),
            "http" => {
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                    Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                    _ => false,
                };
                if !loopback {
                    Err(format!(
                        "upload endpoint `{shown}` must use https:// (plain http:// is allowed only to a loopback address, 127.0.0.1 or [::1])"
                    ))
                } else if !self.allow_plaintext_loopback {
                    Err(format!(
                        "upload endpoint `{shown}` is plain http://; use https://, or set allow_plaintext_loopback = true for a loopback test receiver"
                    ))
                } else {
                    Ok(url)
                }
            }
            other => Err(format!(
                "upload endpoint `{shown}` has scheme `{other}`; use https://"
            )),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        let url = self.endpoint_url()?;
        if self.ca_file.is_some() && self.server_certificate.is_some() {
            return Err("[upload] sets both ca_file and server_certificate; choose one: ca_file for the CA that issued the server's certificate, server_certificate for exactly the server's own (self-signed) certificate".into());
        }
        // A pin on a plain-http endpoint would promise a protection that
        // is not there. (`ca_file` is older and merely unused there.)
        if url.scheme() != "https"
            && (self.server_certificate.is_some() || !self.pin_sha256.is_empty())
        {
            return Err(format!(
                "[upload] server_certificate and pin_sha256 need an https:// endpoint, and `{}` is plain http://",
                self.endpoint_shown()
            ));
        }
        if self.batch_max_records == 0 || self.batch_max_records > BATCH_MAX_RECORDS_LIMIT {
            return Err(format!(
                "[upload] batch_max_records must be between 1 and {BATCH_MAX_RECORDS_LIMIT}, not {}",
                self.batch_max_records
            ));
        }
        if self.retry_initial.0 > self.retry_max.0 {
            return Err("[upload] retry_initial must not be longer than retry_max".into());
        }
        Ok(())
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            initial: self.retry_initial.0,
            max: self.retry_max.0,
        }
    }
}

/// What one call of [`Uploader::upload_pending`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSummary {
    pub batches_sent: u64,
    pub records_sent: u64,
    /// Records dropped from the queue because their consent is gone.
    pub records_purged: u64,
    /// Records the receiver refused one by one, now in the dead-letter
    /// table.
    #[serde(default)]
    pub dead_lettered: u64,
    /// Records still queued afterwards.
    pub records_queued: u64,
    /// Why sending stopped early, if it did.
    pub stopped: Option<String>,
    /// Seconds until the next attempt, when waiting after a failure.
    pub retry_in_seconds: Option<u64>,
}

/// Why the uploader could not do its job at all (the queue is unusable).
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Writer(#[from] WriterError),
}

/// Why queued records are purged when their consent is gone.
pub const PURGE_REASON: &str = "consent for these purposes was withdrawn";

/// Deletes queued records whose consent was withdrawn (no clause that could
/// allow them is accepted any more), with a line in the audit trail. Any
/// other block (a renewal that is due, an acceptance the catalogue does not
/// recognise, an unusable consent file) purges nothing: fail closed, but
/// only an explicit withdrawal deletes data.
/// For the CLI when no daemon runs; the daemon purges through its writer.
pub fn purge_disallowed(store: &Store, registry: &Registry) -> Result<u64, StoreError> {
    if registry.unreadable().is_some() {
        return Ok(0);
    }
    let purged = store.purge_blocked(|purpose| !registry.may_purge(purpose), PURGE_REASON)?;
    if purged > 0 {
        tracing::info!(
            records = purged,
            "purged queued records whose consent is gone"
        );
    }
    Ok(purged)
}

/// [`purge_disallowed`] through the daemon's writer.
pub async fn purge_disallowed_via<S: Durable>(
    writer: &Writer<S>,
    registry: Arc<Registry>,
) -> Result<u64, WriterError> {
    if registry.unreadable().is_some() {
        return Ok(0);
    }
    let purged = writer
        .purge_blocked(
            move |purpose| !registry.may_purge(purpose),
            PURGE_REASON.to_owned(),
        )
        .await?;
    if purged > 0 {
        tracing::info!(
            records = purged,
            "purged queued records whose consent is gone"
        );
    }
    Ok(purged)
}

/// The batch being sent right now, so that a withdrawal can stop it: the
/// control handler publishes the new consent, then cancels an in-flight
/// batch that carries a purpose it no longer allows, and waits until the
/// uploader has let go of it. The uploader registers a batch *before* its
/// last look at the consent snapshot, so either the handler sees the batch
/// or the uploader sees the new consent: never neither.
#[derive(Default)]
pub struct InFlight {
    batch: std::sync::Mutex<Option<(Vec<String>, CancellationToken)>>,
    released: tokio::sync::Notify,
}

impl InFlight {
    fn start(&self, purposes: Vec<String>) -> CancellationToken {
        let token = CancellationToken::new();
        *self.lock() = Some((purposes, token.clone()));
        token
    }

    fn finish(&self) {
        *self.lock() = None;
        self.released.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Vec<String>, CancellationToken)>> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cancels the batch in flight if it carries a purpose `still_allowed`
    /// refuses, and returns once the uploader has let go of it. Returns
    /// whether a batch was stopped.
    pub async fn stop_unless(&self, still_allowed: impl Fn(&str) -> bool) -> bool {
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        {
            let batch = self.lock();
            let Some((purposes, token)) = batch.as_ref() else {
                return false;
            };
            if purposes.iter().all(|p| still_allowed(p)) {
                return false;
            }
            token.cancel();
        }
        released.await;
        true
    }
}

/// Sends queued batches, remembering failures between calls. Owned by one
/// task: the daemon's uploader, or the CLI's `flush` when no daemon runs.
pub struct Uploader<S> {
    writer: Writer<S>,
    gate: Arc<Gate>,
    in_flight: Arc<InFlight>,
    transport: Transport,
    policy: RetryPolicy,
    batch_max_records: usize,
    /// Smaller batches while bisecting a refused one (see `Refusal`).
    split_limit: Option<usize>,
    consecutive_failures: u32,
    not_before: Option<Instant>,
}

impl<S: Durable> Uploader<S> {
    pub fn new(
        writer: Writer<S>,
        gate: Arc<Gate>,
        transport: Transport,
        config: &UploadConfig,
    ) -> Self {
        Self {
            writer,
            gate,
            in_flight: Arc::default(),
            transport,
            policy: config.retry_policy(),
            batch_max_records: config.batch_max_records,
            split_limit: None,
            consecutive_failures: 0,
            not_before: None,
        }
    }

    /// The batch in flight, for whoever must be able to stop it.
    pub fn in_flight(&self) -> Arc<InFlight> {
        Arc::clone(&self.in_flight)
    }

    /// When the next attempt is due after a failure (`None`: now).
    pub fn not_before(&self) -> Option<Instant> {
        self.not_before
    }

    /// Purges what the consent snapshot no longer allows, then sends
    /// batches until the queue is empty or an attempt fails. The snapshot is
    /// read again before every batch, so a revoke stops a drain between two
    /// batches. `force` ignores the wait after a failure (an explicit
    /// `flush`).
    pub async fn upload_pending(&mut self, force: bool) -> Result<UploadSummary, UploadError> {
        let mut summary = UploadSummary::default();
        if !force && self.not_before.is_some_and(|t| Instant::now() < t) {
            summary.retry_in_seconds = self
                .not_before
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs());
            summary.stopped = Some("waiting after a failed attempt".into());
            summary.records_queued = self.writer.depth();
            return Ok(summary);
        }
        loop {
            let registry = self.gate.registry();
            if let Some(why) = registry.unreadable() {
                // Fail closed without destroying anything: hold the queue.
                summary.stopped = Some(format!("holding the queue: {why}"));
                break;
            }
            summary.records_purged +=
                purge_disallowed_via(&self.writer, Arc::clone(&registry)).await?;
            let sendable: Vec<String> = registry
                .decisions()
                .filter(|d| d.is_allowed())
                .map(|d| d.purpose().to_owned())
                .collect();
            let Some(batch) = self
                .writer
                .claim_batch(self.split_limit.unwrap_or(self.batch_max_records), sendable)
                .await?
            else {
                break;
            };
            let mut purposes: Vec<String> =
                batch.records.iter().map(|r| r.purpose.clone()).collect();
            purposes.sort();
            purposes.dedup();
            // Registered first, then the last look at the consent: see
            // `InFlight`.
            let cancel = self.in_flight.start(purposes.clone());
            if purposes.iter().any(|p| !self.gate.is_allowed(p)) {
                // Consent changed since the purge above: purge again before
                // anything of this batch can leave.
                self.in_flight.finish();
                continue;
            }
            let sent = self.send(batch, cancel, &mut summary).await;
            self.in_flight.finish();
            if !sent? {
                break;
            }
        }
        summary.records_queued = self.writer.depth();
        Ok(summary)
    }

    /// Sends one batch and applies the outcome; false when sending should
    /// stop for now.
    async fn send(
        &mut self,
        batch: Batch,
        cancel: CancellationToken,
        summary: &mut UploadSummary,
    ) -> Result<bool, UploadError> {
        let count = batch.records.len() as u64;
        let body = match Envelope::from_batch(&batch) {
            Ok(envelope) => envelope.encode(),
            Err(err) => {
                // Unsendable rows must not block the queue forever.
                tracing::error!(batch = %batch.id, error = %err, "dropping a corrupt batch");
                self.writer
                    .complete_batch(batch.id, "dropped", err.to_string())
                    .await?;
                return Ok(true);
            }
        };
        let result = tokio::select! {
            result = self.transport.send(batch.id, body) => result,
            _ = cancel.cancelled() => {
                // Consent for part of it was withdrawn mid-send: the request
                // is abandoned, and the purge that follows removes it.
                tracing::info!(batch = %batch.id, "upload stopped: consent withdrawn");
                summary.stopped = Some("stopped: consent withdrawn during the upload".into());
                return Ok(true);
            }
        };
        match &result {
            UploadResult::Accepted { .. } => {
                self.writer
                    .complete_batch(batch.id, "uploaded", result.detail())
                    .await?;
                tracing::info!(batch = %batch.id, records = count, "batch delivered");
                self.consecutive_failures = 0;
                self.not_before = None;
                self.split_limit = None;
                summary.batches_sent += 1;
                summary.records_sent += count;
                Ok(true)
            }
            UploadResult::Refused { status, detail }
                if Refusal::of(*status, batch.records.len()) != Refusal::RetryLater =>
            {
                if Refusal::of(*status, batch.records.len()) == Refusal::Split {
                    // Send it again in halves, at once: a refusal of the
                    // content is no reason to wait.
                    self.split_limit = Some((batch.records.len() / 2).max(1));
                    self.writer
                        .audit(
                            "refused",
                            Some(batch.id),
                            count,
                            format!("{detail}; sending it again in halves"),
                        )
                        .await?;
                    self.writer.release_batch(batch.id).await?;
                } else {
                    let moved = self
                        .writer
                        .dead_letter_batch(batch.id, *status, detail.clone())
                        .await?;
                    tracing::warn!(batch = %batch.id, status, "record refused by the receiver; moved to the dead-letter table");
                    summary.dead_lettered += moved;
                }
                Ok(true)
            }
            UploadResult::Retryable { .. } | UploadResult::Refused { .. } => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                let wait =
                    self.policy
                        .wait_after(&result, self.consecutive_failures, fastrand::f64());
                self.not_before = Some(Instant::now() + wait);
                let detail = result.detail();
                self.writer
                    .audit("failed", Some(batch.id), count, detail.clone())
                    .await?;
                tracing::warn!(batch = %batch.id, records = count, error = %detail, retry_in = ?wait, "batch not delivered; it stays queued");
                summary.stopped = Some(detail);
                summary.retry_in_seconds = Some(wait.as_secs());
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(extra: &str) -> Result<UploadConfig, String> {
        let text = format!("endpoint = \"https://127.0.0.1:9/v1/batches\"\n{extra}");
        let config: UploadConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        config.validate().map(|()| config)
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
    fn user_info_is_cut_from_endpoints_shown() {
        assert_eq!(
            redacted("https://alice:s3cret@host:8443/v1/batches?x=1"),
            "https://<credentials removed>@host:8443/v1/batches?x=1"
        );
        assert_eq!(redacted("https://host/a@b"), "https://host/a@b");
        assert_eq!(redacted("not a url"), "not a url");
    }
}

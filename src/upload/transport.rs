//! The HTTPS transport: reqwest with rustls, trusting the system roots plus
//! an optional CA file, no proxies, and plain HTTP only to loopback when the
//! config explicitly allows it (checked when the config is loaded).
//!
//! The transport sends bytes and reports an [`UploadResult`]; it never reads
//! the queue and never decides consent.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use uuid::Uuid;

use super::UploadConfig;
use super::policy::{UploadResult, parse_retry_after};

/// The header that makes a retried batch safe to deliver twice.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot read CA file {path}: {source}")]
    CaFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CA file {path} holds no PEM certificate: {message}")]
    CaFileInvalid { path: PathBuf, message: String },
    #[error("cannot build the HTTPS client: {0}")]
    Client(#[source] reqwest::Error),
}

/// A client bound to one endpoint.
#[derive(Debug, Clone)]
pub struct Transport {
    client: reqwest::Client,
    endpoint: reqwest::Url,
}

impl Transport {
    pub fn new(config: &UploadConfig) -> Result<Self, TransportError> {
        let endpoint = config
            .endpoint_url()
            .expect("endpoint is validated when the config loads");
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(config.timeout.0)
            .connect_timeout(config.timeout.0.min(Duration::from_secs(10)))
            .user_agent(concat!("consentry/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!config.allow_plaintext_loopback);
        if let Some(path) = &config.ca_file {
            builder = builder.tls_certs_merge(read_ca_file(path)?);
        }
        let client = builder.build().map_err(TransportError::Client)?;
        Ok(Self { client, endpoint })
    }

    pub fn endpoint(&self) -> &reqwest::Url {
        &self.endpoint
    }

    /// POSTs one gzip-compressed batch and classifies the outcome.
    pub async fn send(&self, batch_id: Uuid, body: Vec<u8>) -> UploadResult {
        let request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(CONTENT_ENCODING, HeaderValue::from_static("gzip"))
            .header(IDEMPOTENCY_KEY, batch_id.to_string())
            .body(body);
        match request.send().await {
            Ok(response) => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                UploadResult::from_status(response.status().as_u16(), retry_after)
            }
            Err(err) => UploadResult::Retryable {
                status: None,
                retry_after: None,
                detail: describe(&err),
            },
        }
    }
}

/// The error and its causes on one line: reqwest's own message alone
/// ("error sending request") does not say what went wrong.
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn read_ca_file(path: &Path) -> Result<Vec<reqwest::Certificate>, TransportError> {
    let pem = std::fs::read(path).map_err(|source| TransportError::CaFileUnreadable {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |message: String| TransportError::CaFileInvalid {
        path: path.to_path_buf(),
        message,
    };
    let certificates =
        reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no CERTIFICATE block found".into()));
    }
    Ok(certificates)
}

//! The compression fallback: zstd by default (`[upload] compression`); a
//! receiver that answers 415 Unsupported Media Type to a zstd body is sent
//! gzip from then on. The refusal is remembered in the store, per
//! endpoint, so a restart does not ask again (for [`ASK_AGAIN_AFTER`]: a
//! receiver upgraded to take zstd gets it back within a week, at the cost
//! of one more 415 if it was not); the refused batch goes again at once,
//! the same document recompressed, under its own id, and the kept body is
//! replaced by what was sent last.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Uploader;
use crate::store::{Durable, Rekept};
use crate::upload::UploadError;
use crate::upload::compression::Compression;
use crate::upload::protocol::Body;
use crate::upload::transport::Answer;

/// How long a refusal of zstd is remembered.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a refusal recorded as `value` (its Unix time) still holds at
/// `now`; a value that is not a time holds (nothing is asked again on a
/// guess).
fn still_refused(value: &str, now: u64) -> bool {
    value.parse::<u64>().map_or(true, |at| {
        now.saturating_sub(at) < ASK_AGAIN_AFTER.as_secs()
    })
}

/// The `meta` key remembering that `endpoint` refused zstd.
fn meta_key(endpoint: &str) -> String {
    format!("compression_refused:{endpoint}")
}

/// Whether `answer` refuses the compression of what was sent: 415 to zstd.
pub(super) fn refuses(answer: &Answer, sent: Compression) -> bool {
    sent == Compression::Zstd && answer.result.status() == Some(415)
}

impl<S: Durable> Uploader<S> {
    /// The compression of the next new body.
    pub(super) async fn compression(&mut self) -> Result<Compression, UploadError> {
        if self.compression == Compression::Zstd && !self.compression_known {
            let key = meta_key(&crate::upload::redacted(self.transport.endpoint().as_str()));
            let refused = self.writer.meta(key).await?;
            if refused.is_some_and(|at| still_refused(&at, unix_now())) {
                self.compression = Compression::Gzip;
            }
            self.compression_known = true;
        }
        Ok(self.compression)
    }

    /// When `answer` refuses zstd: remembers it, switches to gzip, and
    /// (for a batch) keeps `body` recompressed as gzip, so that it goes
    /// again at once. True when so.
    pub(super) async fn refused_zstd(
        &mut self,
        answer: &Answer,
        sent: Compression,
        body: Option<(&str, &Body)>,
    ) -> Result<bool, UploadError> {
        if !refuses(answer, sent) {
            return Ok(false);
        }
        let endpoint = crate::upload::redacted(self.transport.endpoint().as_str());
        tracing::warn!(%endpoint, "the receiver refused a zstd body (415); sending gzip to it from now on");
        self.compression = Compression::Gzip;
        self.compression_known = true;
        let rekept = match body {
            Some((id, body)) => {
                let gzip = Body::of_document(&body.json()?, Compression::Gzip);
                Some(Rekept {
                    batch_id: id.to_owned(),
                    bytes: gzip.bytes,
                    sha256: gzip.sha256,
                })
            }
            None => None,
        };
        let key = meta_key(&endpoint);
        let detail = format!("{endpoint} answered 415 to a zstd body; gzip from now on");
        self.writer
            .compression_refused(key, unix_now().to_string(), rekept, detail)
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_holds_for_a_week_then_zstd_is_asked_again() {
        let week = ASK_AGAIN_AFTER.as_secs();
        assert!(still_refused("1000", 1000));
        assert!(still_refused("1000", 1000 + week - 1));
        assert!(!still_refused("1000", 1000 + week));
        assert!(still_refused("gzip", 1000 + 10 * week), "not a time: holds");
        assert!(still_refused("5000", 1000), "a clock set back: holds");
    }
}

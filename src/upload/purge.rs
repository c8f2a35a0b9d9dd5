//! Purging what consent no longer allows: only an explicit withdrawal
//! deletes queued data, and the audit trail names the clause.

use std::sync::Arc;

use crate::consent::Registry;
use crate::store::{Durable, Store, StoreError, Writer, WriterError};

/// Why queued records are purged when their consent is gone.
pub const PURGE_REASON: &str = "consent for these purposes was withdrawn";

/// [`PURGE_REASON`] with the registry's words for each withdrawal (which
/// clause is no longer accepted), so the trail names the clause.
fn purge_reason(registry: &Registry) -> String {
    let mut reasons: Vec<&str> = registry
        .decisions()
        .filter(|d| registry.may_purge(d.purpose()))
        .map(|d| d.reason())
        .collect();
    reasons.sort_unstable();
    reasons.dedup();
    if reasons.is_empty() {
        PURGE_REASON.to_owned()
    } else {
        format!("{PURGE_REASON} ({})", reasons.join("; "))
    }
}

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
    let why = purge_reason(registry);
    let purged = store.purge_blocked(|purpose| !registry.may_purge(purpose), &why)?;
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
    let why = purge_reason(&registry);
    let purged = writer
        .purge_blocked(move |purpose| !registry.may_purge(purpose), why)
        .await?;
    if purged > 0 {
        tracing::info!(
            records = purged,
            "purged queued records whose consent is gone"
        );
    }
    Ok(purged)
}

//! The consent receipt log: append-only, one row per receipt, with the
//! snapshot the next comparison starts from (see `consent::receipt`).
//! Recording compares, appends and moves the snapshot in the caller's
//! transaction, with one audit line per receipt so that `history` shows
//! consent events beside uploads and purges.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{Connection, params};

use super::StoreError;
use super::queue::{insert_audit, meta_get, meta_set};
use crate::catalogue::{Catalogue, ERASURE_KEY};
use crate::consent::Act;
use crate::consent::receipt::{self, DeletionRequest, Provenance, Receipt, RecordKeys, Snapshot};

/// The `meta` key of the last recorded snapshot.
const SNAPSHOT_KEY: &str = "consent_snapshot";

/// What [`record`] appended, and the snapshot now recorded.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub receipts: Vec<Receipt>,
    pub snapshot: Snapshot,
}

/// The snapshot last recorded; before the first, nothing accepted in
/// `region`.
pub fn last_snapshot(connection: &Connection, region: &str) -> Result<Snapshot, StoreError> {
    Ok(meta_get(connection, SNAPSHOT_KEY)?
        .and_then(|json| serde_json::from_str::<Snapshot>(&json).ok())
        .unwrap_or_else(|| Snapshot {
            region: region.to_owned(),
            ..Snapshot::default()
        }))
}

/// The clauses whose last recorded event was a withdrawal, read from the
/// database in `state_dir` without creating, checking or moving anything:
/// for `status`, which evaluates the consent file itself and must still
/// tell a withdrawn purpose from one never accepted (the file alone cannot:
/// a revoked clause is simply absent from it). Empty when there is no
/// database yet.
pub fn peek_withdrawn(state_dir: &Path) -> Result<BTreeSet<String>, StoreError> {
    if !super::database_exists(state_dir)? {
        return Ok(BTreeSet::new());
    }
    let connection = Connection::open_with_flags(
        state_dir.join(super::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    Ok(last_snapshot(&connection, "")?.withdrawn)
}

/// Records what changed since the last snapshot: `observe` turns the last
/// one into what is in force now (`Snapshot::observed`), each difference
/// becomes a receipt (declared by `how.act`, or observed), appended with an
/// audit line (and a deletion request for a withdrawal whose clause
/// declares one), and the new snapshot is stored, all in the caller's
/// transaction. The first call records what is in force as events from
/// nothing.
pub fn record(
    connection: &Connection,
    catalogue: &Catalogue,
    region: &str,
    observe: impl FnOnce(&Snapshot) -> Snapshot,
    how: &Provenance<'_>,
) -> Result<Recorded, StoreError> {
    let before = last_snapshot(connection, region)?;
    let now = observe(&before);
    if before == now {
        return Ok(Recorded {
            receipts: Vec::new(),
            snapshot: before,
        });
    }
    let (receipts, after) = receipt::diff(&before, &now, catalogue, how);
    for receipt in &receipts {
        append(connection, receipt, catalogue)?;
    }
    meta_set(
        connection,
        SNAPSHOT_KEY,
        &serde_json::to_string(&after).expect("a snapshot serializes"),
    )?;
    Ok(Recorded {
        receipts,
        snapshot: after,
    })
}

/// Records a declined clause (`act`, a decline): its declared receipt and
/// audit line, in the caller's transaction; the snapshot stays as it is (a
/// decline changes nothing). `None`, recording nothing, when the last
/// recorded snapshot has the clause accepted (its withdrawal is a revoke;
/// the command checked the file, but a withdrawal by hand may not be
/// recorded yet), or when `act` is not a decline.
pub fn decline(
    connection: &Connection,
    catalogue: &Catalogue,
    region: &str,
    act: &Act,
) -> Result<Option<Receipt>, StoreError> {
    if last_snapshot(connection, region)?
        .accepted
        .contains_key(&act.clause)
    {
        return Ok(None);
    }
    let Some(receipt) = receipt::declined(act, catalogue, region) else {
        return Ok(None);
    };
    append(connection, &receipt, catalogue)?;
    Ok(Some(receipt))
}

/// Appends one receipt, its audit line, and the deletion request a
/// withdrawal makes when its clause declares one.
fn append(
    connection: &Connection,
    receipt: &Receipt,
    catalogue: &Catalogue,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(receipt).expect("a receipt serializes");
    connection
        .prepare_cached(
            "INSERT INTO consent_receipt (id, at, event, clause, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            receipt.receipt_id.to_string(),
            receipt.timestamp,
            receipt.event.as_str(),
            receipt.clause.as_ref().map(|c| c.id.clone()),
            json
        ])?;
    insert_audit(connection, "consent", None, 0, &summary(receipt))?;
    // Read before a withdrawal replaces them: the keys the records carried.
    let erasing = receipt
        .clause
        .as_ref()
        .filter(|c| catalogue.clause_carries(&c.id, ERASURE_KEY));
    let keys = RecordKeys {
        installation_id: super::queue::installation_id(connection)?,
        erasure_key: match erasing {
            Some(clause) => Some(super::queue::erasure_key(connection, &clause.id)?),
            None => None,
        },
    };
    let Some(request) = DeletionRequest::for_withdrawal(receipt, catalogue, keys) else {
        return Ok(());
    };
    connection
        .prepare_cached("INSERT INTO deletion_request (id, at, body) VALUES (?1, ?2, ?3)")?
        .execute(params![
            request.request_id.to_string(),
            request.requested_at,
            serde_json::to_string(&request).expect("a request serializes")
        ])?;
    insert_audit(
        connection,
        "deletion-request",
        None,
        0,
        &format!(
            "queued: erase what {} sent under {} in use ({}); request {}",
            request.clause.id,
            request.names(),
            request.purposes.join(", "),
            request.request_id
        ),
    )
}

/// One line for the audit trail.
fn summary(receipt: &Receipt) -> String {
    let how = match receipt.is_declared() {
        true => format!("{}, declared", receipt.collection_method),
        false => format!("{}, observed", receipt.collection_method),
    };
    format!(
        "{} {}: {} -> {} ({how}; receipt {})",
        receipt.event.as_str(),
        receipt.subject(),
        receipt.previous_state,
        receipt.new_state,
        receipt.receipt_id
    )
}

/// Every receipt, oldest first.
pub fn list(connection: &Connection) -> Result<Vec<Receipt>, StoreError> {
    let mut query = connection.prepare("SELECT body FROM consent_receipt ORDER BY seq")?;
    let bodies = query
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    bodies
        .iter()
        .map(|json| {
            serde_json::from_str(json).map_err(|err| StoreError::Corrupt {
                what: "consent receipt",
                message: err.to_string(),
            })
        })
        .collect()
}

/// The receipt whose id is `id`, or starts with it when exactly one does.
pub fn get(connection: &Connection, id: &str) -> Result<Vec<Receipt>, StoreError> {
    let mut query = connection.prepare(
        "SELECT body FROM consent_receipt WHERE id >= ?1 AND id < ?1 || x'7f' ORDER BY id LIMIT 2",
    )?;
    let bodies = query
        .query_map(params![id], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

/// Deletion requests no receiver has acknowledged yet, oldest first.
pub fn pending_deletions(connection: &Connection) -> Result<Vec<DeletionRequest>, StoreError> {
    let mut query = connection
        .prepare("SELECT body FROM deletion_request WHERE sent_at IS NULL ORDER BY at")?;
    let bodies = query
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies
        .iter()
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect())
}

/// A receiver acknowledged deletion request `id`.
pub fn deletion_sent(
    connection: &Connection,
    id: uuid::Uuid,
    detail: &str,
) -> Result<(), StoreError> {
    connection.execute(
        "UPDATE deletion_request SET sent_at = ?1 WHERE id = ?2",
        params![
            crate::clock::rfc3339(std::time::SystemTime::now()),
            id.to_string()
        ],
    )?;
    insert_audit(
        connection,
        "deletion-request",
        None,
        0,
        &format!("sent: {detail}; request {id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn snapshot(region: &str, accepted: &[(&str, u32)]) -> Snapshot {
        Snapshot {
            region: region.into(),
            accepted: accepted
                .iter()
                .map(|(c, v)| ((*c).to_owned(), (*v, "ab".repeat(32), "cli".to_owned())))
                .collect(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_log_grows_by_one_receipt_per_change_and_never_repeats_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalogue = Catalogue::embedded();
        let how = Provenance::observed_now();
        let record = |s: &Snapshot| {
            let now = s.clone();
            store
                .write(|c| record(c, &catalogue, "global", |_| now, &how))
                .unwrap()
                .receipts
        };
        assert_eq!(record(&snapshot("global", &[("eula", 3)])).len(), 1);
        assert!(record(&snapshot("global", &[("eula", 3)])).is_empty());
        assert_eq!(record(&snapshot("global", &[])).len(), 1);
        assert_eq!(record(&snapshot("eu", &[])).len(), 1);
        let log = store.read(list).unwrap();
        assert_eq!(log.len(), 3);
        let id = log[1].receipt_id.to_string();
        let found = store.read(|c| get(c, &id[..8])).unwrap();
        assert_eq!(found, vec![log[1].clone()]);
        let trail = store.recent_audit(10).unwrap();
        assert_eq!(trail.iter().filter(|a| a.event == "consent").count(), 3);
        assert!(
            trail.iter().any(|a| a.detail.starts_with("revoke eula v3")),
            "{trail:?}"
        );
    }

    /// A deletion request names what the clause's records carry, as it
    /// was before the withdrawal replaced it, and nothing they do not.
    #[test]
    fn a_deletion_request_names_the_key_the_clause_s_records_carried() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalogue = Catalogue::embedded();
        let how = Provenance::observed_now();
        let record = |s: Snapshot| {
            store
                .write(|c| record(c, &catalogue, "global", |_| s, &how))
                .unwrap()
        };
        let key = store
            .read(|c| super::super::queue::erasure_key(c, "marketing"))
            .unwrap();
        record(snapshot("global", &[("eula", 4), ("marketing", 3)]));
        record(snapshot("global", &[("eula", 4)]));
        let requests = store.read(pending_deletions).unwrap();
        assert_eq!(requests.len(), 1);
        let marketing = &requests[0];
        assert_eq!(marketing.clause.id, "marketing");
        assert_eq!(marketing.erasure_key, Some(key));
        assert_eq!(
            marketing.installation_id, None,
            "promotions records do not carry it: naming it would link them to the licence's"
        );
        assert_eq!(marketing.purposes, ["promotions"]);
        let json = serde_json::to_value(marketing).unwrap();
        assert!(json.get("installation_id").is_none(), "{json}");
        assert_eq!(json["erasure_key"], key.to_string());
        let trail = store.recent_audit(10).unwrap();
        assert!(
            trail.iter().any(|a| a.event == "deletion-request"
                && a.detail.contains("under the clause's erasure key in use")),
            "{trail:?}"
        );
    }

    #[test]
    fn a_peek_tells_a_withdrawn_clause_from_one_never_accepted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(peek_withdrawn(dir.path()).unwrap().is_empty());
        assert!(
            !dir.path().join(crate::store::DATABASE_FILE).exists(),
            "a peek creates nothing"
        );
        let store = Store::open(dir.path()).unwrap();
        let catalogue = Catalogue::embedded();
        let how = Provenance::observed_now();
        let record = |s: Snapshot| {
            store
                .write(|c| record(c, &catalogue, "global", |_| s, &how))
                .unwrap();
        };
        record(snapshot("global", &[("eula", 3)]));
        assert!(peek_withdrawn(dir.path()).unwrap().is_empty());
        record(snapshot("global", &[("eula", 3), ("ksn", 3)]));
        record(snapshot("global", &[("eula", 3)]));
        let withdrawn = peek_withdrawn(dir.path()).unwrap();
        assert_eq!(withdrawn, BTreeSet::from(["ksn".to_owned()]));
        record(snapshot("global", &[("eula", 3), ("ksn", 3)]));
        assert!(peek_withdrawn(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn a_decline_is_one_declared_receipt_that_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let catalogue = Catalogue::embedded();
        let ksn = catalogue.clause("ksn").unwrap();
        let act = Act::decline(ksn, crate::consent::Method::Installer);
        let receipt = store
            .write(|c| decline(c, &catalogue, "global", &act))
            .unwrap()
            .expect("a clause not accepted can be declined");
        assert_eq!(receipt.event, receipt::Event::Decline);
        assert_eq!(receipt.act_id, Some(act.id));
        assert_eq!(receipt.timestamp, act.at);
        assert_eq!(receipt.collection_method, "installer");
        assert!(receipt.observed.is_none());
        assert_eq!(
            (receipt.previous_state.as_str(), receipt.new_state.as_str()),
            ("not accepted", "not accepted")
        );
        let clause = receipt.clause.as_ref().unwrap();
        assert_eq!(
            (clause.version, clause.text_sha256.as_str()),
            (ksn.version, ksn.text_sha256.as_str())
        );
        assert!(
            receipt
                .purposes
                .iter()
                .any(|p| p.purpose == "ksn_scan_aggregates" && p.basis == "consent")
        );
        assert_eq!(store.read(list).unwrap(), vec![receipt]);
        // Nothing moved: no snapshot, no withdrawal, no deletion request.
        assert_eq!(
            store.read(|c| last_snapshot(c, "global")).unwrap(),
            snapshot("global", &[])
        );
        assert!(store.read(pending_deletions).unwrap().is_empty());
        let trail = store.recent_audit(10).unwrap();
        assert!(
            trail.iter().any(|a| a.detail.starts_with(&format!(
                "decline ksn v{}: not accepted -> not accepted (installer, declared",
                ksn.version
            ))),
            "{trail:?}"
        );

        // Accepted in the record: refused, nothing appended.
        let how = Provenance::observed_now();
        let accepted = snapshot("global", &[("eula", 3), ("ksn", 3)]);
        store
            .write(|c| record(c, &catalogue, "global", |_| accepted, &how))
            .unwrap();
        let before = store.read(list).unwrap().len();
        let again = Act::decline(ksn, crate::consent::Method::Cli);
        assert!(
            store
                .write(|c| decline(c, &catalogue, "global", &again))
                .unwrap()
                .is_none()
        );
        assert_eq!(store.read(list).unwrap().len(), before);
    }
}

//! How the product was last activated: one `meta` entry, a durable fact
//! the consent decisions depend on (`consent::Registry::with_activation`).
//!
//! It is written by the ingest job that carries the `activation` event, in
//! the same transaction as that chunk's records, with an audit line; read
//! by the consent owner at its first application (so it holds across a
//! restart), and by `status` without a daemon. Nothing else writes it, and
//! the store decides nothing with it.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;
use super::queue::{insert_audit, meta_get, meta_set};
use crate::catalogue::ActivationMethod;

/// The `meta` key (kept by a quarantine with the installation id).
pub const KEY: &str = "activation_method";

/// How the product was last activated; `None` before any activation (or
/// when the entry cannot be read: nothing waiting for it is sent).
pub fn last(connection: &Connection) -> Result<Option<ActivationMethod>, StoreError> {
    Ok(meta_get(connection, KEY)?.and_then(|text| ActivationMethod::parse(&text)))
}

/// Records an activation, in the caller's transaction, with an audit line.
pub fn record(connection: &Connection, method: ActivationMethod) -> Result<(), StoreError> {
    meta_set(connection, KEY, method.as_str())?;
    insert_audit(
        connection,
        "activated",
        None,
        0,
        &format!("the product was activated {}", method.in_words()),
    )
}

/// [`last`] read from the database in `state_dir` without creating,
/// checking or moving anything (for `status`); `None` when there is none.
pub fn peek(state_dir: &Path) -> Result<Option<ActivationMethod>, StoreError> {
    if !super::database_exists(state_dir)? {
        return Ok(None);
    }
    let connection = Connection::open_with_flags(
        state_dir.join(super::DATABASE_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    last(&connection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn the_last_activation_is_kept_across_opens_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(peek(dir.path()).unwrap(), None, "no database: nothing");
        let store = Store::open(dir.path()).unwrap();
        store
            .write(|c| {
                assert_eq!(last(c)?, None);
                record(c, ActivationMethod::Code)?;
                record(c, ActivationMethod::KeyFile)
            })
            .unwrap();
        drop(store);
        assert_eq!(peek(dir.path()).unwrap(), Some(ActivationMethod::KeyFile));
        let store = Store::open(dir.path()).unwrap();
        let audit = store.recent_audit(10).unwrap();
        let lines: Vec<&str> = audit.iter().map(|a| a.detail.as_str()).collect();
        assert_eq!(
            lines,
            [
                "the product was activated by code",
                "the product was activated with a key file"
            ]
        );
        assert!(audit.iter().all(|a| a.event == "activated"));
    }
}

//! Where the day's count of randomised reports is kept (`meta`, one JSON
//! map purpose → day and reports), so that a restart, or a crash loop,
//! does not start the day afresh: sequential composition bounds what a
//! purpose's reports reveal in a day only if every report of the day is
//! counted. The gate owns what the count means (`gate::ldp`); this module
//! only reads and writes it, in the caller's transaction.

use std::collections::BTreeMap;

use rusqlite::Connection;

use super::{StoreError, meta_get, meta_set};
pub use crate::gate::Spent;

/// The `meta` key of the count.
pub const KEY: &str = "ldp_spent";

/// The stored count; empty when none was stored. A count that cannot be
/// read is an error, not an empty count: the caller then refuses to send
/// randomised reports rather than start the day afresh.
pub fn load(connection: &Connection) -> Result<BTreeMap<String, Spent>, StoreError> {
    match meta_get(connection, KEY)? {
        None => Ok(BTreeMap::new()),
        Some(text) => serde_json::from_str(&text).map_err(|err| StoreError::Corrupt {
            what: "count of randomised reports",
            message: err.to_string(),
        }),
    }
}

/// Replaces the stored count.
pub fn save(connection: &Connection, spent: &BTreeMap<String, Spent>) -> Result<(), StoreError> {
    let text = serde_json::to_string(spent).expect("a map of counts serializes");
    meta_set(connection, KEY, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_saved_is_the_count_loaded_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        assert!(store.read(load).unwrap().is_empty());
        let spent = BTreeMap::from([(
            "geo_distribution".to_owned(),
            Spent {
                day: 20_000,
                reports: 3,
            },
        )]);
        store.write(|c| save(c, &spent)).unwrap();
        assert_eq!(store.read(load).unwrap(), spent);
        store.write(|c| meta_set(c, KEY, "{not json")).unwrap();
        assert!(store.read(load).is_err());
    }
}

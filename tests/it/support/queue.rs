//! Reading the agent's queue straight from its database, as a test that
//! checks what was stored (never what was sent) needs: each queued record
//! as its purpose and its fields, out of the segments (`store::segment`).

use std::path::Path;

/// Every record queued in the database at `path` whose purpose `wanted`
/// accepts: (purpose, its fields as stored JSON), oldest first.
pub fn queued_records(path: &Path, wanted: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let db = rusqlite::Connection::open(path).unwrap();
    let segments: Vec<(String, String)> = db
        .prepare("SELECT purpose, lines FROM queue ORDER BY id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    segments
        .into_iter()
        .filter(|(purpose, _)| wanted(purpose))
        .flat_map(|(purpose, lines)| {
            lines
                .split('\n')
                .map(|line| {
                    let line: serde_json::Value = serde_json::from_str(line).unwrap();
                    (purpose.clone(), line["fields"].to_string())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

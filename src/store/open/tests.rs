use super::*;
use crate::gate::test_record as record;
use crate::store::Store;

fn filled(dir: &Path, records: i64) {
    let store = Store::open(dir).unwrap();
    // Each with a value that does not repeat (a digest of its number): a
    // segment packs to about half, so the queue's pages are most of the
    // file and a damaged page in its middle holds records.
    let noisy = |n: i64| {
        use sha2::Digest;
        let noise = sha2::Sha256::digest(n.to_le_bytes());
        record("a", n).with_fields(format!("{{\"n\":{n},\"noise\":\"{noise:x}\"}}"))
    };
    store
        .enqueue(&(0..records).map(noisy).collect::<Vec<_>>())
        .unwrap();
}

fn quarantined_files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir.join(QUARANTINE_DIR)) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_database_this_process_cannot_open_is_an_error_not_damage() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3);
    // Its WAL cannot be made (a directory in the way): so it cannot
    // be read, through no fault of the file, as when the state
    // directory is not writable or no descriptor is left.
    let wal = dir.path().join(format!("{DATABASE_FILE}-wal"));
    let _ = std::fs::remove_file(&wal);
    std::fs::create_dir(&wal).unwrap();
    let err = Store::open(dir.path()).err().expect("not opened");
    assert!(matches!(err, StoreError::Unusable { .. }), "{err}");
    assert!(err.to_string().contains("writable"), "{err}");
    assert!(quarantined_files(dir.path()).is_empty(), "moved aside");
    std::fs::remove_dir(&wal).unwrap();
    assert_eq!(Store::open(dir.path()).unwrap().depth().unwrap(), 3);
}

#[test]
fn a_healthy_store_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 3);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.depth().unwrap(), 3);
    assert!(store.last_quarantine().unwrap().is_none());
    assert!(quarantined_files(dir.path()).is_empty());
}

#[test]
fn an_emptied_database_is_quarantined_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 10);
    let id = Store::open(dir.path()).unwrap().installation_id().unwrap();
    let db = dir.path().join(DATABASE_FILE);
    let _ = std::fs::remove_file(db.with_file_name(format!("{DATABASE_FILE}-wal")));
    std::fs::write(&db, b"").unwrap();

    let store = Store::open(dir.path()).unwrap();
    let event = store.last_quarantine().unwrap().expect("reported");
    assert!(event.reason.contains("empty"), "{event}");
    assert_eq!(quarantined_files(dir.path()).len(), 1);
    assert_eq!(store.depth().unwrap(), 0);
    // Nothing to salvage from an empty file: a new identity.
    assert_ne!(store.installation_id().unwrap(), id);
    let audit = store.recent_audit(10).unwrap();
    assert!(audit.iter().any(|a| a.event == "quarantined"));
}

#[test]
fn a_scribbled_database_is_quarantined_with_its_count_and_identity() {
    let dir = tempfile::tempdir().unwrap();
    // In segments of 20 (ingest chunks): a damaged page costs the
    // segments on it.
    for _ in 0..100 {
        filled(dir.path(), 20);
    }
    let id = Store::open(dir.path()).unwrap().installation_id().unwrap();
    let code = crate::catalogue::ActivationMethod::Code;
    let activated = |c: &Connection| super::super::activation::record(c, code);
    Store::open(dir.path()).unwrap().write(activated).unwrap();
    // A withdrawn clause's erasure key stays withdrawn.
    let erasure = Store::open(dir.path())
        .unwrap()
        .write(|c| queue::rotate_erasure_key(c, "marketing", "withdrawn"))
        .unwrap();
    let db = dir.path().join(DATABASE_FILE);
    // Checkpointed by the last close: the WAL is empty or gone.
    let mut bytes = std::fs::read(&db).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 4096] {
        *b = 0x5a;
    }
    std::fs::write(&db, bytes).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let event = store.last_quarantine().unwrap().expect("reported");
    assert!(event.reason.contains("damaged"), "{event}");
    assert!(event.moved_to.as_ref().unwrap().exists());
    assert_eq!(store.installation_id().unwrap(), id, "identity salvaged");
    let last = store.read(super::super::activation::last).unwrap();
    assert_eq!(last, Some(code), "the activation salvaged");
    assert_eq!(
        store.read(|c| queue::erasure_key(c, "marketing")).unwrap(),
        erasure,
        "not back to a key a deletion request named"
    );
    // Every record off the damaged page is queued again, under its own
    // rowid; the ones on it are lost.
    let recovered = event.recovered.expect("recovered");
    assert_eq!(store.depth().unwrap(), recovered);
    eprintln!("scribbled: {recovered} of 2000 recovered");
    assert!((1500..2000).contains(&recovered), "{event}");
    assert!(event.to_string().contains("are queued again"), "{event}");
    let segments: Vec<crate::store::segment::Stored> = store
        .read(|c| {
            let mut s = c.prepare("SELECT lines FROM queue ORDER BY id")?;
            let rows = s.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            Ok(rows)
        })
        .unwrap();
    assert!(
        segments
            .iter()
            .flat_map(|s| s.0.split('\n'))
            .all(|line| crate::store::segment::Line::parse(line).is_ok())
    );
    // New records come after them.
    filled(dir.path(), 1);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.depth().unwrap(), recovered + 1);
}

#[test]
fn a_batch_in_flight_is_recovered_with_its_id_and_its_kept_body() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 10);
    let store = Store::open(dir.path()).unwrap();
    let batch = store.claim_batch(4, &["a"]).unwrap().expect("a batch");
    let kept = crate::store::SentBody {
        batch_id: batch.id.to_string(),
        at: "2026-11-26T10:00:00Z".into(),
        records: 4,
        sha256: "ab".repeat(32),
        bytes: vec![1, 2, 3],
        drops: Default::default(),
    };
    store.write(|c| queue::keep_body(c, &kept)).unwrap();
    drop(store);

    let fresh = tempfile::tempdir().unwrap();
    let into = crate::store::open_connection(fresh.path())
        .unwrap()
        .connection;
    let recovered = recover::recover(&dir.path().join(DATABASE_FILE), &into).unwrap();
    assert_eq!(recovered.records, 10);
    assert_eq!(recovered.batches, 1);
    let again = queue::sent_body(&into, &batch.id.to_string()).unwrap();
    assert_eq!(again.len(), 1, "the kept body came along");
    let claimed = queue::claim_batch(&into, crate::store::BatchLimits::records(100), &["a"])
        .unwrap()
        .expect("the batch in flight");
    assert_eq!(claimed.id, batch.id, "it goes again under its own id");
    assert_eq!(claimed.len(), 4);
}

#[test]
fn a_newer_schema_is_quarantined_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1);
    let db = dir.path().join(DATABASE_FILE);
    Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let event = store.last_quarantine().unwrap().expect("reported");
    assert!(event.reason.contains("newer"), "{event}");
    assert_eq!(event.records, Some(1));
}

#[test]
fn a_store_in_use_is_never_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path(), 1);
    let first = Store::open(dir.path()).unwrap();
    let db = dir.path().join(DATABASE_FILE);
    Connection::open(&db)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();
    // The first holder keeps it open: the second opener must not move
    // it, and fails with the plain error instead.
    assert!(Store::open(dir.path()).is_err());
    assert!(quarantined_files(dir.path()).is_empty());
    drop(first);
}

#[test]
fn a_first_start_is_not_a_loss() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), b"").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.last_quarantine().unwrap().is_none());
}

#[test]
fn every_cached_statement_of_the_store_stays_prepared() {
    // The distinct statements the store prepares through the cache: the
    // writer runs most of them again and again, so none may be pushed out
    // by the others.
    let mut statements = std::collections::BTreeSet::new();
    let store = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store");
    let mut dirs = vec![store];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let code = std::fs::read_to_string(&path).unwrap();
                for (at, _) in code.match_indices("prepare_cached(") {
                    let call: String = code[at..].chars().take(160).collect();
                    statements.insert(call);
                }
            }
        }
    }
    assert!(statements.len() > 16, "{}", statements.len());
    assert!(
        statements.len() <= STATEMENT_CACHE,
        "{} statements, a cache of {STATEMENT_CACHE}",
        statements.len()
    );
}

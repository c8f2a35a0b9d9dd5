use super::*;
use crate::gate::test_record as record;

/// Every purpose these tests queue.
const ALL: &[&str] = &["a", "b"];

/// What `record(purpose, n)` looks like read back from the queue.
fn queued(purpose: &str, n: i64) -> QueuedRecord {
    let r = record(purpose, n);
    QueuedRecord {
        purpose: r.purpose().into(),
        clause: r.clause().into(),
        clause_version: r.clause_version(),
        clause_sha256: r.clause_sha256().into(),
        collected_at: r.collected_at().into(),
        fields_json: r.fields_json().into(),
    }
}

#[test]
fn installation_id_is_stable_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap().installation_id().unwrap();
    let again = Store::open(dir.path()).unwrap().installation_id().unwrap();
    assert_eq!(first, again);
}

#[test]
fn a_retried_batch_keeps_its_id_and_completion_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enqueue(&(0..5).map(|n| record("a", n)).collect::<Vec<_>>())
        .unwrap();

    let first = store.claim_batch(3, ALL).unwrap().unwrap();
    assert_eq!(first.len(), 3);
    let retry = store.claim_batch(3, ALL).unwrap().unwrap();
    assert_eq!(first.id, retry.id);
    assert_eq!(first.record_vec(), retry.record_vec());

    assert_eq!(
        store.complete_batch(first.id, "uploaded", "test").unwrap(),
        3
    );
    let next = store.claim_batch(3, ALL).unwrap().unwrap();
    assert_ne!(next.id, first.id);
    assert_eq!(next.record_vec(), vec![queued("a", 3), queued("a", 4)]);
    store.complete_batch(next.id, "uploaded", "test").unwrap();
    assert!(store.claim_batch(3, ALL).unwrap().is_none());
    assert_eq!(store.depth().unwrap(), 0);
}

#[test]
fn queue_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .enqueue(&[record("a", 1)])
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.depth().unwrap(), 1);
}

#[test]
fn purge_removes_only_blocked_purposes_and_releases_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enqueue(&[record("a", 1), record("b", 2), record("a", 3)])
        .unwrap();
    let claimed = store.claim_batch(10, ALL).unwrap().unwrap();

    assert_eq!(
        store
            .purge_blocked(|purpose| purpose != "a", "a revoked")
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .purge_blocked(|purpose| purpose != "a", "again")
            .unwrap(),
        0
    );
    let audit = store.recent_audit(10).unwrap();
    assert_eq!(audit.len(), 1, "an empty purge leaves no line");
    assert_eq!((audit[0].event.as_str(), audit[0].records), ("purged", 2));
    let after = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_ne!(
        after.id, claimed.id,
        "a batch that lost records gets a new id"
    );
    assert_eq!(after.record_vec(), vec![queued("b", 2)]);
}

#[test]
fn a_purge_of_everything_counts_by_purpose_and_the_next_record_is_claimed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enqueue(&[record("a", 1), record("b", 2), record("a", 3)])
        .unwrap();
    let claimed = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_eq!(store.purge_blocked(|_| false, "eula revoked").unwrap(), 3);
    assert_eq!(store.depth().unwrap(), 0);
    let audit = store.recent_audit(10).unwrap();
    assert_eq!(audit[0].detail, "eula revoked: a 2, b 1");
    // A record queued afterwards never falls inside the old claim's range.
    store.enqueue(&[record("a", 4)]).unwrap();
    let after = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_ne!(after.id, claimed.id);
    assert_eq!(after.record_vec(), vec![queued("a", 4)]);
}

#[test]
fn audit_keeps_the_newest_lines_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 0..5 {
        store
            .audit("uploaded", None, n, &format!("line {n}"))
            .unwrap();
    }
    let lines = store.recent_audit(2).unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0].detail, "line 3");
    assert_eq!(lines[1].detail, "line 4");
}

#[test]
fn unusable_state_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = Store::open(&file.join("state")).err().unwrap().to_string();
    assert!(err.starts_with("cannot use state_dir"), "{err}");
    assert!(err.contains("not-a-dir/state"), "{err}");
}

/// Everything the store leaves in `state_dir` is a name `perms` knows as
/// the agent's own, so the next start recognises its own directory.
#[test]
fn the_store_leaves_only_names_the_agent_knows_as_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::open(&state).unwrap();
    store.enqueue(&[record("a", 1)]).unwrap();
    let _send = crate::upload::SendLock::open(&state).unwrap();
    let _daemon =
        crate::daemon::instance::Instance::acquire(&state, crate::daemon::instance::Role::Daemon)
            .unwrap();
    std::fs::create_dir(state.join(QUARANTINE_DIR)).unwrap();
    for entry in std::fs::read_dir(&state).unwrap() {
        let name = entry.unwrap().file_name();
        let name = name.to_str().unwrap();
        assert!(crate::perms::OWN_NAMES.contains(&name), "{name}");
    }
    assert_eq!(
        crate::perms::assess(&state, crate::perms::AgentDir::State).unwrap(),
        crate::perms::Plan::Keep { marked: true }
    );
}

#[test]
fn held_purposes_stay_queued_and_do_not_block_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .enqueue(&[record("a", 1), record("b", 2), record("a", 3)])
        .unwrap();
    let claimed = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_eq!(claimed.len(), 3);
    // `a` is held now (say, a renewal is due): the batch that held it is
    // released, and only `b` goes.
    let only_b = store.claim_batch(10, &["b"]).unwrap().unwrap();
    assert_ne!(only_b.id, claimed.id);
    assert_eq!(only_b.record_vec(), vec![queued("b", 2)]);
    store.complete_batch(only_b.id, "uploaded", "test").unwrap();
    assert!(store.claim_batch(10, &["b"]).unwrap().is_none());
    assert!(store.claim_batch(10, &[]).unwrap().is_none());
    assert_eq!(store.depth().unwrap(), 2, "the held records are all there");
    let a = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_eq!(a.record_vec(), vec![queued("a", 1), queued("a", 3)]);
}

#[test]
fn an_unreadable_record_is_dead_lettered_alone_and_its_neighbours_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // One segment of five, one of one.
    store
        .enqueue(&(0..5).map(|n| record("a", n)).collect::<Vec<_>>())
        .unwrap();
    store.enqueue(&[record("a", 5)]).unwrap();
    store
        .write(|c| {
            // The third record of the first loses its end; the second
            // segment is not text at all.
            // (Written back as text: a packed segment that is damaged is
            // unreadable whole, like the second.)
            let crate::store::segment::Stored(lines) =
                c.query_row("SELECT lines FROM queue WHERE id = 1", [], |r| r.get(0))?;
            c.execute(
                "UPDATE queue SET lines = ?1 WHERE id = 1",
                [lines.replace("\"n\":2}}", "\"n\":2")],
            )?;
            c.execute("UPDATE queue SET lines = x'ff00' WHERE id = 2", [])?;
            Ok(())
        })
        .unwrap();
    let batch = store.claim_batch(10, ALL).unwrap().unwrap();
    assert_eq!(
        batch.record_vec(),
        vec![
            queued("a", 0),
            queued("a", 1),
            queued("a", 3),
            queued("a", 4)
        ]
    );
    let (dead, reasons): (i64, String) = store
        .read(|c| {
            Ok(c.query_row(
                "SELECT COUNT(*), group_concat(reason, ' | ') FROM dead_letter",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .unwrap();
    assert_eq!(dead, 2, "{reasons}");
    assert!(reasons.contains("not JSON"), "{reasons}");
    assert!(reasons.contains("unreadable"), "{reasons}");
    let audit = store.recent_audit(5).unwrap();
    assert_eq!(
        (audit[0].event.as_str(), audit[0].records),
        ("dead-lettered", 2)
    );
    assert_eq!(store.depth().unwrap(), 4);
}

#[test]
fn database_exists_is_false_only_when_nothing_is_there() {
    let dir = tempfile::tempdir().unwrap();
    assert!(!database_exists(&dir.path().join("never-made")).unwrap());
    assert!(!database_exists(dir.path()).unwrap());
    Store::open(dir.path()).unwrap();
    assert!(database_exists(dir.path()).unwrap());
}

#[test]
fn database_exists_reports_any_other_error_with_its_path() {
    // A `state_dir` that is a file: ENOTDIR, which `Path::exists` hides as
    // `false` (and root can provoke it, unlike EACCES).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state");
    std::fs::write(&file, b"").unwrap();
    let err = database_exists(&file).unwrap_err();
    let StoreError::Lookup { path, source } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &file.join(DATABASE_FILE));
    assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory);
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn database_exists_says_permission_denied_for_a_closed_directory() {
    use std::os::unix::fs::PermissionsExt;
    if rustix::process::geteuid().is_root() {
        eprintln!("skipped: root enters a mode-000 directory (tests/it/security.rs covers it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    Store::open(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o000)).unwrap();
    let found = database_exists(&state);
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    match found {
        Err(StoreError::Lookup { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::PermissionDenied)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_daemons_reader_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = crate::store::Writer::spawn(dir.path(), ()).unwrap();
    writer
        .enqueue(vec![crate::gate::test_record("a", 1)])
        .await
        .unwrap();
    let reader = Store::open_reader(dir.path()).unwrap();
    assert_eq!(reader.depth().unwrap(), 1, "it reads what the writer wrote");
    let err = reader
        .read(|c| Ok(c.execute("DELETE FROM queue", [])?))
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    assert_eq!(reader.depth().unwrap(), 1);
    drop(writer);
    thread.join().unwrap();
}

#[test]
fn the_report_reads_the_newest_bodies_and_counts_dead_letters_per_purpose_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let keep = |id: &str, at: &str| {
        let body = SentBody {
            batch_id: id.into(),
            at: at.into(),
            records: 1,
            sha256: "00".repeat(32),
            bytes: vec![1, 2, 3],
            drops: Drops::new(),
        };
        store.write(|c| queue::keep_body(c, &body)).unwrap();
    };
    keep("a", "2026-11-01T00:00:00Z");
    keep("b", "2026-11-02T00:00:00Z");
    keep("c", "2026-11-03T00:00:00Z");
    let ids = |since: &str, limit| -> Vec<String> {
        store
            .read(|c| queue::sent_bodies_since(c, since, limit))
            .unwrap()
            .into_iter()
            .map(|b| b.batch_id)
            .collect()
    };
    assert_eq!(ids("2026-01-01T00:00:00Z", 2), ["c", "b"]);
    assert_eq!(ids("2026-11-02T00:00:00Z", 10), ["c", "b"]);
    assert!(ids("2026-12-01T00:00:00Z", 10).is_empty());

    store
        .write(|c| {
            for (at, purpose, reason) in [
                ("2026-11-01T00:00:00Z", "a", "old"),
                ("2026-11-02T00:00:00Z", "a", "422"),
                ("2026-11-03T00:00:00Z", "a", "422"),
                ("2026-11-03T00:00:00Z", "b", "422"),
            ] {
                c.execute(
                    "INSERT INTO dead_letter (at, purpose, reason) VALUES (?1, ?2, ?3)",
                    rusqlite::params![at, purpose, reason],
                )?;
            }
            Ok(())
        })
        .unwrap();
    let counts = store
        .read(|c| queue::dead_letter_counts(c, "2026-11-02T00:00:00Z"))
        .unwrap();
    let counted: Vec<(Option<&str>, Option<&str>, u64)> = counts
        .iter()
        .map(|d| (d.purpose.as_deref(), d.reason.as_deref(), d.records))
        .collect();
    assert_eq!(
        counted,
        [(Some("a"), Some("422"), 2), (Some("b"), Some("422"), 1)]
    );
    assert_eq!(counts[0].last_at.as_deref(), Some("2026-11-03T00:00:00Z"));
}

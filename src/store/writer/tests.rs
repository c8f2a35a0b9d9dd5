use super::*;
use crate::gate::test_record;
use crate::store::queue;

#[tokio::test]
async fn only_a_group_without_synced_jobs_commits_without_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), ()).unwrap();
    let level = |c: &Connection| -> Result<i64, StoreError> {
        Ok(c.query_row("PRAGMA synchronous", [], |row| row.get(0))?)
    };
    // 2 = FULL (fsync at each commit), 1 = NORMAL.
    assert_eq!(writer.call(move |c, _| level(c)).await.unwrap(), 2);
    let unsynced = writer
        .call_unsynced(move |c, _| {
            queue::enqueue(c, &[test_record("a", 1)])?;
            level(c)
        })
        .await
        .unwrap();
    assert_eq!(unsynced, 1);
    assert_eq!(writer.call(move |c, _| level(c)).await.unwrap(), 2);
    // What an unsynced job committed is there for everyone.
    let depth = writer.call(|c, _| queue::depth(c)).await.unwrap();
    assert_eq!(depth, 1);
    drop(writer);
    thread.join().unwrap();
}

#[tokio::test]
async fn an_answer_means_committed_and_a_failing_job_rolls_back_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), ()).unwrap();
    writer
        .enqueue(vec![test_record("a", 1), test_record("a", 2)])
        .await
        .unwrap();
    let failing = writer.call(|c, _| {
        queue::enqueue(c, &[test_record("a", 3)])?;
        c.execute("INSERT INTO no_such_table VALUES (1)", [])?;
        Ok(())
    });
    let fine = writer.enqueue(vec![test_record("b", 4)]);
    let (failing, fine) = tokio::join!(failing, fine);
    assert!(failing.is_err());
    fine.unwrap();
    assert_eq!(writer.depth(), 3);
    drop(writer);
    thread.join().unwrap();
    let store = super::super::Store::open(dir.path()).unwrap();
    assert_eq!(
        store.depth().unwrap(),
        3,
        "the failed job's record was rolled back"
    );
}

#[test]
fn many_callers_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), ()).unwrap();
    let callers: Vec<_> = (0..8)
        .map(|n| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    writer
                        .call_blocking(move |c, _| {
                            queue::enqueue(c, &[test_record("p", n * 100 + i)])
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        caller.join().unwrap();
    }
    drop(writer);
    thread.join().unwrap();
    let store = super::super::Store::open(dir.path()).unwrap();
    assert_eq!(store.depth().unwrap(), 400);
}

#[tokio::test]
async fn a_database_deleted_under_the_writer_is_never_acknowledged_into() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (writer, thread) = Writer::spawn(&state, ()).unwrap();
    writer.enqueue(vec![test_record("a", 1)]).await.unwrap();
    assert!(!writer.lost().is_cancelled());
    std::fs::remove_dir_all(&state).unwrap();
    // SQLite would commit into the deleted file: the answer says no.
    let err = writer.enqueue(vec![test_record("a", 2)]).await.unwrap_err();
    assert!(
        matches!(&err, WriterError::Commit(why @ CommitError::Lost(_)) if why.is_fault()),
        "{err:?}"
    );
    assert!(err.to_string().contains("deleted or replaced"), "{err}");
    assert!(writer.lost().is_cancelled());
    assert!(writer.fault().unwrap().message.contains("deleted"));
    drop(writer);
    thread.join().unwrap();
}

#[tokio::test]
async fn a_full_store_is_a_fault_until_a_commit_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), ()).unwrap();
    // Cap the database at its size now: growing it fails as on a full
    // disk.
    writer
        .call(|c, _| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            Ok(c.pragma_update(None, "max_page_count", pages)?)
        })
        .await
        .unwrap();
    // (Many: segments are stored packed, about a tenth of their text.)
    let many = (0..20_000).map(|n| test_record("a", n)).collect();
    assert!(writer.enqueue(many).await.is_err());
    let fault = writer.fault().expect("the trouble is shown");
    assert!(fault.message.contains("full"), "{fault:?}");

    writer
        .call(|c, _| Ok(c.pragma_update(None, "max_page_count", 1 << 30)?))
        .await
        .unwrap();
    writer.enqueue(vec![test_record("a", 1)]).await.unwrap();
    assert!(writer.fault().is_none(), "space is back");
    assert_eq!(writer.depth(), 1);
    drop(writer);
    thread.join().unwrap();
}

/// A durable counter whose checkpoint can be made to fail, as a full disk
/// would fail the KSN window's.
#[derive(Default)]
struct Counter {
    count: i64,
    fail_checkpoint: bool,
}

impl Durable for Counter {
    fn reload(&mut self, connection: &Connection) -> Result<(), StoreError> {
        connection.execute("CREATE TABLE IF NOT EXISTS test_counter (n INTEGER)", [])?;
        self.count = connection
            .query_row("SELECT n FROM test_counter", [], |row| row.get(0))
            .unwrap_or(0);
        self.fail_checkpoint = false;
        Ok(())
    }

    fn checkpoint(&mut self, connection: &Connection) -> Result<(), StoreError> {
        if self.fail_checkpoint {
            return Err(StoreError::Corrupt {
                what: "test counter",
                message: "checkpoint refused".into(),
            });
        }
        connection.execute("DELETE FROM test_counter", [])?;
        connection.execute("INSERT INTO test_counter (n) VALUES (?1)", [self.count])?;
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_commit_reloads_the_durable_state_so_memory_never_runs_ahead_of_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (writer, thread) = Writer::spawn(dir.path(), Counter::default()).unwrap();
    writer
        .call(|_, counter| {
            counter.count += 1;
            Ok(())
        })
        .await
        .unwrap();
    let failed = writer
        .call(|_, counter| {
            counter.count += 10;
            counter.fail_checkpoint = true;
            Ok(())
        })
        .await;
    assert!(failed.is_err(), "the group's commit failed: {failed:?}");
    let in_memory = writer.call(|_, counter| Ok(counter.count)).await.unwrap();
    assert_eq!(in_memory, 1, "memory went back to what the disk holds");
    drop(writer);
    thread.join().unwrap();
}

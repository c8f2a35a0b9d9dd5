//! The store writer: one thread that owns the daemon's SQLite write
//! connection and commits everyone's work in groups.
//!
//! Callers (ingest connections, the scheduler, the uploader, the control
//! task) send a job over a bounded channel and await its answer. The thread
//! takes every job that is waiting (up to [`MAX_GROUP`]), runs each in a
//! savepoint of one transaction (a failing job rolls back only itself),
//! lets the [`Durable`] in-memory state write what changed, and commits:
//! one fsync for many callers. Answers are sent only after the commit, so
//! an answer means durable; a commit that fails answers every job of the
//! group with the error and reloads the in-memory state from disk.
//!
//! Durable has two strengths. A job sent with [`Writer::call`] (ingested
//! records, consent receipts, the body of a batch about to leave) is
//! answered once its commit is fsynced: it survives a power loss. A job
//! sent with [`Writer::call_unsynced`] (the uploader's bookkeeping: claiming
//! a batch, removing a delivered one) is answered once committed: it
//! survives a crash of the process, and a power loss may undo it, which
//! only ever sends a batch again under the same `Idempotency-Key`. A group
//! of unsynced jobs commits with `synchronous=NORMAL` (no fsync; the WAL
//! reaches the disk at the next synced commit or checkpoint); any synced
//! job in a group makes its commit `FULL`, and that fsync covers every
//! commit before it.
//!
//! Before it answers a commit, the thread checks that its database is
//! still the file at its path: a state directory deleted (or a database
//! replaced) under the daemon would take every later commit into a file
//! no one can open again. Such commits are answered with an error, and
//! [`Writer::lost`] tells the daemon to stop.
//!
//! Nothing blocking runs on a tokio worker: SQLite and fsync live here.
//! This module never decides consent; jobs carry gated records only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::bounds::{self, Bounds};
use super::gauges::{Gauges, Tally};
use super::{DATABASE_FILE, Fault, StoreError, open_connection};

/// Most jobs in one group commit: bounds the latency one commit adds to the
/// first job of the group, while 256 chunks of ingest lines are already far
/// more than one fsync needs to be amortised.
pub const MAX_GROUP: usize = 256;

/// Jobs waiting for the writer before senders wait (back-pressure).
const CHANNEL_DEPTH: usize = 1024;

/// In-memory state that the writer keeps durable alongside the queue (the
/// open aggregation windows). Owned by the writer thread; jobs change it,
/// and the writer asks it to write what changed once per group.
pub trait Durable: Send + 'static {
    /// Loads the last committed state (at start-up, and after a failed
    /// commit, so memory never runs ahead of the disk).
    fn reload(&mut self, connection: &Connection) -> Result<(), StoreError>;
    /// Writes what changed since the last checkpoint, inside the group's
    /// transaction.
    fn checkpoint(&mut self, connection: &Connection) -> Result<(), StoreError>;
}

impl Durable for () {
    fn reload(&mut self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
    fn checkpoint(&mut self, _: &Connection) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("state database: the commit failed, nothing of this request was saved: {0}")]
    Commit(CommitError),
    #[error("the store writer has stopped")]
    Stopped,
}

/// Why a group commit failed, as SQLite said it (its result code, so
/// that callers classify the failure by code, never by its text), or
/// because the database was no longer the file at its path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("{message}")]
    Sqlite {
        /// SQLite's primary result code, when the error came from SQLite.
        code: Option<rusqlite::ErrorCode>,
        message: String,
    },
    #[error("{0}")]
    Lost(String),
}

impl CommitError {
    /// Whether the store itself is in trouble (disk full, I/O error,
    /// damage, a read-only or vanished database), as opposed to one
    /// transaction losing a race.
    pub fn is_fault(&self) -> bool {
        match self {
            CommitError::Lost(_) => true,
            CommitError::Sqlite { code, .. } => super::is_fault_code(*code),
        }
    }
}

impl From<rusqlite::Error> for CommitError {
    fn from(err: rusqlite::Error) -> Self {
        CommitError::Sqlite {
            code: err.sqlite_error_code(),
            message: err.to_string(),
        }
    }
}

impl From<&StoreError> for CommitError {
    fn from(err: &StoreError) -> Self {
        let code = match err {
            StoreError::Sql(source)
            | StoreError::Open { source, .. }
            | StoreError::Unusable { source, .. } => source.sqlite_error_code(),
            _ => None,
        };
        CommitError::Sqlite {
            code,
            message: err.to_string(),
        }
    }
}

type Finish = Box<dyn FnOnce(Result<(), CommitError>) + Send>;

/// How one job went.
enum Ran {
    Ok,
    /// Failed for a reason of its own (a bad record, say).
    Failed,
    /// Failed because the store itself is in trouble (disk full, I/O
    /// error, damage): worth showing in `status`.
    Fault(CommitError),
}
type Job<S> = Box<dyn Task<S>>;

/// One caller's work, type-erased so jobs of any answer type share the
/// channel.
trait Task<S>: Send {
    /// Runs the work; says how it went, and how to answer once the commit
    /// is known.
    fn run(self: Box<Self>, connection: &Connection, state: &mut S) -> (Ran, Finish);
    /// The group failed before this job ran: answer with `why`.
    fn abort(self: Box<Self>, why: CommitError);
    /// Whether its commit must be fsynced before the answer.
    fn synced(&self) -> bool;
}

struct Call<F, T> {
    op: F,
    reply: oneshot::Sender<Result<T, WriterError>>,
    synced: bool,
}

impl<S, F, T> Task<S> for Call<F, T>
where
    F: FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    T: Send + 'static,
{
    fn run(self: Box<Self>, connection: &Connection, state: &mut S) -> (Ran, Finish) {
        let Call { op, reply, .. } = *self;
        let result = op(connection, state);
        let ran = match &result {
            Ok(_) => Ran::Ok,
            Err(err) if err.is_fault() => Ran::Fault(CommitError::from(err)),
            Err(_) => Ran::Failed,
        };
        let finish: Finish = Box::new(move |commit| {
            let outcome = match (commit, result) {
                (Ok(()), result) => result.map_err(WriterError::Store),
                (Err(_), Err(own)) => Err(WriterError::Store(own)),
                (Err(commit), Ok(_)) => Err(WriterError::Commit(commit)),
            };
            // The caller may have gone away; its work is committed anyway.
            let _ = reply.send(outcome);
        });
        (ran, finish)
    }

    fn abort(self: Box<Self>, why: CommitError) {
        let _ = self.reply.send(Err(WriterError::Commit(why)));
    }

    fn synced(&self) -> bool {
        self.synced
    }
}

/// A handle to the writer thread; cheap to clone.
pub struct Writer<S> {
    jobs: mpsc::Sender<Job<S>>,
    gauges: Arc<Gauges>,
}

impl<S> Clone for Writer<S> {
    fn clone(&self) -> Self {
        Self {
            jobs: self.jobs.clone(),
            gauges: Arc::clone(&self.gauges),
        }
    }
}

impl<S: Durable> Writer<S> {
    /// Opens the write connection, loads `state`, and starts the thread.
    /// The thread ends when every handle is dropped, after the jobs
    /// already sent are committed; join the returned handle to wait for it.
    pub fn spawn(state_dir: &Path, state: S) -> Result<(Self, JoinHandle<()>), StoreError> {
        Self::spawn_bounded(state_dir, state, Bounds::unbounded())
    }

    /// [`Writer::spawn`], keeping the queue within `bounds.max_queue_bytes`
    /// after every commit (see `bounds`).
    pub fn spawn_bounded(
        state_dir: &Path,
        mut state: S,
        bounds: Bounds,
    ) -> Result<(Self, JoinHandle<()>), StoreError> {
        let super::open::Opened {
            connection, lock, ..
        } = open_connection(state_dir)?;
        state.reload(&connection)?;
        let gauges = Arc::new(Gauges::new(&connection, bounds)?);
        let in_place = InPlace::of(&state_dir.join(DATABASE_FILE))?;
        let (jobs, inbox) = mpsc::channel(CHANNEL_DEPTH);
        let shared = Arc::clone(&gauges);
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                run(connection, state, inbox, &shared, &in_place);
                // The connection is closed: others may now move it aside.
                drop(lock);
            })
            .map_err(|source| StoreError::Thread { source })?;
        Ok((Self { jobs, gauges }, thread))
    }

    /// Runs `op` in the next group commit and answers once it is durable.
    pub async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, WriterError> {
        self.call_with(op, true).await
    }

    /// Runs `op` in the next group commit and answers once it is committed,
    /// not necessarily fsynced (see the module's notes): for bookkeeping
    /// that a power loss may undo without losing or widening anything.
    pub async fn call_unsynced<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, WriterError> {
        self.call_with(op, false).await
    }

    async fn call_with<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
        synced: bool,
    ) -> Result<T, WriterError> {
        let (job, answer) = job(op, synced);
        self.jobs
            .send(job)
            .await
            .map_err(|_| WriterError::Stopped)?;
        answer.await.map_err(|_| WriterError::Stopped)?
    }

    /// Queues `op` for the next group commit and returns at once with the
    /// receiver of its answer: callers that pipeline (an ingest connection
    /// reading its next lines while the last ones commit) await it later,
    /// in order.
    pub async fn submit<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<oneshot::Receiver<Result<T, WriterError>>, WriterError> {
        let (job, answer) = job(op, true);
        self.jobs
            .send(job)
            .await
            .map_err(|_| WriterError::Stopped)?;
        Ok(answer)
    }

    /// [`Writer::call`] from a thread that is not a tokio worker.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, WriterError> {
        let (job, answer) = job(op, true);
        self.jobs
            .blocking_send(job)
            .map_err(|_| WriterError::Stopped)?;
        answer.blocking_recv().map_err(|_| WriterError::Stopped)?
    }

    /// Records waiting, as of the last commit (no query).
    /// The store's trouble as of the last group commit (disk full, I/O
    /// error, damage), cleared by the next commit that goes through.
    pub fn fault(&self) -> Option<Fault> {
        self.gauges
            .fault
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn depth(&self) -> u64 {
        self.gauges.depth()
    }

    /// Cancelled once the database is no longer the file at its path
    /// (deleted or replaced): nothing more can be stored, and the daemon
    /// should stop rather than acknowledge into a file that is gone.
    pub fn lost(&self) -> CancellationToken {
        self.gauges.lost.clone()
    }

    /// Notified once the queue holds the depth last armed with
    /// [`Writer::arm_batch_ready`] (a full batch is waiting).
    pub fn batch_ready(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.gauges.batch_ready)
    }

    /// Asks for one `batch_ready` notification at `depth` records.
    pub fn arm_batch_ready(&self, depth: u64) {
        self.gauges.arm_batch_ready(depth);
    }

    /// Counted enqueueing for jobs the caller writes itself.
    pub fn tally(&self) -> Tally {
        Tally(Arc::clone(&self.gauges))
    }
}

fn job<S: 'static, T: Send + 'static>(
    op: impl FnOnce(&Connection, &mut S) -> Result<T, StoreError> + Send + 'static,
    synced: bool,
) -> (Job<S>, oneshot::Receiver<Result<T, WriterError>>) {
    let (reply, answer) = oneshot::channel();
    (Box::new(Call { op, reply, synced }), answer)
}

/// The database file the writer opened, by device and inode, to notice
/// when its path names it no more.
struct InPlace {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl InPlace {
    fn of(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|source| StoreError::StateDir {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            device: meta.dev(),
            inode: meta.ino(),
        })
    }

    /// Why the file opened is not at its path any more, if it is not. An
    /// error other than "not found" proves nothing and passes.
    fn check(&self) -> Result<(), CommitError> {
        use std::os::unix::fs::MetadataExt;
        let gone = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.dev() != self.device || meta.ino() != self.inode,
            Err(err) => err.kind() == std::io::ErrorKind::NotFound,
        };
        if gone {
            Err(CommitError::Lost(format!(
                "the state database {} was deleted or replaced while in use; nothing more can be stored in it",
                self.path.display()
            )))
        } else {
            Ok(())
        }
    }
}

fn run<S: Durable>(
    mut connection: Connection,
    mut state: S,
    mut inbox: mpsc::Receiver<Job<S>>,
    gauges: &Gauges,
    in_place: &InPlace,
) {
    let check = || {
        in_place.check().inspect_err(|why| {
            if !gauges.lost.is_cancelled() {
                tracing::error!(error = %why, "the store is lost; stopping");
                // Said before the daemon hears of it, so that it can say why.
                *gauges.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fault {
                    at: crate::clock::rfc3339(std::time::SystemTime::now()),
                    message: why.to_string(),
                });
                gauges.lost.cancel();
            }
        })
    };
    let mut group = Vec::with_capacity(MAX_GROUP);
    // The connection opens with `synchronous=FULL` (`schema`).
    let mut full = true;
    while let Some(first) = inbox.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match inbox.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let synced = group.iter().any(|job| job.synced());
        if synced != full {
            let level = if synced { "FULL" } else { "NORMAL" };
            // Switched between ingest's groups and the uploader's, often:
            // a cached statement each way instead of parsing it each time.
            let set = connection
                .prepare_cached(&format!("PRAGMA synchronous = {level}"))
                .and_then(|mut set| set.execute([]));
            match set {
                Ok(_) => full = synced,
                // Stay at FULL: stronger than asked, never weaker.
                Err(err) => tracing::warn!(error = %err, "cannot set synchronous={level}"),
            }
        }
        if !commit_group(
            &mut connection,
            &mut state,
            &mut group,
            &gauges.fault,
            &check,
        ) {
            // The jobs' work is undone, their counts are not.
            gauges.recount(&connection);
        }
        if gauges.bytes() > gauges.bounds.max_queue_bytes {
            keep_size(&mut connection, gauges);
        }
    }
    // Everything committed goes into the database file before the thread
    // ends: SQLite checkpoints when the last connection closes, and the
    // last one may be the daemon's read-only reader, which cannot. (The
    // WAL is durable either way; this keeps the file whole for the next
    // open's check and for anyone copying it.)
    if let Err(err) = connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %err, "cannot checkpoint the state database at shutdown");
    }
}

/// Counts the queue exactly and, when it is over the bound, drops what
/// must go (see `bounds`), in a transaction of its own.
fn keep_size(connection: &mut Connection, gauges: &Gauges) {
    let kept = (|| {
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let evicted = bounds::enforce_size(&transaction, &gauges.bounds, gauges.exact_bytes())?;
        transaction.commit()?;
        Ok::<_, StoreError>(evicted)
    })();
    match kept {
        Ok(evicted) => {
            gauges.removed(evicted.records, 0);
            gauges.set_exact(evicted.queue_bytes);
        }
        Err(err) => {
            tracing::error!(error = %err, "cannot keep the queue within max_queue_bytes");
            *gauges.fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(Fault {
                at: crate::clock::rfc3339(std::time::SystemTime::now()),
                message: format!("cannot keep the queue within max_queue_bytes: {err}"),
            });
        }
    }
}

/// Runs every job of `group` in one transaction, each in its own savepoint,
/// then checkpoints `state` and commits; answers every job afterwards.
/// Sets `fault` to the store's trouble, if the commit or a job ran into
/// any (clears it otherwise), before anyone hears the outcome. A commit
/// after which `in_place` fails is answered as failed: what it holds is
/// in a file no one can reach. Returns whether the commit went through.
fn commit_group<S: Durable>(
    connection: &mut Connection,
    state: &mut S,
    group: &mut Vec<Job<S>>,
    fault: &Mutex<Option<Fault>>,
    in_place: &dyn Fn() -> Result<(), CommitError>,
) -> bool {
    let mut finishers: Vec<Finish> = Vec::with_capacity(group.len());
    let mut trouble = None;
    let mut jobs = group.drain(..);
    let outcome = (|| -> Result<(), CommitError> {
        let mut transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for job in jobs.by_ref() {
            let savepoint = transaction.savepoint().map_err(CommitError::from);
            let savepoint = match savepoint {
                Ok(savepoint) => savepoint,
                Err(err) => {
                    job.abort(err.clone());
                    return Err(err);
                }
            };
            let (ran, finish) = job.run(&savepoint, state);
            finishers.push(finish);
            let ok = match ran {
                Ran::Ok => true,
                Ran::Failed => false,
                Ran::Fault(why) => {
                    trouble = Some(why);
                    false
                }
            };
            // A failed job rolls back to its savepoint (the default on
            // finish); a good one is released into the transaction.
            let ended = if ok {
                savepoint.commit()
            } else {
                savepoint.finish()
            };
            // After a full disk or an I/O error SQLite may have rolled the
            // whole transaction back (savepoints and all): report the cause,
            // not the missing savepoint.
            ended.map_err(|e| trouble.clone().unwrap_or_else(|| e.into()))?;
        }
        state
            .checkpoint(&transaction)
            .map_err(|e| CommitError::from(&e))?;
        transaction.commit()?;
        in_place()
    })();
    if let Err(err) = &outcome {
        for job in jobs {
            job.abort(err.clone());
        }
        tracing::error!(error = %err, jobs = finishers.len(), "group commit failed; nothing of it was saved");
        // Whatever the jobs did to memory is not on disk: go back to disk.
        if let Err(reload) = state.reload(connection) {
            tracing::error!(error = %reload, "cannot reload the durable state after a failed commit");
        }
    }
    *fault.lock().unwrap_or_else(|p| p.into_inner()) =
        trouble.or(outcome.clone().err()).map(|why| Fault {
            at: crate::clock::rfc3339(std::time::SystemTime::now()),
            message: why.to_string(),
        });
    let committed = outcome.is_ok();
    for finish in finishers.drain(..) {
        finish(outcome.clone());
    }
    committed
}

mod ops;
pub use ops::StoredIdentity;
mod upload_ops;
pub use upload_ops::{NextBatch, Rekept};

#[cfg(test)]
mod tests;

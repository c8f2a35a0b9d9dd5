//! The daemon: cooperating tasks, one owner per resource.
//!
//! ```text
//! ingest.sock ─► ingest connections ─┐  (parse, gate against the consent snapshot)
//! scheduler (periodic collectors, ───┼─► store writer thread ─► SQLite
//!   KSN window close)                │     (sole write connection, group commit,
//! control.sock ─► control handler ───┘      answers after commit)
//!   (always answers; consent changes          ▲
//!    swap the gate's snapshot)                └── uploader task (re-reads the snapshot
//!                                                  before each batch, sends, reports back)
//! ```
//!
//! [`Agent`] assembles the shared pieces (gate, writer, collect context,
//! transport) without binding anything; [`run`] starts the tasks on sockets
//! the caller bound and stops them when the shutdown token is cancelled
//! (mini-redis's test seam: no fixed path, no signal handler in here). The
//! control handler never waits for the network: a hung receiver delays
//! only the uploader.

pub mod consent;
mod control;
mod footprint;
pub mod instance;
pub mod listener;
mod notify;
mod reload;
mod scheduler;
mod uploader;
mod watch;

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio::net::UnixListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::catalogue::{Catalogue, ERASURE_KEY};
use crate::collect::CollectContext;
use crate::collect::ksn::KsnAggregate;
use crate::config::Config;
use crate::consent::Act;
use crate::control::{CollectSummary, FlushSummary, ReloadReport};
use crate::gate::Gate;
use crate::ingest::{self, Discards, Ingest};
use crate::preflight::{self, Preflight, PreflightError};
use crate::socket::AccessPolicy;
use crate::store::{Bounds, Store, StoreError, Writer, WriterError};
use crate::upload::AgentIdentity;
use crate::upload::{SendLock, Transport, TransportError, UploadError, UploadSummary, Uploader};
use instance::Role;

pub use listener::{BindError, bind_control_socket};
pub use scheduler::ksn_extra;

/// How long in-flight work gets after shutdown is asked before the daemon
/// stops waiting for it ("terminating now").
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the agent could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Writer(#[from] WriterError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Instance(#[from] instance::InstanceError),
    #[error(transparent)]
    Consent(#[from] consent::ApplyError),
}

/// Why the daemon stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The state database was deleted or replaced under the daemon: it
    /// stops, so that a restart (the service manager's) starts afresh
    /// instead of acknowledging into a file that is gone.
    #[error("{0}; the daemon stopped so that a restart opens a fresh state directory")]
    StoreLost(String),
}

/// The store writer as the daemon runs it: the queue plus the open KSN
/// window.
pub type StoreWriter = Writer<KsnAggregate>;

/// Everything the tasks share, assembled from a config. Binds nothing and
/// sends nothing.
pub struct Agent {
    /// The config in force: swapped by a reload (`reload`), whose fields
    /// that need a restart keep their start-up values.
    config: ArcSwap<Config>,
    pub gate: Arc<Gate>,
    pub writer: StoreWriter,
    writer_thread: JoinHandle<()>,
    /// A read connection for `status`, which must not queue behind writes.
    pub(crate) reader: Arc<Store>,
    /// One sender per state directory; handed to the uploader.
    send_lock: Option<SendLock>,
    pub context: CollectContext,
    /// Swapped with the config when `[upload]` changes.
    transport: ArcSwap<Transport>,
    /// The state directory's daemon lock, held for the agent's life.
    _instance: instance::Instance,
    /// Nudged by SIGHUP: re-read the config (see `reload`).
    reload: Arc<Notify>,
    /// The one reader of the consent file and publisher of the snapshot.
    consent: tokio::sync::Mutex<consent::ConsentOwner>,
}

impl Agent {
    /// Opens the agent for a command with no daemon running (`flush`,
    /// `demo`): see [`Agent::assemble`].
    pub async fn open(config: Config) -> Result<Self, AgentError> {
        let catalogue = preflight::catalogue(&config)?;
        let transport = Transport::new(&config.upload)?;
        let opened = Self::assemble(config, catalogue, transport, Role::Command, None).await?;
        Ok(opened.0)
    }

    /// [`Agent::open`] for a consent command with no daemon running: its
    /// `act` is what the first consent application records, and what that
    /// application did is returned with the agent.
    pub async fn open_with_act(
        config: Config,
        act: &Act,
    ) -> Result<(Self, consent::Applied), AgentError> {
        let catalogue = preflight::catalogue(&config)?;
        let transport = Transport::new(&config.upload)?;
        Self::assemble(config, catalogue, transport, Role::Command, Some(act)).await
    }

    /// [`Agent::open`] for `consentry daemon`, reusing the preflight's
    /// catalogue and transport rather than building them again.
    pub async fn open_daemon(config: Config, preflight: Preflight) -> Result<Self, AgentError> {
        let (catalogue, transport) = (preflight.catalogue, preflight.transport);
        Ok(
            Self::assemble(config, catalogue, transport, Role::Daemon, None)
                .await?
                .0,
        )
    }

    /// Takes the state directory's daemon lock first, so that one process
    /// at a time writes the store, the daemon or a command (a second is
    /// refused with [`instance::InstanceError::Running`] before it touches
    /// anything); then opens the store (starting its writer thread) and
    /// applies the consent file once (`consent`).
    async fn assemble(
        config: Config,
        catalogue: Catalogue,
        transport: Transport,
        role: Role,
        act: Option<&Act>,
    ) -> Result<(Self, consent::Applied), AgentError> {
        crate::perms::ensure_dir_logged(&config.state_dir, crate::perms::AgentDir::State)
            .map_err(StoreError::from)?;
        let state_dir = config.state_dir.clone();
        let instance =
            tokio::task::spawn_blocking(move || instance::Instance::acquire(&state_dir, role))
                .await
                .expect("taking the daemon lock does not panic")?;
        // Until the consent owner's first read: narrower than anything it
        // can publish, and deleting nothing.
        let registry = crate::consent::Registry::closed(&catalogue, "the agent is starting");
        let bounds = Bounds::new(&config.store, &catalogue);
        let gate = Arc::new(Gate::with_registry(catalogue, registry));
        let (writer, writer_thread) =
            Writer::spawn_bounded(&config.state_dir, KsnAggregate::new(), bounds)?;
        let reader = Arc::new(Store::open_reader(&config.state_dir)?);
        let send_lock = Some(SendLock::open(&config.state_dir)?);
        let erasing = gate.catalogue().clauses_carrying(ERASURE_KEY);
        let stored = writer.identity(erasing).await?;
        let installation_id = stored.installation_id;
        // Today's randomised reports sent before this start still count.
        gate.restore_spent(stored.spent);
        gate.set_hash_key(stored.hash_key);
        for (key, clause) in stored.erasure_keys {
            gate.set_erasure_key(&clause, key);
        }
        let context = CollectContext::new(config.product.clone(), installation_id, config.region);
        let agent = Self {
            config: ArcSwap::from_pointee(config),
            gate,
            writer,
            writer_thread,
            reader,
            send_lock,
            context,
            transport: ArcSwap::from_pointee(transport),
            _instance: instance,
            reload: Arc::new(Notify::new()),
            consent: tokio::sync::Mutex::new(consent::ConsentOwner::default()),
        };
        // What changed while no daemon ran (a grant by the installer, a
        // hand edit, a new region) gets its receipts now; for a command,
        // its act does.
        let cause = match act {
            Some(act) => consent::Cause::Act(act),
            None => consent::Cause::Look,
        };
        let applied = agent.apply_consent(cause, None).await?;
        Ok((agent, applied))
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Puts a reloaded config and its transport in force (see `reload`).
    fn replace_config(&self, config: Config, transport: Transport) {
        self.transport.store(Arc::new(transport));
        self.config.store(Arc::new(config));
    }

    /// The transport in force.
    fn transport(&self) -> Arc<Transport> {
        self.transport.load_full()
    }

    /// Who sends: the region, and the installation whose id seeds every
    /// schedule's jitter.
    pub fn identity(&self) -> AgentIdentity {
        AgentIdentity::new(self.context.region, self.context.installation_id_cell())
    }

    /// What SIGHUP notifies: the daemon re-reads its config.
    pub fn reload_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.reload)
    }

    /// Reads the consent file and applies it, through the one owner of
    /// the consent snapshot (`consent`): the daemon's consent task, or a
    /// command with no daemon running. `in_flight` is the uploader's
    /// batch in flight, when one can be.
    pub async fn apply_consent(
        &self,
        cause: consent::Cause<'_>,
        in_flight: Option<&crate::upload::InFlight>,
    ) -> Result<consent::Applied, consent::ApplyError> {
        let mut owner = self.consent.lock().await;
        owner.apply(self, cause, in_flight).await
    }

    /// Puts an activation the store has recorded in force, through the
    /// consent owner (`consent::activation`).
    pub(crate) async fn activated(
        &self,
        method: crate::catalogue::ActivationMethod,
        in_flight: Option<&crate::upload::InFlight>,
    ) -> Result<consent::ActivationApplied, consent::ApplyError> {
        let mut owner = self.consent.lock().await;
        owner.activated(self, method, in_flight).await
    }

    /// When the consent owner wants to look again on its own.
    pub(crate) async fn next_consent_look(&self) -> Option<tokio::time::Instant> {
        self.consent.lock().await.next_look()
    }

    /// Runs every periodic collector once and closes the KSN window, as
    /// `flush` does, in this process (no daemon needed). The consent file is
    /// read again first: hand edits count from the next collection on.
    pub async fn collect_now(&self) -> CollectSummary {
        let mut summary = scheduler::collect_periodic(self).await;
        scheduler::close_ksn_window(self, &mut summary).await;
        summary
    }

    /// Collect now, then upload now; for `flush` when no daemon runs.
    pub async fn flush(mut self) -> Result<FlushSummary, AgentError> {
        let collect = self.collect_now().await;
        let send_lock = self.send_lock.take().expect("the send lock is taken once");
        let mut uploader = Uploader::new(
            self.writer.clone(),
            Arc::clone(&self.gate),
            (*self.transport()).clone(),
            &self.config().upload,
            self.identity(),
            send_lock,
        );
        let upload = uploader.upload_pending(true).await;
        drop(uploader);
        self.close().await;
        Ok(FlushSummary {
            collect,
            upload: upload?,
        })
    }

    /// Stops the writer after everything sent to it is committed.
    pub async fn close(self) {
        let Self {
            writer,
            writer_thread,
            ..
        } = self;
        drop(writer);
        let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    }
}

/// What the control handler reports, written by the other tasks.
#[derive(Default)]
pub(crate) struct Shared {
    last_collect: Mutex<Option<CollectSummary>>,
    /// With the time it ended (for the service manager's status line).
    last_upload: Mutex<Option<(SystemTime, UploadSummary)>>,
    last_reload: Mutex<Option<ReloadReport>>,
    /// When the uploader will next try, at the latest.
    next_upload: Mutex<Option<SystemTime>>,
    discards: Arc<Discards>,
}

impl Shared {
    fn set_collect(&self, summary: CollectSummary) {
        *self.last_collect.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }
    fn set_upload(&self, summary: UploadSummary) {
        *self.last_upload.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((SystemTime::now(), summary));
    }
    fn collect(&self) -> Option<CollectSummary> {
        self.last_collect
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn set_reload(&self, report: ReloadReport) {
        *self.last_reload.lock().unwrap_or_else(|p| p.into_inner()) = Some(report);
    }
    fn reload(&self) -> Option<ReloadReport> {
        self.last_reload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn upload(&self) -> Option<UploadSummary> {
        self.upload_at().map(|(_, summary)| summary)
    }
    fn set_next_upload(&self, at: SystemTime) {
        *self.next_upload.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
    fn next_upload(&self) -> Option<SystemTime> {
        *self.next_upload.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn upload_at(&self) -> Option<(SystemTime, UploadSummary)> {
        self.last_upload
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The daemon's sockets, bound by the caller.
pub struct Listeners {
    pub control: UnixListener,
    pub ingest: UnixListener,
}

impl Listeners {
    /// Binds the control socket (refusing to displace a live daemon), then
    /// the ingest socket, in `config`'s `runtime_dir`. Must be called
    /// inside a tokio runtime.
    pub fn bind(config: &Config) -> Result<Self, BindError> {
        let control = bind_control_socket(&config.control_socket())?;
        let ingest = ingest::bind(&config.ingest_socket())?;
        Ok(Self { control, ingest })
    }
}

/// Runs every task until `shutdown` is cancelled, then waits for them (up
/// to [`SHUTDOWN_GRACE`]) and for the writer to commit what it was given.
/// Failures inside are logged and retried, never fatal, but one: a state
/// database deleted or replaced under the daemon stops it with
/// [`RunError::StoreLost`]. Start-up errors surface earlier, from
/// [`Agent::open`] and the socket binders.
pub async fn run(
    mut agent: Agent,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let send_lock = agent.send_lock.take().expect("the send lock is taken once");
    let agent = Arc::new(agent);
    let shared = Arc::new(Shared::default());
    let collect_now = Arc::new(Notify::new());
    let upload_now = Arc::new(Notify::new());
    let (flushes, flush_inbox) = mpsc::channel(4);
    let tracker = TaskTracker::new();
    let config = agent.config();
    tracing::info!(
        endpoint = %config.upload.endpoint_shown(),
        region = %config.region,
        "daemon started"
    );

    let activation_inbox = spawn_ingest(&agent, &shared, listeners.ingest, &tracker, &shutdown);
    tracker.spawn(scheduler::run(
        Arc::clone(&agent),
        Arc::clone(&shared),
        Arc::clone(&collect_now),
        shutdown.clone(),
    ));
    let uploader = Uploader::new(
        agent.writer.clone(),
        Arc::clone(&agent.gate),
        (*agent.transport()).clone(),
        &config.upload,
        agent.identity(),
        send_lock,
    );
    let in_flight = uploader.in_flight();
    tracker.spawn(uploader::run(
        Arc::clone(&agent),
        uploader,
        Arc::clone(&shared),
        Arc::clone(&upload_now),
        flush_inbox,
        shutdown.clone(),
    ));
    // Start-up's code pages let go once it is over (the idle footprint).
    tracker.spawn(footprint::run(shutdown.clone()));
    // READY=1, STATUS= and watchdog keep-alives for systemd; nothing without NOTIFY_SOCKET.
    tracker.spawn(notify::run(
        Arc::clone(&agent),
        Arc::clone(&shared),
        shutdown.clone(),
    ));
    let (notices, notice_inbox) = mpsc::channel(16);
    let handler = Arc::new(control::Handler {
        agent: Arc::clone(&agent),
        consent: notices,
        in_flight,
        shared: Arc::clone(&shared),
        collect_now,
        upload_now,
        flushes,
    });
    tracker.spawn(reload::run(
        Arc::clone(&agent),
        Arc::clone(&handler),
        reload::Inboxes {
            notices: notice_inbox,
            activations: activation_inbox,
        },
        shared,
        shutdown.clone(),
    ));
    // The admin group was resolved by the start-up preflight.
    let policy = AccessPolicy::new(config.admin_gid().ok().flatten());
    tracker.spawn(listener::serve(
        listeners.control,
        handler,
        policy,
        shutdown.clone(),
    ));
    tracker.close();
    stop(agent, tracker, shutdown).await
}

/// Serves the ingest socket; returns where the activations it records
/// are told (the consent task's inbox).
fn spawn_ingest(
    agent: &Arc<Agent>,
    shared: &Shared,
    listener: UnixListener,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> mpsc::Receiver<ingest::Activated> {
    let (activations, activation_inbox) = mpsc::channel(16);
    let ingest = Arc::new(Ingest {
        gate: Arc::clone(&agent.gate),
        context: agent.context.clone(),
        writer: agent.writer.clone(),
        discards: Arc::clone(&shared.discards),
        activations,
    });
    tracker.spawn(ingest::serve(listener, ingest, shutdown.clone()));
    activation_inbox
}

/// Runs until `shutdown` (or until the store is lost, which stops
/// everything), then waits for the tasks within [`SHUTDOWN_GRACE`] and
/// closes the agent.
async fn stop(
    agent: Arc<Agent>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let lost = agent.writer.lost();
    let stopped = tokio::select! {
        _ = shutdown.cancelled() => Ok(()),
        _ = lost.cancelled() => {
            shutdown.cancel();
            let why = agent.writer.fault().map(|f| f.message).unwrap_or_default();
            Err(RunError::StoreLost(why))
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("tasks still running after the grace period; terminating now");
    }
    match Arc::try_unwrap(agent) {
        Ok(agent) => agent.close().await,
        Err(_) => tracing::warn!(
            "the store writer is still in use; its queued work is lost only if it was never acknowledged"
        ),
    }
    tracing::info!("daemon stopped");
    stopped
}

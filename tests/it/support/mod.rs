//! The one test world every integration test uses: a temporary directory
//! with an agent config, a loopback TLS receiver (the library's own
//! `receiver`, with a throwaway CA the agent trusts through `ca_file`), and
//! helpers that run the real `consentry` binary against it.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use consentry::receiver::{LoopbackPki, Receiver};
use tokio::process::{Child, Command};

mod eventually;
mod queue;
pub use eventually::{eventually, within};
pub use queue::{page_among_packed_segments, queued_records, segment_text};

pub const BIN: &str = env!("CARGO_BIN_EXE_consentry");

/// Long enough for a debug build on a loaded two-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub struct World {
    pub dir: tempfile::TempDir,
    pub receiver: Receiver,
    pub config: PathBuf,
    /// The receiver's certificates and key pin.
    pub pki: LoopbackPki,
    /// How the config trusts the receiver (`ca_file = …` by default).
    trust: String,
}

/// The default trust line: the throwaway CA, written as `ca.pem`.
pub const TRUST_CA_FILE: &str = "ca_file = \"ca.pem\"";

impl World {
    /// A world whose daemon uploads every 300 ms and retries after 200 ms.
    pub async fn new() -> Self {
        Self::with_upload_extra("").await
    }

    /// A world whose receiver answers `status` and whose EULA is accepted
    /// (through the CLI, as an installer would).
    pub async fn with_eula_answering(status: u16) -> Self {
        let world = Self::new().await;
        world.receiver.set_status(status);
        world.ok(&["consent", "grant", "eula"]).await;
        world
    }

    /// As [`World::new`], with extra lines appended to `[upload]`.
    pub async fn with_upload_extra(extra: &str) -> Self {
        Self::with_pki(LoopbackPki::generate().unwrap(), TRUST_CA_FILE, extra).await
    }

    /// A world whose receiver serves `pki`'s certificate (its CA written as
    /// `ca.pem`, its own certificate as `server.pem`), and whose config
    /// trusts it with `trust` (lines of `[upload]`, in place of
    /// [`TRUST_CA_FILE`]) plus `extra`.
    pub async fn with_pki(pki: LoopbackPki, trust: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(dir.path().join("server.pem"), &pki.server_pem).unwrap();
        let receiver = Receiver::start(&pki).await.unwrap();
        let config = dir.path().join("consentry.toml");
        let world = Self {
            dir,
            receiver,
            config,
            pki,
            trust: trust.to_owned(),
        };
        world.write_config(&world.config_text(extra));
        world
    }

    pub fn config_text(&self, upload_extra: &str) -> String {
        format!(
            r#"region = "global"
state_dir = "state"
runtime_dir = "run"
consent_file = "consent.toml"

[product]
id = "it-product"
version = "9.8.7.6"

[collect]
interval = "1h"

[upload]
endpoint = "{}"
{}
batch_max_delay = "300ms"
timeout = "5s"
retry_initial = "200ms"
retry_max = "1s"
{upload_extra}
"#,
            self.receiver.url(),
            self.trust
        )
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `consentry ARGS --config <world config>` to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        run_with_config(&self.config, args).await
    }

    /// Runs `consentry ARGS --config <world config>` with `env` set.
    pub async fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "consentry {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// `status --json`, parsed.
    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"]).await).unwrap()
    }

    /// Polls `status --json` until `done` holds for it, and returns that
    /// status (the receiver sees a batch a moment before the daemon has
    /// committed its deletion).
    pub async fn status_until(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        eventually(what, PATIENCE, async || {
            let status = self.status().await;
            if done(&status) {
                Ok(status)
            } else {
                Err(status)
            }
        })
        .await
    }

    /// Waits for the running daemon's uploader to end a round after this
    /// call (a scheduled one, or a `flush`), and returns the status that
    /// shows it: proof that the daemon had its chance to send. Rounds are
    /// told apart by `last_upload_at`, to the second: this waits for one
    /// that ended in a later second than the last one before the call.
    pub async fn next_upload_round(&self) -> serde_json::Value {
        let before = self.status().await["daemon"]["last_upload_at"].clone();
        let before = before.as_str().unwrap_or("").to_owned();
        self.status_until("ended another upload round", |s| {
            s["daemon"]["last_upload_at"]
                .as_str()
                .is_some_and(|at| at > before.as_str())
        })
        .await
    }

    /// Sets `region = …` in the config.
    pub fn set_region(&self, region: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        self.write_config(&text.replace("region = \"global\"", &format!("region = \"{region}\"")));
    }

    /// Runs `consentry emit ARGS` with `stdin` fed to it.
    pub async fn emit(&self, args: &[&str], stdin: &[u8]) -> Output {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(BIN)
            .arg("emit")
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin = stdin.to_vec();
        let feeder = tokio::spawn(async move {
            let _ = input.write_all(&stdin).await;
        });
        let output = child.wait_with_output().await.unwrap();
        feeder.await.unwrap();
        output
    }

    /// Every record the receiver decoded: (purpose, clause, fields).
    pub fn received_records(&self) -> Vec<Received> {
        self.records_where(|_| true)
    }

    /// The records of `purpose` in batches the receiver accepted (2xx).
    pub fn delivered(&self, purpose: &str) -> Vec<Received> {
        let mut records = self.records_where(|status| (200..300).contains(&status));
        records.retain(|r| r.purpose == purpose);
        records
    }

    fn records_where(&self, status: impl Fn(u16) -> bool) -> Vec<Received> {
        self.receiver
            .requests()
            .into_iter()
            .filter(|r| status(r.status))
            .filter_map(|r| r.envelope.ok())
            .flat_map(|e| e.records)
            .map(|r| Received {
                purpose: r.purpose,
                clause: r.clause,
                fields: serde_json::from_str(r.fields.get()).unwrap(),
            })
            .collect()
    }

    /// The ingest socket of this world's daemon.
    pub fn ingest_socket(&self) -> PathBuf {
        self.path("run/ingest.sock")
    }

    /// The number of records the running daemon has queued.
    pub async fn records_queued(&self) -> u64 {
        self.status().await["daemon"]["records_queued"]
            .as_u64()
            .expect("a running daemon")
    }

    /// Starts `consentry daemon` and waits until its control socket answers.
    pub async fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_with(&[]).await
    }

    /// [`World::spawn_daemon`], with `env` set (see [`World::start_daemon`]).
    pub async fn spawn_daemon_with(&self, env: &[(&str, &str)]) -> Daemon {
        self.spawn_daemon_args(&[], env).await
    }

    /// [`World::spawn_daemon_with`], with global options (`--log-format
    /// json`, say) before the verb.
    pub async fn spawn_daemon_args(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let daemon = self.start_daemon_args(args, env);
        self.status_until("answered as a daemon", |s| s["daemon"].is_object())
            .await;
        daemon
    }

    /// Starts `consentry daemon` with `env` set, without waiting for it.
    /// A service manager's variables of the test run itself are never
    /// passed on: only `env` says whether the daemon is under one.
    pub fn start_daemon(&self, env: &[(&str, &str)]) -> Daemon {
        self.start_daemon_args(&[], env)
    }

    /// [`World::start_daemon`], with global options before the verb.
    pub fn start_daemon_args(&self, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let child = Command::new(BIN)
            .args(args)
            .args(["daemon", "--config"])
            .arg(&self.config)
            .env("CONSENTRY_LOG", "debug")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Daemon {
            child,
            draining: None,
        }
    }
}

pub async fn run_with_config(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

/// One record as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub purpose: String,
    pub clause: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A running daemon process; killed if the test ends without stopping it.
pub struct Daemon {
    child: Child,
    /// Reading the log as it comes (see [`Daemon::drain_log`]).
    draining: Option<tokio::task::JoinHandle<Vec<u8>>>,
}

impl Daemon {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("daemon still running")
    }

    /// Sends `signal` and returns at once (SIGHUP, say).
    pub fn signal(&self, signal: rustix::process::Signal) {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.pid() as i32).unwrap(),
            signal,
        )
        .unwrap();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Reads the daemon's log as it comes, kept for when it stops. By
    /// default the log is read only then, and a daemon that logs more
    /// than a pipe holds (64 KiB) in a long run would block on its own
    /// logging.
    pub fn drain_log(&mut self) {
        if let Some(mut stderr) = self.child.stderr.take() {
            self.draining = Some(tokio::spawn(async move {
                let mut log = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut stderr, &mut log).await;
                log
            }));
        }
    }

    /// The exit status and the whole log, from `output` and the drain.
    async fn ended(
        draining: Option<tokio::task::JoinHandle<Vec<u8>>>,
        output: std::process::Output,
    ) -> (std::process::ExitStatus, String) {
        let log = match draining {
            Some(task) => task.await.unwrap_or_default(),
            None => output.stderr,
        };
        (output.status, String::from_utf8_lossy(&log).into_owned())
    }

    /// Waits for the daemon to exit on its own: its exit status and log.
    pub async fn wait(self) -> (std::process::ExitStatus, String) {
        let output = self.child.wait_with_output().await.unwrap();
        Self::ended(self.draining, output).await
    }

    /// SIGKILL, and wait for it to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then the exit status and everything the daemon logged.
    pub async fn terminate(self) -> (std::process::ExitStatus, String) {
        self.stop_with(rustix::process::Signal::TERM).await
    }

    /// Sends `signal`, then waits for the exit status and the log.
    pub async fn stop_with(
        self,
        signal: rustix::process::Signal,
    ) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().expect("daemon still running");
        rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).unwrap(), signal)
            .unwrap();
        let output = tokio::time::timeout(PATIENCE, self.child.wait_with_output())
            .await
            .expect("daemon did not stop after SIGTERM")
            .unwrap();
        Self::ended(self.draining, output).await
    }
}

/// The one-line error a failed command printed.
pub fn stderr_line(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got: {text}");
    assert!(!text.contains("panicked"), "{text}");
    lines[0].to_owned()
}

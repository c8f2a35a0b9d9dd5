//! What the daemon tells its service manager (systemd's `Type=notify`
//! protocol, through `NOTIFY_SOCKET`): `READY=1` once it serves, a
//! `STATUS=` line for `systemctl status`, `WATCHDOG=1` keep-alives, and
//! `STOPPING=1` when shutdown begins.
//!
//! [`run`] is one task of the daemon. It is spawned by `daemon::run`,
//! which is only ever called with an `Agent` that opened (catalogue loaded,
//! consent evaluated, store open) and with `Listeners` already bound: from
//! then on a client that connects is queued by the kernel and answered, so
//! `READY=1` at the start of this task is never early.
//!
//! A keep-alive is never sent blindly: each one follows a round trip
//! through the store writer thread (the one resource every other task
//! waits on), answered within the ping interval. A hung writer, or a tokio
//! runtime too stuck to run this task, stops the pings, and systemd
//! restarts the service after `WatchdogSec`.
//!
//! This module must never decide anything about data or consent, and does
//! nothing at all when `NOTIFY_SOCKET` is unset (`consentry daemon` by
//! hand, the demo, the tests). Sending happens on a blocking thread: the
//! datagram socket is a blocking one, and a service manager that stops
//! reading must not stall a tokio worker.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sd_notify::NotifyState;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Agent, Shared};
use crate::store::{Durable, Fault, Writer};
use crate::upload::UploadSummary;

/// How often the status line is refreshed when no watchdog is asked for:
/// often enough that `systemctl status` is current, rare enough to cost
/// nothing.
const STATUS_EVERY: Duration = Duration::from_secs(15);

/// The longest reason shown in the status line; the full text is in
/// `consentry status` and the log. `systemctl status` shows one line.
const MAX_REASON_CHARS: usize = 120;

/// Tells the service manager the daemon is ready, keeps its status line
/// and watchdog fed while the writer answers, and says `STOPPING=1` once
/// `shutdown` is cancelled. Returns at once without `NOTIFY_SOCKET`.
pub(crate) async fn run(agent: Arc<Agent>, shared: Arc<Shared>, shutdown: CancellationToken) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    // Honours WATCHDOG_PID: a variable meant for another process is ignored.
    let watchdog = sd_notify::watchdog_enabled();
    let status = || {
        status_line(
            agent.writer.depth(),
            agent.writer.fault(),
            shared.upload_at(),
        )
    };
    send(Message::Ready, status()).await;
    tracing::info!(
        watchdog = ?watchdog,
        "told the service manager the daemon is ready"
    );
    // systemd's advice: ping at half the watchdog period.
    let every = watchdog.map_or(STATUS_EVERY, |period| period / 2);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        if watchdog.is_none() {
            send(Message::Status, status()).await;
            continue;
        }
        let answered = tokio::select! {
            _ = shutdown.cancelled() => break,
            answered = writer_answers(&agent.writer, every) => answered,
        };
        if answered {
            send(Message::KeepAlive, status()).await;
        } else {
            tracing::warn!(
                within = ?every,
                "the store writer did not answer; withholding the watchdog keep-alive"
            );
            let line = format!("store writer not answering within {every:?}; watchdog not fed");
            send(Message::Status, line).await;
        }
    }
    send(Message::Stopping, "stopping".to_owned()).await;
}

/// Whether the store writer thread runs a no-op job and answers within
/// `within`: proof that the writer is not stuck (on the disk, a lock, a
/// bug) and that its queue drains.
pub(crate) async fn writer_answers<S: Durable>(writer: &Writer<S>, within: Duration) -> bool {
    matches!(
        tokio::time::timeout(within, writer.ping()).await,
        Ok(Ok(()))
    )
}

/// What one datagram says, besides the status line it always carries.
#[derive(Debug, Clone, Copy)]
enum Message {
    Ready,
    Status,
    KeepAlive,
    Stopping,
}

async fn send(message: Message, status: String) {
    let sent = tokio::task::spawn_blocking(move || {
        let status = NotifyState::Status(&status);
        match message {
            Message::Ready => sd_notify::notify(&[NotifyState::Ready, status]),
            Message::Status => sd_notify::notify(&[status]),
            Message::KeepAlive => sd_notify::notify(&[NotifyState::Watchdog, status]),
            Message::Stopping => sd_notify::notify(&[NotifyState::Stopping, status]),
        }
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(%err, ?message, "cannot notify the service manager (NOTIFY_SOCKET)");
        }
        Err(err) => tracing::warn!(%err, ?message, "the notification thread failed"),
    }
}

/// The one line `systemctl status` shows under the unit, e.g.
/// `running: 12 records queued; last upload 10:04 UTC ok (3 records sent)`.
/// One line whatever the reasons inside contain (a newline would end the
/// `STATUS=` assignment early).
fn status_line(
    queued: u64,
    fault: Option<Fault>,
    last_upload: Option<(SystemTime, UploadSummary)>,
) -> String {
    let mut line = format!("running: {queued} records queued");
    if let Some(fault) = fault {
        line.push_str(&format!("; store fault: {}", shorten(&fault.message)));
    }
    match last_upload {
        None => line.push_str("; no upload yet"),
        Some((at, upload)) => {
            let at = crate::clock::rfc3339(at);
            // "2026-01-02T10:04:12Z" → "10:04"
            let hh_mm = at.get(11..16).unwrap_or(&at);
            let outcome = match &upload.stopped {
                None => format!("ok ({} records sent)", upload.records_sent),
                Some(why) => shorten(why),
            };
            line.push_str(&format!("; last upload {hh_mm} UTC {outcome}"));
            if let Some(seconds) = upload.retry_in_seconds {
                line.push_str(&format!(", next try in {seconds}s"));
            }
        }
    }
    line
}

/// `text` on one line and at most [`MAX_REASON_CHARS`] characters.
fn shorten(text: &str) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(MAX_REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-02T10:04:12Z
    fn ten_past_four() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_348_252)
    }

    fn upload(records_sent: u64, stopped: Option<&str>, retry: Option<u64>) -> UploadSummary {
        UploadSummary {
            records_sent,
            stopped: stopped.map(str::to_owned),
            retry_in_seconds: retry,
            ..UploadSummary::default()
        }
    }

    #[test]
    fn the_status_line_says_how_much_is_queued_and_how_the_last_upload_went() {
        assert_eq!(
            status_line(0, None, None),
            "running: 0 records queued; no upload yet"
        );
        assert_eq!(
            status_line(12, None, Some((ten_past_four(), upload(3, None, None)))),
            "running: 12 records queued; last upload 10:04 UTC ok (3 records sent)"
        );
        assert_eq!(
            status_line(
                7,
                None,
                Some((
                    ten_past_four(),
                    upload(0, Some("waiting after a failed attempt"), Some(30))
                ))
            ),
            "running: 7 records queued; last upload 10:04 UTC waiting after a failed attempt, next try in 30s"
        );
    }

    #[test]
    fn the_status_line_names_a_store_fault_on_one_short_line() {
        let fault = Fault {
            at: "2026-01-02T10:00:00Z".into(),
            message: format!("disk full\nwhile committing {}", "x".repeat(300)),
        };
        let line = status_line(5, Some(fault), None);
        assert!(
            line.starts_with(
                "running: 5 records queued; store fault: disk full while committing xxx"
            ),
            "{line}"
        );
        assert!(line.ends_with("…; no upload yet"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.chars().count() < 200, "{line}");
    }

    #[tokio::test]
    async fn a_busy_writer_is_not_taken_for_alive_until_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) = Writer::spawn(dir.path(), ()).unwrap();
        assert!(writer_answers(&writer, Duration::from_secs(5)).await);

        // Hold the writer thread inside a job until `release` is sent.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (running, started) = tokio::sync::oneshot::channel();
        let holding = tokio::spawn({
            let writer = writer.clone();
            async move {
                writer
                    .call(move |_, _| {
                        let _ = running.send(());
                        let _ = held.recv();
                        Ok(())
                    })
                    .await
            }
        });
        started.await.unwrap();
        assert!(!writer_answers(&writer, Duration::from_millis(200)).await);
        release.send(()).unwrap();
        holding.await.unwrap().unwrap();
        assert!(writer_answers(&writer, Duration::from_secs(5)).await);

        drop(writer);
        thread.join().unwrap();
    }
}

//! The daemon under a service manager: the real binary with `NOTIFY_SOCKET`
//! pointing at a datagram socket this test binds, as systemd's
//! `Type=notify` and `WatchdogSec=` would set it up.

use std::path::Path;
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::sync::mpsc;

use crate::support::{PATIENCE, World};

/// What systemd would see: one notification datagram per item, read by a
/// task of its own so the daemon never finds the socket's queue full.
struct ServiceManager {
    messages: mpsc::UnboundedReceiver<String>,
    _reader: tokio::task::JoinHandle<()>,
}

impl ServiceManager {
    fn listen(path: &Path) -> Self {
        let socket = UnixDatagram::bind(path).unwrap();
        let (sender, messages) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut buffer = vec![0; 4096];
            while let Ok(len) = socket.recv(&mut buffer).await {
                let text = String::from_utf8_lossy(&buffer[..len]).into_owned();
                if sender.send(text).is_err() {
                    return;
                }
            }
        });
        Self {
            messages,
            _reader: reader,
        }
    }

    /// The next datagram, within `PATIENCE`.
    async fn next(&mut self) -> String {
        tokio::time::timeout(PATIENCE, self.messages.recv())
            .await
            .expect("no notification from the daemon")
            .expect("the notification reader stopped")
    }

    /// Datagrams until one holds `line` (returned with those before it).
    async fn until(&mut self, line: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.next().await;
            let found = has_line(&message, line);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }
}

fn has_line(message: &str, wanted: &str) -> bool {
    message.lines().any(|line| line == wanted)
}

fn status_of(message: &str) -> Option<&str> {
    message
        .lines()
        .find_map(|line| line.strip_prefix("STATUS="))
}

#[tokio::test]
async fn the_daemon_says_ready_once_it_answers_feeds_the_watchdog_and_says_stopping() {
    let world = World::new().await;
    let socket = world.path("notify.sock");
    let mut manager = ServiceManager::listen(&socket);
    let daemon = world.start_daemon(&[
        ("NOTIFY_SOCKET", socket.to_str().unwrap()),
        // A keep-alive every 200 ms.
        ("WATCHDOG_USEC", "400000"),
    ]);

    let first = manager.next().await;
    assert!(has_line(&first, "READY=1"), "first notification: {first:?}");
    assert_eq!(
        status_of(&first),
        Some("running: 0 records queued; no upload yet"),
        "{first:?}"
    );
    // Ready means serving: the first control request is answered, no retry.
    let status = world.status().await;
    assert!(status["daemon"].is_object(), "{status}");

    let started = tokio::time::Instant::now();
    let mut keep_alives = 0;
    while keep_alives < 5 {
        let message = manager.next().await;
        assert!(!has_line(&message, "READY=1"), "READY=1 twice: {message:?}");
        if has_line(&message, "WATCHDOG=1") {
            keep_alives += 1;
            let line = status_of(&message).expect("a keep-alive carries the status");
            assert!(line.starts_with("running: "), "{message:?}");
        }
    }
    // Five pings at 200 ms apart, with room for a loaded machine, but far
    // less than five of the 15 s status-only refreshes.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "keep-alives too slow: {:?}",
        started.elapsed()
    );

    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{exit:?}\n{log}");
    let last = manager.until("STOPPING=1").await.pop().unwrap();
    assert_eq!(status_of(&last), Some("stopping"), "{last:?}");
}

#[tokio::test]
async fn a_watchdog_meant_for_another_process_is_not_fed() {
    let world = World::new().await;
    let socket = world.path("notify.sock");
    let mut manager = ServiceManager::listen(&socket);
    // systemd sets WATCHDOG_PID to the main process; PID 1 is never us.
    let daemon = world.start_daemon(&[
        ("NOTIFY_SOCKET", socket.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
        ("WATCHDOG_PID", "1"),
    ]);
    let first = manager.next().await;
    assert!(has_line(&first, "READY=1"), "{first:?}");
    // A ping is periodic: its absence only shows over time, with no event
    // to wait for (the status-only refresh is 15 s away). So five ping
    // intervals without a ping, and the daemon's own word, below, that it
    // runs without a watchdog.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{exit:?}\n{log}");
    assert!(
        log.lines().any(
            |l| l.contains("told the service manager the daemon is ready")
                && l.contains("watchdog=None")
        ),
        "{log}"
    );
    let rest = manager.until("STOPPING=1").await;
    assert!(
        !rest.iter().any(|m| has_line(m, "WATCHDOG=1")),
        "fed a watchdog that is not ours: {rest:?}"
    );
}

/// Without `NOTIFY_SOCKET` (a daemon started by hand, the demo) the
/// notifier says nothing: no `READY=1`, no status line, no keep-alive even
/// when a watchdog period is set, so no attempt to reach a manager at all.
#[tokio::test]
async fn without_notify_socket_nothing_is_sent_even_with_a_watchdog_asked_for() {
    let world = World::new().await;
    // WATCHDOG_USEC alone: a notifier that ignored the missing socket would
    // try to ping every 200 ms and log each failure.
    let daemon = world.start_daemon(&[("WATCHDOG_USEC", "400000")]);
    // The positive event: the daemon serves; its notifier task was spawned
    // before the control socket's, and would have said READY=1 by now.
    world
        .status_until("the daemon serves", |s| s["daemon"].is_object())
        .await;
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{exit:?}\n{log}");
    for said in [
        "told the service manager the daemon is ready",
        "cannot notify the service manager",
        "watchdog",
    ] {
        assert!(
            !log.contains(said),
            "without NOTIFY_SOCKET the daemon logged `{said}`:\n{log}"
        );
    }
}

//! A hostile or careless local machine: the agent's own loose directories
//! are tightened, another user's and shared ones are refused untouched, a
//! squatted socket is not trusted, and an unprivileged user may read the
//! daemon's status but not change it.
//!
//! Tests that need a second user run only as root (they switch to uid
//! 65534, `nobody`); as anyone else they say so and pass.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use crate::support::{BIN, World};

const NOBODY: u32 = 65534;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loose_state_and_runtime_directories_are_tightened_and_files_are_private() {
    let world = World::new().await;
    // Empty, this user's, not shared: what systemd's StateDirectory= and
    // RuntimeDirectory= make with their default mode 0755.
    for (dir, loose) in [("state", 0o755), ("run", 0o770)] {
        std::fs::create_dir(world.path(dir)).unwrap();
        std::fs::set_permissions(world.path(dir), std::fs::Permissions::from_mode(loose)).unwrap();
    }
    let daemon = world.spawn_daemon().await;
    assert_eq!(mode(&world.path("state")), 0o700);
    assert_eq!(mode(&world.path("run")), 0o750);
    assert_eq!(mode(&world.path("state/consentry.sqlite3")), 0o600);
    assert_eq!(mode(&world.path("run/control.sock")), 0o660);
    assert_eq!(mode(&world.path("run/ingest.sock")), 0o660);
    assert!(
        world.path("state/.consentry").is_file(),
        "state_dir is marked"
    );
    assert!(
        world.path("run/.consentry").is_file(),
        "runtime_dir is marked"
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success());
    assert!(
        log.contains("was open to others; its mode was tightened"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_directory_is_refused_by_check_and_daemon() {
    if !is_root() {
        eprintln!("skipped: needs root to give a directory to another user");
        return;
    }
    let world = World::new().await;
    std::fs::create_dir(world.path("run")).unwrap();
    std::os::unix::fs::chown(world.path("run"), Some(NOBODY), Some(NOBODY)).unwrap();
    for verb in ["check", "daemon"] {
        let output = world.run(&[verb]).await;
        assert_eq!(output.status.code(), Some(1), "{verb}");
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains("owned by uid 65534"), "{verb}: {error}");
    }
}

/// Opens the world to `nobody`: its files readable, the runtime directory
/// and the control socket in nobody's group (as the service's group would
/// be), nothing else.
fn share_with_nobody(world: &World) {
    share_files_with_nobody(world);
    for shared in ["run", "run/control.sock"] {
        std::os::unix::fs::chown(world.path(shared), None, Some(NOBODY)).unwrap();
    }
}

/// Makes the world's directory and its files readable by `nobody`; the state
/// directory stays the agent's (0700).
fn share_files_with_nobody(world: &World) {
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for file in ["consentry.toml", "consent.toml", "ca.pem"] {
        if world.path(file).exists() {
            std::fs::set_permissions(world.path(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    }
}

async fn as_nobody(world: &World, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(&world.config)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprivileged_peer_may_read_status_but_not_change_anything() {
    if !is_root() {
        eprintln!("skipped: needs root to run the CLI as another user");
        return;
    }
    let world = World::with_eula_answering(200).await;
    let daemon = world.spawn_daemon().await;
    share_with_nobody(&world);

    let status = as_nobody(&world, &["status", "--json"]).await;
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["daemon"]["pid"], daemon.pid(), "{status}");

    let flush = as_nobody(&world, &["flush"]).await;
    assert_eq!(flush.status.code(), Some(4), "{flush:?}");
    let error = String::from_utf8_lossy(&flush.stderr);
    assert!(
        error.contains(
            "permission denied: uid 65534 may read this daemon's status but not change it"
        ),
        "{error}"
    );
    // The consent file is not nobody's to change either.
    let grant = as_nobody(&world, &["consent", "revoke", "eula"]).await;
    assert_eq!(grant.status.code(), Some(4), "{grant:?}");
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success());
    assert!(log.contains("refused a control request"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_control_socket_is_not_trusted_and_its_shared_directory_is_refused() {
    if !is_root()
        || std::process::Command::new("python3")
            .arg("-V")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and python3 to squat a socket as another user");
        return;
    }
    let world = World::with_eula_answering(200).await;
    // A runtime directory anyone may write to, and a squatter in it that
    // answers every request with a made-up success.
    std::fs::create_dir(world.path("run")).unwrap();
    std::fs::set_permissions(world.path("run"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(world.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = world.path("run/control.sock");
    let script = format!(
        r#"
import os, socket
os.setgid({NOBODY}); os.setuid({NOBODY})
s = socket.socket(socket.AF_UNIX)
s.bind({socket:?})
s.listen()
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b'{{"response":"consent_applied","purged":0,"ksn_window_discarded":false,"queued":0}}\n')
    c.close()
"#,
        socket = socket.display().to_string()
    );
    let mut squatter = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::support::eventually(
        "saw the squatter bind",
        std::time::Duration::from_secs(10),
        async || {
            if socket.exists() {
                Ok(())
            } else {
                Err("no socket")
            }
        },
    )
    .await;
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), NOBODY);

    let flush = world.run(&["flush"]).await;
    assert!(!flush.status.success(), "{flush:?}");
    let error = String::from_utf8_lossy(&flush.stderr);
    assert!(error.contains("refusing to trust it"), "{error}");

    // The daemon refuses a shared runtime directory as it is: it neither
    // tightens it nor removes what another user put there.
    let started = world.run(&["daemon"]).await;
    assert_eq!(started.status.code(), Some(1), "{started:?}");
    let error = String::from_utf8_lossy(&started.stderr);
    assert!(
        error.contains("is a shared directory (mode 1777, 1 file not ours)"),
        "{error}"
    );
    assert_eq!(mode(&world.path("run")), 0o1777);
    assert_eq!(std::fs::metadata(&socket).unwrap().uid(), NOBODY);

    // Given a directory of its own, it serves there.
    squatter.kill().await.unwrap();
    world.write_config(
        &world
            .config_text("")
            .replace("runtime_dir = \"run\"", "runtime_dir = \"run2\""),
    );
    let daemon = world.spawn_daemon().await;
    assert_eq!(mode(&world.path("run2")), 0o750);
    world.ok(&["flush"]).await;
    daemon.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_another_user_may_not_read_is_permission_denied_not_empty() {
    if !is_root() {
        eprintln!("skipped: needs root to run the CLI as another user");
        return;
    }
    let world = World::with_eula_answering(200).await;
    world.ok(&["flush"]).await;
    share_files_with_nobody(&world);
    assert_eq!(mode(&world.path("state")), 0o700);
    let database = world.path("state/consentry.sqlite3");

    for verb in [
        &["history"][..],
        &["history", "--show", "ffffffff"],
        &["consent", "history"],
        &["consent", "receipt", "ffffffff"],
        &["preview"],
    ] {
        let output = as_nobody(&world, verb).await;
        let error = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(4), "{verb:?}: {error}");
        assert!(
            error.to_lowercase().contains("permission denied"),
            "{verb:?}: {error}"
        );
        assert!(
            error.contains(&database.display().to_string()),
            "{verb:?}: {error}"
        );
        assert!(output.stdout.is_empty(), "{verb:?}: {output:?}");
    }

    // `status` shows what it can, and the store's trouble in its place.
    let status = as_nobody(&world, &["status", "--json"]).await;
    assert!(status.status.success(), "{status:?}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let fault = status["store"]["fault"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        fault.to_lowercase().contains("permission denied")
            && fault.contains(&database.display().to_string()),
        "{status}"
    );
}

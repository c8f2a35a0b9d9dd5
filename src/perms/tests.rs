use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn a_missing_directory_is_created_with_its_mode_and_marked() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("a/b/state");
    assert_eq!(assess(&state, AgentDir::State).unwrap(), Plan::Create);
    assert_eq!(
        ensure_dir(&state, AgentDir::State).unwrap(),
        Outcome::Created
    );
    assert_eq!(mode(&state), 0o700);
    assert!(state.join(MARKER).is_file());
    assert_eq!(
        assess(&state, AgentDir::State).unwrap(),
        Plan::Keep { marked: true }
    );
    assert_eq!(ensure_dir(&state, AgentDir::State).unwrap(), Outcome::Kept);
}

#[test]
fn an_empty_or_agent_only_directory_is_adopted_and_tightened() {
    let dir = tempfile::tempdir().unwrap();
    // What systemd's StateDirectory= makes with its default mode, or an
    // older consentry left (its files, no marker).
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o755);
    std::fs::write(state.join("consentry.sqlite3"), "").unwrap();
    std::fs::create_dir(state.join("quarantine")).unwrap();
    assert_eq!(
        assess(&state, AgentDir::State).unwrap(),
        Plan::Tighten {
            from: 0o755,
            marked: false
        }
    );
    assert_eq!(
        ensure_dir(&state, AgentDir::State).unwrap(),
        Outcome::Tightened { from: 0o755 }
    );
    assert_eq!(mode(&state), 0o700);
    assert!(state.join(MARKER).is_file());

    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o770);
    assert_eq!(
        ensure_dir(&run, AgentDir::Runtime).unwrap(),
        Outcome::Tightened { from: 0o770 }
    );
    assert_eq!(mode(&run), 0o750);
}

/// The operator's report: `state_dir = "/tmp/x"`, a 1777 directory
/// holding another user's file, became 0700.
#[test]
fn a_shared_directory_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("x");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    std::fs::write(shared.join("other"), "").unwrap();
    for kind in [AgentDir::State, AgentDir::Runtime] {
        let err = ensure_dir(&shared, kind).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!(
                "{} {} is a shared directory (mode 1777, 1 file not ours)",
                kind.key(),
                shared.display()
            )),
            "{text}"
        );
        assert!(text.contains("a directory of its own, such as /"), "{text}");
    }
    assert_eq!(mode(&shared), 0o1777);
    assert!(!shared.join(MARKER).exists());
    // World-writable without the sticky bit, and empty: still shared.
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    assert!(matches!(
        ensure_dir(&open, AgentDir::Runtime),
        Err(PermsError::Shared { mode: 0o777, .. })
    ));
    assert_eq!(mode(&open), 0o777);
}

#[test]
fn a_directory_holding_files_not_ours_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    chmod(&home, 0o755);
    std::fs::write(home.join(".bashrc"), "").unwrap();
    std::fs::write(home.join("consentry.sqlite3"), "").unwrap();
    let err = ensure_dir(&home, AgentDir::State).unwrap_err();
    assert!(
        err.to_string()
            .contains("holds files that are not consentry's (1 file not ours, e.g. `.bashrc`)"),
        "{err}"
    );
    assert_eq!(mode(&home), 0o755);
    assert!(!home.join(MARKER).exists());
    // Our own name as a symbolic link was planted, not made by us.
    let planted = dir.path().join("planted");
    std::fs::create_dir(&planted).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", planted.join("consentry.sqlite3")).unwrap();
    assert!(matches!(
        assess(&planted, AgentDir::State),
        Err(PermsError::NotOurs { .. })
    ));
}

#[test]
fn the_root_directory_and_an_empty_path_are_refused() {
    for root in ["/", "/.", "/.."] {
        let err = assess(Path::new(root), AgentDir::State).unwrap_err();
        assert!(
            err.to_string()
                .contains("is the root directory: point state_dir at a directory of its own, such as /var/lib/consentry"),
            "{err}"
        );
    }
    let err = ensure_dir(Path::new(""), AgentDir::Runtime).unwrap_err();
    assert!(err.to_string().starts_with("runtime_dir is empty"), "{err}");
}

#[test]
fn files_and_symbolic_links_are_not_directories() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(matches!(
        ensure_dir(&file, AgentDir::State),
        Err(PermsError::NotADirectory { symlink: false, .. })
    ));
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert!(matches!(
        ensure_dir(&link, AgentDir::State),
        Err(PermsError::NotADirectory { symlink: true, .. })
    ));
}

#[test]
fn a_directory_of_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: changing a directory's owner needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = ensure_dir(&theirs, AgentDir::State).unwrap_err();
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    assert!(!theirs.join(MARKER).exists());
    // One of our names, put in our directory by another user.
    let ours = dir.path().join("ours");
    ensure_dir(&ours, AgentDir::Runtime).unwrap();
    std::fs::write(ours.join("control.sock"), "").unwrap();
    std::os::unix::fs::chown(ours.join("control.sock"), Some(65534), None).unwrap();
    assert!(matches!(
        assess(&ours, AgentDir::Runtime),
        Err(PermsError::NotOurs { .. })
    ));
}

#[test]
fn a_directory_this_user_cannot_write_is_refused() {
    if is_root() {
        eprintln!(
            "skipped: root writes through any mode (tests/it/faults/disk.rs mounts one read-only)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    chmod(&state, 0o500);
    let err = assess(&state, AgentDir::State).unwrap_err();
    assert!(
        err.to_string().contains("is not writable by this user"),
        "{err}"
    );
    chmod(&state, 0o700);
}

#[test]
fn files_get_exactly_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db");
    std::fs::write(&file, "").unwrap();
    chmod(&file, 0o644);
    restrict_file(&file, 0o600).unwrap();
    assert_eq!(mode(&file), 0o600);
    restrict_file(&dir.path().join("missing"), 0o600).unwrap();
}

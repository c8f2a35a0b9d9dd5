//! Every bad input gets a clear one-line error, a non-zero exit, and loses
//! nothing.

use crate::support::{World, run_with_config, stderr_line};

async fn fails_with(world: &World, args: &[&str], expected: &[&str]) -> String {
    let output = world.run(args).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "consentry {args:?} should fail"
    );
    let line = stderr_line(&output);
    assert!(line.starts_with("error: "), "{line}");
    for part in expected {
        assert!(line.contains(part), "`{line}` lacks `{part}`");
    }
    line
}

#[tokio::test]
async fn malformed_config_names_file_line_and_column() {
    let world = World::new().await;
    world.write_config("region = \"global\"\nstate_dir = = \"x\"\n");
    fails_with(&world, &["check"], &["consentry.toml:2:"]).await;
    fails_with(&world, &["daemon"], &["consentry.toml:2:"]).await;
}

#[tokio::test]
async fn missing_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_with_config(&dir.path().join("nope.toml"), &["status"]).await;
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(
        line.contains("nope.toml") && line.contains("No such file"),
        "{line}"
    );
    assert_eq!(
        line.matches("No such file").count(),
        1,
        "said twice: {line}"
    );
}

#[tokio::test]
async fn unknown_key_in_config_is_an_error() {
    let world = World::new().await;
    let text = world
        .config_text("")
        .replace("region = \"global\"", "regoin = \"global\"");
    world.write_config(&text);
    fails_with(&world, &["check"], &["consentry.toml:1:1", "regoin"]).await;
}

#[tokio::test]
async fn unknown_clause_in_the_consent_file_is_located_and_the_file_kept() {
    let world = World::new().await;
    let text = format!(
        "# by hand\n[[accepted]]\nclause = \"eulla\"\nversion = 1\ntext_sha256 = \"{}\"\naccepted_at = 2026-01-01T00:00:00Z\nmethod = \"cli\"\n",
        "0".repeat(64)
    );
    std::fs::write(world.path("consent.toml"), &text).unwrap();
    fails_with(
        &world,
        &["check"],
        &["consent.toml:3:10", "unknown clause `eulla`"],
    )
    .await;
    fails_with(
        &world,
        &["consent", "grant", "eula"],
        &["unknown clause `eulla`"],
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(world.path("consent.toml")).unwrap(),
        text
    );
    // status still works and fails closed
    let status = world.status().await;
    assert!(
        status["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["allowed"] == false)
    );
}

#[tokio::test]
async fn unknown_clause_on_the_command_line() {
    let world = World::new().await;
    fails_with(
        &world,
        &["consent", "grant", "kns"],
        &["unknown clause `kns`", "eula, eula_regional, ksn"],
    )
    .await;
    fails_with(
        &world,
        &["consent", "revoke", "kns"],
        &["unknown clause `kns`"],
    )
    .await;
    assert!(!world.path("consent.toml").exists(), "nothing written");
}

#[tokio::test]
async fn unknown_purpose_is_refused() {
    let world = World::new().await;
    fails_with(
        &world,
        &["status", "telemetry_everything"],
        &["unknown purpose `telemetry_everything`"],
    )
    .await;

    // A catalogue without the purpose a collector serves is a product that
    // does not name it (ksv has no geo_distribution): the daemon starts,
    // the collector stays idle, and an event for it is refused as unknown.
    let catalogue = consentry::catalogue::EMBEDDED
        .replace("id = \"update_identity\"", "id = \"renamed_identity\"");
    std::fs::write(world.path("catalogue.toml"), catalogue).unwrap();
    let text = world.config_text("").replace(
        "consent_file",
        "catalogue = \"catalogue.toml\"\nconsent_file",
    );
    world.write_config(&text);
    world.ok(&["check"]).await;
    let daemon = world.spawn_daemon().await;
    let out = world.emit(&["update_task"], b"").await;
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("purpose `update_identity` is not in the catalogue"),
        "{said}"
    );
    let (exit, log) = daemon.terminate().await;
    assert!(exit.success(), "{log}");
}

#[tokio::test]
async fn unusable_state_dir_is_a_clear_error() {
    let world = World::new().await;
    std::fs::write(world.path("blocker"), "a file, not a directory").unwrap();
    let text = world
        .config_text("")
        .replace("state_dir = \"state\"", "state_dir = \"blocker/state\"");
    world.write_config(&text);
    // `check` refuses what the daemon refuses, in the same words.
    let expected = [
        "state_dir",
        "blocker/state",
        "cannot be used",
        "not a directory",
    ];
    let daemon = fails_with(&world, &["daemon"], &expected).await;
    let check = fails_with(&world, &["check"], &expected).await;
    assert_eq!(daemon, check);
    fails_with(&world, &["flush"], &["blocker/state", "Not a directory"]).await;
}

#[tokio::test]
async fn endpoints_must_be_tls_unless_loopback_and_explicitly_allowed() {
    let world = World::new().await;
    let url = world.receiver.url();

    let remote = world
        .config_text("")
        .replace(&url, "http://telemetry.example.com/v1/batches");
    world.write_config(&remote);
    fails_with(&world, &["check"], &["must use https://"]).await;

    let loopback = world
        .config_text("")
        .replace(&url, "http://127.0.0.1:9/v1/batches");
    world.write_config(&loopback);
    fails_with(&world, &["check"], &["allow_plaintext_loopback"]).await;

    let allowed = world
        .config_text("allow_plaintext_loopback = true")
        .replace(&url, "http://[::1]:9/v1/batches");
    world.write_config(&allowed);
    world.ok(&["check"]).await;

    let remote_allowed = world
        .config_text("allow_plaintext_loopback = true")
        .replace(&url, "http://192.0.2.1/v1/batches");
    world.write_config(&remote_allowed);
    fails_with(&world, &["check"], &["must use https://"]).await;
}

#[tokio::test]
async fn unreadable_ca_file_is_a_clear_error() {
    let world = World::new().await;
    std::fs::write(world.path("ca.pem"), "not a certificate").unwrap();
    fails_with(&world, &["check"], &["ca.pem"]).await;
}

#[tokio::test]
async fn check_accepts_a_good_world() {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    let out = world.ok(&["check", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let eula = consentry::catalogue::Catalogue::embedded()
        .clause("eula")
        .unwrap()
        .version;
    assert_eq!(report["accepted"][0]["clause"], "eula");
    assert_eq!(report["accepted"][0]["version"], eula);
    assert_eq!(report["catalogue"]["embedded"], true);
    // The grant recorded its own receipt, in a store made for it.
    assert_eq!(report["state_dir"]["exists"], true);
}

#[tokio::test]
async fn a_closed_stdout_ends_quietly_not_with_a_panic() {
    let world = World::new().await;
    let mut child = tokio::process::Command::new(crate::support::BIN)
        .args(["consent", "show", "ksn", "--config"])
        .arg(&world.config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(0), "{stderr}");
}

#[tokio::test]
async fn granting_ksn_without_the_eula_is_refused_and_writes_nothing() {
    let world = World::new().await;
    fails_with(
        &world,
        &["consent", "grant", "ksn"],
        &[
            "ksn takes effect only together with eula",
            "grant eula first",
        ],
    )
    .await;
    assert!(!world.path("consent.toml").exists(), "nothing written");
}

#[tokio::test]
async fn granting_again_what_is_accepted_changes_nothing() {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    let before = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let out = world.ok(&["consent", "grant", "eula", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["changed"], false, "{report}");
    assert_eq!(report["daemon"]["outcome"], "unchanged");
    let after = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    assert_eq!(before, after, "accepted_at was rewritten");
}

#[tokio::test]
async fn a_consent_file_full_of_duplicates_is_one_readable_error() {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    let record = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let record = &record[record.find("[[accepted]]").unwrap()..];
    std::fs::write(world.path("consent.toml"), record.repeat(5000)).unwrap();
    let line = fails_with(&world, &["check"], &["is accepted twice", "and 4979 more"]).await;
    assert!(line.len() < 4000, "{} bytes of error", line.len());
}

#[tokio::test]
async fn credentials_in_the_endpoint_are_refused_and_never_printed() {
    let world = World::new().await;
    let url = world.receiver.url();
    let with_secret = url.replace("https://", "https://alice:s3cret@");
    world.write_config(&world.config_text("").replace(&url, &with_secret));
    for verb in [&["check"][..], &["daemon"], &["flush"]] {
        let line = fails_with(
            &world,
            verb,
            &["carries credentials", "<credentials removed>@"],
        )
        .await;
        assert!(
            !line.contains("s3cret") && !line.contains("alice"),
            "{line}"
        );
    }
}

/// What the daemon refuses at start-up, `check` refuses too, in the same
/// words (one preflight for both), and neither changes anything. `check`
/// goes first: were the preflight to let a case through, the daemon is
/// never started on it.
#[tokio::test]
async fn check_refuses_every_setup_the_daemon_refuses() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new().await;
    std::fs::write(world.path("a-file"), "not a directory").unwrap();
    // A shared directory holding another user's file (the operator's
    // `/tmp/x`), and a runtime directory anyone may write to.
    let shared = world.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::write(shared.join("other"), "theirs").unwrap();
    let open = world.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir(world.path("a-dir")).unwrap();
    let long = format!("run-{}", "x".repeat(120));
    let base = world.config_text("");
    let world_dir = world.dir.path().display().to_string();
    let state = |to: &str| base.replace("state_dir = \"state\"", &format!("state_dir = \"{to}\""));
    let runtime =
        |to: &str| base.replace("runtime_dir = \"run\"", &format!("runtime_dir = \"{to}\""));
    let mut cases: Vec<(String, Vec<String>)> = vec![
        (
            state("/proc/consentry"),
            vec!["state_dir /proc/consentry".into(), "pseudo file system".into()],
        ),
        (state(""), vec!["state_dir is empty".into()]),
        (
            state("/"),
            vec!["state_dir / is the root directory: point state_dir at a directory of its own, such as /var/lib/consentry".into()],
        ),
        (
            state("shared"),
            vec![format!("state_dir {} is a shared directory (mode 1777, 1 file not ours)", shared.display())],
        ),
        (
            runtime("open"),
            vec![format!("runtime_dir {} is a shared directory (mode 0777)", open.display())],
        ),
        (
            // The config's own directory: it holds the config, the consent
            // file, the CA.
            state("."),
            vec![format!("state_dir {world_dir}"), "holds files that are not consentry's".into()],
        ),
        (
            base.replace("consent_file = \"consent.toml\"", "consent_file = \"a-dir\""),
            vec!["consent_file".into(), "a-dir is a directory".into()],
        ),
        (
            runtime("a-file"),
            vec!["runtime_dir".into(), "not a directory".into()],
        ),
        (
            runtime(&long),
            vec!["too long for a Unix socket".into()],
        ),
        (
            base.replace(&world.receiver.url(), "https://127.0.0.1:0/v1/batches"),
            vec!["port 0".into()],
        ),
        (
            base.replace(
                &world.receiver.url(),
                &format!("https://{}.example/v1", "h".repeat(260)),
            ),
            vec!["at most 253".into()],
        ),
        (
            base.replace("id = \"it-product\"", "id = \"it\\u0000product\""),
            vec!["control characters".into()],
        ),
        (
            format!("admin_group = \"no-such-group-here\"\n{base}"),
            vec!["admin_group `no-such-group-here`".into()],
        ),
    ];
    if rustix::process::geteuid().is_root() {
        let theirs = world.path("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        cases.push((state("theirs"), vec!["is owned by uid 65534".into()]));
    } else {
        eprintln!("skipped: the case of another user's state_dir needs root");
    }
    let before = snapshot(&world);
    for (text, expected) in cases {
        world.write_config(&text);
        let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
        let check = fails_with(&world, &["check"], &expected).await;
        let daemon = fails_with(&world, &["daemon"], &expected).await;
        assert_eq!(daemon, check);
        assert_eq!(snapshot(&world), before, "{check}");
    }
    assert!(!world.path("run").exists(), "nothing was created");
}

/// Every path in the world with its mode and owner: what must not change.
fn snapshot(world: &World) -> Vec<(std::path::PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = Vec::new();
    let mut stack = vec![world.dir.path().to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        if path.file_name() != Some(std::ffi::OsStr::new("consentry.toml")) {
            seen.push((path, meta.mode(), meta.uid()));
        }
    }
    seen.sort();
    seen
}

#[tokio::test]
async fn an_acceptance_dated_in_the_future_is_refused_at_its_place() {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    let consent = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let start = consent.find("accepted_at = ").unwrap() + "accepted_at = ".len();
    let end = start + consent[start..].find('\n').unwrap();
    let edited = format!(
        "{}9999-01-01T00:00:00Z{}",
        &consent[..start],
        &consent[end..]
    );
    std::fs::write(world.path("consent.toml"), edited).unwrap();
    fails_with(
        &world,
        &["check"],
        &["consent.toml:", "9999", "in the future"],
    )
    .await;
}

/// Config values that should be refused (issue 18): a secret in the
/// endpoint's query, a duration out of its range or too long to parse, an
/// overlong product string, plain http:// to a loopback host not written
/// as the docs allow, an empty path. `check` and the daemon refuse each in
/// the same words, at the line of the key at fault, never echoing the
/// secret, and create nothing.
#[tokio::test]
async fn check_and_the_daemon_refuse_out_of_bounds_values_at_their_key() {
    let world = World::new().await;
    let url = world.receiver.url();
    let base = world.config_text("");
    let plain = world.config_text("allow_plaintext_loopback = true");
    let long_id = format!("id = \"{}\"", "k".repeat(100 * 1024));
    let loopback = ["must use https://", "written exactly as 127.0.0.1 or [::1]"];
    // (config, the start of the line the error points at, what it says)
    let cases: Vec<(String, &str, &[&str])> = vec![
        (
            base.replace(&url, &format!("{url}?token=abc")),
            "endpoint = ",
            &["has a query or fragment", "?<removed>`", "token_file"],
        ),
        (
            base.replace(&url, &format!("{url}#abc")),
            "endpoint = ",
            &["has a query or fragment", "#<removed>`"],
        ),
        (
            base.replace("timeout = \"5s\"", "timeout = \"100000000d\""),
            "timeout = ",
            &["[upload] timeout is 100000000d, outside its range: give a duration from 1s to 10m"],
        ),
        (
            base.replace(
                "retry_max = \"1s\"",
                "retry_max = \"18446744073709551615d\"",
            ),
            "retry_max = ",
            &["`18446744073709551615d` is not a duration"],
        ),
        (
            base.replace(
                "interval = \"1h\"",
                "interval = \"1h\"\nksn_window = \"2d\"",
            ),
            "ksn_window = ",
            &["[collect] ksn_window is 2d, outside its range: give a duration from 1s to 1d"],
        ),
        (
            format!("{base}\n[store]\naudit_retention = \"20y\"\n"),
            "audit_retention = ",
            &["[store] audit_retention is 7305d", "from 1d to 3650d"],
        ),
        (
            base.replace("id = \"it-product\"", &long_id),
            "id = ",
            &["[product] id is 102400 bytes long, more than the 128"],
        ),
        (
            base.replace(
                "version = \"9.8.7.6\"",
                "version = \"9.8.7.6\"\nlocale = \"en-US-x-0123456789-0123456789-0123456789\"",
            ),
            "locale = ",
            &["[product] locale is 40 bytes long, more than the 35"],
        ),
        (
            plain.replace(&url, "http://127.0.0.2:9/v1/batches"),
            "endpoint = ",
            &loopback,
        ),
        (
            plain.replace(&url, "http://2130706433:9/v1/batches"),
            "endpoint = ",
            &loopback,
        ),
        (
            base.replace("state_dir = \"state\"", "state_dir = \"\""),
            "state_dir = ",
            &[
                "state_dir is empty: give the directory the agent keeps its queue in, such as /var/lib/consentry",
            ],
        ),
        (
            base.replace("runtime_dir = \"run\"", "runtime_dir = \"\""),
            "runtime_dir = ",
            &["runtime_dir is empty: give the directory for the control and ingest sockets"],
        ),
        (
            base.replace("consent_file = \"consent.toml\"", "consent_file = \"\""),
            "consent_file = ",
            &["consent_file is empty: give the consent file's path"],
        ),
        (
            world.config_text("token_file = \"\""),
            "token_file = ",
            &["[upload] token_file is empty: give the file holding the bearer token"],
        ),
    ];
    for (text, key, expected) in cases {
        let line = 1 + text
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` line in\n{text}"));
        let place = format!("consentry.toml:{line}:");
        let expected: Vec<&str> = expected.iter().copied().chain([place.as_str()]).collect();
        world.write_config(&text);
        let daemon = tokio::time::timeout(
            crate::support::PATIENCE,
            fails_with(&world, &["daemon"], &expected),
        )
        .await
        .unwrap_or_else(|_| panic!("the daemon started with {key}…"));
        let check = fails_with(&world, &["check"], &expected).await;
        assert_eq!(daemon, check);
        assert!(!check.contains("abc"), "a secret was shown: {check}");
    }
    assert!(!world.path("run").exists(), "nothing was created");
}

/// An acceptance an hour ahead of the clock is as wrong as one dated 9999
/// (docs/consent.md: at most 5 minutes past the clock and the file's date).
#[tokio::test]
async fn an_acceptance_an_hour_ahead_of_the_clock_is_refused_too() {
    let world = World::new().await;
    world.ok(&["consent", "grant", "eula"]).await;
    let consent = std::fs::read_to_string(world.path("consent.toml")).unwrap();
    let start = consent.find("accepted_at = ").unwrap() + "accepted_at = ".len();
    let end = start + consent[start..].find('\n').unwrap();
    let hour_ahead = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let when = consentry::clock::rfc3339(hour_ahead);
    let edited = format!("{}{when}{}", &consent[..start], &consent[end..]);
    std::fs::write(world.path("consent.toml"), edited).unwrap();
    fails_with(
        &world,
        &["check"],
        &[
            "consent.toml:",
            &when,
            "in the future",
            "more than 5 minutes",
        ],
    )
    .await;
}

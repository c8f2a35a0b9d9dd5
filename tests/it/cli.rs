//! The command line as an interface: global options on either side of the
//! verb, exit codes, JSON errors, help examples, completions, the man page
//! and the log format.

use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::support::{BIN, PATIENCE, World};

/// Runs the binary with exactly `args` (no `--config` appended).
async fn bare(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("CONSENTRY_CONFIG")
        .env_remove("CONSENTRY_LOG")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| {
        panic!(
            "stdout is not one JSON document ({err}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn global_options_work_before_and_after_the_verb() {
    let world = World::new().await;
    let config = world.config.to_str().unwrap();
    for args in [
        &["--config", config, "check"][..],
        &["check", "--config", config],
        &["-c", config, "--json", "status"],
        &["--json", "consent", "list", "--config", config],
    ] {
        let output = bare(args).await;
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if args.contains(&"--json") {
            json_of(&output);
        }
    }
    // The default config path does not exist here: the flag was really read.
    let output = bare(&["--config", "/nonexistent/consentry.toml", "check"]).await;
    assert_eq!(output.status.code(), Some(1));
}

#[tokio::test]
async fn errors_are_one_line_on_stderr_and_a_json_object_on_stdout_with_json() {
    let world = World::new().await;
    let output = world.run(&["status", "no_such_purpose", "--json"]).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: unknown purpose `no_such_purpose`"));
    let error = json_of(&output);
    assert_eq!(error["schema"], "consentry.error/1");
    assert_eq!(error["error"]["kind"], "error");
    assert_eq!(error["error"]["exit_code"], 1);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_purpose")
    );
    assert!(error["error"]["causes"].is_array());

    // Without --json, stdout stays empty.
    let output = world.run(&["status", "no_such_purpose"]).await;
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn emit_without_a_daemon_exits_3() {
    let world = World::new().await;
    let output = world.run(&["emit", "activation", "--json"]).await;
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let error = json_of(&output);
    assert_eq!(error["error"]["kind"], "not_running");
    assert_eq!(error["error"]["exit_code"], 3);
}

#[tokio::test]
async fn a_wrong_command_line_exits_2_and_says_so_in_json_too() {
    let output = bare(&["--json", "status", "--no-such-flag"]).await;
    assert_eq!(output.status.code(), Some(2));
    let error = json_of(&output);
    assert_eq!(error["error"]["kind"], "usage");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--no-such-flag")
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("--no-such-flag"));
    let output = bare(&["frobnicate"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

/// Every verb, as the user types it.
const VERBS: &[&[&str]] = &[
    &["daemon"],
    &["check"],
    &["consent"],
    &["consent", "list"],
    &["consent", "show"],
    &["consent", "grant"],
    &["consent", "revoke"],
    &["status"],
    &["flush"],
    &["emit"],
    &["preview"],
    &["history"],
    &["demo"],
    &["completions"],
    &["man"],
];

#[tokio::test]
async fn every_verb_has_examples_in_its_help_and_the_top_level_names_exit_codes() {
    for verb in VERBS {
        let mut args = verb.to_vec();
        args.push("--help");
        let output = bare(&args).await;
        assert!(output.status.success(), "{args:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(
            help.contains("Examples:"),
            "{args:?} has no examples:\n{help}"
        );
        assert!(help.contains("--config"), "{args:?}: no global options");
    }
    let help = String::from_utf8(bare(&["--help"]).await.stdout).unwrap();
    for code in [
        "Exit codes:",
        "0  ok",
        "2  usage",
        "3  the daemon",
        "4  permission",
    ] {
        assert!(help.contains(code), "{code} missing from:\n{help}");
    }
}

#[tokio::test]
async fn completions_name_every_verb_and_man_prints_a_roff_page() {
    let output = bare(&["completions", "bash"]).await;
    assert!(output.status.success());
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(script.contains("consentry"));
    // The words offered after `consentry `.
    let top = script
        .lines()
        .skip_while(|line| line.trim() != "consentry)")
        .find(|line| line.trim_start().starts_with("opts="))
        .expect("a top-level opts line");
    for verb in VERBS.iter().filter(|v| v.len() == 1) {
        assert!(
            top.split(['"', ' ']).any(|word| word == verb[0]),
            "{verb:?} missing from the bash completions: {top}"
        );
    }
    assert!(top.contains("--config") && top.contains("--json"), "{top}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let output = bare(&["completions", shell]).await;
        assert!(
            output.status.success() && !output.stdout.is_empty(),
            "{shell}"
        );
    }
    assert_eq!(bare(&["completions", "tcsh"]).await.status.code(), Some(2));

    let page = String::from_utf8(bare(&["man"]).await.stdout).unwrap();
    assert!(page.starts_with(".TH consentry 1"), "{page}");
    assert!(page.contains("\\*(Aq") == page.contains(".ds Aq"));
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH SUBCOMMANDS"] {
        assert!(page.contains(section), "{section} missing");
    }
    let page = String::from_utf8(bare(&["man", "status"]).await.stdout).unwrap();
    assert!(page.starts_with(".TH consentry-status 1"), "{page}");
    assert_eq!(bare(&["man", "nope"]).await.status.code(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_json_writes_one_json_object_per_stderr_line() {
    let world = World::new().await;
    let config = world.config.to_str().unwrap();
    let child = Command::new(BIN)
        .args(["--log-format", "json", "--config", config, "daemon"])
        .env_remove("CONSENTRY_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !world.status().await["daemon"].is_object() {
        assert!(tokio::time::Instant::now() < deadline, "no daemon");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let log = String::from_utf8(output.stderr).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    assert!(!lines.is_empty(), "the daemon logged nothing at info");
    for line in &lines {
        assert!(
            line["level"].is_string() && line["fields"].is_object(),
            "{line}"
        );
    }

    // Text logs to a pipe: plain `LEVEL target: message`, no colour codes.
    let daemon = world.spawn_daemon().await;
    let (_, log) = daemon.terminate().await;
    assert!(log.contains(" INFO consentry"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log to a pipe: {log}"
    );
}

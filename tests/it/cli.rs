//! The command line as an interface: global options on either side of the
//! verb, exit codes, JSON errors, help examples, completions, the man page
//! and the log format.

use std::process::{Output, Stdio};

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
    &["consent", "history"],
    &["consent", "receipt"],
    &["status"],
    &["flush"],
    &["emit"],
    &["preview"],
    &["history"],
    &["disclosure"],
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
    world
        .status_until("answered as a daemon", |s| s["daemon"].is_object())
        .await;
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

/// The example of every schema in docs/cli-json.md, by schema id.
fn documented_examples() -> std::collections::BTreeMap<String, serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/cli-json.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut examples = std::collections::BTreeMap::new();
    for block in text.split("```json\n").skip(1) {
        let json = &block[..block.find("```").expect("an unclosed block")];
        let example: serde_json::Value = serde_json::from_str(json)
            .unwrap_or_else(|err| panic!("a docs/cli-json.md example is not JSON ({err}): {json}"));
        let schema = example["schema"]
            .as_str()
            .expect("every example names its schema")
            .to_owned();
        assert!(
            examples.insert(schema.clone(), example).is_none(),
            "two examples of {schema}"
        );
    }
    examples
}

/// Where `real` differs in shape from `example`: the same keys at every
/// level and the same JSON types. `null` in the output stands for any
/// value (the doc shows the type it has when present); a key `<…>` in the
/// example is a map, and the string `"<any JSON>"` anything.
fn shape_errors(path: &str, example: &serde_json::Value, real: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    match (example, real) {
        (Value::String(any), _) if any == "<any JSON>" => vec![],
        (_, Value::Null) => vec![],
        (Value::Object(example), Value::Object(real)) => {
            if let Some((key, value)) = example.iter().next()
                && example.len() == 1
                && key.starts_with('<')
            {
                return real
                    .iter()
                    .flat_map(|(k, v)| shape_errors(&format!("{path}.{k}"), value, v))
                    .collect();
            }
            let mut errors = Vec::new();
            for key in example.keys().filter(|k| !real.contains_key(*k)) {
                errors.push(format!("{path}.{key}: documented, not printed"));
            }
            for (key, value) in real {
                match example.get(key) {
                    None => errors.push(format!("{path}.{key}: printed, not documented")),
                    Some(documented) => {
                        errors.extend(shape_errors(&format!("{path}.{key}"), documented, value))
                    }
                }
            }
            errors
        }
        (Value::Array(example), Value::Array(real)) => match example.first() {
            None => vec![format!("{path}: the example array is empty")],
            Some(first) => real
                .iter()
                .enumerate()
                .flat_map(|(n, v)| shape_errors(&format!("{path}[{n}]"), first, v))
                .collect(),
        },
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => vec![],
        _ => vec![format!("{path}: documented as {example}, printed {real}")],
    }
}

#[test]
fn the_shape_check_can_fail() {
    let doc = serde_json::json!({"a": 1, "m": {"<k>": {"n": true}}, "l": [{"x": "s"}]});
    let ok =
        serde_json::json!({"a": null, "m": {"p": {"n": false}}, "l": [{"x": "t"}, {"x": "u"}]});
    assert!(shape_errors("", &doc, &ok).is_empty());
    for bad in [
        serde_json::json!({"a": "1", "m": {}, "l": []}),
        serde_json::json!({"m": {}, "l": []}),
        serde_json::json!({"a": 1, "b": 2, "m": {}, "l": []}),
        serde_json::json!({"a": 1, "m": {"p": {"n": 1}}, "l": []}),
        serde_json::json!({"a": 1, "m": {}, "l": [{"x": "s", "y": 1}]}),
    ] {
        assert!(!shape_errors("", &doc, &bad).is_empty(), "{bad}");
    }
}

async fn run_json(world: &World, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.push("--json");
    world.run(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_json_output_has_the_documented_shape() {
    let examples = documented_examples();
    let world = World::new().await;
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut check = |output: &Output, args: &[&str]| -> serde_json::Value {
        let value = json_of(output);
        let schema = value["schema"]
            .as_str()
            .unwrap_or_else(|| panic!("{args:?}: no schema"));
        let example = examples
            .get(schema)
            .unwrap_or_else(|| panic!("{args:?}: {schema} is not in docs/cli-json.md"));
        let errors = shape_errors("", example, &value);
        assert!(
            errors.is_empty(),
            "{args:?} does not match docs/cli-json.md:\n{}\n{value:#}",
            errors.join("\n")
        );
        *seen.entry(schema.to_owned()).or_default() += 1;
        value
    };

    let (out, args) = (
        run_json(&world, &["consent", "grant", "eula"]).await,
        &["consent", "grant", "eula"],
    );
    assert_eq!(check(&out, args)["daemon"]["outcome"], "not_running");
    let (out, args) = (
        run_json(&world, &["consent", "grant", "eula"]).await,
        &["consent", "grant", "eula"],
    );
    assert_eq!(check(&out, args)["daemon"]["outcome"], "unchanged");
    for verb in [
        &["check"][..],
        &["consent", "list"],
        &["consent", "show", "ksn"],
        &["preview"],
        &["status"],
        &["disclosure"],
        &["disclosure", "--region", "us-ca"],
    ] {
        let (out, args) = (run_json(&world, verb).await, verb);
        check(&out, args);
    }
    let (out, args) = (run_json(&world, &["flush"]).await, &["flush"]);
    check(&out, args);
    let (out, args) = (run_json(&world, &["history"]).await, &["history"]);
    let history = check(&out, args);
    let batch = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e["batch_id"].as_str())
        .expect("an upload in the trail")
        .to_owned();
    let (out, args) = (
        run_json(&world, &["history", "--show", &batch]).await,
        &["history", "--show", &batch],
    );
    check(&out, args);
    let (out, args) = (run_json(&world, &["status"]).await, &["status"]);
    assert!(
        check(&out, args)["store"].is_object(),
        "no store without a daemon"
    );
    let (out, args) = (run_json(&world, &["report"]).await, &["report"]);
    let report = check(&out, args);
    assert!(report["daemon"].is_null() && !report["batches"][0].is_null());

    let daemon = world.spawn_daemon().await;
    // The daemon records what was accepted before it started.
    let (out, args) = (
        run_json(&world, &["consent", "history"]).await,
        &["consent", "history"],
    );
    let receipts = check(&out, args);
    let id = receipts["receipts"][0]["receipt_id"]
        .as_str()
        .expect("a receipt for the grant")
        .to_owned();
    let (out, args) = (
        world.run(&["consent", "receipt", &id]).await,
        &["consent", "receipt", &id],
    );
    check(&out, args);
    let (out, args) = (
        run_json(&world, &["emit", "activation", "--field", "method=code"]).await,
        &["emit", "activation", "--field", "method=code"],
    );
    check(&out, args);
    let (out, args) = (run_json(&world, &["flush"]).await, &["flush"]);
    check(&out, args);
    let (out, args) = (run_json(&world, &["status"]).await, &["status"]);
    let status = check(&out, args);
    assert!(status["daemon"]["last_collect"].is_object(), "{status}");
    let (out, args) = (
        run_json(&world, &["report", "--format", "json"]).await,
        &["report", "--format", "json"],
    );
    assert!(check(&out, args)["daemon"]["pid"].is_u64());
    let (out, args) = (
        run_json(&world, &["consent", "revoke", "eula"]).await,
        &["consent", "revoke", "eula"],
    );
    let revoked = check(&out, args);
    assert_eq!(revoked["daemon"]["outcome"], "applied");
    assert!(revoked["daemon"]["queued"].is_u64());
    let (out, args) = (run_json(&world, &["flush"]).await, &["flush"]);
    let flushed = check(&out, args);
    assert_eq!(
        flushed["collect"]["blocked"][0]["reason"],
        "eula not accepted"
    );
    let (out, args) = (
        run_json(&world, &["status", "nope"]).await,
        &["status", "nope"],
    );
    check(&out, args);
    daemon.terminate().await;
    let (out, args) = (
        run_json(&world, &["emit", "activation"]).await,
        &["emit", "activation"],
    );
    assert_eq!(check(&out, args)["error"]["kind"], "not_running");

    let missing: Vec<&String> = examples.keys().filter(|s| !seen.contains_key(*s)).collect();
    assert!(
        missing.is_empty(),
        "documented but never checked: {missing:?}"
    );
}

/// The embedded catalogue with its one title longer than a terminal line
/// shortened: off a terminal the full text is printed, so that title alone
/// would run past 80 columns whatever the layout.
fn catalogue_with_short_titles() -> String {
    let long = "End User License Agreement: data provision in the European Union, \
                the United Kingdom, Brazil and California";
    assert!(consentry::catalogue::EMBEDDED.contains(long));
    consentry::catalogue::EMBEDDED.replace(long, "End User License Agreement: regional edition")
}

/// The column at which `needle` starts in `line`, in characters.
fn column_of(line: &str, needle: &str) -> Option<usize> {
    line.find(needle).map(|at| line[..at].chars().count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_consent_list_are_aligned_tables_within_80_columns() {
    let world = World::with_eula_answering(200).await;
    std::fs::write(world.path("catalogue.toml"), catalogue_with_short_titles()).unwrap();
    let text = std::fs::read_to_string(&world.config).unwrap().replace(
        "consent_file",
        "catalogue = \"catalogue.toml\"\nconsent_file",
    );
    world.write_config(&text);
    world.ok(&["consent", "grant", "ksn"]).await;
    let daemon = world.spawn_daemon().await;
    let utf8 = [("COLUMNS", "80"), ("LC_ALL", "C.UTF-8")];
    let run = async |args: &[&str], env: &[(&str, &str)]| {
        let output = world.run_env(args, env).await;
        assert!(output.status.success(), "{args:?}: {output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{args:?}: {line:?}\n{text}");
            assert!(!line.contains('\x1b'), "colour into a pipe: {line:?}");
        }
        text
    };

    let status = run(&["status"], &utf8).await;
    let lines: Vec<&str> = status.lines().collect();
    let header = lines.iter().find(|l| l.starts_with("PURPOSE")).unwrap();
    let verdict_at = column_of(header, "VERDICT").unwrap();
    let basis_at = column_of(header, "BASIS").unwrap();
    let rows: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("✔ allowed") || l.contains("✘ blocked"))
        .collect();
    let purposes = consentry::catalogue::Catalogue::embedded()
        .purposes()
        .count();
    assert_eq!(rows.len(), purposes, "one row per purpose:\n{status}");
    assert!(status.contains("✘ blocked"), "{status}");
    for row in &rows {
        let verdict = column_of(row, "✔").or_else(|| column_of(row, "✘"));
        assert_eq!(verdict, Some(verdict_at), "{row:?}\n{status}");
        let basis = row.chars().skip(basis_at).collect::<String>();
        assert!(
            ["contract", "legitimate_interest", "consent"]
                .iter()
                .any(|b| basis.starts_with(b)),
            "{row:?}\n{status}"
        );
    }
    // Every reason is there in full, on the row or below it.
    assert!(status.contains("eula accepted at version 4"), "{status}");
    assert!(status.contains("no clause allowing it applies in region global"));
    // The state block: labels in one column.
    let daemon_line = lines.iter().find(|l| l.starts_with("daemon ")).unwrap();
    let queue_line = lines.iter().find(|l| l.starts_with("queue ")).unwrap();
    assert!(daemon_line.contains("running (pid"), "{status}");
    assert_eq!(
        column_of(daemon_line, "running"),
        queue_line
            .find(|c: char| c.is_ascii_digit())
            .map(|at| queue_line[..at].chars().count()),
        "{status}"
    );

    let list = run(&["consent", "list"], &utf8).await;
    let header = list.lines().next().unwrap();
    let state_at = column_of(header, "STATE").unwrap();
    let ksn = list.lines().find(|l| l.starts_with("ksn ")).unwrap();
    assert_eq!(column_of(ksn, "✔ accepted"), Some(state_at), "{list}");
    assert_eq!(column_of(ksn, "v4"), column_of(header, "VERSION"), "{list}");
    assert!(ksn.ends_with(" cli"), "{list}");
    let marketing = list.lines().find(|l| l.starts_with("marketing ")).unwrap();
    assert_eq!(column_of(marketing, "- not accepted"), Some(state_at));
    assert!(
        list.contains("\n    Security Network statement (voluntary)\n"),
        "{list}"
    );

    // Outside a UTF-8 locale, ASCII marks.
    let ascii = run(&["status"], &[("COLUMNS", "80"), ("LC_ALL", "C")]).await;
    assert!(ascii.is_ascii(), "{ascii}");
    assert!(
        ascii.contains("+ allowed") && ascii.contains("x blocked"),
        "{ascii}"
    );
    daemon.kill().await;
}

/// The README's first command, in both wire formats: it runs on embedded
/// defaults with nothing but loopback, and ends by checking that nothing
/// left after the revoke and that the body kept is the body received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_end_to_end_in_both_protocols() {
    for protocol in ["consentry-json", "otlp-http"] {
        let output = bare(&["demo", "--protocol", protocol]).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{protocol}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!("protocol   {protocol}")),
            "{stdout}"
        );
        assert!(
            stdout.contains("(recorded at send time: the same)"),
            "{stdout}"
        );
        assert!(stdout.contains("Done: only catalogue fields"), "{stdout}");
        assert!(
            stdout.contains(
                "ksn_scan_aggregates.user_trusted (geometric, ε = 0.1 a report): the receiver got "
            ),
            "the demo shows a randomised field: {stdout}"
        );
        // The report it wrote, which outlives the demo: read, then removed.
        let report = stdout
            .lines()
            .find_map(|l| l.strip_prefix("Transparency report (`consentry report`): "))
            .unwrap_or_else(|| panic!("no report path: {stdout}"));
        let page = std::fs::read_to_string(report).unwrap();
        std::fs::remove_file(report).unwrap();
        assert!(page.contains("<svg class=\"chart\""), "{page}");
        assert!(
            page.contains("<section id=\"p-ksn_scan_aggregates\">"),
            "{page}"
        );
        for purpose in [
            "update_identity",
            "installation_errors",
            "ksn_scan_aggregates",
        ] {
            assert!(
                stdout.contains(&format!("    {purpose} under")),
                "{purpose}: {stdout}"
            );
        }
    }
}

//! Personal data in free-text fields (issue 20, item 4): the values that
//! went out verbatim (a path into a home directory, an e-mail address, a
//! MAC address, private IPv4 addresses) are refused at the door, through
//! the real daemon, in every field they went out in, and nothing of them
//! reaches the store, the log or the receiver; well-shaped values still go.

use crate::support::{World, queued_records};

/// The issue's examples.
const SECRETS: [&str; 5] = [
    "/home/alice/secret.docx",
    "alice@example.com",
    "00:1a:2b:3c:4d:5e",
    "192.168.1.23",
    "10.0.0.7",
];

/// Every field the issue names: its purpose, its name in errors, and the
/// ingest line that puts `{}` there (a JSON string).
const FIELDS: [(&str, &str, &str); 11] = [
    (
        "installation_errors",
        "error_type",
        r#"{"kind":"install_task","task":"install","status":"failed","error_type":{}}"#,
    ),
    (
        "installation_errors",
        "upgrade_campaign_id",
        r#"{"kind":"install_task","task":"upgrade","status":"failed","campaign_id":{}}"#,
    ),
    (
        "activation",
        "activation_code",
        r#"{"kind":"activation","method":"code","code":{}}"#,
    ),
    (
        "activation",
        "product_locale",
        r#"{"kind":"activation","method":"code","code":"ABCDE-12345","locale":{}}"#,
    ),
    (
        "activation",
        "license_edition",
        r#"{"kind":"activation","method":"code","code":"ABCDE-12345","license_edition":{}}"#,
    ),
    (
        "link_following",
        "product_type",
        r#"{"kind":"record","purpose":"link_following","fields":{"product_type":{}}}"#,
    ),
    (
        "link_following",
        "product_version",
        r#"{"kind":"record","purpose":"link_following","fields":{"product_version":{}}}"#,
    ),
    (
        "link_following",
        "interface_language",
        r#"{"kind":"record","purpose":"link_following","fields":{"interface_language":{}}}"#,
    ),
    (
        "link_following",
        "web_page_id",
        r#"{"kind":"record","purpose":"link_following","fields":{"web_page_id":{}}}"#,
    ),
    (
        "link_following",
        "threat_hash",
        r#"{"kind":"record","purpose":"link_following","fields":{"threat_hash":{}}}"#,
    ),
    (
        "link_following",
        "threat_name",
        r#"{"kind":"record","purpose":"link_following","fields":{"threat_name":{}}}"#,
    ),
];

/// Well-shaped values in the same fields, which must still go.
const GOOD: [&str; 3] = [
    r#"{"kind":"install_task","task":"upgrade","status":"failed","error_type":"disk_full","error_code":1603,"campaign_id":"spring-2026"}"#,
    r#"{"kind":"activation","method":"code","code":"12345-67890-12345-67890","locale":"de-DE","license_edition":"business"}"#,
    r#"{"kind":"record","purpose":"link_following","fields":{"product_type":"suite","product_version":"1.0.0.0","interface_language":"en","web_page_id":"renewal","threat_hash":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08","threat_name":"HEUR:Trojan.Win32.Generic"}}"#,
];

/// Out of shape, though nothing personal: a space in an identifier, a
/// POSIX locale name.
const UNFIT: [&str; 2] = [
    r#"{"kind":"install_task","task":"install","status":"failed","error_type":"two words"}"#,
    r#"{"kind":"activation","method":"code","code":"ABCDE-12345","locale":"de_DE.UTF-8"}"#,
];

fn line(template: &str, value: &str) -> String {
    template.replace("{}", &serde_json::to_string(value).unwrap())
}

/// Whether any of the secrets is in `bytes`.
fn holds_a_secret(bytes: &[u8]) -> Option<&'static str> {
    SECRETS.into_iter().find(|secret| {
        bytes
            .windows(secret.len())
            .any(|window| window == secret.as_bytes())
    })
}

/// The purpose a GOOD or UNFIT line feeds.
fn purpose_of(line: &str) -> &'static str {
    if line.contains("install_task") {
        "installation_errors"
    } else if line.contains("\"activation\"") {
        "activation"
    } else {
        "link_following"
    }
}

/// The issue's fields are spread over the products: `kes` has
/// `installation_errors` (under `ksn`) and the activation-by-code fields,
/// `ksv` has `link_following`. Each runs the fields its catalogue has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_values_are_refused_at_the_door_and_never_kept() {
    refused_in("kes", &["eula", "ksn"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_values_in_link_following_are_refused_and_never_kept() {
    refused_in("ksv", &["eula"]).await;
}

async fn refused_in(product: &str, grants: &[&str]) {
    let catalogue = consentry::catalogue::Catalogue::builtin(
        consentry::catalogue::BuiltIn::from_id(product).unwrap(),
    );
    let has = |purpose: &str, field: &str| {
        catalogue
            .purpose(purpose)
            .is_some_and(|p| p.field(field).is_some())
    };
    let fields: Vec<(&str, &str, &str)> = FIELDS
        .into_iter()
        .filter(|(purpose, field, _)| has(purpose, field))
        .collect();
    let good: Vec<&str> = GOOD
        .into_iter()
        .filter(|l| catalogue.purpose(purpose_of(l)).is_some())
        .collect();
    let unfit: Vec<&str> = UNFIT
        .into_iter()
        .filter(|l| catalogue.purpose(purpose_of(l)).is_some())
        .collect();
    let purposes: std::collections::BTreeSet<&str> =
        fields.iter().map(|(purpose, _, _)| *purpose).collect();

    let world = World::new().await;
    world.receiver.set_status(503);
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"{product}\"\n{config}"));
    for clause in grants {
        world.ok(&["consent", "grant", clause]).await;
    }
    let mut daemon = world.spawn_daemon().await;
    daemon.drain_log();

    // One line per secret per field, then the well-shaped and unfit lines.
    let mut lines = Vec::new();
    for (_, _, template) in &fields {
        for secret in SECRETS {
            lines.push(line(template, secret));
        }
    }
    let personal = lines.len();
    lines.extend(good.iter().map(|l| (*l).to_owned()));
    lines.extend(unfit.iter().map(|l| (*l).to_owned()));
    let input = lines.join("\n") + "\n";
    let out = world.emit(&["-", "--json"], input.as_bytes()).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(holds_a_secret(&out.stderr), None, "{out:?}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["accepted"], good.len(), "{summary}");
    assert_eq!(summary["rejected"], personal + unfit.len(), "{summary}");

    // Each refused with its code, naming its field, never its value.
    let errors = summary["errors"].as_array().unwrap();
    assert_eq!(errors.len(), personal + unfit.len());
    for (n, error) in errors.iter().enumerate() {
        let message = error["message"].as_str().unwrap();
        let line = if n < personal {
            n + 1
        } else {
            n + 1 + good.len()
        };
        assert_eq!(error["line"], line, "{error}");
        assert_eq!(holds_a_secret(message.as_bytes()), None, "{error}");
        if n < personal {
            let (purpose, field, _) = fields[n / SECRETS.len()];
            assert_eq!(error["error"], "personal_data", "{error}");
            assert!(message.contains(&format!("`{purpose}.{field}`")), "{error}");
        } else {
            assert_eq!(error["error"], "out_of_shape", "{error}");
        }
    }

    // `status` counts them per purpose and code.
    let status = world.status().await;
    let refused = &status["daemon"]["refused"];
    for purpose in &purposes {
        let count = fields.iter().filter(|(p, _, _)| p == purpose).count() * SECRETS.len();
        assert_eq!(refused[*purpose]["personal_data"], count, "{refused}");
        let unfits = unfit.iter().filter(|l| purpose_of(l) == *purpose).count();
        if unfits > 0 {
            assert_eq!(refused[*purpose]["out_of_shape"], unfits, "{refused}");
        }
    }
    let text = world.ok(&["status"]).await;
    assert!(text.contains("personal_data (values never kept)"), "{text}");

    // Nothing of them in the store, not even in freed pages or the WAL.
    let stored = queued_records(&world.path("state/consentry.sqlite3"), |_| true);
    for purpose in &purposes {
        let kept = stored.iter().filter(|(p, _)| p == purpose).count();
        assert_eq!(kept, 1, "{purpose}: {stored:?}");
    }
    for entry in std::fs::read_dir(world.path("state")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(holds_a_secret(&bytes), None, "{}", path.display());
        }
    }

    // The well-shaped records go; nothing of the secrets does.
    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    let records = world.received_records();
    let sent = |purpose: &str, field: &str| {
        records
            .iter()
            .find(|r| r.purpose == purpose)
            .and_then(|r| r.fields.get(field))
            .cloned()
    };
    let expected = [
        ("installation_errors", "error_type", "disk_full"),
        ("activation", "activation_code", "12345-67890-12345-67890"),
        ("link_following", "threat_name", "HEUR:Trojan.Win32.Generic"),
    ];
    for (purpose, field, value) in expected {
        if has(purpose, field) {
            assert_eq!(sent(purpose, field), Some(value.into()), "{purpose}");
        }
    }
    for request in world.receiver.requests() {
        let envelope = serde_json::to_vec(&request.envelope.unwrap()).unwrap();
        assert_eq!(holds_a_secret(&envelope), None);
    }
    let (_, log) = daemon.terminate().await;
    assert_eq!(holds_a_secret(log.as_bytes()), None, "{log}");
}

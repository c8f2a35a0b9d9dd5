//! The consent model as a person meets it: legal basis, bundling, opt-out
//! signals.

use crate::support::{World, stderr_line};

/// `status --json` decisions, by purpose: (allowed, basis, reason).
async fn decisions(world: &World, env: &[(&str, &str)]) -> Vec<(String, bool, String, String)> {
    let output = world.run_env(&["status", "--json"], env).await;
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    status["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["purpose"].as_str().unwrap().to_owned(),
                d["allowed"].as_bool().unwrap(),
                d["basis"].as_str().unwrap().to_owned(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn accept_everything(world: &World) {
    for clause in ["eula", "ksn", "marketing", "third_party_analytics"] {
        world.ok(&["consent", "grant", clause]).await;
    }
}

#[tokio::test]
async fn a_catalogue_that_bundles_consent_with_the_eula_is_refused_with_its_place() {
    let world = World::new().await;
    let catalogue =
        consentry::catalogue::EMBEDDED.replace("clauses = [\"marketing\"]", "clauses = [\"eula\"]");
    std::fs::write(world.path("catalogue.toml"), catalogue).unwrap();
    let text = world.config_text("").replace(
        "consent_file",
        "catalogue = \"catalogue.toml\"\nconsent_file",
    );
    world.write_config(&text);
    let output = world.run(&["check"]).await;
    assert_eq!(output.status.code(), Some(1));
    let line = stderr_line(&output);
    assert!(line.contains("catalogue.toml:"), "{line}");
    assert!(
        line.contains("purpose `promotions` rests on consent, so it cannot be allowed by `eula`"),
        "{line}"
    );
}

#[tokio::test]
async fn every_decision_names_its_legal_basis() {
    let world = World::new().await;
    accept_everything(&world).await;
    let decisions = decisions(&world, &[]).await;
    let basis = |purpose: &str| {
        decisions
            .iter()
            .find(|d| d.0 == purpose)
            .map(|d| d.2.clone())
            .unwrap()
    };
    assert_eq!(basis("update_identity"), "contract");
    assert_eq!(basis("installation_errors"), "legitimate_interest");
    assert_eq!(basis("ksn_scan_aggregates"), "consent");
    assert_eq!(basis("promotions"), "consent");
    assert!(decisions.iter().all(|d| d.1), "{decisions:?}");
}

#[tokio::test]
async fn do_not_track_in_us_ca_blocks_sale_and_sharing_and_nothing_else() {
    let world = World::new().await;
    world.set_region("us-ca");
    accept_everything(&world).await;
    let sale_or_sharing = ["promotions", "third_party_user_count"];

    for decision in decisions(&world, &[("DO_NOT_TRACK", "1")]).await {
        if sale_or_sharing.contains(&decision.0.as_str()) {
            assert!(!decision.1, "{decision:?}");
            assert!(decision.3.starts_with("DO_NOT_TRACK is on"), "{decision:?}");
        } else {
            assert!(decision.1, "{decision:?}");
        }
    }
    // Without the signal, or outside us-ca, they are allowed.
    assert!(decisions(&world, &[]).await.iter().all(|d| d.1));
    let text = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&text.replace("region = \"us-ca\"", "region = \"global\""));
    assert!(
        decisions(&world, &[("DO_NOT_TRACK", "1")])
            .await
            .iter()
            .all(|d| d.1)
    );
    // The Global Privacy Control setting does the same in us-ca.
    let text = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&text.replace(
        "region = \"global\"",
        "region = \"us-ca\"\nglobal_privacy_control = true",
    ));
    for decision in decisions(&world, &[]).await {
        let blocked = sale_or_sharing.contains(&decision.0.as_str());
        assert_eq!(decision.1, !blocked, "{decision:?}");
        if blocked {
            assert!(
                decision.3.starts_with("Global Privacy Control is on"),
                "{decision:?}"
            );
        }
    }
}

/// The embedded catalogue with `link_following` widened by one field and
/// `update_identity` narrowed by one.
fn widened_and_narrowed() -> String {
    let catalogue = consentry::catalogue::EMBEDDED;
    let last_link_field =
        "description = \"Name of that threat in the vendor's classification, if any.\"\n";
    assert!(catalogue.contains(last_link_field));
    let license = "[[purpose.field]]\nname = \"license_id\"\ntype = \"string\"\ndescription = \"Identifier of the active licence, when one is installed.\"\n\n";
    assert!(catalogue.contains(license));
    catalogue
        .replace(
            last_link_field,
            &format!("{last_link_field}\n[[purpose.field]]\nname = \"referrer_page\"\ntype = \"string\"\ndescription = \"The product page the link was on.\"\n"),
        )
        .replace(license, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widened_purpose_sends_nothing_until_the_clause_is_renewed() {
    let world = World::with_eula_answering(200).await;
    std::fs::write(world.path("catalogue.toml"), widened_and_narrowed()).unwrap();
    let text = std::fs::read_to_string(&world.config).unwrap().replace(
        "consent_file",
        "catalogue = \"catalogue.toml\"\nconsent_file",
    );
    world.write_config(&text);
    let daemon = world.spawn_daemon().await;

    let decisions = decisions(&world, &[]).await;
    let of = |purpose: &str| decisions.iter().find(|d| d.0 == purpose).unwrap().clone();
    let link = of("link_following");
    assert!(!link.1, "{link:?}");
    assert!(link.3.contains("link_following.referrer_page"), "{link:?}");
    assert!(link.3.contains("renewal needed"), "{link:?}");
    assert!(
        of("update_identity").1,
        "a narrowed purpose needs no renewal"
    );

    let event = r#"{"kind":"record","purpose":"link_following","fields":{"web_page_id":"renew","referrer_page":"about"}}"#;
    let out = world.emit(&["-"], format!("{event}\n").as_bytes()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1 discarded"), "{text}");
    world.ok(&["flush"]).await;
    assert!(
        world
            .received_records()
            .iter()
            .all(|r| r.purpose != "link_following"),
        "sent before renewal"
    );

    // Renewing: the grant covers the new field (and is a change).
    let renewed = world.ok(&["consent", "grant", "eula", "--json"]).await;
    let renewed: serde_json::Value = serde_json::from_str(&renewed).unwrap();
    assert_eq!(renewed["changed"], true, "{renewed}");
    let out = world.emit(&["-"], format!("{event}\n").as_bytes()).await;
    assert!(out.status.success(), "{out:?}");
    world.ok(&["flush"]).await;
    let link = world
        .received_records()
        .into_iter()
        .find(|r| r.purpose == "link_following")
        .expect("sent after renewal");
    assert_eq!(link.fields["referrer_page"], "about");
    daemon.terminate().await;
}

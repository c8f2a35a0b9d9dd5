//! The consent model as a person meets it: legal basis, bundling, opt-out
//! signals.

use crate::support::{World, queued_records, stderr_line};

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

/// Every clause that applies in `region`, in an order that meets their
/// requirements.
fn clauses_of(region: &str) -> &'static [&'static str] {
    if region == "global" {
        &["eula", "ksn", "marketing"]
    } else {
        &["eula_regional", "ksn", "marketing", "third_party_analytics"]
    }
}

async fn accept_everything(world: &World, region: &str) {
    for clause in clauses_of(region) {
        world.ok(&["consent", "grant", clause]).await;
    }
}

/// Purposes some clause of `region` allows.
fn purposes_of(region: &str) -> Vec<String> {
    let catalogue = consentry::catalogue::Catalogue::embedded();
    catalogue
        .purposes()
        .filter(|p| {
            p.clauses
                .iter()
                .any(|c| clauses_of(region).contains(&c.as_str()))
        })
        .map(|p| p.id.clone())
        .collect()
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
    accept_everything(&world, "global").await;
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
    assert_eq!(basis("product_quality"), "legitimate_interest");
    let global = purposes_of("global");
    for decision in &decisions {
        assert_eq!(decision.1, global.contains(&decision.0), "{decision:?}");
    }
}

#[tokio::test]
async fn do_not_track_in_us_ca_blocks_sale_and_sharing_and_nothing_else() {
    let world = World::new().await;
    world.set_region("us-ca");
    accept_everything(&world, "us-ca").await;
    let allowed = purposes_of("us-ca");
    assert!(allowed.contains(&"third_party_user_count".to_owned()));

    let sale_or_sharing = ["promotions", "third_party_user_count"];
    for decision in decisions(&world, &[("DO_NOT_TRACK", "1")]).await {
        if sale_or_sharing.contains(&decision.0.as_str()) {
            assert!(!decision.1, "{decision:?}");
            assert!(decision.3.starts_with("DO_NOT_TRACK is on"), "{decision:?}");
        } else {
            assert_eq!(decision.1, allowed.contains(&decision.0), "{decision:?}");
        }
    }
    // Without the signal it is allowed.
    for decision in decisions(&world, &[]).await {
        assert_eq!(decision.1, allowed.contains(&decision.0), "{decision:?}");
    }
    // The Global Privacy Control setting does the same.
    let text = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&text.replace(
        "region = \"us-ca\"",
        "region = \"us-ca\"\nglobal_privacy_control = true",
    ));
    for decision in decisions(&world, &[]).await {
        let blocked = sale_or_sharing.contains(&decision.0.as_str());
        assert_eq!(
            decision.1,
            !blocked && allowed.contains(&decision.0),
            "{decision:?}"
        );
        if blocked {
            assert!(
                decision.3.starts_with("Global Privacy Control is on"),
                "{decision:?}"
            );
        }
    }
}

#[tokio::test]
async fn do_not_track_outside_us_ca_changes_nothing() {
    let world = World::new().await;
    accept_everything(&world, "global").await;
    let allowed = purposes_of("global");
    assert!(allowed.contains(&"promotions".to_owned()));
    for decision in decisions(&world, &[("DO_NOT_TRACK", "1")]).await {
        assert_eq!(decision.1, allowed.contains(&decision.0), "{decision:?}");
    }
}

/// `status --json` in every region, with every clause of the region
/// accepted, as `purpose allowed basis reason` lines (times stripped).
/// Every purpose's decision in every region, with every clause of the
/// built-in catalogue `product` that applies there accepted.
async fn status_table(product: consentry::catalogue::BuiltIn) -> String {
    let catalogue = consentry::catalogue::Catalogue::builtin(product);
    let mut table = String::new();
    for region in ["global", "eu", "uk", "br", "us-ca"] {
        let world = World::new().await;
        let config = std::fs::read_to_string(&world.config).unwrap();
        world.write_config(&format!("catalogue = \"{product}\"\n{config}"));
        world.set_region(region);
        for clause in clauses_of(region) {
            if catalogue.clause(clause).is_some() {
                world.ok(&["consent", "grant", clause]).await;
            }
        }
        table.push_str(&format!("[{region}]\n"));
        for (purpose, allowed, basis, reason) in decisions(&world, &[]).await {
            let reason = match reason.find(" (20") {
                Some(at) => reason[..at].to_owned(),
                None => reason,
            };
            let verdict = if allowed { "allowed" } else { "blocked" };
            table.push_str(&format!("{purpose:<28} {verdict} {basis:<19} {reason}\n"));
        }
    }
    table
}

/// One committed table per product: what each region's edition allows
/// with everything accepted.
#[tokio::test]
async fn status_in_every_region_matches_the_committed_expectation() {
    let mut changed = Vec::new();
    for product in consentry::catalogue::BuiltIn::ALL {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/it/expected/status_by_region/{product}.txt"));
        let table = status_table(product).await;
        if std::env::var_os("CONSENTRY_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &table).unwrap();
        }
        if std::fs::read_to_string(&path).ok().as_deref() != Some(table.as_str()) {
            changed.push(path.display().to_string());
        }
    }
    assert!(
        changed.is_empty(),
        "status by region changed for {changed:?}; review it, then rerun with CONSENTRY_BLESS=1 to update"
    );
}

/// The built-in catalogue `ksv` (the only one with `link_following`) with
/// `link_following` widened by one field and `update_identity` narrowed by
/// one.
fn widened_and_narrowed() -> String {
    let catalogue = consentry::catalogue::BuiltIn::Ksv.text();
    let last_link_field =
        "description = \"Name of that threat in the vendor's classification, if any.\"\n";
    assert!(catalogue.contains(last_link_field));
    // `update_identity.license_id`'s table, up to the blank line after it.
    let start = catalogue
        .find("[[purpose.field]]\nname = \"license_id\"\n")
        .unwrap();
    let end = start + catalogue[start..].find("\n\n").unwrap() + 2;
    let license = &catalogue[start..end];
    assert!(license.contains("Identifier of the active licence"));
    catalogue
        .replace(
            last_link_field,
            &format!("{last_link_field}\n[[purpose.field]]\nname = \"referrer_page\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"identifier\"\nmax_len = 64\ndescription = \"The product page the link was on.\"\n"),
        )
        .replace(license, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widened_purpose_sends_nothing_until_the_clause_is_renewed() {
    let world = World::new().await;
    world.receiver.set_status(200);
    let base = std::fs::read_to_string(&world.config).unwrap();
    // Accepted under the product's catalogue as it was...
    world.write_config(&base.replace("consent_file", "catalogue = \"ksv\"\nconsent_file"));
    world.ok(&["consent", "grant", "eula"]).await;
    // ...then the catalogue changes under the acceptance.
    std::fs::write(world.path("catalogue.toml"), widened_and_narrowed()).unwrap();
    world.write_config(&base.replace(
        "consent_file",
        "catalogue = \"catalogue.toml\"\nconsent_file",
    ));
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

#[tokio::test]
async fn a_region_change_never_carries_an_acceptance_to_another_edition() {
    let world = World::new().await;
    accept_everything(&world, "global").await;
    world.set_region("eu");
    let decisions = decisions(&world, &[]).await;
    let of = |purpose: &str| decisions.iter().find(|d| d.0 == purpose).unwrap().clone();
    let update = of("update_identity");
    assert!(!update.1);
    assert_eq!(update.3, "no clause allowing it applies in region eu");
    let quality = of("product_quality");
    assert!(!quality.1);
    assert_eq!(quality.3, "eula_regional not accepted");
    // ksn is worded the same everywhere, but rides on the region's EULA.
    let ksn = of("ksn_scan_aggregates");
    assert!(!ksn.1);
    assert_eq!(
        ksn.3,
        "ksn requires eula_regional: eula_regional not accepted"
    );
    // Granting the global EULA in eu is refused, naming the right one.
    let output = world.run(&["consent", "grant", "eula"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("the clause for this region is: eula_regional"));
}

#[tokio::test]
async fn the_administrator_policy_switches_off_and_always_wins() {
    let world = World::new().await;
    accept_everything(&world, "global").await;
    let text = std::fs::read_to_string(&world.config).unwrap().replace(
        "consent_file",
        "policy_file = \"policy.toml\"\nconsent_file",
    );
    world.write_config(&text);
    std::fs::write(
        world.path("policy.toml"),
        "disabled_clauses = [\"ksn\"]\ndisabled_purposes = [\"geo_distribution\"]\n",
    )
    .unwrap();
    let allowed = purposes_of("global");
    for decision in decisions(&world, &[]).await {
        let ksn = decision.0.starts_with("ksn_");
        let geo = decision.0 == "geo_distribution";
        assert_eq!(
            decision.1,
            allowed.contains(&decision.0) && !ksn && !geo,
            "{decision:?}"
        );
        if ksn {
            assert!(
                decision
                    .3
                    .starts_with("clause ksn switched off by the administrator policy"),
                "{decision:?}"
            );
        }
        if geo {
            assert!(decision.3.contains("policy.toml"), "{decision:?}");
        }
    }
    // The whole agent off.
    std::fs::write(world.path("policy.toml"), "agent = false\n").unwrap();
    assert!(decisions(&world, &[]).await.iter().all(|d| !d.1));
    // A policy can never switch on what consent does not allow.
    std::fs::write(world.path("policy.toml"), "agent = true\n").unwrap();
    world.ok(&["consent", "revoke", "marketing"]).await;
    let promotions = decisions(&world, &[])
        .await
        .into_iter()
        .find(|d| d.0 == "promotions")
        .unwrap();
    assert!(!promotions.1, "{promotions:?}");
    // A broken policy holds everything, and check names its line.
    std::fs::write(world.path("policy.toml"), "disabled_purposes = [\"geo\"]\n").unwrap();
    let held = decisions(&world, &[]).await;
    assert!(
        held.iter()
            .all(|d| !d.1 && d.3.starts_with("administrator policy unusable")),
        "{held:?}"
    );
    let output = world.run(&["check"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr_line(&output).contains("policy.toml:1:22: unknown purpose `geo`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn personal_data_is_minimised_before_anything_is_stored() {
    let world = World::with_eula_answering(503).await;
    world.ok(&["consent", "grant", "ksn"]).await;
    world.ok(&["consent", "grant", "marketing"]).await;
    let daemon = world.spawn_daemon().await;
    let lines = concat!(
        r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":"EICAR","file_path":"/home/alice/Downloads/eicar.com","attacker_network":"203.0.113.77"}}"#,
        "\n",
        r#"{"kind":"record","purpose":"promotions","fields":{"settings_id":"s1","service_user_id":"alice@example.com"}}"#,
        "\n",
        // A bare file name: the path transform can keep nothing of it.
        r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":"EICAR-bare","file_path":"eicar.com"}}"#,
        "\n",
    );
    let out = world.emit(&["-"], lines.as_bytes()).await;
    assert!(out.status.success(), "{out:?}");

    // What the store holds is already minimised.
    let stored: Vec<String> = queued_records(&world.path("state/consentry.sqlite3"), |p| {
        ["ksn_threat_reports", "promotions"].contains(&p)
    })
    .into_iter()
    .map(|(_, fields)| fields)
    .collect();
    assert_eq!(stored.len(), 3, "{stored:?}");
    let all = stored.join("\n");
    for secret in ["alice", ".77", "example.com", "eicar.com"] {
        assert!(!all.contains(secret), "`{secret}` stored: {all}");
    }

    world.receiver.set_status(200);
    world.ok(&["flush"]).await;
    let records = world.received_records();
    let threat = records
        .iter()
        .find(|r| r.purpose == "ksn_threat_reports" && r.fields["threat_name"] == "EICAR")
        .unwrap();
    let bare = records
        .iter()
        .find(|r| {
            r.fields
                .get("threat_name")
                .is_some_and(|n| n == "EICAR-bare")
        })
        .unwrap();
    assert!(
        bare.fields.get("file_path").is_none(),
        "a value its transform cannot make safe is left out: {:?}",
        bare.fields
    );
    assert_eq!(threat.fields["file_path"], "~/Downloads", "no file name");
    assert_eq!(threat.fields["attacker_network"], "203.0.113.0");
    let promotion = records.iter().find(|r| r.purpose == "promotions").unwrap();
    let hashed = promotion.fields["service_user_id"].as_str().unwrap();
    assert_eq!(hashed.len(), 64);
    assert!(hashed.bytes().all(|b| b.is_ascii_hexdigit()));
    daemon.terminate().await;
}

//! Fields marked as personal data (issue 20, item 4 C): `consentry check`
//! warns, without failing, where a clause text says it carries no personal
//! data while fields it allows are marked otherwise, naming the clause,
//! the phrase and those fields; a text without the claim, or a clause
//! whose fields are all `none`, draws no warning.

use crate::support::World;

/// The warning lines of `check`'s text output.
fn warnings(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.starts_with("warning    clause"))
        .collect()
}

#[tokio::test]
async fn check_warns_where_a_clause_says_no_personal_data_and_its_fields_say_otherwise() {
    let world = World::new().await;
    // A warning, not a failure.
    let out = world.ok(&["check"]).await;
    let found = warnings(&out);
    let ksn = found
        .iter()
        .find(|l| l.contains("clause `ksn`"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(ksn.contains("its text says \"no personal data\""), "{ksn}");
    assert!(
        ksn.contains(
            "ksn_threat_reports.object_sha256 (pseudonymous), ksn_threat_reports.file_path (identifying), ksn_threat_reports.attacker_network (pseudonymous)"
        ),
        "{ksn}"
    );
    assert!(
        !ksn.contains("ksn_scan_aggregates"),
        "counts are none: {ksn}"
    );
    assert!(ksn.contains("the vendor's to correct"), "{ksn}");
    let eula = found
        .iter()
        .find(|l| l.contains("clause `eula`"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        eula.contains("\"does not contain any personal\"")
            && eula.contains("update_identity.license_id (identifying)"),
        "{eula}"
    );
    assert!(
        !found.iter().any(|l| l.contains("clause `marketing`")),
        "marketing's text makes no such claim: {out}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&world.ok(&["check", "--json"]).await).unwrap();
    let messages: Vec<&str> = json["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["message"].as_str())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("clause `ksn`: its text says")),
        "{json}"
    );

    // The same catalogue, its ksn text without the claim: no ksn warning.
    let claim = "No personal data is collected, processed or\nstored. ";
    let catalogue = consentry::catalogue::EMBEDDED;
    assert!(catalogue.contains(claim));
    std::fs::write(world.path("catalogue.toml"), catalogue.replace(claim, "")).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap();
    world.write_config(&format!("catalogue = \"catalogue.toml\"\n{config}"));
    let out = world.ok(&["check"]).await;
    assert!(
        !warnings(&out).iter().any(|l| l.contains("clause `ksn`")),
        "{out}"
    );
    assert!(
        warnings(&out).iter().any(|l| l.contains("clause `eula`")),
        "{out}"
    );
}

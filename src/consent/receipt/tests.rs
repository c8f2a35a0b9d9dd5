use super::*;

fn snapshot(region: &str, accepted: &[(&str, u32)], off: &[&str]) -> Snapshot {
    Snapshot {
        region: region.into(),
        accepted: accepted
            .iter()
            .map(|(c, v)| ((*c).to_owned(), (*v, "ab".repeat(32), "cli".to_owned())))
            .collect(),
        switched_off: off.iter().map(|p| (*p).to_owned()).collect(),
        withdrawn: BTreeSet::new(),
    }
}

fn observed(old: &Snapshot, new: &Snapshot) -> Vec<Receipt> {
    diff(
        old,
        new,
        &Catalogue::embedded(),
        &Provenance::observed_now(),
    )
    .0
}

#[test]
fn each_observed_change_is_one_receipt_that_says_it_was_observed() {
    let none = snapshot("global", &[], &[]);
    let granted = snapshot("global", &[("eula", 3)], &[]);
    let receipts = observed(&none, &granted);
    assert_eq!(receipts.len(), 1);
    let grant = &receipts[0];
    assert_eq!(grant.event, Event::Grant);
    assert_eq!(grant.version, RECEIPT_VERSION);
    assert_eq!(grant.jurisdiction, "global");
    // Nobody declared it: never credited to the CLI.
    assert_eq!(grant.collection_method, "file");
    assert!(!grant.is_declared());
    assert!(grant.observed.is_some());
    assert_eq!(grant.clause.as_ref().unwrap().id, "eula");
    assert_eq!(grant.clause.as_ref().unwrap().version, 3);
    assert_eq!(grant.previous_state, "not accepted");
    assert_eq!(grant.new_state, "accepted v3");
    assert!(
        grant
            .purposes
            .iter()
            .any(|p| p.purpose == "update_identity" && p.basis == "contract")
    );

    assert!(observed(&granted, &granted).is_empty());
    let renewed = snapshot("global", &[("eula", 4)], &[]);
    assert_eq!(observed(&granted, &renewed)[0].event, Event::Renewal);
    let revoked = observed(&granted, &none);
    assert_eq!(revoked[0].event, Event::Revoke);
    assert_eq!(revoked[0].collection_method, "file");

    let moved = snapshot("eu", &[("eula", 3)], &[]);
    let region = observed(&granted, &moved);
    assert_eq!(region.len(), 1);
    assert_eq!(region[0].event, Event::RegionChange);
    assert_eq!(
        (
            region[0].previous_state.as_str(),
            region[0].new_state.as_str()
        ),
        ("global", "eu")
    );

    let off = snapshot("global", &[("eula", 3)], &["geo_distribution"]);
    let policy = observed(&granted, &off);
    assert_eq!(policy.len(), 1);
    assert_eq!(policy[0].event, Event::PolicyChange);
    assert_eq!(policy[0].purposes[0].purpose, "geo_distribution");
    assert_ne!(policy[0].receipt_id, region[0].receipt_id);
}

#[test]
fn a_declared_act_gets_its_own_time_method_and_id() {
    let catalogue = Catalogue::embedded();
    let none = snapshot("global", &[], &[]);
    let both = snapshot("global", &[("eula", 3), ("ksn", 3)], &[]);
    let act = Act {
        id: Uuid::new_v4(),
        kind: ActKind::Grant,
        clause: "ksn".into(),
        version: Some(3),
        text_sha256: Some("ab".repeat(32)),
        at: "2026-01-02T03:04:05Z".into(),
        method: "cli".into(),
    };
    let how = Provenance {
        act: Some(&act),
        ..Provenance::observed_now()
    };
    let (receipts, after) = diff(&none, &both, &catalogue, &how);
    let ksn = receipts.iter().find(|r| r.subject() == "ksn v3").unwrap();
    assert_eq!(ksn.timestamp, "2026-01-02T03:04:05Z");
    assert_eq!(ksn.collection_method, "cli");
    assert_eq!(ksn.act_id, Some(act.id));
    assert!(ksn.observed.is_none());
    // The eula was not the act: observed, never credited to the CLI.
    let eula = receipts.iter().find(|r| r.subject() == "eula v3").unwrap();
    assert_eq!(eula.collection_method, "file");
    assert!(!eula.is_declared());
    assert_eq!(after.accepted.len(), 2);

    let revoke = Act {
        kind: ActKind::Revoke,
        ..act
    };
    let how = Provenance {
        act: Some(&revoke),
        ..Provenance::observed_now()
    };
    let only_eula = snapshot("global", &[("eula", 3)], &[]);
    let (receipts, after) = diff(&after, &only_eula, &catalogue, &how);
    assert_eq!(receipts.len(), 1);
    assert_eq!(receipts[0].event, Event::Revoke);
    assert!(receipts[0].is_declared());
    assert!(after.withdrawn.contains("ksn"));
    // Granted again: no longer withdrawn.
    let (_, after) = diff(&after, &both, &catalogue, &Provenance::observed_now());
    assert!(after.withdrawn.is_empty());
}

#[test]
fn a_decline_is_declared_from_its_act_alone_and_no_comparison_makes_one() {
    let catalogue = Catalogue::embedded();
    let ksn = catalogue.clause("ksn").unwrap();
    let act = Act::decline(ksn, crate::consent::Method::Installer);
    let receipt = declined(&act, &catalogue, "eu").unwrap();
    assert_eq!(receipt.event, Event::Decline);
    assert_eq!(receipt.event.as_str(), "decline");
    assert_eq!(receipt.subject(), format!("ksn v{}", ksn.version));
    assert_eq!(receipt.timestamp, act.at);
    assert_eq!(receipt.act_id, Some(act.id));
    assert!(receipt.is_declared() && receipt.observed.is_none());
    assert_eq!(receipt.collection_method, "installer");
    assert_eq!(receipt.jurisdiction, "eu");
    assert_eq!(receipt.previous_state, receipt.new_state);
    assert_eq!(receipt.new_state, "not accepted");
    // Only a decline makes one; a decline explains no difference, so a
    // comparison never credits one to it.
    let grant = Act {
        kind: ActKind::Grant,
        ..act.clone()
    };
    assert!(declined(&grant, &catalogue, "eu").is_none());
    let none = snapshot("global", &[], &[]);
    let both = snapshot("global", &[("eula", 3), ("ksn", 3)], &[]);
    let how = Provenance {
        act: Some(&act),
        ..Provenance::observed_now()
    };
    let (receipts, after) = diff(&none, &both, &catalogue, &how);
    assert!(receipts.iter().all(|r| !r.is_declared()), "{receipts:?}");
    // Nor does a decline receipt move what the snapshot remembers.
    let withdrawn = Snapshot {
        withdrawn: ["ksn".to_owned()].into(),
        ..none.clone()
    };
    assert_eq!(withdrawn.clone().after(&[receipt]), withdrawn);
    assert_eq!(after.accepted.len(), 2);
}

#[test]
fn a_receipt_says_which_fields_are_randomised_and_the_budget() {
    let catalogue = Catalogue::embedded();
    let ksn = catalogue.clause("ksn").unwrap();
    let act = Act::decline(ksn, crate::consent::Method::Installer);
    let receipt = declined(&act, &catalogue, "global").unwrap();
    let aggregates = receipt
        .purposes
        .iter()
        .find(|p| p.purpose == "ksn_scan_aggregates")
        .expect("ksn allows the scan aggregates");
    assert!(
        aggregates.local_dp.iter().any(
            |l| l.starts_with("user_trusted: noise added") && l.contains("geometric mechanism")
        ),
        "{:?}",
        aggregates.local_dp
    );
    assert!(
        aggregates
            .local_dp
            .iter()
            .any(|l| l.starts_with("budget: at most ")),
        "{:?}",
        aggregates.local_dp
    );
    // Nothing randomised, nothing said; a receipt made before the
    // field existed reads as saying nothing.
    let reports = receipt
        .purposes
        .iter()
        .find(|p| p.purpose == "ksn_threat_reports")
        .unwrap();
    assert!(reports.local_dp.is_empty());
    let old: PurposeRef = serde_json::from_str(r#"{"purpose":"p","basis":"consent"}"#).unwrap();
    assert!(old.local_dp.is_empty());
}

use super::*;
use crate::consent::{Method, grant};
use crate::document::{Document, Origin};

struct World {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    catalogue: Catalogue,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consent.toml");
        Self {
            _dir: dir,
            path,
            catalogue: Catalogue::embedded(),
        }
    }
    fn grant(&self, clause: &str) {
        grant(
            &self.path,
            &self.catalogue,
            Region::Global,
            clause,
            Method::Cli,
        )
        .unwrap();
    }
    /// The `update_identity` decision for this consent file under the
    /// embedded catalogue with its first `from` replaced by `to`.
    fn decide_under_edited_catalogue(&self, from: &str, to: &str) -> Decision {
        let catalogue = Catalogue::from_document(&Document {
            origin: Origin::Embedded("test"),
            text: crate::catalogue::EMBEDDED.replacen(from, to, 1),
        })
        .unwrap();
        let consents = Consents::load(&self.path, &catalogue).unwrap();
        Registry::evaluate(&catalogue, &consents, Region::Global).decide("update_identity")
    }
    fn registry(&self, region: Region) -> Registry {
        let consents = Consents::load(&self.path, &self.catalogue).unwrap();
        Registry::evaluate(&self.catalogue, &consents, region)
    }
}

#[test]
fn nothing_accepted_blocks_everything() {
    let world = World::new();
    let registry = world.registry(Region::Global);
    assert!(registry.decisions().all(|d| !d.is_allowed()));
    assert_eq!(
        registry.decide("update_identity").reason(),
        "eula not accepted"
    );
}

#[test]
fn eula_allows_its_purposes_but_not_ksn() {
    let world = World::new();
    world.grant("eula");
    let registry = world.registry(Region::Global);
    let decision = registry.decide("update_identity");
    assert!(decision.is_allowed(), "{decision:?}");
    assert_eq!(decision.clause(), Some("eula"));
    let ksn = registry.decide("ksn_scan_aggregates");
    assert!(!ksn.is_allowed());
    assert_eq!(ksn.reason(), "ksn not accepted");
}

#[test]
fn ksn_without_eula_is_blocked_by_its_requirement() {
    let world = World::new();
    world.grant("eula");
    world.grant("ksn");
    assert!(
        world
            .registry(Region::Global)
            .is_allowed("ksn_scan_aggregates")
    );
    crate::consent::revoke(&world.path, &world.catalogue, "eula").unwrap();
    let decision = world.registry(Region::Global).decide("ksn_scan_aggregates");
    assert!(!decision.is_allowed());
    assert_eq!(decision.reason(), "ksn requires eula: eula not accepted");
}

#[test]
fn older_version_needs_renewal() {
    let world = World::new();
    world.grant("eula");
    let decision = world.decide_under_edited_catalogue("version = 4", "version = 5");
    assert!(!decision.is_allowed());
    assert_eq!(
        decision.reason(),
        "eula accepted at version 4 but catalogue is at version 5: renewal needed"
    );
}

#[test]
fn changed_text_at_same_version_is_not_consent() {
    let world = World::new();
    world.grant("eula");
    let decision =
        world.decide_under_edited_catalogue("real-time protection", "REAL-TIME protection");
    assert!(!decision.is_allowed());
    assert!(
        decision.reason().contains("different text"),
        "{}",
        decision.reason()
    );
}

#[test]
fn only_a_withdrawal_lets_queued_data_be_purged() {
    let world = World::new();
    assert!(world.registry(Region::Global).may_purge("update_identity"));
    world.grant("eula");
    let registry = world.registry(Region::Global);
    assert!(!registry.may_purge("update_identity"), "allowed");
    assert!(
        registry.may_purge("ksn_scan_aggregates"),
        "ksn never accepted"
    );
    // A renewal that is due, or an acceptance of another text, holds.
    for (from, to) in [
        ("version = 4", "version = 5"),
        ("real-time protection", "REAL-TIME protection"),
    ] {
        let catalogue = Catalogue::from_document(&Document {
            origin: Origin::Embedded("test"),
            text: crate::catalogue::EMBEDDED.replacen(from, to, 1),
        })
        .unwrap();
        let consents = Consents::load(&world.path, &catalogue).unwrap();
        let registry = Registry::evaluate(&catalogue, &consents, Region::Global);
        assert!(!registry.is_allowed("update_identity"));
        assert!(!registry.may_purge("update_identity"), "{from}");
    }
    // Unknown purposes and an unreadable file hold too.
    assert!(!world.registry(Region::Global).may_purge("no_such_purpose"));
    assert!(!Registry::closed(&Catalogue::embedded(), "bad").may_purge("update_identity"));
}

#[test]
fn decisions_travel_flat_and_an_allowed_one_without_its_proof_is_blocked() {
    let world = World::new();
    world.grant("eula");
    let allowed = world.registry(Region::Global).decide("update_identity");
    let json = serde_json::to_value(&allowed).unwrap();
    assert_eq!(json["allowed"], true);
    assert_eq!(json["clause"], "eula");
    assert_eq!(json["basis"], "contract");
    let back: Decision = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, allowed);
    let mut forged = json;
    forged["clause_sha256"] = serde_json::Value::Null;
    let forged: Decision = serde_json::from_value(forged).unwrap();
    assert!(!forged.is_allowed(), "{forged:?}");
}

#[test]
fn closed_registry_allows_nothing_and_says_why() {
    let registry = Registry::closed(&Catalogue::embedded(), "bad toml");
    assert!(registry.decisions().all(|d| !d.is_allowed()));
    assert_eq!(
        registry.unreadable(),
        Some("consent file unusable: bad toml")
    );
    assert!(!registry.decide("nope").is_allowed());
}

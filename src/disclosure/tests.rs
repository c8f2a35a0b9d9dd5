//! The disclosure's model and its renderings, from the built-in catalogues.

use super::*;
use crate::document::{Document, Origin};

const MONTH: Duration = Duration::from_secs(30 * 86_400);

#[test]
fn a_region_shows_its_own_clauses_and_purposes_only() {
    let catalogue = Catalogue::embedded();
    let global = Disclosure::new(&catalogue, Region::Global, MONTH);
    let ids: Vec<&str> = global.clauses.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["eula", "ksn", "marketing"]);
    let ksn = &global.clauses[1];
    assert!(ksn.opt_in);
    assert_eq!(ksn.requires, ["eula"], "eula_regional does not apply");
    assert!(global.not_in_region.contains(&"product_quality".to_owned()));
    assert!(global.opt_out_signals.is_empty());

    let eu = Disclosure::new(&catalogue, Region::Eu, MONTH);
    assert!(eu.purposes.iter().all(|p| p.id != "update_identity"));
    assert!(eu.not_in_region.contains(&"update_identity".to_owned()));
    assert_eq!(eu.clauses[0].id, "eula_regional");
    assert!(!eu.clauses[0].opt_in);
}

#[test]
fn sale_or_sharing_names_the_signals_in_california_only() {
    let catalogue = Catalogue::embedded();
    let ca = Disclosure::new(&catalogue, Region::UsCa, MONTH);
    let names: Vec<&str> = ca.opt_out_signals.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["Global Privacy Control", "Do Not Track"]);
    let promotions = ca.purposes.iter().find(|p| p.id == "promotions").unwrap();
    assert!(promotions.sale_or_sharing);
    assert!(promotions.withdrawal.contains("opt-out preference signal"));
    assert!(
        promotions
            .withdrawal
            .contains("`consentry consent revoke marketing`")
    );
    let eu = Disclosure::new(&catalogue, Region::Eu, MONTH);
    let promotions = eu.purposes.iter().find(|p| p.id == "promotions").unwrap();
    assert!(!promotions.withdrawal.contains("signal"));
}

#[test]
fn fields_say_how_they_are_minimised_and_retention_takes_the_smaller_limit() {
    let text = crate::catalogue::EMBEDDED
        .replace("retention = \"7d\"", "retention = \"2d\"")
        .replace(
            "id = \"activation\"",
            "id = \"activation\"\nretention = \"400d\"",
        );
    let document = Document {
        origin: Origin::Embedded("edited catalogue"),
        text,
    };
    let catalogue = Catalogue::from_document(&document).unwrap();
    let global = Disclosure::new(&catalogue, Region::Global, MONTH);
    let threats = global
        .purposes
        .iter()
        .find(|p| p.id == "ksn_threat_reports")
        .unwrap();
    assert_eq!(threats.retention, "2 days");
    assert_eq!(threats.retention_from, RetentionFrom::Purpose);
    let path = threats
        .fields
        .iter()
        .find(|f| f.transform == Some(Transform::ScrubPath))
        .unwrap();
    assert!(path.minimised.contains("home directory removed"));
    let activation = global
        .purposes
        .iter()
        .find(|p| p.id == "activation")
        .unwrap();
    assert_eq!(
        activation.retention, "30 days",
        "the store's bound is smaller"
    );
    assert_eq!(activation.retention_from, RetentionFrom::Store);
    assert!(activation.withdrawal.contains("licence agreement"));
    assert!(activation.fields.iter().all(|f| !f.minimised.is_empty()));
}

#[test]
fn a_randomised_field_states_its_epsilon_in_words_and_its_purpose_its_budget() {
    let catalogue = Catalogue::builtin(crate::catalogue::BuiltIn::Kis);
    let disclosure = Disclosure::new(&catalogue, Region::Global, Duration::from_secs(86_400));
    let geo = disclosure
        .purposes
        .iter()
        .find(|p| p.id == "geo_distribution")
        .unwrap();
    let country = geo
        .fields
        .iter()
        .find(|f| f.name == "country_code")
        .unwrap();
    assert!(
        country.minimised.contains("with ε = 0.5, any report is at most e^ε ≈ 1.6 times as likely from the real value as from any other"),
        "{}",
        country.minimised
    );
    assert_eq!(country.ldp.as_ref().unwrap().domain_size, 250);
    let budget = geo.privacy_budget.as_deref().unwrap();
    assert!(
        budget.starts_with("At most 8 reports a day, each spending ε = 0.5: at most ε = 4 a day"),
        "{budget}"
    );
    let product = geo.fields.iter().find(|f| f.name == "product_id").unwrap();
    assert_eq!(
        (product.minimised.as_str(), &product.ldp),
        ("sent as given", &None)
    );
    let markdown = super::markdown::render(&disclosure);
    assert!(markdown.contains("| Privacy budget | At most 8 reports a day"));
    let json = serde_json::to_value(&disclosure).unwrap();
    let fields = &json["purposes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "geo_distribution")
        .unwrap()["fields"];
    assert_eq!(fields[2]["ldp"]["mechanism"], "hadamard");
    assert_eq!(fields[2]["ldp"]["epsilon"], 0.5);
}

#[test]
fn a_purpose_sent_after_activation_by_code_says_so() {
    let catalogue = Catalogue::builtin(crate::catalogue::BuiltIn::Ksv);
    let global = Disclosure::new(&catalogue, Region::Global, MONTH);
    let of = |id: &str| global.purposes.iter().find(|p| p.id == id).unwrap();
    for id in ["activation", "virtual_infrastructure", "license_units"] {
        let when = of(id).after_activation.as_deref().unwrap();
        assert!(when.contains("activated with an activation code"), "{id}");
        assert!(when.contains("key file"), "{id}");
    }
    assert_eq!(of("update_identity").after_activation, None);
    let markdown = markdown::render(&global);
    assert!(markdown.contains("| Activation | Only after the product is activated"));
}

#[test]
fn every_field_shows_its_mark_as_personal_data() {
    let catalogue = Catalogue::builtin(crate::catalogue::BuiltIn::Kes);
    let global = Disclosure::new(&catalogue, Region::Global, MONTH);
    let field = |purpose: &str, name: &str| {
        let purpose = global.purposes.iter().find(|p| p.id == purpose).unwrap();
        purpose
            .fields
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .personal
    };
    assert_eq!(field("activation", "product_id"), Personal::None);
    assert_eq!(
        field("activation", "installation_id"),
        Personal::Pseudonymous
    );
    assert_eq!(
        field("activation", "activation_code"),
        Personal::Identifying
    );
    assert!(
        summary(&global)
            .iter()
            .any(|line| line.contains("identifying (can tell who you are or what you did"))
    );
    let markdown = markdown::render(&global);
    assert!(
        markdown.contains("| field | type | what it is | personal data | before it is stored |")
    );
    assert!(
        markdown.contains("| `activation_code` | string | "),
        "{markdown}"
    );
    assert!(
        markdown.contains(" | identifying | sent as given |"),
        "{markdown}"
    );
    let html = html::render(&global);
    assert!(html.contains("<th>personal data</th>"));
    assert!(html.contains("<td>identifying</td>"));
    let json = serde_json::to_value(&global).unwrap();
    assert_eq!(json["purposes"][0]["fields"][0]["personal"], "none");
}

#[test]
fn a_clause_text_that_says_no_personal_data_is_not_repeated_silently() {
    let catalogue = Catalogue::embedded();
    let global = Disclosure::new(&catalogue, Region::Global, MONTH);
    let clause = |id: &str| global.clauses.iter().find(|c| c.id == id).unwrap();
    let ksn = clause("ksn").no_personal_data_claim.as_ref().unwrap();
    assert_eq!(ksn.phrase, "no personal data");
    assert!(clause("marketing").no_personal_data_claim.is_none());
    let note = "This text says \"no personal data\", but the agent marks these fields it allows otherwise: `ksn_threat_reports.object_sha256` (pseudonymous), `ksn_threat_reports.file_path` (identifying)";
    assert!(markdown::render(&global).contains(note));
    assert!(html::render(&global).contains(
        "<p>This text says &quot;no personal data&quot;, but the agent marks these fields it allows otherwise: <code>ksn_threat_reports.object_sha256</code> (pseudonymous)"
    ));
}

#[test]
fn durations_read_as_people_write_them() {
    assert_eq!(duration_in_words(Duration::from_secs(86_400)), "1 day");
    assert_eq!(
        duration_in_words(Duration::from_secs(36 * 3_600)),
        "36 hours"
    );
    assert_eq!(duration_in_words(Duration::from_secs(90)), "1m 30s");
}

//! The direct path is held to the general one: for any installer task, in
//! any edition, under any catalogue, `admit_draft` answers what `admit`
//! answers for the record the draft makes, and writes the same line.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use super::*;
use crate::catalogue::{Catalogue, Region};
use crate::collect::installation_errors::{self, InstallTask, STATUSES, TASKS};
use crate::collect::{CollectContext, test_context};
use crate::consent::{Consents, Registry};
use crate::document::Document;

/// A gate over `catalogue` in `region`, every clause accepted when
/// `accept`.
fn gate(catalogue: Catalogue, region: Region, accept: bool) -> Gate {
    let mut consents = Consents::default();
    if accept {
        let ids: Vec<String> = catalogue.clauses().map(|c| c.id.clone()).collect();
        for id in ids {
            consents.accept_for_tests(&catalogue, &id);
        }
    }
    let registry = Registry::evaluate(&catalogue, &consents, region);
    Gate::with_registry(catalogue, registry)
}

/// The embedded catalogue with `from` replaced by `to` in its text.
fn edited(from: &str, to: &str) -> Catalogue {
    let text = crate::catalogue::EMBEDDED;
    assert!(text.contains(from), "{from}");
    let text: &'static str = text.replacen(from, to, 1).leak();
    Catalogue::from_document(&Document::embedded("edited", text)).expect("a valid catalogue")
}

/// What the general path makes of the task: its line's parts, or why not.
type Answer = Result<(String, String, u32, String, String, String), Refusal>;

fn general(gate: &Gate, task: &InstallTask, context: &CollectContext, at: SystemTime) -> Answer {
    let country = installation_errors::country(context);
    let record = task.draft(context, country.as_deref()).record(at);
    gate.admit(&record).map(|gated| parts(gated.line()))
}

fn direct(gate: &Gate, task: &InstallTask, context: &CollectContext, at: SystemTime) -> Answer {
    let country = installation_errors::country(context);
    let draft = task.draft(context, country.as_deref());
    let mut scratch = String::from("left over from the last call");
    gate.admit_draft(&draft, at, &mut scratch, parts)
}

fn parts(line: GatedLine<'_>) -> (String, String, u32, String, String, String) {
    (
        line.purpose().to_owned(),
        line.clause().to_owned(),
        line.clause_version(),
        line.clause_sha256().to_owned(),
        line.collected_at().to_owned(),
        line.fields_json().to_owned(),
    )
}

fn context(region: Region) -> CollectContext {
    let mut context = test_context(None);
    context.region = region;
    context
}

fn task(error_type: Option<&str>, campaign: Option<&str>) -> InstallTask<'static> {
    InstallTask {
        task: "upgrade".into(),
        status: "failed".into(),
        error_type: error_type.map(|t| Cow::Owned(t.to_owned())),
        error_code: Some(-7),
        duration_ms: Some(5400),
        campaign_id: campaign.map(|c| Cow::Owned(c.to_owned())),
    }
}

/// Both paths, the same answer and the same refusal counts.
fn same(gates: (&Gate, &Gate), task: &InstallTask, context: &CollectContext) -> Answer {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let general = general(gates.0, task, context, at);
    let direct = direct(gates.1, task, context, at);
    assert_eq!(direct, general, "{task:?} in {:?}", context.region);
    assert_eq!(gates.1.refused(), gates.0.refused());
    direct
}

#[test]
fn a_task_is_written_as_serde_writes_its_record_in_every_edition() {
    for region in Region::ALL {
        let context = context(region);
        let (a, b) = (
            gate(Catalogue::embedded(), region, true),
            gate(Catalogue::embedded(), region, true),
        );
        let answer = same(
            (&a, &b),
            &task(Some("disk_full"), Some("spring-2026")),
            &context,
        )
        .unwrap_or_else(|err| panic!("{region:?}: {err}"));
        let fields: serde_json::Value = serde_json::from_str(&answer.5).unwrap();
        assert_eq!(fields["error_code"], -7);
        assert_eq!(answer.4, "2026-09-21T14:13:20Z");
        if region == Region::Global {
            assert_eq!(answer.0, "installation_errors");
            assert_eq!(fields["os_edition"], "Debian GNU/Linux");
        } else {
            assert_eq!(answer.0, "installation_quality");
            assert!(fields.get("os_type").is_none(), "{fields}");
        }
        // A bare task: no optional field.
        same((&a, &b), &task(None, None), &context).unwrap();
    }
}

#[test]
fn a_refusal_is_the_general_path_s_and_counted_the_same() {
    let context = context(Region::Global);
    let (a, b) = (
        gate(Catalogue::embedded(), Region::Global, true),
        gate(Catalogue::embedded(), Region::Global, true),
    );
    let personal = same((&a, &b), &task(Some("alice@example.com"), None), &context);
    assert!(
        matches!(
            personal,
            Err(Refusal::Check(CheckError::PersonalData { .. }))
        ),
        "{personal:?}"
    );
    // The first misfit in field order: error_type before the campaign.
    let shape = same(
        (&a, &b),
        &task(Some("a b"), Some(&"x".repeat(65))),
        &context,
    );
    assert!(
        matches!(&shape, Err(Refusal::Check(CheckError::OutOfShape { field, .. })) if field == "error_type"),
        "{shape:?}"
    );
    assert_eq!(b.refused()["installation_errors"].values().sum::<u64>(), 2);
    // Not accepted: discarded, with the registry's reason.
    let (a, b) = (
        gate(Catalogue::embedded(), Region::Global, false),
        gate(Catalogue::embedded(), Region::Global, false),
    );
    let blocked = same((&a, &b), &task(None, None), &context);
    assert!(
        matches!(blocked, Err(Refusal::NotAllowed { .. })),
        "{blocked:?}"
    );
}

#[test]
fn another_catalogue_s_declarations_are_followed_or_the_general_path_is_taken() {
    let context = context(Region::Global);
    let catalogues = [
        // A field of another type: the record is refused.
        (
            "name = \"error_code\"\ntype = \"integer\"",
            "name = \"error_code\"\ntype = \"string\"\nformat = \"identifier\"\nmax_len = 16",
        ),
        // A fact the catalogue does not declare is left out.
        ("name = \"os_edition\"", "name = \"os_build\""),
        // A transform: the general path.
        (
            "name = \"error_type\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"identifier\"\nmax_len = 128",
            "name = \"error_type\"\ntype = \"string\"\npersonal = \"none\"\ntransform = \"drop\"",
        ),
    ];
    let mut answers = Vec::new();
    for (from, to) in catalogues {
        let (a, b) = (
            gate(edited(from, to), Region::Global, true),
            gate(edited(from, to), Region::Global, true),
        );
        answers.push(same((&a, &b), &task(Some("disk_full"), None), &context));
    }
    assert!(
        matches!(&answers[0], Err(Refusal::Check(CheckError::WrongType { field, .. })) if field == "error_code"),
        "{:?}",
        answers[0]
    );
    let without = |answer: &Answer, field: &str| {
        let fields: serde_json::Value = serde_json::from_str(&answer.as_ref().unwrap().5).unwrap();
        fields.get(field).is_none() && fields.get("task_type").is_some()
    };
    assert!(without(&answers[1], "os_edition"));
    assert!(without(&answers[2], "error_type"));

    // Free text, escaped as serde escapes it.
    let text = || {
        edited(
            "name = \"error_type\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"identifier\"",
            "name = \"error_type\"\ntype = \"string\"\npersonal = \"none\"\nformat = \"text\"",
        )
    };
    let (a, b) = (
        gate(text(), Region::Global, true),
        gate(text(), Region::Global, true),
    );
    let quoted = same(
        (&a, &b),
        &task(Some(r#"a "quoted" \ path"#), None),
        &context,
    )
    .unwrap();
    assert!(
        quoted.5.contains(r#""error_type":"a \"quoted\" \\ path""#),
        "{}",
        quoted.5
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text a component may send in a task's free fields, in any
    /// edition: the same line or the same refusal.
    #[test]
    fn any_task_takes_the_same_path_to_the_same_line(
        task in prop_oneof![
            4 => proptest::sample::select(TASKS.to_vec()).prop_map(str::to_owned),
            1 => "[a-z_]{0,12}|\\PC{0,16}",
        ],
        status in prop_oneof![
            4 => proptest::sample::select(STATUSES.to_vec()).prop_map(str::to_owned),
            1 => "[a-z]{0,10}",
        ],
        error_type in proptest::option::of("[a-zA-Z0-9._:-]{0,20}|\\PC{0,24}|[a-z]+@[a-z]+\\.com"),
        campaign in proptest::option::of("[a-zA-Z0-9._-]{0,70}|\\PC{0,12}|\"\\\\\n"),
        error_code in proptest::option::of(any::<i64>()),
        duration in proptest::option::of(0..i64::MAX),
        region in proptest::sample::select(Region::ALL.to_vec()),
        accepted in any::<bool>(),
    ) {
        let task = InstallTask {
            task: task.into(),
            status: status.into(),
            error_type: error_type.map(Cow::Owned),
            error_code,
            duration_ms: duration,
            campaign_id: campaign.map(Cow::Owned),
        };
        let (a, b) = (
            gate(Catalogue::embedded(), region, accepted),
            gate(Catalogue::embedded(), region, accepted),
        );
        let answer = same((&a, &b), &task, &context(region));
        if accepted && TASKS.contains(&&*task.task) && STATUSES.contains(&&*task.status)
            && task.error_type.is_none() && task.campaign_id.is_none()
        {
            prop_assert!(answer.is_ok(), "{answer:?}");
        }
    }
}

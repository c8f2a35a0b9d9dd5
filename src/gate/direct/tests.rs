//! The direct path is held to the general one: for any installer task, in
//! any edition, under any catalogue, `Drafts::admit` answers what `admit`
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
    gate.drafts().admit(&draft, at, parts)
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

/// A long text is judged each time, never kept: refused the second time
/// in a catalogue that refuses it, as the first.
#[test]
fn what_one_draft_repeats_of_the_last_is_admitted_as_the_last_was() {
    let context = context(Region::Global);
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let (a, b) = (
        gate(Catalogue::embedded(), Region::Global, true),
        gate(Catalogue::embedded(), Region::Global, true),
    );
    let mut drafts = b.drafts();
    let mut through = |task: &InstallTask| {
        let general = general(&a, task, &context, at);
        let country = installation_errors::country(&context);
        let direct = drafts.admit(&task.draft(&context, country.as_deref()), at, parts);
        assert_eq!(direct, general, "{task:?}");
        assert_eq!(b.refused(), a.refused());
        direct
    };
    assert!(through(&task(Some("disk_full"), Some("spring-2026"))).is_ok());
    // The same texts again, then others, then a refused one in a field
    // that admitted another: refused, and counted, each time.
    assert!(through(&task(Some("disk_full"), Some("spring-2026"))).is_ok());
    assert!(through(&task(Some("io"), None)).is_ok());
    for _ in 0..2 {
        assert!(through(&task(Some("alice@example.com"), Some("spring-2026"))).is_err());
    }
    assert!(through(&task(Some("io"), Some("spring-2026"))).is_ok());
    assert_eq!(b.refused()["installation_errors"].values().sum::<u64>(), 2);
    // A regional edition's draft (another purpose, other names) through
    // the same way: its fourth field is `task_status`, the global one's
    // was `os_type`, which admitted "linux"; as a task's status that text
    // is not listed.
    let uk = self::context(Region::Uk);
    let mut task_uk = task(Some("io"), None);
    task_uk.status = "linux".into();
    let country = installation_errors::country(&uk);
    let direct = drafts.admit(&task_uk.draft(&uk, country.as_deref()), at, parts);
    assert!(
        matches!(&direct, Err(Refusal::Check(CheckError::OutOfShape { field, .. })) if field == "task_status"),
        "{direct:?}"
    );
    assert_eq!(direct, general(&a, &task_uk, &uk, at));
    // Another edition's drafts through the same way to another gate.
    let eu = self::context(Region::Eu);
    let (c, d) = (
        gate(Catalogue::embedded(), Region::Eu, true),
        gate(Catalogue::embedded(), Region::Eu, true),
    );
    let mut drafts = d.drafts();
    for task in [task(Some("io"), None), task(Some("io"), Some("x"))] {
        let country = installation_errors::country(&eu);
        let direct = drafts.admit(&task.draft(&eu, country.as_deref()), at, parts);
        assert_eq!(direct, self::general(&c, &task, &eu, at));
    }
}

/// A field's text, from a small pool so that drafts repeat each other's
/// values (and the global edition's facts: "ksec" is its product), and
/// now and then one that is refused or must be escaped.
fn pooled_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        6 => proptest::sample::select(vec!["io", "disk_full", "spring-2026", "a\"b", "ksec"])
            .prop_map(str::to_owned),
        1 => "[a-z]+@[a-z]+\\.com|[a-z_-]{0,140}|\\PC{0,8}",
    ])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A run of tasks through one `Drafts`, whose values repeat or not,
    /// and whose edition changes: each the same line or the same refusal
    /// as the general path's, with the same counts.
    #[test]
    fn a_run_of_tasks_through_one_way_takes_the_general_path_s_answers(
        tasks in proptest::collection::vec(
            (
                pooled_text(),
                pooled_text(),
                proptest::sample::select(vec!["failed", "succeeded", "linux"]),
                0..3usize,
            ),
            1..24,
        ),
    ) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let (a, b) = (
            gate(Catalogue::embedded(), Region::Global, true),
            gate(Catalogue::embedded(), Region::Global, true),
        );
        let contexts = [
            context(Region::Global),
            context(Region::Global).with_os_edition("Ubuntu 24.04"),
            context(Region::Uk),
        ];
        let mut drafts = b.drafts();
        for (error_type, campaign, status, which) in tasks {
            let task = InstallTask {
                task: "upgrade".into(),
                status: status.into(),
                error_type: error_type.map(Cow::Owned),
                error_code: Some(1603),
                duration_ms: Some(12),
                campaign_id: campaign.map(Cow::Owned),
            };
            let context = &contexts[which];
            let country = installation_errors::country(context);
            let direct = drafts.admit(&task.draft(context, country.as_deref()), at, parts);
            prop_assert_eq!(direct, general(&a, &task, context, at));
            prop_assert_eq!(b.refused(), a.refused());
        }
    }

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

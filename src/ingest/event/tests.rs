use super::*;
use crate::collect::test_context;

fn parse(line: &str) -> (Result<Outcome<'_>, LineError>, KsnDelta) {
    let catalogue = Catalogue::embedded();
    let context = test_context(Some("LIC-1"));
    let parser = Parser {
        catalogue: &catalogue,
        context: &context,
    };
    let mut delta = KsnDelta::default();
    let outcome = parser.parse(line.as_bytes(), &mut delta);
    (outcome, delta)
}

fn code(line: &str) -> &'static str {
    parse(line).0.expect_err(line).code
}

fn record(line: &str) -> Record {
    match parse(line).0 {
        Ok(Outcome::Install(task)) => task.record(&test_context(Some("LIC-1"))),
        Ok(Outcome::Record(record))
        | Ok(Outcome::Activated {
            record: Some(record),
            ..
        }) => record,
        other => panic!("{line}: {other:?}"),
    }
}

const OBJECT: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// Every kind of event makes a record each built-in catalogue that has
/// its purpose accepts (a built-in collector's facts beyond what a
/// product declares are left out by `Catalogue::declared`).
#[test]
fn every_kind_makes_a_record_the_catalogue_accepts() {
    for line in [
        r#"{"kind":"update_task"}"#,
        r#"{"kind":"update_task","task_id":"6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"}"#,
        r#"{"kind":"activation","method":"code","code":"ABCDE-12345","locale":"de-DE","license_edition":"business","license_units_total":50,"license_units_used":12}"#,
        r#"{"kind":"install_task","task":"install","status":"failed","error_type":"msi","error_code":1603,"duration_ms":5400,"campaign_id":"c-1"}"#,
        r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":"EICAR","object_size":68}}"#,
    ] {
        let record = record(line);
        let mut found = 0;
        for builtin in crate::catalogue::BuiltIn::ALL {
            let catalogue = Catalogue::builtin(builtin);
            if catalogue.purpose(&record.purpose).is_some() {
                catalogue.check(&catalogue.declared(&record)).unwrap();
                found += 1;
            }
        }
        assert!(found > 0, "{line}: no built-in catalogue has its purpose");
    }
}

#[test]
fn verdicts_and_requests_are_folded_not_recorded() {
    let line = format!(
        r#"{{"kind":"scan_verdict","object":"{OBJECT}","verdict":"trusted","trust_reason":"certificate"}}"#
    );
    let (outcome, delta) = parse(&line);
    assert!(matches!(outcome, Ok(Outcome::Aggregated)));
    assert_eq!(delta.events(), 1);
    let (outcome, delta) =
        parse(r#"{"kind":"ksn_request","ok":false,"duration_ms":12,"bytes_sent":300}"#);
    assert!(matches!(outcome, Ok(Outcome::Aggregated)));
    assert_eq!(delta.events(), 1);
}

#[test]
fn a_key_file_activation_is_valid_and_sends_nothing() {
    let (outcome, _) = parse(r#"{"kind":"activation","method":"key_file"}"#);
    assert!(
        matches!(
            outcome,
            Ok(Outcome::Activated {
                method: activation::Method::KeyFile,
                record: None
            })
        ),
        "{outcome:?}"
    );
}

#[test]
fn an_activation_by_code_says_so_beside_its_record() {
    let (outcome, _) = parse(r#"{"kind":"activation","method":"code","code":"AB-12"}"#);
    let Ok(Outcome::Activated {
        method: activation::Method::Code,
        record: Some(record),
    }) = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(record.purpose, "activation");
}

#[test]
fn each_kind_of_bad_line_has_its_code() {
    assert_eq!(code("not json"), "not_json");
    assert_eq!(code(r#"{"kind":"update_task""#), "not_json");
    assert_eq!(code(r#"{"task":"install"}"#), "missing_kind");
    assert_eq!(code(r#"{"kind":"telepathy"}"#), "unknown_kind");
    assert_eq!(
        code(r#"{"kind":"update_task","hostname":"h"}"#),
        "undeclared_field"
    );
    assert_eq!(
        code(r#"{"kind":"update_task","verdict":"trusted"}"#),
        "undeclared_field",
        "a field of another kind"
    );
    assert_eq!(
        code(r#"{"kind":"install_task","task":"install"}"#),
        "missing_field"
    );
    assert_eq!(
        code(r#"{"kind":"install_task","task":"reinstall","status":"failed"}"#),
        "invalid_value"
    );
    assert_eq!(
        code(r#"{"kind":"install_task","task":"install","status":"failed","duration_ms":-1}"#),
        "invalid_value"
    );
    assert_eq!(
        code(r#"{"kind":"install_task","task":7,"status":"failed"}"#),
        "wrong_type"
    );
    assert_eq!(code(r#"["update_task"]"#), "not_json");
    assert_eq!(code("42"), "not_json");
    // Not UTF-8, in a value: said where, and nothing of it shown.
    let catalogue = Catalogue::embedded();
    let context = test_context(None);
    let parser = Parser {
        catalogue: &catalogue,
        context: &context,
    };
    let bad = b"{\"kind\":\"install_task\",\"task\":\"in\xffstall\",\"status\":\"failed\"}";
    let err = parser
        .parse(bad, &mut KsnDelta::default())
        .expect_err("not UTF-8");
    assert_eq!(err.code, "not_json");
    assert_eq!(err.message, "not a JSON object: byte 34 is not UTF-8");
    assert_eq!(
        code(&format!(
            r#"{{"kind":"scan_verdict","object":"{OBJECT}","verdict":"untrusted","trust_reason":"user"}}"#
        )),
        "invalid_value"
    );
    assert_eq!(
        code(r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":7}}"#),
        "wrong_type"
    );
    assert_eq!(
        code(r#"{"kind":"scan_verdict","object":"abc","verdict":"trusted"}"#),
        "invalid_value"
    );
    assert_eq!(
        code(r#"{"kind":"activation","method":"code"}"#),
        "missing_field"
    );
    assert_eq!(
        code(r#"{"kind":"update_task","task_id":"nope"}"#),
        "invalid_value"
    );
    assert_eq!(
        code(r#"{"kind":"record","purpose":"activation","fields":{}}"#),
        "built_in_purpose"
    );
    assert_eq!(
        code(r#"{"kind":"record","purpose":"nope","fields":{}}"#),
        "unknown_purpose"
    );
    assert_eq!(
        code(r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"hostname":"h"}}"#),
        "undeclared_field"
    );
    assert_eq!(
        code(r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"threat_name":5}}"#),
        "wrong_type"
    );
}

#[test]
fn the_agent_adds_its_own_facts() {
    let update = record(r#"{"kind":"update_task"}"#);
    assert_eq!(
        update.fields["license_id"],
        FieldValue::String("LIC-1".into())
    );
    assert!(matches!(
        update.fields["installation_id"],
        FieldValue::Uuid(_)
    ));
    let install = record(r#"{"kind":"install_task","task":"update","status":"succeeded"}"#);
    assert_eq!(
        install.fields["os_type"],
        FieldValue::String("linux".into())
    );
    assert_eq!(
        install.fields["task_type"],
        FieldValue::String("update".into())
    );
}

#[test]
fn a_request_count_is_whole_and_from_zero_to_the_largest_signed_64_bit_integer() {
    for field in ["duration_ms", "bytes_sent", "bytes_received"] {
        let line = |value: &str| format!(r#"{{"kind":"ksn_request","ok":true,"{field}":{value}}}"#);
        assert_eq!(code(&line("-1")), "invalid_value", "{field}");
        assert_eq!(code(&line("-9223372036854775808")), "invalid_value");
        assert_eq!(code(&line("9223372036854775808")), "invalid_value");
        assert_eq!(code(&line("1.5")), "wrong_type", "{field}");
        assert_eq!(code(&line("\"12\"")), "wrong_type", "{field}");
        let text = line("9223372036854775807");
        let (outcome, delta) = parse(&text);
        assert!(matches!(outcome, Ok(Outcome::Aggregated)), "{field}");
        let mut window = ksn::KsnAggregate::new();
        window.fold(&delta, SystemTime::now());
        let counter = match field {
            "duration_ms" => "session_duration_ms",
            other => other,
        };
        let largest = window
            .counters()
            .fields()
            .into_iter()
            .find(|(n, _)| *n == counter);
        assert_eq!(largest.map(|(_, v)| v), Some(i64::MAX as u64), "{field}");
        assert!(window.capped().is_zero(), "{field}");
    }
}

#[test]
fn an_error_line_never_echoes_a_value_that_looks_personal() {
    let message = |line: &str| parse(line).0.expect_err(line).message;
    let secret = "alice@example.com";
    for line in [
        r#"{"kind":"install_task","task":"alice@example.com","status":"failed"}"#,
        r#"{"kind":"install_task","task":"install","status":"failed","error_code":"alice@example.com"}"#,
        r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"object_size":"alice@example.com"}}"#,
        r#"{"kind":"update_task","alice@example.com":1}"#,
        r#"{"kind":"scan_verdict","object":"alice@example.com","verdict":"trusted"}"#,
    ] {
        let message = message(line);
        assert!(!message.contains(secret), "{line}: {message}");
        assert!(message.contains("an e-mail address"), "{line}: {message}");
    }
    let shown = message(r#"{"kind":"install_task","task":"reboot","status":"failed"}"#);
    assert!(shown.contains("`task` is `reboot`"), "{shown}");
}

#[test]
fn an_activation_carries_the_svm_id_it_is_given_and_only_a_uuid() {
    let line = r#"{"kind":"activation","method":"code","code":"AB-12","svm_id":"6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"}"#;
    assert_eq!(
        record(line).fields["svm_id"],
        FieldValue::Uuid(Uuid::parse_str("6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f").unwrap())
    );
    let bad = r#"{"kind":"activation","method":"code","code":"AB-12","svm_id":"svm-7"}"#;
    assert_eq!(code(bad), "invalid_value");
}

/// The fields a deletion request names are the agent's: a component may
/// not send them, and a purpose that declares the installation id gets
/// this installation's.
#[test]
fn the_installation_id_and_the_erasure_key_are_the_agent_s_to_fill() {
    let catalogue = Catalogue::embedded();
    let context = test_context(None);
    let parser = Parser {
        catalogue: &catalogue,
        context: &context,
    };
    fn parse<'l>(parser: &Parser, line: &'l str) -> Result<Outcome<'l>, LineError> {
        parser.parse(line.as_bytes(), &mut KsnDelta::default())
    }
    let parse = |line: &'static str| parse(&parser, line);
    let counted = r#"{"kind":"record","purpose":"third_party_user_count","fields":{"product_name":"Suite","os_version":"12"}}"#;
    let Ok(Outcome::Record(record)) = parse(counted) else {
        panic!("{counted}")
    };
    assert_eq!(
        record.fields["installation_id"],
        FieldValue::Uuid(context.installation_id())
    );
    assert_eq!(catalogue.check(&record), Ok(()));

    let refused = |line: &'static str| {
        let err = parse(line).expect_err(line);
        assert_eq!(err.code, "agent_field", "{line}");
        assert!(
            err.message.contains("is filled by the agent"),
            "{}",
            err.message
        );
    };
    refused(
        r#"{"kind":"record","purpose":"third_party_user_count","fields":{"installation_id":"6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"}}"#,
    );
    refused(
        r#"{"kind":"record","purpose":"promotions","fields":{"erasure_key":"6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f"}}"#,
    );
    // A purpose that declares neither gets neither.
    let line = r#"{"kind":"record","purpose":"ksn_threat_reports","fields":{"object_size":68}}"#;
    let Ok(Outcome::Record(record)) = parse(line) else {
        panic!("{line}")
    };
    assert!(!record.fields.contains_key("installation_id"));
}

/// What a line comes to, as something to compare: the task, the error
/// code, or what else it was.
fn outcome_of(outcome: Result<Outcome<'_>, LineError>) -> String {
    match outcome {
        Ok(Outcome::Install(task)) => format!("{task:?}"),
        Ok(Outcome::Record(record)) => format!("record {}", record.purpose),
        Ok(Outcome::Aggregated) => "aggregated".into(),
        Ok(Outcome::Activated { method, .. }) => format!("activated {method:?}"),
        Err(err) => format!("error {}: {}", err.code, err.message),
    }
}

/// `line` read the general way only (`Line`), as it was before
/// `InstallLine`.
fn general(line: &str) -> String {
    let catalogue = Catalogue::embedded();
    let context = test_context(Some("LIC-1"));
    let parser = Parser {
        catalogue: &catalogue,
        context: &context,
    };
    outcome_of(parser.parse_general(line, &mut KsnDelta::default()))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Any line made of install-task fields, other kinds' fields, unknown
    /// ones, values of any type, repeated or missing keys, comes to the
    /// same task or the same error whichever way it is read.
    #[test]
    fn an_install_task_is_read_the_same_by_its_own_struct_and_the_general_one(
        keys in proptest::collection::vec(
            proptest::sample::select(vec![
                "kind", "task", "status", "error_type", "error_code", "duration_ms",
                "campaign_id", "object", "ok", "purpose", "nonsense",
            ]),
            0..9,
        ),
        values in proptest::collection::vec(
            proptest::sample::select(vec![
                r#""install_task""#, r#""install""#, r#""upgrade""#, r#""failed""#,
                r#""succeeded""#, r#""io""#, r#""a\"b\\n""#, "1603", "-5", "1.5", "null",
                "true", r#"["x"]"#, r#"{"a":1}"#, r#""scan_verdict""#,
            ]),
            9,
        ),
        kind_first in proptest::bool::ANY,
    ) {
        let mut pairs: Vec<String> = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        if kind_first {
            pairs.insert(0, r#""kind":"install_task""#.into());
        }
        let line = format!("{{{}}}", pairs.join(","));
        let (fast, _) = parse(&line);
        proptest::prop_assert_eq!(outcome_of(fast), general(&line), "{}", line);
    }
}

#[test]
fn an_install_task_with_every_field_is_read_by_its_own_struct_as_the_general_one_reads_it() {
    let line = r#"{"kind":"install_task","task":"upgrade","status":"failed","error_type":"disk_full","error_code":1603,"duration_ms":5400,"campaign_id":"spring-2026"}"#;
    let (fast, _) = parse(line);
    let fast = outcome_of(fast);
    assert!(fast.contains("disk_full"), "{fast}");
    assert_eq!(fast, general(line));
}

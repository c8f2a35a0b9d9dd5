//! Entry points for the fuzz targets (`fuzz/`, `cargo +nightly fuzz run
//! <target>`) and for the test that replays their committed corpora on
//! every `cargo test` (`tests/it/fuzz_corpus.rs`). Each takes arbitrary
//! bytes and must return without panicking, whatever they hold: every
//! parser of outside input answers with a value or an error.
//!
//! Not an API: the functions only exercise the real parsers, the way the
//! daemon and the CLI call them.

use std::path::Path;
use std::sync::OnceLock;

use crate::catalogue::{Catalogue, Region};
use crate::collect::ksn::KsnDelta;
use crate::collect::{CollectContext, ProductConfig};
use crate::consent::Consents;
use crate::document::{Document, Origin};
use crate::ingest::event::{Outcome, Parser};

/// One entry point: arbitrary bytes in, no panic.
pub type Target = fn(&[u8]);

/// Every fuzz target, by name: the names of `fuzz/fuzz_targets/*.rs` and
/// of the corpus directories.
pub const TARGETS: [(&str, Target); 6] = [
    ("catalogue", catalogue),
    ("consent_file", consent_file),
    ("config", config),
    ("ingest_line", ingest_line),
    ("control_request", control_request),
    ("server_answer", server_answer),
];

fn document(data: &[u8]) -> Option<Document> {
    let text = std::str::from_utf8(data).ok()?.to_owned();
    Some(Document {
        origin: Origin::Embedded("fuzz"),
        text,
    })
}

fn embedded() -> &'static Catalogue {
    static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
    CATALOGUE.get_or_init(Catalogue::embedded)
}

/// A catalogue file: parsed and validated; its problems rendered with
/// their file:line:column.
pub fn catalogue(data: &[u8]) {
    let Some(document) = document(data) else {
        return;
    };
    match Catalogue::from_document(&document) {
        Ok(catalogue) => {
            for clause in catalogue.clauses() {
                let _ = catalogue.scope_of(&clause.id);
            }
        }
        Err(problems) => {
            let _ = problems.to_string();
        }
    }
}

/// A consent file against the embedded catalogue.
pub fn consent_file(data: &[u8]) {
    let Some(document) = document(data) else {
        return;
    };
    match Consents::from_document(&document, embedded()) {
        Ok(consents) => {
            for region in [Region::Global, Region::Eu] {
                let _ = crate::consent::Registry::evaluate(embedded(), &consents, region);
            }
        }
        Err(problems) => {
            let _ = problems.to_string();
        }
    }
}

/// An agent config file.
pub fn config(data: &[u8]) {
    let Some(document) = document(data) else {
        return;
    };
    if let Err(err) =
        crate::config::Config::from_document(&document, Path::new("/fuzz/consentry.toml"))
    {
        let _ = err.to_string();
    }
}

/// One line on the ingest socket: parsed into a record (checked against
/// the catalogue) or folded into a KSN delta.
pub fn ingest_line(data: &[u8]) {
    static CONTEXT: OnceLock<CollectContext> = OnceLock::new();
    let context = CONTEXT.get_or_init(|| {
        let product = ProductConfig {
            id: "fuzz".into(),
            version: "1.0.0.0".into(),
            license_id: None,
            locale: None,
            db_settings_id: None,
            private_db_version: None,
        };
        CollectContext::new(product, uuid::Uuid::nil(), Region::Global)
    });
    let parser = Parser {
        catalogue: embedded(),
        context,
    };
    let mut delta = KsnDelta::default();
    match parser.parse(data, &mut delta) {
        Ok(
            Outcome::Record(record)
            | Outcome::Activated {
                record: Some(record),
                ..
            },
        ) => {
            let _ = embedded().check(&record);
        }
        Ok(Outcome::Install(task)) => {
            let _ = embedded().check(&task.record(context));
        }
        _ => {}
    }
}

/// One request line on the control socket; a request that parses must
/// survive a round trip.
pub fn control_request(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = serde_json::from_str::<crate::control::Request>(line.trim_end()) {
        let again = serde_json::to_string(&request).expect("a request serializes");
        let back: crate::control::Request =
            serde_json::from_str(&again).expect("a serialized request parses");
        assert_eq!(
            serde_json::to_string(&back).expect("a request serializes"),
            again
        );
    }
}

/// A receiver's answer: a status (the first two bytes) and the rest, read
/// as a `Retry-After` and a `Consentry-Upload-Interval` value (classified
/// and turned into a wait and an interval, by both protocols' rules) and
/// as an OTLP export response body, protobuf and JSON (a partial success
/// never rejects more than it says, and never panics).
pub fn server_answer(data: &[u8]) {
    use crate::upload::policy::{
        Protocol, RETRY_AFTER_CAP, Refusal, RetryPolicy, UploadResult, parse_retry_after_at,
    };
    use crate::upload::schedule::{IntervalBounds, Jitter, Pace};
    use crate::upload::transport::Pacing;
    let status = match data {
        [hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) % 1000,
        _ => return,
    };
    let value = String::from_utf8_lossy(&data[2..]);
    for read in [
        crate::upload::otlp::rejected,
        crate::upload::otlp::rejected_json,
    ] {
        if let Ok(Some(rejected)) = read(&data[2..]) {
            assert!(rejected.records > 0);
        }
    }
    let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let retry_after = parse_retry_after_at(&value, now);
    let _ = UploadResult::from_status(status, retry_after).detail();
    let _ = Refusal::of(status, 500);
    let policy = RetryPolicy {
        initial: std::time::Duration::from_secs(5),
        max: std::time::Duration::from_secs(900),
    };
    let bounds = IntervalBounds {
        min: std::time::Duration::from_secs(10),
        max: std::time::Duration::from_secs(3600),
    };
    for protocol in [Protocol::ConsentryJson, Protocol::OtlpHttp] {
        let result = UploadResult::classify(protocol, status, retry_after);
        let mut pace = Pace::new(policy, std::time::Duration::from_secs(60), bounds);
        let pacing = Pacing {
            retry_after,
            upload_interval: value
                .trim()
                .parse()
                .ok()
                .map(std::time::Duration::from_secs),
        };
        for attempt in 0..3 {
            let wait = pace.after(&Jitter::from_seed(attempt), &result, pacing);
            // Never sooner than the server asked, up to the cap.
            if let Some(asked) = retry_after.filter(|a| !a.is_zero()) {
                assert!(
                    wait.is_some_and(|w| w >= asked.min(RETRY_AFTER_CAP) && w <= RETRY_AFTER_CAP)
                );
            }
            assert!(pace.interval() >= bounds.min.min(std::time::Duration::from_secs(60)));
            assert!(pace.interval() <= bounds.max.max(std::time::Duration::from_secs(60)));
        }
    }
}

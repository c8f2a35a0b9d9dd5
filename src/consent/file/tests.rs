use super::*;
use std::time::{Duration, UNIX_EPOCH};

/// A new consent file at `path` accepting eula at `accepted_at` (as
/// written in TOML), last modified at `modified`.
fn eula_accepted_at(path: &Path, accepted_at: &str, modified: SystemTime) {
    let catalogue = Catalogue::embedded();
    let _ = std::fs::remove_file(path);
    grant(path, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    let text = read(path);
    let start = text.find("accepted_at = ").unwrap() + "accepted_at = ".len();
    let end = start + text[start..].find('\n').unwrap();
    let edited = format!("{}{accepted_at}{}", &text[..start], &text[end..]);
    std::fs::write(path, edited).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(modified).unwrap();
}

/// Whole seconds `offset` from now, so that RFC 3339 says it exactly.
fn whole_seconds_from_now(offset: Duration) -> SystemTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs((now + offset).as_secs())
}

fn load_error(path: &Path) -> Option<String> {
    Consents::load(path, &Catalogue::embedded())
        .err()
        .map(|err| err.to_string())
}

#[test]
fn an_acceptance_is_in_the_future_only_past_the_files_own_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    // Accepted three days ahead of the clock now, by a clock set back
    // since: the file was written then too.
    let ahead = whole_seconds_from_now(Duration::from_secs(3 * 86_400));
    eula_accepted_at(&path, &rfc3339(ahead), ahead);
    assert_eq!(load_error(&path), None);
    // The same date in a file written now is a mistake.
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(SystemTime::now()).unwrap();
    let err = load_error(&path).unwrap();
    assert!(err.contains("in the future"), "{err}");
}

#[test]
fn accepted_at_may_be_five_minutes_past_the_latest_date_and_not_a_second_more() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    // The file's date, a day ahead of the clock, is the latest the clock
    // vouched for: the boundary does not move while the test runs.
    let written = whole_seconds_from_now(Duration::from_secs(86_400));
    let limit = written + accepted_at::CLOCK_SKEW;
    eula_accepted_at(&path, &rfc3339(limit), written);
    assert_eq!(load_error(&path), None);
    eula_accepted_at(&path, &rfc3339(limit + Duration::from_secs(1)), written);
    let err = load_error(&path).unwrap();
    assert!(
        err.contains(&format!(
            "`eula` accepted_at {} is in the future",
            rfc3339(limit + Duration::from_secs(1))
        )),
        "{err}"
    );
    // And against the clock, in a file written now: an hour ahead is as
    // wrong as two days (both were refused only past a day before).
    for ahead in [3600, 2 * 86_400] {
        let at = whole_seconds_from_now(Duration::from_secs(ahead));
        eula_accepted_at(&path, &rfc3339(at), SystemTime::now());
        assert!(
            load_error(&path).is_some_and(|e| e.contains("in the future")),
            "{ahead} s"
        );
    }
    let at = whole_seconds_from_now(Duration::from_secs(60));
    eula_accepted_at(&path, &rfc3339(at), SystemTime::now());
    assert_eq!(load_error(&path), None, "a minute ahead");
}

#[test]
fn no_way_of_writing_a_date_escapes_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    for written in [
        "9999-01-01T00:00:00+01:00",
        "9999-01-01T00:00:00-12:00",
        "9999-01-01T00:00Z",
        "9999-01-01T00:00:00",
        "9999-01-01",
    ] {
        eula_accepted_at(&path, written, SystemTime::now());
        let err = load_error(&path).unwrap_or_default();
        assert!(err.contains("is in the future"), "{written}: {err}");
    }
    eula_accepted_at(&path, "12:00:00", SystemTime::now());
    let err = load_error(&path).unwrap_or_default();
    assert!(err.contains("names no day"), "{err}");
    eula_accepted_at(&path, "2026-01-01T09:00:00+09:00", SystemTime::now());
    assert_eq!(load_error(&path), None);
}

#[test]
fn a_grant_after_the_clock_was_set_back_keeps_the_other_acceptances() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let catalogue = Catalogue::embedded();
    // eula accepted, then the clock set back three days.
    let ahead = whole_seconds_from_now(Duration::from_secs(3 * 86_400));
    eula_accepted_at(&path, &rfc3339(ahead), ahead);
    grant(&path, &catalogue, Region::Global, "ksn", Method::Cli).unwrap();
    assert_eq!(load_error(&path), None, "the grant voided eula");
    assert!(revoke(&path, &catalogue, "ksn").unwrap().changed);
    assert_eq!(load_error(&path), None, "the revoke voided eula");
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    assert_eq!(modified, ahead);
}

#[test]
fn a_symlinked_consent_file_stays_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real/consent.toml");
    std::fs::write(&target, "# kept\n").unwrap();
    let link = dir.path().join("consent.toml");
    std::os::unix::fs::symlink("real/consent.toml", &link).unwrap();
    let catalogue = Catalogue::embedded();
    grant(&link, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(read(&target).starts_with("# kept\n"));
    assert!(
        Consents::load(&link, &catalogue)
            .unwrap()
            .get("eula")
            .is_some()
    );
    assert!(revoke(&link, &catalogue, "eula").unwrap().changed);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A link to a file not made yet: the file is made where it points.
    let dangling = dir.path().join("later.toml");
    std::os::unix::fs::symlink("real/later.toml", &dangling).unwrap();
    grant(&dangling, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    assert!(dir.path().join("real/later.toml").is_file());
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn shipped_example_matches_the_embedded_catalogue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/consent.example.toml");
    let catalogue = Catalogue::embedded();
    let consents = Consents::load(&path, &catalogue).unwrap();
    let eula = consents.get("eula").unwrap();
    let clause = catalogue.clause("eula").unwrap();
    assert_eq!(
        (eula.version, eula.text_sha256.as_str()),
        (clause.version, clause.text_sha256.as_str())
    );
    assert_eq!(eula.scope.as_ref(), Some(&catalogue.scope_of("eula")));
}

#[test]
fn missing_file_accepts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let consents = Consents::load(&dir.path().join("none.toml"), &Catalogue::embedded()).unwrap();
    assert_eq!(consents.iter().count(), 0);
}

#[test]
fn grant_then_revoke_round_trips_and_keeps_comments() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    std::fs::write(&path, "# written by the installer\n").unwrap();
    let catalogue = Catalogue::embedded();

    let granted = grant(&path, &catalogue, Region::Global, "eula", Method::Installer).unwrap();
    assert!(granted.changed);
    assert_eq!(
        granted.acceptance.version,
        catalogue.clause("eula").unwrap().version
    );
    grant(&path, &catalogue, Region::Global, "ksn", Method::Cli).unwrap();
    // Granting again what is accepted as it is now changes nothing.
    let before = read(&path);
    let again = grant(&path, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    assert!(!again.changed);
    assert_eq!(again.acceptance, granted.acceptance);
    assert_eq!(read(&path), before, "a re-grant rewrote the file");

    let consents = Consents::load(&path, &catalogue).unwrap();
    assert_eq!(consents.get("eula").unwrap().method, Method::Installer);
    assert!(consents.get("ksn").is_some());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.starts_with("# written by the installer\n"), "{text}");

    assert!(revoke(&path, &catalogue, "eula").unwrap().changed);
    assert!(!revoke(&path, &catalogue, "eula").unwrap().changed);
    let consents = Consents::load(&path, &catalogue).unwrap();
    assert!(consents.get("eula").is_none());
    assert!(consents.get("ksn").is_some());
    assert!(read(&path).starts_with("# written by the installer\n"));

    assert!(revoke(&path, &catalogue, "ksn").unwrap().changed);
    assert_eq!(read(&path).trim(), "# written by the installer");
    assert_eq!(Consents::load(&path, &catalogue).unwrap().iter().count(), 0);
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn unknown_clause_in_file_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let sha = "0".repeat(64);
    std::fs::write(
        &path,
        format!("[[accepted]]\nclause = \"eulaa\"\nversion = 1\ntext_sha256 = \"{sha}\"\naccepted_at = 2026-01-01T00:00:00Z\nmethod = \"cli\"\n"),
    )
    .unwrap();
    let err = Consents::load(&path, &Catalogue::embedded())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("consent.toml:2:10: unknown clause `eulaa`"),
        "{err}"
    );
}

#[test]
fn a_clause_is_not_granted_while_what_it_requires_is_not_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let catalogue = Catalogue::embedded();
    let err = grant(&path, &catalogue, Region::Global, "ksn", Method::Cli).unwrap_err();
    assert!(
        matches!(&err, ConsentError::RequirementMissing { requires, .. } if requires == "eula"),
        "{err}"
    );
    assert!(err.to_string().contains("grant eula first"), "{err}");
    assert!(!path.exists(), "nothing written");
    grant(&path, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    assert!(
        grant(&path, &catalogue, Region::Global, "ksn", Method::Cli)
            .unwrap()
            .changed
    );
}

#[test]
fn grant_refuses_unknown_clause_and_broken_file_without_touching_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let catalogue = Catalogue::embedded();
    assert!(matches!(
        grant(&path, &catalogue, Region::Global, "nope", Method::Cli),
        Err(ConsentError::UnknownClause { .. })
    ));
    assert!(!path.exists());

    std::fs::write(&path, "[[accepted]\n").unwrap();
    assert!(grant(&path, &catalogue, Region::Global, "eula", Method::Cli).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "[[accepted]\n");
}

#[test]
fn a_decline_writes_nothing_and_is_refused_for_an_accepted_clause_or_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let catalogue = Catalogue::embedded();
    // Offered and refused: not accepted before, nothing written after. A
    // clause that requires another can be refused without it.
    let offered = decline(&path, &catalogue, Region::Global, "ksn").unwrap();
    assert_eq!(offered.id, "ksn");
    assert!(!path.exists(), "a decline wrote the consent file");
    assert!(matches!(
        decline(&path, &catalogue, Region::Global, "nope"),
        Err(ConsentError::UnknownClause { .. })
    ));
    assert!(matches!(
        decline(&path, &catalogue, Region::Eu, "eula"),
        Err(ConsentError::NotInRegion { instead, .. }) if instead == "eula_regional"
    ));

    // Accepted: withdrawing is a revoke, never a decline.
    grant(&path, &catalogue, Region::Global, "eula", Method::Installer).unwrap();
    grant(&path, &catalogue, Region::Global, "ksn", Method::Installer).unwrap();
    let before = std::fs::read_to_string(&path).unwrap();
    let err = decline(&path, &catalogue, Region::Global, "ksn").unwrap_err();
    assert!(matches!(err, ConsentError::Accepted { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("run `consentry consent revoke ksn`"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), before);

    // A broken file cannot say what is accepted.
    std::fs::write(&path, "[[accepted]\n").unwrap();
    assert!(decline(&path, &catalogue, Region::Global, "ksn").is_err());
}

use super::*;

#[test]
fn an_acceptance_is_in_the_future_only_past_the_files_own_date() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.toml");
    let catalogue = Catalogue::embedded();
    grant(&path, &catalogue, Region::Global, "eula", Method::Cli).unwrap();
    // Accepted three days ahead of the clock now, by a clock set back
    // since: the file was written then too.
    let ahead = SystemTime::now() + std::time::Duration::from_secs(3 * 86_400);
    let text = read(&path);
    let start = text.find("accepted_at = ").unwrap() + "accepted_at = ".len();
    let end = start + text[start..].find('\n').unwrap();
    let edited = format!("{}{}{}", &text[..start], rfc3339(ahead), &text[end..]);
    std::fs::write(&path, edited).unwrap();
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(ahead).unwrap();
    assert!(Consents::load(&path, &catalogue).is_ok());
    // The same date in a file written now is a mistake.
    file.set_modified(SystemTime::now()).unwrap();
    let err = Consents::load(&path, &catalogue).unwrap_err().to_string();
    assert!(err.contains("in the future"), "{err}");
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

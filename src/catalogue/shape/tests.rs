use super::*;
use crate::catalogue::{Catalogue, EMBEDDED};
use crate::collect::installation_errors::{STATUSES, TASKS};
use crate::document::{Document, Origin};

/// A catalogue of one purpose `p` with one field `f` of type `ty`, whose
/// table ends with `extra` (from line 17 on).
fn catalogue(ty: &str, extra: &str) -> Result<Catalogue, String> {
    let text = format!(
        "schema = 1\n[[clause]]\nid = \"eula\"\ntitle = \"t\"\nkind = \"eula\"\nversion = 1\ntext = \"x\"\n\
         [[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"contract\"\nclauses = [\"eula\"]\n\
         [[purpose.field]]\nname = \"f\"\ntype = \"{ty}\"\ndescription = \"d\"\n{extra}personal = \"pseudonymous\"\n"
    );
    let document = Document {
        origin: Origin::File("cat.toml".into()),
        text,
    };
    Catalogue::from_document(&document).map_err(|e| e.to_string())
}

fn field(extra: &str) -> Field {
    let catalogue = catalogue("string", extra).unwrap();
    catalogue.purpose("p").unwrap().field("f").unwrap().clone()
}

#[test]
fn each_format_admits_its_values_and_no_others() {
    let cases: &[(Format, &[&str], &[&str])] = &[
        (
            Format::Text,
            &["Debian GNU/Linux", "", "Ünïcode ok"],
            &["tab\there", "nl\n"],
        ),
        (
            Format::Identifier,
            &[
                "disk_full",
                "HEUR:Trojan.Win32.Generic",
                "c-7",
                "0x80070005",
            ],
            &["", "two words", "a/b", "a@b"],
        ),
        (
            Format::Version,
            &[
                "1.0.0.0",
                "6.1.0-18-amd64",
                "11 (26100)",
                "trixie/sid",
                "2.3+dfsg~1",
            ],
            &["", ".1", "-1", "1,2", "v1\u{e9}"],
        ),
        (
            Format::Locale,
            &["en", "de-DE", "pt_BR", "zh-Hant-TW", "C", "es-419"],
            &[
                "",
                "de_DE.UTF-8",
                "0de",
                "de--DE",
                "toolongsubtag-x",
                &"a-".repeat(20),
            ],
        ),
        (Format::Country, &["DE", "US"], &["de", "DEU", "D1", ""]),
        (Format::Hex, &["00ff", "ABCdef"], &["", "0x00", "g"]),
        (
            Format::Sha256,
            &[&"a".repeat(64)],
            &[&"a".repeat(63), &"g".repeat(64)],
        ),
    ];
    for (format, good, bad) in cases {
        for value in *good {
            assert!(format.admits(value), "{format} {value:?}");
        }
        for value in *bad {
            assert!(!format.admits(value), "{format} {value:?}");
        }
    }
}

#[test]
fn a_value_is_refused_by_kind_before_shape_and_never_shown() {
    let identifier = field("format = \"identifier\"\nmax_len = 20\n");
    assert_eq!(identifier.admits("disk_full"), Ok(()));
    assert_eq!(
        identifier.admits("alice@example.com"),
        Err(Misfit::Personal(Kind::EmailAddress))
    );
    assert_eq!(
        identifier.admits("two words"),
        Err(Misfit::Unfit(Unfit::NotOfFormat(Format::Identifier)))
    );
    assert_eq!(
        identifier.admits(&"a".repeat(21)),
        Err(Misfit::Unfit(Unfit::TooLong { max: 20 }))
    );
    let text = Unfit::NotOfFormat(Format::Identifier).to_string();
    assert!(text.starts_with("not an identifier"), "{text}");
}

#[test]
fn listed_values_are_the_only_ones_and_pass_as_listed() {
    let listed = field("values = [\"install\", \"update\"]\n");
    assert_eq!(listed.admits("install"), Ok(()));
    assert_eq!(
        listed.admits("reboot"),
        Err(Misfit::Unfit(Unfit::NotListed))
    );
    assert_eq!(
        listed.admits("/home/alice/x"),
        Err(Misfit::Personal(Kind::HomePath))
    );
}

#[test]
fn allows_lets_a_declared_kind_through_and_no_other() {
    let code = field("format = \"identifier\"\nmax_len = 64\nallows = [\"long_number\"]\n");
    assert_eq!(code.admits("12345-67890-12345-67890"), Ok(()));
    assert_eq!(
        code.admits("00:1a:2b:3c:4d:5e"),
        Err(Misfit::Personal(Kind::MacAddress))
    );
    let strict = field("format = \"identifier\"\nmax_len = 64\n");
    assert_eq!(
        strict.admits("12345-67890-12345-67890"),
        Err(Misfit::Personal(Kind::LongNumber))
    );
}

#[test]
fn a_version_is_read_as_a_version() {
    let version = field("format = \"version\"\nmax_len = 64\n");
    assert_eq!(version.admits("9.8.7.6"), Ok(()));
    assert_eq!(
        version.admits("192.168.1.23"),
        Err(Misfit::Personal(Kind::IpAddress))
    );
    let text = field("format = \"text\"\nmax_len = 64\n");
    assert_eq!(
        text.admits("9.8.7.6"),
        Err(Misfit::Personal(Kind::IpAddress))
    );
}

#[test]
fn a_transform_s_output_is_looked_at_only_where_it_can_still_hold_anything() {
    // truncate_ip keeps a network: an address by construction.
    let network = field("transform = \"truncate_ip\"\n");
    assert_eq!(network.admits("203.0.113.0"), Ok(()));
    // A scrubbed folder is looked at like any text.
    let folder = field("transform = \"scrub_path\"\n");
    assert_eq!(folder.admits("~/Downloads"), Ok(()));
    assert_eq!(
        folder.admits("/srv/mail/alice@example.com"),
        Err(Misfit::Personal(Kind::EmailAddress))
    );
    let bounded = field("transform = \"scrub_path\"\nmax_len = 8\n");
    assert_eq!(
        bounded.admits("/usr/local/bin"),
        Err(Misfit::Unfit(Unfit::TooLong { max: 8 }))
    );
}

/// Each mistake in a declaration, refused at the line and column of the
/// key (or value) at fault.
#[test]
fn declaration_mistakes_are_located() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "string",
            "",
            "cat.toml:14:8:",
            "declares nothing of what it may hold",
        ),
        (
            "integer",
            "format = \"text\"\n",
            "cat.toml:17:10:",
            "`format` applies to strings only",
        ),
        (
            "boolean",
            "allows = [\"ip_address\"]\n",
            "cat.toml:17:10:",
            "`allows` applies to strings only",
        ),
        (
            "string",
            "format = \"text\"\nmax_len = 9\nvalues = [\"a\"]\n",
            "cat.toml:19:10:",
            "both `format` and `values`",
        ),
        (
            "string",
            "transform = \"scrub_path\"\nformat = \"text\"\nmax_len = 9\n",
            "cat.toml:18:10:",
            "which decides what it holds",
        ),
        (
            "string",
            "format = \"text\"\n",
            "cat.toml:17:10:",
            "needs a `max_len`",
        ),
        (
            "string",
            "format = \"hex\"\nmax_len = 0\n",
            "cat.toml:18:11:",
            "max_len must be 1 or more",
        ),
        (
            "string",
            "values = []\n",
            "cat.toml:17:10:",
            "lists no value",
        ),
        (
            "string",
            "values = [\"ok\", \"alice@example.com\"]\n",
            "cat.toml:17:17:",
            "looks like an e-mail address",
        ),
        (
            "string",
            "values = [\"\"]\n",
            "cat.toml:17:11:",
            "lists an empty value",
        ),
        (
            "string",
            "values = [\"a\"]\nallows = [\"long_number\"]\n",
            "cat.toml:18:10:",
            "`allows` has nothing to allow",
        ),
        (
            "string",
            "transform = \"keyed_hash\"\nallows = [\"email_address\"]\n",
            "cat.toml:18:10:",
            "leaves nothing of the value to look at",
        ),
        (
            "string",
            "format = \"free\"\n",
            "cat.toml:17:10:",
            "unknown variant `free`",
        ),
        (
            "string",
            "format = \"text\"\nmax_len = 9\nallows = [\"phone\"]\n",
            "cat.toml:19:11:",
            "unknown variant `phone`",
        ),
    ];
    for (ty, extra, place, says) in cases {
        let err = catalogue(ty, extra).unwrap_err();
        assert!(err.starts_with(place), "{extra:?}: {err}");
        assert!(err.contains(says), "{extra:?}: {err}");
    }
    assert!(catalogue("string", "format = \"country\"\n").is_ok());
    assert!(catalogue("string", "transform = \"drop\"\n").is_ok());
}

#[test]
fn every_string_field_of_the_embedded_catalogue_says_what_it_holds() {
    let catalogue = Catalogue::from_document(&Document::embedded("catalogue", EMBEDDED)).unwrap();
    for purpose in catalogue.purposes() {
        for field in purpose.fields.iter().filter(|f| f.ty == FieldType::String) {
            let shape = &field.shape;
            assert!(
                field.transform.is_some() || shape.format.is_some() || !shape.values.is_empty(),
                "{}.{}",
                purpose.id,
                field.name
            );
            assert!(
                shape.max_len.is_some()
                    || !shape.values.is_empty()
                    || field.transform.is_some()
                    || shape.format.is_some_and(|f| !f.needs_max_len()),
                "{}.{} has no bound",
                purpose.id,
                field.name
            );
        }
        // The install_task event's lists are the catalogue's.
        if let Some(task) = purpose.field("task_type") {
            assert_eq!(task.shape.values, TASKS);
            assert_eq!(purpose.field("task_status").unwrap().shape.values, STATUSES);
        }
    }
}

#[test]
fn a_shared_value_is_judged_once_per_field_and_a_refused_one_every_time() {
    use crate::catalogue::CheckError;
    use crate::record::{FieldValue, Fields};
    let versioned = catalogue("string", "format = \"version\"\nmax_len = 40\n").unwrap();
    let listed = catalogue("string", "values = [\"a\", \"b\"]\n").unwrap();
    let (versioned, listed) = (
        versioned.purpose("p").unwrap(),
        listed.purpose("p").unwrap(),
    );
    let fields =
        |text: &Text| -> Fields { [("f".into(), FieldValue::String(text.clone()))].into() };
    let kept = |purpose: &crate::catalogue::Purpose, text: &Text| {
        purpose.field("f").unwrap().admitted.holds(text)
    };
    let fact = Text::Shared("12.1.0".into());
    assert!(!kept(versioned, &fact));
    versioned.judge(&fields(&fact)).unwrap();
    assert!(kept(versioned, &fact));
    // The same text elsewhere (another allocation, or owned) is judged
    // as any value is.
    assert!(!kept(versioned, &Text::Shared("12.1.0".into())));
    assert!(!kept(versioned, &Text::Owned("12.1.0".into())));
    // Kept with its field: another field's declaration judges it afresh.
    assert!(listed.judge(&fields(&fact)).is_err());
    assert!(!kept(listed, &fact));
    // A value refused is never kept, so it is refused each time.
    let email = Text::Shared("alice@example.com".into());
    for _ in 0..2 {
        assert!(matches!(
            versioned.judge(&fields(&email)),
            Err(CheckError::PersonalData { .. }) | Err(CheckError::OutOfShape { .. })
        ));
        assert!(!kept(versioned, &email));
    }
    // A copy of the catalogue starts with nothing admitted, and compares
    // equal all the same.
    let copy = versioned.clone();
    assert!(!copy.field("f").unwrap().admitted.holds(&fact));
    assert_eq!(&copy, versioned);
}

use super::*;

fn kind(text: &str) -> Option<Kind> {
    find(text, Kinds::NONE, Reading::Text)
}

/// Values each kind must find, alone and inside other text.
const FOUND: &[(Kind, &[&str])] = &[
    (
        Kind::EmailAddress,
        &[
            "alice@example.com",
            "Contact: Alice.Smith+tag@mail.example.co.uk.",
            "<bob@example.org>",
            "ålice@exämple.de",
        ],
    ),
    (
        Kind::HomePath,
        &[
            "/home/alice/secret.docx",
            "failed to open /home/alice/secret.docx: denied",
            "C:\\Users\\bob\\Desktop\\a.txt",
            "path='c:/users/bob/x'",
            "\\\\fs01\\home$\\carol\\x",
            "file:///home/alice/x",
            "error:/media/dave/USB",
        ],
    ),
    (
        Kind::IpAddress,
        &[
            "192.168.1.23",
            "10.0.0.7",
            "connect to 172.16.4.2:443 failed",
            "203.0.113.77.",
            "fe80::1%eth0",
            "[2001:db8::42]:8080",
            "::1",
        ],
    ),
    (
        Kind::MacAddress,
        &[
            "00:1a:2b:3c:4d:5e",
            "mac=00-1A-2B-3C-4D-5E",
            "001a.2b3c.4d5e",
            "02-00-5e-10-00-00-00-01",
        ],
    ),
    (
        Kind::LongNumber,
        &[
            "+49 170 1234567",
            "4111-1111-1111-1111",
            "(555) 123-4567",
            "ssn 078051120",
            "call 0170-12345678 now",
        ],
    ),
];

#[test]
fn each_kind_is_found_alone_and_in_text() {
    for (expected, values) in FOUND {
        for value in *values {
            assert_eq!(kind(value), Some(*expected), "{value:?}");
        }
    }
}

#[test]
fn what_fields_are_made_of_is_no_personal_data() {
    for value in [
        "disk_full",
        "std::io::Error",
        "Db::add",
        "HEUR:Trojan.Win32.Generic",
        "EICAR-Test-File",
        "spring-2026",
        "campaign-2026-11",
        "10.0.19045.3803",
        "21.3.10.394",
        "v1.2.3.4",
        "6.1.0-18-amd64",
        "2026-11-26",
        "12:30:45",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "6f1d3b1e-9a4e-4a53-8d0e-1c2b3a4d5e6f",
        "a1234567890b",
        "12345678",
        "KB5034441, KB5034123",
        "Debian GNU/Linux",
        "https://shop.example.com/home/renew",
        "~/Downloads",
        "/root/.cache",
        "/var/lib/postgresql",
        "0.0.0.0",
        "::",
        "de-DE",
        "user@localhost",
        "about ~5 MB",
        "ABCDE-12345",
    ] {
        assert_eq!(kind(value), None, "{value:?}");
    }
}

#[test]
fn a_version_takes_public_dotted_numbers_but_no_local_address() {
    for version in ["1.0.0.0", "9.8.7.6", "2.0.0.1"] {
        assert_eq!(kind(version), Some(Kind::IpAddress), "{version}");
        assert_eq!(find(version, Kinds::NONE, Reading::Version), None);
    }
    for local in [
        "10.0.0.7",
        "192.168.1.23",
        "172.16.0.1",
        "127.0.0.1",
        "169.254.3.4",
        "100.64.0.9",
    ] {
        assert_eq!(
            find(local, Kinds::NONE, Reading::Version),
            Some(Kind::IpAddress),
            "{local}"
        );
    }
}

#[test]
fn an_allowed_kind_is_not_reported_and_the_next_one_is() {
    let allowed: Kinds = [Kind::LongNumber].into_iter().collect();
    assert_eq!(find("12345-67890-12345", allowed, Reading::Text), None);
    assert_eq!(
        find("alice@example.com 123456789", allowed, Reading::Text),
        Some(Kind::EmailAddress)
    );
    let addresses = Kinds::NONE.with(Kind::IpAddress);
    assert!(addresses.contains(Kind::IpAddress) && !addresses.contains(Kind::MacAddress));
    assert_eq!(addresses.iter().collect::<Vec<_>>(), [Kind::IpAddress]);
}

#[test]
fn a_message_shows_a_value_only_when_it_looks_like_nothing_personal() {
    assert_eq!(shown("install", 80), "install");
    assert_eq!(shown(&"x".repeat(100), 80).len(), 80);
    let hidden = shown("alice@example.com", 80);
    assert_eq!(hidden, "<an e-mail address, not shown>");
    assert!(!hidden.contains("alice"));
}

#[test]
fn a_long_value_is_read_in_linear_time() {
    // Runs that every check starts on, again and again: a quadratic reading
    // of 64 KiB would take minutes.
    let texts = [
        "00:".repeat(22_000),
        " /".repeat(32_000),
        "1 ".repeat(32_000),
        "1.".repeat(32_000),
        "a@".repeat(32_000),
    ];
    let started = std::time::Instant::now();
    for text in &texts {
        let _ = kind(text);
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

proptest::proptest! {
    /// The one-pass filter only skips readings that could not match: with
    /// or without it, every text reads the same.
    #[test]
    fn the_filter_never_hides_what_a_full_reading_finds(
        text in "[a-f0-9@./:~\\\\ \\-()%_A-Z\u{e9}]{0,40}",
        version in proptest::bool::ANY,
    ) {
        let reading = if version { Reading::Version } else { Reading::Text };
        let full = Kind::ALL.into_iter().find(|kind| kind.found_in(&text, reading));
        proptest::prop_assert_eq!(find(&text, Kinds::NONE, reading), full);
    }

    /// Texts made of hex groups of one width joined by one separator,
    /// where MAC addresses (and near misses) are common: the filter hides
    /// none.
    #[test]
    fn the_filter_never_hides_a_mac_address(
        hex in "[0-9a-fA-F]{40}",
        width in proptest::sample::select(vec![2, 2, 2, 4, 4, 3]),
        count in proptest::sample::select(vec![3, 5, 6, 6, 7, 8, 8, 9]),
        broken in proptest::option::of(0..9usize),
        sep in proptest::sample::select(vec![":", "-", ".", " ", ""]),
        around in proptest::sample::select(vec![("", ""), ("id=", ";"), ("x", "")]),
    ) {
        let mut groups: Vec<&str> = (0..count).map(|i| &hex[i * width..(i + 1) * width]).collect();
        if let Some(slot) = broken.and_then(|i| groups.get_mut(i)) {
            *slot = "g";
        }
        let text = format!("{}{}{}", around.0, groups.join(sep), around.1);
        let full = Kind::ALL.into_iter().find(|kind| kind.found_in(&text, Reading::Text));
        proptest::prop_assert_eq!(find(&text, Kinds::NONE, Reading::Text), full);
    }
}

//! Minimising transforms: what the catalogue says must happen to a field
//! that could identify a person before anything of it is stored. The gate
//! applies them (`gate::Gate::admit`); a value a transform cannot make safe
//! is dropped, never stored as it came. [`personal`] says whether a string
//! looks like personal data all the same (an e-mail address, a path into a
//! person's directory, a network or hardware address, a long number); the
//! gate asks it of every string it would store.
//!
//! - `drop`: never stored (declared so the disclosure can say so);
//! - `truncate_ip`: an IPv4 address keeps its /24, an IPv6 address its /48;
//! - `country_only`: a locale or region code keeps only its country
//!   (`de-DE`, `de_DE`, `DE-BY` → `DE`);
//! - `scrub_path`: a file's path keeps only the directory it lies in (the
//!   file's own name is not kept), with the user's own directory, and so
//!   the user name, replaced by `~` (`/home/alice/Downloads/a.exe` →
//!   `~/Downloads`, `C:\Users\alice\Desktop\a.exe` → `~\Desktop`), and a
//!   network path's server and share by `\\~\~`; every form it reads is listed
//!   in `path`;
//! - `keyed_hash`: HMAC-SHA-256 with a random key made once per
//!   installation and kept in the state directory, never sent: stable for
//!   this installation, useless for linking across installations.
//!
//! [`erasure_key`] is no transform: it is the value the gate puts in a
//! clause's `erasure_key` field, derived from the same key, which a
//! withdrawal's deletion request names (`docs/consent.md`, "Withdrawal and
//! erasure").

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::record::FieldValue;

pub mod ldp;
mod path;
pub mod personal;

pub use path::scrub_path;

/// A minimising transform a catalogue field declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Drop,
    TruncateIp,
    CountryOnly,
    ScrubPath,
    KeyedHash,
}

impl Transform {
    pub fn as_str(self) -> &'static str {
        match self {
            Transform::Drop => "drop",
            Transform::TruncateIp => "truncate_ip",
            Transform::CountryOnly => "country_only",
            Transform::ScrubPath => "scrub_path",
            Transform::KeyedHash => "keyed_hash",
        }
    }
}

/// The per-installation key of `keyed_hash`.
pub type HashKey = [u8; 32];

/// `value` after `transform`, or `None` when nothing of it may be kept.
/// Only strings are transformed; a transform on another type drops it.
pub fn apply(
    transform: Transform,
    value: &FieldValue,
    key: Option<&HashKey>,
) -> Option<FieldValue> {
    let FieldValue::String(text) = value else {
        return None;
    };
    let kept = match transform {
        Transform::Drop => None,
        Transform::TruncateIp => truncate_ip(text),
        Transform::CountryOnly => country_only(text),
        Transform::ScrubPath => scrub_path(text),
        Transform::KeyedHash => key.map(|key| keyed_hash(key, text)),
    };
    kept.map(|text| FieldValue::String(text.into()))
}

fn truncate_ip(text: &str) -> Option<String> {
    match text.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            Some(format!("{a}.{b}.{c}.0"))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Some(std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string())
        }
    }
}

fn country_only(text: &str) -> Option<String> {
    let parts: Vec<&str> = text.trim().split(['-', '_', '.', '@']).collect();
    // `de-DE` / `de_DE`: the territory follows the language; `DE-BY`: first.
    let candidate = match parts.as_slice() {
        [lang, territory, ..]
            if lang.len() == 2 && lang.bytes().all(|b| b.is_ascii_lowercase()) =>
        {
            territory
        }
        [first, ..] => first,
        [] => return None,
    };
    (candidate.len() == 2 && candidate.bytes().all(|b| b.is_ascii_alphabetic()))
        .then(|| candidate.to_ascii_uppercase())
}

/// The erasure key of `clause` at `generation`: the value every record
/// sent under one acceptance of the clause carries and its withdrawal's
/// deletion request names. A new generation (each withdrawal) gives a key
/// nobody can link to the last without the installation's secret.
///
/// HMAC-SHA-256 under the installation's key, of a message that starts
/// with the byte 0xFF: no UTF-8 string does, so no `keyed_hash` of any
/// value a component sends can equal it. The first 16 bytes make a
/// version-8 (custom) UUID.
pub fn erasure_key(key: &HashKey, clause: &str, generation: u64) -> uuid::Uuid {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&[0xFF]);
    mac.update(b"consentry erasure key\0");
    mac.update(clause.as_bytes());
    mac.update(&[0]);
    mac.update(&generation.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn keyed_hash(key: &HashKey, text: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(text: &str) -> FieldValue {
        FieldValue::String(text.into())
    }

    fn run(transform: Transform, text: &str) -> Option<String> {
        match apply(transform, &string(text), Some(&[7; 32]))? {
            FieldValue::String(s) => Some(s.into_string()),
            _ => None,
        }
    }

    #[test]
    fn addresses_keep_only_their_network() {
        assert_eq!(
            run(Transform::TruncateIp, "203.0.113.77").as_deref(),
            Some("203.0.113.0")
        );
        assert_eq!(
            run(
                Transform::TruncateIp,
                "2001:db8:85a3:8d3:1319:8a2e:370:7348"
            )
            .as_deref(),
            Some("2001:db8:85a3::")
        );
        assert_eq!(run(Transform::TruncateIp, "not an address"), None);
    }

    #[test]
    fn paths_keep_their_directory_without_the_home_or_the_name() {
        assert_eq!(
            run(Transform::ScrubPath, "/home/alice/Downloads/eicar.com").as_deref(),
            Some("~/Downloads")
        );
        assert_eq!(
            run(Transform::ScrubPath, "C:\\Users\\Carol\\Desktop\\a.exe").as_deref(),
            Some("~\\Desktop")
        );
        assert_eq!(
            run(Transform::ScrubPath, "/usr/bin/ls").as_deref(),
            Some("/usr/bin")
        );
        assert_eq!(run(Transform::ScrubPath, "eicar.com"), None, "a name alone");
    }

    #[test]
    fn locations_keep_only_the_country() {
        assert_eq!(run(Transform::CountryOnly, "de-DE").as_deref(), Some("DE"));
        assert_eq!(
            run(Transform::CountryOnly, "pt_BR.UTF-8").as_deref(),
            Some("BR")
        );
        assert_eq!(run(Transform::CountryOnly, "DE-BY").as_deref(), Some("DE"));
        assert_eq!(run(Transform::CountryOnly, "Berlin, 10115"), None);
    }

    #[test]
    fn erasure_keys_are_stable_per_clause_and_generation_and_new_after_each() {
        let key = [7; 32];
        let first = erasure_key(&key, "marketing", 0);
        assert_eq!(first, erasure_key(&key, "marketing", 0));
        assert_eq!(first.get_version_num(), 8);
        assert_ne!(first, erasure_key(&key, "marketing", 1), "a new generation");
        assert_ne!(first, erasure_key(&key, "ksn", 0), "another clause");
        assert_ne!(
            first,
            erasure_key(&[8; 32], "marketing", 0),
            "another installation"
        );
        // No keyed hash of what a component sends is an erasure key.
        let hashed = run(
            Transform::KeyedHash,
            "\u{ff}consentry erasure key\0marketing\0",
        )
        .unwrap();
        assert!(!hashed.starts_with(&first.simple().to_string()[..12]));
    }

    #[test]
    fn keyed_hashes_are_stable_per_key_and_never_the_value() {
        let a = run(Transform::KeyedHash, "user-42").unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(Some(a.clone()), run(Transform::KeyedHash, "user-42"));
        let other = apply(Transform::KeyedHash, &string("user-42"), Some(&[8; 32]));
        assert_ne!(other, Some(string(&a)));
        assert_eq!(
            apply(Transform::KeyedHash, &string("user-42"), None),
            None,
            "no key, no value"
        );
        assert_eq!(run(Transform::Drop, "anything"), None);
        assert_eq!(
            apply(Transform::ScrubPath, &FieldValue::Integer(1), None),
            None
        );
    }
}

//! Whether a string value looks like personal data, and which kind.
//!
//! The gate asks this of every string value it is about to store (after
//! the field's transform), and refuses the record when a kind is found that
//! the field's declaration does not allow (`catalogue::Shape`). The checks
//! are lexical, written by hand, and err on the side of finding: a false
//! alarm costs one record, which its sender hears about (`personal_data`);
//! a miss sends someone's address. The kinds, in the order they are looked
//! for:
//!
//! - `email_address`: `local@domain.tld`, the domain with at least two
//!   labels and an alphabetic top-level label of two letters or more;
//! - `home_path`: a path into a person's own directory, in any form
//!   `scrub_path` reads (`path`), where a path can start: at the start, or
//!   after a space, a quote, a bracket, `=`, `,`, `;` or `:` (not after
//!   `http:`: a URL's `//host` is no server; `file:///home/…` is read);
//! - `ip_address`: an IPv4 address (four numbers of 0 to 255, not part of a
//!   longer word or number) or an IPv6 address (with a digit or at least
//!   three colons, so `Db::add` is none), private or not; the unspecified
//!   `0.0.0.0` and `::` and the broadcast `255.255.255.255` name no machine.
//!   In a version ([`Reading::Version`]) four such numbers are a version
//!   (`1.0.0.0`, `9.8.7.6`), unless they fall in a range that names a
//!   machine on a local network: private, loopback, link-local or shared;
//! - `mac_address`: six or eight pairs of hex digits joined by `:` or `-`
//!   (`00:1a:2b:3c:4d:5e`), or three groups of four joined by `.`;
//! - `long_number`: nine digits or more in one number, its groups joined by
//!   a space, `-` or brackets (`+49 170 1234567`, `4111-1111-1111-1111`,
//!   `(555) 123-4567`, a national id, an account number): phone, card and
//!   identity numbers. Dots join nothing (`10.0.19045.3803` is a version),
//!   and a number that runs into letters (`a1234567890b`, part of a hash)
//!   is none.
//!
//! A UUID is not a kind: installation ids are UUIDs, and the catalogue
//! declares them as such (type `uuid`). What a field may hold beyond this
//! is its declaration's business (`allows`).
//!
//! This module never stores or logs a value, and says only which kind it
//! found.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::path;

/// A kind of personal data a value can look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    EmailAddress,
    HomePath,
    IpAddress,
    MacAddress,
    LongNumber,
}

impl Kind {
    /// Every kind, in the order they are looked for.
    pub const ALL: [Kind; 5] = [
        Kind::EmailAddress,
        Kind::HomePath,
        Kind::IpAddress,
        Kind::MacAddress,
        Kind::LongNumber,
    ];

    /// The name a catalogue's `allows` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EmailAddress => "email_address",
            Kind::HomePath => "home_path",
            Kind::IpAddress => "ip_address",
            Kind::MacAddress => "mac_address",
            Kind::LongNumber => "long_number",
        }
    }

    /// What was found, for a message that never shows the value.
    pub fn in_words(self) -> &'static str {
        match self {
            Kind::EmailAddress => "an e-mail address",
            Kind::HomePath => "a path into a person's own directory",
            Kind::IpAddress => "an IP address",
            Kind::MacAddress => "a MAC address",
            Kind::LongNumber => "a number of nine digits or more",
        }
    }

    fn found_in(self, text: &str, reading: Reading) -> bool {
        match self {
            Kind::EmailAddress => email_address(text),
            Kind::HomePath => home_path(text),
            Kind::IpAddress => ipv4_address(text, reading) || ipv6_address(text),
            Kind::MacAddress => mac_address(text),
            Kind::LongNumber => long_number(text),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of kinds: what a field's declaration allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kinds(u8);

impl Kinds {
    pub const NONE: Kinds = Kinds(0);

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind as u8) != 0
    }

    pub fn with(self, kind: Kind) -> Kinds {
        Kinds(self.0 | (1 << kind as u8))
    }

    pub fn iter(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }
}

impl FromIterator<Kind> for Kinds {
    fn from_iter<I: IntoIterator<Item = Kind>>(kinds: I) -> Self {
        kinds.into_iter().fold(Kinds::NONE, Kinds::with)
    }
}

/// How four dotted numbers read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// As an IPv4 address, wherever they stand.
    Text,
    /// As a version, unless they name a machine on a local network.
    Version,
}

/// The first kind of personal data `text` looks like that `allowed` does
/// not allow, or `None`.
pub fn find(text: &str, allowed: Kinds, reading: Reading) -> Option<Kind> {
    let possible = possible(text.as_bytes());
    Kind::ALL
        .into_iter()
        .filter(|kind| possible.contains(*kind) && !allowed.contains(*kind))
        .find(|kind| kind.found_in(text, reading))
}

/// The kinds `text` could hold at all, from one pass over its bytes: each
/// needs a byte the others may do without (`@` an e-mail address, a slash
/// or `~` a path, a dot or two colons an IP address, nine digits a long
/// number), and a MAC address twelve hex digits and five `:` or five `-`
/// or two `.` between them. Most values (versions, names, codes) rule out
/// all but one or two, whose full reading is skipped.
fn possible(bytes: &[u8]) -> Kinds {
    let (mut at, mut path) = (false, false);
    let (mut dots, mut dashes, mut colons, mut digits, mut hex) = (0usize, 0usize, 0usize, 0, 0);
    for &byte in bytes {
        match byte {
            b'@' => at = true,
            b'/' | b'\\' | b'~' => path = true,
            b'.' => dots += 1,
            b'-' => dashes += 1,
            b':' => colons += 1,
            b'0'..=b'9' => digits += 1,
            b'a'..=b'f' | b'A'..=b'F' => hex += 1,
            _ => {}
        }
    }
    let mut kinds = Kinds::NONE;
    for (kind, may) in [
        (Kind::EmailAddress, at),
        (Kind::HomePath, path),
        (Kind::IpAddress, (dots > 0 && digits > 0) || colons >= 2),
        (
            Kind::MacAddress,
            digits + hex >= 12 && (colons >= 5 || dashes >= 5 || dots >= 2),
        ),
        (Kind::LongNumber, digits >= LONG_NUMBER_DIGITS),
    ] {
        if may {
            kinds = kinds.with(kind);
        }
    }
    kinds
}

/// `value` for a message: itself (cut to `max` characters) when it looks
/// like no personal data, else only what it looks like.
pub fn shown(value: &str, max: usize) -> String {
    match find(value, Kinds::NONE, Reading::Text) {
        Some(kind) => format!("<{}, not shown>", kind.in_words()),
        None => value.chars().take(max).collect(),
    }
}

fn word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte >= 0x80
}

fn email_address(text: &str) -> bool {
    let local_char = |c: char| c.is_alphanumeric() || "._%+-!#$&'*/=?^`{|}~".contains(c);
    let domain_char = |c: char| c.is_alphanumeric() || c == '-' || c == '.';
    text.match_indices('@').any(|(at, _)| {
        let local = text[..at].chars().rev().take_while(|c| local_char(*c));
        let mut local_has_word = false;
        for c in local {
            local_has_word |= c.is_alphanumeric();
        }
        let domain_end = text[at + 1..]
            .find(|c: char| !domain_char(c))
            .map_or(text.len(), |end| at + 1 + end);
        let domain = text[at + 1..domain_end].trim_end_matches(['.', '-']);
        let labels: Vec<&str> = domain.split('.').collect();
        let top = labels.last().copied().unwrap_or_default();
        local_has_word
            && labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && !l.starts_with('-'))
            && top.chars().count() >= 2
            && top.chars().all(char::is_alphabetic)
    })
}

/// Whether a path may start at `at`, given the character before it.
fn path_may_start(text: &str, at: usize, before: Option<char>) -> bool {
    match before {
        None => true,
        // `http://host/…`: the host is no server of a network path.
        Some(':') => !text[at..].starts_with("//"),
        Some(c) => {
            !c.is_alphanumeric() && !matches!(c, '/' | '\\' | '.' | '-' | '_' | '~' | '$' | '%')
        }
    }
}

fn home_path(text: &str) -> bool {
    if !text.contains(['/', '\\', '~']) {
        return false;
    }
    let mut before = None;
    for (at, c) in text.char_indices() {
        let rooted = matches!(c, '/' | '\\' | '~')
            || (c.is_ascii_alphabetic() && text[at + 1..].starts_with(':'));
        if rooted && path_may_start(text, at, before) && path::user_path_at(text, at) {
            return true;
        }
        // `file:///home/alice`: the path starts at the third slash.
        let url = before == Some(':')
            && text[at..].starts_with("///")
            && text[..at - 1]
                .get(at.saturating_sub(5)..)
                .is_some_and(|s| s.eq_ignore_ascii_case("file"));
        if url && path::user_path_at(text, at + 2) {
            return true;
        }
        before = Some(c);
    }
    false
}

fn ipv4_address(text: &str, reading: Reading) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let alone = (start == 0 || !word_byte(bytes[start - 1]))
            && (i == bytes.len() || !word_byte(bytes[i]));
        let token = text[start..i].trim_end_matches('.');
        if alone && let Ok(address) = token.parse::<Ipv4Addr>() {
            let names_a_machine = !address.is_unspecified() && !address.is_broadcast();
            let local = address.is_private()
                || address.is_loopback()
                || address.is_link_local()
                || (address.octets()[0] == 100 && address.octets()[1] & 0xc0 == 64);
            if names_a_machine && (reading == Reading::Text || local) {
                return true;
            }
        }
    }
    false
}

fn ipv6_address(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '%')))
        .filter(|token| token.matches(':').count() >= 2)
        .any(|token| {
            let address = token.split('%').next().unwrap_or_default();
            let address = address.trim_matches('.');
            let digits = address.bytes().any(|b| b.is_ascii_digit());
            address
                .parse::<Ipv6Addr>()
                .is_ok_and(|a| !a.is_unspecified())
                && (digits || address.matches(':').count() >= 3)
        })
}

fn mac_address(text: &str) -> bool {
    let b = text.as_bytes();
    let hex = |i: usize| b.get(i).is_some_and(u8::is_ascii_hexdigit);
    // Where a MAC address starting at `start` ends, if one does.
    let ends = |start: usize| -> Option<usize> {
        if let Some(&sep) = b.get(start + 2).filter(|s| matches!(s, b':' | b'-'))
            && hex(start)
            && hex(start + 1)
        {
            let mut groups = 1;
            let mut i = start + 2;
            // At most nine groups are read: a long run is no address.
            while groups < 9 && b.get(i) == Some(&sep) && hex(i + 1) && hex(i + 2) {
                groups += 1;
                i += 3;
            }
            return matches!(groups, 6 | 8).then_some(i);
        }
        let quad = |at: usize| (at..at + 4).all(hex);
        let dotted = quad(start)
            && b.get(start + 4) == Some(&b'.')
            && quad(start + 5)
            && b.get(start + 9) == Some(&b'.')
            && quad(start + 10);
        dotted.then_some(start + 14)
    };
    (0..b.len()).any(|start| {
        hex(start)
            && (start == 0 || !word_byte(b[start - 1]))
            && ends(start).is_some_and(|end| end == b.len() || !word_byte(b[end]))
    })
}

/// Nine digits: more than any count or code a field of the catalogue
/// carries in text, fewer than a phone number with its area code (ten),
/// a card (thirteen and more) or a US social security number (nine).
const LONG_NUMBER_DIGITS: usize = 9;

fn long_number(text: &str) -> bool {
    let b = text.as_bytes();
    if b.iter().filter(|c| c.is_ascii_digit()).count() < LONG_NUMBER_DIGITS {
        return false;
    }
    let joiner = |c: u8| matches!(c, b' ' | b'-' | b'(' | b')');
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && word_byte(b[i - 1])) {
            i += 1;
            continue;
        }
        let (mut digits, mut j) = (0, i);
        let end = loop {
            while j < b.len() && b[j].is_ascii_digit() {
                digits += 1;
                j += 1;
            }
            // Groups join through one or two of space, `-` and brackets.
            let k = (j..b.len().min(j + 2))
                .take_while(|&k| joiner(b[k]))
                .last()
                .map_or(j, |k| k + 1);
            if k > j && b.get(k).is_some_and(u8::is_ascii_digit) {
                j = k;
            } else {
                break j;
            }
        };
        if digits >= LONG_NUMBER_DIGITS && (end == b.len() || !word_byte(b[end])) {
            return true;
        }
        i = end.max(i + 1);
    }
    false
}

#[cfg(test)]
mod tests;

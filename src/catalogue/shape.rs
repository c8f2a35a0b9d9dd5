//! What a string field may hold: its declaration in the catalogue, checked
//! by the loader, and what the gate asks of every value it would store.
//!
//! A string field declares one of:
//!
//! - `values = ["install", "uninstall"]`: the only values it takes;
//! - `format = "…"`: the lexical form of its values ([`Format`]); `text`,
//!   `identifier`, `version` and `hex` also need `max_len`;
//! - `transform = "…"`: a minimising transform (`privacy`), which decides
//!   what is kept.
//!
//! and may add `max_len = N` (bytes of the value as stored) and
//! `allows = ["ip_address"]`: the kinds of personal data
//! (`privacy::personal::Kind`) its declared purpose is to carry. A loader
//! refuses a string field that declares nothing, so the rule holds for any
//! catalogue, not only the shipped one.
//!
//! Every value a field would store is looked at by the personal-data
//! detector, whatever its form, except what a transform has already made
//! safe by construction (`truncate_ip` keeps a network, `keyed_hash` a
//! digest, `country_only` two letters, `drop` nothing); a `scrub_path`
//! folder is looked at like any text. A kind found and not allowed refuses
//! the whole record (`personal_data`); so does a value outside its
//! declaration (`out_of_shape`). A listed value is sent as listed: the
//! loader refuses a list holding one that looks personal.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::record::Text;
use toml::Spanned;

use super::{Field, FieldType, Transform};
use crate::privacy::personal::{self, Kind, Kinds, Reading};

/// The longest language tag, in bytes: RFC 5646 (section 4.4.1) bounds a
/// BCP 47 tag in practice at 35 characters (`[product] locale` too).
pub const LOCALE_MAX_BYTES: usize = 35;

/// The lexical form a string field's values take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Any characters but control characters: a name, an edition.
    Text,
    /// ASCII letters, digits and `.` `_` `-` `:`: an id, a code, an
    /// error type, a threat's name (`HEUR:Trojan.Win32.Generic`).
    Identifier,
    /// Starts with an ASCII letter or digit; then also `.` `-` `+` `_` `~`
    /// `(` `)` `/` and spaces (`10.0.19045`, `6.1.0-18-amd64`,
    /// `11 (26100)`, `trixie/sid`). Four dotted numbers read as a version
    /// (`personal::Reading::Version`).
    Version,
    /// A language tag (`en`, `de-DE`, `zh-Hant-TW`, `pt_BR`): subtags of
    /// 1 to 8 letters and digits, the first letters only, joined by `-` or
    /// `_`; at most 35 bytes.
    Locale,
    /// An ISO 3166-1 alpha-2 country code: two capital letters.
    Country,
    /// Hexadecimal digits only, either case.
    Hex,
    /// A SHA-256 in hex: 64 hexadecimal digits.
    Sha256,
}

impl Format {
    pub const NAMES: &'static str = "text, identifier, version, locale, country, hex, sha256";

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Identifier => "identifier",
            Format::Version => "version",
            Format::Locale => "locale",
            Format::Country => "country",
            Format::Hex => "hex",
            Format::Sha256 => "sha256",
        }
    }

    /// What a value of this format is, for a message.
    pub fn in_words(self) -> &'static str {
        match self {
            Format::Text => "text without control characters",
            Format::Identifier => "an identifier (ASCII letters, digits, `.`, `_`, `-`, `:`)",
            Format::Version => "a version",
            Format::Locale => "a language tag such as en-US",
            Format::Country => "a two-letter country code",
            Format::Hex => "hexadecimal digits",
            Format::Sha256 => "a SHA-256 (64 hexadecimal digits)",
        }
    }

    /// Whether a field of this format must say how long a value may be:
    /// every format whose values have no length of their own.
    pub fn needs_max_len(self) -> bool {
        matches!(
            self,
            Format::Text | Format::Identifier | Format::Version | Format::Hex
        )
    }

    pub fn admits(self, value: &str) -> bool {
        let all = |allowed: fn(u8) -> bool| !value.is_empty() && value.bytes().all(allowed);
        match self {
            Format::Text => !value.chars().any(char::is_control),
            Format::Identifier => {
                all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
            }
            Format::Version => {
                value
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                    && all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(
                                b,
                                b'.' | b'-' | b'+' | b'_' | b'~' | b'(' | b')' | b'/' | b' '
                            )
                    })
            }
            Format::Locale => locale(value),
            Format::Country => value.len() == 2 && all(|b| b.is_ascii_uppercase()),
            Format::Hex => all(|b| b.is_ascii_hexdigit()),
            Format::Sha256 => value.len() == 64 && all(|b| b.is_ascii_hexdigit()),
        }
    }

    fn reading(self) -> Reading {
        match self {
            Format::Version => Reading::Version,
            _ => Reading::Text,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn locale(value: &str) -> bool {
    let mut subtags = value.split(['-', '_']);
    let first = subtags.next().unwrap_or_default();
    let subtag = |s: &str, letters_only: bool| {
        (1..=8).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphabetic() || (!letters_only && b.is_ascii_digit()))
    };
    value.len() <= LOCALE_MAX_BYTES && subtag(first, true) && subtags.all(|s| subtag(s, false))
}

/// A string field's declaration: what its values may be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    pub format: Option<Format>,
    /// The only values it takes; empty: any its format admits.
    pub values: Vec<String>,
    /// The longest value, in bytes, as stored.
    pub max_len: Option<usize>,
    /// Kinds of personal data it is declared to carry.
    pub allows: Kinds,
}

/// How a value falls outside its field's declaration (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    TooLong {
        max: usize,
    },
    NotListed,
    /// Outside the domain its local differential privacy declares, which
    /// names no `other` to report it as.
    OutsideDomain,
    NotOfFormat(Format),
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::TooLong { max } => write!(f, "longer than its max_len of {max} bytes"),
            Unfit::NotListed => f.write_str("not one of the values the catalogue lists for it"),
            Unfit::OutsideDomain => {
                f.write_str("not one of the values its local differential privacy domain lists")
            }
            Unfit::NotOfFormat(format) => write!(f, "not {}", format.in_words()),
        }
    }
}

/// Why a value may not be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// It looks like personal data the declaration does not allow.
    Personal(Kind),
    Unfit(Unfit),
}

impl Field {
    /// Whether `stored`, this field's value as it would be stored (after
    /// its transform), fits its declaration.
    pub fn admits(&self, stored: &str) -> Result<(), Misfit> {
        let shape = &self.shape;
        if let Some(max) = shape.max_len
            && stored.len() > max
        {
            return Err(Misfit::Unfit(Unfit::TooLong { max }));
        }
        if shape.values.iter().any(|v| v == stored) {
            return Ok(());
        }
        if matches!(self.transform, None | Some(Transform::ScrubPath)) {
            let reading = shape.format.map_or(Reading::Text, Format::reading);
            if let Some(kind) = personal::find(stored, shape.allows, reading) {
                return Err(Misfit::Personal(kind));
            }
        }
        if !shape.values.is_empty() {
            return Err(Misfit::Unfit(Unfit::NotListed));
        }
        match shape.format {
            Some(format) if !format.admits(stored) => {
                Err(Misfit::Unfit(Unfit::NotOfFormat(format)))
            }
            _ => Ok(()),
        }
    }
}

/// The shared value a field last admitted: a fact every record of a run
/// carries, one `record::Text::Shared` (the product's and the OS's), is
/// read for personal data and its shape once, not once per record. What
/// [`Field::admits`] answers depends on the field and the text alone, and
/// this is kept with its field, so it never answers for another
/// declaration; it holds the value it admitted, so that value's address
/// cannot be taken by another text while it is kept. A value it refused
/// is never kept: it is judged again, and refused again, each time.
#[derive(Default)]
pub struct Admitted(arc_swap::ArcSwapOption<Arc<str>>);

impl Admitted {
    /// Whether `text` is the very shared value admitted last.
    pub fn holds(&self, text: &Text) -> bool {
        let Text::Shared(shared) = text else {
            return false;
        };
        self.0
            .load()
            .as_deref()
            .is_some_and(|kept| Arc::ptr_eq(kept, shared))
    }

    /// Keeps `text`, just admitted, when it is shared.
    pub fn remember(&self, text: &Text) {
        if let Text::Shared(shared) = text
            && !self.holds(text)
        {
            self.0.store(Some(Arc::new(Arc::clone(shared))));
        }
    }
}

/// A copy of a field starts with nothing admitted.
impl Clone for Admitted {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Not part of what a field declares: any two are alike.
impl PartialEq for Admitted {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Admitted {}

impl fmt::Debug for Admitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Admitted")
    }
}

/// A field's declaration as the catalogue file writes it, each key with
/// its place, for the loader to check.
pub(super) struct Declared<'r> {
    /// `purpose.field`, for messages.
    pub name: String,
    pub name_span: Range<usize>,
    pub ty: FieldType,
    pub transform: Option<&'r Spanned<Transform>>,
    pub format: Option<&'r Spanned<Format>>,
    pub values: Option<&'r Spanned<Vec<Spanned<String>>>>,
    pub max_len: Option<&'r Spanned<usize>>,
    pub allows: Option<&'r Spanned<Vec<Kind>>>,
}

impl Declared<'_> {
    /// The shape declared, every problem with it reported through `at`.
    pub(super) fn shape(&self, at: &mut dyn FnMut(Range<usize>, String)) -> Shape {
        let name = &self.name;
        let keys = [
            ("format", self.format.map(Spanned::span)),
            ("values", self.values.map(Spanned::span)),
            ("max_len", self.max_len.map(Spanned::span)),
            ("allows", self.allows.map(Spanned::span)),
        ];
        if self.ty != FieldType::String {
            for (key, span) in keys {
                if let Some(span) = span {
                    at(
                        span,
                        format!(
                            "field `{name}` is a {}; `{key}` applies to strings only",
                            self.ty
                        ),
                    );
                }
            }
            return Shape::default();
        }
        self.check_keys(at);
        Shape {
            format: self.format.map(|f| *f.get_ref()),
            values: self.values(at),
            max_len: self.max_len.map(|m| *m.get_ref()),
            allows: self
                .allows
                .map_or(Kinds::NONE, |a| a.get_ref().iter().copied().collect()),
        }
    }

    /// The keys that go together, and those that do not.
    fn check_keys(&self, at: &mut dyn FnMut(Range<usize>, String)) {
        let name = &self.name;
        match (self.transform, self.format, self.values) {
            (None, None, None) => at(
                self.name_span.clone(),
                format!(
                    "field `{name}` is a string and declares nothing of what it may hold: give it a `format` ({}), `values`, or a `transform` (see docs/catalogue.md, \"Field declarations\")",
                    Format::NAMES
                ),
            ),
            (_, Some(_), Some(values)) => at(
                values.span(),
                format!("field `{name}` has both `format` and `values`: give one"),
            ),
            (Some(transform), format, values) => {
                for span in [format.map(Spanned::span), values.map(Spanned::span)]
                    .into_iter()
                    .flatten()
                {
                    at(
                        span,
                        format!(
                            "field `{name}` has the transform `{}`, which decides what it holds: remove `format` and `values`",
                            transform.get_ref().as_str()
                        ),
                    );
                }
            }
            (None, Some(format), None)
                if format.get_ref().needs_max_len() && self.max_len.is_none() =>
            {
                at(
                    format.span(),
                    format!(
                        "field `{name}` has the format `{}`, which needs a `max_len` (the longest value, in bytes)",
                        format.get_ref()
                    ),
                )
            }
            _ => {}
        }
        if let Some(max_len) = self.max_len
            && *max_len.get_ref() == 0
        {
            at(
                max_len.span(),
                format!("field `{name}`: max_len must be 1 or more"),
            );
        }
        self.check_allows(at);
    }

    /// `allows` only where a kind could be found at all.
    fn check_allows(&self, at: &mut dyn FnMut(Range<usize>, String)) {
        let name = &self.name;
        let Some(allows) = self.allows else { return };
        let transform = self.transform.map(|t| *t.get_ref());
        if self.values.is_some() {
            at(
                allows.span(),
                format!(
                    "field `{name}` takes only its listed values: `allows` has nothing to allow"
                ),
            );
        } else if !matches!(transform, None | Some(Transform::ScrubPath)) {
            at(
                allows.span(),
                format!(
                    "field `{name}`: the transform `{}` leaves nothing of the value to look at, so `allows` has nothing to allow",
                    transform.map_or("", Transform::as_str)
                ),
            );
        }
    }

    /// The listed values, each refused at its place if empty or personal.
    fn values(&self, at: &mut dyn FnMut(Range<usize>, String)) -> Vec<String> {
        let name = &self.name;
        let Some(values) = self.values else {
            return Vec::new();
        };
        if values.get_ref().is_empty() {
            at(
                values.span(),
                format!("field `{name}` lists no value, so none could ever be sent"),
            );
        }
        for value in values.get_ref() {
            let text = value.get_ref();
            if text.is_empty() {
                at(value.span(), format!("field `{name}` lists an empty value"));
            } else if let Some(kind) = personal::find(text, Kinds::NONE, Reading::Text) {
                at(
                    value.span(),
                    format!(
                        "field `{name}` lists `{text}`, which looks like {}: a listed value is sent as it is, so it may not be personal data",
                        kind.in_words()
                    ),
                );
            }
        }
        values
            .get_ref()
            .iter()
            .map(|v| v.get_ref().clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;

//! A line's optional text values, borrowed from the line. serde borrows a
//! `Cow<str>` field marked `borrow`, but not an `Option<Cow<str>>` one: that
//! one it copies into a new `String`, every time. Read through
//! [`optional`], a string with no escapes is borrowed, one with escapes is
//! unescaped into its own `String`, and anything else is refused with
//! serde's own words ("invalid type: …, expected a string").

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// `#[serde(default, borrow, deserialize_with = "text::optional")]`.
pub(super) fn optional<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    deserializer.deserialize_option(Optional)
}

struct Optional;

impl<'de> Visitor<'de> for Optional {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("option")
    }

    fn visit_none<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(Text).map(Some)
    }
}

struct Text;

impl<'de> Visitor<'de> for Text {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E: Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E: Error>(self, text: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line<'a> {
        #[serde(default, borrow, deserialize_with = "optional")]
        text: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        copy: Option<Cow<'a, str>>,
    }

    #[test]
    fn text_without_escapes_is_borrowed_and_read_as_serde_reads_it() {
        let line: Line = serde_json::from_str(r#"{"text":"io","copy":"io"}"#).unwrap();
        assert!(matches!(line.text, Some(Cow::Borrowed("io"))));
        // What this module is for: serde's own copies.
        assert!(matches!(line.copy, Some(Cow::Owned(_))));
        let line: Line = serde_json::from_str(r#"{"text":"a\"b\u00e9","copy":null}"#).unwrap();
        assert_eq!(line.text.as_deref(), Some("a\"bé"));
        assert!(line.copy.is_none());
        let line: Line = serde_json::from_str(r#"{"text":null}"#).unwrap();
        assert!(line.text.is_none());
        let line: Line = serde_json::from_str("{}").unwrap();
        assert!(line.text.is_none());
    }

    #[test]
    fn anything_but_a_string_is_refused_as_serde_refuses_it() {
        for value in ["5", "true", "[]", "{}", "1.5"] {
            let ours = serde_json::from_str::<Line>(&format!(r#"{{"text":{value}}}"#))
                .unwrap_err()
                .to_string();
            let copy = serde_json::from_str::<Line>(&format!(r#"{{"copy":{value}}}"#))
                .unwrap_err()
                .to_string();
            assert_eq!(ours, copy);
            assert!(ours.contains("expected a string"), "{ours}");
        }
    }
}

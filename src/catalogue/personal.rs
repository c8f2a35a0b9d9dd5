//! What each field is as personal data (`personal = "none" |
//! "pseudonymous" | "identifying"`, required on every field).
//!
//! The mark is the catalogue author's decision about the worst a field can
//! hold, argued field by field in `docs/consent.md` ("Personal data"). The
//! loader refuses a field without one, so no default can hide a decision.
//! This module never changes what is sent: the gate holds values to their
//! declarations (`shape`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a field's value is, as personal data: the worst it can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Personal {
    /// Says nothing of who or which computer: the same value on many
    /// machines (a product, a version, a count, a country).
    None,
    /// Stands for one installation, machine, licence or person without
    /// naming it: it links records together, and to a person only with
    /// data held elsewhere (a random id, a keyed hash).
    Pseudonymous,
    /// Tells who someone is, or what they did, by itself or through data
    /// the receiver holds or anyone can look up (a licence the vendor sold
    /// to a buyer, a visited site's certificate in public logs).
    Identifying,
}

impl Personal {
    pub const NAMES: &'static str = "\"none\", \"pseudonymous\" or \"identifying\"";

    pub fn as_str(self) -> &'static str {
        match self {
            Personal::None => "none",
            Personal::Pseudonymous => "pseudonymous",
            Personal::Identifying => "identifying",
        }
    }

    /// What the mark means, for a person reading a disclosure.
    pub fn in_words(self) -> &'static str {
        match self {
            Personal::None => "says nothing of who you are or which computer sent it",
            Personal::Pseudonymous => {
                "stands for this installation, a licence or you without naming anyone: it links records together, and to you only with data held elsewhere"
            }
            Personal::Identifying => {
                "can tell who you are or what you did, through data the vendor holds or anyone can look up"
            }
        }
    }
}

impl fmt::Display for Personal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

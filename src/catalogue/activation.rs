//! How the product was activated, and the purposes that wait for it.
//!
//! Seed 004 puts a list of data under "If an activation code is being
//! applied", and ends it with: "By using an activation code, you agree to
//! automatically send to Kaspersky the data listed above. If you do not
//! agree to send this information, you must use a key file". Seed 002 says
//! the same of its activation data ("When activating … by the activation
//! code"). So activating by code is what agrees to that data, and a key
//! file is the way to activate without agreeing. A purpose of that list
//! declares `after_activation = "code"` in the catalogue; the consent
//! registry blocks it until the product is activated by code
//! (`consent::Registry::with_activation`).
//!
//! This module only names the methods; it never decides anything.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the product was activated: the `method` of an `activation` event,
/// the value of `after_activation` in the catalogue, and what the store
/// keeps as the last activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationMethod {
    /// With an activation code: agrees to send what the seed lists for it.
    Code,
    /// With a key file: the seed's way to activate without sending it.
    KeyFile,
}

impl ActivationMethod {
    /// Every method, for messages that list them.
    pub const NAMES: &'static str = "code, key_file";

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "code" => Some(Self::Code),
            "key_file" => Some(Self::KeyFile),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "code",
            Self::KeyFile => "key_file",
        }
    }

    /// "by code", "with a key file": for sentences about an activation.
    pub fn in_words(self) -> &'static str {
        match self {
            Self::Code => "by code",
            Self::KeyFile => "with a key file",
        }
    }
}

impl fmt::Display for ActivationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_reads_back_as_it_is_written() {
        for method in [ActivationMethod::Code, ActivationMethod::KeyFile] {
            assert_eq!(ActivationMethod::parse(method.as_str()), Some(method));
            assert!(ActivationMethod::NAMES.contains(method.as_str()));
        }
        assert_eq!(ActivationMethod::parse("Code"), None);
    }
}

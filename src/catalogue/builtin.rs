//! The catalogues built into the binary: one per product the seed texts
//! describe, each its own EULA's data provision plus the Security Network
//! statement and the regional edition that apply to it
//! (`config/catalogue/`, `docs/catalogue.md`).
//!
//! A built-in catalogue is assembled from fragment files at compile time:
//! the product's own (its EULA, its Security Network clause and the
//! purposes they name), the Security Network's basic reports, and the
//! regional edition. TOML appends to an array of tables wherever it is
//! written again, so the fragments concatenate into one document.

use serde::{Deserialize, Serialize};

/// One built-in catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltIn {
    /// The home security suite (seed 000), the default.
    #[default]
    Kis,
    /// The endpoint product for business (seed 002).
    Kes,
    /// The product for virtual environments (seed 004).
    Ksv,
}

/// Each product's own file, then the Security Network's basic reports
/// (seed 001) and the regional edition (seed 003), which every product
/// shares.
pub(super) const KIS: &str = concat!(
    include_str!("../../config/catalogue/kis.toml"),
    include_str!("../../config/catalogue/ksn-reports.toml"),
    include_str!("../../config/catalogue/regional.toml"),
);
const KES: &str = concat!(
    include_str!("../../config/catalogue/kes.toml"),
    include_str!("../../config/catalogue/ksn-reports.toml"),
    include_str!("../../config/catalogue/regional.toml"),
);
const KSV: &str = concat!(
    include_str!("../../config/catalogue/ksv.toml"),
    include_str!("../../config/catalogue/ksn-reports.toml"),
    include_str!("../../config/catalogue/regional.toml"),
);

impl BuiltIn {
    pub const ALL: [BuiltIn; 3] = [BuiltIn::Kis, BuiltIn::Kes, BuiltIn::Ksv];

    /// Its name in the config (`catalogue = "kes"`) and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            BuiltIn::Kis => "kis",
            BuiltIn::Kes => "kes",
            BuiltIn::Ksv => "ksv",
        }
    }

    /// The product, for people.
    pub fn product(self) -> &'static str {
        match self {
            BuiltIn::Kis => "home security suite",
            BuiltIn::Kes => "endpoint security for business",
            BuiltIn::Ksv => "security for virtual environments",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|b| b.id() == id)
    }

    /// The catalogue's text: its fragments, one after the other.
    pub fn text(self) -> &'static str {
        match self {
            BuiltIn::Kis => KIS,
            BuiltIn::Kes => KES,
            BuiltIn::Ksv => KSV,
        }
    }

    /// `kis, kes, ksv`, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Self::id).join(", ")
    }
}

impl std::fmt::Display for BuiltIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.id())
    }
}

impl clap::ValueEnum for BuiltIn {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.id()).help(self.product()))
    }
}

//! What each field is as personal data (`personal = "none" |
//! "pseudonymous" | "identifying"`, required on every field), and the
//! clause texts that say otherwise.
//!
//! The mark is the catalogue author's decision about the worst a field can
//! hold, argued field by field in `docs/consent.md` ("Personal data"). The
//! loader refuses a field without one, so no default can hide a decision.
//! The disclosure shows each mark beside its field.
//!
//! A clause text may say that what it covers is no personal data (the seed
//! texts do). Such a text is the vendor's to correct; the agent does not
//! repeat it silently: [`Catalogue::contradicted_claims`] names each clause
//! whose text makes the claim while a field it allows is marked otherwise,
//! and `consentry check` warns with it. This module never changes what is
//! sent: the gate holds values to their declarations (`shape`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Catalogue;

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

/// How a clause text says that what it covers is no personal data: lower
/// case, one space between words, matched against the text lower-cased
/// with its line breaks and runs of white space joined. The one list.
pub const NO_PERSONAL_DATA_CLAIMS: &[&str] = &[
    "no personal data",
    "no personal user data",
    "does not contain any personal",
    "do not contain any personal",
    "contains no personal",
    "contain no personal",
    "not contain personal",
    "is not personal data",
    "free of personal data",
];

/// The first claim phrase `text` makes, if any.
pub fn claim_in(text: &str) -> Option<&'static str> {
    let text = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    NO_PERSONAL_DATA_CLAIMS
        .iter()
        .find(|phrase| text.contains(*phrase))
        .copied()
}

/// A clause whose text says it carries no personal data while fields it
/// allows are marked otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Contradiction {
    pub clause: String,
    /// The claim, as [`NO_PERSONAL_DATA_CLAIMS`] lists it.
    pub phrase: &'static str,
    /// Every field of the clause's purposes not marked `none`.
    pub fields: Vec<MarkedField>,
}

/// One `purpose.field` and its mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MarkedField {
    pub field: String,
    pub personal: Personal,
}

impl Contradiction {
    /// `a.b (pseudonymous), c.d (identifying)`.
    pub fn fields_in_words(&self) -> String {
        self.fields
            .iter()
            .map(|f| format!("{} ({})", f.field, f.personal))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Contradiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clause `{}`: its text says \"{}\", but fields it allows are marked otherwise: {}. The text is the vendor's to correct; the disclosure shows each field's mark (consentry disclosure)",
            self.clause,
            self.phrase,
            self.fields_in_words()
        )
    }
}

impl Catalogue {
    /// Every clause whose text claims it carries no personal data while a
    /// field of a purpose it allows is marked `pseudonymous` or
    /// `identifying`.
    pub fn contradicted_claims(&self) -> Vec<Contradiction> {
        self.clauses()
            .filter_map(|clause| {
                let phrase = claim_in(&clause.text)?;
                let fields: Vec<MarkedField> = self
                    .purposes()
                    .filter(|p| p.clauses.contains(&clause.id))
                    .flat_map(|p| {
                        p.fields.iter().map(move |f| MarkedField {
                            field: format!("{}.{}", p.id, f.name),
                            personal: f.personal,
                        })
                    })
                    .filter(|f| f.personal != Personal::None)
                    .collect();
                (!fields.is_empty()).then(|| Contradiction {
                    clause: clause.id.clone(),
                    phrase,
                    fields,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::BuiltIn;
    use crate::document::{Document, Origin};

    #[test]
    fn a_claim_is_found_across_line_breaks_and_case_and_only_a_claim() {
        assert_eq!(
            claim_in(
                "Any information transferred does not contain any personal or\n  other confidential data."
            ),
            Some("does not contain any personal")
        );
        assert_eq!(
            claim_in("No personal data is collected"),
            Some("no personal data")
        );
        assert_eq!(
            claim_in("No personal\nuser data is collected"),
            Some("no personal user data")
        );
        assert_eq!(
            claim_in("which contains no personal data"),
            Some("no personal data")
        );
        assert_eq!(claim_in("You agree to send your personal data"), None);
        assert_eq!(claim_in("the network of the attacking computer"), None);
    }

    fn catalogue_with(marks: &str) -> Catalogue {
        let text = format!(
            "schema = 1\n[[clause]]\nid = \"c\"\ntitle = \"t\"\nkind = \"voluntary\"\nversion = 1\ntext = \"No personal data\\nis collected.\"\n[[purpose]]\nid = \"p\"\ntitle = \"t\"\nbasis = \"consent\"\nclauses = [\"c\"]\n{marks}"
        );
        let document = Document {
            origin: Origin::Embedded("test"),
            text,
        };
        Catalogue::from_document(&document).unwrap()
    }

    #[test]
    fn a_claim_is_contradicted_only_by_a_field_marked_otherwise() {
        let field = |name: &str, personal: &str| {
            format!(
                "[[purpose.field]]\nname = \"{name}\"\ntype = \"integer\"\npersonal = \"{personal}\"\ndescription = \"d\"\n"
            )
        };
        let honest = catalogue_with(&field("count", "none"));
        assert!(honest.contradicted_claims().is_empty());

        let marked = catalogue_with(&format!(
            "{}{}{}",
            field("count", "none"),
            field("id", "pseudonymous"),
            field("site", "identifying")
        ));
        let found = marked.contradicted_claims();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].clause, "c");
        assert_eq!(found[0].phrase, "no personal data");
        let message = found[0].to_string();
        assert!(
            message.contains("p.id (pseudonymous), p.site (identifying)"),
            "{message}"
        );
        assert!(!message.contains("p.count"), "{message}");
        assert!(message.contains("the vendor's to correct"), "{message}");
    }

    /// The shipped texts that repeat the seeds' sentence, and what they
    /// allow: kept in step with `docs/consent.md`.
    #[test]
    fn the_built_in_claims_that_are_contradicted() {
        let clauses = |builtin| {
            Catalogue::builtin(builtin)
                .contradicted_claims()
                .into_iter()
                .map(|c| c.clause)
                .collect::<Vec<_>>()
        };
        assert_eq!(clauses(BuiltIn::Kis), ["eula", "eula_regional", "ksn"]);
        assert_eq!(clauses(BuiltIn::Kes), ["eula_regional", "ksn"]);
        assert_eq!(clauses(BuiltIn::Ksv), ["eula_regional", "ksn"]);
    }
}

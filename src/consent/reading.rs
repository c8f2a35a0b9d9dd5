//! One read of the consent file, and what it may be used for.
//!
//! A valid file is a person's (or an installer's, or the CLI's) word on
//! what is accepted, and may withdraw consent. Anything else holds: nothing
//! is sent and nothing queued is deleted, until the file is whole again. A
//! missing, empty (nothing but white space) or truncated file is no one's
//! withdrawal: it is what a file being rewritten in place, a failed
//! install or a disk problem looks like. (A file of comments only, which
//! `consentry consent revoke` leaves after the last clause, is valid: it
//! accepts nothing.)

use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::{Consents, Registry};
use crate::catalogue::Catalogue;
use crate::document::{Document, Origin, ReadError};

/// What one read of the consent file found.
#[derive(Debug, Clone)]
pub enum Reading {
    /// A whole, valid file.
    Valid {
        consents: Consents,
        /// SHA-256 of the bytes read: two reads with the same digest read
        /// the same file.
        digest: [u8; 32],
        /// The file's last modification.
        modified: Option<SystemTime>,
    },
    /// Anything else: nothing is allowed and nothing is deleted.
    Held { why: Held },
}

/// Why a read holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    Missing,
    Empty,
    /// Unreadable or invalid: the error, with its place in the file.
    Broken(String),
}

impl std::fmt::Display for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Missing => write!(f, "there is no consent file"),
            Held::Empty => write!(f, "the consent file is empty"),
            Held::Broken(error) => write!(f, "{error}"),
        }
    }
}

impl Reading {
    /// Reads the consent file at `path`, checked against `catalogue`.
    pub fn of(path: &Path, catalogue: &Catalogue) -> Self {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Self::held(Held::Missing);
            }
            Err(source) => {
                let error = ReadError::Io {
                    path: path.to_path_buf(),
                    source,
                };
                return Self::held(Held::Broken(error.to_string()));
            }
        };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(_) => {
                let why = format!("{}: not UTF-8 text", path.display());
                return Self::held(Held::Broken(why));
            }
        };
        if text.trim().is_empty() {
            return Self::held(Held::Empty);
        }
        let digest = Sha256::digest(text.as_bytes()).into();
        let document = Document {
            origin: Origin::File(path.to_path_buf()),
            text,
        };
        match Consents::from_document(&document, catalogue) {
            Ok(consents) => Reading::Valid {
                consents,
                digest,
                modified,
            },
            Err(problems) => Self::held(Held::Broken(problems.to_string())),
        }
    }

    fn held(why: Held) -> Self {
        Reading::Held { why }
    }

    /// The decisions this read allows in `jurisdiction`: a held read
    /// blocks everything and holds the queue.
    pub fn evaluate(
        &self,
        catalogue: &Catalogue,
        jurisdiction: impl Into<super::Jurisdiction>,
    ) -> Registry {
        match self {
            Reading::Valid { consents, .. } => {
                Registry::evaluate(catalogue, consents, jurisdiction)
            }
            // Nothing accepted, as a first start has it; but a file that
            // went missing is no withdrawal: nothing is deleted.
            Reading::Held { why: Held::Missing } => {
                Registry::evaluate(catalogue, &Consents::default(), jurisdiction).holding_purges()
            }
            Reading::Held { why } => Registry::closed(catalogue, &why.to_string()),
        }
    }

    /// The digest of a valid read.
    pub fn digest(&self) -> Option<[u8; 32]> {
        match self {
            Reading::Valid { digest, .. } => Some(*digest),
            Reading::Held { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_whole_valid_file_is_valid() {
        let catalogue = Catalogue::embedded();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consent.toml");
        let held = |r: Reading| match r {
            Reading::Held { why } => why,
            Reading::Valid { .. } => panic!("valid"),
        };
        assert_eq!(held(Reading::of(&path, &catalogue)), Held::Missing);
        std::fs::write(&path, "").unwrap();
        assert_eq!(held(Reading::of(&path, &catalogue)), Held::Empty);
        std::fs::write(&path, " \n\n").unwrap();
        assert_eq!(held(Reading::of(&path, &catalogue)), Held::Empty);
        // Truncated in the middle of a record.
        std::fs::write(&path, "[[accepted]]\nclause = \"eula\"\nvers").unwrap();
        assert!(matches!(
            held(Reading::of(&path, &catalogue)),
            Held::Broken(_)
        ));
        let missing = Reading::of(&dir.path().join("none.toml"), &catalogue)
            .evaluate(&catalogue, crate::catalogue::Region::Global);
        assert!(
            !missing.may_purge("update_identity"),
            "a missing file deletes nothing"
        );
        assert!(!missing.is_allowed("update_identity"));
        let registry =
            Reading::of(&path, &catalogue).evaluate(&catalogue, crate::catalogue::Region::Global);
        assert!(registry.unreadable().is_some());
        assert!(!registry.may_purge("update_identity"));
        // Comments only: valid, nothing accepted.
        std::fs::write(&path, "# nothing accepted\n").unwrap();
        let reading = Reading::of(&path, &catalogue);
        assert!(matches!(reading, Reading::Valid { .. }));
        assert!(reading.digest().is_some());
    }
}

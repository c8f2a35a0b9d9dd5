//! The administrator policy: a file (its path in the agent config,
//! `policy_file`) that switches purposes, clauses or the whole agent off for
//! everyone on the machine. It always wins over consent, and it can only
//! switch off: nothing in it can allow what consent does not.
//!
//! ```toml
//! agent = true                        # false: nothing is sent at all
//! disabled_clauses = ["marketing"]
//! disabled_purposes = ["geo_distribution"]
//! ```
//!
//! A policy file that cannot be read or names something the catalogue does
//! not have fails closed: nothing is sent and the queue is held, until it is
//! fixed (`consentry check` names the line).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::catalogue::Catalogue;
use crate::document::{Document, Problems, ReadError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default = "yes")]
    agent: bool,
    #[serde(default)]
    disabled_clauses: Vec<Spanned<String>>,
    #[serde(default)]
    disabled_purposes: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// What the administrator switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Policy {
    /// No policy file configured.
    #[default]
    None,
    /// A valid policy.
    Active {
        path: PathBuf,
        agent_off: bool,
        clauses: BTreeSet<String>,
        purposes: BTreeSet<String>,
    },
    /// A policy file that cannot be used: everything is held.
    Unusable { reason: String },
}

impl Policy {
    /// Reads the policy at `path` (if one is configured). Never fails: an
    /// unusable file is a policy that holds everything.
    pub fn load(path: Option<&Path>, catalogue: &Catalogue) -> Self {
        let Some(path) = path else {
            return Self::None;
        };
        match Self::read(path, catalogue) {
            Ok(policy) => policy,
            Err(err) => Self::Unusable {
                reason: err.to_string(),
            },
        }
    }

    /// Reads and validates the policy at `path`, reporting every problem
    /// with its place (for `consentry check`).
    pub fn read(path: &Path, catalogue: &Catalogue) -> Result<Self, ReadError> {
        let document = Document::read(path)?;
        let raw: RawPolicy = document.parse()?;
        let mut problems = Vec::new();
        for clause in &raw.disabled_clauses {
            if catalogue.clause(clause.get_ref()).is_none() {
                problems.push(document.problem(
                    Some(clause.span()),
                    format!(
                        "unknown clause `{}` (the catalogue has: {})",
                        clause.get_ref(),
                        catalogue.clause_ids()
                    ),
                ));
            }
        }
        for purpose in &raw.disabled_purposes {
            if catalogue.purpose(purpose.get_ref()).is_none() {
                problems.push(document.problem(
                    Some(purpose.span()),
                    format!(
                        "unknown purpose `{}` (the catalogue has: {})",
                        purpose.get_ref(),
                        catalogue.purpose_ids()
                    ),
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Problems(problems).into());
        }
        Ok(Self::Active {
            path: path.to_path_buf(),
            agent_off: !raw.agent,
            clauses: raw
                .disabled_clauses
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            purposes: raw
                .disabled_purposes
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
        })
    }

    /// Why the policy switches `purpose` off when `clause` would allow it,
    /// or `None` when it does not.
    pub fn switches_off(&self, purpose: &str, clause: &str) -> Option<String> {
        let Self::Active {
            path,
            agent_off,
            clauses,
            purposes,
        } = self
        else {
            return None;
        };
        let shown = path.display();
        if *agent_off {
            Some(format!(
                "switched off by the administrator policy {shown} (agent = false)"
            ))
        } else if purposes.contains(purpose) {
            Some(format!(
                "purpose {purpose} switched off by the administrator policy {shown}"
            ))
        } else if clauses.contains(clause) {
            Some(format!(
                "clause {clause} switched off by the administrator policy {shown}"
            ))
        } else {
            None
        }
    }

    /// Why nothing may be sent at all, for an unusable policy file.
    pub fn unusable(&self) -> Option<&str> {
        match self {
            Self::Unusable { reason } => Some(reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_policy_switches_off_by_purpose_clause_or_whole_agent() {
        let catalogue = Catalogue::embedded();
        let (_dir, path) =
            write("disabled_clauses = [\"ksn\"]\ndisabled_purposes = [\"geo_distribution\"]\n");
        let policy = Policy::load(Some(&path), &catalogue);
        assert!(policy.switches_off("geo_distribution", "eula").is_some());
        assert!(policy.switches_off("ksn_scan_aggregates", "ksn").is_some());
        assert!(policy.switches_off("update_identity", "eula").is_none());
        let (_dir, path) = write("agent = false\n");
        let off = Policy::load(Some(&path), &catalogue);
        assert!(
            off.switches_off("update_identity", "eula")
                .unwrap()
                .contains("agent = false")
        );
        assert_eq!(Policy::load(None, &catalogue), Policy::None);
    }

    #[test]
    fn a_bad_policy_is_located_and_fails_closed() {
        let catalogue = Catalogue::embedded();
        let (_dir, path) = write("disabled_purposes = [\"geo\"]\n");
        let err = Policy::read(&path, &catalogue).unwrap_err().to_string();
        assert!(
            err.contains("policy.toml:1:22: unknown purpose `geo`"),
            "{err}"
        );
        assert!(Policy::load(Some(&path), &catalogue).unusable().is_some());
        let (_dir, path) = write("agent = \"off\"\n");
        assert!(Policy::load(Some(&path), &catalogue).unusable().is_some());
        let missing = Policy::load(Some(Path::new("/nonexistent/policy.toml")), &catalogue);
        assert!(missing.unusable().is_some());
    }
}

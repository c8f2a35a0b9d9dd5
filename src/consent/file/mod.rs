//! The consent file: records of accepted clauses, each with the clause id,
//! the version accepted, the SHA-256 of the text as accepted, when, and by
//! what means.
//!
//! Reading validates against the catalogue (an unknown clause is an error
//! with its line and column). Writing goes through `toml_edit`, so the
//! comments and layout a person wrote survive, and lands atomically: a temp
//! file in the same directory, fsync, rename, fsync of the directory. The
//! file is never truncated in place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml_edit::{ArrayOfTables, DocumentMut, Item, Table, value};

use crate::catalogue::{Catalogue, Clause, Region};
use crate::clock::rfc3339;
use crate::document::{Document, Origin, Problems, ReadError};

mod accepted_at;

/// How an acceptance was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Accepted in the product's installer.
    Installer,
    /// Accepted with `consentry consent grant`.
    Cli,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Installer => "installer",
            Method::Cli => "cli",
        }
    }
}

/// One accepted clause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Acceptance {
    pub clause: String,
    pub version: u32,
    pub text_sha256: String,
    /// RFC 3339, as written in the file.
    pub accepted_at: String,
    pub method: Method,
    /// Every `purpose.field` the clause covered when it was accepted (see
    /// `Catalogue::scope_of`); `None` in a record written before consentry
    /// recorded it, which then needs renewing.
    pub scope: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConsentFile {
    #[serde(default)]
    accepted: Vec<RawAcceptance>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcceptance {
    clause: Spanned<String>,
    version: Spanned<u32>,
    text_sha256: Spanned<String>,
    accepted_at: Spanned<toml::value::Datetime>,
    method: Method,
    #[serde(default)]
    scope: Option<Vec<String>>,
}

/// Every acceptance in a consent file, by clause id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consents {
    by_clause: BTreeMap<String, Acceptance>,
    /// Acceptances this catalogue does not recognise (a newer version, or a
    /// digest of another text), located. They allow nothing and hold the
    /// queue; `consentry check` reports them as errors.
    unrecognised: Vec<crate::document::Located>,
}

impl Consents {
    /// Marks `clause` accepted as the catalogue has it now (unit tests).
    #[cfg(test)]
    pub(crate) fn accept_for_tests(&mut self, catalogue: &Catalogue, clause: &str) {
        let clause = catalogue.clause(clause).expect("a catalogue clause");
        self.by_clause.insert(
            clause.id.clone(),
            Acceptance {
                clause: clause.id.clone(),
                version: clause.version,
                text_sha256: clause.text_sha256.clone(),
                accepted_at: rfc3339(SystemTime::now()),
                method: Method::Cli,
                scope: Some(catalogue.scope_of(&clause.id)),
            },
        );
    }

    pub fn get(&self, clause: &str) -> Option<&Acceptance> {
        self.by_clause.get(clause)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Acceptance> {
        self.by_clause.values()
    }

    /// Acceptances the catalogue does not recognise, with their place in
    /// the file: an error for `consentry check`, a held queue for the agent.
    pub fn unrecognised(&self) -> Option<Problems> {
        (!self.unrecognised.is_empty()).then(|| Problems(self.unrecognised.clone()))
    }

    /// Reads the consent file at `path`; a missing file accepts nothing.
    pub fn load(path: &Path, catalogue: &Catalogue) -> Result<Self, ConsentError> {
        match std::fs::metadata(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            _ => {}
        }
        let document = Document::read(path)?;
        Ok(Self::from_document(&document, catalogue)?)
    }

    pub fn from_document(document: &Document, catalogue: &Catalogue) -> Result<Self, Problems> {
        let raw: RawConsentFile = document.parse()?;
        let latest = accepted_at::latest(&document.origin);
        let mut problems: Vec<(Option<std::ops::Range<usize>>, String)> = Vec::new();
        let mut unrecognised = Vec::new();
        let mut by_clause = BTreeMap::new();
        for entry in raw.accepted {
            let clause = entry.clause.get_ref();
            if catalogue.clause(clause).is_none() {
                problems.push((
                    Some(entry.clause.span()),
                    format!(
                        "unknown clause `{clause}` (the catalogue has: {})",
                        catalogue.clause_ids()
                    ),
                ));
                continue;
            }
            let sha = entry.text_sha256.get_ref();
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push((
                    Some(entry.text_sha256.span()),
                    "text_sha256 must be 64 hexadecimal digits".into(),
                ));
                continue;
            }
            let known = catalogue.clause(clause).expect("checked above");
            let version = *entry.version.get_ref();
            if version > known.version {
                unrecognised.push((
                    Some(entry.version.span()),
                    format!(
                        "`{clause}` accepted at version {version}, but this catalogue's newest is {}: a newer catalogue or a mistyped version; nothing of it is sent, its queued data is held",
                        known.version
                    ),
                ));
            } else if version == known.version && !sha.eq_ignore_ascii_case(&known.text_sha256) {
                unrecognised.push((
                    Some(entry.text_sha256.span()),
                    format!(
                        "`{clause}` version {version} names a text_sha256 this catalogue does not have (`consentry consent show {clause}` prints it): nothing of it is sent, its queued data is held"
                    ),
                ));
            }
            if let Err(bad) = accepted_at::check(clause, entry.accepted_at.get_ref(), latest) {
                problems.push((Some(entry.accepted_at.span()), bad.to_string()));
            }
            let acceptance = Acceptance {
                clause: clause.clone(),
                version,
                text_sha256: sha.to_ascii_lowercase(),
                accepted_at: entry.accepted_at.get_ref().to_string(),
                method: entry.method,
                scope: entry.scope,
            };
            if by_clause.insert(clause.clone(), acceptance).is_some() {
                problems.push((
                    Some(entry.clause.span()),
                    format!("clause `{clause}` is accepted twice; keep one record"),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Self {
                by_clause,
                unrecognised: document.problems_at(unrecognised),
            })
        } else {
            Err(Problems(document.problems_at(problems)))
        }
    }
}

/// Why the consent file could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("unknown clause `{clause}` (the catalogue has: {known})")]
    UnknownClause { clause: String, known: String },
    #[error(
        "{clause} takes effect only together with {requires}, which is not accepted as the catalogue has it now; grant {requires} first"
    )]
    RequirementMissing { clause: String, requires: String },
    #[error("{clause} does not apply in region {region}; the clause for this region is: {instead}")]
    NotInRegion {
        clause: String,
        region: Region,
        instead: String,
    },
    #[error(
        "{clause} is accepted (version {version}, {accepted_at}): a decline records the refusal of a clause not accepted; to withdraw it, run `consentry consent revoke {clause}`"
    )]
    Accepted {
        clause: String,
        version: u32,
        accepted_at: String,
    },
    #[error("cannot edit {path}: {message}")]
    Edit { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<Problems> for ConsentError {
    fn from(problems: Problems) -> Self {
        ConsentError::Read(ReadError::Invalid(problems))
    }
}

const NEW_FILE_HEADER: &str = "\
# consentry consent file: which clause versions were accepted, when and how.
# Edit with `consentry consent grant|revoke`, or by hand and check with
# `consentry check`. Removing a record revokes that clause.

";

/// What [`grant`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Granted {
    pub acceptance: Acceptance,
    /// False when the clause was already accepted exactly as the catalogue
    /// has it now: nothing was written, `accepted_at` kept.
    pub changed: bool,
}

impl Acceptance {
    /// Whether this is an acceptance of exactly the catalogue's current
    /// clause (its version, its text, everything it covers now): one the
    /// registry can use. Any other is held.
    pub fn is_current(&self, catalogue: &Catalogue) -> bool {
        catalogue
            .clause(&self.clause)
            .is_some_and(|clause| is_current(self, clause, catalogue))
    }
}

/// Whether `acceptance` is of exactly the catalogue's current `clause`:
/// its version, its text and everything it covers now.
fn is_current(
    acceptance: &Acceptance,
    clause: &crate::catalogue::Clause,
    catalogue: &Catalogue,
) -> bool {
    acceptance.version == clause.version
        && acceptance.text_sha256 == clause.text_sha256
        && acceptance
            .scope
            .as_ref()
            .is_some_and(|scope| *scope == catalogue.scope_of(&clause.id))
}

/// What a grant of a clause starts from, once it is known to be allowed.
struct Grantable<'c> {
    known: &'c Clause,
    /// The consent file's text (`None`: no file yet).
    text: Option<String>,
    /// The acceptance already in the file, when it is of the clause exactly
    /// as the catalogue has it now (a grant would change nothing).
    existing: Option<Acceptance>,
}

/// Checks that `clause` can be granted in `region` without writing
/// anything: the catalogue offers it there, the consent file is valid, and
/// what it requires is accepted. `Ok(Some(_))`: it is accepted as it is now
/// already, and a grant would change nothing; `Ok(None)`: a grant would
/// record it. `consentry consent grant --check` and installers asking
/// whether a yes can be recorded now use it; [`grant`] does the same.
pub fn grant_check(
    path: &Path,
    catalogue: &Catalogue,
    region: Region,
    clause: &str,
) -> Result<Option<Acceptance>, ConsentError> {
    Ok(grantable(path, catalogue, region, clause)?.existing)
}

fn grantable<'c>(
    path: &Path,
    catalogue: &'c Catalogue,
    region: Region,
    clause: &str,
) -> Result<Grantable<'c>, ConsentError> {
    let known = offered(catalogue, region, clause)?;
    let text = read_text(path)?;
    let current = match &text {
        // Validate what is there first: never build on top of a broken file.
        Some(text) => Consents::from_document(
            &Document {
                origin: Origin::File(path.to_path_buf()),
                text: text.clone(),
            },
            catalogue,
        )?,
        None => Consents::default(),
    };
    for required in known
        .requires
        .iter()
        .filter(|r| catalogue.clause(r).is_some_and(|c| c.applies_in(region)))
    {
        let in_effect = catalogue
            .clause(required)
            .zip(current.get(required))
            .is_some_and(|(clause, acceptance)| is_current(acceptance, clause, catalogue));
        if !in_effect {
            return Err(ConsentError::RequirementMissing {
                clause: clause.to_owned(),
                requires: required.clone(),
            });
        }
    }
    let existing = current
        .get(clause)
        .filter(|existing| is_current(existing, known, catalogue))
        .cloned();
    Ok(Grantable {
        known,
        text,
        existing,
    })
}

/// Records acceptance of the catalogue's current version of `clause`,
/// replacing any earlier record for it. A clause already accepted exactly
/// as it is now is left alone (its `accepted_at` stays). A clause that
/// takes effect only together with another (`requires`) is refused while
/// that one is not accepted: granting it would change nothing that is sent.
pub fn grant(
    path: &Path,
    catalogue: &Catalogue,
    region: Region,
    clause: &str,
    method: Method,
) -> Result<Granted, ConsentError> {
    let Grantable {
        known,
        text,
        existing,
    } = grantable(path, catalogue, region, clause)?;
    if let Some(existing) = existing {
        return Ok(Granted {
            acceptance: existing,
            changed: false,
        });
    }
    let mut document = editable(path, text)?;
    let acceptance = Acceptance {
        clause: known.id.clone(),
        version: known.version,
        text_sha256: known.text_sha256.clone(),
        accepted_at: rfc3339(SystemTime::now()),
        method,
        scope: Some(catalogue.scope_of(clause)),
    };
    let when: toml_edit::Datetime =
        acceptance
            .accepted_at
            .parse()
            .map_err(|err: toml_edit::DatetimeParseError| ConsentError::Edit {
                path: path.to_path_buf(),
                message: err.to_string(),
            })?;
    let fill = |table: &mut Table| {
        table.insert("clause", value(&acceptance.clause));
        table.insert("version", value(i64::from(acceptance.version)));
        table.insert("text_sha256", value(&acceptance.text_sha256));
        table.insert("accepted_at", value(when));
        table.insert("method", value(acceptance.method.as_str()));
        let mut scope = toml_edit::Array::new();
        for item in acceptance.scope.iter().flatten() {
            let mut entry = toml_edit::Value::from(item.as_str());
            entry.decor_mut().set_prefix("\n    ");
            scope.push_formatted(entry);
        }
        scope.set_trailing("\n");
        scope.set_trailing_comma(true);
        table.insert("scope", value(scope));
    };
    if !document.contains_key("accepted") {
        document.insert("accepted", Item::ArrayOfTables(ArrayOfTables::new()));
    }
    // A file of comments only keeps them in the document's trailing text;
    // they belong above the first record, not below it.
    let header = document.trailing().as_str().unwrap_or_default().to_owned();
    let is_empty = matches!(document.get("accepted"), Some(Item::ArrayOfTables(a)) if a.is_empty());
    if is_empty && !header.trim().is_empty() {
        document.set_trailing("");
    }
    let Some(Item::ArrayOfTables(array)) = document.get_mut("accepted") else {
        return Err(ConsentError::Edit {
            path: path.to_path_buf(),
            message: "`accepted` must be an array of tables ([[accepted]])".into(),
        });
    };
    // Update an existing record in place, so its comments and position stay.
    let existing = array.iter().position(|table| is_record_of(table, clause));
    match existing.and_then(|index| array.get_mut(index)) {
        Some(record) => fill(record),
        None => {
            let mut table = Table::new();
            fill(&mut table);
            if is_empty && !header.trim().is_empty() {
                table.decor_mut().set_prefix(header);
            }
            array.push(table);
        }
    }
    write_atomically(path, document.to_string().as_bytes())?;
    Ok(Granted {
        acceptance,
        changed: true,
    })
}

/// The clause `clause` as the catalogue offers it in `region`: refused when
/// the catalogue has no such clause, or when it does not apply there
/// (naming the edition that does).
fn offered<'c>(
    catalogue: &'c Catalogue,
    region: Region,
    clause: &str,
) -> Result<&'c Clause, ConsentError> {
    let known = catalogue
        .clause(clause)
        .ok_or_else(|| unknown_clause(catalogue, clause))?;
    if !known.applies_in(region) {
        let editions: Vec<&str> = catalogue
            .clauses()
            .filter(|c| c.kind == known.kind && c.applies_in(region))
            .map(|c| c.id.as_str())
            .collect();
        return Err(ConsentError::NotInRegion {
            clause: clause.to_owned(),
            region,
            instead: if editions.is_empty() {
                "none of this kind".to_owned()
            } else {
                editions.join(", ")
            },
        });
    }
    Ok(known)
}

/// Checks that `clause` can be declined: the catalogue offers it in
/// `region`, and the consent file (which must be readable and valid: a
/// broken one cannot say what is accepted) has no record of it. Writes
/// nothing: a decline changes nothing in the file; its receipt is its only
/// record. A clause with a record, current or not, is refused: withdrawing
/// it is a revoke, which deletes, and a decline must never be mistaken for
/// one.
pub fn decline<'c>(
    path: &Path,
    catalogue: &'c Catalogue,
    region: Region,
    clause: &str,
) -> Result<&'c Clause, ConsentError> {
    let known = offered(catalogue, region, clause)?;
    if let Some(existing) = Consents::load(path, catalogue)?.get(clause) {
        return Err(ConsentError::Accepted {
            clause: clause.to_owned(),
            version: existing.version,
            accepted_at: existing.accepted_at.clone(),
        });
    }
    Ok(known)
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Whether a record of the clause was there (and is gone now).
    pub changed: bool,
    /// The record withdrawn, when the file could be read as a whole (a
    /// withdrawal never waits for a broken file to be fixed).
    pub record: Option<Acceptance>,
}

/// Removes every record of `clause`.
pub fn revoke(path: &Path, catalogue: &Catalogue, clause: &str) -> Result<Revoked, ConsentError> {
    if catalogue.clause(clause).is_none() {
        return Err(unknown_clause(catalogue, clause));
    }
    let unchanged = Revoked {
        changed: false,
        record: None,
    };
    let Some(text) = read_text(path)? else {
        return Ok(unchanged);
    };
    let record = Consents::from_document(
        &Document {
            origin: Origin::File(path.to_path_buf()),
            text: text.clone(),
        },
        catalogue,
    )
    .ok()
    .and_then(|consents| consents.get(clause).cloned());
    let mut document = editable(path, Some(text))?;
    if !remove_records(&mut document, clause) {
        return Ok(unchanged);
    }
    write_atomically(path, document.to_string().as_bytes())?;
    Ok(Revoked {
        changed: true,
        record,
    })
}

fn unknown_clause(catalogue: &Catalogue, clause: &str) -> ConsentError {
    ConsentError::UnknownClause {
        clause: clause.to_owned(),
        known: catalogue.clause_ids(),
    }
}

/// The consent file's text, or `None` when there is no file yet.
fn read_text(path: &Path) -> Result<Option<String>, ConsentError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConsentError::Read(ReadError::Io {
            path: path.to_path_buf(),
            source,
        })),
    }
}

/// An editable document of `text`, or of a commented header for a new file.
fn editable(path: &Path, text: Option<String>) -> Result<DocumentMut, ConsentError> {
    text.unwrap_or_else(|| NEW_FILE_HEADER.to_owned())
        .parse::<DocumentMut>()
        .map_err(|err| ConsentError::Edit {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
}

fn is_record_of(table: &Table, clause: &str) -> bool {
    table.get("clause").and_then(Item::as_str) == Some(clause)
}

/// Drops the `[[accepted]]` records of `clause`; true if any was dropped.
/// Comments above the first record are the file's header, not the
/// record's: they stay, on the next record or at the end of the file.
fn remove_records(document: &mut DocumentMut, clause: &str) -> bool {
    let Some(Item::ArrayOfTables(array)) = document.get_mut("accepted") else {
        return false;
    };
    let header = array
        .get(0)
        .filter(|first| is_record_of(first, clause))
        .and_then(|first| first.decor().prefix())
        .and_then(|prefix| prefix.as_str())
        .map(str::to_owned);
    let before = array.len();
    array.retain(|table| !is_record_of(table, clause));
    let removed = before != array.len();
    if let Some(header) = header {
        match array.get_mut(0) {
            Some(first) => first.decor_mut().set_prefix(header),
            None => {
                let trailing = document.trailing().as_str().unwrap_or_default().to_owned();
                document.set_trailing(format!("{header}{trailing}"));
            }
        }
    }
    removed
}

/// Temp file beside the target, fsync, rename over it, fsync the directory:
/// a crash leaves either the old file or the new one, never half of either.
/// A modification time later than now (the clock was set back since) is
/// kept: it is what the acceptances' dates are checked against.
fn write_atomically(link: &Path, contents: &[u8]) -> Result<(), ConsentError> {
    // Through a symlink, the file it points to is what gets replaced: the
    // link an administrator made stays a link.
    let path = &resolve_links(link).map_err(|source| ConsentError::Write {
        path: link.to_path_buf(),
        source,
    })?;
    let wrap = |source| ConsentError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".consent-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(wrap)?;
    let previous = std::fs::metadata(path);
    if let Ok(existing) = &previous {
        temp.as_file()
            .set_permissions(existing.permissions())
            .map_err(wrap)?;
    } else {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(wrap)?;
    }
    temp.write_all(contents).map_err(wrap)?;
    let written = previous.and_then(|meta| meta.modified()).ok();
    if let Some(written) = accepted_at::keep_written_time(written) {
        temp.as_file().set_modified(written).map_err(wrap)?;
    }
    temp.as_file().sync_all().map_err(wrap)?;
    temp.persist(path).map_err(|err| wrap(err.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(wrap)?;
    Ok(())
}

/// Follows `path` through symbolic links (relative targets resolve against
/// the link's directory) to the file they name, which may not exist yet.
pub(super) fn resolve_links(path: &Path) -> std::io::Result<PathBuf> {
    /// Links followed before giving up, as the kernel's own limit does.
    const MAX_LINKS: usize = 40;
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&path)?;
                path = match path.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Ok(_) => return Ok(path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(path),
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other(format!(
        "more than {MAX_LINKS} symbolic links to follow"
    )))
}

#[cfg(test)]
mod tests;

//! What the types of the config do not check: each section's own rules
//! (`validate_keyed` of `[upload]`, `[store]`, `[collect]`, `[product]`),
//! the path keys left empty, and where each problem is written, so that
//! the error points at the key at fault. Every problem is collected before
//! any is reported.

use std::ops::Range;

use toml::Spanned;

use super::RawConfig;
use crate::document::{Document, Located};
use crate::store::StoreConfig;

/// Every problem of a config that parsed, each at the key at fault (or at
/// its table when the key is not written there).
pub(super) fn problems(document: &Document, raw: &RawConfig) -> Vec<Located> {
    let places = Places::of(&document.text);
    let mut found = Vec::new();
    let mut keyed = |table: &str, fallback: Option<Range<usize>>, problems: Vec<(&str, String)>| {
        for (key, message) in problems {
            found.push((places.key(table, key).or(fallback.clone()), message));
        }
    };
    keyed("", None, empty_paths(raw));
    keyed("", None, catalogue_choice(raw));
    let upload = &raw.upload;
    keyed(
        "upload",
        Some(upload.span()),
        upload.get_ref().validate_keyed().err().unwrap_or_default(),
    );
    let store_span = raw.store.as_ref().map(Spanned::span);
    let default_store = StoreConfig::default();
    let store = raw.store.as_ref().map_or(&default_store, Spanned::get_ref);
    keyed(
        "store",
        store_span,
        store.validate_keyed().err().unwrap_or_default(),
    );
    keyed(
        "collect",
        None,
        raw.collect.validate_keyed().err().unwrap_or_default(),
    );
    keyed(
        "product",
        None,
        raw.product.validate_keyed().err().unwrap_or_default(),
    );
    document.problems_at(found)
}

/// The top-level path keys left empty, each with what to write instead. An
/// empty path would resolve to the config's own directory, which is never
/// what was meant.
fn empty_paths(raw: &RawConfig) -> Vec<(&'static str, String)> {
    let keys = [
        (
            "state_dir",
            Some(&raw.state_dir),
            "give the directory the agent keeps its queue in, such as /var/lib/consentry",
        ),
        (
            "runtime_dir",
            Some(&raw.runtime_dir),
            "give the directory for the control and ingest sockets, such as /run/consentry",
        ),
        (
            "consent_file",
            Some(&raw.consent_file),
            "give the consent file's path, such as /etc/consentry/consent.toml",
        ),
        (
            "catalogue",
            raw.catalogue.as_ref(),
            "give a built-in catalogue (kis, kes, ksv) or a catalogue file, or remove the line to use the default, kis",
        ),
        (
            "policy_file",
            raw.policy_file.as_ref(),
            "give the policy file's path, or remove the line for no policy",
        ),
    ];
    keys.into_iter()
        .filter(|(_, path, _)| path.is_some_and(|p| p.as_os_str().is_empty()))
        .map(|(key, _, instead)| (key, format!("{key} is empty: {instead}")))
        .collect()
}

/// `catalogue` names a built-in catalogue or a file; anything else is a
/// typo, never silently a file of that name in the config's directory.
fn catalogue_choice(raw: &RawConfig) -> Vec<(&'static str, String)> {
    let Some(value) = raw.catalogue.as_ref().filter(|v| !v.as_os_str().is_empty()) else {
        return Vec::new();
    };
    match super::CatalogueChoice::of(value) {
        Some(_) => Vec::new(),
        None => vec![(
            "catalogue",
            format!(
                "catalogue `{}` is neither a built-in catalogue ({}) nor a file (a path with a `/`, or ending in .toml)",
                value.display(),
                crate::catalogue::BuiltIn::names()
            ),
        )],
    }
}

/// Where keys are written in a config's text, for errors to point at.
struct Places(Option<toml_edit::Document<String>>);

impl Places {
    fn of(text: &str) -> Self {
        Self(toml_edit::Document::parse(text.to_owned()).ok())
    }

    /// The value of `[table] key` (a top-level key for `""`), or of its
    /// older name.
    fn key(&self, table: &str, key: &str) -> Option<Range<usize>> {
        let document = self.0.as_ref()?.as_item();
        let table = if table.is_empty() {
            document
        } else {
            document.get(table)?
        };
        let old_name = match (table.get(key), key) {
            (None, "batch_max_delay") => "interval",
            _ => key,
        };
        table.get(old_name)?.span()
    }
}

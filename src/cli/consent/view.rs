//! `consent list` and `consent show`: the clauses, each with the state of
//! its acceptance, and one clause's text with the purposes it allows.

use std::process::ExitCode;

use anyhow::Context;
use consentry::consent::{self, Consents};
use serde::Serialize;

use super::super::table::{self, Cell, Detail, Row, Style, Table, Tone};
use super::super::{OutputArgs, print_json};
use super::load;

/// One clause in `consentry.consent.list/1` (docs/cli-json.md).
#[derive(Serialize)]
struct ClauseState {
    clause: String,
    kind: consentry::catalogue::ClauseKind,
    version: u32,
    title: String,
    accepted: Option<consent::Acceptance>,
    state: AcceptanceState,
    /// Why an acceptance does not count (`renewal_needed`), in words.
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum AcceptanceState {
    Accepted,
    NotAccepted,
    RenewalNeeded,
}

#[derive(Serialize)]
struct ClauseList {
    clauses: Vec<ClauseState>,
}

pub(super) fn list(output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let (config, catalogue) = load(output)?;
    let consents = Consents::load(&config.consent_file, &catalogue)?;
    let states: Vec<ClauseState> = catalogue
        .clauses()
        .map(|clause| {
            let accepted = consents.get(&clause.id).cloned();
            let (state, reason) = match &accepted {
                None => (AcceptanceState::NotAccepted, None),
                Some(a) if a.version != clause.version => (
                    AcceptanceState::RenewalNeeded,
                    Some(format!(
                        "accepted at version {}, catalogue is at {}",
                        a.version, clause.version
                    )),
                ),
                Some(a) if a.text_sha256 != clause.text_sha256 => (
                    AcceptanceState::RenewalNeeded,
                    Some("accepted text differs".to_owned()),
                ),
                Some(_) => (AcceptanceState::Accepted, None),
            };
            ClauseState {
                clause: clause.id.clone(),
                kind: clause.kind,
                version: clause.version,
                title: clause.title.clone(),
                accepted,
                state,
                reason,
            }
        })
        .collect();
    if output.json {
        print_json("consentry.consent.list/1", &ClauseList { clauses: states })?;
    } else {
        let style = Style::detect();
        for line in table::render(&clause_table(&states, &style), &style) {
            say!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One row per clause: its state, the version in the catalogue, and when
/// and how it was accepted; the title (and why a renewal is needed) below.
fn clause_table(states: &[ClauseState], style: &Style) -> Table {
    let rows = states
        .iter()
        .map(|state| {
            let kind = match state.kind {
                consentry::catalogue::ClauseKind::Eula => "eula",
                consentry::catalogue::ClauseKind::Voluntary => "voluntary",
            };
            let verdict = match state.state {
                AcceptanceState::Accepted => style.verdict(Tone::Good, "accepted"),
                AcceptanceState::NotAccepted => style.verdict(Tone::Plain, "not accepted"),
                AcceptanceState::RenewalNeeded => style.verdict(Tone::Warn, "outdated"),
            };
            let (at, method) = match &state.accepted {
                Some(a) => (a.accepted_at.clone(), a.method.as_str()),
                None => ("-".to_owned(), "-"),
            };
            let mut detail = vec![format!("{} ({kind})", state.title)];
            detail.extend(state.reason.iter().map(|r| format!("renewal needed: {r}")));
            Row {
                cells: vec![
                    Cell::plain(state.clause.clone()),
                    verdict,
                    Cell::plain(format!("v{}", state.version)),
                    Cell::plain(at),
                    Cell::plain(method),
                ],
                detail,
            }
        })
        .collect();
    Table {
        header: vec!["CLAUSE", "STATE", "VERSION", "ACCEPTED AT", "METHOD"],
        detail_header: "",
        detail: Detail::Below,
        rows,
    }
}

pub(super) fn show(clause_id: &str, output: &OutputArgs) -> anyhow::Result<ExitCode> {
    let (_, catalogue) = load(output)?;
    let clause = catalogue.clause(clause_id).with_context(|| {
        format!(
            "unknown clause `{clause_id}` (the catalogue has: {})",
            catalogue.clause_ids()
        )
    })?;
    let purposes: Vec<_> = catalogue
        .purposes()
        .filter(|p| p.clauses.iter().any(|c| c == clause_id))
        .collect();
    if output.json {
        #[derive(Serialize)]
        struct Shown<'a> {
            clause: &'a consentry::catalogue::Clause,
            purposes: Vec<&'a consentry::catalogue::Purpose>,
        }
        print_json("consentry.consent.show/1", &Shown { clause, purposes })?;
        return Ok(ExitCode::SUCCESS);
    }
    say!(
        "{} (version {}, sha256 {})",
        clause.title,
        clause.version,
        clause.text_sha256
    );
    say!("\n{}", clause.text.trim_end());
    if !clause.requires.is_empty() {
        say!(
            "\nTakes effect only together with: {}",
            clause.requires.join(", ")
        );
    }
    for purpose in purposes {
        say!("\nPurpose {}: {}", purpose.id, purpose.title);
        for field in &purpose.fields {
            say!(
                "  {:<26} {:<9} {}",
                field.name,
                field.ty.to_string(),
                field.description
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

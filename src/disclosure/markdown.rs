//! A [`Disclosure`] as Markdown: headings, tables for fields, and each
//! clause's full text in a fenced block exactly as accepted. Catalogue text
//! in a table cell has its `|` escaped and its line breaks joined, so no
//! description can break the table; `<` and `>` are written as entities so
//! a renderer never takes catalogue text for HTML.

use std::fmt::Write;

use super::{
    ClauseDisclosure, Disclosure, PurposeDisclosure, RetentionFrom, basis_in_words, kind_words,
    priority_word, region_name,
};

/// The whole document.
pub fn render(disclosure: &Disclosure) -> String {
    let mut out = String::new();
    let region = disclosure.region;
    let _ = writeln!(
        out,
        "# What consentry sends, and why: {} (`{region}`)\n",
        region_name(region)
    );
    out.push_str(&sections(disclosure, 2));
    out
}

/// Everything under the document's title, its sections headed at level
/// `top` (`##` for 2) and their items one level below: the document uses
/// 2; one that embeds the disclosure (the transparency report) passes the
/// level under its own heading.
pub fn sections(disclosure: &Disclosure, top: usize) -> String {
    let (h, item) = ("#".repeat(top), "#".repeat(top + 1));
    let mut out = super::intro(disclosure.region);
    let _ = writeln!(out, "\n\n{h} In this region\n");
    for line in super::summary(disclosure) {
        let _ = writeln!(out, "- {}", inline(&line));
    }
    let _ = writeln!(out, "\n{h} Clauses");
    for clause in &disclosure.clauses {
        clause_section(&mut out, clause, &item);
    }
    let _ = writeln!(out, "\n{h} Purposes");
    for purpose in &disclosure.purposes {
        purpose_section(&mut out, purpose, &item);
    }
    if !disclosure.opt_out_signals.is_empty() {
        let _ = write!(
            out,
            "\n{h} Opt-out signals\n\n| signal | how it is switched on | what it does |\n|---|---|---|\n"
        );
        for signal in &disclosure.opt_out_signals {
            let _ = writeln!(
                out,
                "| {} | {} | {} |",
                cell(&signal.name),
                cell(&signal.how),
                cell(&signal.effect)
            );
        }
    }
    out
}

fn clause_section(out: &mut String, clause: &ClauseDisclosure, heading: &str) {
    let _ = writeln!(
        out,
        "\n{heading} {} (`{}`)\n",
        inline(&clause.title),
        clause.id
    );
    out.push_str("| | |\n|---|---|\n");
    let requires = if clause.requires.is_empty() {
        "nothing else".to_owned()
    } else {
        code_list(&clause.requires, " or ")
    };
    for (key, value) in [
        ("Kind", kind_words(clause).to_owned()),
        ("Version", clause.version.to_string()),
        ("SHA-256 of the text", format!("`{}`", clause.text_sha256)),
        ("Takes effect with", requires),
        ("What was sent, when withdrawn", clause.erasure.clone()),
    ] {
        let _ = writeln!(out, "| {key} | {} |", cell(&value));
    }
    let fence = fence_for(&clause.text);
    let _ = writeln!(
        out,
        "\nFull text (version {}):\n\n{fence}text\n{}\n{fence}",
        clause.version,
        clause.text.trim_end()
    );
    if let Some(claim) = &clause.no_personal_data_claim {
        let _ = writeln!(out, "\n{}", inline(&super::claim_note(claim)));
    }
}

fn purpose_section(out: &mut String, purpose: &PurposeDisclosure, heading: &str) {
    let _ = writeln!(
        out,
        "\n{heading} {} (`{}`)\n",
        inline(&purpose.title),
        purpose.id
    );
    out.push_str("| | |\n|---|---|\n");
    let retention = match purpose.retention_from {
        RetentionFrom::Purpose => format!("{} (this purpose's limit)", purpose.retention),
        RetentionFrom::Store => {
            format!("{} (the queue's limit for every record)", purpose.retention)
        }
    };
    for (key, value) in [
        ("Legal basis", basis_in_words(purpose.basis).to_owned()),
        ("Allowed by", code_list(&purpose.clauses, " or ")),
        ("Queue priority", priority_word(purpose.priority).to_owned()),
        ("Kept unsent at most", retention),
        (
            "Sale or sharing under California law",
            if purpose.sale_or_sharing { "yes" } else { "no" }.to_owned(),
        ),
        ("Withdrawal", purpose.withdrawal.clone()),
    ] {
        let _ = writeln!(out, "| {key} | {} |", cell(&value));
    }
    if let Some(when) = &purpose.after_activation {
        let _ = writeln!(out, "| Activation | {} |", cell(when));
    }
    if let Some(budget) = &purpose.privacy_budget {
        let _ = writeln!(out, "| Privacy budget | {} |", cell(budget));
    }
    out.push_str(
        "\n| field | type | what it is | personal data | before it is stored |\n|---|---|---|---|---|\n",
    );
    for field in &purpose.fields {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} |",
            field.name,
            field.ty,
            cell(&field.description),
            field.personal,
            cell(&field.minimised)
        );
    }
}

fn code_list(ids: &[String], separator: &str) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// Text on one line of Markdown: no raw HTML.
pub(crate) fn inline(text: &str) -> String {
    text.replace('<', "&lt;").replace('>', "&gt;")
}

/// Text inside a table cell: one line, `|` escaped.
pub(crate) fn cell(text: &str) -> String {
    inline(&text.split_whitespace().collect::<Vec<_>>().join(" ")).replace('|', "\\|")
}

/// A backtick fence longer than any run of backticks in `text`.
pub(crate) fn fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_cannot_break_the_table_and_fences_outlast_the_text() {
        assert_eq!(cell("a | b\nc  <d>"), "a \\| b c &lt;d&gt;");
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }
}

//! A [`Disclosure`] as one self-contained HTML5 page: inline CSS only, no
//! script, no external URL (no link, font or image), readable on screen
//! and on paper. Every piece of catalogue text goes through [`escape`]
//! before it reaches the page.

use std::fmt::Write;

use super::{
    ClauseDisclosure, Disclosure, PurposeDisclosure, RetentionFrom, basis_in_words, kind_words,
    priority_word, region_name,
};

/// Print-friendly and plain: system fonts, tables with borders, no colour
/// a printer would lose meaning without.
const STYLE: &str = "body{font-family:system-ui,sans-serif;line-height:1.45;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#111}
h1{font-size:1.6rem}h2{border-bottom:1px solid #999;margin-top:2.2rem}h3{margin-top:1.8rem}
table{border-collapse:collapse;width:100%;margin:.6rem 0}th,td{border:1px solid #999;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eee}code{font-family:ui-monospace,monospace;font-size:.92em}
pre{white-space:pre-wrap;background:#f6f6f6;border:1px solid #ccc;padding:.6rem;font-size:.9em}
@media print{body{margin:0;max-width:none}h2,h3{break-after:avoid}table,pre{break-inside:avoid}}";

/// The whole page.
pub fn render(disclosure: &Disclosure) -> String {
    let region = disclosure.region;
    let title = format!(
        "What consentry sends, and why: {} ({region})",
        region_name(region)
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title),
    );
    out.push_str(&sections(disclosure, 2));
    out.push_str("</body>\n</html>\n");
    out
}

/// Everything under the page's title, its sections headed `<h{top}>` and
/// their items one level below: the page uses 2; a document that embeds
/// the disclosure (the transparency report) passes the level under its
/// own heading. No style, no title: the embedding page has its own.
pub fn sections(disclosure: &Disclosure, top: u8) -> String {
    let (h, item) = (top, top + 1);
    let mut out = String::new();
    let _ = write!(
        out,
        "<p>{}</p>\n<h{h}>In this region</h{h}>\n<ul>\n",
        rich(&super::intro(disclosure.region))
    );
    for line in super::summary(disclosure) {
        let _ = writeln!(out, "<li>{}</li>", rich(&line));
    }
    let _ = writeln!(out, "</ul>\n<h{h}>Clauses</h{h}>");
    for clause in &disclosure.clauses {
        clause_section(&mut out, clause, item);
    }
    let _ = writeln!(out, "<h{h}>Purposes</h{h}>");
    for purpose in &disclosure.purposes {
        purpose_section(&mut out, purpose, item);
    }
    if !disclosure.opt_out_signals.is_empty() {
        let _ = write!(
            out,
            "<h{h}>Opt-out signals</h{h}>\n<table>\n<thead><tr><th>signal</th><th>how it is switched on</th><th>what it does</th></tr></thead>\n<tbody>\n"
        );
        for signal in &disclosure.opt_out_signals {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                rich(&signal.name),
                rich(&signal.how),
                rich(&signal.effect)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out
}

fn clause_section(out: &mut String, clause: &ClauseDisclosure, level: u8) {
    let _ = writeln!(
        out,
        "<h{level} id=\"clause-{}\">{} (<code>{}</code>)</h{level}>",
        escape(&clause.id),
        escape(&clause.title),
        escape(&clause.id)
    );
    let requires = if clause.requires.is_empty() {
        "nothing else".to_owned()
    } else {
        code_list(&clause.requires)
    };
    key_values(
        out,
        &[
            ("Kind", escape(kind_words(clause))),
            ("Version", clause.version.to_string()),
            (
                "SHA-256 of the text",
                format!("<code>{}</code>", escape(&clause.text_sha256)),
            ),
            ("Takes effect with", requires),
            ("What was sent, when withdrawn", rich(&clause.erasure)),
        ],
    );
    let _ = writeln!(
        out,
        "<p>Full text (version {}):</p>\n<pre>{}</pre>",
        clause.version,
        escape(clause.text.trim_end())
    );
    if let Some(claim) = &clause.no_personal_data_claim {
        let _ = writeln!(out, "<p>{}</p>", rich(&super::claim_note(claim)));
    }
}

fn purpose_section(out: &mut String, purpose: &PurposeDisclosure, level: u8) {
    let _ = writeln!(
        out,
        "<h{level} id=\"purpose-{}\">{} (<code>{}</code>)</h{level}>",
        escape(&purpose.id),
        escape(&purpose.title),
        escape(&purpose.id)
    );
    let retention = match purpose.retention_from {
        RetentionFrom::Purpose => format!("{} (this purpose's limit)", purpose.retention),
        RetentionFrom::Store => {
            format!("{} (the queue's limit for every record)", purpose.retention)
        }
    };
    key_values(
        out,
        &[
            ("Legal basis", escape(basis_in_words(purpose.basis))),
            ("Allowed by", code_list(&purpose.clauses)),
            ("Queue priority", escape(priority_word(purpose.priority))),
            ("Kept unsent at most", escape(&retention)),
            (
                "Sale or sharing under California law",
                if purpose.sale_or_sharing { "yes" } else { "no" }.to_owned(),
            ),
            ("Withdrawal", rich(&purpose.withdrawal)),
        ]
        .into_iter()
        .chain(
            purpose
                .after_activation
                .as_ref()
                .map(|when| ("Activation", rich(when))),
        )
        .chain(
            purpose
                .privacy_budget
                .as_ref()
                .map(|budget| ("Privacy budget", escape(budget))),
        )
        .collect::<Vec<_>>(),
    );
    out.push_str("<table>\n<thead><tr><th>field</th><th>type</th><th>what it is</th><th>personal data</th><th>before it is stored</th></tr></thead>\n<tbody>\n");
    for field in &purpose.fields {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&field.name),
            field.ty,
            escape(&field.description),
            field.personal,
            escape(&field.minimised)
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A two-column table; values are already HTML.
fn key_values(out: &mut String, rows: &[(&str, String)]) {
    out.push_str("<table>\n<tbody>\n");
    for (key, value) in rows {
        let _ = writeln!(out, "<tr><th scope=\"row\">{key}</th><td>{value}</td></tr>");
    }
    out.push_str("</tbody>\n</table>\n");
}

fn code_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("<code>{}</code>", escape(id)))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Text with `code` spans in backticks, escaped, the spans marked up.
pub(crate) fn rich(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(n, part)| {
            if n % 2 == 1 {
                format!("<code>{}</code>", escape(part))
            } else {
                escape(part)
            }
        })
        .collect()
}

/// Text made safe for an element's content or a quoted attribute value.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_catalogue_text_is_escaped() {
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(rich("run `a<b` now"), "run <code>a&lt;b</code> now");
    }
}

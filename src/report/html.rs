//! A [`Report`] as one self-contained HTML5 page: inline CSS and SVG, no
//! script, no URL of any kind (a Content-Security-Policy of `default-src
//! 'none'` says so to the browser as well), so it opens the same from
//! `file://`, a mail attachment or a USB stick. It follows the reader's
//! colour scheme, prints on white, and narrows to a phone: tables scroll
//! inside their own box, charts scale. Every piece of text from the store,
//! the catalogue or a body goes through [`escape`] first.

use std::fmt::Write;

use super::{BatchReport, Loss, PurposeReport, Report, Unit, chart, chart::receipt_line, words};
use crate::consent::Decision;
use crate::disclosure::html::{escape, rich, sections};
use crate::disclosure::region_name;

/// Colours as variables, so that the dark scheme and print change them in
/// one place; receipt marks carry a letter too, so no meaning rests on
/// colour alone.
const STYLE: &str = ":root{color-scheme:light dark;--fg:#111;--bg:#fff;--muted:#555;--line:#999;--head:#eee;--code:#f6f6f6;--rec:#2b6cb0;--byt:#2f855a;--good:#276749;--bad:#9b2c2c;--grant:#2f855a;--revoke:#c53030;--renewal:#2b6cb0;--decline:#b7791f;--policy:#6b46c1;--region:#4a5568}
@media (prefers-color-scheme:dark){:root{--fg:#e6e6e6;--bg:#15171b;--muted:#a8a8a8;--line:#666;--head:#262a30;--code:#1d2025;--rec:#63b3ed;--byt:#68d391;--good:#68d391;--bad:#fc8181;--grant:#68d391;--revoke:#fc8181;--renewal:#63b3ed;--decline:#f6c760;--policy:#b794f4;--region:#cbd5e0}}
body{font-family:system-ui,sans-serif;line-height:1.45;max-width:62rem;margin:2rem auto;padding:0 1rem;color:var(--fg);background:var(--bg)}
h1{font-size:1.6rem}h2{border-bottom:1px solid var(--line);margin-top:2.4rem}h3{margin-top:1.8rem}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;margin:.6rem 0}
th,td{border:1px solid var(--line);padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:var(--head)}
td.n{text-align:right;font-variant-numeric:tabular-nums}code{font-family:ui-monospace,monospace;font-size:.92em;overflow-wrap:anywhere}th code{overflow-wrap:normal}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:var(--code);border:1px solid var(--line);padding:.6rem;font-size:.85em}
.allowed{color:var(--good);font-weight:600}.blocked{color:var(--bad);font-weight:600}.note{color:var(--muted)}
svg.chart{display:block;width:100%;height:auto;margin:.4rem 0}
.chart .axis{stroke:var(--line);stroke-width:1}.chart .label{fill:var(--muted);font-size:11px}
.bar.rec{fill:var(--rec)}.bar.byt{fill:var(--byt)}
.mark line{stroke-width:1.5;stroke-dasharray:4 2}.mark text{font-size:12px;font-weight:700}
.ev-grant{color:var(--grant)}.ev-revoke{color:var(--revoke)}.ev-renewal{color:var(--renewal)}.ev-decline{color:var(--decline)}.ev-policy_change{color:var(--policy)}.ev-region_change{color:var(--region)}
.mark line{stroke:currentColor}.mark text{fill:currentColor}
.legend span{margin-right:1rem;font-weight:700}details{margin:.4rem 0}summary{cursor:pointer}
@media print{:root{color-scheme:light;--fg:#000;--bg:#fff;--muted:#333;--head:#eee;--code:#fff}body{margin:0;max-width:none}h2,h3{break-after:avoid}svg,table,pre{break-inside:avoid}}";

/// The whole page.
pub fn render(report: &Report) -> String {
    let title = format!(
        "What consentry sent: {} to {}",
        report.period.first_day, report.period.last_day
    );
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n<meta name=\"color-scheme\" content=\"light dark\">\n<title>{}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<p>{}</p>\n<ul>\n",
        escape(&title),
        escape(&title),
        rich(&words::intro(report)),
    );
    for line in words::summary(report) {
        let _ = writeln!(out, "<li>{}</li>", rich(&line));
    }
    out.push_str("</ul>\n<nav aria-label=\"Sections\"><p>Sections: <a href=\"#purposes\">per purpose</a> · <a href=\"#receipts\">consent events</a> · <a href=\"#losses\">what did not leave</a> · <a href=\"#batches\">last batches</a> · <a href=\"#disclosure\">what may be sent</a></p></nav>\n</header>\n<main>\n");
    purposes(&mut out, report);
    receipts(&mut out, report);
    losses(&mut out, report);
    batches(&mut out, report);
    let _ = write!(
        out,
        "<section id=\"disclosure\">\n<h2>What may be sent in this region: {} (<code>{}</code>)</h2>\n{}</section>\n",
        escape(region_name(report.region)),
        report.region,
        sections(&report.disclosure, 3)
    );
    let _ = write!(
        out,
        "</main>\n<footer><p class=\"note\">Generated at {} by <code>consentry report</code> from this computer's own records.</p></footer>\n</body>\n</html>\n",
        escape(&report.generated_at)
    );
    out
}

/// The table of every purpose, then a section with a chart for each one
/// that has something to show.
fn purposes(out: &mut String, report: &Report) {
    out.push_str("<section id=\"purposes\">\n<h2>Per purpose</h2>\n<div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">purpose</th><th scope=\"col\">now</th><th scope=\"col\">basis</th><th scope=\"col\">records sent</th><th scope=\"col\">bytes sent</th><th scope=\"col\">queued now</th><th scope=\"col\">did not leave</th></tr></thead>\n<tbody>\n");
    for purpose in &report.purposes {
        let lost: u64 = purpose.losses.iter().map(|l| l.count).sum();
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><a href=\"#p-{id}\"><code>{id}</code></a></th><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{lost}</td></tr>",
            verdict_word(purpose.verdict.as_ref()),
            purpose.basis.map_or("-", |b| b.as_str()),
            purpose.sent.records,
            escape(&words::bytes(purpose.sent.bytes)),
            purpose.queued,
            id = escape(&purpose.id),
        );
    }
    let _ = writeln!(
        out,
        "</tbody>\n</table></div>\n<p class=\"note\">{}</p>",
        escape(words::BYTES_NOTE)
    );
    for purpose in &report.purposes {
        purpose_section(out, report, purpose);
    }
    out.push_str("</section>\n");
}

fn verdict_word(verdict: Option<&Decision>) -> &'static str {
    match verdict {
        Some(d) if d.is_allowed() => "<span class=\"allowed\">allowed</span>",
        Some(_) => "<span class=\"blocked\">blocked</span>",
        None => "not in the catalogue",
    }
}

/// One purpose: what it is, whether it may send and why, its chart and
/// its days in a table, and what of it did not leave.
fn purpose_section(out: &mut String, report: &Report, purpose: &PurposeReport) {
    let id = escape(&purpose.id);
    let _ = writeln!(
        out,
        "<section id=\"p-{id}\">\n<h3>{} (<code>{id}</code>)</h3>",
        escape(
            purpose
                .title
                .as_deref()
                .unwrap_or("a purpose the catalogue no longer has")
        )
    );
    let clauses: Vec<String> = purpose
        .clauses
        .iter()
        .map(|c| {
            format!(
                "<a href=\"#clause-{c}\"><code>{c}</code></a>",
                c = escape(c)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "<p>Legal basis: {}. Allowed by: {}. Now: {} ({}).</p>",
        purpose.basis.map_or("unknown", |b| b.as_str()),
        if clauses.is_empty() {
            "no clause".to_owned()
        } else {
            clauses.join(" or ")
        },
        verdict_word(purpose.verdict.as_ref()),
        escape(
            purpose
                .verdict
                .as_ref()
                .map_or("no verdict", |d| d.reason())
        ),
    );
    if purpose.sent.records == 0 {
        let _ = writeln!(
            out,
            "<p>Sent nothing in this period.{}</p>",
            match purpose.queued {
                0 => String::new(),
                n => format!(" {} queued now.", words::unit(Unit::Records, n)),
            }
        );
    } else {
        out.push_str(&chart::purpose_chart(report, purpose));
        day_table(out, purpose);
    }
    if !purpose.losses.is_empty() {
        loss_table(out, &purpose.losses);
    }
    out.push_str("</section>\n");
}

/// The chart's numbers, for a screen reader and for copying.
fn day_table(out: &mut String, purpose: &PurposeReport) {
    let _ = writeln!(
        out,
        "<details><summary>The numbers per day ({} day(s) with sends; {} in {} batch(es))</summary>\n<div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">day (UTC)</th><th scope=\"col\">records</th><th scope=\"col\">bytes</th></tr></thead>\n<tbody>",
        purpose.days.len(),
        words::unit(Unit::Records, purpose.sent.records),
        purpose.sent.batches
    );
    for day in &purpose.days {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            day.day, day.records, day.bytes
        );
    }
    out.push_str("</tbody>\n</table></div></details>\n");
}

fn loss_table(out: &mut String, losses: &[Loss]) {
    out.push_str("<div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">did not leave</th><th scope=\"col\">how many</th><th scope=\"col\">counted</th><th scope=\"col\">why</th></tr></thead>\n<tbody>\n");
    for loss in losses {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\">{}</th><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            words::kind(loss.kind),
            words::unit(loss.unit, loss.count),
            words::span(loss.span),
            escape(&loss.reason)
        );
    }
    out.push_str("</tbody>\n</table></div>\n");
}

/// The receipts on the period's axis, then as a table.
fn receipts(out: &mut String, report: &Report) {
    out.push_str("<section id=\"receipts\">\n<h2>Consent events</h2>\n");
    out.push_str(&chart::timeline(report));
    out.push_str("<p class=\"legend\">");
    for event in words::EVENTS {
        let _ = write!(
            out,
            "<span class=\"ev-{}\">{} {}</span>",
            event.as_str(),
            words::mark(event),
            words::event(event)
        );
    }
    out.push_str("</p>\n");
    let _ = writeln!(
        out,
        "<p>{} in this period; {} earlier (<code>consentry consent history</code> lists every one, <code>consentry consent receipt ID</code> shows one in full).</p>",
        report.receipts.len(),
        report.receipts_before
    );
    if !report.receipts.is_empty() {
        out.push_str("<div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">when (UTC)</th><th scope=\"col\">what</th><th scope=\"col\">clause</th><th scope=\"col\">purposes</th><th scope=\"col\">from → to</th><th scope=\"col\">how</th><th scope=\"col\">receipt</th></tr></thead>\n<tbody>\n");
        for receipt in &report.receipts {
            let clause = match (&receipt.clause, receipt.version) {
                (Some(c), Some(v)) => format!("<code>{}</code> v{v}", escape(c)),
                (Some(c), None) => format!("<code>{}</code>", escape(c)),
                _ => "-".into(),
            };
            let _ = writeln!(
                out,
                "<tr title=\"{}\"><th scope=\"row\">{}</th><td class=\"ev-{}\">{}</td><td>{clause}</td><td>{}</td><td>{} → {}</td><td>{}, {}</td><td><code>{}</code></td></tr>",
                escape(&receipt_line(receipt)),
                escape(&receipt.at),
                receipt.event.as_str(),
                words::event(receipt.event),
                escape(&receipt.purposes.join(", ")),
                escape(&receipt.previous_state),
                escape(&receipt.new_state),
                escape(&receipt.method),
                if receipt.declared {
                    "declared"
                } else {
                    "observed"
                },
                receipt.receipt_id,
            );
        }
        out.push_str("</tbody>\n</table></div>\n");
    }
    out.push_str("</section>\n");
}

/// Everything that did not leave, all purposes in one table.
fn losses(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "<section id=\"losses\">\n<h2>What did not leave</h2>\n<p>{}</p>",
        escape(&words::door(report))
    );
    let rows = report.losses();
    if rows.is_empty() {
        out.push_str("<p>Nothing was dropped, dead-lettered, purged or refused.</p>\n</section>\n");
        return;
    }
    out.push_str("<div class=\"scroll\"><table>\n<thead><tr><th scope=\"col\">purpose</th><th scope=\"col\">what</th><th scope=\"col\">how many</th><th scope=\"col\">counted</th><th scope=\"col\">why</th></tr></thead>\n<tbody>\n");
    for (purpose, loss) in rows {
        let _ = writeln!(
            out,
            "<tr><th scope=\"row\"><code>{}</code></th><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(purpose),
            words::kind(loss.kind),
            words::unit(loss.unit, loss.count),
            words::span(loss.span),
            escape(&loss.reason)
        );
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

/// The newest batches, each with its answers and its body behind
/// `<details>`.
fn batches(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "<section id=\"batches\">\n<h2>Last batches</h2>\n<p>The newest {} batch(es) first sent in this period, newest first, each with the exact body sent (what <code>consentry history --show BATCH</code> prints).</p>",
        report.batches.len()
    );
    for batch in &report.batches {
        batch_section(out, batch);
    }
    out.push_str("</section>\n");
}

fn batch_section(out: &mut String, batch: &BatchReport) {
    let purposes: Vec<String> = batch
        .purposes
        .iter()
        .map(|(p, n)| format!("<code>{}</code> {n}", escape(p)))
        .collect();
    let _ = writeln!(
        out,
        "<article>\n<h3>Batch <code>{}</code></h3>\n<div class=\"scroll\"><table>\n<tbody>\n<tr><th scope=\"row\">first sent</th><td>{}</td></tr>\n<tr><th scope=\"row\">answer</th><td>{}</td></tr>\n<tr><th scope=\"row\">records</th><td>{} ({})</td></tr>\n<tr><th scope=\"row\">size</th><td>{} sent, {} compressed</td></tr>\n<tr><th scope=\"row\">SHA-256 of the bytes sent</th><td><code>{}</code></td></tr>\n</tbody>\n</table></div>",
        escape(&batch.batch_id),
        escape(&batch.sent_at),
        escape(&answer_line(batch)),
        batch.records,
        if purposes.is_empty() {
            "purposes not recorded in this period".to_owned()
        } else {
            purposes.join(", ")
        },
        batch
            .sent_bytes
            .map_or_else(|| "?".to_owned(), |b| escape(&words::bytes(b))),
        escape(&words::bytes(batch.compressed_bytes)),
        escape(&batch.sha256),
    );
    match &batch.body.text {
        Some(text) => {
            let _ = writeln!(
                out,
                "<details><summary>The body as sent{}</summary>\n<pre><code>{}</code></pre></details>",
                if batch.body.otlp {
                    " (an OTLP protobuf request, shown as OTLP/JSON)"
                } else {
                    ""
                },
                escape(text)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "<p>The body cannot be shown: {}</p>",
                escape(batch.body.reason.as_deref().unwrap_or("unknown"))
            );
        }
    }
    out.push_str("</article>\n");
}

/// "uploaded (200) at …; 1 earlier attempt".
fn answer_line(batch: &BatchReport) -> String {
    let answer = &batch.answer;
    let mut line = answer.event.clone();
    if let Some(status) = answer.status {
        let _ = write!(line, " ({status})");
    }
    if let Some(at) = &answer.at {
        let _ = write!(line, " at {at}");
    }
    if !answer.detail.is_empty() {
        let _ = write!(line, ": {}", answer.detail);
    }
    match batch.attempts.len() {
        0 | 1 => {}
        n => {
            let _ = write!(line, "; {} earlier attempt(s)", n - 1);
        }
    }
    line
}

//! A [`Report`] as Markdown (CommonMark with tables): the same sections
//! as the page, with each purpose's days as a table instead of a chart,
//! and each batch's body in a fenced block. For a terminal, a ticket or a
//! mail; no HTML inside.

use std::fmt::Write;

use super::{BatchReport, Loss, PurposeReport, Report, Unit, chart::receipt_line, words};
use crate::disclosure::markdown::{cell, fence_for, inline, sections};
use crate::disclosure::region_name;

/// The whole document.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "# What consentry sent: {} to {}\n\n{}\n\n",
        report.period.first_day,
        report.period.last_day,
        inline(&words::intro(report))
    );
    for line in words::summary(report) {
        let _ = writeln!(out, "- {}", inline(&line));
    }
    purposes(&mut out, report);
    receipts(&mut out, report);
    losses(&mut out, report);
    batches(&mut out, report);
    let _ = write!(
        out,
        "\n## What may be sent in this region: {} (`{}`)\n\n{}",
        region_name(report.region),
        report.region,
        sections(&report.disclosure, 3)
    );
    let _ = writeln!(
        out,
        "\n---\n\nGenerated at {} by `consentry report` from this computer's own records.",
        report.generated_at
    );
    out
}

fn verdict_word(purpose: &PurposeReport) -> &'static str {
    match &purpose.verdict {
        Some(d) if d.is_allowed() => "allowed",
        Some(_) => "blocked",
        None => "not in the catalogue",
    }
}

fn purposes(out: &mut String, report: &Report) {
    out.push_str("\n## Per purpose\n\n| purpose | now | basis | records sent | bytes sent | queued now | did not leave |\n|---|---|---|--:|--:|--:|--:|\n");
    for purpose in &report.purposes {
        let lost: u64 = purpose.losses.iter().map(|l| l.count).sum();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {lost} |",
            purpose.id,
            verdict_word(purpose),
            purpose.basis.map_or("-", |b| b.as_str()),
            purpose.sent.records,
            words::bytes(purpose.sent.bytes),
            purpose.queued,
        );
    }
    let _ = writeln!(out, "\n{}", words::BYTES_NOTE);
    for purpose in &report.purposes {
        purpose_section(out, purpose);
    }
}

fn purpose_section(out: &mut String, purpose: &PurposeReport) {
    let _ = writeln!(
        out,
        "\n### {} (`{}`)\n",
        inline(
            purpose
                .title
                .as_deref()
                .unwrap_or("a purpose the catalogue no longer has")
        ),
        purpose.id
    );
    let clauses: Vec<String> = purpose.clauses.iter().map(|c| format!("`{c}`")).collect();
    let _ = writeln!(
        out,
        "Legal basis: {}. Allowed by: {}. Now: {} ({}).",
        purpose.basis.map_or("unknown", |b| b.as_str()),
        if clauses.is_empty() {
            "no clause".to_owned()
        } else {
            clauses.join(" or ")
        },
        verdict_word(purpose),
        inline(
            purpose
                .verdict
                .as_ref()
                .map_or("no verdict", |d| d.reason())
        ),
    );
    if purpose.sent.records == 0 {
        let _ = writeln!(out, "\nSent nothing in this period.");
    } else {
        let _ = writeln!(
            out,
            "\n{} in {} batch(es):\n\n| day (UTC) | records | bytes |\n|---|--:|--:|",
            words::unit(Unit::Records, purpose.sent.records),
            purpose.sent.batches
        );
        for day in &purpose.days {
            let _ = writeln!(out, "| {} | {} | {} |", day.day, day.records, day.bytes);
        }
    }
    if purpose.queued > 0 {
        let _ = writeln!(
            out,
            "\n{} queued now.",
            words::unit(Unit::Records, purpose.queued)
        );
    }
    if !purpose.losses.is_empty() {
        out.push_str("\n| did not leave | how many | counted | why |\n|---|--:|---|---|\n");
        for loss in &purpose.losses {
            loss_row(out, None, loss);
        }
    }
}

fn loss_row(out: &mut String, purpose: Option<&str>, loss: &Loss) {
    let first = purpose.map_or(String::new(), |p| format!("| `{p}` "));
    let _ = writeln!(
        out,
        "{first}| {} | {} | {} | {} |",
        words::kind(loss.kind),
        words::unit(loss.unit, loss.count),
        words::span(loss.span),
        cell(&loss.reason)
    );
}

fn receipts(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "\n## Consent events\n\n{} in this period; {} earlier (`consentry consent history` lists every one).",
        report.receipts.len(),
        report.receipts_before
    );
    if !report.receipts.is_empty() {
        out.push('\n');
        for receipt in &report.receipts {
            let _ = writeln!(
                out,
                "- {} (receipt `{}`)",
                inline(&receipt_line(receipt)),
                receipt.receipt_id
            );
        }
    }
}

fn losses(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "\n## What did not leave\n\n{}",
        inline(&words::door(report))
    );
    let rows = report.losses();
    if rows.is_empty() {
        out.push_str("\nNothing was dropped, dead-lettered, purged or refused.\n");
        return;
    }
    out.push_str("\n| purpose | what | how many | counted | why |\n|---|---|--:|---|---|\n");
    for (purpose, loss) in rows {
        loss_row(out, Some(purpose), loss);
    }
}

fn batches(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "\n## Last batches\n\nThe newest {} batch(es) first sent in this period, newest first, each with the exact body sent (what `consentry history --show BATCH` prints).",
        report.batches.len()
    );
    for batch in &report.batches {
        batch_section(out, batch);
    }
}

fn batch_section(out: &mut String, batch: &BatchReport) {
    let purposes: Vec<String> = batch
        .purposes
        .iter()
        .map(|(p, n)| format!("`{p}` {n}"))
        .collect();
    let answer = &batch.answer;
    let _ = writeln!(
        out,
        "\n### Batch `{}`\n\n| | |\n|---|---|\n| first sent | {} |\n| answer | {}{} {} |\n| attempts | {} |\n| records | {} ({}) |\n| size | {} sent, {} compressed |\n| SHA-256 of the bytes sent | `{}` |",
        batch.batch_id,
        batch.sent_at,
        answer.event,
        answer.status.map_or(String::new(), |s| format!(" ({s})")),
        cell(&answer.detail),
        batch.attempts.len(),
        batch.records,
        if purposes.is_empty() {
            "purposes not recorded in this period".to_owned()
        } else {
            purposes.join(", ")
        },
        batch
            .sent_bytes
            .map_or_else(|| "?".to_owned(), words::bytes),
        words::bytes(batch.compressed_bytes),
        batch.sha256,
    );
    match &batch.body.text {
        Some(text) => {
            let fence = fence_for(text);
            let _ = writeln!(
                out,
                "\nThe body as sent{}:\n\n{fence}json\n{}\n{fence}",
                if batch.body.otlp {
                    " (an OTLP protobuf request, shown as OTLP/JSON)"
                } else {
                    ""
                },
                text.trim_end_matches('\n')
            );
        }
        None => {
            let _ = writeln!(
                out,
                "\nThe body cannot be shown: {}",
                inline(batch.body.reason.as_deref().unwrap_or("unknown"))
            );
        }
    }
}

//! The report's charts as inline SVG: a purpose's records and bytes per
//! day (two bar panels), and the consent receipts on the same time axis.
//! Every chart is one `<svg role="img">` with a `<title>` and a `<desc>`
//! that says in words what it draws; colours come from the page's CSS
//! classes (so they follow the colour scheme and print), and every receipt
//! mark carries a letter as well as a colour. No `xmlns`, no link, no
//! font: the page's inline SVG needs none.

use std::fmt::Write;

use super::{Day, PurposeReport, ReceiptEvent, Report, seconds_of, words};
use crate::disclosure::html::escape;

/// The drawing's width in SVG units (it scales to the page).
const WIDTH: f64 = 720.0;
/// Room for the value labels on the left.
const LEFT: f64 = 70.0;
const RIGHT: f64 = 12.0;
const PLOT: f64 = WIDTH - LEFT - RIGHT;
/// Room above the bars for the receipt marks' letters.
const MARKS: f64 = 18.0;
/// One bar panel's height.
const PANEL: f64 = 78.0;
const GAP: f64 = 16.0;
/// Room below for the dates.
const DATES: f64 = 26.0;
/// The room one receipt letter takes.
const LETTER: f64 = 10.0;
/// Most date labels under an axis (more would overlap on a phone).
const MAX_DATE_LABELS: u64 = 8;

/// The period's time axis.
#[derive(Debug, Clone, Copy)]
struct Axis {
    first: Day,
    days: u64,
}

impl Axis {
    fn of(report: &Report) -> Self {
        Self {
            first: report.period.first_day,
            days: report.period.days.max(1),
        }
    }

    /// x of a moment, in seconds since the epoch (clamped to the axis).
    fn x(&self, at: u64) -> f64 {
        let span = (self.days * 86_400) as f64;
        let offset = at.saturating_sub(self.first.start()) as f64;
        LEFT + PLOT * (offset / span).min(1.0)
    }

    /// x of the start of `day`.
    fn x_day(&self, day: Day) -> f64 {
        self.x(day.start())
    }

    fn bar_width(&self) -> f64 {
        let slot = PLOT / self.days as f64;
        (slot * 0.8).max(0.6)
    }

    /// The days that get a date label.
    fn labelled(&self) -> impl Iterator<Item = Day> + use<> {
        let step = self.days.div_ceil(MAX_DATE_LABELS).max(1);
        let first = self.first.0;
        (0..self.days)
            .step_by(step as usize)
            .map(move |n| Day(first + n))
    }
}

/// A purpose's records and bytes per day, with the receipts that concern
/// it marked where they happened.
pub(super) fn purpose_chart(report: &Report, purpose: &PurposeReport) -> String {
    let axis = Axis::of(report);
    let id = format!("chart-{}", escape(&purpose.id));
    let height = MARKS + 2.0 * PANEL + GAP + DATES;
    let mut out = open(&id, height, &format!("What {} sent per day", purpose.id));
    let _ = writeln!(
        out,
        "<desc id=\"{id}-d\">{}</desc>",
        escape(&describe(report, purpose))
    );
    let records: Vec<(Day, u64)> = purpose.days.iter().map(|d| (d.day, d.records)).collect();
    let bytes: Vec<(Day, u64)> = purpose.days.iter().map(|d| (d.day, d.bytes)).collect();
    panel(&mut out, &axis, MARKS, "records", "rec", &records, |n| {
        n.to_string()
    });
    let second = MARKS + PANEL + GAP;
    panel(
        &mut out,
        &axis,
        second,
        "bytes",
        "byt",
        &bytes,
        words::bytes,
    );
    let concerning: Vec<&ReceiptEvent> = report
        .receipts
        .iter()
        .filter(|r| r.concerns(&purpose.id))
        .collect();
    marks(&mut out, &axis, &concerning, MARKS, second + PANEL);
    dates(&mut out, &axis, second + PANEL);
    out.push_str("</svg>\n");
    out
}

/// Every receipt of the period on the period's axis.
pub(super) fn timeline(report: &Report) -> String {
    let axis = Axis::of(report);
    let line = MARKS + 26.0;
    let mut out = open(
        "chart-receipts",
        line + DATES,
        "Consent events over the period",
    );
    let _ = writeln!(
        out,
        "<desc id=\"chart-receipts-d\">{}</desc>",
        escape(&describe_receipts(report))
    );
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{line}\" x2=\"{:.1}\" y2=\"{line}\"/>",
        LEFT + PLOT
    );
    let all: Vec<&ReceiptEvent> = report.receipts.iter().collect();
    marks(&mut out, &axis, &all, MARKS, line);
    dates(&mut out, &axis, line);
    out.push_str("</svg>\n");
    out
}

fn open(id: &str, height: f64, title: &str) -> String {
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {height}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\">\n<title id=\"{id}-t\">{}</title>\n",
        escape(title)
    )
}

/// One panel of bars from `top`, scaled to its largest value, labelled on
/// the left; each bar has its day and value as a tooltip.
fn panel(
    out: &mut String,
    axis: &Axis,
    top: f64,
    name: &str,
    class: &str,
    values: &[(Day, u64)],
    label: impl Fn(u64) -> String,
) {
    let max = values.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let bottom = top + PANEL;
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{:.1}\" y2=\"{bottom}\"/>\n<text class=\"label\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n<text class=\"label\" x=\"{:.1}\" y=\"{bottom}\" text-anchor=\"end\">{name}</text>",
        LEFT + PLOT,
        LEFT - 6.0,
        top + 10.0,
        escape(&label(max)),
        LEFT - 6.0,
    );
    let width = axis.bar_width();
    for (day, value) in values.iter().filter(|(_, v)| *v > 0) {
        let height = (PANEL - 12.0) * *value as f64 / max.max(1) as f64;
        let height = height.max(1.5);
        let _ = writeln!(
            out,
            "<rect class=\"bar {class}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{width:.2}\" height=\"{height:.2}\"><title>{day}: {}</title></rect>",
            axis.x_day(*day) + (PLOT / axis.days as f64 - width) / 2.0,
            bottom - height,
            escape(&format!("{} {name}", label(*value))),
        );
    }
}

/// A vertical line per receipt from `top` to `bottom`, its letter above
/// (letters of receipts close together are set side by side).
fn marks(out: &mut String, axis: &Axis, receipts: &[&ReceiptEvent], top: f64, bottom: f64) {
    let mut placed: Vec<(&ReceiptEvent, f64)> = receipts
        .iter()
        .filter_map(|r| Some((*r, axis.x(seconds_of(&r.at)?))))
        .collect();
    placed.sort_by(|a, b| a.1.total_cmp(&b.1));
    let xs: Vec<f64> = placed.iter().map(|(_, x)| *x).collect();
    for ((receipt, x), label) in placed.iter().zip(letter_positions(&xs)) {
        let class = format!("ev-{}", receipt.event.as_str());
        let _ = writeln!(
            out,
            "<g class=\"mark {class}\"><title>{}</title><line x1=\"{x:.2}\" y1=\"{:.1}\" x2=\"{x:.2}\" y2=\"{bottom}\"/><text x=\"{label:.2}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>",
            escape(&receipt_line(receipt)),
            top - 2.0,
            top - 5.0,
            words::mark(receipt.event),
        );
    }
}

/// Where the letters of marks at `xs` (in order) go: at their mark, but at
/// least [`LETTER`] apart and inside the drawing.
fn letter_positions(xs: &[f64]) -> Vec<f64> {
    let mut at: Vec<f64> = Vec::with_capacity(xs.len());
    for x in xs {
        let x = at.last().map_or(*x, |previous| x.max(previous + LETTER));
        at.push(x);
    }
    // Pushed past the right edge: move back, keeping the spacing.
    let mut limit = WIDTH - LETTER;
    for x in at.iter_mut().rev() {
        *x = x.min(limit);
        limit = *x - LETTER;
    }
    at
}

/// Date labels under the axis at `y`.
fn dates(out: &mut String, axis: &Axis, y: f64) {
    for day in axis.labelled() {
        let x = axis.x_day(day) + PLOT / axis.days as f64 / 2.0;
        let _ = writeln!(
            out,
            "<text class=\"label\" x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            y + 16.0,
            &day.to_string()[5..]
        );
    }
}

/// A receipt in one line: when, what, by what means.
pub(super) fn receipt_line(receipt: &ReceiptEvent) -> String {
    let subject = match (&receipt.clause, receipt.version) {
        (Some(clause), Some(version)) => format!("{clause} v{version}"),
        (Some(clause), None) => clause.clone(),
        _ => receipt.purposes.join(", "),
    };
    format!(
        "{} {}: {subject} ({} -> {}; {}, {})",
        receipt.at,
        words::event(receipt.event),
        receipt.previous_state,
        receipt.new_state,
        receipt.method,
        if receipt.declared {
            "declared"
        } else {
            "observed"
        }
    )
}

/// The chart in words: the totals, the busiest day, the receipts marked.
fn describe(report: &Report, purpose: &PurposeReport) -> String {
    let mut text = format!(
        "Bars: records (top) and bytes before compression (bottom) that {} sent per day, from {} to {}. In all {} and {} on {} day(s).",
        purpose.id,
        report.period.first_day,
        report.period.last_day,
        words::unit(super::Unit::Records, purpose.sent.records),
        words::bytes(purpose.sent.bytes),
        purpose.days.len()
    );
    if let Some(busiest) = purpose
        .days
        .iter()
        .max_by_key(|d| (d.records, std::cmp::Reverse(d.day)))
    {
        let _ = write!(
            text,
            " The most on {}: {}.",
            busiest.day,
            words::unit(super::Unit::Records, busiest.records)
        );
    }
    let marked: Vec<String> = report
        .receipts
        .iter()
        .filter(|r| r.concerns(&purpose.id))
        .map(receipt_line)
        .collect();
    if !marked.is_empty() {
        let _ = write!(text, " Consent events marked: {}.", marked.join("; "));
    }
    text.push_str(" The same numbers are in the table below the chart.");
    text
}

fn describe_receipts(report: &Report) -> String {
    if report.receipts.is_empty() {
        return format!(
            "No consent event from {} to {}.",
            report.period.first_day, report.period.last_day
        );
    }
    let lines: Vec<String> = report.receipts.iter().map(receipt_line).collect();
    format!(
        "Consent events from {} to {}, each a line at its time with a letter (G granted, W withdrawn, R renewed, D declined, P policy, C region): {}. The table below lists them.",
        report.period.first_day,
        report.period.last_day,
        lines.join("; ")
    )
}

//! Text layout for the verbs a person reads (`status`, `consent list`): an
//! aligned table, one row per item, and a block of `label  value` lines
//! under it. The layout is pure (rows in, lines out, the width a
//! parameter), so every width is tested without a terminal; only
//! `Style::detect` looks at the environment.
//!
//! The rules, in one place:
//! - A table's free-text column (a reason, a title) stays on the row when
//!   every row's text fits the width; otherwise every row's text goes on
//!   its own indented line below the row, so the columns never break.
//! - On a terminal, lines are cut to the width with `…` (block values are
//!   wrapped instead: a store fault is not something to cut short). Off a
//!   terminal (a pipe, a file, a test), the full text is printed: scripts
//!   and logs get every word, on one line per item.
//! - Colour only when `colour_on` says so; the marks (`✔`/`✘`) do not
//!   depend on colour, so allowed and blocked stay apart without it. They
//!   fall back to ASCII (`+`/`x`, `...`) when the locale is not UTF-8,
//!   where `✔` would print as mojibake.
//!
//! Width is counted in `char`s: every catalogue id, basis and mark here is
//! one column per `char`; free text with double-width characters may
//! overrun on a terminal, which costs a wrapped line, not a wrong answer.
//!
//! This module never decides what a cell says; callers build the rows.

use std::io::IsTerminal;

/// Spaces between columns.
const GAP: usize = 2;
/// How far a free-text line below its row is indented.
const INDENT: usize = 4;
/// The width when `COLUMNS` is unset or unreadable: the classic terminal.
pub const DEFAULT_WIDTH: usize = 80;

/// How a piece of text is meant to look: a colour when colour is on, and
/// a mark before a verdict either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// Headers.
    Strong,
    /// Allowed, accepted, running.
    Good,
    /// Blocked, a fault, a rejected reload.
    Bad,
    /// Needs attention but is not a failure (a renewal).
    Warn,
}

/// One cell of a table row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub tone: Tone,
}

impl Cell {
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            tone: Tone::Plain,
        }
    }
}

/// One item: its cells (one per header) and its free text (a reason, a
/// title), which is shown inline or below the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub cells: Vec<Cell>,
    pub detail: Vec<String>,
}

/// Where a table's free text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// As the last column when every row's text fits; below otherwise.
    InlineIfFits,
    /// Always on indented lines below the row (titles that run long).
    Below,
}

/// A table: the headers of its aligned columns, the header of its free
/// text (used when inline), and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<&'static str>,
    pub detail_header: &'static str,
    pub detail: Detail,
    pub rows: Vec<Row>,
}

/// One line of the block under a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Empty to continue the entry above (a second purpose's count).
    pub label: &'static str,
    pub value: String,
    pub tone: Tone,
}

impl Entry {
    pub fn new(label: &'static str, value: impl Into<String>) -> Self {
        Self {
            label,
            value: value.into(),
            tone: Tone::Plain,
        }
    }

    pub fn tone(self, tone: Tone) -> Self {
        Self { tone, ..self }
    }
}

/// Where the text goes and what it can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Columns available (`COLUMNS`, else 80).
    pub width: usize,
    /// Cut or wrap lines to `width` (stdout is a terminal).
    pub fit: bool,
    /// ANSI colour and bold.
    pub colour: bool,
    /// `✔`, `✘` and `…`; ASCII stand-ins otherwise.
    pub unicode: bool,
}

impl Style {
    /// The style for stdout as it is now.
    pub fn detect() -> Self {
        let stdout = std::io::stdout();
        let var = |name| std::env::var(name).ok();
        Self {
            width: width_from(var("COLUMNS").as_deref()),
            fit: stdout.is_terminal(),
            colour: super::colour_on(&stdout),
            unicode: utf8_locale(var("LC_ALL"), var("LC_CTYPE"), var("LANG")),
        }
    }

    /// A verdict cell: its mark, then its word (`✔ allowed`).
    pub fn verdict(&self, tone: Tone, word: &str) -> Cell {
        let mark = match (tone, self.unicode) {
            (Tone::Good, true) => "✔",
            (Tone::Good, false) => "+",
            (Tone::Bad, true) => "✘",
            (Tone::Bad, false) => "x",
            (Tone::Warn, _) => "!",
            (Tone::Plain | Tone::Strong, _) => "-",
        };
        Cell {
            text: format!("{mark} {word}"),
            tone,
        }
    }

    fn ellipsis(&self) -> &'static str {
        if self.unicode { "…" } else { "..." }
    }
}

/// `COLUMNS` as a width: a positive number, else the default.
pub fn width_from(columns: Option<&str>) -> usize {
    columns
        .and_then(|text| text.trim().parse().ok())
        .filter(|&width: &usize| width > 0)
        .unwrap_or(DEFAULT_WIDTH)
}

/// Whether the locale's character set is UTF-8, by the POSIX order of
/// precedence: the first of `LC_ALL`, `LC_CTYPE`, `LANG` that is set and
/// not empty decides. None set is the C locale: ASCII.
pub fn utf8_locale(lc_all: Option<String>, lc_ctype: Option<String>, lang: Option<String>) -> bool {
    [lc_all, lc_ctype, lang]
        .into_iter()
        .flatten()
        .find(|value| !value.is_empty())
        .is_some_and(|value| {
            let value = value.to_ascii_lowercase();
            value.contains("utf-8") || value.contains("utf8")
        })
}

fn width_of(text: &str) -> usize {
    text.chars().count()
}

/// A run of text with one tone; a line is a list of them.
type Segment = (String, Tone);

/// Lays out `table` for `style`: a header line, then each row, with its
/// free text inline or below.
pub fn render(table: &Table, style: &Style) -> Vec<String> {
    let columns = table.header.len();
    let mut widths: Vec<usize> = table.header.iter().map(|h| width_of(h)).collect();
    for row in &table.rows {
        debug_assert_eq!(row.cells.len(), columns, "one cell per header");
        for (width, cell) in widths.iter_mut().zip(&row.cells) {
            *width = (*width).max(width_of(&cell.text));
        }
    }
    let fixed = widths.iter().sum::<usize>() + GAP * columns.saturating_sub(1);
    let longest = table
        .rows
        .iter()
        .map(|row| row.detail.iter().map(|d| width_of(d)).max().unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(width_of(table.detail_header));
    let inline = table.detail == Detail::InlineIfFits
        && table.rows.iter().all(|row| row.detail.len() <= 1)
        && fixed + GAP + longest <= style.width;

    let mut lines = Vec::with_capacity(table.rows.len() * 2 + 1);
    let mut header: Vec<Cell> = table
        .header
        .iter()
        .map(|h| Cell {
            text: (*h).to_owned(),
            tone: Tone::Strong,
        })
        .collect();
    if inline {
        header.push(Cell {
            text: table.detail_header.to_owned(),
            tone: Tone::Strong,
        });
    }
    lines.push(finish(aligned(&header, &widths), style));
    if !inline && !table.detail_header.is_empty() {
        let text = format!("{:INDENT$}{}", "", table.detail_header);
        lines.push(finish(vec![(text, Tone::Strong)], style));
    }
    for row in &table.rows {
        let mut cells = row.cells.clone();
        if inline && let Some(detail) = row.detail.first() {
            cells.push(Cell::plain(detail.clone()));
        }
        lines.push(finish(aligned(&cells, &widths), style));
        if !inline {
            for detail in &row.detail {
                let text = format!("{:INDENT$}{detail}", "");
                lines.push(finish(vec![(text, Tone::Plain)], style));
            }
        }
    }
    lines
}

/// Cells padded to their column widths, with no padding after the last.
fn aligned(cells: &[Cell], widths: &[usize]) -> Vec<Segment> {
    let mut segments = Vec::with_capacity(cells.len() * 2);
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            let pad = widths[i - 1].saturating_sub(width_of(&cells[i - 1].text)) + GAP;
            segments.push((" ".repeat(pad), Tone::Plain));
        }
        segments.push((cell.text.clone(), cell.tone));
    }
    segments
}

/// Lays out the block under a table: labels in one column, values beside
/// them; on a terminal, a long value wraps under itself.
pub fn render_block(entries: &[Entry], style: &Style) -> Vec<String> {
    let label_width = entries.iter().map(|e| width_of(e.label)).max().unwrap_or(0) + GAP;
    let room = style.width.saturating_sub(label_width);
    let mut lines = Vec::new();
    for entry in entries {
        let pieces = if style.fit && width_of(&entry.value) > room {
            wrap(&entry.value, room)
        } else {
            vec![entry.value.clone()]
        };
        for (i, piece) in pieces.into_iter().enumerate() {
            let label = if i == 0 { entry.label } else { "" };
            let pad = label_width - width_of(label);
            let segments = vec![
                (label.to_owned(), Tone::Strong),
                (" ".repeat(pad), Tone::Plain),
                (piece, entry.tone),
            ];
            lines.push(finish(segments, style));
        }
    }
    lines
}

/// Words into lines of at most `room` columns (a longer word gets a line of
/// its own, which `finish` cuts).
fn wrap(text: &str, room: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && width_of(&line) + 1 + width_of(word) > room {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// One line out: cut to the width with an ellipsis when fitting, then
/// painted when colour is on (after cutting, so no escape is ever cut).
fn finish(segments: Vec<Segment>, style: &Style) -> String {
    let segments = if style.fit {
        cut(segments, style.width, style.ellipsis())
    } else {
        segments
    };
    let mut line = String::new();
    for (text, tone) in &segments {
        let code = match tone {
            _ if !style.colour || text.trim().is_empty() => None,
            Tone::Plain => None,
            Tone::Strong => Some("1"),
            Tone::Good => Some("32"),
            Tone::Bad => Some("31"),
            Tone::Warn => Some("33"),
        };
        match code {
            Some(code) => line.push_str(&format!("\x1b[{code}m{text}\x1b[0m")),
            None => line.push_str(text),
        }
    }
    line.trim_end().to_owned()
}

/// `segments` cut so that they and the ellipsis fit in `width`.
fn cut(segments: Vec<Segment>, width: usize, ellipsis: &str) -> Vec<Segment> {
    let total: usize = segments.iter().map(|(text, _)| width_of(text)).sum();
    if total <= width {
        return segments;
    }
    let mut room = width.saturating_sub(width_of(ellipsis));
    let mut out = Vec::new();
    for (text, tone) in segments {
        let kept: String = text.chars().take(room).collect();
        room -= width_of(&kept);
        let full = kept.len() == text.len();
        out.push((kept, tone));
        if !full {
            // The ellipsis takes the tone of the text it stands for.
            out.push((ellipsis.to_owned(), tone));
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(width: usize, fit: bool) -> Style {
        Style {
            width,
            fit,
            colour: false,
            unicode: true,
        }
    }

    /// What `status` builds: purpose, verdict, basis, and a reason.
    fn decisions(style: &Style, reasons: &[&str]) -> Table {
        let rows = reasons
            .iter()
            .enumerate()
            .map(|(i, reason)| Row {
                cells: vec![
                    Cell::plain(["activation", "secure_connection_scanning"][i % 2]),
                    match i % 2 {
                        0 => style.verdict(Tone::Good, "allowed"),
                        _ => style.verdict(Tone::Bad, "blocked"),
                    },
                    Cell::plain(["contract", "legitimate_interest"][i % 2]),
                ],
                detail: vec![(*reason).to_owned()],
            })
            .collect();
        Table {
            header: vec!["PURPOSE", "VERDICT", "BASIS"],
            detail_header: "REASON",
            detail: Detail::InlineIfFits,
            rows,
        }
    }

    const LONG: &str = "no clause allowing it applies in region us-ca, and the consent file \
                        has not been readable since the last reload";

    fn widths(lines: &[String]) -> Vec<usize> {
        lines.iter().map(|l| width_of(l)).collect()
    }

    #[test]
    fn short_reasons_stay_inline_and_columns_line_up() {
        let style = style(80, false);
        let lines = render(&decisions(&style, &["eula accepted", "not here"]), &style);
        assert_eq!(
            lines,
            [
                "PURPOSE                     VERDICT    BASIS                REASON",
                "activation                  ✔ allowed  contract             eula accepted",
                "secure_connection_scanning  ✘ blocked  legitimate_interest  not here",
            ]
        );
    }

    #[test]
    fn every_line_fits_80_and_60_columns_on_a_terminal() {
        for width in [80, 60] {
            let style = style(width, true);
            let table = decisions(&style, &["eula accepted at version 3", LONG, "short"]);
            let lines = render(&table, &style);
            assert!(lines.len() > 3, "{lines:?}");
            for line in &lines {
                assert!(width_of(line) <= width, "{width}: {line:?}");
            }
            let block = render_block(
                &[
                    Entry::new("daemon", "running (pid 7), 3 record(s) queued"),
                    Entry::new("store", LONG).tone(Tone::Bad),
                ],
                &style,
            );
            assert!(block.len() > 2, "a long value wraps: {block:?}");
            assert!(widths(&block).iter().all(|&w| w <= width), "{block:?}");
        }
    }

    #[test]
    fn reasons_too_long_for_the_row_go_below_it_cut_with_an_ellipsis() {
        let style = style(60, true);
        let lines = render(&decisions(&style, &["eula accepted", LONG]), &style);
        assert_eq!(lines[0], "PURPOSE                     VERDICT    BASIS");
        assert_eq!(lines[1], "    REASON");
        assert_eq!(lines[3], "    eula accepted");
        let cut = &lines[5];
        assert!(cut.starts_with("    no clause allowing"), "{cut:?}");
        assert!(cut.ends_with('…'), "{cut:?}");
        assert_eq!(width_of(cut), 60, "{cut:?}");
    }

    #[test]
    fn off_a_terminal_the_full_text_is_printed() {
        let style = style(60, false);
        let lines = render(&decisions(&style, &[LONG]), &style);
        assert_eq!(lines[3], format!("    {LONG}"));
        let block = render_block(&[Entry::new("store", LONG)], &style);
        assert_eq!(block, [format!("store  {LONG}")]);
    }

    #[test]
    fn block_labels_line_up_and_long_values_wrap_under_themselves() {
        let style = style(40, true);
        let lines = render_block(
            &[
                Entry::new("daemon", "not running"),
                Entry::new("dead letters", "2 record(s) that will not be sent"),
                Entry::new("", "continued"),
            ],
            &style,
        );
        assert_eq!(
            lines,
            [
                "daemon        not running",
                "dead letters  2 record(s) that will not",
                "              be sent",
                "              continued",
            ]
        );
    }

    #[test]
    fn titles_below_their_rows_even_when_short() {
        let style = style(80, false);
        let table = Table {
            header: vec!["CLAUSE", "STATE"],
            detail_header: "",
            detail: Detail::Below,
            rows: vec![Row {
                cells: vec![
                    Cell::plain("ksn"),
                    style.verdict(Tone::Warn, "renewal needed"),
                ],
                detail: vec!["Security Network".into(), "accepted at 2".into()],
            }],
        };
        assert_eq!(
            render(&table, &style),
            [
                "CLAUSE  STATE",
                "ksn     ! renewal needed",
                "    Security Network",
                "    accepted at 2",
            ]
        );
    }

    #[test]
    fn colour_only_when_on_and_never_inside_a_cut() {
        let plain = style(60, true);
        let table = decisions(&plain, &["eula accepted", LONG]);
        let mut lines = render(&table, &plain);
        lines.extend(render_block(&[Entry::new("store", LONG)], &plain));
        assert!(lines.iter().all(|l| !l.contains('\x1b')), "{lines:?}");

        let colour = Style {
            colour: true,
            ..plain
        };
        let lines = render(&table, &colour);
        assert!(
            lines[0].starts_with("\x1b[1mPURPOSE\x1b[0m"),
            "{:?}",
            lines[0]
        );
        assert!(
            lines[2].contains("\x1b[32m✔ allowed\x1b[0m"),
            "{:?}",
            lines[2]
        );
        assert!(
            lines[4].contains("\x1b[31m✘ blocked\x1b[0m"),
            "{:?}",
            lines[4]
        );
        // The visible text is the same as without colour.
        let strip = |line: &str| {
            line.replace("\x1b[0m", "")
                .replace("\x1b[1m", "")
                .replace("\x1b[31m", "")
                .replace("\x1b[32m", "")
        };
        let uncoloured = render(&table, &plain);
        for (line, expected) in lines.iter().zip(&uncoloured) {
            assert_eq!(&strip(line), expected);
        }
    }

    #[test]
    fn ascii_marks_outside_a_utf8_locale() {
        let ascii = Style {
            unicode: false,
            ..style(30, true)
        };
        assert_eq!(ascii.verdict(Tone::Good, "allowed").text, "+ allowed");
        assert_eq!(ascii.verdict(Tone::Bad, "blocked").text, "x blocked");
        let lines = render(&decisions(&ascii, &[LONG]), &ascii);
        assert!(
            lines.iter().all(|l| l.is_ascii() && l.len() <= 30),
            "{lines:?}"
        );
        assert!(lines[3].ends_with("..."), "{lines:?}");
    }

    #[test]
    fn locale_and_width_from_the_environment() {
        let s = |v: &str| Some(v.to_owned());
        assert!(utf8_locale(None, None, s("en_GB.UTF-8")));
        assert!(utf8_locale(s(""), None, s("de_DE.utf8")));
        assert!(!utf8_locale(s("C"), None, s("en_GB.UTF-8")), "LC_ALL wins");
        assert!(!utf8_locale(None, None, None));
        assert_eq!(width_from(Some("120")), 120);
        assert_eq!(width_from(Some("0")), DEFAULT_WIDTH);
        assert_eq!(width_from(Some("wide")), DEFAULT_WIDTH);
        assert_eq!(width_from(None), DEFAULT_WIDTH);
    }
}

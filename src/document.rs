//! TOML documents read from disk (or embedded), and errors that point into them.
//!
//! Every file consentry reads that a person may edit (agent config, catalogue,
//! consent file) goes through [`Document`], so that every error names the
//! file, the line and the column, and says what is wrong. This module owns
//! position arithmetic only; it never decides what a document means.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Where a document came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// A default compiled into the binary, named for the reader.
    Embedded(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Embedded(name) => write!(f, "<embedded {name}>"),
        }
    }
}

/// One problem at one place in a document: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub origin: Origin,
    /// 1-based line; 0 when the problem has no single place (a missing key).
    pub line: usize,
    /// 1-based column in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, self.line, self.column, self.message
            )
        }
    }
}

/// All the problems found in one document, reported together so that a
/// person fixes them in one pass (linkerd's habit: collect, then report).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problems(pub Vec<Located>);

/// Problems shown in one message; the rest are counted, so a file with
/// thousands of broken records still gives a readable one-line error.
const PROBLEMS_SHOWN: usize = 20;

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().take(PROBLEMS_SHOWN).enumerate() {
            if index > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        if self.0.len() > PROBLEMS_SHOWN {
            write!(f, "; and {} more", self.0.len() - PROBLEMS_SHOWN)?;
        }
        Ok(())
    }
}

/// Why a document could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(#[from] Problems),
}

/// The text of a TOML document and where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub origin: Origin,
    pub text: String,
}

impl Document {
    /// Reads a file; the error names the path and the OS reason.
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            origin: Origin::File(path.to_path_buf()),
            text,
        })
    }

    pub fn embedded(name: &'static str, text: &'static str) -> Self {
        Self {
            origin: Origin::Embedded(name),
            text: text.to_owned(),
        }
    }

    /// Deserializes the whole document; a syntax or shape error becomes one
    /// located problem.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, Problems> {
        toml::from_str(&self.text).map_err(|err| {
            let message = err.message().trim().to_owned();
            Problems(vec![self.problem(err.span(), message)])
        })
    }

    /// A problem at a byte span of this document (or at no place).
    pub fn problem(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Located {
        let (line, column) = match span {
            Some(span) => line_column(&self.text, span.start),
            None => (0, 0),
        };
        Located {
            origin: self.origin.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl Document {
    /// Many problems at once, located in one pass over the text (locating
    /// each on its own would scan the text once per problem: quadratic in a
    /// large file full of mistakes).
    pub fn problems_at(&self, found: Vec<(Option<Range<usize>>, String)>) -> Vec<Located> {
        let mut order: Vec<usize> = (0..found.len()).collect();
        let offset = |i: usize| found[i].0.as_ref().map(|span| span.start);
        order.sort_by_key(|&i| offset(i));
        let mut places = vec![(0, 0); found.len()];
        let (mut line, mut line_start, mut scanned) = (1usize, 0usize, 0usize);
        for i in order {
            let Some(target) = offset(i) else { continue };
            let target = floor_char_boundary(&self.text, target.min(self.text.len()));
            for (at, byte) in self.text.as_bytes()[scanned..target].iter().enumerate() {
                if *byte == b'\n' {
                    line += 1;
                    line_start = scanned + at + 1;
                }
            }
            scanned = target.max(scanned);
            let column = self.text[line_start..target].chars().count() + 1;
            places[i] = (line, column);
        }
        found
            .into_iter()
            .zip(places)
            .map(|((_, message), (line, column))| Located {
                origin: self.origin.clone(),
                line,
                column,
                message,
            })
            .collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_located_together_match_one_by_one() {
        let document = Document {
            origin: Origin::Embedded("t"),
            text: "a = 1\nbé = 2\n\nccc = 3\n".into(),
        };
        let offsets = [14, 0, 7, 9, 14, 3];
        let found = offsets
            .iter()
            .map(|&o| (Some(o..o + 1), format!("at {o}")))
            .chain([(None, "nowhere".to_owned())])
            .collect();
        let located = document.problems_at(found);
        for (problem, &offset) in located.iter().zip(&offsets) {
            assert_eq!(
                (problem.line, problem.column),
                line_column(&document.text, offset),
                "{offset}"
            );
            assert_eq!(problem.message, format!("at {offset}"));
        }
        assert_eq!((located[6].line, located[6].column), (0, 0));
    }

    #[test]
    fn a_thousand_problems_make_one_readable_line() {
        let problem = Located {
            origin: Origin::Embedded("t"),
            line: 1,
            column: 1,
            message: "bad".into(),
        };
        let text = Problems(vec![problem; 1000]).to_string();
        assert!(text.ends_with("; and 980 more"), "{text}");
        assert!(text.len() < 2000);
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, 8), (2, 3));
    }

    #[test]
    fn line_column_survives_multibyte_text() {
        let text = "é = 1\nx";
        // byte 1 is inside 'é': clamp to its start rather than panic
        assert_eq!(line_column(text, 1), (1, 1));
        assert_eq!(line_column(text, 2), (1, 2));
    }

    #[test]
    fn syntax_error_names_file_line_and_column() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Anything {
            a: i64,
        }
        let doc = Document {
            origin: Origin::File("/etc/x.toml".into()),
            text: "a = 1\nb = = 2\n".into(),
        };
        let err = doc.parse::<Anything>().unwrap_err().to_string();
        assert!(err.starts_with("/etc/x.toml:2:"), "{err}");
    }
}

//! Side-by-side diffs of two versions, file by file: lines for text (via `similar`), a size
//! and hash summary for binary files.

use similar::{ChangeTag, TextDiff};

/// One line pair of a side-by-side diff.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Left line number and text, if this row has a left side.
    pub left: Option<(usize, String)>,
    /// Right line number and text.
    pub right: Option<(usize, String)>,
    /// Whether the row differs.
    pub changed: bool,
}

/// How one file differs.
#[derive(Clone, Debug, PartialEq)]
pub enum FileDiff {
    /// Same content on both sides.
    Same,
    /// Text on both sides: aligned rows (unchanged runs shortened to context).
    Text(Vec<Line>),
    /// Binary (or not UTF-8) on at least one side.
    Binary {
        /// Left size, if present.
        left: Option<u64>,
        /// Right size, if present.
        right: Option<u64>,
    },
}

/// Lines of context kept around each change.
const CONTEXT: usize = 3;

/// Compares two file contents (None: absent on that side).
pub fn diff(a: Option<&[u8]>, b: Option<&[u8]>) -> FileDiff {
    if a == b {
        return FileDiff::Same;
    }
    let ta = a.map(std::str::from_utf8);
    let tb = b.map(std::str::from_utf8);
    let (ta, tb) = match (ta, tb) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => {
            return FileDiff::Binary {
                left: a.map(|x| x.len() as u64),
                right: b.map(|x| x.len() as u64),
            };
        }
        (x, y) => (
            x.and_then(Result::ok).unwrap_or(""),
            y.and_then(Result::ok).unwrap_or(""),
        ),
    };
    let d = TextDiff::from_lines(ta, tb);
    let mut rows = Vec::new();
    for group in d.grouped_ops(CONTEXT) {
        if !rows.is_empty() {
            rows.push(Line {
                left: None,
                right: None,
                changed: false,
            });
        }
        // Pair deletions with insertions inside each change, so edits line up.
        let mut dels: Vec<(usize, String)> = Vec::new();
        let mut adds: Vec<(usize, String)> = Vec::new();
        let flush = |rows: &mut Vec<Line>,
                     dels: &mut Vec<(usize, String)>,
                     adds: &mut Vec<(usize, String)>| {
            let n = dels.len().max(adds.len());
            let mut di = dels.drain(..);
            let mut ai = adds.drain(..);
            for _ in 0..n {
                rows.push(Line {
                    left: di.next(),
                    right: ai.next(),
                    changed: true,
                });
            }
        };
        for op in group {
            for ch in d.iter_changes(&op) {
                let text = ch.value().trim_end_matches(['\n', '\r']).to_string();
                match ch.tag() {
                    ChangeTag::Equal => {
                        flush(&mut rows, &mut dels, &mut adds);
                        rows.push(Line {
                            left: ch.old_index().map(|i| (i + 1, text.clone())),
                            right: ch.new_index().map(|i| (i + 1, text)),
                            changed: false,
                        });
                    }
                    ChangeTag::Delete => dels.push((ch.old_index().unwrap_or(0) + 1, text)),
                    ChangeTag::Insert => adds.push((ch.new_index().unwrap_or(0) + 1, text)),
                }
            }
        }
        flush(&mut rows, &mut dels, &mut adds);
    }
    FileDiff::Text(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_line_up_and_binary_is_summarised() {
        let a = b"one\ntwo\nthree\n";
        let b = b"one\nTWO\nthree\nfour\n";
        let FileDiff::Text(rows) = diff(Some(a), Some(b)) else {
            panic!("text expected");
        };
        let changed: Vec<_> = rows.iter().filter(|r| r.changed).collect();
        assert_eq!(changed[0].left, Some((2, "two".into())));
        assert_eq!(changed[0].right, Some((2, "TWO".into())));
        assert_eq!(changed[1].left, None);
        assert_eq!(changed[1].right, Some((4, "four".into())));
        assert_eq!(diff(Some(a), Some(a)), FileDiff::Same);
        assert_eq!(
            diff(Some(&[0xff, 0]), None),
            FileDiff::Binary {
                left: Some(2),
                right: None
            }
        );
    }
}

//! Output helpers: JSON and tables.

use anyhow::Result;
use serde::Serialize;

/// Prints a value as pretty JSON.
pub(crate) fn json<T: Serialize>(v: &T) -> Result<()> {
    say!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Prints rows as an aligned table.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < w.len() {
                w[i] = w[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<width$}", visible(c), width = w[i]))
            .collect();
        say!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

/// A cell as it may reach a terminal: names signed by other devices (or by older versions)
/// may hold escapes or bidi overrides, which are shown as U+FFFD instead of obeyed.
fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if cairn_core::domain::is_plain_name(s) {
        s.into()
    } else {
        s.chars()
            .map(|c| {
                if cairn_core::domain::is_disruptive(c) {
                    '\u{fffd}'
                } else {
                    c
                }
            })
            .collect::<String>()
            .into()
    }
}

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
            .map(|(i, c)| {
                format!(
                    "{:<width$}",
                    cairn_core::domain::shown_plain(c),
                    width = w[i]
                )
            })
            .collect();
        say!("{}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(|s| s.as_str()).collect());
    }
}

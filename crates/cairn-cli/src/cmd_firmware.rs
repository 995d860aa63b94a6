//! Firmware images: add (store + analyse in one read), list, show, diff, extract.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use std::path::{Path, PathBuf};

use cairn_app::firmware::AddFirmware;
use cairn_app::lookup;
use cairn_core::firmware::{RegionChange, diff};
use cairn_core::projection::FirmwareView;
use cairn_firmware::{ExtractOptions, Scanner, human};

use crate::{ctx, output, progress};

#[derive(Subcommand)]
pub(crate) enum FirmwareCmd {
    /// Store an image encrypted, analyse its layout with binwalk, and record both.
    Add {
        /// Asset name or id prefix.
        asset: String,
        /// The image file.
        #[arg(value_parser = crate::ctx::user_path)]
        file: PathBuf,
        /// Vendor version string, e.g. V4.5.2.
        #[arg(long)]
        version: Option<String>,
        /// Free-form label, e.g. "vendor release" or "as found on site".
        #[arg(long)]
        label: Option<String>,
        /// Refuse images larger than this many bytes (K, M, G suffixes).
        #[arg(long, default_value = "4G", value_parser = parse_size)]
        max_size: u64,
        #[arg(long)]
        json: bool,
    },
    /// List an asset's firmware images.
    List {
        asset: String,
        #[arg(long)]
        json: bool,
    },
    /// Show an image's layout: parts, unidentified regions and high-entropy runs.
    Show {
        /// Firmware id prefix.
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Compare two images part by part (by the content hash of each region).
    Diff {
        /// Old image (id prefix).
        a: String,
        /// New image (id prefix).
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// Write an image out (verifying every chunk and its signed analysis) and extract its
    /// parts with binwalk, under a time and output budget.
    Extract {
        /// Firmware id prefix.
        id: String,
        /// A new or empty directory (not a symbolic link).
        #[arg(long, value_parser = crate::ctx::user_path)]
        to: PathBuf,
        /// Stop extracting after this long (seconds, or with s, m, h).
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// Stop extracting once the output passes this many bytes (K, M, G suffixes).
        #[arg(long, default_value = "8G", value_parser = parse_size)]
        max_output: u64,
        #[arg(long)]
        json: bool,
    },
}

/// Parses `512`, `64K`, `300M`, `4G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        Some((i, 't' | 'T')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 512, 64K, 300M or 4G"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `90`, `90s`, `10m`, `2h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90, 90s, 10m or 2h"))?;
    n.checked_mul(mul)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

pub(crate) fn run(dir: &Path, cmd: FirmwareCmd) -> Result<()> {
    match cmd {
        FirmwareCmd::Add {
            asset,
            file,
            version,
            label,
            max_size,
            json,
        } => add(dir, &asset, &file, version, label, max_size, json),
        FirmwareCmd::List { asset, json } => list(dir, &asset, json),
        FirmwareCmd::Show { id, json } => show(dir, &id, json),
        FirmwareCmd::Diff { a, b, json } => diff_cmd(dir, &a, &b, json),
        FirmwareCmd::Extract {
            id,
            to,
            timeout,
            max_output,
            json,
        } => {
            let opts = ExtractOptions {
                max_output,
                timeout,
                ..ExtractOptions::default()
            };
            extract(dir, &id, &to, &opts, json)
        }
    }
}

fn add(
    dir: &Path,
    asset_key: &str,
    file: &Path,
    version: Option<String>,
    label: Option<String>,
    max_size: u64,
    json: bool,
) -> Result<()> {
    let mut store = ctx::open(dir)?;
    let req = AddFirmware {
        asset: asset_key.into(),
        file: file.into(),
        version,
        label,
        max_size,
    };
    let added = cairn_app::firmware::add(
        &mut store,
        &Scanner::new()?,
        &req,
        &progress::Bar::default(),
    )?;
    let view = added.view;
    for n in &added.notes {
        note!("note: {n}");
    }
    if json {
        return output::json(&view);
    }
    let parts = view.record.analysis.parts().count();
    say!(
        "added firmware {} to {}: {} ({}), {}",
        view.id,
        asset_key,
        view.record.file_name,
        human(view.record.size),
        match parts {
            0 => "no known parts".to_string(),
            1 => "1 part".to_string(),
            n => format!("{n} parts"),
        }
    );
    print_layout(&view);
    let incomplete: Vec<&str> = cairn_firmware::incomplete(&view.record.analysis).collect();
    if !incomplete.is_empty() {
        say!(
            "analysis incomplete: the image is stored whole, but its layout past the point \
             named above was not analysed ({} budget overrun(s))",
            incomplete.len()
        );
    }
    Ok(())
}

fn list(dir: &Path, asset_key: &str, json: bool) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let asset = lookup::asset(p, asset_key)?;
    let items = p.firmware_of(&asset);
    if json {
        return output::json(&items);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|f| {
            vec![
                f.id.short(),
                f.record.file_name.clone(),
                f.record.version.clone().unwrap_or_default(),
                f.record.label.clone().unwrap_or_default(),
                human(f.record.size),
                f.record.analysis.parts().count().to_string(),
                f.time.to_rfc3339(),
                f.author_name.clone(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID", "FILE", "VERSION", "LABEL", "SIZE", "PARTS", "ADDED", "BY",
        ],
        &rows,
    );
    Ok(())
}

fn print_layout(f: &FirmwareView) {
    let a = &f.record.analysis;
    let rows: Vec<Vec<String>> = a
        .regions
        .iter()
        .map(|r| {
            vec![
                format!("{:#010x}", r.offset),
                r.size.to_string(),
                r.name.clone(),
                match r.confidence {
                    _ if !r.identified() => "-".into(),
                    c if c >= 250 => "high".into(),
                    c if c >= 128 => "medium".into(),
                    _ => "low".into(),
                },
                r.hash.short(),
                if r.size_known {
                    r.description.clone()
                } else {
                    format!("{} (size unknown: runs to the next part)", r.description)
                },
            ]
        })
        .collect();
    output::table(
        &[
            "OFFSET",
            "SIZE",
            "PART",
            "CONFIDENCE",
            "HASH",
            "DESCRIPTION",
        ],
        &rows,
    );
    let runs = a.high_entropy_runs(f.record.size);
    for (off, len) in runs {
        let end = off + len;
        let covered = a.parts().any(|r| r.offset <= off && r.end() >= end);
        say!(
            "high entropy {:#010x}..{:#010x} ({}): {}",
            off,
            end,
            human(len),
            if covered {
                "inside a known part (compressed data)"
            } else {
                "no known part explains it: likely compressed or encrypted"
            }
        );
    }
    for w in &a.warnings {
        say!("warning: {w}");
    }
}

fn show(dir: &Path, key: &str, json: bool) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let f = lookup::firmware(p, key)?;
    if json {
        return output::json(&f);
    }
    let asset = p
        .asset(&f.record.asset)
        .map(|a| a.name().to_string())
        .unwrap_or_else(|| f.record.asset.short());
    say!("firmware {}", f.id);
    say!("asset    {asset}");
    say!("file     {}", f.record.file_name);
    if let Some(v) = &f.record.version {
        say!("version  {v}");
    }
    if let Some(l) = &f.record.label {
        say!("label    {l}");
    }
    say!(
        "size     {} ({} bytes)",
        human(f.record.size),
        f.record.size
    );
    say!("blob     {}", f.record.blob);
    say!("added    {} by {}", f.time.to_rfc3339(), f.author_name);
    say!("scanner  {}", f.record.analysis.tool);
    say!("");
    print_layout(&f);
    Ok(())
}

fn diff_cmd(dir: &Path, a: &str, b: &str, json: bool) -> Result<()> {
    let store = ctx::open(dir)?;
    let p = store.projection();
    let (fa, fb) = (lookup::firmware(p, a)?, lookup::firmware(p, b)?);
    // The diff compares signed region hashes: check they are the images' own first.
    for f in [&fa, &fb] {
        cairn_firmware::verify(store.blobs(), &f.record)
            .with_context(|| format!("firmware {}: cannot diff it", f.id.short()))?;
    }
    let changes = diff(&fa.record.analysis, &fb.record.analysis);
    if json {
        return output::json(&serde_json::json!({
            "a": fa.id, "b": fb.id,
            "identical": fa.record.blob == fb.record.blob,
            "changes": changes,
        }));
    }
    say!(
        "--- {} {} ({})",
        fa.id.short(),
        fa.record.file_name,
        human(fa.record.size)
    );
    say!(
        "+++ {} {} ({})",
        fb.id.short(),
        fb.record.file_name,
        human(fb.record.size)
    );
    if fa.record.blob == fb.record.blob {
        say!("identical images");
        return Ok(());
    }
    for c in &changes {
        match c {
            RegionChange::Changed {
                name,
                from,
                to,
                old_size,
                new_size,
                ..
            } => say!(
                "~ changed  {name:<10} {from:#010x} → {to:#010x}  {old_size} → {new_size} bytes"
            ),
            RegionChange::Moved {
                name,
                from,
                to,
                size,
            } => {
                say!("> moved    {name:<10} {from:#010x} → {to:#010x}  {size} bytes, same content")
            }
            RegionChange::Added {
                name,
                offset,
                size,
                description,
            } => say!("+ added    {name:<10} {offset:#010x}  {size} bytes  {description}"),
            RegionChange::Removed {
                name,
                offset,
                size,
                description,
            } => say!("- removed  {name:<10} {offset:#010x}  {size} bytes  {description}"),
        }
    }
    say!(
        "{} region(s) differ; images {} and {}",
        changes.len(),
        fa.record.blob.short(),
        fb.record.blob.short()
    );
    Ok(())
}

fn extract(dir: &Path, key: &str, to: &Path, opts: &ExtractOptions, json: bool) -> Result<()> {
    let store = ctx::open(dir)?;
    let f = lookup::firmware(store.projection(), key)?;
    let x = cairn_firmware::extract_with(store.blobs(), &f.record, to, opts)
        .with_context(|| format!("firmware {}: cannot extract it", f.id.short()))?;
    if json {
        output::json(&x)?;
        if let Some(why) = &x.stopped {
            bail!("extraction stopped: {why}");
        }
        return Ok(());
    }
    say!(
        "wrote {} ({} bytes, every chunk verified)",
        x.image.display(),
        f.record.size
    );
    for p in &x.parts {
        match (&p.problem, &p.output) {
            (None, Some(out)) => say!(
                "{:#010x} {:<10} extracted by {} into {}",
                p.offset,
                p.name,
                p.extractor.as_deref().unwrap_or("?"),
                out.display()
            ),
            (None, None) => say!("{:#010x} {:<10} extracted", p.offset, p.name),
            (Some(why), _) => say!("{:#010x} {:<10} not extracted: {why}", p.offset, p.name),
        }
    }
    for r in &x.removed {
        say!("removed {r}");
    }
    if let Some(why) = &x.stopped {
        bail!("extraction stopped: {why}; the parts above that say so were not extracted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert!(parse_size("4X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}

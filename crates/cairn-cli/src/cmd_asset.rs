//! `cairn asset …`

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use cairn_core::EventKind;
use cairn_core::docs::FieldEdit;
use cairn_core::domain::ASSET_FIELDS;
use cairn_core::projection::AssetView;
use cairn_store::Store;

use crate::{ctx, output};

#[derive(Subcommand)]
pub(crate) enum AssetCmd {
    /// Register an asset.
    Add(Box<AddArgs>),
    /// List assets.
    List {
        /// Only this site.
        #[arg(long)]
        site: Option<String>,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one asset, with conflicts, branches and drift.
    Show {
        /// Name or id prefix.
        name: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Set fields: `field=value` (empty value clears; `tags.k=v` for tags).
    Set {
        /// Name or id prefix.
        name: String,
        /// Assignments.
        #[arg(required = true)]
        assignments: Vec<String>,
    },
    /// Resolve a field conflict by choosing the value.
    Resolve {
        /// Name or id prefix.
        name: String,
        /// Field in conflict.
        field: String,
        /// The value to keep.
        value: String,
    },
    /// Retire an asset (kept in history).
    Retire {
        /// Name or id prefix.
        name: String,
    },
    /// Import assets from CSV (header: name,kind,vendor,model,serial,site,location,address,firmware,criticality,notes,tags).
    Import {
        /// CSV file.
        #[arg(value_parser = crate::ctx::user_path)]
        file: PathBuf,
    },
    /// Export assets.
    Export {
        /// CSV on standard output (the only format for now).
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Args)]
pub(crate) struct AddArgs {
    /// Asset name (unique names are easiest to work with).
    name: String,
    /// plc, hmi, rtu, drive, switch, router, firewall, historian, other.
    #[arg(long)]
    kind: String,
    #[arg(long)]
    vendor: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    site: Option<String>,
    #[arg(long)]
    serial: Option<String>,
    #[arg(long)]
    location: Option<String>,
    /// Network address.
    #[arg(long)]
    address: Option<String>,
    #[arg(long)]
    firmware: Option<String>,
    /// low, medium, high, safety.
    #[arg(long)]
    criticality: Option<String>,
    #[arg(long)]
    notes: Option<String>,
    /// Tag `k=v` (repeatable).
    #[arg(long = "tag")]
    tags: Vec<String>,
}

fn kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("expected key=value, got {s:?}"))?;
    if k.is_empty() {
        bail!("empty key in {s:?}");
    }
    Ok((k.to_string(), v.to_string()))
}

fn add_fields(a: &AddArgs) -> Result<(Vec<FieldEdit>, Vec<FieldEdit>)> {
    if a.name.trim().is_empty() {
        bail!("asset name must not be empty");
    }
    let mut f: Vec<FieldEdit> = vec![
        ("name".into(), Some(a.name.clone())),
        ("kind".into(), Some(a.kind.clone())),
    ];
    for (k, v) in [
        ("vendor", &a.vendor),
        ("model", &a.model),
        ("site", &a.site),
        ("serial", &a.serial),
        ("location", &a.location),
        ("address", &a.address),
        ("firmware", &a.firmware),
        ("criticality", &a.criticality),
        ("notes", &a.notes),
    ] {
        if let Some(v) = v {
            f.push((k.into(), Some(v.clone())));
        }
    }
    let tags = a
        .tags
        .iter()
        .map(|t| kv(t).map(|(k, v)| (k, Some(v))))
        .collect::<Result<_>>()?;
    Ok((f, tags))
}

/// Creates an asset; refuses a name that already exists.
pub(crate) fn create(
    store: &mut Store,
    fields: &[FieldEdit],
    tags: &[FieldEdit],
) -> Result<cairn_core::AssetId> {
    let name = fields
        .iter()
        .find(|(k, _)| k == "name")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_default();
    if store.projection().assets().iter().any(|a| a.name() == name) {
        bail!("an asset named {name:?} already exists");
    }
    create_new(store, fields, tags)
}

/// [`create`] without the name check, for callers that checked a whole batch at once.
fn create_new(
    store: &mut Store,
    fields: &[FieldEdit],
    tags: &[FieldEdit],
) -> Result<cairn_core::AssetId> {
    let mut id = None;
    store.append(|w, p| {
        let (e, a) = w.create_asset(p, fields, tags, ctx::now_millis())?;
        id = Some(a);
        Ok(e)
    })?;
    id.context("asset was not created")
}

fn row(a: &AssetView) -> Vec<String> {
    let mut flags = Vec::new();
    if a.doc.retired {
        flags.push("retired");
    }
    if !a.doc.conflicts().is_empty() {
        flags.push("conflict");
    }
    if a.diverged() {
        flags.push("diverged");
    }
    if a.drifted() {
        flags.push("drift");
    }
    vec![
        a.name().to_string(),
        a.doc.get("kind").into(),
        a.doc.get("vendor").into(),
        a.doc.get("model").into(),
        a.doc.get("site").into(),
        a.doc.get("address").into(),
        a.doc.golden.first().map(|g| g.short()).unwrap_or_default(),
        flags.join(","),
        a.id.short(),
    ]
}

pub(crate) fn run(dir: &Path, cmd: AssetCmd) -> Result<()> {
    let mut store = ctx::open(dir)?;
    match cmd {
        AssetCmd::Add(a) => {
            let (f, t) = add_fields(&a)?;
            let id = create(&mut store, &f, &t)?;
            say!("added asset {} ({})", a.name, id.short());
        }
        AssetCmd::List { site, kind, json } => {
            let assets: Vec<AssetView> = store
                .projection()
                .assets()
                .into_iter()
                .filter(|a| site.as_deref().is_none_or(|s| a.doc.get("site") == s))
                .filter(|a| kind.as_deref().is_none_or(|k| a.doc.get("kind") == k))
                .collect();
            if json {
                return output::json(&assets);
            }
            let rows: Vec<_> = assets.iter().map(row).collect();
            output::table(
                &[
                    "NAME", "KIND", "VENDOR", "MODEL", "SITE", "ADDRESS", "GOLDEN", "FLAGS", "ID",
                ],
                &rows,
            );
        }
        AssetCmd::Show { name, json } => {
            let p = store.projection();
            let id = output::asset(p, &name)?;
            let a = p.asset(&id).context("asset vanished")?;
            if json {
                return output::json(&a);
            }
            say!("asset {} ({})", a.name(), a.id);
            for f in ASSET_FIELDS {
                if let Some(v) = a.doc.fields.get(*f) {
                    if v.conflict.len() > 1 {
                        say!(
                            "  {f:<12} CONFLICT: {}",
                            v.conflict
                                .iter()
                                .map(|c| format!("{c:?}"))
                                .collect::<Vec<_>>()
                                .join(" | ")
                        );
                    } else {
                        say!("  {f:<12} {}", v.value);
                    }
                }
            }
            for (k, v) in &a.doc.tags {
                say!(
                    "  tags.{k:<7} {}{}",
                    v.value,
                    if v.conflict.len() > 1 {
                        format!("  CONFLICT: {:?}", v.conflict)
                    } else {
                        String::new()
                    }
                );
            }
            if a.doc.retired {
                say!("  retired");
            }
            match a.doc.golden.as_slice() {
                [] => say!("  golden       (none)"),
                [g] => say!("  golden       {}", g.short()),
                gs => say!(
                    "  golden       CONFLICT: {}",
                    gs.iter().map(|g| g.short()).collect::<Vec<_>>().join(" | ")
                ),
            }
            for b in &a.branches {
                say!(
                    "  branch {:<14} {} version(s), head {}{}",
                    b.name,
                    b.versions,
                    b.heads
                        .iter()
                        .map(|h| h.short())
                        .collect::<Vec<_>>()
                        .join(", "),
                    if b.diverged() { "  DIVERGED" } else { "" }
                );
            }
            if let Some(d) = &a.drift {
                if d.changes.is_empty() {
                    say!("  drift        clean at {} vs {}", d.time, d.golden.short());
                } else {
                    say!(
                        "  drift        {} difference(s) at {} vs {}",
                        d.changes.len(),
                        d.time,
                        d.golden.short()
                    );
                }
            }
        }
        AssetCmd::Set { name, assignments } => {
            let id = output::asset(store.projection(), &name)?;
            let (mut fields, mut tags) = (Vec::new(), Vec::new());
            for a in &assignments {
                let (k, v) = kv(a)?;
                let v = if v.is_empty() { None } else { Some(v) };
                if let Some(t) = k.strip_prefix("tags.") {
                    tags.push((t.to_string(), v));
                } else if ASSET_FIELDS.contains(&k.as_str()) {
                    if k == "name" && v.is_none() {
                        bail!("an asset needs a name");
                    }
                    fields.push((k, v));
                } else {
                    bail!(
                        "unknown field {k:?} (fields: {}; tags: tags.KEY)",
                        ASSET_FIELDS.join(", ")
                    );
                }
            }
            match store.append(|w, p| {
                w.edit_asset(
                    p,
                    EventKind::AssetEdited,
                    id,
                    &fields,
                    &tags,
                    &[],
                    ctx::now_millis(),
                )
            }) {
                Ok(e) => say!("updated {name} ({})", e.id().short()),
                Err(cairn_store::StoreError::Write(cairn_core::writer::WriteError::Doc(
                    cairn_core::docs::DocError::Empty,
                ))) => {
                    say!("nothing changed")
                }
                Err(e) => return Err(e.into()),
            }
        }
        AssetCmd::Resolve { name, field, value } => {
            let id = output::asset(store.projection(), &name)?;
            let a = store.projection().asset(&id).context("asset vanished")?;
            let conflicted = a.doc.conflicts();
            if !conflicted.contains(&field) {
                bail!(
                    "field {field:?} of {name} has no conflict (conflicts: {})",
                    if conflicted.is_empty() {
                        "none".into()
                    } else {
                        conflicted.join(", ")
                    }
                );
            }
            let (fields, tags) = match field.strip_prefix("tags.") {
                Some(t) => (vec![], vec![(t.to_string(), Some(value.clone()))]),
                None => (vec![(field.clone(), Some(value.clone()))], vec![]),
            };
            let e = store.append(|w, p| {
                w.edit_asset(
                    p,
                    EventKind::ConflictResolved,
                    id,
                    &fields,
                    &tags,
                    &[],
                    ctx::now_millis(),
                )
            })?;
            say!("resolved {name}.{field} = {value:?} ({})", e.id().short());
        }
        AssetCmd::Retire { name } => {
            let id = output::asset(store.projection(), &name)?;
            let e = store.append(|w, p| {
                w.edit_asset(
                    p,
                    EventKind::AssetRetired,
                    id,
                    &[],
                    &[],
                    &[("retired", cairn_core::docs::scalar_bool(true))],
                    ctx::now_millis(),
                )
            })?;
            say!("retired {name} ({})", e.id().short());
        }
        AssetCmd::Import { file } => {
            let mut rdr = csv::Reader::from_path(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let headers = rdr
                .headers()
                .with_context(|| format!("reading header of {}", file.display()))?
                .clone();
            for h in headers.iter() {
                if h != "tags" && !ASSET_FIELDS.contains(&h) {
                    bail!("{}: unknown column {h:?}", file.display());
                }
            }
            if !headers.iter().any(|h| h == "name") {
                bail!("{}: a name column is required", file.display());
            }
            // Parse and check every row before writing anything. Existing names are read once:
            // a name check per row would make an import quadratic in the estate's size.
            let mut rows = Vec::new();
            let mut names = std::collections::BTreeSet::new();
            let existing: std::collections::HashSet<String> = store
                .projection()
                .assets()
                .iter()
                .map(|a| a.name().to_string())
                .collect();
            for (i, rec) in rdr.records().enumerate() {
                let rec = rec.with_context(|| format!("{}: row {}", file.display(), i + 2))?;
                let mut fields = Vec::new();
                let mut tags = Vec::new();
                for (h, v) in headers.iter().zip(rec.iter()) {
                    if v.is_empty() {
                        continue;
                    }
                    if h == "tags" {
                        for t in v.split(';').filter(|t| !t.is_empty()) {
                            let (k, v) = kv(t).with_context(|| format!("row {}", i + 2))?;
                            tags.push((k, Some(v)));
                        }
                    } else {
                        fields.push((h.to_string(), Some(v.to_string())));
                    }
                }
                let name = fields
                    .iter()
                    .find(|(k, _)| k == "name")
                    .and_then(|(_, v)| v.clone())
                    .with_context(|| format!("{}: row {} has no name", file.display(), i + 2))?;
                if !names.insert(name.clone()) || existing.contains(&name) {
                    bail!(
                        "{}: row {}: asset {name:?} already exists",
                        file.display(),
                        i + 2
                    );
                }
                rows.push((fields, tags));
            }
            let bar = crate::progress::items(rows.len() as u64, "importing");
            for (f, t) in &rows {
                create_new(&mut store, f, t)?;
                bar.inc(1);
            }
            bar.finish_and_clear();
            say!("imported {} asset(s)", rows.len());
        }
        AssetCmd::Export { csv: _ } => {
            let mut w = csv::Writer::from_writer(crate::console::Out);
            let mut header: Vec<&str> = ASSET_FIELDS.to_vec();
            header.push("tags");
            w.write_record(&header)?;
            for a in store.projection().assets() {
                let mut r: Vec<String> = ASSET_FIELDS
                    .iter()
                    .map(|f| a.doc.get(f).to_string())
                    .collect();
                r.push(
                    a.doc
                        .tags
                        .iter()
                        .map(|(k, v)| format!("{k}={}", v.value))
                        .collect::<Vec<_>>()
                        .join(";"),
                );
                w.write_record(&r)?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

//! `cairn asset …`

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

use cairn_app::assets::{self, Import, NewAsset, Resolve, Retire, SetFields};
use cairn_app::lookup;
use cairn_core::domain::ASSET_FIELDS;
use cairn_core::projection::AssetView;

use crate::{ctx, output, progress};

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

impl AddArgs {
    fn new_asset(&self) -> Result<NewAsset> {
        let fields = [
            ("vendor", &self.vendor),
            ("model", &self.model),
            ("site", &self.site),
            ("serial", &self.serial),
            ("location", &self.location),
            ("address", &self.address),
            ("firmware", &self.firmware),
            ("criticality", &self.criticality),
            ("notes", &self.notes),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect();
        let tags = self
            .tags
            .iter()
            .map(|t| assets::assignment(t))
            .collect::<Result<_, _>>()?;
        Ok(NewAsset {
            name: self.name.clone(),
            kind: self.kind.clone(),
            fields,
            tags,
        })
    }
}

fn short(e: Option<cairn_core::EventId>) -> String {
    e.map(|e| e.short()).unwrap_or_default()
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
            let added = assets::add(&mut store, &a.new_asset()?)?;
            say!("added asset {} ({})", a.name, added.asset.short());
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
            let id = lookup::asset(p, &name)?;
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
            let assignments = assignments
                .iter()
                .map(|a| assets::assignment(a))
                .collect::<Result<_, _>>()?;
            let req = SetFields {
                asset: name.clone(),
                assignments,
            };
            match assets::set_fields(&mut store, &req)?.event {
                Some(e) => say!("updated {name} ({})", e.short()),
                None => say!("nothing changed"),
            }
        }
        AssetCmd::Resolve { name, field, value } => {
            let req = Resolve {
                asset: name.clone(),
                field: field.clone(),
                value: value.clone(),
            };
            let e = assets::resolve(&mut store, &req)?.event;
            say!("resolved {name}.{field} = {value:?} ({})", short(e));
        }
        AssetCmd::Retire { name } => {
            let e = assets::retire(
                &mut store,
                &Retire {
                    asset: name.clone(),
                },
            )?
            .event;
            say!("retired {name} ({})", short(e));
        }
        AssetCmd::Import { file } => {
            let f = std::fs::File::open(&file)
                .with_context(|| format!("opening {}", file.display()))?;
            let req = Import {
                csv: f,
                source_name: file.display().to_string(),
            };
            let added = assets::import_csv(&mut store, req, &progress::Bar::default())?;
            say!("imported {} asset(s)", added.len());
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

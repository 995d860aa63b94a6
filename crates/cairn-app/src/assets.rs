//! Asset actions: add, set fields, resolve a field conflict, retire, import an inventory.

use std::collections::{BTreeSet, HashSet};

use cairn_core::docs::{DocError, FieldEdit, scalar_bool};
use cairn_core::domain::ASSET_FIELDS;
use cairn_core::writer::WriteError;
use cairn_core::{AssetId, EventId, EventKind};
use cairn_store::{Store, StoreError};

use crate::lookup::{self, LookupError};
use crate::{Fault, OpError, Progress, Unit};

/// Why an asset action was refused. Nothing was written, except by `import_csv` when the store
/// fails midway: the rows before the failure stay, each a whole event.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// The asset named is not found, or the name is ambiguous.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// An asset needs a name.
    #[error("an asset needs a name")]
    NoName,
    /// Names are unique within the workspace.
    #[error("an asset named {0:?} already exists")]
    NameTaken(String),
    /// Not one of the asset's fields.
    #[error("unknown field {0:?} (fields: {fields}; tags: tags.KEY)", fields = ASSET_FIELDS.join(", "))]
    UnknownField(String),
    /// A `key=value` without `=`, or with an empty key.
    #[error("expected key=value with a non-empty key, got {0:?}")]
    BadAssignment(String),
    /// Tag keys are non-empty and hold no `=`, `;` or control characters (so that
    /// `key=value` and the CSV's `k=v;k=v` can always name them).
    #[error("invalid tag key {0:?}: it must be non-empty, without '=', ';' or control characters")]
    BadTagKey(String),
    /// Nothing to set.
    #[error("no fields to set")]
    NoFields,
    /// Resolving a field that has no conflict.
    #[error("field {field:?} of {asset} has no conflict (conflicts: {})", if .conflicts.is_empty() { "none".to_string() } else { .conflicts.join(", ") })]
    NoConflict {
        /// The asset as named.
        asset: String,
        /// The field.
        field: String,
        /// The fields that are in conflict.
        conflicts: Vec<String>,
    },
    /// An inventory that cannot be read or does not fit.
    #[error("{source_name}: {problem}")]
    Import {
        /// The file (or other source) imported.
        source_name: String,
        /// What is wrong, with the row.
        problem: String,
    },
    /// The operation met a state it should never see (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for AssetError {
    fn from(e: StoreError) -> Self {
        AssetError::Store(Box::new(e))
    }
}

impl OpError for AssetError {
    fn fault(&self) -> Fault {
        match self {
            AssetError::Store(e) => Fault::of_store(e),
            AssetError::Internal(_) => Fault::Storage,
            _ => Fault::Input,
        }
    }
}

/// Splits `key=value`; the key must not be empty (the value may be).
pub fn assignment(s: &str) -> Result<(String, String), AssetError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(AssetError::BadAssignment(s.into())),
    }
}

/// A new asset.
#[derive(Clone, Debug, Default)]
pub struct NewAsset {
    /// Its name, unique in the workspace.
    pub name: String,
    /// plc, hmi, rtu, drive, switch, router, firewall, historian, other.
    pub kind: String,
    /// Other fields (vendor, model, site, address, …), each one of [`ASSET_FIELDS`].
    pub fields: Vec<(String, String)>,
    /// Tags.
    pub tags: Vec<(String, String)>,
}

/// An asset was added.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AssetAdded {
    /// The new asset.
    pub asset: AssetId,
    /// The event that created it.
    pub event: EventId,
}

fn new_asset_edits(a: &NewAsset) -> Result<(Vec<FieldEdit>, Vec<FieldEdit>), AssetError> {
    if a.name.trim().is_empty() {
        return Err(AssetError::NoName);
    }
    let mut fields: Vec<FieldEdit> = vec![
        ("name".into(), Some(a.name.clone())),
        ("kind".into(), Some(a.kind.clone())),
    ];
    for (k, v) in &a.fields {
        if !ASSET_FIELDS.contains(&k.as_str()) || k == "name" || k == "kind" {
            return Err(AssetError::UnknownField(k.clone()));
        }
        fields.push((k.clone(), Some(v.clone())));
    }
    let mut tags = Vec::new();
    for (k, v) in &a.tags {
        tags.push((tag_key(k)?, Some(v.clone())));
    }
    Ok((fields, tags))
}

fn tag_key(k: &str) -> Result<String, AssetError> {
    if k.is_empty() || k.contains(['=', ';']) || k.chars().any(char::is_control) {
        return Err(AssetError::BadTagKey(k.into()));
    }
    Ok(k.into())
}

fn name_taken(store: &Store, name: &str, except: Option<&AssetId>) -> bool {
    store
        .projection()
        .assets()
        .iter()
        .any(|x| x.name() == name && Some(&x.id) != except)
}

/// Adds an asset; refuses a name that already exists.
pub fn add(store: &mut Store, a: &NewAsset) -> Result<AssetAdded, AssetError> {
    let (fields, tags) = new_asset_edits(a)?;
    if name_taken(store, &a.name, None) {
        return Err(AssetError::NameTaken(a.name.clone()));
    }
    create(store, &fields, &tags)
}

/// Signs the creation of an asset (callers checked the name).
fn create(
    store: &mut Store,
    fields: &[FieldEdit],
    tags: &[FieldEdit],
) -> Result<AssetAdded, AssetError> {
    let mut asset = None;
    let e = store.append(|w, p| {
        let (e, a) = w.create_asset(p, fields, tags, cairn_store::now_millis())?;
        asset = Some(a);
        Ok(e)
    })?;
    match asset {
        Some(asset) => Ok(AssetAdded {
            asset,
            event: e.id(),
        }),
        None => Err(AssetError::Internal("the asset was not created")),
    }
}

/// Fields to set on an asset. An empty value clears a field; `tags.KEY` names a tag.
#[derive(Clone, Debug, Default)]
pub struct SetFields {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// `(field, value)` pairs, applied together as one event.
    pub assignments: Vec<(String, String)>,
}

/// The result of an edit (fields set, a conflict resolved, the asset retired): the event, or
/// `None` when the values were already so.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Edited {
    /// The asset.
    pub asset: AssetId,
    /// The event, if anything changed.
    pub event: Option<EventId>,
}

/// Sets fields and tags of an asset in one signed event.
pub fn set_fields(store: &mut Store, req: &SetFields) -> Result<Edited, AssetError> {
    let asset = lookup::asset(store.projection(), &req.asset)?;
    if req.assignments.is_empty() {
        return Err(AssetError::NoFields);
    }
    let (mut fields, mut tags) = (Vec::new(), Vec::new());
    for (k, v) in &req.assignments {
        let v = (!v.is_empty()).then(|| v.clone());
        if let Some(t) = k.strip_prefix("tags.") {
            tags.push((tag_key(t)?, v));
        } else if ASSET_FIELDS.contains(&k.as_str()) {
            if k == "name" {
                match v.as_deref().map(str::trim) {
                    None | Some("") => return Err(AssetError::NoName),
                    Some(_) => {}
                }
                if let Some(n) = &v
                    && name_taken(store, n, Some(&asset))
                {
                    return Err(AssetError::NameTaken(n.clone()));
                }
            }
            fields.push((k.clone(), v));
        } else {
            return Err(AssetError::UnknownField(k.clone()));
        }
    }
    let now = cairn_store::now_millis();
    match store
        .append(|w, p| w.edit_asset(p, EventKind::AssetEdited, asset, &fields, &tags, &[], now))
    {
        Ok(e) => Ok(Edited {
            asset,
            event: Some(e.id()),
        }),
        Err(StoreError::Write(WriteError::Doc(DocError::Empty))) => {
            Ok(Edited { asset, event: None })
        }
        Err(e) => Err(e.into()),
    }
}

/// Which value a conflicted field keeps.
#[derive(Clone, Debug)]
pub struct Resolve {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The field in conflict (`tags.KEY` for a tag).
    pub field: String,
    /// The value to keep.
    pub value: String,
}

/// Resolves a field conflict by choosing one value.
pub fn resolve(store: &mut Store, req: &Resolve) -> Result<Edited, AssetError> {
    let p = store.projection();
    let asset = lookup::asset(p, &req.asset)?;
    let conflicts = p
        .asset(&asset)
        .map(|a| a.doc.conflicts())
        .unwrap_or_default();
    if !conflicts.contains(&req.field) {
        return Err(AssetError::NoConflict {
            asset: req.asset.clone(),
            field: req.field.clone(),
            conflicts,
        });
    }
    let value = Some(req.value.clone());
    let (fields, tags) = match req.field.strip_prefix("tags.") {
        Some(t) => (vec![], vec![(t.to_string(), value)]),
        None => (vec![(req.field.clone(), value)], vec![]),
    };
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| {
        w.edit_asset(
            p,
            EventKind::ConflictResolved,
            asset,
            &fields,
            &tags,
            &[],
            now,
        )
    })?;
    Ok(Edited {
        asset,
        event: Some(e.id()),
    })
}

/// An asset to retire.
#[derive(Clone, Debug)]
pub struct Retire {
    /// The asset: exact name or id prefix.
    pub asset: String,
}

/// Retires an asset: it stays in history, marked retired.
pub fn retire(store: &mut Store, req: &Retire) -> Result<Edited, AssetError> {
    let asset = lookup::asset(store.projection(), &req.asset)?;
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| {
        w.edit_asset(
            p,
            EventKind::AssetRetired,
            asset,
            &[],
            &[],
            &[("retired", scalar_bool(true))],
            now,
        )
    })?;
    Ok(Edited {
        asset,
        event: Some(e.id()),
    })
}

/// An inventory to import.
pub struct Import<R> {
    /// CSV: a header row of asset fields (and `tags`, as `k=v;k=v`), one asset per row.
    pub csv: R,
    /// Where it came from (a file name), for messages.
    pub source_name: String,
}

/// Imports an inventory. Every row is read and checked first (names unique, columns known),
/// so a bad row writes nothing; then one event per asset. Returns the assets created, in row
/// order.
pub fn import_csv(
    store: &mut Store,
    req: Import<impl std::io::Read>,
    progress: &dyn Progress,
) -> Result<Vec<AssetAdded>, AssetError> {
    let Import { csv, source_name } = req;
    let source_name = source_name.as_str();
    let bad = |problem: String| AssetError::Import {
        source_name: source_name.into(),
        problem,
    };
    let mut rdr = csv::Reader::from_reader(csv);
    let headers = rdr
        .headers()
        .map_err(|e| bad(format!("reading the header: {e}")))?
        .clone();
    if let Some(h) = headers
        .iter()
        .find(|h| *h != "tags" && !ASSET_FIELDS.contains(h))
    {
        return Err(bad(format!("unknown column {h:?}")));
    }
    if !headers.iter().any(|h| h == "name") {
        return Err(bad("a name column is required".into()));
    }
    // Existing names are read once: a name check per row would make an import quadratic in
    // the estate's size.
    let existing: HashSet<String> = store
        .projection()
        .assets()
        .iter()
        .map(|a| a.name().to_string())
        .collect();
    let mut names = BTreeSet::new();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let row = i + 2;
        let rec = rec.map_err(|e| bad(format!("row {row}: {e}")))?;
        let (mut fields, mut tags) = (Vec::new(), Vec::new());
        for (h, v) in headers.iter().zip(rec.iter()) {
            if v.is_empty() {
                continue;
            }
            if h == "tags" {
                for t in v.split(';').filter(|t| !t.is_empty()) {
                    let (k, v) = assignment(t)
                        .and_then(|(k, v)| Ok((tag_key(&k)?, v)))
                        .map_err(|e| bad(format!("row {row}: {e}")))?;
                    tags.push((k, Some(v)));
                }
            } else {
                fields.push((h.to_string(), Some(v.to_string())));
            }
        }
        let Some(name) = fields
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| v.clone())
        else {
            return Err(bad(format!("row {row} has no name")));
        };
        if !names.insert(name.clone()) || existing.contains(&name) {
            return Err(bad(format!("row {row}: asset {name:?} already exists")));
        }
        rows.push((fields, tags));
    }
    progress.begin("importing", Unit::Items, rows.len() as u64);
    let mut added = Vec::with_capacity(rows.len());
    for (f, t) in &rows {
        added.push(create(store, f, t)?);
        progress.at(added.len() as u64);
    }
    progress.end();
    Ok(added)
}

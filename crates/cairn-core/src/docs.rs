//! Automerge documents: one for the workspace (members, sites, asset index) and one per asset.
//!
//! This module writes changes and reads state. Changes are created on a fork of the current
//! document with the author's actor id, so the projection only ever changes by applying signed
//! events.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ObjType, ROOT, ReadDoc, ScalarValue, Value};
use std::collections::BTreeMap;

use crate::domain::Role;
use crate::ids::{DeviceId, VersionId};

/// Errors writing or reading documents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocError {
    /// Automerge refused the operation.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// Change bytes do not parse.
    #[error("change does not parse: {0}")]
    Load(String),
    /// The transaction produced no change.
    #[error("nothing to change")]
    Empty,
}

/// The Automerge actor id of a device: its 32-byte public key, so a change names its signer.
pub fn actor_for(device: &DeviceId) -> ActorId {
    ActorId::from(&device.0[..])
}

/// Automerge's chunk header: magic (4 bytes), checksum (4), chunk type (1), then the length.
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// The chunk type of an uncompressed change; 2 is a DEFLATE-compressed one.
const CHUNK_CHANGE: u8 = 1;

/// Parses change bytes and checks that the change was made by `author`'s actor.
///
/// Only uncompressed change chunks are accepted: Cairn writes changes uncompressed
/// ([`make_change`]), and a compressed chunk would be inflated without bound by Automerge's
/// parser (a DEFLATE bomb: kilobytes signed, gigabytes at every open). With compression refused
/// before parsing, what a change costs to parse is bounded by its event's size
/// ([`crate::event::MAX_EVENT_BYTES`]); Automerge also refuses compressed columns inside a change.
pub fn parse_change(bytes: &[u8], author: &DeviceId) -> Result<Change, String> {
    match bytes.get(..9) {
        Some(h) if h[..4] == CHUNK_MAGIC && h[8] == CHUNK_CHANGE => {}
        Some(h) if h[..4] == CHUNK_MAGIC && h[8] == 2 => {
            return Err(
                "a compressed change chunk is refused (changes travel uncompressed)".into(),
            );
        }
        Some(h) if h[..4] == CHUNK_MAGIC => {
            return Err(format!("chunk type {} is not a change", h[8]));
        }
        _ => return Err("not an Automerge change chunk".into()),
    }
    let c = Change::from_bytes(bytes.to_vec()).map_err(|e| e.to_string())?;
    if c.actor_id() != &actor_for(author) {
        return Err(format!(
            "change actor {} is not the event author {}",
            hex::encode(c.actor_id().to_bytes()),
            author.short()
        ));
    }
    Ok(c)
}

/// Runs `f` in a transaction on a fork of `doc` as `author`, returning the change bytes.
pub fn make_change(
    doc: &Automerge,
    author: &DeviceId,
    time_millis: u64,
    f: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), automerge::AutomergeError>,
) -> Result<Vec<u8>, DocError> {
    let mut fork = doc.fork().with_actor(actor_for(author));
    let mut tx = fork.transaction();
    f(&mut tx)?;
    let opts = CommitOptions::default().with_time(time_millis as i64);
    tx.commit_with(opts).0.ok_or(DocError::Empty)?;
    let change = fork.get_last_local_change().ok_or(DocError::Empty)?;
    Ok(change.raw_bytes().to_vec())
}

fn ensure_map(
    tx: &mut automerge::transaction::Transaction<'_>,
    parent: &automerge::ObjId,
    key: &str,
) -> Result<automerge::ObjId, automerge::AutomergeError> {
    match tx.get(parent, key)? {
        Some((Value::Object(ObjType::Map), id)) => Ok(id),
        _ => tx.put_object(parent, key, ObjType::Map),
    }
}

/// Writes the workspace name and the founding admin.
pub fn genesis_change(
    author: &DeviceId,
    time_millis: u64,
    name: &str,
    admin_name: &str,
) -> Result<Vec<u8>, DocError> {
    let empty = Automerge::new();
    make_change(&empty, author, time_millis, |tx| {
        tx.put(ROOT, "name", name)?;
        tx.put_object(ROOT, "sites", ObjType::Map)?;
        tx.put_object(ROOT, "assets", ObjType::Map)?;
        let members = tx.put_object(ROOT, "members", ObjType::Map)?;
        let m = tx.put_object(&members, author.to_hex(), ObjType::Map)?;
        tx.put(&m, "name", admin_name)?;
        tx.put(&m, "role", Role::Admin.as_str())?;
        tx.put(&m, "status", "active")?;
        Ok(())
    })
}

/// Writes a member's entry in the workspace document.
pub fn member_change(
    ws: &Automerge,
    author: &DeviceId,
    time_millis: u64,
    device: &DeviceId,
    name: &str,
    role: Role,
    status: &str,
) -> Result<Vec<u8>, DocError> {
    make_change(ws, author, time_millis, |tx| {
        let members = ensure_map(tx, &ROOT, "members")?;
        let m = ensure_map(tx, &members, &device.to_hex())?;
        tx.put(&m, "name", name)?;
        tx.put(&m, "role", role.as_str())?;
        tx.put(&m, "status", status)?;
        Ok(())
    })
}

/// Registers an asset in the workspace index (and its site, if new).
pub fn index_change(
    ws: &Automerge,
    author: &DeviceId,
    time_millis: u64,
    asset_hex: &str,
    name: &str,
    site: Option<&str>,
) -> Result<Vec<u8>, DocError> {
    make_change(ws, author, time_millis, |tx| {
        let assets = ensure_map(tx, &ROOT, "assets")?;
        tx.put(&assets, asset_hex, name)?;
        if let Some(site) = site {
            let sites = ensure_map(tx, &ROOT, "sites")?;
            if tx.get(&sites, site)?.is_none() {
                tx.put(&sites, site, true)?;
            }
        }
        Ok(())
    })
}

/// A field edit: `Some(value)` sets, `None` deletes.
pub type FieldEdit = (String, Option<String>);

/// Writes asset fields, tags and flags into an asset document.
pub fn asset_change(
    doc: &Automerge,
    author: &DeviceId,
    time_millis: u64,
    fields: &[FieldEdit],
    tags: &[FieldEdit],
    flags: &[(&str, ScalarValue)],
) -> Result<Vec<u8>, DocError> {
    make_change(doc, author, time_millis, |tx| {
        for (k, v) in fields {
            match v {
                Some(v) => tx.put(ROOT, k.as_str(), v.as_str())?,
                None => {
                    if tx.get(ROOT, k.as_str())?.is_some() {
                        tx.delete(ROOT, k.as_str())?
                    }
                }
            }
        }
        if !tags.is_empty() {
            let t = ensure_map(tx, &ROOT, "tags")?;
            for (k, v) in tags {
                match v {
                    Some(v) => tx.put(&t, k.as_str(), v.as_str())?,
                    None => {
                        if tx.get(&t, k.as_str())?.is_some() {
                            tx.delete(&t, k.as_str())?
                        }
                    }
                }
            }
        }
        for (k, v) in flags {
            tx.put(ROOT, *k, v.clone())?;
        }
        Ok(())
    })
}

/// A field's value, with every concurrent value when there is a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct FieldValue {
    /// The value Automerge picks deterministically.
    pub value: String,
    /// All concurrent values (length > 1 means a conflict), in Automerge's order.
    pub conflict: Vec<String>,
}

/// The readable state of an asset document.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AssetFields {
    /// Scalar fields by name.
    pub fields: BTreeMap<String, FieldValue>,
    /// Free-form tags.
    pub tags: BTreeMap<String, FieldValue>,
    /// Whether the asset is retired.
    pub retired: bool,
    /// Golden version(s); more than one means concurrent designations (a conflict).
    pub golden: Vec<VersionId>,
}

impl AssetFields {
    /// A field's chosen value, or "".
    pub fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(|f| f.value.as_str()).unwrap_or("")
    }

    /// Names of fields (and `tags.k`) with concurrent values.
    pub fn conflicts(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .fields
            .iter()
            .filter(|(_, v)| v.conflict.len() > 1)
            .map(|(k, _)| k.clone())
            .collect();
        out.extend(
            self.tags
                .iter()
                .filter(|(_, v)| v.conflict.len() > 1)
                .map(|(k, _)| format!("tags.{k}")),
        );
        if self.golden.len() > 1 {
            out.push("golden".into());
        }
        out
    }
}

fn scalar_str(v: &Value<'_>) -> Option<String> {
    match v {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            ScalarValue::Boolean(b) => Some(b.to_string()),
            ScalarValue::Int(i) => Some(i.to_string()),
            ScalarValue::Uint(i) => Some(i.to_string()),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// Reads an asset document.
pub fn read_asset(doc: &Automerge) -> AssetFields {
    let mut out = AssetFields::default();
    for key in doc.keys(ROOT) {
        match key.as_str() {
            "tags" | "retired" | "golden" => {}
            k => {
                if let Some(v) = read_scalar_all(doc, &ROOT, k) {
                    out.fields.insert(k.to_string(), v);
                }
            }
        }
    }
    if let Ok(Some((Value::Object(ObjType::Map), tags))) = doc.get(ROOT, "tags") {
        for k in doc.keys(&tags) {
            if let Some(v) = read_scalar_all(doc, &tags, &k) {
                out.tags.insert(k, v);
            }
        }
    }
    out.retired = matches!(
        doc.get(ROOT, "retired"),
        Ok(Some((Value::Scalar(s), _))) if matches!(s.as_ref(), ScalarValue::Boolean(true))
    );
    if let Ok(all) = doc.get_all(ROOT, "golden") {
        out.golden = all
            .iter()
            .filter_map(|(v, _)| scalar_str(v))
            .filter_map(|h| VersionId::from_hex(&h).ok())
            .collect();
    }
    out
}

fn read_scalar_all(doc: &Automerge, obj: &automerge::ObjId, key: &str) -> Option<FieldValue> {
    let all = doc.get_all(obj, key).ok()?;
    let values: Vec<String> = all.iter().filter_map(|(v, _)| scalar_str(v)).collect();
    let chosen = match doc.get(obj, key).ok().flatten() {
        Some((v, _)) => scalar_str(&v)?,
        None => return None,
    };
    Some(FieldValue {
        value: chosen,
        conflict: if values.len() > 1 { values } else { Vec::new() },
    })
}

/// Members as recorded in the workspace document: device hex → (name, role, status).
pub fn read_members(ws: &Automerge) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    if let Ok(Some((Value::Object(ObjType::Map), members))) = ws.get(ROOT, "members") {
        for k in ws.keys(&members) {
            if let Ok(Some((Value::Object(ObjType::Map), m))) = ws.get(&members, k.as_str()) {
                let get = |f: &str| {
                    read_scalar_all(ws, &m, f)
                        .map(|v| v.value)
                        .unwrap_or_default()
                };
                out.insert(k.clone(), (get("name"), get("role"), get("status")));
            }
        }
    }
    out
}

/// Sites recorded in the workspace document.
pub fn read_sites(ws: &Automerge) -> Vec<String> {
    match ws.get(ROOT, "sites") {
        Ok(Some((Value::Object(ObjType::Map), sites))) => ws.keys(&sites).collect(),
        _ => Vec::new(),
    }
}

/// The workspace name.
pub fn read_name(ws: &Automerge) -> String {
    read_scalar_all(ws, &ROOT, "name")
        .map(|v| v.value)
        .unwrap_or_default()
}

/// A boolean scalar, for flags such as `retired`.
pub fn scalar_bool(b: bool) -> ScalarValue {
    ScalarValue::Boolean(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceId {
        crate::keys::DeviceKey::from_secret(&[n; 32]).device_id()
    }

    #[test]
    fn concurrent_same_field_edits_are_a_visible_conflict() {
        let (a, b) = (dev(1), dev(2));
        let base = asset_change(
            &Automerge::new(),
            &a,
            1,
            &[("name".into(), Some("PLC-1".into()))],
            &[],
            &[],
        )
        .unwrap();
        let mut doc = Automerge::new();
        doc.apply_changes([parse_change(&base, &a).unwrap()])
            .unwrap();
        let ca = asset_change(
            &doc,
            &a,
            2,
            &[("address".into(), Some("10.0.0.1".into()))],
            &[],
            &[],
        )
        .unwrap();
        let cb = asset_change(
            &doc,
            &b,
            2,
            &[
                ("address".into(), Some("10.0.0.2".into())),
                ("vendor".into(), Some("Siemens".into())),
            ],
            &[],
            &[],
        )
        .unwrap();
        let mut d1 = doc.clone();
        d1.apply_changes([
            parse_change(&ca, &a).unwrap(),
            parse_change(&cb, &b).unwrap(),
        ])
        .unwrap();
        let mut d2 = doc.clone();
        d2.apply_changes([
            parse_change(&cb, &b).unwrap(),
            parse_change(&ca, &a).unwrap(),
        ])
        .unwrap();
        let (f1, f2) = (read_asset(&d1), read_asset(&d2));
        assert_eq!(f1, f2);
        assert_eq!(f1.get("vendor"), "Siemens");
        assert_eq!(f1.fields["address"].conflict.len(), 2);
        assert_eq!(f1.conflicts(), vec!["address".to_string()]);
        // Writing after seeing both values resolves the conflict.
        let r = asset_change(
            &d1,
            &a,
            3,
            &[("address".into(), Some("10.0.0.9".into()))],
            &[],
            &[],
        )
        .unwrap();
        d1.apply_changes([parse_change(&r, &a).unwrap()]).unwrap();
        assert!(read_asset(&d1).conflicts().is_empty());
        assert_eq!(read_asset(&d1).get("address"), "10.0.0.9");
    }

    #[test]
    fn a_change_must_name_its_author() {
        let (a, b) = (dev(1), dev(2));
        let c = asset_change(
            &Automerge::new(),
            &a,
            1,
            &[("name".into(), Some("x".into()))],
            &[],
            &[],
        )
        .unwrap();
        assert!(parse_change(&c, &a).is_ok());
        assert!(
            parse_change(&c, &b)
                .unwrap_err()
                .contains("not the event author")
        );
        assert!(parse_change(b"junk", &a).is_err());
    }
}

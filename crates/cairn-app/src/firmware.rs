//! Firmware actions: add an image to an asset (stored encrypted, analysed, recorded).

use std::path::PathBuf;

use cairn_core::EventId;
use cairn_core::firmware::FirmwareRecord;
use cairn_core::projection::FirmwareView;
use cairn_firmware::{AddOptions, FirmwareError, Scanner};
use cairn_store::{Store, StoreError};

use crate::lookup::{self, LookupError};
use crate::{Fault, OpError, Progress, Unit};

/// Why a firmware action was refused. Nothing was recorded (a blob already stored stays,
/// named by no event, as in every content-addressed store).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareOpError {
    /// The asset named is not found, or is ambiguous.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// Records keep the image's file name, which must be UTF-8.
    #[error("{}: needs a UTF-8 file name", .0.display())]
    FileName(PathBuf),
    /// Reading, storing or analysing the image failed.
    #[error(transparent)]
    Firmware(#[from] FirmwareError),
    /// The analysis does not fit an event (a bug in the scanner's limits).
    #[error("the analysis is not recordable: {0}")]
    NotRecordable(String),
    /// The operation met a state it should never see (a bug).
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// The file name, version or label cannot be recorded (checked before the image is
    /// stored).
    #[error("{0}")]
    BadNames(String),
    /// This device may not write (checked before the image is stored).
    #[error("{0}")]
    NotAllowed(#[from] crate::NotAllowed),
    /// The store refused or failed the write.
    #[error(transparent)]
    Store(Box<StoreError>),
}

impl From<StoreError> for FirmwareOpError {
    fn from(e: StoreError) -> Self {
        FirmwareOpError::Store(Box::new(e))
    }
}

impl OpError for FirmwareOpError {
    fn fault(&self) -> Fault {
        match self {
            FirmwareOpError::Store(e) => Fault::of_store(e),
            FirmwareOpError::NotAllowed(_) => Fault::Refused,
            // The image the user named: missing, unreadable, too large, not an image.
            FirmwareOpError::Firmware(
                FirmwareError::Io { .. } | FirmwareError::BadImage { .. },
            ) => Fault::Input,
            FirmwareOpError::Firmware(_)
            | FirmwareOpError::NotRecordable(_)
            | FirmwareOpError::Internal(_) => Fault::Storage,
            _ => Fault::Input,
        }
    }
}

/// An image to add.
#[derive(Clone, Debug)]
pub struct AddFirmware {
    /// The asset: exact name or id prefix.
    pub asset: String,
    /// The image on disk.
    pub file: PathBuf,
    /// The vendor's version string.
    pub version: Option<String>,
    /// A free label.
    pub label: Option<String>,
    /// The largest image accepted.
    pub max_size: u64,
}

/// An image was added.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FirmwareAdded {
    /// The event that recorded the image (its firmware id).
    pub event: EventId,
    /// The recorded image, as the projection shows it.
    pub view: FirmwareView,
    /// What the analysis wants the user to know (budgets overrun, formats skipped).
    pub notes: Vec<String>,
}

/// Stores the image encrypted, analyses its layout, and records both in a signed event.
pub fn add(
    store: &mut Store,
    scanner: &Scanner,
    req: &AddFirmware,
    progress: &dyn Progress,
) -> Result<FirmwareAdded, FirmwareOpError> {
    let asset = lookup::asset(store.projection(), &req.asset)?;
    let file_name = req
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| FirmwareOpError::FileName(req.file.clone()))?
        .to_string();
    FirmwareRecord::check_names(&file_name, req.version.as_deref(), req.label.as_deref())
        .map_err(FirmwareOpError::BadNames)?;
    // Plain text only for what enters the log from here (the record's own rule stays as it
    // was, so events already signed still replay).
    if let Some(bad) = [
        Some(file_name.as_str()),
        req.version.as_deref(),
        req.label.as_deref(),
    ]
    .into_iter()
    .flatten()
    .find(|s| !cairn_core::domain::is_plain_name(s))
    {
        return Err(FirmwareOpError::BadNames(format!(
            "{bad:?} holds control or invisible formatting characters"
        )));
    }
    crate::may_write(store)?;
    let len = std::fs::metadata(&req.file).map(|m| m.len()).unwrap_or(0);
    progress.begin("analysing", Unit::Bytes, len);
    let added = cairn_firmware::add(
        store.blobs(),
        scanner,
        &req.file,
        &AddOptions {
            max_size: req.max_size,
        },
        |n| progress.at(n),
        |_| {},
    );
    progress.end();
    let added = added?;
    let record = FirmwareRecord {
        asset,
        blob: added.blob,
        size: added.size,
        file_name,
        version: req.version.clone(),
        label: req.label.clone(),
        analysis: added.analysis,
    };
    record.validate().map_err(FirmwareOpError::NotRecordable)?;
    let now = cairn_store::now_millis();
    let e = store.append(|w, p| w.add_firmware(p, record, now))?;
    let view = store
        .projection()
        .firmware(&e.id())
        .ok_or(FirmwareOpError::Internal(
            "the new firmware is not in the projection",
        ))?;
    Ok(FirmwareAdded {
        event: e.id(),
        view,
        notes: added.notes,
    })
}

//! Firmware images: streaming, encrypted ingest; a bounded-memory binwalk scan that produces
//! the signed layout; and extraction.
//!
//! * [`ingest`]: one read of the file feeds the blob store (hash + encrypt + write) and the
//!   analysis thread at once.
//! * [`scan`]: binwalk's signatures and parsers, driven over windows so memory stays bounded
//!   whatever the image size; parser panics are contained, and every window's parsing has a
//!   call and time [`Budget`] (see [`budget`]), so a hostile image makes the analysis
//!   incomplete, never endless.
//! * [`guard`]: our own bounded checks in front of binwalk parsers known to loop.
//! * [`layout`]: region hashes and the entropy profile, from the same stream.
//! * [`extract`]: decrypt into the user's directory and run binwalk's extractors there, each
//!   under a deadline and an output budget, with what they leave swept (see [`contain`]).
//! * [`verify`]: re-check a signed analysis against its image before trusting it.
//!
//! The types that travel in events, and the layout diff, are in [`cairn_core::firmware`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod budget;
mod contain;
pub mod extract;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod guard;
pub mod ingest;
pub mod layout;
pub mod scan;
pub mod verify;

use std::path::PathBuf;

pub use extract::{ExtractOptions, Extraction, PartOutcome, extract, extract_with};
pub use ingest::{AddOptions, Added, add, analyse, human};
pub use scan::{Budget, INCOMPLETE, Scanner, incomplete};
pub use verify::{AnalysisCheck, verify};

/// What can go wrong with a firmware image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FirmwareError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file cannot be taken as an image.
    #[error("{}: {reason}", path.display())]
    BadImage {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Storing or reading the encrypted blob failed.
    #[error("{}: {source}", path.display())]
    Store {
        /// The image file concerned.
        path: PathBuf,
        /// The cause.
        source: Box<cairn_store::StoreError>,
    },
    /// The scanner could not run.
    #[error("firmware analysis: {0}")]
    Scanner(String),
    /// Extraction could not run.
    #[error("extraction: {0}")]
    Extract(String),
    /// A signed analysis does not describe the image it names: it is not used.
    #[error(
        "the signed analysis of {file} does not match its image {blob}, so it is not used: {reason}"
    )]
    AnalysisMismatch {
        /// The image's file name.
        file: String,
        /// The blob, short form.
        blob: String,
        /// What does not match.
        reason: String,
    },
}

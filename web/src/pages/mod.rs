//! One module per page.

pub mod asset;
pub mod assets;
pub mod audit;
pub mod bundle;
pub mod devices;
pub mod overview;
pub mod sync;

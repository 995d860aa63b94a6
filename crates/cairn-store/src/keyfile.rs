//! The device key file: secrets wrapped with a passphrase via Argon2id.
//!
//! Layout: `CAIRNKEY` (8) | version (1) | m_cost KiB (u32 LE) | t_cost (u32 LE) | lanes (u32 LE)
//! | salt (16) | sealed secrets. The header is the AAD, so parameters cannot be downgraded.

use argon2::{Algorithm, Argon2, Params, Version};
use std::path::Path;
use zeroize::Zeroize;

use crate::error::{Result, StoreError};
use crate::seal::{self, BlobKey, Key, StorageKey};

const MAGIC: &[u8; 8] = b"CAIRNKEY";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 12 + 16;

/// What unlocking the key file costs (Argon2id parameters), stored in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub passes: u32,
    /// Lanes (parallelism).
    pub lanes: u32,
}

impl KdfCost {
    /// A cost from its three parameters.
    pub const fn new(memory_kib: u32, passes: u32, lanes: u32) -> KdfCost {
        KdfCost {
            memory_kib,
            passes,
            lanes,
        }
    }

    /// Whether a key file's header asks for more than any key file Cairn writes would: a
    /// damaged file must not make the reader allocate gigabytes.
    fn is_absurd(&self) -> bool {
        self.memory_kib > 4 * 1024 * 1024 || self.passes > 64 || self.lanes > 16
    }
}

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation for Argon2id).
pub const DEFAULT_COST: KdfCost = KdfCost::new(19 * 1024, 2, 1);

/// The secrets of one device in one workspace.
pub struct Secrets {
    /// Ed25519 device secret.
    pub device: [u8; 32],
    /// Encrypts redb values.
    pub storage: StorageKey,
    /// Encrypts blobs.
    pub blobs: BlobKey,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.device.zeroize();
    }
}

impl Secrets {
    /// Fresh random secrets.
    pub fn generate() -> Secrets {
        Secrets {
            device: seal::random(),
            storage: StorageKey::from_bytes(seal::random()),
            blobs: BlobKey::from_bytes(seal::random()),
        }
    }
}

fn kek(passphrase: &[u8], salt: &[u8], cost: KdfCost) -> Option<Key> {
    let params = Params::new(cost.memory_kib, cost.passes, cost.lanes, Some(32)).ok()?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out)
        .ok()?;
    Some(out)
}

/// Wraps and writes secrets atomically (temp file, fsync, rename).
pub fn write(path: &Path, passphrase: &[u8], secrets: &Secrets, cost: KdfCost) -> Result<()> {
    let salt: [u8; 16] = seal::random();
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    for v in [cost.memory_kib, cost.passes, cost.lanes] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    let mut k = kek(passphrase, &salt, cost).ok_or_else(|| StoreError::BadKeyFile(path.into()))?;
    let mut plain = [0u8; 96];
    plain[..32].copy_from_slice(&secrets.device);
    plain[32..64].copy_from_slice(secrets.storage.as_bytes());
    plain[64..].copy_from_slice(secrets.blobs.as_bytes());
    let sealed = seal::seal(&k, &header, &plain);
    k.zeroize();
    plain.zeroize();
    let mut out = header;
    out.extend_from_slice(&sealed);
    crate::fsutil::write_atomic(path, &out)
}

/// Reads and unwraps secrets.
pub fn read(path: &Path, passphrase: &[u8]) -> Result<Secrets> {
    let raw = std::fs::read(path).map_err(StoreError::io(path))?;
    let bad = || StoreError::BadKeyFile(path.into());
    if raw.len() < HEADER + 24 + 96 + 16 || &raw[..8] != MAGIC || raw[8] != VERSION {
        return Err(bad());
    }
    let u = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
    let cost = KdfCost::new(u(9), u(13), u(17));
    if cost.is_absurd() {
        return Err(bad());
    }
    let mut k = kek(passphrase, &raw[21..HEADER], cost).ok_or_else(bad)?;
    let plain = seal::open(&k, &raw[..HEADER], &raw[HEADER..]);
    k.zeroize();
    let mut plain = plain.ok_or(StoreError::WrongPassphrase)?;
    if plain.len() != 96 {
        plain.zeroize();
        return Err(bad());
    }
    let key = |range: std::ops::Range<usize>| {
        let mut k = [0u8; 32];
        k.copy_from_slice(&plain[range]);
        k
    };
    let s = Secrets {
        device: key(0..32),
        storage: StorageKey::from_bytes(key(32..64)),
        blobs: BlobKey::from_bytes(key(64..96)),
    };
    plain.zeroize();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passphrase_and_damage_are_distinguished() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("device.key");
        let s = Secrets::generate();
        write(&p, b"right", &s, KdfCost::new(64, 1, 1)).unwrap();
        assert_eq!(read(&p, b"right").unwrap().device, s.device);
        assert!(matches!(
            read(&p, b"wrong"),
            Err(StoreError::WrongPassphrase)
        ));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(matches!(read(&p, b"right"), Err(StoreError::BadKeyFile(_))));
    }
}

//! The device key file: secrets wrapped with a passphrase via Argon2id.
//!
//! Layout: `CAIRNKEY` (8) | version (1) | m_cost KiB (u32 LE) | t_cost (u32 LE) | lanes (u32 LE)
//! | salt (16) | sealed secrets. The header is the AAD, so parameters cannot be downgraded.

use argon2::{Algorithm, Argon2, Params, Version};
use std::path::Path;
use zeroize::Zeroize;

use crate::error::{Result, StoreError};
use crate::seal::{self, Key};

const MAGIC: &[u8; 8] = b"CAIRNKEY";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 12 + 16;

/// Argon2id cost: 19 MiB, 2 passes, 1 lane (OWASP's minimum recommendation for Argon2id).
pub const DEFAULT_COST: (u32, u32, u32) = (19 * 1024, 2, 1);

/// The secrets of one device in one workspace.
pub struct Secrets {
    /// Ed25519 device secret.
    pub device: [u8; 32],
    /// Encrypts redb values.
    pub storage: Key,
    /// The workspace content key (blobs; later, relay sealing).
    pub content: Key,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        self.device.zeroize();
        self.storage.zeroize();
        self.content.zeroize();
    }
}

impl Secrets {
    /// Fresh random secrets.
    pub fn generate() -> Secrets {
        Secrets {
            device: seal::random(),
            storage: seal::random(),
            content: seal::random(),
        }
    }
}

fn kek(passphrase: &[u8], salt: &[u8], (m, t, p): (u32, u32, u32)) -> Option<Key> {
    let params = Params::new(m, t, p, Some(32)).ok()?;
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase, salt, &mut out)
        .ok()?;
    Some(out)
}

/// Wraps and writes secrets atomically (temp file, fsync, rename).
pub fn write(
    path: &Path,
    passphrase: &[u8],
    secrets: &Secrets,
    cost: (u32, u32, u32),
) -> Result<()> {
    let salt: [u8; 16] = seal::random();
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    for v in [cost.0, cost.1, cost.2] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    header.extend_from_slice(&salt);
    let mut k = kek(passphrase, &salt, cost).ok_or_else(|| StoreError::BadKeyFile(path.into()))?;
    let mut plain = [0u8; 96];
    plain[..32].copy_from_slice(&secrets.device);
    plain[32..64].copy_from_slice(&secrets.storage);
    plain[64..].copy_from_slice(&secrets.content);
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
    let cost = (u(9), u(13), u(17));
    // Refuse absurd parameters from a damaged file instead of allocating gigabytes.
    if cost.0 > 4 * 1024 * 1024 || cost.1 > 64 || cost.2 > 16 {
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
    let mut s = Secrets {
        device: [0; 32],
        storage: [0; 32],
        content: [0; 32],
    };
    s.device.copy_from_slice(&plain[..32]);
    s.storage.copy_from_slice(&plain[32..64]);
    s.content.copy_from_slice(&plain[64..]);
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
        write(&p, b"right", &s, (64, 1, 1)).unwrap();
        assert_eq!(read(&p, b"right").unwrap().device, s.device);
        assert!(matches!(
            read(&p, b"wrong"),
            Err(StoreError::WrongPassphrase)
        ));
        std::fs::write(&p, b"garbage").unwrap();
        assert!(matches!(read(&p, b"right"), Err(StoreError::BadKeyFile(_))));
    }
}

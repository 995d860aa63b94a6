//! Authenticated encryption of values at rest (XChaCha20-Poly1305, random nonce, bound AAD).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// 32 bytes of symmetric key, as the AEAD primitives below take it.
pub type Key = [u8; 32];

/// Seals this device's stored values (redb values, device-local records). It never leaves the
/// device. A newtype, so that it cannot be passed where the blob key is expected.
pub struct StorageKey(Key);

/// Seals this device's blobs (chunk keys derive from it). It never leaves the device.
pub struct BlobKey(Key);

macro_rules! device_key {
    ($t:ident) => {
        impl $t {
            /// Wraps key bytes (fresh from [`random`], or unwrapped from the key file).
            pub fn from_bytes(bytes: Key) -> $t {
                $t(bytes)
            }
            /// The key bytes, for wrapping into the key file or deriving subkeys.
            pub fn as_bytes(&self) -> &Key {
                &self.0
            }
            /// [`seal`] with this key.
            pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
                seal(&self.0, aad, plain)
            }
            /// [`open`] with this key.
            pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
                open(&self.0, aad, sealed)
            }
        }
        impl Drop for $t {
            fn drop(&mut self) {
                zeroize::Zeroize::zeroize(&mut self.0);
            }
        }
    };
}
device_key!(StorageKey);
device_key!(BlobKey);

/// Fresh random bytes from the OS.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS RNG failing is not recoverable for a crypto tool.
    if let Err(e) = getrandom::fill(&mut b) {
        panic!("operating-system RNG unavailable: {e}");
    }
    b
}

/// Derives a purpose-specific subkey.
pub fn subkey(key: &Key, purpose: &str) -> Key {
    blake3::derive_key(purpose, key)
}

/// Encrypts `plain`, binding it to `aad`. Output: nonce (24) || ciphertext+tag.
pub fn seal(key: &Key, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce: [u8; 24] = random();
    let ct = match cipher.encrypt(&XNonce::from(nonce), Payload { msg: plain, aad }) {
        Ok(ct) => ct,
        Err(_) => unreachable!("XChaCha20-Poly1305 encryption cannot fail for in-memory input"),
    };
    let mut out = Vec::with_capacity(24 + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// Decrypts what [`seal`] produced. `None` if it was tampered with or the key/AAD is wrong.
pub fn open(key: &Key, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 24 + 16 {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce = XNonce::try_from(&sealed[..24]).ok()?;
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &sealed[24..],
                aad,
            },
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let k = [1u8; 32];
        let s = seal(&k, b"a", b"secret");
        assert_eq!(open(&k, b"a", &s).as_deref(), Some(&b"secret"[..]));
        assert!(open(&k, b"b", &s).is_none());
        assert!(open(&[2; 32], b"a", &s).is_none());
        let mut t = s.clone();
        t[30] ^= 1;
        assert!(open(&k, b"a", &t).is_none());
        assert!(open(&k, b"a", &s[..20]).is_none());
    }
}

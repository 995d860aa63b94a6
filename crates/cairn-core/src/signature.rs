//! The Ed25519 verification rule, one by one and in batches, with one verdict for both.
//!
//! The rule is the *cofactored* equation `[8]([s]B − R − [k]A) = 0` with `k = SHA-512(R ‖ A ‖ M)`
//! (as ZIP 215 fixes it), plus three strict checks: `s` is canonical, and neither the key `A`
//! nor `R` has small order. A batch checks `[8](−[Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σⱼ [Σ_{i∈j} zᵢkᵢ]Aⱼ) = 0`
//! with 128-bit weights `zᵢ`, which holds exactly when every item holds (but for a 2⁻¹²⁸
//! chance), so a signature's verdict never depends on which batch it was checked in. A
//! cofactorless rule cannot promise that: a signature whose `R` carries a torsion component
//! fails alone and passes in a batch whenever the weights happen to cancel it, and the nodes of
//! a workspace batch differently (sync pages, audits, the browser).
//!
//! The weights are derived from the whole batch (BLAKE3 over every `k` and `s`), so verification
//! is deterministic and needs no randomness (the browser build has none to spare).
//!
//! Cost: a batch of n signatures by `a` distinct keys is one multiscalar multiplication of
//! n + a + 1 points (plus one decompression per `R`); event logs have few authors, so terms for
//! a shared key are summed first, which halves the work against one term per signature.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

use crate::ids::DeviceId;

/// Signatures per multiscalar multiplication. Pippenger's cost per point falls as batches
/// grow; past a few hundred points the gain flattens while a failed batch costs more to
/// re-check one by one.
pub const BATCH: usize = 512;

/// A decompressed public key that passed the key checks.
#[derive(Clone, Copy)]
struct Key {
    id: DeviceId,
    point: EdwardsPoint,
}

/// A decompressed key, or `None` when the bytes are no point or a small-order one.
fn key(id: &DeviceId) -> Option<Key> {
    let point = CompressedEdwardsY(id.0).decompress()?;
    (!point.is_small_order()).then_some(Key { id: *id, point })
}

/// True when `id` is usable as a device key (a point of more than small order).
pub fn valid_key(id: &DeviceId) -> bool {
    key(id).is_some()
}

/// One signature, parsed: `R`, `s`, and the challenge `k`.
struct ParsedSig {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
    s_bytes: [u8; 32],
    k_wide: [u8; 64],
}

/// Parses a signature on `msg` by `key`; `None` when `s` is not canonical or `R` is no point
/// or a small-order one.
fn parse(key: &Key, msg: &[u8], sig: &[u8; 64]) -> Option<ParsedSig> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&sig[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&sig[32..]);
    let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes))?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    if r.is_small_order() {
        return None;
    }
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(key.id.0);
    h.update(msg);
    let k_wide: [u8; 64] = h.finalize().into();
    Some(ParsedSig {
        r,
        s,
        k: Scalar::from_bytes_mod_order_wide(&k_wide),
        s_bytes,
        k_wide,
    })
}

/// The single-signature check of a parsed signature.
fn holds(key: &Key, p: &ParsedSig) -> bool {
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-key.point, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Verifies one signature by `author` on `msg`.
pub fn verify_one(author: &DeviceId, msg: &[u8], sig: &[u8; 64]) -> bool {
    key(author).is_some_and(|k| parse(&k, msg, sig).is_some_and(|p| holds(&k, &p)))
}

/// Verifies many signatures; the result names each bad one. Batches of [`BATCH`]; a batch
/// that fails is re-checked one by one, so a bad signature costs its batch a second pass.
pub fn verify_many(items: &[(DeviceId, &[u8], [u8; 64])]) -> Vec<bool> {
    // Each distinct key is decompressed once per call (logs have few authors, many events).
    let mut keys: Vec<(DeviceId, Option<Key>)> = Vec::new();
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(BATCH) {
        let parsed: Vec<Option<(usize, ParsedSig)>> = chunk
            .iter()
            .map(|(author, msg, sig)| {
                let slot = match keys.iter().position(|(d, _)| d == author) {
                    Some(i) => i,
                    None => {
                        keys.push((*author, key(author)));
                        keys.len() - 1
                    }
                };
                let k = keys[slot].1?;
                parse(&k, msg, sig).map(|p| (slot, p))
            })
            .collect();
        let good: Vec<&(usize, ParsedSig)> = parsed.iter().flatten().collect();
        if batch_holds(&keys, &good) {
            out.extend(parsed.iter().map(Option::is_some));
        } else {
            out.extend(parsed.iter().map(|p| {
                p.as_ref()
                    .is_some_and(|(slot, p)| keys[*slot].1.is_some_and(|k| holds(&k, p)))
            }));
        }
    }
    out
}

/// The batch equation over parsed signatures (each with the index of its key in `keys`).
fn batch_holds(keys: &[(DeviceId, Option<Key>)], sigs: &[&(usize, ParsedSig)]) -> bool {
    if sigs.is_empty() {
        return true;
    }
    let mut transcript = blake3::Hasher::new_derive_key("cairn ed25519 batch weights v1");
    for (_, p) in sigs {
        transcript.update(&p.k_wide);
        transcript.update(&p.s_bytes);
    }
    let mut weights = transcript.finalize_xof();
    let mut b_coeff = Scalar::ZERO;
    let mut key_coeff = vec![Scalar::ZERO; keys.len()];
    let mut scalars = Vec::with_capacity(sigs.len() + keys.len() + 1);
    let mut points = Vec::with_capacity(sigs.len() + keys.len() + 1);
    for (slot, p) in sigs {
        let mut z = [0u8; 16];
        weights.fill(&mut z);
        let z = Scalar::from(u128::from_le_bytes(z));
        b_coeff -= z * p.s;
        key_coeff[*slot] += z * p.k;
        scalars.push(z);
        points.push(p.r);
    }
    for (slot, c) in key_coeff.into_iter().enumerate() {
        if let Some(k) = keys[slot].1
            && c != Scalar::ZERO
        {
            scalars.push(c);
            points.push(k.point);
        }
    }
    scalars.push(b_coeff);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::DeviceKey;
    use curve25519_dalek::constants::EIGHT_TORSION;

    fn items(n: u32, key: &DeviceKey) -> (Vec<Vec<u8>>, Vec<[u8; 64]>) {
        let msgs: Vec<Vec<u8>> = (0..n).map(|i| i.to_le_bytes().to_vec()).collect();
        let sigs = msgs.iter().map(|m| key.sign(m)).collect();
        (msgs, sigs)
    }

    #[test]
    fn honest_signatures_pass_alone_and_in_batches() {
        let a = DeviceKey::from_secret(&[7; 32]);
        let b = DeviceKey::from_secret(&[8; 32]);
        let (msgs, sigs) = items(1100, &a);
        let list: Vec<(DeviceId, &[u8], [u8; 64])> = msgs
            .iter()
            .zip(&sigs)
            .enumerate()
            .map(|(i, (m, s))| {
                // Every third item by b, so a batch holds two keys.
                if i % 3 == 0 {
                    (b.device_id(), m.as_slice(), b.sign(m))
                } else {
                    (a.device_id(), m.as_slice(), *s)
                }
            })
            .collect();
        assert!(verify_many(&list).iter().all(|ok| *ok));
        assert!(list.iter().all(|(d, m, s)| verify_one(d, m, s)));
        // The same signatures are what ed25519-dalek's strict rule accepts.
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&a.device_id().0).unwrap();
        assert!(
            vk.verify_strict(&msgs[1], &ed25519_dalek::Signature::from_bytes(&sigs[1]))
                .is_ok()
        );
    }

    #[test]
    fn each_bad_signature_is_named() {
        let k = DeviceKey::from_secret(&[7; 32]);
        let (msgs, mut sigs) = items(700, &k);
        sigs[70][3] ^= 1; // R changed
        sigs[600][40] ^= 1; // s changed
        sigs[601][63] |= 0xf0; // s not canonical
        let other = DeviceKey::from_secret(&[9; 32]);
        let mut list: Vec<(DeviceId, &[u8], [u8; 64])> = msgs
            .iter()
            .zip(&sigs)
            .map(|(m, s)| (k.device_id(), m.as_slice(), *s))
            .collect();
        list[5].0 = other.device_id(); // someone else's key
        list[6].1 = b"another message";
        let res = verify_many(&list);
        let bad: Vec<usize> = (0..res.len()).filter(|i| !res[*i]).collect();
        assert_eq!(bad, vec![5, 6, 70, 600, 601]);
        for i in 0..list.len() {
            assert_eq!(
                verify_one(&list[i].0, list[i].1, &list[i].2),
                res[i],
                "item {i}"
            );
        }
    }

    #[test]
    fn small_order_keys_and_r_are_refused() {
        let k = DeviceKey::from_secret(&[7; 32]);
        let small = DeviceId(EIGHT_TORSION[2].compress().to_bytes());
        assert!(!valid_key(&small));
        assert!(valid_key(&k.device_id()));
        let mut sig = k.sign(b"m");
        sig[..32].copy_from_slice(&EIGHT_TORSION[1].compress().to_bytes());
        assert!(!verify_one(&k.device_id(), b"m", &sig));
        assert_eq!(verify_many(&[(k.device_id(), b"m", sig)]), vec![false]);
    }

    /// A signature whose R carries a torsion component satisfies only the cofactored
    /// equation. Its verdict must be the same alone and in any batch.
    #[test]
    fn torsion_in_r_gets_one_verdict_however_it_is_batched() {
        let seed = [11u8; 32];
        let k = DeviceKey::from_secret(&seed);
        let h: [u8; 64] = Sha512::digest(seed).into();
        let mut a_bytes = [0u8; 32];
        a_bytes.copy_from_slice(&h[..32]);
        a_bytes[0] &= 248;
        a_bytes[31] &= 127;
        a_bytes[31] |= 64;
        let a = Scalar::from_bytes_mod_order(a_bytes);
        let msg = b"torsion".as_slice();
        let r = Scalar::from(123_456_789u64);
        let big_r = EdwardsPoint::mul_base(&r) + EIGHT_TORSION[1];
        let r_bytes = big_r.compress().to_bytes();
        let mut hh = Sha512::new();
        hh.update(r_bytes);
        hh.update(k.device_id().0);
        hh.update(msg);
        let kk = Scalar::from_bytes_mod_order_wide(&hh.finalize().into());
        let s = r + kk * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(s.as_bytes());
        // ed25519-dalek's strict (cofactorless) rule refuses it; ours accepts it everywhere.
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&k.device_id().0).unwrap();
        assert!(
            vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_err()
        );
        assert!(verify_one(&k.device_id(), msg, &sig));
        let (msgs, sigs) = items(40, &k);
        for at in [0usize, 7, 39] {
            let mut list: Vec<(DeviceId, &[u8], [u8; 64])> = msgs
                .iter()
                .zip(&sigs)
                .map(|(m, s)| (k.device_id(), m.as_slice(), *s))
                .collect();
            list.insert(at, (k.device_id(), msg, sig));
            assert!(verify_many(&list).iter().all(|ok| *ok), "position {at}");
        }
    }
}

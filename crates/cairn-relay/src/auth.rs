//! Request authentication: every request carries the device id, a timestamp and an Ed25519
//! signature over method, path (with query), timestamp and the BLAKE3 hash of the body.
//!
//! The relay accepts a request when the signature verifies, the timestamp is within the window
//! of its clock, the signature has not been seen before (replay cache) and the device is in the
//! workspace's member list.

use cairn_core::DeviceId;
use cairn_core::keys::DeviceKey;
use cairn_core::signature::verify_one;

/// Header: the signing device (hex).
pub const H_DEVICE: &str = "x-cairn-device";
/// Header: the signing time, Unix milliseconds.
pub const H_TIME: &str = "x-cairn-time";
/// Header: the Ed25519 signature (hex).
pub const H_SIG: &str = "x-cairn-signature";

/// The exact bytes a request signature covers.
pub fn message(method: &str, path_and_query: &str, time_ms: u64, body: &[u8]) -> Vec<u8> {
    format!(
        "cairn-relay/1\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        time_ms,
        blake3::hash(body).to_hex()
    )
    .into_bytes()
}

/// Signs a request; returns the three headers to send.
pub fn sign(
    key: &DeviceKey,
    method: &str,
    path_and_query: &str,
    time_ms: u64,
    body: &[u8],
) -> [(&'static str, String); 3] {
    let sig = key.sign(&message(method, path_and_query, time_ms, body));
    [
        (H_DEVICE, key.device_id().to_hex()),
        (H_TIME, time_ms.to_string()),
        (H_SIG, hex::encode(sig)),
    ]
}

/// The authentication claims of a request, parsed but not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// Who claims to sign.
    pub device: DeviceId,
    /// When.
    pub time_ms: u64,
    /// The signature.
    pub sig: [u8; 64],
}

/// Why a request is not authentic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A header is missing or malformed.
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    /// The timestamp is too far from the relay's clock.
    #[error("request time is {skew_ms} ms from the relay's clock (window {window_ms} ms)")]
    Expired {
        /// Difference.
        skew_ms: u64,
        /// Allowed.
        window_ms: u64,
    },
    /// The signature does not verify.
    #[error("request signature does not verify")]
    BadSignature,
}

impl Claims {
    /// Parses the three headers through `get` (lower-case names).
    pub fn parse<'h>(get: impl Fn(&str) -> Option<&'h str>) -> Result<Claims, AuthError> {
        let device = get(H_DEVICE)
            .and_then(|v| DeviceId::from_hex(v.trim()).ok())
            .ok_or(AuthError::Header(H_DEVICE))?;
        let time_ms = get(H_TIME)
            .and_then(|v| v.trim().parse().ok())
            .ok_or(AuthError::Header(H_TIME))?;
        let sig = get(H_SIG)
            .and_then(|v| hex::decode(v.trim()).ok())
            .and_then(|v| <[u8; 64]>::try_from(v).ok())
            .ok_or(AuthError::Header(H_SIG))?;
        Ok(Claims {
            device,
            time_ms,
            sig,
        })
    }

    /// Checks the time window, then the signature over this request.
    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now_ms: u64,
        window_ms: u64,
    ) -> Result<(), AuthError> {
        let skew_ms = now_ms.abs_diff(self.time_ms);
        if skew_ms > window_ms {
            return Err(AuthError::Expired { skew_ms, window_ms });
        }
        let msg = message(method, path_and_query, self.time_ms, body);
        if verify_one(&self.device, &msg, &self.sig) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }

    /// The replay-cache key of this request.
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.sig).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn signature_binds_method_path_time_and_body() {
        let k = DeviceKey::from_secret(&[4; 32]);
        let h: HashMap<&str, String> = sign(&k, "POST", "/v1/x?a=1", 1000, b"body")
            .into_iter()
            .collect();
        let c = Claims::parse(|n| h.get(n).map(String::as_str)).expect("parse");
        assert_eq!(c.device, k.device_id());
        assert!(c.verify("POST", "/v1/x?a=1", b"body", 1000, 10).is_ok());
        assert_eq!(
            c.verify("GET", "/v1/x?a=1", b"body", 1000, 10),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            c.verify("POST", "/v1/x?a=2", b"body", 1000, 10),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            c.verify("POST", "/v1/x?a=1", b"bodY", 1000, 10),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            c.verify("POST", "/v1/x?a=1", b"body", 1011, 10),
            Err(AuthError::Expired { skew_ms: 11, .. })
        ));
        assert_eq!(
            Claims::parse(|n| if n == H_SIG {
                Some("zz")
            } else {
                h.get(n).map(String::as_str)
            }),
            Err(AuthError::Header(H_SIG))
        );
    }
}

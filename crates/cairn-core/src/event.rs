//! The signed event envelope: encoding, decoding and signature checks.
//!
//! Stored bytes are `MAGIC (8) || FORMAT_VERSION (1) || postcard(Envelope) || signature (64)`.
//! The signature covers everything before it; the event id is the BLAKE3 hash of all of it.
//! Verification works on the stored bytes and never re-encodes.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::body::Body;
use crate::error::DecodeError;
use crate::hlc::Hlc;
use crate::ids::{DeviceId, EventId, WorkspaceId};
use crate::keys::DeviceKey;
use crate::kind::EventKind;
use crate::signature::verify_one;

/// Domain-separating prefix of every event.
pub const MAGIC: &[u8; 8] = b"CAIRN-EV";
/// The encoding version this build writes and reads. Version 2: revocations carry a cut-off
/// (see [`crate::body::RevocationCutoff`]); version 1 logs are refused, not misread.
pub const FORMAT_VERSION: u8 = 2;
/// Upper bound on an encoded event.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Upper bound on `deps`.
pub const MAX_DEPS: usize = 1024;
const HEADER: usize = MAGIC.len() + 1;
const SIG: usize = 64;

/// The signed fields of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The workspace ([`WorkspaceId::GENESIS`] for the genesis event itself).
    pub workspace: WorkspaceId,
    /// The signing device.
    pub author: DeviceId,
    /// 1-based, contiguous per author.
    pub seq: u64,
    /// The author's previous event (`None` exactly when `seq == 1`).
    pub prev: Option<EventId>,
    /// Other heads the author had seen, sorted and unique.
    pub deps: Vec<EventId>,
    /// The author's clock claim.
    pub time: Hlc,
    /// What the event does.
    pub kind: EventKind,
    /// Kind-specific body (see [`Body`]).
    pub body: Vec<u8>,
}

/// [`Envelope`] as encoded, with the kind as its number: the same bytes, decoded so that an
/// unknown kind is a typed [`DecodeError::UnknownKind`], not a message to match.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct WireEnvelope {
    workspace: WorkspaceId,
    author: DeviceId,
    seq: u64,
    prev: Option<EventId>,
    deps: Vec<EventId>,
    time: Hlc,
    kind: u16,
    body: Vec<u8>,
}

impl WireEnvelope {
    fn into_envelope(self) -> Result<Envelope, DecodeError> {
        Ok(Envelope {
            workspace: self.workspace,
            author: self.author,
            seq: self.seq,
            prev: self.prev,
            deps: self.deps,
            time: self.time,
            kind: EventKind::from_number(self.kind).ok_or(DecodeError::UnknownKind(self.kind))?,
            body: self.body,
        })
    }
}

/// A decoded event, holding its exact stored bytes.
#[derive(Clone)]
pub struct Event {
    bytes: Arc<[u8]>,
    id: EventId,
    env: Envelope,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Event({} {} {}#{})",
            self.id.short(),
            self.env.kind.label(),
            self.env.author.short(),
            self.env.seq
        )
    }
}

impl Event {
    /// Encodes and signs an envelope.
    pub fn sign(env: Envelope, key: &DeviceKey) -> Event {
        debug_assert_eq!(env.author, key.device_id());
        let mut bytes =
            Vec::with_capacity(HEADER + 96 + env.body.len() + 32 * env.deps.len() + SIG);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION);
        // Writing into a Vec cannot fail for these plain types.
        bytes = match postcard::to_extend(&env, bytes) {
            Ok(b) => b,
            Err(e) => unreachable!("postcard into Vec failed: {e}"),
        };
        let sig = key.sign(&bytes);
        bytes.extend_from_slice(&sig);
        let bytes: Arc<[u8]> = bytes.into();
        Event {
            id: EventId::of(&bytes),
            bytes,
            env,
        }
    }

    /// Decodes stored or received bytes. Does not check the signature.
    pub fn decode(bytes: impl Into<Arc<[u8]>>) -> Result<Event, DecodeError> {
        let bytes: Arc<[u8]> = bytes.into();
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        if bytes.len() < HEADER + SIG {
            return Err(DecodeError::Truncated(bytes.len()));
        }
        if &bytes[..MAGIC.len()] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        if bytes[MAGIC.len()] != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(bytes[MAGIC.len()]));
        }
        let fields = &bytes[HEADER..bytes.len() - SIG];
        let (wire, rest): (WireEnvelope, _) =
            postcard::take_from_bytes(fields).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        let env = wire.into_envelope()?;
        Ok(Event {
            id: EventId::of(&bytes),
            bytes,
            env,
        })
    }

    /// The event id (hash of the stored bytes).
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The exact stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A cheap clone of the stored bytes.
    pub fn shared_bytes(&self) -> Arc<[u8]> {
        self.bytes.clone()
    }

    /// The signed fields.
    pub fn envelope(&self) -> &Envelope {
        &self.env
    }

    /// Shorthand for the author.
    pub fn author(&self) -> DeviceId {
        self.env.author
    }

    /// Shorthand for the seq.
    pub fn seq(&self) -> u64 {
        self.env.seq
    }

    /// Shorthand for the kind.
    pub fn kind(&self) -> EventKind {
        self.env.kind
    }

    /// Shorthand for the time claim.
    pub fn time(&self) -> Hlc {
        self.env.time
    }

    /// The bytes the signature covers.
    pub fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIG]
    }

    /// The signature.
    pub fn signature(&self) -> [u8; 64] {
        let mut s = [0u8; 64];
        s.copy_from_slice(&self.bytes[self.bytes.len() - SIG..]);
        s
    }

    /// Checks the signature against the author key, on the stored bytes.
    pub fn verify_signature(&self) -> bool {
        verify_one(&self.env.author, self.signed_part(), &self.signature())
    }

    /// Decodes the body for this event's kind.
    pub fn body(&self) -> Result<Body, DecodeError> {
        Body::decode(self.env.kind, &self.env.body)
    }
}

/// Verifies the signatures of many events (batched, see [`crate::signature::verify_many`]).
pub fn verify_signatures<'a>(events: impl IntoIterator<Item = &'a Event>) -> Vec<bool> {
    let items: Vec<(DeviceId, &[u8], [u8; 64])> = events
        .into_iter()
        .map(|e| (e.author(), e.signed_part(), e.signature()))
        .collect();
    crate::signature::verify_many(&items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::DocBody;
    use crate::ids::AssetId;

    fn sample(key: &DeviceKey) -> Event {
        let body = Body::Doc(DocBody {
            asset: Some(AssetId([3; 16])),
            asset_change: Some(vec![1, 2, 3]),
            workspace_change: None,
        });
        Event::sign(
            Envelope {
                workspace: WorkspaceId([9; 32]),
                author: key.device_id(),
                seq: 2,
                prev: Some(EventId([1; 32])),
                deps: vec![EventId([2; 32])],
                time: Hlc {
                    millis: 5,
                    counter: 1,
                },
                kind: EventKind::AssetEdited,
                body: body.encode(),
            },
            key,
        )
    }

    #[test]
    fn decode_is_the_inverse_of_sign() {
        let k = DeviceKey::from_secret(&[1; 32]);
        let e = sample(&k);
        let d = Event::decode(e.bytes().to_vec()).unwrap();
        assert_eq!(d.envelope(), e.envelope());
        assert_eq!(d.id(), e.id());
        assert!(d.verify_signature());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let k = DeviceKey::from_secret(&[1; 32]);
        let e = sample(&k);
        for i in 0..e.bytes().len() {
            let mut b = e.bytes().to_vec();
            b[i] ^= 0x40;
            // A flip changes the id whatever it hits, so the id proves nothing: verification
            // must fail (or decoding refuse the bytes).
            match Event::decode(b) {
                Err(_) => {}
                Ok(d) => assert!(!d.verify_signature(), "flip at {i} passes verification"),
            }
        }
    }

    #[test]
    fn an_unknown_kind_is_a_typed_error() {
        let e = sample(&DeviceKey::from_secret(&[1; 32]));
        let unknown = (1..=u16::MAX)
            .find(|n| EventKind::from_number(*n).is_none())
            .unwrap();
        let env = e.envelope().clone();
        let wire = WireEnvelope {
            workspace: env.workspace,
            author: env.author,
            seq: env.seq,
            prev: env.prev,
            deps: env.deps,
            time: env.time,
            kind: unknown,
            body: env.body,
        };
        let mut bytes = e.bytes()[..HEADER].to_vec();
        bytes.extend_from_slice(&postcard::to_allocvec(&wire).unwrap());
        bytes.extend_from_slice(&[0; SIG]);
        assert_eq!(
            Event::decode(bytes).unwrap_err(),
            DecodeError::UnknownKind(unknown)
        );
    }

    #[test]
    fn truncation_and_trailing_bytes_are_errors() {
        let k = DeviceKey::from_secret(&[1; 32]);
        let e = sample(&k);
        for n in 0..e.bytes().len() {
            let r = Event::decode(e.bytes()[..n].to_vec());
            assert!(r.is_err() || !r.as_ref().is_ok_and(|d| d.verify_signature()));
        }
        assert!(matches!(
            Event::decode(vec![0u8; 10]),
            Err(DecodeError::Truncated(10))
        ));
        assert!(matches!(
            Event::decode(vec![0u8; 100]),
            Err(DecodeError::BadMagic)
        ));
    }
}

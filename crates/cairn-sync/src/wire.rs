//! Frames: `length (u32 LE) | postcard(Frame)`, version 2. A frame longer than
//! [`MAX_FRAME`] is refused before any of it is read into memory.

use cairn_core::{BlobId, DeviceId, EventId, WorkspaceId};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::SyncError;

/// Protocol version carried in [`Frame::Hello`].
pub const VERSION: u16 = 2;
/// Largest frame accepted (a batch of events, or one blob chunk, plus overhead).
pub const MAX_FRAME: usize = 20 << 20;
/// Events per [`Frame::Events`] batch, at most.
pub const BATCH_EVENTS: usize = 1024;
/// Bytes of events per batch, at most (a single larger event goes alone).
pub const BATCH_BYTES: usize = 4 << 20;
/// Plaintext bytes per blob chunk.
pub const BLOB_CHUNK: usize = 1 << 20;

/// One author's position: highest contiguous seq and the event there. Encoded as its three
/// fields in order (postcard), as the tuple it replaced was: the wire is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrontierEntry {
    /// The author.
    pub author: DeviceId,
    /// Highest seq of the author's chain held without a gap.
    pub seq: u64,
    /// The event at that seq.
    pub head: EventId,
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// First frame each way: protocol version, workspace (`None` for a device that has not
    /// received the workspace yet) and a digest of the frontier. When the two digests are
    /// equal there is nothing to exchange and no frontier is sent (a no-op sync costs two
    /// small frames); otherwise each side sends [`Frame::Frontier`] next.
    Hello {
        /// [`VERSION`].
        version: u16,
        /// The workspace, once known.
        workspace: Option<WorkspaceId>,
        /// Authors in the frontier.
        authors: u32,
        /// [`frontier_digest`] of the frontier.
        digest: [u8; 32],
    },
    /// Per author: highest contiguous seq and head id; sent after `Hello` when the digests
    /// differ, and must hash to the digest that `Hello` announced.
    Frontier(Vec<FrontierEntry>),
    /// Stored event bytes, in the sender's causal order; at most [`BATCH_EVENTS`], refused
    /// while decoding past that (an empty element costs one byte on the wire but a 24-byte
    /// vector in memory, so an unbounded count would turn a 20 MiB frame into 0.5 GB).
    Events(#[serde(deserialize_with = "at_most_batch_events")] Vec<Vec<u8>>),
    /// No more events in this session.
    EventsEnd,
    /// Blobs the sender lacks and asks for.
    WantBlobs(Vec<BlobId>),
    /// A chunk of a blob's plaintext (the QUIC channel is encrypted); `last` ends the blob.
    BlobChunk {
        /// Which blob.
        id: BlobId,
        /// Plaintext bytes.
        data: Vec<u8>,
        /// Final chunk of this blob.
        last: bool,
    },
    /// The sender does not have a requested blob.
    BlobMissing(BlobId),
    /// All requested blobs were sent.
    BlobsEnd,
}

/// Decodes [`Frame::Events`]'s list, refusing more than [`BATCH_EVENTS`] elements before
/// allocating them.
fn at_most_batch_events<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = Vec<Vec<u8>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {BATCH_EVENTS} events")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            if seq.size_hint().is_some_and(|n| n > BATCH_EVENTS) {
                return Err(serde::de::Error::custom(format!(
                    "a batch of more than {BATCH_EVENTS} events"
                )));
            }
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(e) = seq.next_element::<Vec<u8>>()? {
                if out.len() == BATCH_EVENTS {
                    return Err(serde::de::Error::custom(format!(
                        "a batch of more than {BATCH_EVENTS} events"
                    )));
                }
                out.push(e);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

/// The digest a `Hello` carries: BLAKE3 over the frontier's encoding (entries in author
/// order, as the projection lists them).
pub fn frontier_digest(frontier: &[FrontierEntry]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("cairn sync frontier v2");
    for e in frontier {
        h.update(&e.author.0);
        h.update(&e.seq.to_le_bytes());
        h.update(&e.head.0);
    }
    *h.finalize().as_bytes()
}

/// What is wrong with a frame: one this side could not send (a local bug, never the peer's
/// fault), or one the peer sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// This side could not encode a frame.
    #[error("encoding a frame to send: {0}")]
    Encode(postcard::Error),
    /// This side built a frame over the limit (batching should have split it).
    #[error("refusing to send a frame of {0} bytes (limit {MAX_FRAME})")]
    OutgoingTooLarge(usize),
    /// The peer announced a frame over the limit.
    #[error("protocol violation by peer: frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The stream ended inside a frame.
    #[error("protocol violation by peer: truncated frame (expected {0} bytes)")]
    Truncated(usize),
    /// The frame's bytes do not decode.
    #[error(
        "protocol violation by peer: undecodable frame ({0}; or past a per-element limit such \
         as {BATCH_EVENTS} events per batch)"
    )]
    Undecodable(postcard::Error),
}

impl FrameError {
    /// Whether the peer is to blame (as opposed to this side).
    pub fn by_peer(&self) -> bool {
        !matches!(
            self,
            FrameError::Encode(_) | FrameError::OutgoingTooLarge(_)
        )
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> Result<(), SyncError> {
    let body = postcard::to_allocvec(f).map_err(FrameError::Encode)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|_| body.len() <= MAX_FRAME)
        .ok_or(FrameError::OutgoingTooLarge(body.len()))?;
    w.write_all(&len.to_le_bytes()).await?;
    w.write_all(&body).await?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, SyncError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len).into());
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            FrameError::Truncated(len).into()
        } else {
            SyncError::from(e)
        }
    })?;
    Ok(Some(
        postcard::from_bytes(&body).map_err(FrameError::Undecodable)?,
    ))
}

/// Splits event bytes into batches within [`BATCH_EVENTS`] and [`BATCH_BYTES`].
pub fn batches(events: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut bytes = 0;
    for e in events {
        if !cur.is_empty() && (cur.len() == BATCH_EVENTS || bytes + e.len() > BATCH_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += e.len();
        cur.push(e);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_limits_hold() {
        let f = Frame::Events(vec![vec![1, 2, 3], vec![]]);
        let mut buf = Vec::new();
        write_frame(&mut buf, &f).await.unwrap();
        assert_eq!(read_frame(&mut buf.as_slice()).await.unwrap(), Some(f));
        // Oversized length prefix: refused without allocating.
        let huge = (u32::MAX).to_le_bytes();
        let err = read_frame(&mut huge.as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        // Truncated body.
        let mut t = buf.clone();
        t.truncate(buf.len() - 1);
        let err = read_frame(&mut t.as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Garbage.
        let g = [3u8, 0, 0, 0, 0xff, 0xff, 0xff];
        let err = read_frame(&mut g.as_slice()).await.unwrap_err();
        assert!(err.to_string().contains("undecodable"), "{err}");
        // Clean end.
        assert_eq!(read_frame(&mut [].as_slice()).await.unwrap(), None);
        // Every refusal above is the peer's doing; a frame this side cannot send is not.
        for bad in [huge.as_slice(), &t, &g] {
            assert!(read_frame(&mut &bad[..]).await.unwrap_err().by_peer());
        }
        let big = Frame::BlobChunk {
            id: BlobId([0; 32]),
            data: vec![0; MAX_FRAME],
            last: true,
        };
        let mut sink = Vec::new();
        let err = write_frame(&mut sink, &big).await.unwrap_err();
        assert!(
            !err.by_peer(),
            "a local failure was blamed on the peer: {err}"
        );
        assert!(!err.to_string().contains("peer"), "{err}");
        assert!(sink.is_empty(), "a part of the refused frame was written");
    }

    /// A peer sends one frame within the size limit holding two million empty events: one
    /// byte each on the wire, 24 bytes each in memory once decoded (and frames are queued).
    #[tokio::test]
    async fn a_frame_of_millions_of_empty_events_is_refused_before_they_are_allocated() {
        let n: u32 = 2_000_000;
        let mut body = Vec::new();
        body.push(2u8); // variant index of `Events`
        let mut v = n;
        while v >= 0x80 {
            body.push((v as u8) | 0x80);
            v >>= 7;
        }
        body.push(v as u8);
        body.resize(body.len() + n as usize, 0);
        let mut frame = (body.len() as u32).to_le_bytes().to_vec();
        frame.extend_from_slice(&body);
        assert!(body.len() <= MAX_FRAME);
        let err = match read_frame(&mut frame.as_slice()).await {
            Err(e) => e,
            Ok(Some(Frame::Events(e))) => panic!("decoded {} events", e.len()),
            Ok(other) => panic!("decoded {:?}", other.map(|_| "a frame")),
        };
        assert!(err.to_string().contains("undecodable frame"), "{err}");
        // The honest limit still decodes.
        let f = Frame::Events(vec![vec![7u8; 3]; BATCH_EVENTS]);
        let mut buf = Vec::new();
        write_frame(&mut buf, &f).await.unwrap();
        assert_eq!(read_frame(&mut buf.as_slice()).await.unwrap(), Some(f));
    }

    #[test]
    fn batches_respect_both_limits() {
        let ev = vec![vec![0u8; 10]; 2500];
        let b = batches(ev);
        assert_eq!(
            b.iter().map(Vec::len).collect::<Vec<_>>(),
            [1024, 1024, 452]
        );
        let big = vec![vec![0u8; 3 << 20]; 3];
        assert_eq!(batches(big).len(), 3);
    }
}

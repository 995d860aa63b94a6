//! One symmetric sync exchange over a byte stream. Both sides run the same code:
//!
//! 1. send `Hello` (a digest of the frontier); read the peer's; when the digests differ,
//!    exchange the frontiers themselves (a no-op sync sends no frontier);
//! 2. send the events the peer lacks (per author, in causal order) while ingesting the
//!    peer's batches (queued batches share one durable transaction), so an interrupted
//!    session keeps what arrived whole and the next one resumes from the new frontier;
//! 3. ask for the blobs now referenced but absent, and serve the peer's request, streaming
//!    1 MiB chunks into the encrypted blob store and checking each blob's hash. A blob may be
//!    no longer than the size its signed events declare; one that is longer, or hashes to
//!    anything else, ends the session and leaves nothing behind (stored blobs are never
//!    touched).
//!
//! Bad events are judged by the store (quarantined with a reason); bad frames end the session
//! with a protocol error. Nothing partial is ever applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_core::{BlobId, DeviceId, WorkspaceId};
use cairn_store::blobs::BlobStore;
use cairn_store::{IngestReport, Store};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::SyncError;
use crate::plan::plan;
use crate::protocol_error::ProtocolError;
use crate::refusal::Refusal;
use crate::wire::{self, Frame, FrontierEntry};

/// A store shared between the sync tasks and the rest of the node. A `parking_lot` mutex:
/// it does not poison, and the CLI can hold an owned guard for one command while
/// `cairn serve` runs.
pub type SharedStore = Arc<parking_lot::Mutex<Store>>;

/// Wraps a store for sharing.
pub fn share(store: Store) -> SharedStore {
    Arc::new(parking_lot::Mutex::new(store))
}

/// What one session did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SyncReport {
    /// Events sent.
    pub events_out: usize,
    /// Events received and applied (or kept as fork evidence).
    pub events_in: usize,
    /// Events received that were already known.
    pub duplicates: usize,
    /// Events received that wait for a dependency.
    pub pending: usize,
    /// Events received that wait for a dependency but were not kept (over the pending caps);
    /// the peer offers them again at the next sync.
    pub deferred: usize,
    /// Events received and rejected (quarantined up to its caps), with reasons.
    pub rejected: Vec<(String, String)>,
    /// Of `rejected`, those not kept in quarantine (over its caps).
    pub not_quarantined: usize,
    /// Blobs received / sent.
    pub blobs_in: usize,
    /// Blobs sent.
    pub blobs_out: usize,
    /// Blob bytes received and sent.
    pub blob_bytes: u64,
    /// Devices whose chains differ at an equal seq (equivocation evidence).
    pub forks: Vec<DeviceId>,
    /// UDP payload bytes both ways, QUIC handshake included (set by the iroh transport on
    /// the initiating side; 0 elsewhere).
    pub wire_bytes: u64,
    /// Bytes of sync frames both ways (the protocol's own share of `wire_bytes`; set with it).
    pub frame_bytes: u64,
}

impl SyncReport {
    /// Counts one ingested batch (from a peer or a bundle).
    pub fn add(&mut self, r: IngestReport) {
        self.events_in += r.applied + r.excluded;
        self.duplicates += r.duplicates;
        self.pending += r.pending;
        self.deferred += r.deferred;
        self.not_quarantined += r.not_quarantined;
        self.rejected
            .extend(r.rejected.into_iter().map(|(id, why)| (id.to_hex(), why)));
    }
}

/// Locks the shared store. Callers hold it briefly: one batch, one lookup.
pub(crate) fn lock(s: &SharedStore) -> parking_lot::MutexGuard<'_, Store> {
    s.lock()
}

/// Local-record namespace for facts about joining (the workspace a ticket promised).
pub const JOIN: &str = "join";

/// The workspace this store belongs to, or the one a ticket promised before the first sync.
pub fn expected_workspace(store: &Store) -> Option<WorkspaceId> {
    store.projection().workspace().or_else(|| {
        store
            .get_local(JOIN, b"workspace")
            .ok()
            .flatten()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .map(WorkspaceId)
    })
}

enum Cmd {
    /// Ask the peer for these blobs.
    Want(Vec<BlobId>),
    /// Send the peer these blobs.
    Serve(Vec<BlobId>),
}

/// Live counters of exchanges in progress, for a progress display. One `Progress` may follow
/// several exchanges in turn (`cairn sync --all`): the counters add up.
#[derive(Debug, Default)]
pub struct Progress {
    /// Events the peers' frontiers say they will send (known once each hello arrives).
    pub events_expected: AtomicU64,
    /// Events received so far.
    pub events_in: AtomicU64,
    /// Blob bytes received so far.
    pub blob_bytes_in: AtomicU64,
}

/// Runs one exchange. `reader` and `writer` are the two halves of one bidirectional stream.
pub async fn run<R, W>(store: SharedStore, reader: R, writer: W) -> Result<SyncReport, SyncError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    run_with_progress(store, reader, writer, &Progress::default()).await
}

/// [`run`], counting what arrives in `progress` as it arrives.
pub async fn run_with_progress<R, W>(
    store: SharedStore,
    reader: R,
    writer: W,
    progress: &Progress,
) -> Result<SyncReport, SyncError>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    // One frontier for both halves: the one announced is the one compared and sent.
    let (mine, workspace) = {
        let s = lock(&store);
        (frontier(&s), s.projection().workspace())
    };
    let digest = wire::frontier_digest(&mine);
    let (same_tx, same_rx) = oneshot::channel();
    let (hello_tx, hello_rx) = oneshot::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let out = send_half(
        store.clone(),
        writer,
        (mine.clone(), digest, workspace),
        (same_rx, hello_rx),
        cmd_rx,
    );
    let inn = receive_half(
        store,
        reader,
        (mine, digest),
        (same_tx, hello_tx),
        cmd_tx,
        progress,
    );
    let ((events_out, blobs_out, sent_bytes, forks), mut report) = tokio::try_join!(out, inn)?;
    report.events_out = events_out;
    report.blobs_out = blobs_out;
    report.blob_bytes += sent_bytes;
    report.forks = forks;
    Ok(report)
}

fn frontier(store: &Store) -> Vec<FrontierEntry> {
    store
        .projection()
        .frontier()
        .into_iter()
        .map(|(author, (seq, head))| FrontierEntry { author, seq, head })
        .collect()
}

async fn send_half<W: AsyncWrite + Unpin>(
    store: SharedStore,
    mut w: W,
    (mine, digest, workspace): (Vec<FrontierEntry>, [u8; 32], Option<WorkspaceId>),
    (same_rx, hello_rx): (
        oneshot::Receiver<bool>,
        oneshot::Receiver<Vec<FrontierEntry>>,
    ),
    mut cmds: mpsc::Receiver<Cmd>,
) -> Result<(usize, usize, u64, Vec<DeviceId>), SyncError> {
    let ended = || {
        SyncError::Protocol(ProtocolError::EndedEarly {
            expected: "the peer's hello",
        })
    };
    wire::write_frame(
        &mut w,
        &Frame::Hello {
            version: wire::VERSION,
            workspace,
            authors: u32::try_from(mine.len()).unwrap_or(u32::MAX),
            digest,
        },
    )
    .await?;
    // Equal digests: nothing to compare. Otherwise both sides send their frontier.
    if !same_rx.await.map_err(|_| ended())? {
        wire::write_frame(&mut w, &Frame::Frontier(mine.clone())).await?;
    }
    let theirs = hello_rx.await.map_err(|_| ended())?;
    let p = plan(&mine, &theirs);
    // Positions first, then the log read a page at a time as it is sent, so the first batch
    // leaves at once and memory stays at one page.
    let positions = lock(&store).positions_from(&p.send_from)?;
    let events_out = positions.len();
    for page in positions.chunks(SEND_PAGE) {
        let events = lock(&store).log_values(page)?;
        for batch in wire::batches(events) {
            wire::write_frame(&mut w, &Frame::Events(batch)).await?;
        }
    }
    wire::write_frame(&mut w, &Frame::EventsEnd).await?;
    let (mut asked, mut served) = (false, false);
    let (mut blobs_out, mut bytes) = (0, 0u64);
    while !(asked && served) {
        let Some(cmd) = cmds.recv().await else {
            return Err(SyncError::Protocol(ProtocolError::EndedEarly {
                expected: "the peer's blob frames",
            }));
        };
        match cmd {
            Cmd::Want(ids) => {
                wire::write_frame(&mut w, &Frame::WantBlobs(ids)).await?;
                asked = true;
            }
            Cmd::Serve(ids) => {
                let blobs = lock(&store).blobs().clone();
                for id in ids {
                    match send_blob(&blobs, id, &mut w).await? {
                        Some(n) => {
                            blobs_out += 1;
                            bytes += n;
                        }
                        None => wire::write_frame(&mut w, &Frame::BlobMissing(id)).await?,
                    }
                }
                wire::write_frame(&mut w, &Frame::BlobsEnd).await?;
                served = true;
            }
        }
    }
    // The stream is not ended here: the transport ends it in an order that guarantees
    // delivery (see `node`).
    w.flush().await?;
    Ok((events_out, blobs_out, bytes, p.forked))
}

/// Streams one blob's plaintext in chunks, reading it on a blocking thread (the blob store
/// decrypts and verifies each chunk). `None` if this side does not have it.
async fn send_blob<W: AsyncWrite + Unpin>(
    blobs: &BlobStore,
    id: BlobId,
    w: &mut W,
) -> Result<Option<u64>, SyncError> {
    if !blobs.contains(&id) {
        return Ok(None);
    }
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let b = blobs.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let mut sink = ChunkSink {
            tx,
            buf: Vec::with_capacity(wire::BLOB_CHUNK),
        };
        let n = b.read_to(&id, &mut sink)?;
        sink.flush_chunk().map_err(|_| SyncError::TaskEnded {
            task: "blob sender",
            source: None,
        })?;
        Ok::<u64, SyncError>(n)
    });
    let mut pending: Option<Vec<u8>> = None;
    while let Some(chunk) = rx.recv().await {
        if let Some(prev) = pending.replace(chunk) {
            wire::write_frame(
                w,
                &Frame::BlobChunk {
                    id,
                    data: prev,
                    last: false,
                },
            )
            .await?;
        }
    }
    let n = reader.await.map_err(|e| SyncError::TaskEnded {
        task: "blob reader",
        source: Some(e),
    })??;
    wire::write_frame(
        w,
        &Frame::BlobChunk {
            id,
            data: pending.unwrap_or_default(),
            last: true,
        },
    )
    .await?;
    Ok(Some(n))
}

/// A `Write` that cuts what it receives into chunks for an async channel.
struct ChunkSink {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkSink {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(wire::BLOB_CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("sync session ended"))
    }
}

impl std::io::Write for ChunkSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = wire::BLOB_CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == wire::BLOB_CHUNK {
            self.flush_chunk()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A `Read` over chunks from an async channel (for the blob store's streaming `put`). An
/// error on the channel fails the read, so the store discards what it wrote.
struct ChunkSource {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
}

impl std::io::Read for ChunkSource {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                Some(c) => {
                    self.cur = c?;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A blob being received: chunks go to a blocking `put` that stores it only if it hashes to
/// `id`.
struct Incoming {
    id: BlobId,
    /// Bytes its signed events declare, at most.
    limit: u64,
    /// Bytes received so far.
    received: u64,
    tx: mpsc::Sender<std::io::Result<Vec<u8>>>,
    task: tokio::task::JoinHandle<cairn_store::Result<u64>>,
}

impl Incoming {
    /// Stops the blob: the store removes its temp file, and this waits until it has.
    async fn abort(self) {
        let _ = self
            .tx
            .send(Err(std::io::Error::other("blob refused")))
            .await;
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn receive_half<R: AsyncRead + Unpin>(
    store: SharedStore,
    mut r: R,
    (mine, my_digest): (Vec<FrontierEntry>, [u8; 32]),
    (same_tx, hello_tx): (oneshot::Sender<bool>, oneshot::Sender<Vec<FrontierEntry>>),
    cmds: mpsc::Sender<Cmd>,
    progress: &Progress,
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let next = |f: Option<Frame>| {
        f.ok_or(SyncError::Protocol(ProtocolError::EndedEarly {
            expected: "a frame",
        }))
    };
    // 1. Hello.
    match next(wire::read_frame(&mut r).await?)? {
        Frame::Hello {
            version,
            workspace,
            authors,
            digest,
        } => {
            if version != wire::VERSION {
                return Err(SyncError::Protocol(ProtocolError::Version {
                    theirs: version,
                    ours: wire::VERSION,
                }));
            }
            let (ours, joined) = {
                let s = lock(&store);
                (expected_workspace(&s), s.projection().workspace().is_some())
            };
            match (ours, workspace) {
                (Some(a), Some(b)) if a != b => {
                    return Err(SyncError::Refused(Refusal::OtherWorkspace {
                        theirs: b,
                        ours: a,
                    }));
                }
                (Some(a), None) if !joined => {
                    return Err(SyncError::Refused(Refusal::PeerHasNoWorkspace {
                        joining: a,
                    }));
                }
                _ => {}
            }
            let same = digest == my_digest;
            let _ = same_tx.send(same);
            let frontier = if same {
                mine.clone()
            } else {
                match next(wire::read_frame(&mut r).await?)? {
                    Frame::Frontier(f)
                        if f.len() == authors as usize && wire::frontier_digest(&f) == digest =>
                    {
                        f
                    }
                    Frame::Frontier(_) => {
                        return Err(SyncError::Protocol(ProtocolError::FrontierMismatch));
                    }
                    other => return Err(unexpected("Frontier", &other)),
                }
            };
            // What the peer will send: its chain past our head, per author.
            let theirs: std::collections::BTreeMap<DeviceId, u64> =
                frontier.iter().map(|e| (e.author, e.seq)).collect();
            let expected: u64 = plan(&frontier, &mine)
                .send_from
                .iter()
                .map(|(a, from)| theirs.get(a).map_or(0, |s| (s + 1).saturating_sub(*from)))
                .sum();
            progress
                .events_expected
                .fetch_add(expected, Ordering::Relaxed);
            let _ = hello_tx.send(frontier);
        }
        other => return Err(unexpected("Hello", &other)),
    }
    // 2. Events. Frames are read here while a blocking worker ingests what has arrived, so
    //    reading, verifying and writing overlap; the worker takes every batch already queued
    //    into one durable transaction (group commit), up to `INGEST_EVENTS`.
    let (tx, rx) = mpsc::channel::<Vec<Vec<u8>>>(INGEST_QUEUE);
    let worker = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || ingest_worker(&store, rx))
    };
    let read = async {
        loop {
            match next(wire::read_frame(&mut r).await?)? {
                Frame::Events(batch) => {
                    let n = batch.len() as u64;
                    // A full queue is back-pressure: this waits, and QUIC holds the peer.
                    tx.send(batch).await.map_err(|_| SyncError::TaskEnded {
                        task: "ingest worker",
                        source: None,
                    })?;
                    progress.events_in.fetch_add(n, Ordering::Relaxed);
                }
                Frame::EventsEnd => return Ok(()),
                other => return Err(unexpected("Events", &other)),
            }
        }
    };
    let read: Result<(), SyncError> = read.await;
    // Whatever arrived whole is ingested even if the stream broke: the next session resumes
    // from the new frontier.
    drop(tx);
    let ingested = worker.await.map_err(|e| SyncError::TaskEnded {
        task: "ingest worker",
        source: Some(e),
    })?;
    for rep in ingested? {
        report.add(rep);
    }
    read?;
    // 3. Blobs.
    let (wanted, blobs) = {
        let s = lock(&store);
        (s.missing_blob_sizes(), s.blobs().clone())
    };
    let ids = wanted.iter().map(|(id, _)| *id).collect();
    // Requested blobs not yet received, with the size their signed events declare.
    let outstanding: std::collections::BTreeMap<BlobId, u64> = wanted.into_iter().collect();
    cmds.send(Cmd::Want(ids))
        .await
        .map_err(|_| send_half_ended())?;
    // A blob cut off by an error is aborted here, so its temp file is gone when this returns.
    // (Were this future dropped instead, the store would still refuse the truncated content.)
    let mut incoming: Option<Incoming> = None;
    let res = receive_blobs(
        &mut r,
        &cmds,
        &blobs,
        outstanding,
        &mut incoming,
        &mut report,
        progress,
    )
    .await;
    if let Some(inc) = incoming.take() {
        inc.abort().await;
    }
    res.map(|()| report)
}

/// Step 3 of [`receive_half`]: serves the peer's request (through `cmds`) and receives the
/// blobs asked of it (`outstanding`, with their signed sizes). A blob cut off by an error is
/// left in `incoming` for the caller to abort.
async fn receive_blobs<R: AsyncRead + Unpin>(
    r: &mut R,
    cmds: &mpsc::Sender<Cmd>,
    blobs: &BlobStore,
    mut outstanding: std::collections::BTreeMap<BlobId, u64>,
    incoming: &mut Option<Incoming>,
    report: &mut SyncReport,
    progress: &Progress,
) -> Result<(), SyncError> {
    let next = |f: Option<Frame>| {
        f.ok_or(SyncError::Protocol(ProtocolError::EndedEarly {
            expected: "a frame",
        }))
    };
    let (mut got_want, mut got_end) = (false, false);
    while !(got_want && got_end) {
        match next(wire::read_frame(r).await?)? {
            Frame::WantBlobs(ids) if !got_want => {
                got_want = true;
                cmds.send(Cmd::Serve(ids))
                    .await
                    .map_err(|_| send_half_ended())?;
            }
            Frame::BlobChunk { id, data, last } if !got_end => {
                if incoming.as_ref().is_none_or(|i| i.id != id) {
                    let limit = match outstanding.remove(&id) {
                        Some(limit) if incoming.is_none() => limit,
                        _ => {
                            return Err(SyncError::Protocol(ProtocolError::BlobNotRequested(id)));
                        }
                    };
                    let (tx, rx) = mpsc::channel(4);
                    let b = blobs.clone();
                    let task = tokio::task::spawn_blocking(move || {
                        let mut src = ChunkSource {
                            rx,
                            cur: Vec::new(),
                            pos: 0,
                        };
                        b.put_expected(&mut src, &id, &mut |_| {})
                    });
                    *incoming = Some(Incoming {
                        id,
                        limit,
                        received: 0,
                        tx,
                        task,
                    });
                }
                if let Some(inc) = incoming.as_mut() {
                    let n = data.len() as u64;
                    // Only a blob's final chunk may be empty (an endless run of empty chunks
                    // would be a stream without bound).
                    if n == 0 && !last {
                        return Err(SyncError::Protocol(ProtocolError::EmptyChunk(id)));
                    }
                    if inc.received.saturating_add(n) > inc.limit {
                        return Err(SyncError::Protocol(ProtocolError::BlobTooLong {
                            id,
                            limit: inc.limit,
                        }));
                    }
                    inc.received += n;
                    report.blob_bytes += n;
                    progress.blob_bytes_in.fetch_add(n, Ordering::Relaxed);
                    inc.tx
                        .send(Ok(data))
                        .await
                        .map_err(|_| SyncError::TaskEnded {
                            task: "blob writer",
                            source: None,
                        })?;
                }
                if last && let Some(inc) = incoming.take() {
                    drop(inc.tx);
                    let stored = inc.task.await.map_err(|e| SyncError::TaskEnded {
                        task: "blob writer",
                        source: Some(e),
                    })?;
                    match stored {
                        Ok(_) => report.blobs_in += 1,
                        Err(cairn_store::StoreError::BlobMismatch { got, .. }) => {
                            return Err(SyncError::Protocol(ProtocolError::BlobMismatch {
                                id: inc.id,
                                got: got.get(..12).unwrap_or(&got).to_owned(),
                            }));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Frame::BlobMissing(id) => {
                tracing::info!(blob = %id.short(), "peer does not have a requested blob");
            }
            Frame::BlobsEnd if incoming.is_none() => got_end = true,
            other => return Err(unexpected("blob frames", &other)),
        }
    }
    Ok(())
}

/// Events read from the log per page while sending.
const SEND_PAGE: usize = 4 * wire::BATCH_EVENTS;

/// Batches that may wait for the ingest worker before the reader stops reading (and QUIC flow
/// control stops the peer).
const INGEST_QUEUE: usize = 16;
/// Events per durable transaction, at most, when batches are queued.
const INGEST_EVENTS: usize = 16 * wire::BATCH_EVENTS;

/// Ingests queued batches until the queue closes: each round takes everything already
/// queued (up to [`INGEST_EVENTS`]) into one durable transaction.
fn ingest_worker(
    store: &SharedStore,
    mut rx: mpsc::Receiver<Vec<Vec<u8>>>,
) -> Result<Vec<IngestReport>, SyncError> {
    let mut reports = Vec::new();
    while let Some(mut batch) = rx.blocking_recv() {
        while batch.len() < INGEST_EVENTS {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        let rep = lock(store).ingest(batch)?;
        for (id, why) in &rep.rejected {
            tracing::warn!(event = %id, reason = %why, "rejected event from peer (quarantined)");
        }
        reports.push(rep);
    }
    Ok(reports)
}

/// The send half is gone (it failed, and its error is the session's): the receive half cannot
/// hand it more work.
fn send_half_ended() -> SyncError {
    SyncError::TaskEnded {
        task: "send half",
        source: None,
    }
}

fn unexpected(expected: &'static str, got: &Frame) -> SyncError {
    let name = match got {
        Frame::Hello { .. } => "Hello",
        Frame::Frontier(_) => "Frontier",
        Frame::Events(_) => "Events",
        Frame::EventsEnd => "EventsEnd",
        Frame::WantBlobs(_) => "WantBlobs",
        Frame::BlobChunk { .. } => "BlobChunk",
        Frame::BlobMissing(_) => "BlobMissing",
        Frame::BlobsEnd => "BlobsEnd",
    };
    SyncError::Protocol(ProtocolError::Unexpected {
        expected,
        got: name,
    })
}

//! The iroh transport. ALPN [`ALPN`]; the endpoint's secret key is the device's Ed25519 key,
//! so the peer identity proven by the QUIC handshake *is* its device id, and membership is
//! checked on it before a single frame is read. Endpoints bind to the given socket with no
//! relay and no port mapping: sync works on an air-gapped LAN. Address lookup is off, or
//! mDNS on the LAN only when [`NodeConfig::mdns`] is set.
//!
//! Two protocols are served: [`ALPN`] (sync, members only) and [`JOIN_ALPN`] (one join
//! request, open to anyone holding a ticket).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use cairn_core::DeviceId;
use iroh::endpoint::{Connection, PortmapperConfig, QuicTransportConfig, ReadToEndError, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, PublicKey, SecretKey};

use crate::SyncError;
use crate::counted::Counted;
use crate::join::{self, JOIN_ALPN, JoinHandler};
use crate::protocol_error::ProtocolError;
use crate::refusal::Refusal;
use crate::session::{self, Progress, SharedStore, SyncReport};
use crate::ticket::{JoinRequest, Ticket};
use cairn_core::domain::Role;
use iroh_mdns_address_lookup::MdnsAddressLookup;

/// mDNS service name, so Cairn nodes find each other and nothing else.
pub const MDNS_SERVICE: &str = "cairn-sync";

/// Local-record namespace for peers to keep in sync with (`ID` → addresses).
pub const PEERS: &str = "peer";

/// How a node listens.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Socket to bind (UDP), e.g. `0.0.0.0:7879` or `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// Announce and discover on the LAN by mDNS.
    pub mdns: bool,
}

/// Application protocol name (version 1 of the sync protocol).
pub const ALPN: &[u8] = b"cairn/sync/1";

/// Where to reach a peer: its device id and socket addresses, written `ID@IP:PORT[,IP:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAddr {
    /// The peer's device id (its iroh endpoint id).
    pub id: DeviceId,
    /// Direct addresses.
    pub addrs: Vec<SocketAddr>,
}

impl std::fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        write!(f, "{}@{}", self.id.to_hex(), addrs.join(","))
    }
}

impl FromStr for PeerAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, addrs) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?}: expected DEVICE_ID@IP:PORT"))?;
        let id = DeviceId::from_hex(id).map_err(|e| e.to_string())?;
        let addrs = addrs
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| a.parse().map_err(|e| format!("{a:?}: {e}")))
            .collect::<Result<Vec<SocketAddr>, String>>()?;
        Ok(PeerAddr { id, addrs })
    }
}

/// Whether `peer` may sync with this store: an enrolled, unrevoked member.
pub fn authorize(store: &SharedStore, peer: &DeviceId) -> Result<(), SyncError> {
    let s = session::lock(store);
    if s.projection().workspace().is_none() {
        return Err(SyncError::Refused(Refusal::NotJoined));
    }
    match s
        .projection()
        .members()
        .into_iter()
        .find(|m| m.device == *peer)
    {
        Some(m) if m.revoked_by.is_none() => Ok(()),
        Some(_) => Err(SyncError::Refused(Refusal::Revoked(*peer))),
        None => Err(SyncError::Refused(Refusal::NotMember(*peer))),
    }
}

fn device_of(id: &PublicKey) -> DeviceId {
    DeviceId(*id.as_bytes())
}

/// Reads the peer's end of stream after the last frame; anything more is a protocol error.
async fn expect_end(recv: &mut iroh::endpoint::RecvStream) -> Result<(), SyncError> {
    match recv.read_to_end(64).await {
        Ok(rest) if rest.is_empty() => Ok(()),
        Ok(rest) => Err(SyncError::Protocol(ProtocolError::TrailingBytes(
            rest.len(),
        ))),
        Err(ReadToEndError::TooLong) => Err(SyncError::Protocol(ProtocolError::TrailingStream)),
        Err(e) => Err(transport("reading the end of the stream")(e)),
    }
}

/// The iroh address of a peer: its key, plus direct addresses (none: found by address lookup).
fn endpoint_addr(peer: &PeerAddr) -> Result<EndpointAddr, SyncError> {
    let key = PublicKey::from_bytes(&peer.id.0)
        .map_err(|_| SyncError::Refused(Refusal::BadPeerKey(peer.id)))?;
    let mut addr = EndpointAddr::new(key);
    for a in &peer.addrs {
        addr = addr.with_ip_addr(*a);
    }
    Ok(addr)
}

/// Remembers a peer for background sync (`cairn serve`, `cairn sync --all`).
pub fn remember_peer(store: &mut cairn_store::Store, peer: &PeerAddr) -> Result<(), SyncError> {
    let addrs = postcard::to_allocvec(&peer.addrs).map_err(|error| SyncError::Encode {
        what: "the peer's addresses",
        error,
    })?;
    store.put_local(PEERS, &peer.id.0, &addrs)?;
    Ok(())
}

/// The remembered peers.
pub fn known_peers(store: &cairn_store::Store) -> Result<Vec<PeerAddr>, SyncError> {
    let mut out = Vec::new();
    for (k, v) in store.local_entries(PEERS)? {
        let (Ok(id), Ok(addrs)) = (<[u8; 32]>::try_from(k.as_slice()), postcard::from_bytes(&v))
        else {
            tracing::warn!("skipping a damaged peer record");
            continue;
        };
        out.push(PeerAddr {
            id: DeviceId(id),
            addrs,
        });
    }
    Ok(out)
}

#[derive(Debug, Clone)]
struct Handler {
    store: SharedStore,
}

impl ProtocolHandler for Handler {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = device_of(&conn.remote_id());
        if let Err(e) = authorize(&self.store, &peer) {
            tracing::warn!(peer = %peer.short(), "sync refused: {e}");
            conn.close(1u32.into(), b"not a member");
            return Err(AcceptError::from_err(e));
        }
        let (mut send, mut recv) = conn.accept_bi().await?;
        let res = session::run(self.store.clone(), &mut recv, &mut send).await;
        // Responder's close: read the initiator's end of stream (so everything it sent has
        // arrived), then end ours; the initiator reads to our end before it closes.
        let res = match res {
            Ok(r) => match expect_end(&mut recv).await {
                Ok(()) => send
                    .finish()
                    .map(|_| r)
                    .map_err(transport("ending the stream")),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match res {
            Ok(r) => tracing::info!(
                peer = %peer.short(),
                events_in = r.events_in,
                events_out = r.events_out,
                rejected = r.rejected.len(),
                blobs_in = r.blobs_in,
                blobs_out = r.blobs_out,
                "sync served"
            ),
            Err(e) => {
                tracing::warn!(peer = %peer.short(), "sync with peer failed: {e}");
                conn.close(2u32.into(), b"protocol error");
                return Err(AcceptError::from_err(e));
            }
        }
        conn.closed().await;
        Ok(())
    }
}

/// A running sync node: an iroh endpoint that serves [`ALPN`] and [`JOIN_ALPN`] and dials
/// peers.
#[derive(Debug)]
pub struct Node {
    endpoint: Endpoint,
    router: Router,
    store: SharedStore,
    mdns: Option<MdnsAddressLookup>,
}

/// The iroh transport failed, or a pass timed out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A transport step failed: binding, dialling, a stream.
    #[error("{step}: {source}")]
    Failed {
        /// The step ("binding", "dialling", …).
        step: &'static str,
        /// iroh's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A sync pass with one peer took longer than this.
    #[error("timed out after {0:?}")]
    TimedOut(std::time::Duration),
}

/// Wraps an iroh error as the transport failing at `step`.
pub(crate) fn transport<E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
) -> impl FnOnce(E) -> SyncError {
    move |e| {
        SyncError::Transport(TransportError::Failed {
            step,
            source: Box::new(e),
        })
    }
}

/// How long one background sync pass with one peer may take.
const PASS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

impl Node {
    /// Binds to `bind` (e.g. `127.0.0.1:0` or `0.0.0.0:7879`) with the device key, without
    /// mDNS.
    pub async fn bind(store: SharedStore, bind: SocketAddr) -> Result<Node, SyncError> {
        Self::start(store, NodeConfig { bind, mdns: false }).await
    }

    /// Binds as configured.
    pub async fn start(store: SharedStore, cfg: NodeConfig) -> Result<Node, SyncError> {
        let secret = session::lock(&store).device().secret_bytes();
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(SecretKey::from_bytes(&secret))
            .portmapper_config(PortmapperConfig::Disabled)
            // No path-MTU discovery: its probes were 11 KB of a 18 KB no-op sync, and blob
            // transfer measured the same with QUIC's safe 1200-byte packets (BENCHMARKS.md),
            // which also pass the VPNs and tunnels plant networks often sit behind.
            .transport_config(
                QuicTransportConfig::builder()
                    .mtu_discovery_config(None)
                    .build(),
            )
            .clear_ip_transports()
            .bind_addr(cfg.bind)
            .map_err(transport("binding"))?
            .bind()
            .await
            .map_err(transport("binding"))?;
        let mdns = if cfg.mdns {
            let m = MdnsAddressLookup::builder()
                .service_name(MDNS_SERVICE)
                .build(endpoint.id())
                .map_err(transport("starting mDNS"))?;
            endpoint
                .address_lookup()
                .map_err(transport("adding mDNS address lookup"))?
                .add(m.clone());
            Some(m)
        } else {
            None
        };
        let router = Router::builder(endpoint.clone())
            .accept(
                ALPN,
                Handler {
                    store: store.clone(),
                },
            )
            .accept(
                JOIN_ALPN,
                JoinHandler {
                    store: store.clone(),
                    clock: crate::now_millis,
                },
            )
            .spawn();
        Ok(Node {
            endpoint,
            router,
            store,
            mdns,
        })
    }

    /// This node's address, to give to peers: the interface addresses when bound to an
    /// unspecified address, else the bound socket.
    pub fn addr(&self) -> PeerAddr {
        let mut addrs: Vec<SocketAddr> = self.endpoint.addr().ip_addrs().copied().collect();
        if addrs.is_empty() {
            addrs = self.endpoint.bound_sockets();
        }
        addrs.sort();
        addrs.dedup();
        PeerAddr {
            id: device_of(&self.endpoint.id()),
            addrs,
        }
    }

    /// The shared store.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// The mDNS service, when enabled (subscribe to it to learn of peers on the LAN).
    pub fn mdns(&self) -> Option<&MdnsAddressLookup> {
        self.mdns.as_ref()
    }

    /// Joins the workspace of `ticket`: proves the ticket secret to the inviter, which enrols
    /// this device, then receives the log with a first sync. The ticket's workspace is
    /// remembered first, so no other workspace's events are ever accepted.
    pub async fn join(&self, ticket: &Ticket, name: &str) -> Result<(Role, SyncReport), SyncError> {
        let req = {
            let mut s = session::lock(&self.store);
            if s.projection().workspace().is_some() {
                return Err(SyncError::Refused(Refusal::AlreadyJoined));
            }
            s.put_local(session::JOIN, b"workspace", &ticket.workspace.0)?;
            JoinRequest::new(&s, ticket, name)
        };
        let peer = PeerAddr {
            id: ticket.inviter,
            addrs: ticket.addrs.clone(),
        };
        let conn = self
            .endpoint
            .connect(endpoint_addr(&peer)?, JOIN_ALPN)
            .await
            .map_err(transport("dialling the inviter"))?;
        let role = join::request(&conn, &req).await;
        conn.close(0u32.into(), b"done");
        let role = role?;
        remember_peer(&mut session::lock(&self.store), &peer)?;
        let report = self.sync_with(&peer).await?;
        Ok((role, report))
    }

    /// One sync pass with `peer`. The peer must be a member, unless this device has not
    /// joined yet (then the address it was given is the one it trusts, as with a ticket).
    pub async fn sync_with(&self, peer: &PeerAddr) -> Result<SyncReport, SyncError> {
        self.sync_with_progress(peer, &Progress::default()).await
    }

    /// [`Node::sync_with`], counting what arrives in `progress`.
    pub async fn sync_with_progress(
        &self,
        peer: &PeerAddr,
        progress: &Progress,
    ) -> Result<SyncReport, SyncError> {
        let joined = session::lock(&self.store)
            .projection()
            .workspace()
            .is_some();
        if joined {
            authorize(&self.store, &peer.id)?;
        }
        let conn = self
            .endpoint
            .connect(endpoint_addr(peer)?, ALPN)
            .await
            .map_err(transport("dialling"))?;
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(transport("opening a stream"))?;
        let frame_bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let res = session::run_with_progress(
            self.store.clone(),
            Counted::new(&mut recv, frame_bytes.clone()),
            Counted::new(&mut send, frame_bytes.clone()),
            progress,
        )
        .await;
        // Initiator's close: end our stream, then wait for the responder's end, which it sends
        // only once it has read all of ours. Closing earlier could drop data still in flight.
        let res = match res {
            Ok(r) => match send.finish() {
                Ok(()) => expect_end(&mut recv).await.map(|_| r),
                Err(e) => Err(transport("ending the stream")(e)),
            },
            Err(e) => Err(e),
        };
        let stats = conn.stats();
        conn.close(0u32.into(), b"done");
        res.map(|mut r| {
            r.wire_bytes = stats.udp_tx.bytes + stats.udp_rx.bytes;
            r.frame_bytes = frame_bytes.load(std::sync::atomic::Ordering::Relaxed);
            r
        })
    }

    /// Syncs with every remembered peer and, with mDNS, every member found on the LAN; one
    /// pass, peers one after another. Failures are logged and reported, not fatal.
    pub async fn sync_known(&self) -> Vec<(DeviceId, Result<SyncReport, SyncError>)> {
        self.sync_known_with_progress(&Progress::default()).await
    }

    /// [`Node::sync_known`], counting what arrives from all peers in `progress`.
    pub async fn sync_known_with_progress(
        &self,
        progress: &Progress,
    ) -> Vec<(DeviceId, Result<SyncReport, SyncError>)> {
        let me = device_of(&self.endpoint.id());
        let mut peers = known_peers(&session::lock(&self.store)).unwrap_or_default();
        if self.mdns.is_some()
            && let Ok(members) = crate::members(&self.store)
        {
            for m in members {
                if m != me && !peers.iter().any(|p| p.id == m) {
                    peers.push(PeerAddr {
                        id: m,
                        addrs: Vec::new(),
                    });
                }
            }
        }
        let mut out = Vec::new();
        for p in peers.into_iter().filter(|p| p.id != me) {
            let r = tokio::time::timeout(PASS_TIMEOUT, self.sync_with_progress(&p, progress))
                .await
                .unwrap_or(Err(SyncError::Transport(TransportError::TimedOut(
                    PASS_TIMEOUT,
                ))));
            match &r {
                Ok(rep) if rep.events_in + rep.events_out + rep.blobs_in > 0 => {
                    tracing::info!(peer = %p.id.short(), events_in = rep.events_in,
                        events_out = rep.events_out, blobs_in = rep.blobs_in, "background sync")
                }
                Ok(_) => tracing::debug!(peer = %p.id.short(), "background sync: up to date"),
                Err(e) => tracing::debug!(peer = %p.id.short(), "background sync failed: {e}"),
            }
            out.push((p.id, r));
        }
        out
    }

    /// Stops serving and closes the endpoint.
    pub async fn shutdown(self) {
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!("router shutdown: {e}");
        }
        self.endpoint.close().await;
    }
}

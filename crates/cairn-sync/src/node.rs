//! The iroh transport. ALPN [`ALPN`]; the endpoint's secret key is the device's Ed25519 key,
//! so the peer identity proven by the QUIC handshake *is* its device id, and membership is
//! checked on it before a single frame is read. Endpoints bind to the given socket with no
//! relay, no address lookup and no port mapping: sync works on an air-gapped LAN.

use std::net::SocketAddr;
use std::str::FromStr;

use cairn_core::DeviceId;
use iroh::endpoint::{Connection, PortmapperConfig, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::{Endpoint, EndpointAddr, PublicKey, SecretKey};

use crate::SyncError;
use crate::session::{self, SharedStore, SyncReport};

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
            .map(|a| a.parse().map_err(|e| format!("{a:?}: {e}")))
            .collect::<Result<Vec<SocketAddr>, String>>()?;
        Ok(PeerAddr { id, addrs })
    }
}

/// Whether `peer` may sync with this store: an enrolled, unrevoked member.
pub fn authorize(store: &SharedStore, peer: &DeviceId) -> Result<(), SyncError> {
    let s = session::lock(store)?;
    if s.projection().workspace().is_none() {
        return Err(SyncError::Refused(
            "this device has not joined a workspace yet".into(),
        ));
    }
    match s
        .projection()
        .members()
        .into_iter()
        .find(|m| m.device == *peer)
    {
        Some(m) if m.revoked_by.is_none() => Ok(()),
        Some(_) => Err(SyncError::Refused(format!(
            "device {} is revoked",
            peer.short()
        ))),
        None => Err(SyncError::Refused(format!(
            "device {} is not a member of this workspace",
            peer.short()
        ))),
    }
}

fn device_of(id: &PublicKey) -> DeviceId {
    DeviceId(*id.as_bytes())
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
        let (send, recv) = conn.accept_bi().await?;
        match session::run(self.store.clone(), recv, send).await {
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

/// A running sync node: an iroh endpoint that serves [`ALPN`] and dials peers.
#[derive(Debug)]
pub struct Node {
    endpoint: Endpoint,
    router: Router,
    store: SharedStore,
}

impl Node {
    /// Binds to `bind` (e.g. `127.0.0.1:0` or `0.0.0.0:7879`) with the device key.
    pub async fn bind(store: SharedStore, bind: SocketAddr) -> Result<Node, SyncError> {
        let secret = session::lock(&store)?.device().secret_bytes();
        let t = |e: &dyn std::fmt::Display| SyncError::Transport(e.to_string());
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(SecretKey::from_bytes(&secret))
            .portmapper_config(PortmapperConfig::Disabled)
            .clear_ip_transports()
            .bind_addr(bind)
            .map_err(|e| t(&e))?
            .bind()
            .await
            .map_err(|e| t(&e))?;
        let router = Router::builder(endpoint.clone())
            .accept(
                ALPN,
                Handler {
                    store: store.clone(),
                },
            )
            .spawn();
        Ok(Node {
            endpoint,
            router,
            store,
        })
    }

    /// This node's address, to give to peers.
    pub fn addr(&self) -> PeerAddr {
        PeerAddr {
            id: device_of(&self.endpoint.id()),
            addrs: self.endpoint.bound_sockets(),
        }
    }

    /// One sync pass with `peer`. The peer must be a member, unless this device has not
    /// joined yet (then the address it was given is the one it trusts, as with a ticket).
    pub async fn sync_with(&self, peer: &PeerAddr) -> Result<SyncReport, SyncError> {
        let joined = session::lock(&self.store)?
            .projection()
            .workspace()
            .is_some();
        if joined {
            authorize(&self.store, &peer.id)?;
        }
        let key = PublicKey::from_bytes(&peer.id.0)
            .map_err(|e| SyncError::Refused(format!("peer id is not a valid key: {e}")))?;
        let mut addr = EndpointAddr::new(key);
        for a in &peer.addrs {
            addr = addr.with_ip_addr(*a);
        }
        let conn = self
            .endpoint
            .connect(addr, ALPN)
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| SyncError::Transport(e.to_string()))?;
        let res = session::run(self.store.clone(), recv, send).await;
        conn.close(0u32.into(), b"done");
        res
    }

    /// Stops serving and closes the endpoint.
    pub async fn shutdown(self) {
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!("router shutdown: {e}");
        }
        self.endpoint.close().await;
    }
}

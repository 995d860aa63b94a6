//! The join exchange over iroh (ALPN [`JOIN_ALPN`]): one request, one reply.
//!
//! The joining device is not a member yet, so this ALPN is open to any endpoint; everything it
//! can do is present a [`JoinRequest`] that [`ticket::redeem`] checks. The request is read with
//! a hard size limit, and a refused request changes nothing on the inviter.

use cairn_core::DeviceId;
use cairn_core::domain::Role;
use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use serde::{Deserialize, Serialize};

use crate::SyncError;
use crate::node::transport;
use crate::protocol_error::ProtocolError;
use crate::refusal::Refusal;
use crate::session::{self, SharedStore};
use crate::ticket::{self, JoinRequest};

/// Application protocol name for joining.
pub const JOIN_ALPN: &[u8] = b"cairn/join/1";
/// Largest join request or reply accepted.
pub const MAX_JOIN_MESSAGE: usize = 4096;

/// The inviter's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinReply {
    /// Enrolled with this role; the device may now sync.
    Enrolled(Role),
    /// Refused, with the reason.
    Refused(String),
}

/// Serves join requests against an admin's store.
#[derive(Debug, Clone)]
pub(crate) struct JoinHandler {
    pub(crate) store: SharedStore,
    pub(crate) clock: fn() -> u64,
}

impl ProtocolHandler for JoinHandler {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = DeviceId(*conn.remote_id().as_bytes());
        let (mut send, mut recv) = conn.accept_bi().await?;
        let reply = match recv.read_to_end(MAX_JOIN_MESSAGE).await {
            Ok(bytes) => match JoinRequest::decode(&bytes) {
                Ok(req) => {
                    let store = self.store.clone();
                    let now = (self.clock)();
                    let r = tokio::task::spawn_blocking(move || {
                        ticket::redeem(&mut session::lock(&store), &req, Some(peer), now)
                    })
                    .await
                    .map_err(AcceptError::from_err)?;
                    match r {
                        Ok(role) => JoinReply::Enrolled(role),
                        Err(e) => refusal_for_joiner(&peer, &e),
                    }
                }
                Err(e) => JoinReply::Refused(e.to_string()),
            },
            Err(e) => JoinReply::Refused(format!("request unreadable or too large: {e}")),
        };
        if let JoinReply::Refused(why) = &reply {
            tracing::warn!(peer = %peer.short(), "join refused: {why}");
        }
        let bytes = postcard::to_allocvec(&reply).map_err(AcceptError::from_err)?;
        send.write_all(&bytes)
            .await
            .map_err(AcceptError::from_err)?;
        send.finish().map_err(AcceptError::from_err)?;
        conn.closed().await;
        Ok(())
    }
}

/// The reply to a request that [`ticket::redeem`] refused. The joiner is not a member yet
/// (anyone can send a request), so it learns why its invitation does not hold and nothing
/// else: a failure of this side (the store, the projection) is logged here and answered in
/// general words, never with paths or storage errors.
fn refusal_for_joiner(peer: &DeviceId, e: &SyncError) -> JoinReply {
    match e {
        SyncError::Refused(Refusal::Invite(why)) => JoinReply::Refused(why.to_string()),
        other => {
            tracing::error!(peer = %peer.short(), "join request failed on this side: {other}");
            JoinReply::Refused("the inviter could not enrol this device (see its log)".into())
        }
    }
}

/// Sends `req` over an open connection and reads the reply.
pub(crate) async fn request(conn: &Connection, req: &JoinRequest) -> Result<Role, SyncError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(transport("opening a stream"))?;
    send.write_all(&req.encode())
        .await
        .map_err(transport("sending the join request"))?;
    send.finish().map_err(transport("ending the stream"))?;
    let bytes = recv
        .read_to_end(MAX_JOIN_MESSAGE)
        .await
        .map_err(transport("reading the join reply"))?;
    match postcard::from_bytes(&bytes) {
        Ok(JoinReply::Enrolled(role)) => Ok(role),
        Ok(JoinReply::Refused(why)) => Err(SyncError::Refused(Refusal::ByInviter(
            crate::words_from_peer(&why),
        ))),
        Err(e) => Err(SyncError::Protocol(ProtocolError::JoinReply(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ticket::InviteRefusal;

    /// A joiner (anyone on the network) hears why its invitation does not hold, never this
    /// side's storage errors, which name paths and tables.
    #[test]
    fn a_joiner_hears_the_invitations_fault_and_nothing_about_the_inviters_disk() {
        let peer = DeviceId([1; 32]);
        let why = SyncError::Refused(Refusal::Invite(InviteRefusal::Expired));
        assert_eq!(
            refusal_for_joiner(&peer, &why),
            JoinReply::Refused("this invitation has expired".into())
        );
        let disk = SyncError::Store(cairn_store::StoreError::Io {
            path: "/home/alice/.local/share/cairn/cairn.redb".into(),
            source: std::io::Error::other("disk full"),
        });
        let JoinReply::Refused(said) = refusal_for_joiner(&peer, &disk) else {
            panic!("a failure is a refusal");
        };
        assert!(!said.contains("alice") && !said.contains("disk"), "{said}");
    }
}

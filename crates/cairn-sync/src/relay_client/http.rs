//! The relay's HTTP endpoint: signed requests (`cairn_relay::auth`), bounded replies, and a
//! non-200 answer turned into [`RelayError::Refused`] with the relay's own message.

use std::time::Duration;

use cairn_relay::auth;

use super::RelayError;
use crate::{SyncError, now_millis};

/// A relay's HTTP endpoint.
pub struct RelayClient {
    pub(super) base: String,
    agent: ureq::Agent,
}

impl RelayClient {
    /// A client for `url` (`http://host:port` or `https://…`, without a trailing path).
    pub fn new(url: &str) -> Result<RelayClient, SyncError> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(RelayError::BadUrl(url.to_string()).into());
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(RelayClient { base, agent })
    }

    /// Sends one signed request; returns the status and body.
    pub fn call(
        &self,
        key: &cairn_core::keys::DeviceKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), SyncError> {
        let url = format!("{}{}", self.base, path_and_query);
        let headers = auth::sign(key, method, path_and_query, now_millis(), body);
        let t = |e: ureq::Error| RelayError::Transport {
            url: url.clone(),
            source: Box::new(e),
        };
        let mut resp = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                for (k, v) in &headers {
                    r = r.header(*k, v);
                }
                r.call().map_err(t)?
            }
            _ => {
                let mut r = match method {
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.post(&url),
                };
                for (k, v) in &headers {
                    r = r.header(*k, v);
                }
                r.header("content-type", "application/octet-stream")
                    .send(body)
                    .map_err(t)?
            }
        };
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .map_err(t)?;
        Ok((status, bytes))
    }

    /// The body of a 200 reply, else the relay's refusal of `what`.
    pub(super) fn expect_ok(
        &self,
        what: &'static str,
        (status, body): (u16, Vec<u8>),
    ) -> Result<Vec<u8>, SyncError> {
        if status == 200 {
            return Ok(body);
        }
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(crate::words_from_peer))
            .unwrap_or_else(|| crate::words_from_peer(&String::from_utf8_lossy(&body)));
        Err(RelayError::Refused {
            relay: self.base.clone(),
            what,
            status,
            message: msg,
        }
        .into())
    }
}

/// A relay reply that does not decode.
pub(super) fn bad_reply(what: &'static str, error: impl std::fmt::Display) -> RelayError {
    RelayError::BadReply {
        what,
        error: error.to_string(),
    }
}

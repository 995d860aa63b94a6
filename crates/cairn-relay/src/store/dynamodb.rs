//! The AWS backend: one DynamoDB table, `pk` (string) + `sk` (number).
//!
//! | item | pk | sk | attributes |
//! |---|---|---|---|
//! | page of events | `{ws}#pg` | slot (1, 2, …) | `d`: postcard(Vec<SealedItem>), ≤ 350 000 bytes |
//! | (author, seq) marker | `{ws}#as#{author}` | seq | `c`: cursor |
//! | member list | `{ws}#meta` | 1 | `v`: version, `d`: signed bytes, `h`: BLAKE3(`d`), `r`: postcard(revoked devices) |
//! | chunk | `{ws}#ch#{hash}` | 0 | `d` |
//! | seen request | `{ws}#rq#{digest}` | 0 | `exp`: expiry, Unix seconds (the table's TTL attribute) |
//!
//! A push packs the items not yet marked into pages and claims the next slot for each page:
//! read the highest slot (strongly consistent), put the page at slot + 1 on the condition that
//! the slot is free, and on a lost race read again. A slot is only ever claimed after the one
//! below it was seen written, so slots appear in order and a strongly consistent pull "after
//! cursor C" can never pass an item that is still to appear. The cursor of an item is
//! `slot << 16 | index in page (1-based)`. Markers for (author, seq) are written after their
//! page (BatchWriteItem); a push checks them first, so a re-push stores nothing. Only a writer
//! that dies between its page and its markers, or two devices pushing the same event at the
//! same moment, can store an event twice, which readers ingest as a duplicate; an event is
//! never lost. No transactions: one conditional write per page of up to ~1000 events.
//! A member list is replaced by one conditional put on the `h` (and `v`) of the list the
//! service judged the replacement against, with the revoked devices in the same item, so two
//! admins racing cannot both win and no revoked device is forgotten (a list stored before `h`
//! existed is matched by `v` and the absence of `h`). Throttling is retried by the SDK (standard mode, 8 attempts, from 50 ms), lost slot races
//! and unprocessed batch keys with back-off here.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, KeysAndAttributes,
    PutRequest, ScalarAttributeType, WriteRequest,
};
use cairn_core::{DeviceId, WorkspaceId};

use super::{Page, Pushed, RelayStore, StoreError, StoredMembers};
use crate::wire::{SealedItem, decode_exact, encode};

/// Encoded bytes of one page (DynamoDB items are at most 400 KB with their keys).
const PAGE_BYTES: usize = 350_000;
/// Items per page (the index is the cursor's low 16 bits, from 1).
const PAGE_ITEMS: usize = 65_535;

/// Where the table is and how to reach it.
#[derive(Debug, Clone)]
pub struct DynamoConfig {
    /// Table name.
    pub table: String,
    /// Region (`AWS_REGION`).
    pub region: String,
    /// An endpoint other than AWS's (a local emulator such as moto).
    pub endpoint_url: Option<String>,
}

/// A relay store in one DynamoDB table.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn err(e: impl std::error::Error) -> StoreError {
    StoreError(format!("{}", DisplayErrorContext(e)))
}

/// The outcome of a conditional put: written, or refused by its condition.
fn put_if<R: std::fmt::Debug>(
    r: Result<PutItemOutput, SdkError<PutItemError, R>>,
) -> Result<bool, StoreError> {
    match r {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_conditional_check_failed_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(err(e)),
    }
}

fn s(v: String) -> AttributeValue {
    AttributeValue::S(v)
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: Vec<u8>) -> AttributeValue {
    AttributeValue::B(Blob::new(v))
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn get_b<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a [u8]> {
    Some(item.get(name)?.as_b().ok()?.as_ref())
}

impl DynamoStore {
    /// A client from the environment's credentials (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`: what Lambda provides).
    pub fn from_env(cfg: &DynamoConfig) -> Result<DynamoStore, StoreError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"))
        else {
            return Err(StoreError(
                "AWS credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into(),
            ));
        };
        Ok(DynamoStore::build(
            cfg,
            Credentials::new(id, secret, var("AWS_SESSION_TOKEN"), None, "environment"),
        ))
    }

    /// A client with fixed credentials (an emulator's test credentials).
    pub fn with_credentials(cfg: &DynamoConfig, id: &str, secret: &str) -> DynamoStore {
        DynamoStore::build(cfg, Credentials::new(id, secret, None, None, "static"))
    }

    fn build(cfg: &DynamoConfig, creds: Credentials) -> DynamoStore {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut b = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .credentials_provider(creds)
            .http_client(http)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(8)
                    .with_initial_backoff(Duration::from_millis(50)),
            );
        if let Some(ep) = &cfg.endpoint_url {
            b = b.endpoint_url(ep);
        }
        DynamoStore {
            client: Client::from_conf(b.build()),
            table: cfg.table.clone(),
        }
    }

    /// Creates the table (on-demand billing) if it does not exist: for self-hosting against an
    /// emulator and for tests. On AWS the CDK stack creates it.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .is_ok();
        if exists {
            return Ok(());
        }
        let def = |name: &str, t: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(t)
                .build()
                .map_err(err)
        };
        let key = |name: &str, t: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(t)
                .build()
                .map_err(err)
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(def("pk", ScalarAttributeType::S)?)
            .attribute_definitions(def("sk", ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    /// Every stored binary attribute, raw, for tests that check the relay holds only
    /// ciphertext.
    pub async fn raw_values(&self) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let r = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(err)?;
            for item in r.items() {
                for v in item.values() {
                    match v {
                        AttributeValue::B(b) => out.push(b.as_ref().to_vec()),
                        AttributeValue::S(s) => out.push(s.as_bytes().to_vec()),
                        _ => {}
                    }
                }
            }
            match r.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out)
    }

    fn key(pk: String, sk: u64) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), n(sk))])
    }

    /// The highest page slot (0 if none), read strongly consistent.
    async fn top_slot(&self, ws: &WorkspaceId) -> Result<u64, StoreError> {
        let r = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s(format!("{}#pg", ws.to_hex())))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .projection_expression("sk")
            .send()
            .await
            .map_err(err)?;
        Ok(r.items().first().and_then(|i| get_n(i, "sk")).unwrap_or(0))
    }

    /// Writes `page` at the next free slot; returns the slot.
    async fn claim_slot(&self, ws: &WorkspaceId, page: &[SealedItem]) -> Result<u64, StoreError> {
        let body = encode(&page.to_vec());
        for attempt in 0u32..20 {
            let slot = self.top_slot(ws).await? + 1;
            let r = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("pk", s(format!("{}#pg", ws.to_hex())))
                .item("sk", n(slot))
                .item("d", b(body.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            if put_if(r)? {
                return Ok(slot);
            }
            // Another writer took the slot: read the top again.
            tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
        }
        Err(StoreError(
            "kept losing the race for the next page slot".into(),
        ))
    }

    /// Writes (author, seq) → cursor markers, 25 per request, retrying unprocessed ones.
    async fn mark(&self, ws: &WorkspaceId, marks: &[(&SealedItem, u64)]) -> Result<(), StoreError> {
        for chunk in marks.chunks(25) {
            let mut reqs = Vec::with_capacity(chunk.len());
            for (it, cursor) in chunk {
                let put = PutRequest::builder()
                    .item(
                        "pk",
                        s(format!("{}#as#{}", ws.to_hex(), it.author.to_hex())),
                    )
                    .item("sk", n(it.seq))
                    .item("c", n(*cursor))
                    .build()
                    .map_err(err)?;
                reqs.push(WriteRequest::builder().put_request(put).build());
            }
            let mut rounds = 0u32;
            while !reqs.is_empty() {
                rounds += 1;
                let r = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, reqs)
                    .send()
                    .await
                    .map_err(err)?;
                reqs = r
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if !reqs.is_empty() {
                    if rounds > 8 {
                        return Err(StoreError("DynamoDB kept markers unprocessed".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(20 << rounds.min(6))).await;
                }
            }
        }
        Ok(())
    }

    /// Which of `items` already have a marker.
    async fn known(&self, ws: &WorkspaceId, items: &[SealedItem]) -> Result<Vec<bool>, StoreError> {
        let pk = |it: &SealedItem| format!("{}#as#{}", ws.to_hex(), it.author.to_hex());
        let mut found: std::collections::HashSet<(String, u64)> = Default::default();
        for chunk in items.chunks(100) {
            // Callers pass distinct (author, seq) pairs, as BatchGetItem requires.
            let keys: Vec<_> = chunk.iter().map(|it| Self::key(pk(it), it.seq)).collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(err)?,
            );
            let mut rounds = 0;
            while let Some(req) = pending.take() {
                rounds += 1;
                let r = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .send()
                    .await
                    .map_err(err)?;
                for item in r
                    .responses()
                    .and_then(|m| m.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let (Some(AttributeValue::S(p)), Some(sk)) =
                        (item.get("pk"), get_n(item, "sk"))
                    {
                        found.insert((p.clone(), sk));
                    }
                }
                pending = r
                    .unprocessed_keys()
                    .and_then(|m| m.get(&self.table))
                    .filter(|k| !k.keys().is_empty())
                    .cloned();
                if pending.is_some() {
                    if rounds > 8 {
                        return Err(StoreError("DynamoDB kept keys unprocessed".into()));
                    }
                    tokio::time::sleep(Duration::from_millis(20 << rounds.min(6))).await;
                }
            }
        }
        Ok(items
            .iter()
            .map(|it| found.contains(&(pk(it), it.seq)))
            .collect())
    }
}

impl RelayStore for DynamoStore {
    async fn members(&self, ws: &WorkspaceId) -> Result<Option<StoredMembers>, StoreError> {
        let r = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(format!("{}#meta", ws.to_hex()), 1)))
            .consistent_read(true)
            .send()
            .await
            .map_err(err)?;
        let Some(item) = r.item() else {
            return Ok(None);
        };
        let (Some(version), Some(list)) = (get_n(item, "v"), get_b(item, "d")) else {
            return Err(StoreError("stored member list lacks v or d".into()));
        };
        let revoked = match get_b(item, "r") {
            Some(r) => decode_exact::<Vec<DeviceId>>(r)
                .map_err(|e| StoreError(format!("stored revoked devices are corrupt: {e}")))?,
            None => Vec::new(),
        };
        Ok(Some(StoredMembers {
            version,
            list: list.to_vec(),
            revoked,
        }))
    }

    async fn replace_members(
        &self,
        ws: &WorkspaceId,
        expected: Option<&StoredMembers>,
        new: &StoredMembers,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{}#meta", ws.to_hex())))
            .item("sk", n(1))
            .item("v", n(new.version))
            .item("d", b(new.list.clone()))
            .item("h", b(blake3::hash(&new.list).as_bytes().to_vec()))
            .item("r", b(encode(&new.revoked)));
        let put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(e) => put
                .condition_expression("h = :h OR (attribute_not_exists(h) AND v = :v)")
                .expression_attribute_values(":h", b(blake3::hash(&e.list).as_bytes().to_vec()))
                .expression_attribute_values(":v", n(e.version)),
        };
        put_if(put.send().await)
    }

    async fn push(&self, ws: &WorkspaceId, items: &[SealedItem]) -> Result<Pushed, StoreError> {
        // Later copies of one (author, seq) in the same push are duplicates.
        let mut firsts = std::collections::HashSet::new();
        let mut out = Pushed::default();
        let mut todo: Vec<SealedItem> = Vec::new();
        for it in items {
            if firsts.insert((it.author, it.seq)) {
                todo.push(it.clone());
            } else {
                out.duplicates += 1;
            }
        }
        let known = self.known(ws, &todo).await?;
        let fresh: Vec<SealedItem> = todo
            .into_iter()
            .zip(known)
            .filter_map(|(it, k)| {
                if k {
                    out.duplicates += 1;
                    None
                } else {
                    Some(it)
                }
            })
            .collect();
        let mut start = 0;
        while start < fresh.len() {
            let mut end = start;
            let mut bytes = 16;
            while end < fresh.len()
                && end - start < PAGE_ITEMS
                && (end == start || bytes + fresh[end].size() <= PAGE_BYTES)
            {
                bytes += fresh[end].size();
                end += 1;
            }
            let page = &fresh[start..end];
            let slot = self.claim_slot(ws, page).await?;
            let marks: Vec<(&SealedItem, u64)> = page
                .iter()
                .enumerate()
                .map(|(i, it)| (it, (slot << 16) | (i as u64 + 1)))
                .collect();
            self.mark(ws, &marks).await?;
            out.stored += page.len() as u32;
            start = end;
        }
        Ok(out)
    }

    async fn pull(
        &self,
        ws: &WorkspaceId,
        after: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, SealedItem)>, StoreError> {
        let mut out = Page::new(limit, max_bytes);
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        'pages: loop {
            let r = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :p AND sk >= :a")
                .expression_attribute_values(":p", s(format!("{}#pg", ws.to_hex())))
                .expression_attribute_values(":a", n((after >> 16).max(1)))
                .consistent_read(true)
                .limit(8)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(err)?;
            for item in r.items() {
                let (Some(slot), Some(d)) = (get_n(item, "sk"), get_b(item, "d")) else {
                    return Err(StoreError("stored page lacks sk or d".into()));
                };
                let page: Vec<SealedItem> = decode_exact(d)
                    .map_err(|e| StoreError(format!("stored page {slot} is corrupt: {e}")))?;
                for (i, it) in page.into_iter().enumerate() {
                    let cursor = (slot << 16) | (i as u64 + 1);
                    if cursor <= after {
                        continue;
                    }
                    if !out.push(cursor, it) {
                        break 'pages;
                    }
                }
            }
            match r.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => break,
            }
        }
        Ok(out.into_items())
    }

    async fn put_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(format!("{}#ch#{}", ws.to_hex(), hex::encode(hash))))
            .item("sk", n(0))
            .item("d", b(bytes.to_vec()))
            .send()
            .await
            .map_err(err)?;
        Ok(())
    }

    async fn get_chunk(
        &self,
        ws: &WorkspaceId,
        hash: &[u8; 32],
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let r = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                format!("{}#ch#{}", ws.to_hex(), hex::encode(hash)),
                0,
            )))
            .send()
            .await
            .map_err(err)?;
        Ok(r.item().and_then(|i| get_b(i, "d")).map(<[u8]>::to_vec))
    }

    async fn remember_request(
        &self,
        ws: &WorkspaceId,
        digest: &[u8; 32],
        now_ms: u64,
        expires_ms: u64,
    ) -> Result<bool, StoreError> {
        // An expired record (TTL deletion is lazy) does not count as a sighting. `exp` is in
        // seconds for DynamoDB's TTL; the check uses the exact `exp_ms`, so this backend and
        // redb agree to the millisecond (records written before `exp_ms` existed fall back to
        // `exp`).
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(
                "pk",
                s(format!("{}#rq#{}", ws.to_hex(), hex::encode(digest))),
            )
            .item("sk", n(0))
            .item("exp", n(expires_ms / 1000 + 1))
            .item("exp_ms", n(expires_ms))
            .condition_expression(
                "attribute_not_exists(pk) OR exp_ms < :now_ms \
                 OR (attribute_not_exists(exp_ms) AND exp < :now)",
            )
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":now", n(now_ms / 1000))
            .send()
            .await;
        put_if(r)
    }
}

//! Sync status: the live link to the node, and the node's background sync with each peer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::estate::{self, Source};
use crate::widgets::short_time;
use crate::{api, ui};

/// The sync page.
#[component]
pub fn Sync() -> impl IntoView {
    let u = ui();
    let peers = RwSignal::new(None::<Result<serde_json::Value, String>>);
    let info = RwSignal::new(None::<serde_json::Value>);
    // The poll's timer, or a fetch still in flight, may run after the page is gone, so they
    // check a flag they own: a signal of the page would be disposed by then, and reading one
    // panics.
    let alive = Arc::new(AtomicBool::new(true));
    on_cleanup({
        let alive = alive.clone();
        move || alive.store(false, Ordering::Relaxed)
    });
    fn poll(
        peers: RwSignal<Option<Result<serde_json::Value, String>>>,
        info: RwSignal<Option<serde_json::Value>>,
        alive: Arc<AtomicBool>,
    ) {
        let fetch_alive = alive.clone();
        spawn_local(async move {
            let p = api::get_json("/api/sync").await;
            if fetch_alive.load(Ordering::Relaxed) {
                peers.try_set(Some(p));
            }
            let i = api::get_json("/api/info").await.ok();
            if fetch_alive.load(Ordering::Relaxed) {
                info.try_set(i);
            }
        });
        set_timeout(
            move || {
                if alive.load(Ordering::Relaxed) {
                    poll(peers, info, alive);
                }
            },
            Duration::from_secs(5),
        );
    }
    if u.source.get_untracked() == Source::Node {
        poll(peers, info, alive);
    }
    view! {
        <h1>"Sync"</h1>
        {move || (u.source.get() == Source::Bundle).then(|| view! {
            <p class="banner b-info">"Showing an audit bundle: there is no node to sync with."</p>
        })}
        <div class="panel">
            <h2>"This node"</h2>
            <table><tbody>
                <tr><th>"Live updates"</th><td data-testid="live">{move || if u.live.get() { view! { <span class="badge b-ok">"connected"</span> }.into_any() } else { view! { <span class="badge b-muted">"not connected"</span> }.into_any() }}</td></tr>
                <tr><th>"Events in this browser"</th><td>{move || { u.rev.get(); estate::with(|e| e.events.len()) }}</td></tr>
                <tr><th>"Events in the node's log"</th><td>{move || info.get().and_then(|i| i.get("events").cloned()).map(|v| v.to_string()).unwrap_or_default()}</td></tr>
                <tr><th>"Device"</th><td>{move || info.get().and_then(|i| i.get("device_name").and_then(|v| v.as_str()).map(str::to_string)).unwrap_or_default()}</td></tr>
                <tr><th>"Sync endpoint"</th><td class="mono">{move || info.get().and_then(|i| i.get("sync_endpoint").cloned()).map(|v| v.to_string()).unwrap_or_default()}</td></tr>
            </tbody></table>
        </div>
        <div class="panel">
            <h2>"Peers (background sync)"</h2>
            {move || match peers.get() {
                None => view! { <p class="muted">"…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="banner b-bad">{e}</p> }.into_any(),
                Some(Ok(v)) => {
                    let list = v.get("peers").and_then(|p| p.as_array()).cloned().unwrap_or_default();
                    if list.is_empty() {
                        return view! { <p class="muted" data-testid="no-peers">"No sync rounds yet: peers appear after `cairn sync PEER` or on the LAN (mDNS)."</p> }.into_any();
                    }
                    let s = |p: &serde_json::Value, k: &str| p.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                    let t = |p: &serde_json::Value, k: &str| p.get(k).and_then(|v| v.as_u64()).map(short_time).unwrap_or_else(|| "never".into());
                    view! {
                        <table data-testid="peers">
                            <thead><tr><th>"Peer"</th><th>"Last attempt"</th><th>"Last success"</th><th>"In"</th><th>"Out"</th><th>"Blobs"</th><th>"Status"</th></tr></thead>
                            <tbody>{list.iter().map(|p| {
                                let err = p.get("last_error").and_then(|e| e.as_str()).map(str::to_string);
                                view! {
                                    <tr>
                                        <td>{s(p, "name")}</td>
                                        <td class="mono">{t(p, "last_attempt_ms")}</td>
                                        <td class="mono">{t(p, "last_ok_ms")}</td>
                                        <td>{s(p, "events_in")}</td>
                                        <td>{s(p, "events_out")}</td>
                                        <td>{s(p, "blobs_in")}</td>
                                        <td>{match err { Some(e) => view! { <span class="badge b-bad" title=e.clone()>"failing"</span> }.into_any(), None => view! { <span class="badge b-ok">"in sync"</span> }.into_any() }}</td>
                                    </tr>
                                }
                            }).collect_view()}</tbody>
                        </table>
                    }.into_any()
                }
            }}
        </div>
    }
}

//! Member devices: roles, last seen, revocation and the fork flag.

use leptos::prelude::*;

use crate::widgets::short_time;
use crate::{estate, with_proj};

/// The devices page.
#[component]
pub fn Devices() -> impl IntoView {
    let rows = move || {
        with_proj(|p| {
            let mut m = p.members();
            m.sort_by(|a, b| a.name.cmp(&b.name));
            m
        })
    };
    view! {
        <h1>"Devices"</h1>
        <table data-testid="devices">
            <thead><tr><th>"Name"</th><th>"Role"</th><th>"Device key"</th><th>"Events"</th><th>"Last seen (UTC)"</th><th>"Status"</th></tr></thead>
            <tbody>
                {move || rows().into_iter().map(|m| {
                    let seen = estate::with(|e| e.last_seen.get(&m.device).map(|t| short_time(t.millis)));
                    view! {
                        <tr data-testid="device-row">
                            <td>{m.name.clone()}</td>
                            <td><span class="badge b-info">{m.role.as_str()}</span></td>
                            <td class="mono" title=m.device.to_hex()>{m.device.short()}</td>
                            <td>{m.events}</td>
                            <td class="mono">{seen.unwrap_or_default()}</td>
                            <td>
                                {m.forked_at.map(|s| view! { <span class="badge b-bad" data-testid="forked" title="signed two different events at one seq; both kept as evidence">{format!("forked at seq {s}")}</span> })}
                                {m.revoked_by.map(|r| view! { <span class="badge b-muted" title=r.to_hex()>"revoked"</span> })}
                                {(m.forked_at.is_none() && m.revoked_by.is_none()).then(|| view! { <span class="badge b-ok">"active"</span> })}
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

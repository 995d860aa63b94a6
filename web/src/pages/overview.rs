//! Estate overview: sites, counts, and badges for drift, diverged branches, field conflicts
//! and forked devices.

use std::collections::BTreeMap;

use leptos::prelude::*;

use crate::{estate, ui, with_proj};

#[derive(Default, Clone)]
struct SiteRow {
    assets: usize,
    drift: usize,
    diverged: usize,
    conflicts: usize,
    retired: usize,
}

/// The overview page.
#[component]
pub fn Overview() -> impl IntoView {
    let u = ui();
    let data = move || {
        with_proj(|p| {
            let mut sites: BTreeMap<String, SiteRow> = p
                .sites()
                .into_iter()
                .map(|s| (s, SiteRow::default()))
                .collect();
            let mut versions = 0usize;
            for a in p.assets() {
                let r = sites.entry(a.doc.get("site").to_string()).or_default();
                r.assets += 1;
                r.drift += a.drifted() as usize;
                r.diverged += a.diverged() as usize;
                r.conflicts += (!a.doc.conflicts().is_empty()) as usize;
                r.retired += a.doc.retired as usize;
                versions += a.branches.iter().map(|b| b.versions).sum::<usize>();
            }
            let members = p.members();
            let forked = members.iter().filter(|m| m.forked_at.is_some()).count();
            let revoked = members.iter().filter(|m| m.revoked_by.is_some()).count();
            (
                sites,
                versions,
                members.len(),
                forked,
                revoked,
                p.applied_count(),
            )
        })
    };
    let empty = move || {
        u.rev.get();
        u.source.get() == crate::estate::Source::Bundle && estate::with(|e| e.events.is_empty())
    };
    view! {
        <h1>"Estate overview"</h1>
        <Show when=empty>
            <p class="banner b-info" data-testid="no-node">
                "No node connected and no bundle open. Open the URL `cairn serve` printed (it carries this launch's token), "
                "or " <a href="#/bundle">"open an audit bundle"</a> " to verify it here with no node at all."
            </p>
        </Show>
        {move || {
            let (sites, versions, members, forked, revoked, applied) = data();
            let total: SiteRow = sites.values().fold(SiteRow::default(), |mut t, r| {
                t.assets += r.assets; t.drift += r.drift; t.diverged += r.diverged;
                t.conflicts += r.conflicts; t.retired += r.retired; t
            });
            let quarantined = estate::with(|e| e.quarantine.len() + e.bad_sig.len() + e.undecodable.len());
            view! {
                <div class="grid" data-testid="overview-stats">
                    <div class="stat"><div class="n">{sites.len()}</div><div class="l">"sites"</div></div>
                    <div class="stat"><div class="n" data-testid="asset-count">{total.assets}</div><div class="l">"assets"</div></div>
                    <div class="stat"><div class="n">{versions}</div><div class="l">"configuration versions"</div></div>
                    <div class="stat"><div class="n">{applied}</div><div class="l">"events applied"</div></div>
                    <div class="stat"><div class="n">{members}</div><div class="l">{format!("devices ({revoked} revoked)")}</div></div>
                    <div class="stat"><div class="n" class:muted=move || total.drift == 0>
                        <span class={if total.drift > 0 { "badge b-bad" } else { "badge b-ok" }} data-testid="drift-count">{total.drift}</span></div>
                        <div class="l">"assets drifted from golden"</div></div>
                    <div class="stat"><div class="n"><span class={if total.diverged > 0 { "badge b-warn" } else { "badge b-ok" }}>{total.diverged}</span></div>
                        <div class="l">"assets with diverged branches"</div></div>
                    <div class="stat"><div class="n"><span class={if total.conflicts > 0 { "badge b-warn" } else { "badge b-ok" }}>{total.conflicts}</span></div>
                        <div class="l">"assets with field conflicts"</div></div>
                    <div class="stat"><div class="n"><span class={if forked > 0 { "badge b-bad" } else { "badge b-ok" }}>{forked}</span></div>
                        <div class="l">"forked devices"</div></div>
                    <div class="stat"><div class="n"><span class={if quarantined > 0 { "badge b-bad" } else { "badge b-ok" }}>{quarantined}</span></div>
                        <div class="l">"rejected events kept as evidence"</div></div>
                </div>
                <div class="panel" style="margin-top:12px">
                    <h2>"Sites"</h2>
                    <table data-testid="sites">
                        <thead><tr><th>"Site"</th><th>"Assets"</th><th>"Drift"</th><th>"Diverged"</th><th>"Conflicts"</th><th>"Retired"</th></tr></thead>
                        <tbody>
                            {sites.into_iter().map(|(site, r)| {
                                let href = format!("#/assets?site={}", crate::api::enc(&site));
                                view! {
                                    <tr>
                                        <td><a href=href>{site.clone()}</a></td>
                                        <td>{r.assets}</td>
                                        <td>{(r.drift > 0).then(|| view! { <span class="badge b-bad">{r.drift}" drifted"</span> })}</td>
                                        <td>{(r.diverged > 0).then(|| view! { <span class="badge b-warn">{r.diverged}" diverged"</span> })}</td>
                                        <td>{(r.conflicts > 0).then(|| view! { <span class="badge b-warn">{r.conflicts}" conflicts"</span> })}</td>
                                        <td class="muted">{r.retired}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                </div>
                <p class="muted">
                    "Keys: " <kbd>"1"</kbd>"–"<kbd>"6"</kbd>" pages, " <kbd>"/"</kbd>" search, "
                    <kbd>"↑"</kbd><kbd>"↓"</kbd>" move, " <kbd>"Enter"</kbd>" open, " <kbd>"t"</kbd>" theme."
                    {move || u.ready_ms.get().map(|ms| format!(" Loaded and projected in {ms:.0} ms."))}
                </p>
            }
        }}
    }
}

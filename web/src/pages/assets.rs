//! The asset list: search, filters and a virtualised table (smooth with 10^4 assets), with
//! keyboard navigation.

use leptos::prelude::*;

use crate::estate::{self, Check};
use crate::widgets::{VirtualTable, check_badge};
use crate::{go, ui, with_proj};

/// One row of the list (all strings pre-lowered for search in `hay`).
#[derive(Clone, PartialEq)]
struct Row {
    id: String,
    name: String,
    kind: String,
    vendor: String,
    model: String,
    site: String,
    address: String,
    golden: bool,
    drift: bool,
    diverged: bool,
    conflict: bool,
    retired: bool,
    hay: String,
}

fn query_param(route: &str, key: &str) -> Option<String> {
    let q = route.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key)
            .then_some(v)
            .and_then(|v| js_sys::decode_uri_component(v).ok().map(String::from))
    })
}

/// The asset list page.
#[component]
pub fn Assets() -> impl IntoView {
    let u = ui();
    let search = RwSignal::new(String::new());
    let site = RwSignal::new(query_param(&u.route.get_untracked(), "site").unwrap_or_default());
    let kind = RwSignal::new(String::new());
    let flag = RwSignal::new(String::new());
    let selected = RwSignal::new(0usize);
    let all = Memo::new(move |_| {
        with_proj(|p| {
            p.assets()
                .into_iter()
                .map(|a| {
                    let f = &a.doc;
                    let mut hay = String::new();
                    for k in [
                        "name", "vendor", "model", "site", "address", "serial", "location", "kind",
                    ] {
                        hay.push_str(&f.get(k).to_lowercase());
                        hay.push(' ');
                    }
                    for (k, v) in &f.tags {
                        hay.push_str(&format!("{}={} ", k.to_lowercase(), v.value.to_lowercase()));
                    }
                    hay.push_str(&a.id.to_hex());
                    Row {
                        id: a.id.to_hex(),
                        name: f.get("name").to_string(),
                        kind: f.get("kind").to_string(),
                        vendor: f.get("vendor").to_string(),
                        model: f.get("model").to_string(),
                        site: f.get("site").to_string(),
                        address: f.get("address").to_string(),
                        golden: !f.golden.is_empty(),
                        drift: a.drifted(),
                        diverged: a.diverged(),
                        conflict: !f.conflicts().is_empty(),
                        retired: f.retired,
                        hay,
                    }
                })
                .collect::<Vec<_>>()
        })
    });
    let shown = Memo::new(move |_| {
        let q = search.get().to_lowercase();
        let terms: Vec<&str> = q.split_whitespace().collect();
        let (s, k, fl) = (site.get(), kind.get(), flag.get());
        all.with(|rows| {
            rows.iter()
                .enumerate()
                .filter(|(_, r)| terms.iter().all(|t| r.hay.contains(t)))
                .filter(|(_, r)| s.is_empty() || r.site == s)
                .filter(|(_, r)| k.is_empty() || r.kind == k)
                .filter(|(_, r)| match fl.as_str() {
                    "drift" => r.drift,
                    "diverged" => r.diverged,
                    "conflict" => r.conflict,
                    "nogolden" => !r.golden,
                    "retired" => r.retired,
                    _ => true,
                })
                .map(|(i, _)| i)
                .collect::<Vec<usize>>()
        })
    });
    let count = Signal::derive(move || shown.with(Vec::len));
    let options = move |field: fn(&Row) -> &String| {
        let mut v: Vec<String> = all.with(|rows| rows.iter().map(|r| field(r).clone()).collect());
        v.sort();
        v.dedup();
        v.retain(|s| !s.is_empty());
        v
    };
    let open = move |i: usize| {
        if let Some(id) = shown
            .with(|s| s.get(i).copied())
            .and_then(|r| all.with(|a| a.get(r).map(|x| x.id.clone())))
        {
            go(&format!("/asset/{id}"));
        }
    };
    let on_key = move |ev: leptos::ev::KeyboardEvent| match ev.key().as_str() {
        "ArrowDown" | "j" => {
            ev.prevent_default();
            selected.update(|s| *s = (*s + 1).min(count.get_untracked().saturating_sub(1)));
        }
        "ArrowUp" | "k" => {
            ev.prevent_default();
            selected.update(|s| *s = s.saturating_sub(1));
        }
        "Enter" => open(selected.get_untracked()),
        _ => {}
    };
    let render = move |i: usize| {
        let Some(r) = shown
            .with(|s| s.get(i).copied())
            .and_then(|r| all.with(|a| a.get(r).cloned()))
        else {
            return view! { <tr></tr> }.into_any();
        };
        u.rev.get();
        let check = cairn_core::AssetId::from_hex(&r.id)
            .ok()
            .map(|a| estate::with(|e| e.asset_check(&a)))
            .unwrap_or(Check::Unverified);
        let href = format!("#/asset/{}", r.id);
        view! {
            <tr class:sel=move || selected.get() == i data-testid="asset-row" on:click=move |_| selected.set(i)>
                <td><a href=href>{r.name.clone()}</a></td>
                <td>{r.kind}</td>
                <td>{r.vendor}</td>
                <td>{r.model}</td>
                <td>{r.site}</td>
                <td class="mono">{r.address}</td>
                <td>
                    {r.drift.then(|| view! { <span class="badge b-bad">"drift"</span> })}
                    {r.diverged.then(|| view! { <span class="badge b-warn">"diverged"</span> })}
                    {r.conflict.then(|| view! { <span class="badge b-warn">"conflict"</span> })}
                    {r.golden.then(|| view! { <span class="badge b-info">"golden"</span> })}
                    {r.retired.then(|| view! { <span class="badge b-muted">"retired"</span> })}
                </td>
                <td>{check_badge(&check)}</td>
            </tr>
        }
        .into_any()
    };
    view! {
        <div class="toolbar" on:keydown=on_key>
            <input type="search" placeholder="Search name, vendor, model, address, tag…  ( / )" data-testid="asset-search"
                prop:value=move || search.get()
                on:input=move |ev| { search.set(event_target_value(&ev)); selected.set(0); }/>
            <select data-testid="filter-site" prop:value=move || site.get() on:change=move |ev| site.set(event_target_value(&ev))>
                <option value="">"All sites"</option>
                {move || options(|r| &r.site).into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view()}
            </select>
            <select data-testid="filter-kind" on:change=move |ev| kind.set(event_target_value(&ev))>
                <option value="">"All kinds"</option>
                {move || options(|r| &r.kind).into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view()}
            </select>
            <select data-testid="filter-flag" on:change=move |ev| flag.set(event_target_value(&ev))>
                <option value="">"Any status"</option>
                <option value="drift">"Drifted"</option>
                <option value="diverged">"Diverged branch"</option>
                <option value="conflict">"Field conflict"</option>
                <option value="nogolden">"No golden"</option>
                <option value="retired">"Retired"</option>
            </select>
            <span class="muted" data-testid="asset-shown">{move || format!("{} of {} assets", count.get(), all.with(Vec::len))}</span>
            <Show when=move || u.source.get() == crate::estate::Source::Node && u.at.get().is_none()>
                <NewAsset/>
            </Show>
        </div>
        <div on:keydown=on_key tabindex="0">
            <VirtualTable
                header=view! { <tr><th style="width:16%">"Name"</th><th style="width:7%">"Kind"</th><th style="width:10%">"Vendor"</th><th style="width:14%">"Model"</th><th style="width:14%">"Site"</th><th style="width:11%">"Address"</th><th style="width:20%">"Status"</th><th style="width:8%">"Check"</th></tr> }
                rows=count
                render=render
                selected=selected
                height="calc(100vh - 150px)"
                testid="asset-list"/>
        </div>
    }
}

/// A small form to register an asset (signed by the node).
#[component]
fn NewAsset() -> impl IntoView {
    let open = RwSignal::new(false);
    let fields = ["name", "kind", "vendor", "model", "site", "address"]
        .map(|f| (f, RwSignal::new(String::new())));
    let submit = move |_| {
        let mut body = serde_json::Map::new();
        for (k, s) in fields {
            body.insert(k.into(), serde_json::Value::String(s.get_untracked()));
        }
        leptos::task::spawn_local(async move {
            match crate::api::post_json("/api/assets", &serde_json::Value::Object(body)).await {
                Ok(_) => {
                    crate::toast(false, "asset registered");
                    open.set(false);
                }
                Err(e) => crate::toast(true, e),
            }
        });
    };
    view! {
        <button on:click=move |_| open.update(|o| *o = !*o) data-testid="new-asset">"New asset"</button>
        <Show when=move || open.get()>
            <span class="toolbar">
                {fields.into_iter().map(|(k, s)| view! {
                    <input placeholder=k style="width:110px" data-testid=format!("new-{k}")
                        on:input=move |ev| s.set(event_target_value(&ev))/>
                }).collect_view()}
                <button class="primary" on:click=submit data-testid="new-asset-save">"Register"</button>
            </span>
        </Show>
    }
}

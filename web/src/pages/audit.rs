//! The audit trail: every event as an IEC 62443-3-3 SR 2.8 record (timestamp, device, user,
//! category, kind, event id, subject, result), with its verification status, filters, and
//! the time-travel point shown.

use leptos::prelude::*;

use crate::estate::{self, Check};
use crate::widgets::{VirtualTable, check_badge, short_time};
use crate::{ui, with_proj};

/// Audit categories, in the order event kinds are numbered.
fn categories() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for k in cairn_core::EventKind::ALL {
        if !out.contains(&k.category()) {
            out.push(k.category());
        }
    }
    out
}

/// The audit page.
#[component]
pub fn Audit() -> impl IntoView {
    let u = ui();
    let text = RwSignal::new(String::new());
    let category = RwSignal::new(String::new());
    let status = RwSignal::new(String::new());
    // Filtering reads only envelope fields (cheap at 10^5 events); subjects are derived for
    // the rows in view.
    let shown = Memo::new(move |_| {
        u.rev.get();
        let q = text.get().to_lowercase();
        let (cat, st) = (category.get(), status.get());
        let at = u.at.get();
        estate::with(|e| {
            let names = |d: &cairn_core::DeviceId| e.proj.device_name(d).to_lowercase();
            (0..e.events.len())
                .rev()
                .filter(|&i| {
                    let ev = &e.events[i];
                    if at.is_some_and(|t| ev.time().millis > t) {
                        return false;
                    }
                    if !cat.is_empty() && ev.kind().category() != cat {
                        return false;
                    }
                    if !st.is_empty() && e.check(i).label() != st {
                        return false;
                    }
                    q.is_empty()
                        || ev.kind().label().contains(&q)
                        || ev.id().to_hex().starts_with(&q)
                        || names(&ev.author()).contains(&q)
                })
                .collect::<Vec<usize>>()
        })
    });
    let count = Signal::derive(move || shown.with(Vec::len));
    let render = move |row: usize| {
        let Some(i) = shown.with(|s| s.get(row).copied()) else {
            return view! { <tr></tr> }.into_any();
        };
        let rec = with_proj(|p| estate::with(|e| e.record(p, i)));
        let time = estate::with(|e| e.events.get(i).map(|ev| ev.time().millis)).unwrap_or(0);
        match rec {
            None => view! { <tr></tr> }.into_any(),
            Some((r, check)) => {
                let reason = match &check {
                    Check::Rejected(s) | Check::Pending(s) => s.clone(),
                    _ => String::new(),
                };
                view! {
                    <tr data-testid="audit-row">
                        <td class="mono" title=r.timestamp.clone()>{short_time(time)}</td>
                        <td>{r.user}</td>
                        <td class="mono">{r.device}</td>
                        <td>{r.category}</td>
                        <td>{r.kind}</td>
                        <td title=r.subject.clone()>{r.subject.clone()}</td>
                        <td class="mono" title=r.event.clone()>{r.event.get(..12).unwrap_or("").to_string()}</td>
                        <td title=reason>{check_badge(&check)}</td>
                    </tr>
                }
                .into_any()
            }
        }
    };
    let quarantine = move || {
        u.rev.get();
        estate::with(|e| {
            let mut q: Vec<(String, String)> = e.quarantine.clone();
            q.extend(
                e.undecodable
                    .iter()
                    .map(|(pos, why)| (format!("log position {pos}"), why.clone())),
            );
            q
        })
    };
    view! {
        <h1>"Audit trail"</h1>
        <div class="toolbar">
            <input type="search" placeholder="Filter by kind, device or event id  ( / )" data-testid="audit-search"
                on:input=move |ev| text.set(event_target_value(&ev))/>
            <select on:change=move |ev| category.set(event_target_value(&ev)) data-testid="audit-category">
                <option value="">"All categories"</option>
                {categories().into_iter().map(|c| view! { <option value=c>{c}</option> }).collect_view()}
            </select>
            <select on:change=move |ev| status.set(event_target_value(&ev)) data-testid="audit-status">
                <option value="">"Any check"</option>
                <option value="verified">"Verified"</option>
                <option value="unverified">"Unverified"</option>
                <option value="rejected">"Rejected"</option>
                <option value="pending">"Pending"</option>
            </select>
            <span class="muted" data-testid="audit-count">{move || format!("{} records", count.get())}</span>
            <Show when=move || u.at.get().is_some()>
                <span class="badge b-warn">"time travel: events after the chosen time are hidden"</span>
            </Show>
        </div>
        <VirtualTable
            header=view! { <tr><th style="width:11%">"Time (UTC)"</th><th style="width:12%">"User"</th><th style="width:8%">"Device"</th><th style="width:9%">"Category"</th><th style="width:12%">"Kind"</th><th style="width:30%">"Subject"</th><th style="width:9%">"Event"</th><th style="width:9%">"Check"</th></tr> }
            rows=count
            render=render
            height="calc(100vh - 260px)"
            testid="audit-list"/>
        {move || {
            let q = quarantine();
            (!q.is_empty()).then(|| view! {
                <div class="panel" style="margin-top:12px" data-testid="quarantine">
                    <h2>"Rejected events kept as evidence"</h2>
                    <table><tbody>{q.into_iter().map(|(id, why)| view! {
                        <tr><td class="mono">{id}</td><td><span class="badge b-bad">"rejected"</span>{why}</td></tr>
                    }).collect_view()}</tbody></table>
                </div>
            })
        }}
    }
}

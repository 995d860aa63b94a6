//! Pieces every page uses: the top bar (navigation, verification progress, time travel,
//! theme), status badges and the virtualised table body.

use leptos::prelude::*;

use crate::estate::{self, Check, Source};
use crate::ui;

/// Switches light/dark and remembers the choice.
pub fn toggle_theme() {
    let Some(root) = document().document_element() else {
        return;
    };
    let next = if root.get_attribute("data-theme").as_deref() == Some("dark") {
        "light"
    } else {
        "dark"
    };
    let _ = root.set_attribute("data-theme", next);
    if let Some(s) = window().local_storage().ok().flatten() {
        let _ = s.set_item("cairn-theme", next);
    }
}

/// A check as a badge; the title carries the reason.
pub fn check_badge(c: &Check) -> impl IntoView + use<> {
    let (class, title) = match c {
        Check::Unverified => ("badge b-muted", "signature not checked yet".to_string()),
        Check::Verified(s) => ("badge b-ok", (*s).to_string()),
        Check::Rejected(r) => ("badge b-bad", r.clone()),
        Check::Pending(r) => ("badge b-warn", r.clone()),
    };
    view! { <span class=class title=title data-check=c.label()>{c.label()}</span> }
}

/// Formats Unix milliseconds as `YYYY-MM-DD HH:MM` UTC.
pub fn short_time(ms: u64) -> String {
    let s = cairn_core::hlc::format_unix_millis(ms);
    s.get(..16).unwrap_or(&s).replace('T', " ")
}

#[component]
fn NavLink(href: &'static str, label: &'static str, key: &'static str) -> impl IntoView {
    let u = ui();
    let active = move || {
        let r = u.route.get();
        if href == "/" {
            r == "/"
        } else {
            r == href || (href == "/assets" && r.starts_with("/asset/"))
        }
    };
    view! {
        <a href=format!("#{href}") class:active=active title=format!("{label} (key {key})")>{label}</a>
    }
}

/// The header: navigation, what is being shown (node or bundle, live), verification
/// progress, the time-travel control and the theme switch.
#[component]
pub fn TopBar() -> impl IntoView {
    let u = ui();
    let name = move || {
        u.rev.get();
        estate::with(|e| e.proj.workspace_name())
    };
    let progress = move || {
        let (got, of) = u.fetched.get();
        if got < of {
            let pct = got as f64 * 100.0 / of as f64;
            return view! {
                <span data-testid="load-status" class="badge b-warn" title="the list fills in as the log arrives; records are unverified until checked">
                    "loading log " {format!("{got}/{of}")} " "
                    <span class="progress"><div style=format!("width:{pct:.0}%")></div></span>
                </span>
            }
            .into_any();
        }
        let (done, total) = u.progress.get();
        let all = estate::with(|e| e.events.len());
        let total = total.max(all);
        if total == 0 {
            return view! { <span></span> }.into_any();
        }
        if done >= total {
            let bad = estate::with(|e| e.bad_sig.len() + e.undecodable.len());
            return if bad == 0 {
                view! { <span class="badge b-ok" data-testid="verify-status" title="every signature, chain link and authorization checked in this browser">{format!("{total} events verified")}</span> }.into_any()
            } else {
                view! { <span class="badge b-bad" data-testid="verify-status">{format!("{bad} of {total} events rejected")}</span> }.into_any()
            };
        }
        let pct = done as f64 * 100.0 / total as f64;
        view! {
            <span data-testid="verify-status" class="muted">
                "verifying " {format!("{done}/{total}")} " "
                <span class="progress"><div style=format!("width:{pct:.0}%")></div></span>
            </span>
        }
        .into_any()
    };
    let source = move || {
        match u.source.get() {
        Source::Bundle => view! { <span class="badge b-info" data-testid="source">"audit bundle (read-only)"</span> }.into_any(),
        Source::Node => {
            if u.live.get() {
                view! { <span class="badge b-ok" data-testid="source" title="live updates from the node">"live"</span> }.into_any()
            } else {
                view! { <span class="badge b-muted" data-testid="source">"node"</span> }.into_any()
            }
        }
    }
    };
    view! {
        <header class="top">
            <span class="brand">"CAIRN"</span>
            <span class="muted" data-testid="workspace-name">{name}</span>
            <nav>
                <NavLink href="/" label="Overview" key="1"/>
                <NavLink href="/assets" label="Assets" key="2"/>
                <NavLink href="/audit" label="Audit trail" key="3"/>
                <NavLink href="/devices" label="Devices" key="4"/>
                <NavLink href="/sync" label="Sync" key="5"/>
                <NavLink href="/bundle" label="Open bundle" key="6"/>
            </nav>
            <span class="spacer"></span>
            {source}
            {progress}
            <TimeTravel/>
            <button on:click=|_| toggle_theme() title="light / dark (key t)">"◐"</button>
        </header>
    }
}

/// A slider over the log's time range; the whole UI then shows the estate as it was.
#[component]
fn TimeTravel() -> impl IntoView {
    let u = ui();
    let range = move || {
        u.rev.get();
        estate::with(|e| e.time_range())
    };
    let label = move || match u.at.get() {
        None => "now".to_string(),
        Some(t) => format!("as of {}", short_time(t)),
    };
    view! {
        <span class="timetravel">
            {move || range().map(|(lo, hi)| {
                let lo = lo.millis;
                let hi = hi.millis;
                view! {
                    <input type="range" data-testid="time-travel" min=lo.to_string() max=hi.to_string() step="1" value=hi.to_string()
                        title="time travel: show the estate as it was"
                        prop:value=move || u.at.get().unwrap_or(hi).to_string()
                        on:change=move |ev| {
                            let v: u64 = event_target_value(&ev).parse().unwrap_or(hi);
                            u.at.set(if v >= hi { None } else { Some(v) });
                        }/>
                }
            })}
            <span class=move || if u.at.get().is_some() { "badge b-warn" } else { "muted" } data-testid="time-label">{label}</span>
            <Show when=move || u.at.get().is_some()>
                <button on:click=move |_| u.at.set(None) data-testid="time-now">"Now"</button>
            </Show>
        </span>
    }
}

/// Row height of virtual tables, in pixels (CSS `.vlist td` matches).
pub const ROW_H: f64 = 27.0;

/// A scrolling table body that renders only the rows in view, so 10^4 assets or 10^5
/// records scroll smoothly. `rows` gives the row count; `render(i)` one row.
#[component]
pub fn VirtualTable<H, R, V>(
    header: H,
    rows: Signal<usize>,
    render: R,
    #[prop(optional)] selected: Option<RwSignal<usize>>,
    #[prop(into)] height: String,
    #[prop(into)] testid: String,
) -> impl IntoView
where
    H: IntoView + 'static,
    R: Fn(usize) -> V + Send + Sync + 'static,
    V: IntoView + 'static,
{
    let top = RwSignal::new(0.0f64);
    let view_h = 900.0;
    let node = NodeRef::<leptos::html::Div>::new();
    // Keep the selected row in view as the keyboard moves it.
    if let Some(sel) = selected {
        Effect::new(move |_| {
            let i = sel.get() as f64;
            if let Some(el) = node.get_untracked() {
                let y = i * ROW_H;
                let st = el.scroll_top() as f64;
                let h = el.client_height() as f64;
                if y < st {
                    el.set_scroll_top(y as i32);
                } else if y + ROW_H * 2.0 > st + h {
                    el.set_scroll_top((y + ROW_H * 2.0 - h) as i32);
                }
            }
        });
    }
    let body = move || {
        let n = rows.get();
        let first = ((top.get() / ROW_H) as usize).saturating_sub(10).min(n);
        let last = (first + (view_h / ROW_H) as usize + 30).min(n);
        let pad_top = first as f64 * ROW_H;
        let pad_bottom = (n - last) as f64 * ROW_H;
        view! {
            <tr style=format!("height:{pad_top}px")></tr>
            {(first..last).map(&render).collect_view()}
            <tr style=format!("height:{pad_bottom}px")></tr>
        }
    };
    view! {
        <div class="vlist" style=format!("height:{height}") node_ref=node data-testid=testid
            on:scroll=move |ev| {
                let el: web_sys::HtmlElement = event_target(&ev);
                top.set(el.scroll_top() as f64);
            }>
            <table>
                <thead>{header}</thead>
                <tbody>{body}</tbody>
            </table>
        </div>
    }
}

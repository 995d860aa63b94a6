//! Cairn's web UI: a client-side Leptos app that fetches the raw signed events from the local
//! node (or reads an audit bundle), verifies and projects them in the browser with
//! `cairn-core`, and shows the estate. Writes go to the node's API, which signs them.
//!
//! Modules: `api` (the node's HTTP API), `estate` (events, checks, projection), `pages`
//! (one module per page), `diff` (side-by-side diffs), `widgets` (badges, the virtual list).

mod api;
mod diff;
mod estate;
mod pages;
mod widgets;

use std::time::Duration;

use cairn_core::hlc::Hlc;
use cairn_core::projection::Projection;
use leptos::mount::mount_to_body;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use estate::Source;

/// Signatures checked per slice of work between frames.
const VERIFY_BATCH: usize = 2_000;

/// The UI's shared signals (all `Copy`).
#[derive(Clone, Copy)]
pub struct Ui {
    /// Bumped whenever the estate changes; views read it to re-render.
    pub rev: RwSignal<u64>,
    /// Events checked so far, of how many.
    pub progress: RwSignal<(usize, usize)>,
    /// Time travel: show the estate as it was at this time (None: now).
    pub at: RwSignal<Option<u64>>,
    /// The current route (the URL hash without `#`).
    pub route: RwSignal<String>,
    /// A message for the user: (is error, text).
    pub toast: RwSignal<Option<(bool, String)>>,
    /// The live stream from the node is connected.
    pub live: RwSignal<bool>,
    /// Loading state: None while loading, Some(Err) on failure.
    pub loaded: RwSignal<Option<Result<(), String>>>,
    /// Where the events come from.
    pub source: RwSignal<Source>,
    /// Time from start until the whole log was fetched and projected, in ms.
    pub ready_ms: RwSignal<Option<f64>>,
    /// Events fetched and projected, of how many the node holds.
    pub fetched: RwSignal<(usize, usize)>,
}

thread_local! {
    /// The App's signals, for code that runs outside any reactive owner: a `spawn_local` task
    /// after an `await` (a toast after a save) has no context to find them in.
    static APP_UI: std::cell::Cell<Option<Ui>> = const { std::cell::Cell::new(None) };
}

/// The UI's signals, from any component or task: the App's, which live as long as the page.
pub fn ui() -> Ui {
    use_context::<Ui>()
        .or_else(|| APP_UI.with(std::cell::Cell::get))
        .unwrap_or_else(|| {
            // Only before App has run: said on the console (which fails the browser suite),
            // and fresh signals keep the caller alive rather than panicking.
            web_sys::console::error_1(&"cairn: UI signals used before the app started".into());
            new_ui()
        })
}

fn new_ui() -> Ui {
    Ui {
        rev: RwSignal::new(0),
        progress: RwSignal::new((0, 0)),
        at: RwSignal::new(None),
        route: RwSignal::new(current_route()),
        toast: RwSignal::new(None),
        live: RwSignal::new(false),
        loaded: RwSignal::new(None),
        source: RwSignal::new(Source::Node),
        ready_ms: RwSignal::new(None),
        fetched: RwSignal::new((0, 0)),
    }
}

thread_local! {
    /// The projection at the time-travel point, cached by (time, estate revision).
    static AT_CACHE: std::cell::RefCell<Option<(u64, u64, Projection)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` on the projection the UI shows: now, or as it was at the time-travel point.
/// Subscribes the caller to changes of either.
pub fn with_proj<T>(f: impl FnOnce(&Projection) -> T) -> T {
    let u = ui();
    let rev = u.rev.get();
    match u.at.get() {
        None => estate::with(|e| f(&e.proj)),
        Some(t) => AT_CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let fresh = matches!(&*c, Some((ct, cr, _)) if *ct == t && *cr == rev);
            if !fresh {
                let p = estate::with(|e| {
                    e.project_at(Hlc {
                        millis: t,
                        counter: u32::MAX,
                    })
                });
                *c = Some((t, rev, p));
            }
            match &*c {
                Some((_, _, p)) => f(p),
                None => estate::with(|e| f(&e.proj)),
            }
        }),
    }
}

thread_local! {
    /// Counts toasts, so a toast's timer clears only its own message, never a newer one.
    static TOASTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Shows a message for a few seconds (until a newer one replaces it).
pub fn toast(is_err: bool, msg: impl Into<String>) {
    let u = ui();
    let n = TOASTS.with(|t| {
        t.set(t.get() + 1);
        t.get()
    });
    u.toast.set(Some((is_err, msg.into())));
    set_timeout(
        move || {
            if TOASTS.with(std::cell::Cell::get) == n {
                u.toast.set(None);
            }
        },
        Duration::from_millis(if is_err { 8000 } else { 3500 }),
    );
}

/// Whether this tab asked for the self-test routes (the browser suite sets
/// `sessionStorage["cairn-self-test"] = "1"`); a plain link to one does nothing.
fn self_test_enabled() -> bool {
    web_sys::window()
        .and_then(|w| w.session_storage().ok().flatten())
        .and_then(|s| s.get_item("cairn-self-test").ok().flatten())
        .is_some_and(|v| v == "1")
}

fn current_route() -> String {
    web_sys::window()
        .and_then(|w| w.location().hash().ok())
        .map(|h| h.trim_start_matches('#').to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into())
}

/// Navigates to a route.
pub fn go(route: &str) {
    if let Some(w) = web_sys::window() {
        let _ = w.location().set_hash(route);
    }
}

fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or(0.0)
}

/// Fetches every page after the cursor and projects it, the next page travelling while the
/// current one is projected. The first page makes the estate usable (`loaded`); the header
/// shows how much of the log is in.
async fn pull(u: Ui) -> Result<usize, String> {
    let mut n = 0;
    let mut next = api::request_events_after(estate::with(|e| e.cursor))?;
    loop {
        let page = next.page().await?;
        if page.is_empty() {
            break;
        }
        let last = page.last().map(|(pos, _)| *pos);
        next = api::request_events_after(last)?;
        n += page.len();
        estate::with_mut(|e| e.add_raw(page));
        u.fetched.update(|(got, total)| {
            *got = estate::with(|e| e.events.len());
            *total = (*total).max(*got);
        });
        // The first page makes the estate usable at once; later pages re-render only at the
        // end (re-deriving 10^4 rows per page would double the load time), while the header
        // counts them in.
        if u.loaded.get_untracked().is_none() {
            u.loaded.set(Some(Ok(())));
            u.rev.update(|r| *r += 1);
        }
        // Let the page paint (and the user type) before projecting the next one.
        yield_now().await;
    }
    if n > 0 {
        u.rev.update(|r| *r += 1);
        schedule_verify(u);
    }
    Ok(n)
}

/// Gives the browser a turn (rendering, input) between slices of work.
async fn yield_now() {
    let p = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(
            move || {
                let _ = resolve.call0(&wasm_bindgen::JsValue::NULL);
            },
            Duration::from_millis(0),
        );
    });
    let _ = wasm_bindgen_futures::JsFuture::from(p).await;
}

thread_local! {
    static VERIFYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Checks signatures in slices between frames, so the UI stays responsive; progress shows in
/// the header.
fn schedule_verify(u: Ui) {
    if VERIFYING.with(|v| v.replace(true)) {
        return;
    }
    fn step(u: Ui) {
        let (more, done, total, before) = estate::with_mut(|e| {
            let before = e.bad_sig.len();
            let more = e.verify_batch(VERIFY_BATCH);
            (more, e.verified, e.events.len(), before != e.bad_sig.len())
        });
        u.progress.set((done, total));
        if before || !more {
            u.rev.update(|r| *r += 1);
        }
        if more {
            set_timeout(move || step(u), Duration::from_millis(0));
        } else {
            VERIFYING.with(|v| v.set(false));
        }
    }
    set_timeout(move || step(u), Duration::from_millis(0));
}

/// Loads the estate from the node, then follows the live stream.
fn start_node(u: Ui) {
    let t0 = now_ms();
    spawn_local(async move {
        if let Ok(info) = api::get_json("/api/info").await
            && let Some(total) = info.get("events").and_then(|v| v.as_u64())
        {
            u.fetched.set((0, total as usize));
        }
        match pull(u).await {
            Ok(_) => {
                // Set only if not set yet: setting it again re-creates the page, which lost
                // what the user had typed meanwhile (a search typed while the log loaded).
                if u.loaded.get_untracked() != Some(Ok(())) {
                    u.loaded.set(Some(Ok(())));
                }
                u.ready_ms.set(Some(now_ms() - t0));
                follow_live(u);
            }
            Err(e) => u.loaded.set(Some(Err(e))),
        }
    });
}

fn follow_live(u: Ui) {
    let Some(token) = api::token() else { return };
    let Ok(es) = web_sys::EventSource::new(&format!("/api/live?token={token}")) else {
        return;
    };
    let on_log = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |_| {
        if u.source.get_untracked() != Source::Node {
            return;
        }
        u.live.set(true);
        spawn_local(async move {
            if let Err(e) = pull(u).await {
                toast(true, format!("live update failed: {e}"));
            }
        });
    });
    let _ = es.add_event_listener_with_callback("log", on_log.as_ref().unchecked_ref());
    on_log.forget();
    let on_err = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| u.live.set(false));
    es.set_onerror(Some(on_err.as_ref().unchecked_ref()));
    on_err.forget();
    let on_open = Closure::<dyn FnMut(web_sys::Event)>::new(move |_| u.live.set(true));
    es.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    on_open.forget();
}

/// Replaces the estate with an audit bundle's contents (read-only; no node needed).
pub fn open_bundle(u: Ui, bytes: Vec<u8>) -> Result<usize, String> {
    #[derive(serde::Deserialize)]
    struct Quarantined {
        reason: String,
        bytes: Vec<u8>,
    }
    let parsed = cairn_core::bundle::parse(&bytes).map_err(|e| e.to_string())?;
    let mut est = estate::Estate::new();
    let frames = parsed
        .events
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u64, b.to_vec()))
        .collect();
    est.add_raw(frames);
    est.bundle_blobs = parsed
        .blobs
        .iter()
        .map(|(id, b)| (*id, b.to_vec()))
        .collect();
    for q in &parsed.quarantined {
        match postcard::from_bytes::<Quarantined>(q) {
            Ok(q) => est
                .quarantine
                .push((cairn_core::EventId::of(&q.bytes).to_hex(), q.reason)),
            Err(e) => est
                .quarantine
                .push((String::new(), format!("unreadable record: {e}"))),
        }
    }
    let n = est.events.len();
    estate::with_mut(|e| *e = est);
    u.source.set(Source::Bundle);
    u.at.set(None);
    u.loaded.set(Some(Ok(())));
    u.rev.update(|r| *r += 1);
    schedule_verify(u);
    Ok(n)
}

#[component]
fn App() -> impl IntoView {
    let u = new_ui();
    provide_context(u);
    APP_UI.with(|c| c.set(Some(u)));
    let _ = window_event_listener(leptos::ev::hashchange, move |_| {
        u.route.set(current_route());
    });
    // Keyboard: 1-6 switch pages, `/` focuses the page's search, `t` toggles the theme.
    let _ = window_event_listener(leptos::ev::keydown, move |ev| {
        let typing = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
            .is_some_and(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT"));
        if typing || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
            return;
        }
        let page = match ev.key().as_str() {
            "1" => Some("/"),
            "2" => Some("/assets"),
            "3" => Some("/audit"),
            "4" => Some("/devices"),
            "5" => Some("/sync"),
            "6" => Some("/bundle"),
            "t" => {
                widgets::toggle_theme();
                None
            }
            "/" => {
                if let Some(el) = document()
                    .query_selector("input[type=search]")
                    .ok()
                    .flatten()
                    && let Ok(el) = el.dyn_into::<web_sys::HtmlElement>()
                {
                    ev.prevent_default();
                    let _ = el.focus();
                }
                None
            }
            _ => None,
        };
        if let Some(p) = page {
            go(p);
        }
    });
    if api::token().is_some() {
        start_node(u);
    } else {
        u.source.set(Source::Bundle);
        u.loaded.set(Some(Ok(())));
    }
    let page = move || {
        let r = u.route.get();
        let path = r.split_once('?').map_or(r.as_str(), |(p, _)| p);
        match path {
            "/" => pages::overview::Overview().into_any(),
            "/assets" => pages::assets::Assets().into_any(),
            "/audit" => pages::audit::Audit().into_any(),
            "/devices" => pages::devices::Devices().into_any(),
            "/sync" => pages::sync::Sync().into_any(),
            "/bundle" => pages::bundle::Bundle().into_any(),
            // Checks the crash banner (a browser test opens it): a panic, on purpose, only in a
            // tab that asked for self-tests.
            "/self-test/panic" if self_test_enabled() => panic!("self-test of the crash banner"),
            other => match other.strip_prefix("/asset/") {
                Some(id) => {
                    pages::asset::Asset(pages::asset::AssetProps { id: id.to_string() }).into_any()
                }
                None => view! { <p>"No such page."</p> }.into_any(),
            },
        }
    };
    view! {
        <widgets::TopBar/>
        <main>
            {move || match u.loaded.get() {
                None => view! { <p class="muted" data-testid="loading">"Loading the signed event log…"</p> }.into_any(),
                Some(Err(e)) => view! {
                    <div class="banner b-bad" data-testid="load-error">
                        "Could not load the event log: " {e}
                        ". Open the URL `cairn serve` printed (it carries the token), or open an audit bundle."
                    </div>
                    <pages::bundle::Bundle/>
                }.into_any(),
                Some(Ok(())) => page().into_any(),
            }}
        </main>
        {move || u.toast.get().map(|(bad, msg)| view! {
            <div class=if bad { "toast b-bad" } else { "toast b-ok" } data-testid="toast">{msg}</div>
        })}
    }
}

/// Shows, once, a banner over the page after a panic: the wasm app stops answering after
/// one, so a page that looked alive would silently drop every later click and edit.
fn show_crash_banner(message: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else {
        return;
    };
    let Some(body) = doc.body() else { return };
    if doc.get_element_by_id("crash-banner").is_some() {
        return;
    }
    let (Ok(div), Ok(button)) = (doc.create_element("div"), doc.create_element("button")) else {
        return;
    };
    div.set_id("crash-banner");
    div.set_class_name("banner b-bad crash");
    let _ = div.set_attribute("data-testid", "crash-banner");
    let _ = div.set_attribute("role", "alert");
    div.set_text_content(Some(&format!(
        "Cairn hit an internal error and stopped: reload the page (changes not yet saved \
         are lost; everything saved is recorded). For the bug report: {message} "
    )));
    button.set_text_content(Some("Reload"));
    // To the overview: the page that panicked may panic again. The URL is replaced without a
    // `hashchange`, which would reach the app's half-run reactive graph.
    let reload = Closure::<dyn Fn()>::new(|| {
        if let Some(w) = web_sys::window() {
            let l = w.location();
            let url = format!(
                "{}{}#/",
                l.pathname().unwrap_or_default(),
                l.search().unwrap_or_default()
            );
            if let Ok(h) = w.history() {
                let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
            }
            let _ = l.reload();
        }
    });
    let _ = button.add_event_listener_with_callback("click", reload.as_ref().unchecked_ref());
    reload.forget();
    let _ = div.append_child(&button);
    let _ = body.prepend_with_node_1(&div);
}

fn main() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        show_crash_banner(&info.to_string());
    }));
    mount_to_body(App);
}

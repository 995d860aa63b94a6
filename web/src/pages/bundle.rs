//! Opening an exported audit bundle: verified and projected here, read-only, with no node.

use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::{api, go, open_bundle, toast, ui};

/// The bundle page.
#[component]
pub fn Bundle() -> impl IntoView {
    let u = ui();
    let input = NodeRef::<leptos::html::Input>::new();
    let status = RwSignal::new(None::<Result<String, String>>);
    let on_change = move |_| {
        let Some(file) = input
            .get_untracked()
            .and_then(|i| i.files())
            .and_then(|l| l.get(0))
        else {
            return;
        };
        spawn_local(async move {
            let res = match api::read_file(&file).await {
                Ok(bytes) => open_bundle(u, bytes)
                    .map(|n| format!("{}: {n} events, verifying…", file.name())),
                Err(e) => Err(e),
            };
            match &res {
                Ok(m) => {
                    toast(false, m.clone());
                    go("/");
                }
                Err(e) => toast(true, format!("{}: {e}", file.name())),
            }
            status.set(Some(res));
        });
    };
    view! {
        <h1>"Open an audit bundle"</h1>
        <div class="panel">
            <p>"A bundle from " <code>"cairn audit export FILE"</code>
               " holds the signed events (and, with " <code>"--with-blobs"</code> ", the files). "
               "It is verified and projected here, in this browser, with no access to any workspace."</p>
            <input type="file" node_ref=input on:change=on_change data-testid="bundle-input"/>
            {move || status.get().map(|s| match s {
                Ok(m) => view! { <p class="banner b-ok" data-testid="bundle-status">{m}</p> }.into_any(),
                Err(e) => view! { <p class="banner b-bad" data-testid="bundle-status">{e}</p> }.into_any(),
            })}
        </div>
    }
}

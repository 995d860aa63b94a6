//! Asset detail: fields with conflicts and their resolution, the branch graph, the versions
//! timeline, side-by-side diffs, golden set and restore (download), the firmware layout map,
//! and uploads.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cairn_core::projection::{AssetView, VersionView};
use cairn_core::{AssetId, BlobId, VersionId};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::diff::{FileDiff, diff};
use crate::estate::{self, Source};
use crate::widgets::{check_badge, short_time};
use crate::{api, toast, ui, with_proj};

/// Whether writes are possible: a live node, showing the present.
fn writable() -> bool {
    let u = ui();
    u.source.get() == Source::Node && u.at.get().is_none()
}

/// The asset page.
#[component]
pub fn Asset(id: String) -> impl IntoView {
    let Ok(aid) = AssetId::from_hex(&id) else {
        return view! { <p class="banner b-bad">"Not an asset id: " {id}</p> }.into_any();
    };
    let asset = Memo::new(move |_| {
        with_proj(|p| {
            p.asset(&aid)
                .map(|a| (a, p.versions_of(&aid), p.firmware_of(&aid)))
        })
    });
    view! {
        {move || match asset.get() {
            None => view! { <p class="banner b-warn" data-testid="no-asset">"This asset does not exist at the time shown."</p> }.into_any(),
            Some((a, versions, firmware)) => view! { <AssetBody a=a versions=versions firmware=firmware/> }.into_any(),
        }}
    }
    .into_any()
}

#[component]
fn AssetBody(
    a: AssetView,
    versions: Vec<VersionView>,
    firmware: Vec<cairn_core::projection::FirmwareView>,
) -> impl IntoView {
    let u = ui();
    let aid = a.id;
    let check = move || {
        u.rev.get();
        estate::with(|e| e.asset_check(&aid))
    };
    let golden: Vec<VersionId> = a.doc.golden.clone();
    // Diff selection: B = newest, A = its first parent (or the next older version).
    let newest = versions.first().map(|v| v.id);
    let older = versions
        .first()
        .and_then(|v| v.parents.first().copied())
        .or_else(|| versions.get(1).map(|v| v.id));
    let sel_a = RwSignal::new(older);
    let sel_b = RwSignal::new(newest);
    let by_id: HashMap<VersionId, VersionView> =
        versions.iter().map(|v| (v.id, v.clone())).collect();
    let name = a.name().to_string();
    view! {
        <h1 data-testid="asset-title">{name.clone()} " " {move || check_badge(&check())}
            {a.drifted().then(|| view! { <span class="badge b-bad">"drift"</span> })}
            {a.diverged().then(|| view! { <span class="badge b-warn">"diverged"</span> })}
            {a.doc.retired.then(|| view! { <span class="badge b-muted">"retired"</span> })}
        </h1>
        <p class="muted mono">{aid.to_hex()}</p>
        <div class="two">
            <Fields a=a.clone()/>
            <div>
                <Golden aid=aid golden=golden.clone() by_id=by_id.clone()/>
                <Drift a=a.clone()/>
            </div>
        </div>
        <div class="panel">
            <h2>"Branches"</h2>
            <BranchGraph a=a.clone() versions=versions.clone() golden=golden.clone()/>
        </div>
        <div class="panel">
            <h2>"Versions"</h2>
            <Timeline aid=aid versions=versions.clone() golden=golden.clone() sel_a=sel_a sel_b=sel_b/>
        </div>
        <div class="panel">
            <h2>"Diff"</h2>
            <DiffView by_id=by_id sel_a=sel_a sel_b=sel_b/>
        </div>
        <div class="panel">
            <h2>"Firmware"</h2>
            <Firmware images=firmware/>
        </div>
        <Show when=writable>
            <Uploads aid=aid versions=versions.clone()/>
        </Show>
    }
}

fn field_order(k: &str) -> usize {
    [
        "name",
        "kind",
        "vendor",
        "model",
        "serial",
        "site",
        "location",
        "address",
        "firmware",
        "criticality",
        "notes",
    ]
    .iter()
    .position(|x| *x == k)
    .unwrap_or(99)
}

#[component]
fn Fields(a: AssetView) -> impl IntoView {
    let aid = a.id.to_hex();
    let mut rows: Vec<(String, String, Vec<String>)> = a
        .doc
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone(), v.conflict.clone()))
        .collect();
    rows.extend(
        a.doc
            .tags
            .iter()
            .map(|(k, v)| (format!("tags.{k}"), v.value.clone(), v.conflict.clone())),
    );
    rows.sort_by_key(|(k, _, _)| (field_order(k), k.clone()));
    let editing = RwSignal::new(None::<String>);
    let draft = RwSignal::new(String::new());
    let rows_view = rows
        .into_iter()
        .map(|(k, v, conflict)| {
            let aid = aid.clone();
            let k2 = k.clone();
            let k3 = k.clone();
            let k4 = k.clone();
            let is_conflict = conflict.len() > 1;
            let save = {
                let aid = aid.clone();
                let k = k.clone();
                move |_| {
                    let body = serde_json::json!({ "fields": { k.clone(): draft.get_untracked() } });
                    let path = format!("/api/assets/{aid}/fields");
                    spawn_local(async move {
                        match api::post_json(&path, &body).await {
                            Ok(_) => {
                                toast(false, "saved and signed by this node");
                                editing.set(None);
                            }
                            Err(e) => toast(true, e),
                        }
                    });
                }
            };
            let value_view = if is_conflict {
                let aid = aid.clone();
                view! {
                    <div class="conflict" data-testid="conflict">
                        <span class="badge b-warn">"conflict"</span>
                        {conflict.into_iter().map(|val| {
                            let aid = aid.clone();
                            let field = k.clone();
                            let v2 = val.clone();
                            view! {
                                <div>
                                    <code>{val.clone()}</code> " "
                                    <Show when=writable>
                                        <button data-testid="resolve" on:click={
                                            let aid = aid.clone(); let field = field.clone(); let v2 = v2.clone();
                                            move |_| {
                                                let body = serde_json::json!({ "field": field.clone(), "value": v2.clone() });
                                                let path = format!("/api/assets/{aid}/resolve");
                                                spawn_local(async move {
                                                    match api::post_json(&path, &body).await {
                                                        Ok(_) => toast(false, "conflict resolved"),
                                                        Err(e) => toast(true, e),
                                                    }
                                                });
                                            }
                                        }>"Keep this"</button>
                                    </Show>
                                </div>
                            }
                        }).collect_view()}
                    </div>
                }
                .into_any()
            } else {
                view! { <span>{v.clone()}</span> }.into_any()
            };
            view! {
                <tr data-testid=format!("field-{}", k.clone())>
                    <th style="width:120px">{k.clone()}</th>
                    <td style="white-space:normal">
                        {value_view}
                        {move || (editing.get().as_deref() == Some(k2.as_str())).then(|| {
                            let save = save.clone();
                            view! {
                                <div>
                                    <input data-testid="field-input" prop:value=move || draft.get()
                                        on:input=move |ev| draft.set(event_target_value(&ev))/>
                                    " " <button class="primary" data-testid="field-save" on:click=save>"Save"</button>
                                    " " <button on:click=move |_| editing.set(None)>"Cancel"</button>
                                </div>
                            }
                        })}
                    </td>
                    <td style="width:60px">
                        <Show when=move || writable() && k3 != "name" && !k3.starts_with("tags.")>
                            <button data-testid="field-edit" on:click={
                                let v = v.clone(); let k4 = k4.clone();
                                move |_| { draft.set(v.clone()); editing.set(Some(k4.clone())); }
                            }>"Edit"</button>
                        </Show>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="panel">
            <h2>"Fields"</h2>
            <table data-testid="fields"><tbody>{rows_view}</tbody></table>
        </div>
    }
}

fn download(url: &str, name: &str) {
    if let Ok(el) = document().create_element("a")
        && let Ok(a) = el.dyn_into::<web_sys::HtmlAnchorElement>()
    {
        a.set_href(url);
        a.set_download(name);
        if let Some(body) = document().body() {
            let _ = body.append_child(&a);
            a.click();
            let _ = body.remove_child(&a);
        }
    }
}

/// A blob's content: from the node, or from the opened bundle.
async fn blob_bytes(id: BlobId) -> Result<Vec<u8>, String> {
    if let Some(b) = estate::with(|e| e.bundle_blobs.get(&id).cloned()) {
        return Ok(b);
    }
    if ui().source.get_untracked() == Source::Bundle {
        return Err(
            "this bundle does not carry the file contents (exported without --with-blobs)".into(),
        );
    }
    api::blob(&id.to_hex()).await
}

/// Saves each file of a version (the browser's "restore": the vendor tool loads them).
fn restore_download(v: &VersionView) {
    let files = v.files.clone();
    spawn_local(async move {
        for f in files {
            match blob_bytes(f.blob).await {
                Ok(bytes) => {
                    let arr = js_sys::Uint8Array::from(bytes.as_slice());
                    let parts = js_sys::Array::of1(&arr);
                    if let Ok(blob) = web_sys::Blob::new_with_u8_array_sequence(&parts)
                        && let Ok(url) = web_sys::Url::create_object_url_with_blob(&blob)
                    {
                        download(&url, f.path.rsplit('/').next().unwrap_or(&f.path));
                        let _ = web_sys::Url::revoke_object_url(&url);
                    }
                }
                Err(e) => toast(true, format!("{}: {e}", f.path)),
            }
        }
    });
}

#[component]
fn Golden(
    aid: AssetId,
    golden: Vec<VersionId>,
    by_id: HashMap<VersionId, VersionView>,
) -> impl IntoView {
    let _ = aid;
    let body = match golden.as_slice() {
        [] => view! { <p class="muted" data-testid="golden">"No golden version set."</p> }.into_any(),
        gs => gs
            .iter()
            .map(|g| {
                let v = by_id.get(g).cloned();
                let conflict = gs.len() > 1;
                view! {
                    <div data-testid="golden">
                        <span class="badge b-info">"★ golden"</span>
                        {conflict.then(|| view! { <span class="badge b-warn">"concurrent golden designations"</span> })}
                        <code>{g.short()}</code> " "
                        {v.clone().map(|v| view! {
                            <span>{v.message.clone()} <span class="muted">{format!(" · {} · {}", v.branch, short_time(v.time.millis))}</span></span>
                            " "
                            <button data-testid="restore" on:click={ let v = v.clone(); move |_| restore_download(&v) }
                                title="download the golden files to load them with the vendor tool">"Restore (download)"</button>
                        })}
                    </div>
                }
            })
            .collect_view()
            .into_any(),
    };
    view! { <div class="panel"><h2>"Golden"</h2>{body}</div> }
}

#[component]
fn Drift(a: AssetView) -> impl IntoView {
    let body = match &a.drift {
        None => view! { <p class="muted">"No drift check recorded."</p> }.into_any(),
        Some(d) if d.changes.is_empty() => view! {
            <p><span class="badge b-ok">"no drift"</span>{format!(" checked {} against {}", d.time, d.golden.short())}</p>
        }
        .into_any(),
        Some(d) => view! {
            <p><span class="badge b-bad" data-testid="drift">"drift"</span>{format!(" {} difference(s), checked {} against {}", d.changes.len(), d.time, d.golden.short())}</p>
            <ul>{d.changes.iter().map(|c| view! { <li class="mono">{format!("{c:?}")}</li> }).collect_view()}</ul>
        }
        .into_any(),
    };
    view! { <div class="panel"><h2>"Drift"</h2>{body}</div> }
}

/// Versions as dots in time order, one lane per branch; lines to parents; heads ringed,
/// golden starred, diverged branches flagged.
#[component]
fn BranchGraph(a: AssetView, versions: Vec<VersionView>, golden: Vec<VersionId>) -> impl IntoView {
    let mut vs = versions.clone();
    vs.sort_by_key(|v| (v.time, v.id));
    let mut lanes: Vec<String> = vec!["main".into()];
    for b in &a.branches {
        if !lanes.contains(&b.name) {
            lanes.push(b.name.clone());
        }
    }
    for v in &vs {
        if !lanes.contains(&v.branch) {
            lanes.push(v.branch.clone());
        }
    }
    let heads: BTreeSet<VersionId> = a
        .branches
        .iter()
        .flat_map(|b| b.heads.iter().copied())
        .collect();
    let diverged: BTreeMap<String, bool> = a
        .branches
        .iter()
        .map(|b| (b.name.clone(), b.diverged()))
        .collect();
    let x0 = 150.0;
    let dx = 34.0;
    let dy = 26.0;
    let pos: HashMap<VersionId, (f64, f64)> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let lane = lanes.iter().position(|l| *l == v.branch).unwrap_or(0);
            (v.id, (x0 + i as f64 * dx, 16.0 + lane as f64 * dy))
        })
        .collect();
    let w = x0 + vs.len() as f64 * dx + 20.0;
    let h = 16.0 + lanes.len() as f64 * dy;
    let pos_ref = &pos;
    let edges = vs
        .iter()
        .flat_map(|v| {
            let to = pos_ref.get(&v.id).copied();
            v.parents
                .iter()
                .filter_map(move |p| Some((pos_ref.get(p).copied()?, to?)))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>();
    let edges = edges
        .into_iter()
        .map(|((x1, y1), (x2, y2))| {
            view! { <line x1=x1 y1=y1 x2=x2 y2=y2 stroke="var(--muted)" stroke-width="1.5"/> }
        })
        .collect_view();
    let labels = lanes.iter().enumerate().map(|(i, l)| {
        let div = diverged.get(l).copied().unwrap_or(false);
        let text = if div { format!("{l} (diverged)") } else { l.clone() };
        view! { <text x="4" y=20.0 + i as f64 * dy data-testid=if div { "lane-diverged" } else { "lane" }>{text}</text> }
    }).collect_view();
    let dots = vs.iter().map(|v| {
        let (x, y) = pos.get(&v.id).copied().unwrap_or((0.0, 0.0));
        let head = heads.contains(&v.id);
        let gold = golden.contains(&v.id);
        let title = format!("{} {} — {} ({})", v.id.short(), v.branch, v.message, v.author_name);
        view! {
            <g>
                <title>{title}</title>
                <circle cx=x cy=y r=if head { 7 } else { 5 } fill=if gold { "#d4a017" } else { "var(--accent)" }
                    stroke=if head { "var(--fg)" } else { "none" } stroke-width="2"/>
            </g>
        }
    }).collect_view();
    view! {
        <div style="overflow-x:auto" data-testid="branch-graph">
            <svg width=w height=h>{edges}{labels}{dots}</svg>
        </div>
        <p class="muted">"Ringed: branch heads. Gold: golden. A branch with two heads has diverged; merge it to resolve."</p>
    }
}

#[component]
fn Timeline(
    aid: AssetId,
    versions: Vec<VersionView>,
    golden: Vec<VersionId>,
    sel_a: RwSignal<Option<VersionId>>,
    sel_b: RwSignal<Option<VersionId>>,
) -> impl IntoView {
    let rows = versions
        .into_iter()
        .map(|v| {
            let id = v.id;
            let gold = golden.contains(&id);
            let check = estate::with(|e| e.index.get(&id).map(|&i| e.check(i as usize)));
            let set_golden = move |_| {
                let body = serde_json::json!({ "version": id.to_hex() });
                let path = format!("/api/assets/{}/golden", aid.to_hex());
                spawn_local(async move {
                    match api::post_json(&path, &body).await {
                        Ok(_) => toast(false, "golden version set"),
                        Err(e) => toast(true, e),
                    }
                });
            };
            view! {
                <tr data-testid="version-row" data-version=id.to_hex()>
                    <td><input type="radio" name="diff-a" title="diff: left side" prop:checked=move || sel_a.get() == Some(id) on:change=move |_| sel_a.set(Some(id))/></td>
                    <td><input type="radio" name="diff-b" title="diff: right side" prop:checked=move || sel_b.get() == Some(id) on:change=move |_| sel_b.set(Some(id))/></td>
                    <td class="mono">{id.short()}</td>
                    <td>{v.branch.clone()}</td>
                    <td style="white-space:normal">{v.message.clone()}</td>
                    <td>{v.author_name.clone()}</td>
                    <td class="mono">{short_time(v.time.millis)}</td>
                    <td>{format!("{} file(s)", v.files.len())}</td>
                    <td>{gold.then(|| view! { <span class="badge b-info">"★ golden"</span> })}</td>
                    <td>{check.map(|c| check_badge(&c))}</td>
                    <td>
                        <Show when=move || writable() && !gold>
                            <button data-testid="set-golden" on:click=set_golden>"Set golden"</button>
                        </Show>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table data-testid="versions">
            <thead><tr><th>"A"</th><th>"B"</th><th>"Id"</th><th>"Branch"</th><th>"Message"</th><th>"Author"</th><th>"Time (UTC)"</th><th>"Files"</th><th></th><th>"Check"</th><th></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

#[component]
fn DiffView(
    by_id: HashMap<VersionId, VersionView>,
    sel_a: RwSignal<Option<VersionId>>,
    sel_b: RwSignal<Option<VersionId>>,
) -> impl IntoView {
    let result = RwSignal::new(None::<Result<Vec<(String, FileDiff)>, String>>);
    let by_id = StoredValue::new(by_id);
    Effect::new(move |_| {
        let (a, b) = (sel_a.get(), sel_b.get());
        let va = a.and_then(|a| by_id.with_value(|m| m.get(&a).cloned()));
        let vb = b.and_then(|b| by_id.with_value(|m| m.get(&b).cloned()));
        result.set(None);
        spawn_local(async move {
            let mut files: BTreeMap<String, (Option<BlobId>, Option<BlobId>)> = BTreeMap::new();
            for f in va.iter().flat_map(|v| v.files.iter()) {
                files.entry(f.path.clone()).or_default().0 = Some(f.blob);
            }
            for f in vb.iter().flat_map(|v| v.files.iter()) {
                files.entry(f.path.clone()).or_default().1 = Some(f.blob);
            }
            let mut out = Vec::new();
            for (path, (l, r)) in files {
                if l == r {
                    out.push((path, FileDiff::Same));
                    continue;
                }
                let lb = match l {
                    Some(id) => match blob_bytes(id).await {
                        Ok(b) => Some(b),
                        Err(e) => return result.set(Some(Err(format!("{path}: {e}")))),
                    },
                    None => None,
                };
                let rb = match r {
                    Some(id) => match blob_bytes(id).await {
                        Ok(b) => Some(b),
                        Err(e) => return result.set(Some(Err(format!("{path}: {e}")))),
                    },
                    None => None,
                };
                // Content is checked against its hash before it is shown.
                for (id, b) in [(l, &lb), (r, &rb)] {
                    if let (Some(id), Some(b)) = (id, b)
                        && BlobId::of(b) != id
                    {
                        return result.set(Some(Err(format!(
                            "{path}: content does not match its hash"
                        ))));
                    }
                }
                out.push((path, diff(lb.as_deref(), rb.as_deref())));
            }
            result.set(Some(Ok(out)));
        });
    });
    let names = move || {
        let a = sel_a
            .get()
            .map(|v| v.short())
            .unwrap_or_else(|| "(none)".into());
        let b = sel_b
            .get()
            .map(|v| v.short())
            .unwrap_or_else(|| "(none)".into());
        format!("{a} → {b}")
    };
    view! {
        <p class="muted">"Pick A and B in the versions table. " <code>{names}</code></p>
        {move || match result.get() {
            None => view! { <p class="muted">"Loading files…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="banner b-bad">{e}</p> }.into_any(),
            Some(Ok(files)) => view! {
                <div data-testid="diff">
                {files.into_iter().map(|(path, d)| match d {
                    FileDiff::Same => view! { <div class="muted mono">{path}" — unchanged"</div> }.into_any(),
                    FileDiff::Binary { left, right } => view! {
                        <div class="mono"><b>{path}</b>{format!(" — binary: {} → {} bytes", left.map(|x| x.to_string()).unwrap_or("absent".into()), right.map(|x| x.to_string()).unwrap_or("absent".into()))}</div>
                    }.into_any(),
                    FileDiff::Text(rows) => view! {
                        <div class="mono" style="margin-top:8px"><b>{path}</b></div>
                        <div class="diff" data-testid="diff-file">
                            {rows.into_iter().map(|r| {
                                let lc = if r.changed && r.left.is_some() { "del" } else { "" };
                                let rc = if r.changed && r.right.is_some() { "add" } else { "" };
                                let side = |s: Option<(usize, String)>| match s {
                                    Some((n, t)) => view! { <span class="ln">{n}</span>{t} }.into_any(),
                                    None => view! { <span class="ln"></span> }.into_any(),
                                };
                                view! { <div class=lc>{side(r.left)}</div><div class=rc>{side(r.right)}</div> }
                            }).collect_view()}
                        </div>
                    }.into_any(),
                }).collect_view()}
                </div>
            }.into_any(),
        }}
    }
}

fn region_color(name: &str) -> String {
    if name == cairn_core::firmware::UNIDENTIFIED {
        return "#7b8694".into();
    }
    let h = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
        % 360;
    format!("hsl({h},55%,42%)")
}

#[component]
fn Firmware(images: Vec<cairn_core::projection::FirmwareView>) -> impl IntoView {
    if images.is_empty() {
        return view! { <p class="muted">"No firmware images."</p> }.into_any();
    }
    images
        .into_iter()
        .map(|f| {
            let size = f.record.size.max(1) as f64;
            let regions = f.record.analysis.regions.clone();
            let bars = regions
                .iter()
                .map(|r| {
                    let left = r.offset as f64 * 100.0 / size;
                    let width = (r.size as f64 * 100.0 / size).max(0.3);
                    let style = format!("left:{left:.3}%;width:{width:.3}%;background:{}", region_color(&r.name));
                    let title = format!("{} @0x{:x}, {} bytes — {}", r.name, r.offset, r.size, r.description);
                    view! { <div style=style title=title>{r.name.clone()}</div> }
                })
                .collect_view();
            let ent = &f.record.analysis.entropy;
            let n = ent.len().max(1) as f64;
            let points: String = ent
                .iter()
                .enumerate()
                .map(|(i, e)| format!("{:.1},{:.1} ", i as f64 * 1000.0 / n, 30.0 - *e as f64 * 30.0 / 255.0))
                .collect();
            view! {
                <div style="margin-bottom:12px" data-testid="firmware">
                    <div><b>{f.record.file_name.clone()}</b> " "
                        {f.record.version.clone().map(|v| view! { <span class="badge b-info">{v}</span> })}
                        <span class="muted">{format!(" {} bytes · {} · added by {} {}", f.record.size, f.record.analysis.tool, f.author_name, short_time(f.time.millis))}</span>
                    </div>
                    <div class="fwbar" data-testid="firmware-map">{bars}</div>
                    <svg viewBox="0 0 1000 30" preserveAspectRatio="none" style="width:100%;height:30px" aria-label="entropy">
                        <polyline points=points fill="none" stroke="var(--accent)" stroke-width="1"/>
                    </svg>
                    <table>
                        <thead><tr><th>"Offset"</th><th>"Size"</th><th>"Part"</th><th>"Description"</th></tr></thead>
                        <tbody>{regions.into_iter().map(|r| view! {
                            <tr><td class="mono">{format!("0x{:08x}", r.offset)}</td><td>{r.size}</td><td>{r.name}</td><td>{r.description}</td></tr>
                        }).collect_view()}</tbody>
                    </table>
                    {f.record.analysis.warnings.iter().map(|w| view! { <p class="banner b-warn">{w.clone()}</p> }).collect_view()}
                </div>
            }
        })
        .collect_view()
        .into_any()
}

#[component]
fn Uploads(aid: AssetId, versions: Vec<VersionView>) -> impl IntoView {
    let hex = aid.to_hex();
    let message = RwSignal::new(String::new());
    let branch = RwSignal::new("main".to_string());
    let files = NodeRef::<leptos::html::Input>::new();
    let unzip = RwSignal::new(true);
    let upload = {
        let hex = hex.clone();
        move |_| {
            let Some(input) = files.get_untracked() else {
                return;
            };
            let Some(list) = input.files() else { return };
            let Ok(form) = web_sys::FormData::new() else {
                return;
            };
            let _ = form.append_with_str("message", &message.get_untracked());
            let _ = form.append_with_str("branch", &branch.get_untracked());
            for i in 0..list.length() {
                if let Some(f) = list.get(i) {
                    let rel = js_sys::Reflect::get(&f, &"webkitRelativePath".into())
                        .ok()
                        .and_then(|v| v.as_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| f.name());
                    // A zip export is unpacked by the node (checked entry by entry) unless
                    // the user wants the archive itself stored.
                    let part = if unzip.get_untracked() && rel.to_lowercase().ends_with(".zip") {
                        "zip"
                    } else {
                        "file"
                    };
                    let _ = form.append_with_blob_and_filename(part, &f, &rel);
                }
            }
            let path = format!("/api/assets/{hex}/versions");
            spawn_local(async move {
                match api::post_form(&path, &form).await {
                    Ok(_) => toast(false, "version committed"),
                    Err(e) => toast(true, e),
                }
            });
        }
    };
    let new_branch = RwSignal::new(String::new());
    let from = RwSignal::new(versions.first().map(|v| v.id.to_hex()).unwrap_or_default());
    let create_branch = {
        let hex = hex.clone();
        move |_| {
            let body = serde_json::json!({ "name": new_branch.get_untracked(), "from": from.get_untracked() });
            let path = format!("/api/assets/{hex}/branches");
            spawn_local(async move {
                match api::post_json(&path, &body).await {
                    Ok(_) => toast(false, "branch created"),
                    Err(e) => toast(true, e),
                }
            });
        }
    };
    let merge_from = RwSignal::new("main".to_string());
    let merge_into = RwSignal::new("main".to_string());
    let merge = {
        let hex = hex.clone();
        move |_| {
            let body = serde_json::json!({ "branch": merge_from.get_untracked(), "into": merge_into.get_untracked() });
            let path = format!("/api/assets/{hex}/merge");
            spawn_local(async move {
                match api::post_json(&path, &body).await {
                    Ok(_) => toast(false, "merged"),
                    Err(e) => toast(true, e),
                }
            });
        }
    };
    let fw = NodeRef::<leptos::html::Input>::new();
    let fw_version = RwSignal::new(String::new());
    let add_fw = move |_| {
        let Some(f) = fw
            .get_untracked()
            .and_then(|i| i.files())
            .and_then(|l| l.get(0))
        else {
            return toast(true, "choose an image file first");
        };
        let path = format!(
            "/api/assets/{hex}/firmware?file_name={}&version={}",
            api::enc(&f.name()),
            api::enc(&fw_version.get_untracked())
        );
        toast(false, "uploading and analysing the image…");
        spawn_local(async move {
            match api::post_file(&path, &f).await {
                Ok(_) => toast(false, "firmware added and analysed"),
                Err(e) => toast(true, e),
            }
        });
    };
    view! {
        <div class="panel">
            <h2>"Record changes (signed by this node)"</h2>
            <div class="toolbar">
                <b>"New version:"</b>
                <input type="file" multiple node_ref=files data-testid="upload-files"/>
                <label title="a .zip export becomes its files; untick to store the archive as one file">
                    <input type="checkbox" prop:checked=move || unzip.get() on:change=move |ev| unzip.set(event_target_checked(&ev))/>
                    " unpack .zip"
                </label>
                <input placeholder="message" on:input=move |ev| message.set(event_target_value(&ev)) data-testid="upload-message"/>
                <input placeholder="branch" style="width:90px" prop:value=move || branch.get() on:input=move |ev| branch.set(event_target_value(&ev))/>
                <button class="primary" on:click=upload data-testid="upload-commit">"Commit"</button>
            </div>
            <div class="toolbar">
                <b>"Branch:"</b>
                <input placeholder="new branch" style="width:120px" on:input=move |ev| new_branch.set(event_target_value(&ev))/>
                "from" <input placeholder="version" style="width:120px" prop:value=move || from.get() on:input=move |ev| from.set(event_target_value(&ev))/>
                <button on:click=create_branch>"Create"</button>
                <b>"Merge:"</b>
                <input style="width:90px" prop:value=move || merge_from.get() on:input=move |ev| merge_from.set(event_target_value(&ev))/>
                "into" <input style="width:90px" prop:value=move || merge_into.get() on:input=move |ev| merge_into.set(event_target_value(&ev))/>
                <button on:click=merge data-testid="merge">"Merge"</button>
            </div>
            <div class="toolbar">
                <b>"Firmware:"</b>
                <input type="file" node_ref=fw data-testid="firmware-file"/>
                <input placeholder="vendor version" style="width:110px" data-testid="firmware-version" on:input=move |ev| fw_version.set(event_target_value(&ev))/>
                <button on:click=add_fw data-testid="firmware-add">"Add and analyse"</button>
            </div>
        </div>
    }
}

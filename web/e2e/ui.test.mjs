// Browser tests of Cairn's web UI: real headless Chromium (Debian's), driven by playwright-core,
// against the demo workspace served by the real `cairn serve` on loopback.
//
// Run by `cargo xtask test` (which builds the UI and the binary first), or by hand, after
// `cargo xtask web && cargo build -p cairn-cli && (cd web/e2e && npm ci)`:
//   CAIRN_BIN=target/debug/cairn CAIRN_WEB_DIR=target/web node --test web/e2e/
// One test: add `--test-name-pattern "random walk"`. A failed random walk prints its seed
// first; replay it with CAIRN_WALK_SEED=N (and CAIRN_WALK_STEPS=N for its length).
// Screenshots go to target/e2e-artifacts/.

import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const bin = resolve(root, process.env.CAIRN_BIN ?? "target/debug/cairn");
const webDir = resolve(root, process.env.CAIRN_WEB_DIR ?? "target/web");
const artifacts = resolve(root, process.env.CAIRN_ARTIFACTS ?? "target/e2e-artifacts");
const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const PASS = "e2e passphrase";
const TIMEOUT = 20_000;

let tmp, dir, server, url, browser;

function cairn(args, dataDir = dir) {
  return execFileSync(bin, ["--data-dir", dataDir, ...args], {
    env: { ...process.env, CAIRN_PASSPHRASE: PASS },
    encoding: "utf8",
    timeout: 120_000,
  });
}

function serve(dataDir) {
  return new Promise((ok, fail) => {
    const child = spawn(bin, ["--data-dir", dataDir, "serve", "--port", "0", "--sync-bind", "127.0.0.1:0",
      "--no-mdns", "--interval", "1h", "--web-dir", webDir], {
      env: { ...process.env, CAIRN_PASSPHRASE: PASS }, stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    const timer = setTimeout(() => fail(new Error("cairn serve printed no URL: " + out)), 60_000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+/);
      const s = out.match(/sync endpoint: (\S+)/);
      if (m && s) { clearTimeout(timer); ok({ child, url: m[0], sync: s[1] }); }
    });
    child.on("exit", (c) => fail(new Error(`cairn serve exited with ${c}: ${out}`)));
  });
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

// Every page a test opens is watched: a page error (a wasm panic among them) or a console error
// fails the test after it ends, wherever it happened, unless the test named it with
// `page.expectError(/pattern/)`.
const opened = [];

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  const expected = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.unexpectedErrors = () => errors.filter((e) => !expected.some((re) => re.test(e)));
  page.expectError = (re) => expected.push(re);
  opened.push(page);
  return page;
}

afterEach(async () => {
  const pages = opened.splice(0);
  for (const page of pages) {
    if (!page.isClosed()) await page.close();
  }
  for (const page of pages) assert.deepEqual(page.unexpectedErrors(), [], "errors in the page");
});

async function openAsset(page, name) {
  await page.goto(url + "#/assets");
  await page.getByTestId("asset-search").fill(name);
  await page.getByTestId("asset-row").first().waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId("asset-row").count(), 1, `search for ${name} shows one row`);
  await page.getByTestId("asset-row").locator("a").click();
  await page.getByTestId("asset-title").waitFor({ timeout: TIMEOUT });
}

function assetJson(name, dataDir = dir) {
  return JSON.parse(cairn(["asset", "show", name, "--json"], dataDir));
}

before(async () => {
  mkdirSync(artifacts, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), "cairn-e2e-"));
  dir = join(tmp, "ws");
  cairn(["demo"]);
  ({ child: server, url } = await serve(dir));
  browser = await chromium.launch({
    executablePath: chromiumPath,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  await browser?.close();
  server?.kill("SIGKILL");
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test("the estate loads, is verified in the browser, and shows its badges", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(url);
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  await page.getByTestId("verify-status").filter({ hasText: "events verified" }).waitFor({ timeout: TIMEOUT });
  const count = Number(await page.getByTestId("asset-count").textContent());
  const cli = JSON.parse(cairn(["asset", "list", "--json"]));
  assert.equal(count, cli.length, "the browser's projection counts the same assets as the node");
  assert.equal(await page.getByTestId("drift-count").textContent(), "1", "the demo's one drift");
  assert.match(await page.getByTestId("workspace-name").textContent(), /Plant North/);
  await shot(page, "01-overview");
  await page.close();
});

test("search, open an asset, view a diff and set golden", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await openAsset(page, "PLC-NF-01");
  // The diff of the two newest versions, side by side.
  const diff = page.getByTestId("diff-file").first();
  await diff.waitFor({ timeout: TIMEOUT });
  assert.ok((await diff.locator(".del, .add").count()) > 0, "the diff marks changed lines");
  await shot(page, "02-asset-diff");
  const before = assetJson("PLC-NF-01");
  const rows = page.getByTestId("version-row");
  const target = rows.filter({ has: page.getByTestId("set-golden") }).first();
  const version = await target.getAttribute("data-version");
  assert.ok(version && !before.golden.includes(version));
  await target.getByTestId("set-golden").click();
  // The node signs it; the live stream brings it back; the row shows the golden badge.
  await page.locator(`[data-version="${version}"]`).filter({ hasText: "golden" }).waitFor({ timeout: TIMEOUT });
  assert.deepEqual(assetJson("PLC-NF-01").golden, [version], "the CLI sees the golden set in the UI");
  await shot(page, "03-golden-set");
  await page.close();
});

test("edit a field in the UI; the CLI shows it, signed by the node's device; time travel shows the earlier value", { timeout: 90_000 }, async () => {
  const page = await newPage();
  await openAsset(page, "PLC-NF-02");
  const oldAddress = assetJson("PLC-NF-02").fields.address.value;
  const row = page.getByTestId("field-address");
  await row.getByTestId("field-edit").click();
  await row.getByTestId("field-input").fill("10.77.0.42");
  await row.getByTestId("field-save").click();
  // The confirmation is shown (it is raised after the save's await, outside any component).
  await page.getByTestId("toast").filter({ hasText: "saved and signed by this node" }).waitFor({ timeout: TIMEOUT });
  await row.filter({ hasText: "10.77.0.42" }).first().waitFor({ timeout: TIMEOUT });
  assert.equal(assetJson("PLC-NF-02").fields.address.value, "10.77.0.42");
  const info = await nodeInfo();
  const log = JSON.parse(cairn(["audit", "log", "--json"]));
  const edit = log.filter((r) => r.kind === "asset-edited").at(-1);
  assert.ok(info.device.startsWith(edit.device), `edit signed by ${edit.device}, node is ${info.device}`);
  assert.match(edit.subject, /PLC-NF-02/);
  await shot(page, "04-field-edited");

  // Time travel to just before the edit: the old address; back to now: the new one.
  const t = Date.parse(edit.timestamp) - 1;
  await page.getByTestId("time-travel").evaluate((el, v) => {
    el.value = String(v);
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }, t);
  await page.getByTestId("time-label").filter({ hasText: "as of" }).waitFor({ timeout: TIMEOUT });
  await page.getByTestId("field-address").filter({ hasText: oldAddress }).waitFor({ timeout: TIMEOUT });
  assert.doesNotMatch(await page.getByTestId("field-address").textContent(), /10\.77\.0\.42/);
  await shot(page, "05-time-travel");
  await page.getByTestId("time-now").click();
  await page.getByTestId("field-address").filter({ hasText: "10.77.0.42" }).waitFor({ timeout: TIMEOUT });
  // The audit trail lists the edit with its check.
  await page.goto(url.split("/?")[0] + "/#/audit");
  await page.getByTestId("audit-row").first().waitFor({ timeout: TIMEOUT });
  const first = page.getByTestId("audit-row").first();
  assert.match(await first.textContent(), /asset-edited/);
  await first.locator("[data-check=verified]").waitFor({ timeout: TIMEOUT });
  await shot(page, "06-audit");
  await page.close();
});

test("an audit bundle opens with no node, verified and read-only", { timeout: 60_000 }, async () => {
  const bundle = join(tmp, "audit.cairn");
  cairn(["audit", "export", bundle, "--with-blobs"]);
  const page = await newPage();
  // No token: the page cannot reach the node's API, and needs nothing from it.
  await page.goto(url.split("/?")[0] + "/");
  await page.getByTestId("no-node").waitFor({ timeout: TIMEOUT });
  await page.evaluate(() => { location.hash = "/bundle"; });
  await page.getByTestId("bundle-input").setInputFiles(bundle);
  await page.getByTestId("source").filter({ hasText: "audit bundle" }).waitFor({ timeout: TIMEOUT });
  await page.getByTestId("verify-status").filter({ hasText: "events verified" }).waitFor({ timeout: TIMEOUT });
  const cli = JSON.parse(cairn(["asset", "list", "--json"]));
  assert.equal(Number(await page.getByTestId("asset-count").textContent()), cli.length);
  await shot(page, "07-bundle");
  // Read-only: no write controls, but diffs work from the bundle's own files.
  await page.evaluate(() => { location.hash = "/assets"; });
  await page.getByTestId("asset-search").fill("PLC-NF-01");
  await page.getByTestId("asset-row").locator("a").click();
  await page.getByTestId("diff-file").first().waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId("set-golden").count(), 0);
  assert.equal(await page.getByTestId("field-edit").count(), 0);
  // A damaged bundle is refused with a reason, and the opened one stays.
  await page.evaluate(() => { location.hash = "/bundle"; });
  await page.getByTestId("bundle-input").setInputFiles({ name: "bad.cairn", mimeType: "application/octet-stream", buffer: Buffer.from("CAIRNAUD\x01\x01\xff") });
  await page.getByTestId("bundle-status").filter({ hasText: "not a readable" }).waitFor({ timeout: TIMEOUT });
  await page.close();
});

test("a change made on a second node appears live", { timeout: 120_000 }, async () => {
  const page = await newPage();
  await openAsset(page, "PLC-NF-03");
  const ticket = cairn(["device", "invite", "--role", "engineer", "--expires", "1h"]).trim();
  const bob = join(tmp, "bob");
  cairn(["join", ticket, "--device-name", "bob@field-laptop", "--bind", "127.0.0.1:0"], bob);
  cairn(["asset", "set", "PLC-NF-03", "location=Bay 12 (moved by bob)"], bob);
  assert.match(cairn(["device", "list", "--json"]), /bob@field-laptop/);
  const node = await serveAddr();
  cairn(["sync", node, "--bind", "127.0.0.1:0"], bob);
  // No reload: the node's live stream brings bob's signed edit into this page.
  await page.getByTestId("field-location").filter({ hasText: "Bay 12 (moved by bob)" }).waitFor({ timeout: TIMEOUT });
  await page.evaluate(() => { location.hash = "/devices"; });
  await page.getByTestId("device-row").filter({ hasText: "bob@field-laptop" }).waitFor({ timeout: TIMEOUT });
  await shot(page, "08-live-from-second-node");
  await page.close();
});

async function nodeInfo() {
  const r = await fetch(url.split("/?")[0] + "/api/info", { headers: { Authorization: `Bearer ${url.split("token=")[1]}` } });
  assert.equal(r.status, 200);
  return r.json();
}

async function serveAddr() {
  const info = await nodeInfo();
  return `${info.device}@${info.sync_endpoint[0]}`;
}

test("upload a version and a firmware image through the UI; the layout map shows", { timeout: 120_000 }, async () => {
  const page = await newPage();
  await openAsset(page, "PLC-SP-01");
  const before = JSON.parse(cairn(["log", "PLC-SP-01", "--json"])).length;
  await page.getByTestId("upload-files").setInputFiles([
    { name: "Controller.L5X", mimeType: "text/xml", buffer: Buffer.from("<RSLogix5000Content SoftwareRevision=\"33.01\"><Controller Name=\"SP01\"/></RSLogix5000Content>\n") },
  ]);
  await page.getByTestId("upload-message").fill("uploaded from the browser");
  await page.getByTestId("upload-commit").click();
  await page.getByTestId("version-row").filter({ hasText: "uploaded from the browser" }).waitFor({ timeout: TIMEOUT });
  const log = JSON.parse(cairn(["log", "PLC-SP-01", "--json"]));
  assert.equal(log.length, before + 1);
  // A firmware image: 64 KiB of zeros around a gzip stream, which the scan finds.
  const gz = (await import("node:zlib")).gzipSync(Buffer.alloc(200_000, "cairn firmware "));
  const img = Buffer.concat([Buffer.alloc(0x4000), gz, Buffer.alloc(0x4000)]);
  await page.getByTestId("firmware-file").setInputFiles({ name: "sp01-fw.bin", mimeType: "application/octet-stream", buffer: img });
  await page.getByTestId("firmware-version").fill("V2.1.0");
  await page.getByTestId("firmware-add").click();
  const map = page.getByTestId("firmware-map").first();
  await map.waitFor({ timeout: 60_000 });
  assert.ok((await map.locator("div").count()) >= 2, "the map shows the gzip part and the bytes around it");
  assert.match(await page.getByTestId("firmware").first().textContent(), /gzip/);
  const fw = JSON.parse(cairn(["firmware", "list", "PLC-SP-01", "--json"]));
  assert.equal(fw.length, 1);
  assert.equal(fw[0].version, "V2.1.0");
  await shot(page, "09-uploads-and-firmware-map");
  await page.close();
});

test("a field conflict shows both values and is resolved in the UI", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await openAsset(page, "SW-NF-04");
  const conflict = page.getByTestId("field-address").getByTestId("conflict");
  await conflict.waitFor({ timeout: TIMEOUT });
  const values = assetJson("SW-NF-04").fields.address.conflict;
  assert.equal(values.length, 2, "the demo's concurrent address edits");
  for (const v of values) assert.match(await conflict.textContent(), new RegExp(v.replace(/\./g, "\\.")));
  await shot(page, "10-conflict");
  await conflict.getByTestId("resolve").last().click();
  await page.getByTestId("field-address").getByTestId("conflict").waitFor({ state: "detached", timeout: TIMEOUT });
  const after = assetJson("SW-NF-04").fields.address;
  assert.ok(after.conflict.length <= 1, "resolved on the node");
  assert.ok(values.includes(after.value));
  await page.close();
});

// The log loads in pages; the first page makes the estate usable. A search typed before the
// last page arrived was lost when loading finished (the page was built anew, the filter
// emptied, and the next click opened the wrong asset).
test("a search typed while the log is still loading is kept when it finishes", { timeout: 60_000 }, async () => {
  const page = await newPage();
  // Hold every page after the first, so the search is surely typed while the log loads.
  let release;
  const held = new Promise((r) => (release = r));
  await page.route(/\/api\/events\?after=/, async (route) => {
    await held;
    await route.continue();
  });
  await page.goto(url + "#/assets");
  await page.getByTestId("asset-row").first().waitFor({ timeout: TIMEOUT });
  await page.getByTestId("asset-search").fill("SW-NF-04");
  await page.getByTestId("asset-row").filter({ hasText: "SW-NF-04" }).waitFor({ timeout: TIMEOUT });
  release();
  await page.getByTestId("verify-status").filter({ hasText: "events verified" }).waitFor({ timeout: TIMEOUT });
  // Loading is done (verification starts after the last page): the search still holds.
  await page.waitForTimeout(500);
  assert.equal(await page.getByTestId("asset-search").inputValue(), "SW-NF-04");
  assert.equal(await page.getByTestId("asset-row").count(), 1, "the list is still filtered");
  await page.close();
});

// The Sync page polls the node every 5 s. Leaving it while a poll is scheduled must not let the
// poll touch the page it left (it panicked, and every later click was lost).
test("leaving the Sync page leaves no poll behind that breaks the app", { timeout: 60_000 }, async () => {
  const page = await newPage();
  await page.goto(url);
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  await page.keyboard.press("5");
  await page.getByTestId("live").waitFor({ timeout: TIMEOUT });
  await page.keyboard.press("1");
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  await page.waitForTimeout(6_500); // past the scheduled poll
  // The app still answers.
  await page.keyboard.press("2");
  await page.getByTestId("asset-row").first().waitFor({ timeout: TIMEOUT });
  await page.close();
});

// After a panic the wasm app answers nothing more; the page must say so instead of looking
// alive. The self-test route panics on purpose.
test("a panic shows a banner asking to reload, not a page that silently ignores input", { timeout: 60_000 }, async () => {
  const page = await newPage();
  // The panic hook logs the panic to the console, then wasm aborts with `unreachable`.
  page.expectError(/self-test of the crash banner/);
  page.expectError(/unreachable/);
  await page.goto(url);
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  // Without the tab's self-test flag the route is no page at all.
  await page.evaluate(() => { location.hash = "/self-test/panic"; });
  await page.getByText("No such page.").waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId("crash-banner").count(), 0);
  await page.evaluate(() => {
    sessionStorage.setItem("cairn-self-test", "1");
    location.hash = "/";
  });
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  await page.evaluate(() => { location.hash = "/self-test/panic"; });
  const banner = page.getByTestId("crash-banner");
  await banner.waitFor({ timeout: TIMEOUT });
  assert.match(await banner.textContent(), /internal error.*self-test of the crash banner/s);
  await shot(page, "12-crash-banner");
  // The panicked page still shows the old DOM: wait for the reload itself, then the new app.
  await Promise.all([page.waitForEvent("load", { timeout: TIMEOUT }), banner.getByRole("button", { name: "Reload" }).click()]);
  await page.getByTestId("crash-banner").waitFor({ state: "detached", timeout: TIMEOUT });
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  assert.equal(await page.getByTestId("crash-banner").count(), 0, "the reload brings the app back");
});

// A long random walk over every page and the main actions, with random waits, while a second
// node writes live changes: no page error at any step (checked after every step), every
// action it takes has its effect, and after it the estate shown equals the node's. CAIRN_WALK_SEED replays a walk; CAIRN_WALK_STEPS sets
// its length. Waits are 0-6 s, mostly short, so 300 steps take a few minutes.
const WALK_STEPS = Number(process.env.CAIRN_WALK_STEPS ?? 300);

function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

test("a random walk through the UI while a second node writes stays free of page errors", { timeout: 900_000 }, async (t) => {
  const seed = Number(process.env.CAIRN_WALK_SEED ?? (Date.now() % 2 ** 31));
  // Printed first, so a walk that fails in any way (a timeout included) can be replayed.
  console.error(`random walk: CAIRN_WALK_SEED=${seed} CAIRN_WALK_STEPS=${WALK_STEPS}`);
  // Each step draws the same count of numbers whatever the page shows, so a seed replays the
  // same choices (the page's timing may still differ between runs).
  const next = prng(seed);
  const DRAWS = 8;
  let draws = [];
  const rnd = () => draws.shift() ?? 0.5;
  const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
  const wait = () => (rnd() < 0.1 ? 500 + rnd() * 5500 : rnd() * 400);
  const names = JSON.parse(cairn(["asset", "list", "--json"])).map((a) => a.fields.name.value);
  assert.ok(names.length > 0 && names.every((n) => typeof n === "string"), "asset names for the walk");
  const bundle = join(tmp, "walk.cairn");
  cairn(["audit", "export", bundle]);

  // A second node that edits an asset and syncs to the served node, in the background.
  const carol = join(tmp, "carol");
  const ticket = cairn(["device", "invite", "--role", "engineer", "--expires", "1h"]).trim();
  cairn(["join", ticket, "--device-name", "carol@walk", "--bind", "127.0.0.1:0"], carol);
  const node = await serveAddr();
  const run = (args) => new Promise((ok) => {
    const c = spawn(bin, ["--data-dir", carol, ...args], { env: { ...process.env, CAIRN_PASSPHRASE: PASS }, stdio: "ignore" });
    c.on("exit", (code) => ok(code));
  });
  let writing = true;
  let writes = 0;
  let synced = 0;
  const writer = (async () => {
    while (writing) {
      if ((await run(["asset", "set", "PLC-NF-01", `location=carol ${writes}`])) === 0) writes++;
      if ((await run(["sync", node, "--bind", "127.0.0.1:0"])) === 0) synced++;
      await new Promise((r) => setTimeout(r, 1500));
    }
  })();
  // Edits the walk saves, each confirmed by the page; every one must be an event the node
  // signed, so the count of its asset edits must grow by exactly as many.
  const nodeDevice = (await nodeInfo()).device;
  const nodeEdits = () => JSON.parse(cairn(["audit", "log", "--json"]))
    .filter((r) => r.kind === "asset-edited" && nodeDevice.startsWith(r.device)).length;
  const editsBefore = nodeEdits();
  let saves = 0;
  const done = {};

  const page = await newPage();
  const log = [];
  const on = async (testid) => (await page.getByTestId(testid).count()) > 0;
  // Page keys act only when no input has the focus (typing a digit into a search box is not
  // navigation), so the walk takes the focus away first.
  const press = async (key) => {
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press(key);
  };
  // A page key must take the page there: a key that does nothing fails the walk.
  const routes = { 1: "/", 2: "/assets", 3: "/audit", 4: "/devices", 5: "/sync", 6: "/bundle" };
  const go = async (key) => {
    await press(key);
    const route = routes[key];
    try {
      await page.waitForFunction((r) => (location.hash.replace(/^#/, "") || "/") === r, route, { timeout: 5000 });
    } catch {
      assert.fail(`key ${key} did not open ${route} (at ${await page.evaluate(() => location.hash)}); seed ${seed}`);
    }
  };
  const actions = {
    key: async () => go(pick(["1", "2", "3", "4", "5", "6"])),
    click_nav: async () => page.locator("nav a, header a").filter({ hasText: pick(["Overview", "Assets", "Audit trail", "Devices", "Sync", "Open bundle"]) }).first().click({ timeout: 2000 }),
    open_asset: async () => {
      await go("2");
      await page.getByTestId("asset-search").fill(pick(names), { timeout: 5000 });
      const row = page.getByTestId("asset-row").locator("a").first();
      if ((await row.count()) === 0) return false;
      await row.click({ timeout: 2000 });
    },
    // Search and filter act on the asset list: from any other page they go there first (by
    // its key), so that they happen as often as they are drawn.
    search: async () => {
      if (!(await on("asset-search"))) await go("2");
      await page.getByTestId("asset-search").fill(pick(names).slice(0, 1 + Math.floor(rnd() * 6)), { timeout: 2000 });
    },
    filter: async () => {
      const f = pick(["filter-site", "filter-kind", "filter-flag"]);
      if (!(await on("asset-search"))) await go("2");
      if (!(await on(f))) return false;
      const opts = await page.getByTestId(f).locator("option").evaluateAll((os) => os.map((o) => o.value));
      if (opts.length > 0) await page.getByTestId(f).selectOption(pick(opts), { timeout: 2000 });
    },
    time_travel: async () => {
      if (!(await on("time-travel"))) return false;
      if (rnd() < 0.3 && (await on("time-now"))) return page.getByTestId("time-now").click({ timeout: 2000 });
      await page.getByTestId("time-travel").evaluate((el, f) => {
        el.value = String(Math.round(Number(el.min) + f * (Number(el.max) - Number(el.min))));
        el.dispatchEvent(new Event("change", { bubbles: true }));
      }, rnd(), { timeout: 2000 });
    },
    pick_diff: async () => {
      const radios = page.locator("input[name=diff-a], input[name=diff-b]");
      const n = await radios.count();
      if (n === 0) return false;
      await radios.nth(Math.floor(rnd() * n)).check({ timeout: 2000 });
    },
    edit_field: async () => {
      // Any field but the name (the walk and the second node find assets by it) and the
      // location (the second node's, checked at the end).
      const rows = page.locator("[data-testid^=field-]:not([data-testid=field-name]):not([data-testid=field-location])").filter({ has: page.getByTestId("field-edit") });
      const m = await rows.count();
      if (m === 0) return false;
      const row = rows.nth(Math.floor(rnd() * m));
      await row.getByTestId("field-edit").click({ timeout: 2000 });
      await row.getByTestId("field-input").fill(`walk ${seed} ${log.length}`, { timeout: 2000 });
      // The page confirms each save (or says why not); an edit that silently vanishes fails.
      // An earlier message goes first, so the one read below is this save's.
      await page.getByTestId("toast").waitFor({ state: "detached", timeout: TIMEOUT });
      await row.getByTestId("field-save").click({ timeout: 2000 });
      const toast = page.getByTestId("toast");
      try {
        await toast.first().waitFor({ timeout: TIMEOUT });
      } catch {
        assert.fail(`no confirmation for the save at step ${log.length - 1}; seed ${seed}`);
      }
      const said = await toast.first().textContent();
      assert.match(said, /saved and signed by this node/, `save at step ${log.length}; seed ${seed}`);
      saves++;
    },
    open_bundle: async () => {
      await go("6");
      await page.getByTestId("bundle-input").setInputFiles(bundle, { timeout: 5000 });
    },
    back_to_node: async () => page.goto(url),
  };
  const kinds = Object.keys(actions);
  await page.goto(url);
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  try {
    for (let i = 0; i < WALK_STEPS; i++) {
      draws = Array.from({ length: DRAWS }, next);
      const what = pick(kinds);
      log.push(what);
      try {
        if ((await actions[what]()) !== false) done[what] = (done[what] ?? 0) + 1;
      } catch (e) {
        // An element that went away between looking and acting (a re-render, a page change) is
        // part of a walk; a page error is caught by the check after the step.
        if (e instanceof assert.AssertionError) throw e;
        if (!/Timeout|detached|not attached|not visible|outside of the viewport|Element is not/.test(String(e))) throw e;
      }
      await page.waitForTimeout(wait());
      assert.deepEqual(page.unexpectedErrors(), [], `page error at step ${i} (${what}); seed ${seed}; steps ${log.join(" ")}`);
    }
  } catch (e) {
    console.error(`random walk failed at step ${log.length - 1}; CAIRN_WALK_SEED=${seed}; steps: ${log.join(" ")}`);
    throw e;
  } finally {
    writing = false;
    await writer;
  }
  t.diagnostic(`seed ${seed}: ${WALK_STEPS} steps, ${writes} live writes from the second node (${synced} syncs), ${saves} saves; actions done: ${JSON.stringify(done)}`);
  assert.ok(writes > 0 && synced > 0, `the second node wrote ${writes} and synced ${synced} times; seed ${seed}`);
  // The walk did walk: it navigated, opened assets and searched (not only timed out).
  for (const k of ["key", "click_nav", "open_asset", "search"]) {
    assert.ok((done[k] ?? 0) > 0, `no ${k} action took effect; seed ${seed}; ${JSON.stringify(done)}`);
  }
  assert.equal(nodeEdits() - editsBefore, saves, `every confirmed save is one event the node signed; seed ${seed}`);
  // The estate this walked page shows (live from the node, at the present) equals the CLI's.
  assert.equal(await run(["sync", node, "--bind", "127.0.0.1:0"]), 0, `the final sync failed; seed ${seed}`);
  assert.equal(assetJson("PLC-NF-01").fields.location.value, `carol ${writes - 1}`, `the node has the second node's last write; seed ${seed}`);
  if (/bundle/.test(await page.getByTestId("source").textContent())) await page.goto(url);
  if (await on("time-now")) await page.getByTestId("time-now").click();
  // Through the overview, so the assets page starts afresh (no search or filter left over).
  await page.evaluate(() => { location.hash = "/"; });
  await page.getByTestId("overview-stats").waitFor({ timeout: TIMEOUT });
  await page.evaluate(() => { location.hash = "/assets"; });
  const cli = JSON.parse(cairn(["asset", "list", "--json"]));
  await page.getByTestId("asset-shown").filter({ hasText: ` of ${cli.length} assets` }).waitFor({ timeout: TIMEOUT });
  const want = assetJson("PLC-NF-01").fields.location.value;
  const exactly = new RegExp(want.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?![0-9])");
  await page.getByTestId("asset-search").fill("PLC-NF-01");
  await page.getByTestId("asset-row").locator("a").first().click({ timeout: TIMEOUT });
  await page.getByTestId("field-location").filter({ hasText: exactly }).waitFor({ timeout: TIMEOUT });
  // Then every asset, field by field (tags too; a conflicted field shows all its values), as
  // each asset's page shows it against what the CLI lists.
  const expected = (a) => {
    const one = (prefix, fields) => Object.entries(fields).map(([k, f]) => [prefix + k, f.conflict.length > 1 ? [...f.conflict].sort() : f.value]);
    return Object.fromEntries([...one("", a.fields), ...one("tags.", a.tags)]);
  };
  const canon = (o) => JSON.stringify(Object.entries(o).sort(([x], [y]) => (x < y ? -1 : 1)));
  for (const a of cli) {
    await page.evaluate((id) => { location.hash = `/asset/${id}`; }, a.id);
    await page.getByTestId("asset-title").filter({ hasText: a.fields.name.value }).waitFor({ timeout: TIMEOUT });
    const want = expected(a);
    let shown;
    for (const until = Date.now() + TIMEOUT; ;) {
      shown = await page.getByTestId("fields").evaluate((table) => Object.fromEntries([...table.querySelectorAll("tr")].map((tr) => {
        const conflict = tr.querySelector("[data-testid=conflict]");
        const value = conflict ? [...conflict.querySelectorAll("code")].map((c) => c.textContent).sort() : tr.querySelector("td span")?.textContent ?? "";
        return [tr.querySelector("th").textContent, value];
      })));
      if (canon(shown) === canon(want) || Date.now() > until) break;
      await page.waitForTimeout(200);
    }
    assert.deepEqual(shown, want, `asset ${a.fields.name.value} as the walked page shows it; seed ${seed}`);
  }
  assert.deepEqual(page.unexpectedErrors(), [], `seed ${seed}`);
});

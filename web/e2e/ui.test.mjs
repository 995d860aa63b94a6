// Browser tests of Cairn's web UI: real headless Chromium (Debian's), driven by playwright-core,
// against the demo workspace served by the real `cairn serve` on loopback.
//
// Run by `cargo xtask test` (which builds the UI and the binary first), or by hand:
//   CAIRN_BIN=target/debug/cairn CAIRN_WEB_DIR=target/web node --test web/e2e/
// Screenshots go to target/e2e-artifacts/.

import { test, before, after } from "node:test";
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

async function newPage() {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.errors = errors;
  return page;
}

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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
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
  assert.deepEqual(page.errors, []);
  await page.close();
});

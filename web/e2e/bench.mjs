// UI speed: navigation to an interactive asset list in headless Chromium, for the demo estate
// (the baseline) and a synthetic estate of 10^4 assets and 10^5 events, in one run.
// Run by `cargo xtask bench ui`, which builds everything and passes:
//   CAIRN_BIN, CAIRN_WEB_DIR, DEMO_DIR (passphrase "demo"), BIG_DIR (passphrase "pw").
// "Interactive": the list's rows are rendered and its count shows every asset, so search,
// filters and scrolling answer. Verification then finishes in the background; that time is
// reported too.

import { spawn } from "node:child_process";
import { chromium } from "playwright-core";

const RUNS = Number(process.env.RUNS ?? 5);

function serve(dir, pass) {
  return new Promise((ok, fail) => {
    const child = spawn(process.env.CAIRN_BIN, ["--data-dir", dir, "serve", "--port", "0", "--sync-bind", "127.0.0.1:0",
      "--no-mdns", "--interval", "1h", "--web-dir", process.env.CAIRN_WEB_DIR], {
      env: { ...process.env, CAIRN_PASSPHRASE: pass }, stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]+/);
      if (m) ok({ child, url: m[0] });
    });
    child.on("exit", (c) => fail(new Error(`serve exited ${c}: ${out}`)));
  });
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };

async function measure(browser, dir, pass, assets, probe) {
  const { child, url } = await serve(dir, pass);
  const interactive = [], loaded = [], verified = [];
  try {
    for (let i = 0; i < RUNS + 1; i++) {
      const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
      const t0 = Date.now();
      await page.goto(url + "#/assets");
      await page.getByTestId("asset-shown").filter({ hasText: `${assets} of ${assets} assets` }).waitFor({ timeout: 120_000 });
      await page.getByTestId("asset-row").first().waitFor({ timeout: 120_000 });
      const ti = Date.now() - t0;
      // The whole log fetched and projected (the header then switches to verification).
      await page.getByTestId("verify-status").waitFor({ timeout: 600_000 });
      const tl = Date.now() - t0;
      await page.getByTestId("verify-status").filter({ hasText: "events verified" }).waitFor({ timeout: 600_000 });
      const tv = Date.now() - t0;
      // Search answers at this scale (the list is usable, not just painted).
      const ts = Date.now();
      await page.getByTestId("asset-search").fill(probe);
      await page.getByTestId("asset-shown").filter({ hasText: `1 of ${assets} assets` }).waitFor({ timeout: 60_000 });
      const search = Date.now() - ts;
      await page.close();
      if (i > 0) { interactive.push(ti); loaded.push(tl); verified.push(tv); } // the first run warms the caches
      console.error(`  run ${i}: interactive ${ti} ms, projected ${tl} ms, verified ${tv} ms, search ${search} ms`);
    }
  } finally {
    child.kill("SIGKILL");
  }
  return { interactive: median(interactive), loaded: median(loaded), verified: median(verified) };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
try {
  const demoAssets = Number(process.env.DEMO_ASSETS);
  const bigAssets = Number(process.env.BIG_ASSETS);
  console.error(`demo estate (${demoAssets} assets):`);
  const small = await measure(browser, process.env.DEMO_DIR, "demo", demoAssets, "PLC-NF-01");
  console.error(`synthetic estate (${bigAssets} assets, ${process.env.BIG_EVENTS} events):`);
  const big = await measure(browser, process.env.BIG_DIR, "pw", bigAssets, "ASSET-00042");
  console.log(`| UI: navigation to an interactive asset list (all ${bigAssets} assets listed, searchable), ${process.env.BIG_EVENTS} events (median of ${RUNS}) | ${big.interactive} ms | demo estate (${demoAssets} assets, all of its log): ${small.interactive} ms | ${(big.interactive / small.interactive).toFixed(1)}x |`);
  console.log(`| UI: whole log fetched and projected in the browser, ${process.env.BIG_EVENTS} events | ${big.loaded} ms (${Math.round(Number(process.env.BIG_EVENTS) / big.loaded * 1000)} events/s) | demo: ${small.loaded} ms | ${(big.loaded / small.loaded).toFixed(1)}x |`);
  console.log(`| UI: every signature verified in the browser (background, batched), ${process.env.BIG_EVENTS} events | ${big.verified} ms from navigation | demo: ${small.verified} ms | ${(big.verified / small.verified).toFixed(1)}x |`);
} finally {
  await browser.close();
}

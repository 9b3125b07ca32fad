// Drives the Firefox build (dist/firefox) in Debian's Firefox ESR, headless,
// through WebDriver BiDi (puppeteer-core): the add-on installed as a
// temporary one, a local site on 127.0.0.1, the menu item's handler called
// for each check (native menus cannot be clicked headless), then optionally
// a page scan, reports filed by real clicks on the card, and the reports'
// export. Prints one JSON object.
//
//   node test/firefox.mjs '{"extensionDir", "firefox", "siteDir", "modelDir"?, "prefs"?, "pauseMs"?, "server"?,
//                           "checks": [{"src", "settings"?}], "afterIdleMs"?,
//                           "scan"?: {"page", "settings"?, "reports"?: [{"src", "label": "real" | "fake"}]}}'
//
// A check's settings are stored first ("{origin}" in them stands for the site's URL). With "server" (a
// JSON body), POST /v1/detect answers it, standing in for the detection service.
// Output: {"firefox": its version, "origin", "results": [{verdict, roundTripMs, attribute, error, provenance, text,
// uploads}], uploads being the byte sizes posted to /v1/detect for that check,
// "afterIdle": the last check again after afterIdleMs without events (with the pref
// extensions.background.idle.timeout below it, Firefox has unloaded the event page: a cold start),
// "scan": {first, firstMs, final, seconds, verdicts, reports, exported: {count, zip (base64)}}}.
// pauseMs: before each check, as a person clicks (the tab is captured at most twice a second).
// BiDi opens no moz-extension:// page and does not reach the event page: a
// test-only content script relays to a test-only script beside the event page
// (firefox-bridge/), added to a copy of the build.
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import puppeteer from 'puppeteer-core';
import { readBody, sendFile, serveSite } from './site.mjs';

const options = JSON.parse(process.argv[2]);
const work = await mkdtemp(join(tmpdir(), 'aiface-firefox-'));
const VIEWPORT = { width: 1280, height: 720 };
let uploads = [];

// The build, with the bridge, the test model if any, and the site's origin
// granted (what the user allows when asked, on a real menu click).
async function prepareExtension() {
  const dir = join(work, 'extension');
  await cp(options.extensionDir, dir, { recursive: true });
  if (options.modelDir) {
    await rm(join(dir, 'model'), { recursive: true, force: true });
    await cp(options.modelDir, join(dir, 'model'), { recursive: true });
  }
  await mkdir(join(dir, 'test'));
  await esbuild.build({ entryPoints: [new URL('firefox-bridge/background.js', import.meta.url).pathname], bundle: true,
    format: 'esm', outfile: join(dir, 'test', 'bridge-background.js'), logLevel: 'warning' });
  await cp(new URL('firefox-bridge/content.js', import.meta.url).pathname, join(dir, 'test', 'bridge-content.js'));
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  manifest.host_permissions = ['<all_urls>'];
  manifest.background.scripts.push('test/bridge-background.js');
  manifest.content_scripts = [{ matches: ['http://127.0.0.1/*'], js: ['test/bridge-content.js'], run_at: 'document_start' }];
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

// op in the event page (firefox-bridge/background.js), asked from the page.
function ask(page, op, ...args) {
  return page.evaluate((request) => new Promise((resolve, reject) => {
    const listen = (event) => {
      if (event.source === window && event.data?.aifaceTestReply === request.id) {
        window.removeEventListener('message', listen);
        if (event.data.error !== undefined) {
          reject(new Error(event.data.error));
        } else {
          resolve(event.data.result);
        }
      }
    };
    window.addEventListener('message', listen);
    window.postMessage({ aifaceTest: request }, '*');
  }), { id: `${Date.now()}-${Math.random()}`, op, args });
}

const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(read, done, what) {
  let value;
  for (let attempt = 0; attempt < 1200; attempt += 1) {
    value = await read();
    if (done(value)) {
      return value;
    }
    await pause(50);
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
}

const nextFrames = (page) => page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
const clickAt = (page, rect) => page.mouse.click(rect.left + rect.width / 2, rect.top + rect.height / 2);

async function check(page, origin, index, { src, settings }) {
  await page.goto(`${origin}/page/${index}`);
  if (settings) {
    await ask(page, 'settings', JSON.parse(JSON.stringify(settings).replaceAll('{origin}', origin)));
  }
  const srcUrl = src.startsWith('data:') ? src : `${origin}/${src}`;
  uploads = [];
  await pause(options.pauseMs ?? 0);
  const started = Date.now();
  const verdict = await ask(page, 'check', srcUrl, page.url());
  const roundTripMs = Date.now() - started;
  // Read in the isolated world, as the Chromium drivers read it: the page's DOM carries nothing of the verdict.
  const [drawn] = await until(() => ask(page, 'read'), (verdicts) => verdicts.length > 0, 'the verdict');
  return { verdict, roundTripMs, attribute: drawn.attribute, error: drawn.error, provenance: drawn.provenance,
    text: drawn.text, uploads };
}

// "This verdict is wrong" on src's card, with label, by real clicks: its status.
async function fileReport(page, origin, { src, label }) {
  const srcUrl = `${origin}/${src}`;
  const read = async () => (await ask(page, 'read')).find((v) => v.srcUrl === srcUrl);
  await page.evaluate((url) => [...document.images].find((img) => img.currentSrc === url)
    .scrollIntoView({ block: 'center' }), srcUrl);
  await nextFrames(page);
  const press = async (name) => {
    const at = (await until(read, (v) => v?.report?.[name], `the card's ${name}`)).report[name];
    const below = at.top + at.height - VIEWPORT.height + 8;
    if (below > 0 || at.top < 0) {
      await page.evaluate((by) => scrollBy(0, by), below > 0 ? below : at.top - 8);
    }
    await clickAt(page, (await read()).report[name]);
  };
  await clickAt(page, (await read()).badge);
  await press('wrong');
  await press(label);
  const done = await until(read, (v) => v.report?.status && !v.report.status.startsWith('Recording'), 'the report');
  await clickAt(page, (await read()).badge); // closes the card
  return done.report.status;
}

async function scan(page, origin, { page: path, settings, reports = [] }) {
  if (settings) {
    await page.goto(`${origin}/page/none`);
    await ask(page, 'settings', settings);
  }
  await page.goto(`${origin}/${path}`);
  await page.evaluate(() => Promise.all([...document.images].map((img) => img.decode().catch(() => null))));
  const started = Date.now();
  const first = await ask(page, 'scan', page.url());
  const firstMs = Date.now() - started;
  // Down a window at a time, each time until what came into view is checked.
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  for (let y = VIEWPORT.height * 0.9; y < height + VIEWPORT.height * 0.9; y += VIEWPORT.height * 0.9) {
    await page.evaluate((top) => scrollTo(0, top), y);
    await nextFrames(page);
    await until(() => ask(page, 'scanState'), (state) => state.waiting === 0, 'the scan to check what scrolled into view');
  }
  const final = await ask(page, 'scanState');
  const seconds = (Date.now() - started) / 1000;
  const verdicts = await ask(page, 'read');
  const filed = [];
  for (const report of reports) {
    filed.push(await fileReport(page, origin, report));
  }
  const exported = reports.length > 0 ? await ask(page, 'exportReports') : null;
  return { first, firstMs, final, seconds, verdicts, reports: filed, exported };
}

const server = await serveSite((request, response, url, path) => {
  if (request.method === 'POST' && path === '/v1/detect' && options.server) {
    return readBody(request).then((body) => {
      uploads.push(body.length);
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(options.server));
    });
  }
  const numbered = path.match(/^\/page\/(\d+|none)$/);
  if (numbered) {
    // The same URL the menu reports as srcUrl, so that the verdict finds its image.
    const src = numbered[1] === 'none' ? null : options.checks[Number(numbered[1])].src;
    const body = src === null ? '' : `<img src="${(src.startsWith('data:') ? src : `/${src}`).replaceAll('"', '&quot;')}" width="200">`;
    response.writeHead(200, { 'Content-Type': 'text/html' }).end(`<!doctype html>${body}`);
    return null;
  }
  return sendFile(response, options.siteDir, path);
});
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await puppeteer.launch({
  browser: 'firefox', executablePath: options.firefox, headless: true,
  userDataDir: join(work, 'profile'), extraPrefsFirefox: options.prefs ?? {},
});
try {
  await browser.installExtension(await prepareExtension());
  const page = (await browser.pages())[0] ?? (await browser.newPage());
  await page.setViewport(VIEWPORT);
  const results = [];
  for (const [index, item] of (options.checks ?? []).entries()) {
    results.push(await check(page, origin, index, item));
  }
  let afterIdle = null;
  if (options.afterIdleMs) {
    await pause(options.afterIdleMs);
    afterIdle = await check(page, origin, options.checks.length - 1, options.checks.at(-1));
  }
  const scanned = options.scan ? await scan(page, origin, options.scan) : null;
  process.stdout.write(`${JSON.stringify({ firefox: await browser.version(), origin, results, afterIdle, scan: scanned })}\n`);
} finally {
  await browser.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}

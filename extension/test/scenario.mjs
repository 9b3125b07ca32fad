// Drives the extension through a scenario on pages of a local site, as a
// user would: check images, click badges and buttons, read what is drawn,
// take screenshots.
//
//   node test/scenario.mjs '{"extensionDir", "chromium", "siteDir", "modelDir"?, "viewport"?, "shotsDir"?,
//                            "steps": [...]}'
//
// Steps, run in order on one tab (each gives one entry of "steps" in the output):
//   {"goto": "page.html"}           open siteDir/page.html (the site sets a cookie on every page;
//                                    a fetch() of NAME, not the page's own load, gets fetched-NAME when it exists)
//   {"settings": {...}}              store settings ("{origin}" stands for the site's URL)
//   {"service": {...} | null}        what POST /v1/detect answers from now on (null: 404)
//   {"check": "image.png"}           what the menu item does for that image: the verdict
//   {"click": "badge" | "why", "src": "image.png"}  a real click on that verdict's badge or Why?
//   {"read": true}                   the verdicts drawn, and the page's text lines and images
//   {"screenshot": "name.png"}       the full page, into shotsDir
//   {"evaluate": "expression"}       its value in the page's own scripts (what a page can see)
//   {"toolbar": true}                the toolbar icon's badge text and title in this tab
// Also prints "requests": for each image the site served, its path and the
// Cookie, Referer and Sec-Fetch-* headers; "uploads": each POST /v1/detect
// body, base64, with its query string.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { activeTabId, checkImage, clickAt, launchBrowser, readVerdicts } from './browser.mjs';
import { contentType, readBody, sendFile, serveSite } from './site.mjs';

const options = JSON.parse(process.argv[2]);
const work = await mkdtemp(join(tmpdir(), 'aiface-scenario-'));
const requests = [];
const uploads = [];
let service = null;

async function handle(request, response, url, path) {
  if (request.method === 'POST' && path === '/v1/detect') {
    const body = await readBody(request);
    uploads.push({ query: url.search, contentType: request.headers['content-type'],
      cookie: request.headers.cookie ?? null, body: body.toString('base64') });
    if (service === null) {
      response.writeHead(404, { 'Content-Type': 'application/json' }).end('{"error": {"code": "nope", "message": "no"}}');
    } else {
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(service));
    }
    return;
  }
  const type = contentType(path);
  if (type.startsWith('image/')) {
    const pick = (...names) => Object.fromEntries(names.map((name) => [name, request.headers[name] ?? null]));
    requests.push({ path, ...pick('cookie', 'referer', 'sec-fetch-site', 'sec-fetch-mode', 'sec-fetch-dest') });
  }
  // A site that tells the extension's request from the page's can answer it with another file.
  const alternative = request.headers['sec-fetch-dest'] === 'empty' ? `fetched-${basename(path)}` : null;
  const headers = type === 'text/html' ? { 'Set-Cookie': 'session=secret-session-id; Path=/' } : {};
  await sendFile(response, options.siteDir, path, { alternative, headers });
}

// The page's text lines (one rectangle per line box) and images, in
// viewport coordinates, as the page's own scripts see them.
function pageLayout(page) {
  return page.evaluate(() => {
    const plain = ({ left, top, width, height }) => ({ left, top, width, height });
    const text = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.data.trim()) {
        range.selectNodeContents(node);
        text.push(...[...range.getClientRects()].filter((r) => r.width > 0 && r.height > 0).map(plain));
      }
    }
    const images = [...document.images].map((img) => ({ src: img.currentSrc, rect: plain(img.getBoundingClientRect()) }));
    return { text, images, scroll: { x: scrollX, y: scrollY } };
  });
}

const server = await serveSite(handle);
const origin = `http://127.0.0.1:${server.address().port}`;
const { context, worker } = await launchBrowser({ work, extensionDir: options.extensionDir, modelDir: options.modelDir,
  chromium: options.chromium, viewport: options.viewport });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const output = [];
  let tabId = null;
  const verdictOf = async (src) => (await readVerdicts(worker, tabId)).find((v) => v.srcUrl === `${origin}/${src}`);
  for (const step of options.steps) {
    if (step.goto) {
      await page.goto(`${origin}/${step.goto}`);
      await page.evaluate(() => Promise.all([...document.images].map((img) => img.decode().catch(() => null))));
      tabId = await activeTabId(worker);
      output.push({ url: page.url() });
    } else if (step.settings) {
      const settings = JSON.parse(JSON.stringify(step.settings).replaceAll('{origin}', origin));
      await worker.evaluate((value) => chrome.storage.local.set(value), settings);
      output.push({ settings });
    } else if ('service' in step) {
      service = step.service;
      output.push({ service: service !== null });
    } else if (step.check) {
      // As a person clicks: the worker captures the tab at most twice a second.
      await new Promise((resolve) => setTimeout(resolve, 600));
      const started = Date.now();
      const verdict = await checkImage(worker, tabId, `${origin}/${step.check}`, page.url());
      output.push({ verdict, roundTripMs: Date.now() - started });
    } else if (step.click) {
      const before = await verdictOf(step.src);
      const target = before?.[step.click];
      if (target) {
        await clickAt(page, target);
        // Until what the click changes is drawn (a "Why?" may ask the service).
        for (let wait = 0; wait < 200; wait += 1) {
          const now = await verdictOf(step.src);
          if (JSON.stringify(now) !== JSON.stringify(before) && !now.text.includes('Asking your detection service')) {
            break;
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
      output.push({ clicked: Boolean(target) });
    } else if (step.read) {
      output.push({ verdicts: await readVerdicts(worker, tabId), page: await pageLayout(page) });
    } else if (step.screenshot) {
      await page.screenshot({ path: join(options.shotsDir, step.screenshot), fullPage: true });
      output.push({ screenshot: join(options.shotsDir, step.screenshot) });
    } else if (step.evaluate) {
      output.push({ value: await page.evaluate(step.evaluate) });
    } else if (step.toolbar) {
      output.push(await worker.evaluate(async (id) => ({ text: await chrome.action.getBadgeText({ tabId: id }),
        title: await chrome.action.getTitle({ tabId: id }) }), tabId));
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
  }
  process.stdout.write(`${JSON.stringify({ steps: output, requests, uploads })}\n`);
} finally {
  await context.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}

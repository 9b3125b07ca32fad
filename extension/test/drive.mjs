// Drives the unpacked extension in headless Chromium, as a user would with
// the context menu, and prints what each check showed on the page.
//
//   node test/drive.mjs '{"extensionDir", "chromium", "siteDir", "checks": [{"src", "settings"?, "explain"?}],
//                         "modelDir"?, "server"?, "optionsForms"?, "pauseMs"?}'
//
// Serves siteDir on 127.0.0.1 with one page per check showing <img src=src>
// (src: a file in siteDir, or a data: URL), right-clicks... almost: native
// context menus cannot be clicked headless, so it calls the service worker's
// onContextMenuClick(info, tab), exactly what the menu item calls. A check's
// settings are stored first ("{origin}" in them stands for the site's URL). With "server" (a JSON body), POST /v1/detect
// answers it, standing in for the detection service. Prints
// {"results": [{verdict, attribute, error, faceBox, scored, provenance, text, roundTripMs,
// uploads, explanation}]} as JSON, uploads being the byte sizes posted to
// /v1/detect for that check; explanation, when the verdict offers one: its
// place and the image's, and what the card shows once opened (a click on the
// badge) and after each of three clicks on its "Why?" toggle.
// With "optionsForms" ([{localOnly, serverUrl, maxLocalMegapixels}]), it also
// fills and saves the options page with each in turn: "options" in the
// output gives the model line it shows and, per form, the status and what
// was stored.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activeTabId, checkImage, clickAt, launchBrowser, readVerdicts } from './browser.mjs';
import { readBody, sendFile, serveSite } from './site.mjs';

const options = JSON.parse(process.argv[2]);
const work = await mkdtemp(join(tmpdir(), 'aiface-drive-'));

let uploads = [];

function handle(request, response, url, path) {
  if (request.method === 'POST' && path === '/v1/detect' && options.server) {
    return readBody(request).then((body) => {
      uploads.push(body.length);
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(options.server));
    });
  }
  const page = path.match(/^\/page\/(\d+)$/);
  if (page) {
    // The same URL the menu reports as srcUrl, so that the verdict finds its image.
    const { src } = options.checks[Number(page[1])];
    const source = (src.startsWith('data:') ? src : `/${src}`).replaceAll('"', '&quot;');
    response.writeHead(200, { 'Content-Type': 'text/html' }).end(`<!doctype html><img src="${source}" width="200">`);
    return null;
  }
  return sendFile(response, options.siteDir, path);
}

async function submitOptions(context, worker, forms) {
  const page = await context.newPage();
  await page.goto(`chrome-extension://${new URL(worker.url()).host}/options.html`);
  await page.waitForFunction(() => !document.getElementById('model').textContent.startsWith('Loading'));
  const saved = [];
  for (const form of forms) {
    await page.setChecked('#localOnly', form.localOnly);
    await page.fill('#serverUrl', form.serverUrl);
    await page.fill('#maxLocalMegapixels', String(form.maxLocalMegapixels));
    await page.fill('#apiKey', form.apiKey ?? '');
    await page.evaluate(() => { document.getElementById('status').textContent = ''; });
    await page.click('#save');
    await page.waitForFunction(() => document.getElementById('status').textContent !== '');
    saved.push({ status: await page.textContent('#status'), stored: await worker.evaluate(() => chrome.storage.local.get(null)) });
  }
  return { model: await page.textContent('#model'), saved };
}

// The card opened from the badge, then its "Why?" toggle clicked three
// times: where the explanation overlay lies over the image, and each state.
async function readExplanation(page, worker, tabId, shown) {
  if (!shown || shown.why === undefined || shown.error) {
    return null;
  }
  await clickAt(page, shown.badge);
  const read = async () => (await readVerdicts(worker, tabId))[0];
  const opened = await read();
  if (!opened.why) {
    return null;
  }
  const state = ({ overlay, toggle, text }) => ({ visible: Boolean(overlay?.shown), toggle, text });
  const states = [state(opened)];
  for (let click = 0; click < 3; click += 1) {
    await clickAt(page, (await read()).why);
    let now = await read();
    for (let wait = 0; wait < 100 && now.toggle === states.at(-1).toggle; wait += 1) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      now = await read();
    }
    states.push(state(now));
  }
  const last = await read();
  const natural = await page.evaluate(() => ({ width: document.images[0].naturalWidth, height: document.images[0].naturalHeight }));
  return { overlay: last.overlay, image: last.image, card: last.card, natural, png: last.overlay?.png ?? null, states };
}

const server = await serveSite(handle);
const origin = `http://127.0.0.1:${server.address().port}`;
const { context, worker } = await launchBrowser({ work, extensionDir: options.extensionDir, modelDir: options.modelDir,
  chromium: options.chromium });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const results = [];
  for (const [index, check] of options.checks.entries()) {
    await worker.evaluate((settings) => chrome.storage.local.set(settings),
      JSON.parse(JSON.stringify(check.settings ?? {}).replaceAll('{origin}', origin)));
    uploads = [];
    await page.goto(`${origin}/page/${index}`);
    const srcUrl = check.src.startsWith('data:') ? check.src : `${origin}/${check.src}`;
    const tabId = await activeTabId(worker);
    // As a person clicks: not faster than Chrome lets the worker capture the tab (twice a second).
    await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 0));
    const started = Date.now();
    const verdict = await checkImage(worker, tabId, srcUrl, page.url());
    const roundTripMs = Date.now() - started;
    // Shown once the menu item's work is done; read in the isolated world (the page sees nothing of it).
    const [drawn] = await readVerdicts(worker, tabId);
    results.push({
      verdict,
      roundTripMs,
      uploads,
      attribute: drawn?.attribute ?? null,
      error: drawn?.error ?? null,
      faceBox: drawn?.faceBox ?? null,
      scored: drawn?.scored ?? null,
      provenance: drawn?.provenance ?? null,
      text: drawn?.text ?? null,
      explanation: check.explain ? await readExplanation(page, worker, tabId, drawn) : null,
    });
  }
  const optionsPage = options.optionsForms ? await submitOptions(context, worker, options.optionsForms) : undefined;
  process.stdout.write(`${JSON.stringify({ results, options: optionsPage })}\n`);
} finally {
  await context.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}

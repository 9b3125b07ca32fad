// Drives the unpacked extension in headless Chromium, as a user would with
// the context menu, and prints what each check showed on the page.
//
//   node test/drive.mjs '{"extensionDir", "chromium", "siteDir", "checks": [{"src", "settings"?}],
//                         "modelDir"?, "server"?, "optionsForms"?}'
//
// Serves siteDir on 127.0.0.1 with one page per check showing <img src=src>
// (src: a file in siteDir, or a data: URL), right-clicks... almost: native
// context menus cannot be clicked headless, so it calls the service worker's
// onContextMenuClick(info, tab), exactly what the menu item calls. A check's
// settings are stored first ("{origin}" in them stands for the site's URL). With "server" (a JSON body), POST /v1/detect
// answers it, standing in for the detection service. Prints
// {"results": [{verdict, attribute, error, faceBox, scored, text, roundTripMs,
// uploads, explanation}]} as JSON, uploads being the byte sizes posted to
// /v1/detect for that check; explanation, when the verdict has an overlay:
// its place and the image's, and what the "Show why" toggle shows before
// and after each of two clicks.
// With "optionsForms" ([{localOnly, serverUrl, maxLocalMegapixels}]), it also
// fills and saves the options page with each in turn: "options" in the
// output gives the model line it shows and, per form, the status and what
// was stored.
import { cp, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { basename, extname, join } from 'node:path';
import { chromium } from 'playwright-core';

const options = JSON.parse(process.argv[2]);
const work = await mkdtemp(join(tmpdir(), 'aiface-drive-'));

// A copy of the extension, optionally with another model, that may read and
// annotate pages on 127.0.0.1: on a real menu click Chrome grants that
// (activeTab, and the site access the user allows when asked).
async function prepareExtension() {
  const dir = join(work, 'extension');
  await cp(options.extensionDir, dir, {
    recursive: true,
    filter: (source) => !['node_modules', 'test'].includes(basename(source)),
  });
  if (options.modelDir) {
    await rm(join(dir, 'model'), { recursive: true, force: true });
    await cp(options.modelDir, join(dir, 'model'), { recursive: true });
  }
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  manifest.host_permissions = ['http://127.0.0.1/*'];
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

const CONTENT_TYPES = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.webp': 'image/webp' };
let uploads = [];

function serveSite() {
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, 'http://x').pathname);
    if (request.method === 'POST' && path === '/v1/detect' && options.server) {
      let size = 0;
      for await (const chunk of request) size += chunk.length;
      uploads.push(size);
      response.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(options.server));
      return;
    }
    const page = path.match(/^\/page\/(\d+)$/);
    if (page) {
      // The same URL the menu reports as srcUrl, so that the verdict finds its image.
      const { src } = options.checks[Number(page[1])];
      const url = (src.startsWith('data:') ? src : `/${src}`).replaceAll('"', '&quot;');
      response.writeHead(200, { 'Content-Type': 'text/html' }).end(`<!doctype html><img src="${url}" width="200">`);
      return;
    }
    try {
      const body = await readFile(join(options.siteDir, basename(path)));
      response.writeHead(200, { 'Content-Type': CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream' }).end(body);
    } catch {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
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
    await page.evaluate(() => { document.getElementById('status').textContent = ''; });
    await page.click('#save');
    await page.waitForFunction(() => document.getElementById('status').textContent !== '');
    saved.push({ status: await page.textContent('#status'), stored: await worker.evaluate(() => chrome.storage.local.get(null)) });
  }
  return { model: await page.textContent('#model'), saved };
}

// Where the explanation overlay lies over the image, and the toggle at work.
async function readExplanation(page, shown) {
  const overlay = shown.locator('[data-ai-face-explanation]');
  if ((await overlay.count()) === 0) {
    return null;
  }
  const state = () => shown.evaluate((host) => {
    const img = host.shadowRoot.querySelector('[data-ai-face-explanation]');
    return {
      visible: getComputedStyle(img).visibility === 'visible',
      toggle: host.shadowRoot.querySelector('[data-ai-face-toggle]').textContent,
      text: host.shadowRoot.textContent,
    };
  });
  await overlay.evaluate((img) => img.decode());
  const placed = await page.evaluate(() => {
    const host = document.querySelector('[data-ai-face-verdict]');
    const img = host.shadowRoot.querySelector('[data-ai-face-explanation]');
    const page = document.images[0];
    const rect = (element) => {
      const { left, top, width, height } = element.getBoundingClientRect();
      return { left, top, width, height };
    };
    return { overlay: rect(img), image: rect(page), verdict: rect(host.shadowRoot.querySelector('[role=status]')),
      natural: { width: page.naturalWidth, height: page.naturalHeight },
      png: { width: img.naturalWidth, height: img.naturalHeight } };
  });
  const states = [await state()];
  for (let click = 0; click < 2; click += 1) {
    await shown.locator('[data-ai-face-toggle]').click();
    states.push(await state());
  }
  return { ...placed, states };
}

const server = await serveSite();
const origin = `http://127.0.0.1:${server.address().port}`;
// Playwright's own headless mode disables extensions; --headless=new keeps them.
const context = await chromium.launchPersistentContext(join(work, 'profile'), {
  executablePath: options.chromium,
  headless: false,
  args: [
    '--headless=new',
    `--disable-extensions-except=${await prepareExtension()}`,
    `--load-extension=${join(work, 'extension')}`,
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
try {
  const worker = context.serviceWorkers()[0] ?? (await context.waitForEvent('serviceworker'));
  const page = context.pages()[0] ?? (await context.newPage());
  const results = [];
  for (const [index, check] of options.checks.entries()) {
    await worker.evaluate((settings) => chrome.storage.local.set(settings),
      JSON.parse(JSON.stringify(check.settings ?? {}).replaceAll('{origin}', origin)));
    uploads = [];
    await page.goto(`${origin}/page/${index}`);
    const srcUrl = check.src.startsWith('data:') ? check.src : `${origin}/${check.src}`;
    const tabId = await worker.evaluate(async () => (await chrome.tabs.query({ active: true, lastFocusedWindow: true }))[0].id);
    const started = Date.now();
    const verdict = await worker.evaluate(
      ({ info, id }) => onContextMenuClick(info, { id }),
      { info: { menuItemId: 'check-ai-face', mediaType: 'image', srcUrl, pageUrl: page.url(), frameId: 0 }, id: tabId },
    );
    const roundTripMs = Date.now() - started;
    const shown = page.locator('[data-ai-face-verdict], [data-ai-face-error]').first();
    await shown.waitFor({ state: 'attached', timeout: 10000 });
    results.push({
      verdict,
      roundTripMs,
      uploads,
      attribute: await shown.getAttribute('data-ai-face-verdict'),
      error: await shown.getAttribute('data-ai-face-error'),
      faceBox: JSON.parse(await shown.getAttribute('data-ai-face-box')),
      scored: await shown.getAttribute('data-ai-face-scored'),
      text: await shown.evaluate((host) => host.shadowRoot.textContent),
      explanation: await readExplanation(page, shown),
    });
  }
  const optionsPage = options.optionsForms ? await submitOptions(context, worker, options.optionsForms) : undefined;
  process.stdout.write(`${JSON.stringify({ results, options: optionsPage })}\n`);
} finally {
  await context.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}

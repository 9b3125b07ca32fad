// What the test drivers (drive.mjs, scenario.mjs) share: a copy of the
// extension that may read and annotate pages on 127.0.0.1, headless
// Chromium with it loaded, and reading the verdicts it drew (closed shadow
// roots: read in the extension's isolated world, where dist/page.js keeps them).
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { chromium } from 'playwright-core';

// On a real menu click Chrome grants the page's site and a capture of the
// tab (activeTab, and the site access the user allows when asked); the copy
// is given both up front (captureVisibleTab takes <all_urls> without activeTab).
async function prepareExtension(work, extensionDir, modelDir) {
  const dir = join(work, 'extension');
  await cp(extensionDir, dir, {
    recursive: true,
    filter: (source) => !['node_modules', 'test'].includes(basename(source)),
  });
  if (modelDir) {
    await rm(join(dir, 'model'), { recursive: true, force: true });
    await cp(modelDir, join(dir, 'model'), { recursive: true });
  }
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8'));
  manifest.host_permissions = ['<all_urls>'];
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(manifest));
  return dir;
}

// {context, worker}: Chromium with the extension, and its service worker.
export async function launchBrowser({ work, extensionDir, modelDir, chromium: executablePath, viewport }) {
  const extension = await prepareExtension(work, extensionDir, modelDir);
  // Playwright's own headless mode disables extensions; --headless=new keeps them.
  const context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath,
    headless: false,
    viewport: viewport ?? { width: 1280, height: 720 },
    args: [
      '--headless=new',
      `--disable-extensions-except=${extension}`,
      `--load-extension=${extension}`,
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  const worker = context.serviceWorkers()[0] ?? (await context.waitForEvent('serviceworker'));
  return { context, worker };
}

export function activeTabId(worker) {
  return worker.evaluate(async () => (await chrome.tabs.query({ active: true, lastFocusedWindow: true }))[0].id);
}

// What the menu item does, for one image of the page in the active tab.
export function checkImage(worker, tabId, srcUrl, pageUrl) {
  return worker.evaluate(
    ({ info, id }) => onContextMenuClick(info, { id }),
    { info: { menuItemId: 'check-ai-face', mediaType: 'image', srcUrl, pageUrl, frameId: 0 }, id: tabId },
  );
}

// Every verdict on the page: its text, attribute and the viewport rectangles
// of the image, badge, card, face outlines and explanation overlay.
export async function readVerdicts(worker, tabId) {
  const [{ result }] = await worker.evaluate((id) => chrome.scripting.executeScript({
    target: { tabId: id }, func: () => globalThis.__aiFace?.read() ?? [] }), tabId);
  return result;
}

// A real click (closed shadow roots take them) in the middle of a rectangle.
export async function clickAt(page, rect) {
  await page.mouse.click(rect.left + rect.width / 2, rect.top + rect.height / 2);
}

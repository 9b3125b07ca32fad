// Drives "Check every face on this page" in headless Chromium, as a
// moderator would: the menu item's handler on a page of profiles, scrolling
// to the bottom, then (optionally) "This verdict is wrong" on some verdicts
// and the options page's export.
//
//   node test/scan.mjs '{"extensionDir", "chromium", "siteDir", "page", "modelDir"?, "viewport"?,
//                        "settings"?, "reports"?: [{"src", "label": "real" | "fake", "thumbnail"?, "pageUrl"?}],
//                        "exportTo"?}'
//
// Prints {"first": the handler's answer (the scan once the images in view
// are checked) and its milliseconds, "inViewAtStart": the judgeable images
// in view before scrolling, "final": the scan's state after scrolling,
// "seconds": from the handler's call to the last verdict, "verdicts": each
// verdict drawn, "fetches": how many times the extension fetched each path,
// "longTasks": every long task (over 50 ms) the page's main thread ran,
// "reports": each report's status, "options": the reports listed, "exported"}.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { activeTabId, clickAt, launchBrowser, readVerdicts } from './browser.mjs';
import { sendFile, serveSite } from './site.mjs';

const options = JSON.parse(process.argv[2]);
const work = await mkdtemp(join(tmpdir(), 'aiface-scan-'));
const fetches = {};

const server = await serveSite((request, response, url, path) => {
  // The extension's fetch, not the page's own load of the image.
  if (request.headers['sec-fetch-dest'] === 'empty') {
    fetches[path] = (fetches[path] ?? 0) + 1;
  }
  return sendFile(response, options.siteDir, path);
});
const origin = `http://127.0.0.1:${server.address().port}`;
const { context, worker } = await launchBrowser({ work, extensionDir: options.extensionDir, modelDir: options.modelDir,
  chromium: options.chromium, viewport: options.viewport });

const until = async (read, done, what) => {
  let value;
  for (let attempt = 0; attempt < 1200; attempt += 1) {
    value = await read();
    if (done(value)) {
      return value;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value)}`);
};

try {
  const page = context.pages()[0] ?? (await context.newPage());
  // Long tasks of the page's main thread, whoever ran them (the test page runs no script of its own).
  await page.addInitScript(() => {
    globalThis.longTasks = [];
    new PerformanceObserver((list) => {
      globalThis.longTasks.push(...list.getEntries().map((entry) => entry.duration));
    }).observe({ type: 'longtask', buffered: true });
  });
  if (options.settings) {
    await worker.evaluate((settings) => chrome.storage.local.set(settings), options.settings);
  }
  await page.goto(`${origin}/${options.page}`);
  await page.evaluate(() => Promise.all([...document.images].map((img) => img.decode().catch(() => null))));
  const inViewAtStart = await page.evaluate(() => [...document.images].filter((img) => {
    const rect = img.getBoundingClientRect();
    return rect.bottom > 0 && rect.top < innerHeight && rect.width >= 32 && rect.height >= 32 && img.naturalWidth >= 32;
  }).map((img) => img.currentSrc));
  const tabId = await activeTabId(worker);
  const scanState = async () => {
    const [{ result }] = await worker.evaluate((id) => chrome.scripting.executeScript({
      target: { tabId: id }, func: () => globalThis.__aiFace?.scanState() ?? null }), tabId);
    return result;
  };
  const started = Date.now();
  const first = await worker.evaluate(({ info, id }) => onContextMenuClick(info, { id }),
    { info: { menuItemId: 'check-page-faces', pageUrl: page.url(), frameId: 0 }, id: tabId });
  const firstMs = Date.now() - started;
  // Down a window at a time, each time until what came into view is checked.
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  const step = (options.viewport?.height ?? 720) * 0.9;
  for (let y = step; y < height + step; y += step) {
    await page.evaluate((top) => scrollTo(0, top), y);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    await until(scanState, (state) => state.waiting === 0, 'the scan to check what scrolled into view');
  }
  const final = await scanState();
  const seconds = (Date.now() - started) / 1000;
  const longTasks = await page.evaluate(() => globalThis.longTasks);
  const verdicts = await readVerdicts(worker, tabId);
  const reports = [];
  for (const report of options.reports ?? []) {
    const srcUrl = `${origin}/${report.src}`;
    const read = async () => (await readVerdicts(worker, tabId)).find((v) => v.srcUrl === srcUrl);
    await page.evaluate((src) => [...document.images].find((img) => img.currentSrc === src)
      .scrollIntoView({ block: 'center' }), srcUrl);
    await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
    // A real click on one of the report's controls, scrolled to the middle of the window first: a card can be
    // tall, and the page scan's summary sits at the window's bottom edge, over whatever lies there.
    const press = async (name) => {
      const at = (await until(read, (v) => v.report?.[name], `the card's ${name}`)).report[name];
      const off = at.top + at.height / 2 - (options.viewport?.height ?? 720) / 2;
      if (Math.abs(off) > (options.viewport?.height ?? 720) / 4) {
        await page.evaluate((by) => scrollBy(0, by), off);
      }
      await clickAt(page, (await read()).report[name]);
    };
    await clickAt(page, (await read()).badge);
    await press('wrong');
    for (const box of ['thumbnail', 'pageUrl']) {
      if (report[box]) {
        await press(box);
      }
    }
    await press(report.label);
    const done = await until(read, (v) => v.report?.status && !v.report.status.startsWith('Recording'), 'the report');
    reports.push(done.report.status);
    await clickAt(page, (await read()).badge); // closes the card
  }
  let listed;
  let exported = null;
  if (options.exportTo) {
    const optionsPage = await context.newPage();
    await optionsPage.goto(`chrome-extension://${new URL(worker.url()).host}/options.html`);
    await optionsPage.waitForFunction(() => document.getElementById('reportCount').textContent !== '');
    listed = await optionsPage.evaluate(() => ({
      count: document.getElementById('reportCount').textContent,
      rows: [...document.querySelectorAll('#reports tr')].map((row) => [...row.cells].map((td) => td.textContent)),
    }));
    const [download] = await Promise.all([optionsPage.waitForEvent('download'), optionsPage.click('#exportReports')]);
    await download.saveAs(options.exportTo);
    exported = { path: options.exportTo, name: download.suggestedFilename(),
      status: await optionsPage.textContent('#reportStatus') };
  }
  process.stdout.write(`${JSON.stringify({ first, firstMs, inViewAtStart, final, seconds, verdicts, fetches, longTasks,
    reports, options: listed, exported, origin })}\n`);
} finally {
  await context.close();
  server.close();
  await rm(work, { recursive: true, force: true });
}

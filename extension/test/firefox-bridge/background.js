// Test only, beside the event page in the test copy of the Firefox build
// (firefox.mjs builds it): what the test asks through content.js, done in the
// event page as the Chromium drivers do it in the service worker: the menu
// item's handler (native menus cannot be clicked headless), settings, the
// verdicts drawn, and the reports' export (the options page's own code:
// BiDi cannot open moz-extension:// pages).
import { exportZip, listReports } from '../../src/reports.js';
import { toBase64 } from '../../src/bytes.js';

const inPage = async (tabId, func) => (await chrome.scripting.executeScript({ target: { tabId }, func }))[0]?.result;

const OPERATIONS = {
  settings: (_tab, values) => chrome.storage.local.set(values),
  check: (tab, srcUrl, pageUrl) => globalThis.onContextMenuClick(
    { menuItemId: 'check-ai-face', mediaType: 'image', srcUrl, pageUrl, frameId: 0 }, tab),
  scan: (tab, pageUrl) => globalThis.onContextMenuClick({ menuItemId: 'check-page-faces', pageUrl, frameId: 0 }, tab),
  read: (tab) => inPage(tab.id, () => globalThis.__aiFace?.read() ?? []),
  scanState: (tab) => inPage(tab.id, () => globalThis.__aiFace?.scanState() ?? null),
  exportReports: async () => {
    const { zip, count } = await exportZip(await listReports());
    return { count, zip: await toBase64(new Blob([zip])) };
  },
};

chrome.runtime.onMessage.addListener((message, sender) => {
  const request = message?.aifaceTest;
  if (!request || sender.id !== chrome.runtime.id) {
    return undefined;
  }
  return OPERATIONS[request.op](sender.tab, ...request.args);
});

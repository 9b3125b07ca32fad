// The background (Chrome's service worker, service-worker.js; Firefox's event
// page, event-page.js): the context-menu item, fetching the image, choosing
// where it is checked (TF.js in the model's page, or the configured service),
// and showing the verdict on the page (dist/page.js).
import { fromBase64, toBase64 } from './bytes.js';
import { checkFile, forgetTab, startScan } from './checked-files.js';
import { runModel } from './model-runner.js';
import { recordReport } from './report-worker.js';
import { autoScans, loadScanSettings } from './scan-settings.js';
import { errorMessage, ReplyError, validDetection } from './reply.js';
import { loadSettings, originPattern, serverAllowed, serverUrlProblem, serviceHeaders } from './settings.js';
import { COLOURS, TOOLBAR_MARKS } from './marks.js';
import { combine, DECLARED_AI, DECLARED_WORDS, summarise } from './provenance.js';
import { describe } from './verdict.js';

const MENU_ID = 'check-ai-face';
// Every face on the page (page-scan.js): the same handler, and a keyboard command.
const PAGE_MENU_ID = 'check-page-faces';
// A larger download is not an image worth checking.
const MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024;
// What is uploaded: re-encoded, at most this many pixels.
const UPLOAD_MAX_PIXELS = 16e6;
const SERVICE_TIMEOUT_MS = 30000;
// Chrome allows two captures of a tab a second.
const CAPTURE_INTERVAL_MS = 550;

class CheckError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_ID, title: 'Check if AI-generated', contexts: ['image'] });
    chrome.contextMenus.create({ id: PAGE_MENU_ID, title: 'Check every face on this page',
      contexts: ['page', 'image', 'link'] });
  });
});
chrome.contextMenus.onClicked.addListener(onContextMenuClick);
chrome.commands.onCommand.addListener((command, tab) => {
  if (command === PAGE_MENU_ID && tab?.id !== undefined) {
    onContextMenuClick({ menuItemId: PAGE_MENU_ID, pageUrl: tab.url, frameId: 0 }, tab);
  }
});
// Sites the user chose in the options are scanned as their pages load.
chrome.tabs.onUpdated.addListener(async (tabId, change, tab) => {
  if (change.status === 'complete' && tab.url && autoScans(await loadScanSettings(), tab.url)) {
    scanPage(tab).catch((error) => console.warn(`AI face check: the page scan did not start: ${error.message}`));
  }
});
chrome.tabs.onRemoved.addListener(forgetTab);

// What the menu item calls; global so that tests can call it the same way.
// Resolves to the verdict it showed: {probability, threshold, label, words,
// where, scored, faces, note?, explanation?, ...} or {error, message}.
async function onContextMenuClick(info, tab) {
  if (info.menuItemId === PAGE_MENU_ID) {
    // Started before any await, as below: the page's site, where its images are as a rule.
    const access = requestSiteAccess(info.pageUrl ?? tab?.url ?? '');
    await access;
    return scanPage(tab);
  }
  // Started before any await: Chrome shows its permission prompt only
  // while the click's user gesture lasts.
  const access = requestSiteAccess(info.srcUrl);
  // What the page shows, as the user sees it now (activeTab allows it).
  const shown = tab?.id !== undefined && (info.frameId ?? 0) === 0
    ? captureShown(tab, info.srcUrl).catch(() => null) : Promise.resolve(null);
  let verdict;
  try {
    verdict = await checkRemembered(tab?.id, info.srcUrl, access, shown);
  } catch (error) {
    verdict = { error: error.code ?? 'failed', message: error.message };
  }
  if (tab?.id !== undefined) {
    await showOnPage(tab.id, info.frameId ?? 0, info.srcUrl, verdict);
  }
  return verdict;
}
globalThis.onContextMenuClick = onContextMenuClick;

// Starts checking the page's images (page-scan.js in the page asks for each
// with a 'scan-check' message); resolves to the scan's state once the images
// in view are checked.
async function scanPage(tab) {
  startScan(tab.id);
  const { scanLimit } = await loadScanSettings();
  return inPage({ tabId: tab.id, frameIds: [0] }, 'scan', [{ limit: scanLimit }]);
}

// One image of a page scan: no capture to compare with (Chrome allows two a
// second), the same file under another URL judged once. The verdict.
async function scanCheck(srcUrl, tabId) {
  const access = /^https?:/i.test(srcUrl)
    ? chrome.permissions.contains({ origins: [originPattern(srcUrl)] }).catch(() => false) : Promise.resolve(true);
  try {
    return await checkRemembered(tabId, srcUrl, access, Promise.resolve(null), { reuse: true });
  } catch (error) {
    return { error: error.code ?? 'failed', message: error.message, srcUrl };
  }
}

// checkImage, with the fetched file and its SHA-256 remembered for a report.
async function checkRemembered(tabId, url, access, shown, options) {
  const fetched = await fetchImage(url, access);
  return checkFile(tabId, url, fetched, () => checkImage(url, access, shown, fetched), options);
}

// From the page's verdicts: the card's "Why?" (the service explains the
// image, any image, also one checked in the browser), a page scan's next
// image, "This verdict is wrong".
chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (sender.id !== chrome.runtime.id || !sender.tab) {
    return false;
  }
  let answer;
  if (message?.type === 'explain') {
    answer = explainImage(message.srcUrl);
  } else if (message?.type === 'scan-check') {
    answer = scanCheck(message.srcUrl, sender.tab.id);
  } else if (message?.type === 'report') {
    answer = recordReport(message, { id: sender.tab.id, url: sender.url ?? sender.tab.url }, { fetchImage, toOffscreen });
  } else {
    return false;
  }
  answer.then(sendResponse, (error) => sendResponse({ error: error.message }));
  return true;
});

// Asks for the image's site only when the image is on one (not for data:
// URLs) and only once per site: Chrome answers at once when it is granted.
function requestSiteAccess(url) {
  if (!/^https?:/i.test(url)) {
    return Promise.resolve(true);
  }
  return chrome.permissions.request({ origins: [originPattern(url)] }).catch(() => false);
}

// Why the service is not asked, or null when it may be.
function serviceRefusal(settings) {
  if (!serverAllowed(settings)) {
    return settings.localOnly ? 'Local-only mode is on, so it was not sent to a detection service (see the options).'
      : 'No detection service is set in the options.';
  }
  const problem = serverUrlProblem(settings.serverUrl.trim());
  return problem ? `Your detection service was not used: ${problem}` : null;
}

// The pixels' verdict and, beside it, what the fetched file says about its
// origin, read at the same time; combined by the rule of provenance.js.
// fetched: the file, when the caller fetched it already.
async function checkImage(url, access, shown, fetched) {
  const settings = await loadSettings();
  fetched ??= await fetchImage(url, access);
  const [verdict, provenance] = await Promise.all([checkPixels(fetched, settings, shown),
    fileProvenance(fetched, settings)]);
  return withProvenance(verdict, provenance);
}

// Read from the file as fetched, never from an upload (re-encoded without metadata).
async function fileProvenance(blob, settings) {
  const reply = await toOffscreen('provenance', blob, { trustAnchors: settings.trustAnchors.trim() || null })
    .catch(() => null);
  // No answer from the readers is "not checked", never "nothing there".
  return { ...summarise(reply?.findings ?? { unread: ['busy: the provenance readers did not answer'] }),
    ms: reply?.ms ?? null };
}

// The extension's one answer, as aiface/answer.py builds the service's and the scan's.
function withProvenance(verdict, { ms, ...provenance }) {
  const code = combine(verdict.words.code, provenance);
  const words = code !== DECLARED_AI ? verdict.words : { ...verdict.words, code, label: DECLARED_WORDS.label,
    badge: DECLARED_WORDS.badge, explanation: DECLARED_WORDS.explanation.replace('{by}', provenance.declared_by) };
  return { ...verdict, words, label: code === DECLARED_AI ? 'fake' : verdict.label, provenance,
    timings: verdict.timings && { ...verdict.timings, provenance_ms: ms } };
}

async function checkPixels(fetched, settings, shown) {
  const maxPixels = settings.maxLocalMegapixels * 1e6;
  // Scored while it is compared with the image as shown: they match, as a rule.
  const [first, { image, note: renderedNote, compared }] = await Promise.all([
    classifyLocally(fetched, maxPixels, false), shown.then((view) => asShown(fetched, view))]);
  const refusal = serviceRefusal(settings);
  const context = { canExplain: refusal === null, explainHint: explainHint(settings, refusal), note: renderedNote,
    compared };
  if (image !== fetched) {
    // "Why?" fetches the file again: the service would explain the other file.
    Object.assign(context, { canExplain: false, rendered: shownRendered(await shown),
      explainHint: 'No explanation: the service would get the file the site sends the extension, not the image shown.' });
  }
  const local = image === fetched ? first : await classifyLocally(image, maxPixels, false);
  if (local.ok) {
    return verdictFrom(local.probability, local.threshold, 'local', { ...local, ...context });
  }
  if (local.code === 'not_image' || local.code === 'too_small') {
    throw new CheckError(local.code, local.message);
  }
  // Too large to check at full size in the browser, or the browser failed:
  // the service, when allowed; then the browser, at a size it can handle.
  let why = [renderedNote, refusal].filter(Boolean).join(' ');
  if (refusal === null) {
    try {
      const remote = await classifyOnServer(image, settings, true);
      return verdictFrom(remote.probability_fake, remote.threshold, 'server', { ...remote, ...remote.image, ...context,
        service: new URL(settings.serverUrl).host });
    } catch (error) {
      if (!(error instanceof CheckError)) {
        throw error;
      }
      why = `${error.message} So it was checked in this browser instead.`;
      if (renderedNote) {
        why = `${renderedNote} ${why}`;
      }
    }
  }
  if (local.code !== 'too_large') {
    throw new CheckError(local.code, `${local.message} ${why}`);
  }
  const scaled = await classifyLocally(image, maxPixels, true);
  if (!scaled.ok) {
    throw new CheckError(scaled.code, `${scaled.message} ${why}`);
  }
  const note = `${why} It is ${local.width}x${local.height} pixels, more than the ${settings.maxLocalMegapixels} `
    + `megapixels checked at full size in the browser, so it was scaled down to ${scaled.width}x${scaled.height}.`;
  return verdictFrom(scaled.probability, scaled.threshold, 'local', { ...scaled, ...context, note });
}

function explainHint(settings, refusal) {
  if (settings.serverUrl.trim() === '') {
    return 'Explanations (Why?) need a detection service: set one in the options.';
  }
  return settings.localOnly ? 'Explanations (Why?) need your detection service: turn off local-only mode in the options.'
    : refusal;
}

// result: what the offscreen document or the service answered, with the
// image's width and height, what was scored and the faces found.
function verdictFrom(probability, threshold, where, result) {
  return {
    probability, threshold, label: probability >= threshold ? 'fake' : 'real', words: describe(probability, threshold),
    where, width: result.width, height: result.height, scored: result.scored ?? 'whole_image',
    faces: result.faces ?? [], explanation: result.explanation, canExplain: result.canExplain,
    explainHint: result.explainHint, service: result.service, note: result.note, timings: result.timings,
    // Whether the fetched file was compared with the image as shown, and how far apart they were;
    // when the rendered pixels were checked instead, where they lie in the image's box.
    compared: result.compared ?? null, rendered: result.rendered ?? null,
  };
}

let lastCapture = 0;

// The image as the page shows it: where it is in the viewport and what of
// our verdicts lies over it (page.js locate), and a capture of the tab.
// None within half a second of the last (Chrome allows two captures a
// second): checks clicked that fast go uncompared rather than wait.
async function captureShown(tab, srcUrl) {
  if (Date.now() - lastCapture < CAPTURE_INTERVAL_MS) {
    return null;
  }
  lastCapture = Date.now();
  const located = await inPage({ tabId: tab.id, frameIds: [0] }, 'locate', [srcUrl]);
  if (!located) {
    return null;
  }
  const windowId = tab.windowId ?? (await chrome.tabs.get(tab.id)).windowId;
  const dataUrl = await chrome.tabs.captureVisibleTab(windowId, { format: 'jpeg', quality: 92 });
  return { ...located, screenshot: dataUrl.slice(dataUrl.indexOf(',') + 1) };
}

// The fetched file when it is what the page shows; otherwise the rendered
// pixels, with a note saying so. Without a capture, the fetched file.
async function asShown(fetched, shown) {
  if (!shown) {
    return { image: fetched, note: null };
  }
  const compared = await toOffscreen('compare', fetched, shown).catch(() => null);
  if (!compared?.ok || compared.match) {
    return { image: fetched, note: null, compared: compared && { match: compared.match, difference: compared.difference } };
  }
  return {
    image: new Blob([fromBase64(compared.rendered)], { type: 'image/png' }),
    note: `The site sent the extension a different file from the image on the page, so the image as shown `
      + `(${compared.width}x${compared.height} pixels on screen) was checked.`,
    compared: { match: false, difference: compared.difference },
  };
}

// How the rendered pixels lie in the image's box on the page.
function shownRendered(shown) {
  return { offsetX: shown.offset.x, offsetY: shown.offset.y, dpr: shown.dpr };
}

// Without the site's cookies or a referrer: the check must not act as the
// user on the site, nor tell the site which page the image was on.
async function fetchImage(url, access) {
  const granted = await access;
  let response;
  try {
    response = await fetch(url, { credentials: 'omit', referrerPolicy: 'no-referrer' });
  } catch (error) {
    const site = new URL(url).hostname;
    throw new CheckError('fetch_failed', granted
      ? `The image could not be downloaded (${error.message}).`
      : `The image could not be read: ${site} does not share it with extensions, and access to ${site} was not granted. Check it again and allow access when asked.`);
  }
  if (response.status === 404) {
    throw new CheckError('not_found', 'The image could not be loaded: the site answered 404 Not Found.');
  }
  if (!response.ok) {
    const status = `${response.status} ${response.statusText}`.trim();
    throw new CheckError('http_error', `The image could not be loaded: the site answered ${status}.`);
  }
  const blob = await response.blob();
  if (blob.size > MAX_DOWNLOAD_BYTES) {
    throw new CheckError('too_large', `The file is ${(blob.size / 1048576).toFixed(0)} MB, more than the ${MAX_DOWNLOAD_BYTES / 1048576} MB checked.`);
  }
  return blob;
}

// Extension messages are JSON: bytes travel as base64. A check sends the same
// file up to three times (compare, classify, encode), so each file is
// encoded once.
const encodedFiles = new WeakMap();

function encodedFile(blob) {
  if (!encodedFiles.has(blob)) {
    encodedFiles.set(blob, toBase64(blob));
  }
  return encodedFiles.get(blob);
}

// To the page the model runs in (offscreen.js): Chrome's offscreen document,
// or Firefox's event page itself (model-runner.js).
async function toOffscreen(type, blob, fields) {
  const reply = await runModel({ type, image: await encodedFile(blob), mimeType: blob.type, ...fields });
  if (!reply) {
    throw new Error('the model did not answer');
  }
  return reply;
}

// downscale: above maxPixels, scaled down to it rather than refused.
async function classifyLocally(blob, maxPixels, downscale) {
  try {
    return await toOffscreen('classify', blob, { maxPixels, downscale });
  } catch (error) {
    return { ok: false, code: 'local_failed', message: `Checking in the browser failed (${error.message}).` };
  }
}

// What is uploaded is the decoded pixels (upright, alpha over white),
// re-encoded: no EXIF, location, camera or editing metadata leaves.
async function reencode(blob) {
  const encoded = await toOffscreen('encode', blob, { maxPixels: UPLOAD_MAX_PIXELS });
  if (!encoded.ok) {
    throw new CheckError(encoded.code, encoded.message);
  }
  return new Blob([fromBase64(encoded.image)], { type: encoded.mimeType });
}

// The service's answer to POST /v1/detect, validated (reply.js). Throws a
// CheckError when it cannot be used.
async function classifyOnServer(blob, settings, explain) {
  const base = settings.serverUrl.trim().replace(/\/+$/, '');
  const problem = serverUrlProblem(base);
  if (problem) {
    throw new CheckError('server_refused', problem);
  }
  const upload = await reencode(blob);
  return post(base, upload, explain, serviceHeaders(settings, base));
}

async function post(base, upload, explain, headers) {
  const form = new FormData();
  form.append('image', upload, upload.type === 'image/png' ? 'image.png' : 'image.jpg');
  let response;
  try {
    response = await fetch(`${base}/v1/detect${explain ? '?explain=1' : ''}`, {
      method: 'POST', body: form, headers, credentials: 'omit', referrerPolicy: 'no-referrer',
      signal: AbortSignal.timeout(SERVICE_TIMEOUT_MS),
    });
  } catch (error) {
    throw new CheckError('server_unreachable', `Your detection service at ${new URL(base).host} could not be reached (${error.message}).`);
  }
  const body = await response.json().catch(() => null);
  // A service that cannot explain (TF Serving behind it) can still judge.
  if (explain && body?.error?.code === 'explanation_unavailable') {
    return post(base, upload, false, headers);
  }
  if (!response.ok) {
    throw new CheckError('server_error', `Your detection service could not check it: ${errorMessage(body, response.status)}.`);
  }
  try {
    return validDetection(body);
  } catch (error) {
    if (error instanceof ReplyError) {
      throw new CheckError('bad_reply', `Your detection service sent an answer that cannot be used (${error.message}), so none of it is shown.`);
    }
    throw error;
  }
}

async function explainImage(srcUrl) {
  const settings = await loadSettings();
  const refusal = serviceRefusal(settings);
  if (refusal !== null) {
    return { error: refusal };
  }
  try {
    const image = await fetchImage(srcUrl, Promise.resolve(true));
    const remote = await classifyOnServer(image, settings, true);
    if (!remote.explanation) {
      return { error: 'Your detection service cannot explain its verdicts (it forwards to TensorFlow Serving).' };
    }
    return { explanation: remote.explanation, width: remote.image.width, height: remote.image.height,
      note: `Explained by your detection service, which scored it ${describe(remote.probability_fake, remote.threshold).percent}` };
  } catch (error) {
    return { error: error.message };
  }
}

// Calls globalThis.__aiFace[method](...args) in the page's isolated world,
// injecting dist/page.js first when it is not there yet: the result.
async function inPage(target, method, args) {
  const call = async (name, values) => (globalThis.__aiFace ? { value: (await globalThis.__aiFace[name](...values)) ?? null } : null);
  const run = async () => (await chrome.scripting.executeScript({ target, func: call, args: [method, args] }))[0]?.result;
  let result = await run();
  if (!result) {
    await chrome.scripting.executeScript({ target, files: ['dist/page.js'] });
    result = await run();
  }
  return result?.value ?? null;
}

// The latest verdict in this tab, on the toolbar icon: no page can draw there,
// so a badge on the page that disagrees with it is an imitation.
function markToolbar(tabId, srcUrl, verdict) {
  const code = verdict.error ? 'error' : verdict.words.code;
  const name = decodeURIComponent(new URL(srcUrl).pathname.split('/').pop() || '') || 'an image';
  const said = verdict.error ? `not checked (${verdict.message})` : `${verdict.words.label}, ${verdict.words.percent}`;
  Promise.all([
    chrome.action.setBadgeText({ tabId, text: TOOLBAR_MARKS[code] }),
    chrome.action.setBadgeBackgroundColor({ tabId, color: COLOURS[code][0] }),
    chrome.action.setBadgeTextColor?.({ tabId, color: COLOURS[code][1] }),
    chrome.action.setTitle({ tabId, title: `AI face check, latest in this tab: ${srcUrl.startsWith('data:')
      ? 'an embedded image' : name.slice(0, 60)}: ${said}` }),
  ]).catch((error) => console.warn(`AI face check: the toolbar mark failed: ${error.message}`));
}

async function showOnPage(tabId, frameId, srcUrl, verdict) {
  markToolbar(tabId, srcUrl, verdict);
  // An image in a frame from another site may be out of reach: the verdict
  // then shows in the top frame, in a corner.
  for (const frame of new Set([frameId, 0])) {
    try {
      await inPage({ tabId, frameIds: [frame] }, 'show', [srcUrl, verdict]);
      return;
    } catch (error) {
      console.warn(`AI face check: could not show the verdict in frame ${frame}: ${error.message}`, verdict);
    }
  }
}

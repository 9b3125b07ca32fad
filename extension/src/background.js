// Service worker: the context-menu item, fetching the image, choosing where
// it is checked (the offscreen document's TF.js, or the configured server),
// and showing the verdict on the page.
import { loadSettings, originPattern, serverAllowed } from './settings.js';
import { showVerdict } from './verdict.js';

const MENU_ID = 'check-ai-face';
const OFFSCREEN_PAGE = 'offscreen.html';
// Within this distance of the threshold the verdict is shown as uncertain.
const UNCERTAIN_MARGIN = 0.1;
// A larger download is not an image worth checking.
const MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024;

class CheckError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

chrome.runtime.onInstalled.addListener(() => {
  chrome.contextMenus.removeAll(() => {
    chrome.contextMenus.create({ id: MENU_ID, title: 'Check if AI-generated', contexts: ['image'] });
  });
});
chrome.contextMenus.onClicked.addListener(onContextMenuClick);

// What the menu item calls; global so that tests can call it the same way.
// Resolves to the verdict it showed: {probability, label, band, where,
// scored, faces, explanation?, ...} or {error, message}.
async function onContextMenuClick(info, tab) {
  // Started before any await: Chrome shows its permission prompt only
  // while the click's user gesture lasts.
  const access = requestSiteAccess(info.srcUrl);
  let verdict;
  try {
    verdict = await checkImage(info.srcUrl, access);
  } catch (error) {
    verdict = { error: error.code ?? 'failed', message: error.message };
  }
  if (tab?.id !== undefined) {
    await showOnPage(tab.id, info.frameId ?? 0, info.srcUrl, verdict);
  }
  return verdict;
}
globalThis.onContextMenuClick = onContextMenuClick;

// Asks for the image's site only when the image is on one (not for data:
// URLs) and only once per site: Chrome answers at once when it is granted.
function requestSiteAccess(url) {
  if (!/^https?:/i.test(url)) {
    return Promise.resolve(true);
  }
  return chrome.permissions.request({ origins: [originPattern(url)] }).catch(() => false);
}

async function checkImage(url, access) {
  const settings = await loadSettings();
  const image = await fetchImage(url, access);
  let local;
  try {
    local = await classifyLocally(image, settings);
  } catch (error) {
    local = { ok: false, code: 'local_failed', message: `Checking in the browser failed (${error.message}).` };
  }
  if (local.ok) {
    return verdictFrom(local.probability, local.threshold, 'local', local);
  }
  if (local.code === 'not_image' || local.code === 'too_small') {
    throw new CheckError(local.code, local.message);
  }
  if (!serverAllowed(settings)) {
    throw new CheckError(local.code, `${local.message} ${serverHint(settings)}`);
  }
  const remote = await classifyOnServer(image, settings);
  return verdictFrom(remote.probability_fake, remote.threshold, 'server', { ...remote, ...remote.image });
}

function serverHint(settings) {
  return settings.localOnly
    ? 'Local-only mode is on, so it was not sent to a server (see the options).'
    : 'No server is set in the options to check it instead.';
}

// result: what the offscreen document or the server answered, with the
// image's width and height, what was scored and the faces found.
function verdictFrom(probability, threshold, where, result) {
  const label = probability >= threshold ? 'fake' : 'real';
  const band = Math.abs(probability - threshold) < UNCERTAIN_MARGIN ? 'uncertain' : label;
  const headline = band !== 'uncertain' ? (label === 'fake' ? 'AI-generated' : 'Real photo')
    : `Uncertain, leans ${label === 'fake' ? 'AI-generated' : 'real'}`;
  return { probability, threshold, label, band, headline, where, width: result.width, height: result.height,
    scored: result.scored ?? 'whole_image', faces: result.faces ?? [], explanation: result.explanation,
    timings: result.timings };
}

async function fetchImage(url, access) {
  const granted = await access;
  let response;
  try {
    response = await fetch(url);
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

async function classifyLocally(blob, settings) {
  await ensureOffscreenDocument();
  const reply = await chrome.runtime.sendMessage({
    target: 'offscreen',
    type: 'classify',
    // Extension messages are JSON: bytes travel as base64.
    image: await toBase64(blob),
    mimeType: blob.type,
    maxPixels: settings.maxLocalMegapixels * 1e6,
  });
  if (!reply) {
    throw new Error('the offscreen document did not answer');
  }
  return reply;
}

async function toBase64(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const chunks = [];
  for (let start = 0; start < bytes.length; start += 0x8000) {
    chunks.push(String.fromCharCode(...bytes.subarray(start, start + 0x8000)));
  }
  return btoa(chunks.join(''));
}

let creatingOffscreen = null;

async function ensureOffscreenDocument() {
  const contexts = await chrome.runtime.getContexts({
    contextTypes: ['OFFSCREEN_DOCUMENT'],
    documentUrls: [chrome.runtime.getURL(OFFSCREEN_PAGE)],
  });
  if (contexts.length > 0) {
    return;
  }
  creatingOffscreen ??= chrome.offscreen
    .createDocument({
      url: OFFSCREEN_PAGE,
      reasons: ['WORKERS'],
      justification: 'Runs the face model with TensorFlow.js (WebAssembly), which needs a document that outlives the service worker.',
    })
    .finally(() => {
      creatingOffscreen = null;
    });
  await creatingOffscreen;
}

async function classifyOnServer(blob, settings, explain = true) {
  // The server alone can explain a verdict: the TF.js graph has no gradients.
  const endpoint = `${settings.serverUrl.trim().replace(/\/+$/, '')}/v1/detect${explain ? '?explain=1' : ''}`;
  const form = new FormData();
  form.append('image', blob, 'image');
  let response;
  try {
    response = await fetch(endpoint, { method: 'POST', body: form });
  } catch (error) {
    throw new CheckError('server_unreachable', `The server at ${settings.serverUrl} could not be reached (${error.message}).`);
  }
  const body = await response.json().catch(() => null);
  // A server that cannot explain (TF Serving behind it) can still judge.
  if (explain && body?.error?.code === 'explanation_unavailable') {
    return classifyOnServer(blob, settings, false);
  }
  if (!response.ok || typeof body?.probability_fake !== 'number') {
    const reason = body?.error?.message ?? `it answered ${response.status}`;
    throw new CheckError('server_error', `The server could not check it: ${reason}.`);
  }
  return body;
}

async function showOnPage(tabId, frameId, srcUrl, verdict) {
  // An image in a frame from another site may be out of reach: the verdict
  // then shows in the top frame, in a corner.
  for (const frame of new Set([frameId, 0])) {
    try {
      await chrome.scripting.executeScript({ target: { tabId, frameIds: [frame] }, func: showVerdict, args: [srcUrl, verdict] });
      return;
    } catch (error) {
      console.warn(`AI face check: could not show the verdict in frame ${frame}: ${error.message}`, verdict);
    }
  }
}

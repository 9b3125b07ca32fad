// User settings, kept in chrome.storage.local.
export const DEFAULTS = {
  // Base URL of a detection service (POST {serverUrl}/v1/detect); empty: none.
  serverUrl: '',
  // On: nothing leaves the machine, whatever serverUrl says.
  localOnly: true,
  // Larger images are sent to the service (when allowed) or scaled down to
  // this size to be checked in the browser: decoding them at full size costs
  // memory, and the service scores crops at full resolution.
  maxLocalMegapixels: 16,
  // PEM certificates of the C2PA signers whose captures count as trusted (the
  // service's TRUST_ANCHORS); none by default.
  trustAnchors: '',
  // The service's API key (its API_KEYS_FILE), and the origin it was saved for:
  // it is sent to that origin only, never to another server set later.
  apiKey: '',
  apiKeyOrigin: '',
};
export const MEGAPIXELS = { min: 0.1, max: 80 };

// Given an object, storage.get fills in its values for the keys never saved.
export function loadSettings() {
  return chrome.storage.local.get(DEFAULTS);
}

export function serverAllowed(settings) {
  return !settings.localOnly && settings.serverUrl.trim() !== '';
}

const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/i;

// Why a service URL cannot be used, or null: images travel to it, so it must
// be https unless the service runs on this machine.
export function serverUrlProblem(url) {
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return 'The server URL is not a URL: write it as https://host or http://localhost:5000.';
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    return 'The server URL must start with https:// (or http:// for a service on this machine).';
  }
  if (parsed.protocol === 'http:' && !LOOPBACK.test(parsed.hostname)) {
    return `The server URL must use https:// unless the service runs on this machine (localhost, 127.0.0.1, [::1]): `
      + `images sent to http://${parsed.host} could be read or changed on the way.`;
  }
  if (parsed.username || parsed.password || parsed.search || parsed.hash) {
    return 'The server URL must be the service\'s base address, without a user name, password, query or #fragment.';
  }
  return null;
}

// The settings a form asks for, or the first reason to refuse them: nothing
// is stored unless all of them are valid.
export function checkedSettings({ localOnly, serverUrl, maxLocalMegapixels, apiKey = '' }) {
  const url = serverUrl.trim();
  const problem = url === '' ? null : serverUrlProblem(url);
  if (problem) {
    return { problem };
  }
  const key = apiKey.trim();
  if (key && (url === '' || !API_KEY.test(key))) {
    return { problem: url === '' ? 'An API key is only sent to your detection service: set its URL first.'
      : 'The API key must be the printable characters your service gave you, without spaces.' };
  }
  const megapixels = Number(String(maxLocalMegapixels).trim());
  if (String(maxLocalMegapixels).trim() === '' || !Number.isFinite(megapixels)
      || megapixels < MEGAPIXELS.min || megapixels > MEGAPIXELS.max) {
    return { problem: `The largest image checked in the browser must be a number of megapixels from ${MEGAPIXELS.min} `
      + `to ${MEGAPIXELS.max}; ${JSON.stringify(String(maxLocalMegapixels))} was not saved.` };
  }
  return { settings: { localOnly: Boolean(localOnly), serverUrl: url, maxLocalMegapixels: megapixels, apiKey: key,
    apiKeyOrigin: key ? new URL(url).origin : '' } };
}

// What a key may be: it travels in a header (RFC 9110 token68 and the like).
const API_KEY = /^[\x21-\x7e]{1,512}$/;

// The headers for a request to the service at `url`: the API key only when it was saved for that origin.
export function serviceHeaders(settings, url) {
  return settings.apiKey && settings.apiKeyOrigin === new URL(url).origin
    ? { Authorization: `Bearer ${settings.apiKey}` } : {};
}

// The host permission pattern for a URL's site (match patterns take no port).
export function originPattern(url) {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.hostname}/*`;
}

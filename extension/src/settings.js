// User settings, kept in chrome.storage.local.
export const DEFAULTS = {
  // Base URL of a detection service (POST {serverUrl}/v1/detect); empty: none.
  serverUrl: '',
  // On: nothing leaves the machine, whatever serverUrl says.
  localOnly: true,
  // Larger images go to the server (when allowed): decoding them in the
  // browser costs memory, and the server can score crops at full resolution.
  maxLocalMegapixels: 16,
};

// Given an object, storage.get fills in its values for the keys never saved.
export function loadSettings() {
  return chrome.storage.local.get(DEFAULTS);
}

export function serverAllowed(settings) {
  return !settings.localOnly && settings.serverUrl.trim() !== '';
}

// The host permission pattern for a URL's site (match patterns take no port).
export function originPattern(url) {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.hostname}/*`;
}

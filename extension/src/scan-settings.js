// The settings of page scans ("Check every face on this page"), kept in
// chrome.storage.local beside settings.js's.
export const SCAN_DEFAULTS = {
  // The most images one scan of a page checks.
  scanLimit: 100,
  // Sites ("https://host") whose pages are scanned as they load; none by default.
  autoScanSites: [],
};
export const SCAN_LIMIT = { min: 1, max: 1000 };

export function loadScanSettings() {
  return chrome.storage.local.get(SCAN_DEFAULTS);
}

// The cap a form asks for, or why it is refused.
export function checkedScanLimit(text) {
  const value = Number(String(text).trim());
  if (String(text).trim() === '' || !Number.isInteger(value) || value < SCAN_LIMIT.min || value > SCAN_LIMIT.max) {
    return { problem: `The most images a page scan checks must be a whole number from ${SCAN_LIMIT.min} to `
      + `${SCAN_LIMIT.max}; ${JSON.stringify(String(text))} was not saved.` };
  }
  return { scanLimit: value };
}

// "https://host[:port]" for what a user typed (a site or any address on it),
// or why it is refused.
export function checkedSite(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    return { problem: `${JSON.stringify(String(text).trim())} is not a site's address: write it as https://example.org.` };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return { problem: 'Only web sites (https:// or http://) can be scanned automatically.' };
  }
  return { site: url.origin };
}

export function autoScans(settings, pageUrl) {
  try {
    return settings.autoScanSites.includes(new URL(pageUrl).origin);
  } catch {
    return false;
  }
}

// What the service worker remembers of the images it checked: the file and
// its SHA-256 by tab and URL, so that "This verdict is wrong" keeps the very
// bytes that were judged, and, within a page scan, the verdict by SHA-256,
// so that the same file under another URL is scored once.
// In memory only: a restarted worker has forgotten it (a report then
// fetches the image again and checks it is the same file).

// Files kept for reports, at most this many bytes in all (oldest dropped first).
const KEPT_BYTES = 64 * 1024 * 1024;

export async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest('SHA-256', await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

const files = new Map(); // `${tabId} ${srcUrl}` -> {blob, sha256, verdict}
const scans = new Map(); // tabId -> Map(sha256 -> Promise<verdict>)

function keep(key, entry) {
  files.delete(key);
  files.set(key, entry);
  let total = 0;
  for (const [name, { blob }] of [...files].reverse()) {
    total += blob.size;
    if (total > KEPT_BYTES && name !== key) {
      files.delete(name);
    }
  }
}

// The verdict of check(blob) for the fetched file, with its sha256. In a
// scan (reuse), a file already judged in this tab's scan is not scored again:
// its verdict is given with sameFileAs, the URL it was checked under.
export async function checkFile(tabId, srcUrl, blob, check, { reuse = false } = {}) {
  const sha256 = await sha256Hex(blob);
  const known = reuse ? scans.get(tabId) : null;
  let verdict;
  if (known?.has(sha256)) {
    const first = await known.get(sha256);
    verdict = { ...first, sameFileAs: first.srcUrl };
  } else {
    const judged = check().then((result) => ({ ...result, sha256, srcUrl }));
    known?.set(sha256, judged.catch((error) => ({ error: error.code ?? 'failed', message: error.message, sha256, srcUrl })));
    verdict = await judged;
  }
  keep(`${tabId} ${srcUrl}`, { blob, sha256, verdict });
  return verdict;
}

export function checkedFile(tabId, srcUrl) {
  return files.get(`${tabId} ${srcUrl}`) ?? null;
}

// A new scan of a tab starts afresh (the page may have changed).
export function startScan(tabId) {
  scans.set(tabId, new Map());
}

export function forgetTab(tabId) {
  scans.delete(tabId);
  for (const key of files.keys()) {
    if (key.startsWith(`${tabId} `)) {
      files.delete(key);
    }
  }
}

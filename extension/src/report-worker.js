// "This verdict is wrong", in the service worker: the report is built from
// what the worker itself checked (the file, its SHA-256, the verdict), not
// from what the page says, and stored locally (reports.js). Nothing is sent.
import { toBase64 } from './bytes.js';
import { checkedFile, sha256Hex } from './checked-files.js';
import { addReport, LABELS } from './reports.js';

// A thumbnail: at most this many pixels (256 x 256), re-encoded without metadata.
const THUMBNAIL_PIXELS = 256 * 256;
// A larger file is kept as a thumbnail only.
const MAX_KEPT_BYTES = 16 * 1024 * 1024;

let modelInfo = null;

function localModel() {
  modelInfo ??= fetch(chrome.runtime.getURL('model/metadata.json')).then((response) => response.json())
    .then(({ name, version }) => ({ name, version }))
    .catch(() => ({ name: null, version: null }));
  return modelInfo;
}

// The file that was judged: remembered, or fetched again and checked to be
// the same bytes.
async function judgedFile(tabId, message, fetchImage) {
  const remembered = checkedFile(tabId, message.srcUrl);
  if (remembered) {
    return remembered;
  }
  const blob = await fetchImage(message.srcUrl, Promise.resolve(true));
  const sha256 = await sha256Hex(blob);
  if (sha256 !== message.sha256) {
    throw new Error('The image is not the file that was checked any more: check it again, then report it.');
  }
  return { blob, sha256, verdict: null };
}

// The verdict as reported: what the worker gave, or (after a restart of the
// worker) the page's copy of it, numbers checked.
function verdictRecord(verdict) {
  const number = (value) => (typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1 ? value : null);
  return {
    probability: number(verdict?.probability), threshold: number(verdict?.threshold),
    verdict: ['likely_ai', 'inconclusive', 'no_sign'].includes(verdict?.words?.code) ? verdict.words.code : null,
    where: verdict?.where === 'server' ? 'server' : 'local', scored: verdict?.scored === 'faces' ? 'faces' : 'whole_image',
    faces: Array.isArray(verdict?.faces) ? verdict.faces.length : 0,
  };
}

// message: {srcUrl, sha256, label: 'real' | 'fake', thumbnail, keepPageUrl,
// pageUrl, verdict}. Resolves to {ok, count, already?} or {ok: false, message}.
export async function recordReport(message, tab, { fetchImage, toOffscreen }) {
  if (!Object.hasOwn(LABELS, message?.label)) {
    return { ok: false, message: 'A report says whether the image is a real photo or AI-generated.' };
  }
  try {
    const { blob, sha256, verdict } = await judgedFile(tab.id, message, fetchImage);
    const judged = verdictRecord(verdict ?? message.verdict);
    const thumbnail = Boolean(message.thumbnail) || blob.size > MAX_KEPT_BYTES;
    let image;
    if (thumbnail) {
      const encoded = await toOffscreen('encode', blob, { maxPixels: THUMBNAIL_PIXELS });
      if (!encoded.ok) {
        return { ok: false, message: encoded.message };
      }
      image = encoded.image;
    } else {
      image = await toBase64(blob);
    }
    const keepUrls = Boolean(message.keepPageUrl);
    const record = {
      sha256, label: message.label, kept: thumbnail ? 'thumbnail' : 'image', created: new Date().toISOString(),
      verdict: judged, model: judged.where === 'server' ? { name: 'detection service', version: null,
        service: verdict?.service ?? null } : await localModel(),
      page_url: keepUrls && typeof tab.url === 'string' ? tab.url : null,
      image_url: keepUrls && /^https?:/i.test(message.srcUrl) ? message.srcUrl : null,
    };
    return await addReport(record, image);
  } catch (error) {
    return { ok: false, message: error.message };
  }
}

// Reports of wrong verdicts, kept in chrome.storage.local and never sent
// anywhere: an index of records ("reports") and each kept image apart
// ("report-image:<sha256>"), so that listing them does not read the images.
// Exported as a zip in the 140k layout (real/, fake/) with reports.jsonl,
// which `python -m training.evaluate` reads as a regression set
// (training/reports.py).
import { fromBase64 } from './bytes.js';
import { zipStore } from './zip.js';

const INDEX = 'reports';
export const LABELS = { real: 'a real photo', fake: 'AI-generated' };
const imageKey = (sha256) => `report-image:${sha256}`;

export async function listReports() {
  const { [INDEX]: reports } = await chrome.storage.local.get({ [INDEX]: [] });
  return reports;
}

// Storage is read, changed and written back: one change at a time.
let pending = Promise.resolve();
function serially(change) {
  const result = pending.then(change);
  pending = result.catch(() => null);
  return result;
}

// record: {sha256, label, ...}; image: the kept file, base64. One report per
// image: the same image reported again with the same label changes nothing,
// with the other label it is refused (delete the first in the options).
// Resolves to {ok, count, already?} or {ok: false, message}.
export function addReport(record, image) {
  return serially(async () => {
    const reports = await listReports();
    const earlier = reports.find((report) => report.sha256 === record.sha256);
    if (earlier && earlier.label !== record.label) {
      return { ok: false, message: `This image was reported as ${LABELS[earlier.label]} on ${earlier.created.slice(0, 10)}; `
        + 'delete that report in the options first to change it.' };
    }
    if (earlier) {
      return { ok: true, already: true, count: reports.length };
    }
    await chrome.storage.local.set({ [imageKey(record.sha256)]: image, [INDEX]: [...reports, record] });
    return { ok: true, count: reports.length + 1 };
  });
}

export function deleteReport(sha256) {
  return serially(async () => {
    const reports = await listReports();
    await chrome.storage.local.set({ [INDEX]: reports.filter((report) => report.sha256 !== sha256) });
    await chrome.storage.local.remove(imageKey(sha256));
  });
}

export async function reportImage(sha256) {
  const { [imageKey(sha256)]: image } = await chrome.storage.local.get(imageKey(sha256));
  return image ?? null;
}

// The file's type from its first bytes (a site's Content-Type can lie),
// for the name it gets in the export.
export function imageExtension(bytes) {
  const starts = (...values) => values.every((value, index) => bytes[index] === value);
  if (starts(0xff, 0xd8, 0xff)) {
    return 'jpg';
  }
  if (starts(0x89, 0x50, 0x4e, 0x47)) {
    return 'png';
  }
  if (starts(0x47, 0x49, 0x46, 0x38)) {
    return 'gif';
  }
  if (starts(0x52, 0x49, 0x46, 0x46) && String.fromCharCode(...bytes.subarray(8, 12)) === 'WEBP') {
    return 'webp';
  }
  if (starts(0x42, 0x4d)) {
    return 'bmp';
  }
  return 'bin';
}

// The zip: real/ and fake/ by the user's label, each image named by its
// SHA-256, and reports.jsonl, one line per report, which names its file.
export async function exportZip(reports) {
  const files = [];
  const lines = [];
  for (const report of reports) {
    const image = await reportImage(report.sha256);
    if (image === null) {
      continue; // deleted meanwhile
    }
    const bytes = fromBase64(image);
    const file = `${report.label}/${report.sha256}.${imageExtension(bytes)}`;
    files.push({ name: file, bytes });
    lines.push(JSON.stringify({ file, ...report }));
  }
  const jsonl = new TextEncoder().encode(lines.map((line) => `${line}\n`).join(''));
  return { zip: zipStore([{ name: 'reports.jsonl', bytes: jsonl }, ...files]), count: lines.length };
}

// What a file says about its origin, in the browser: the mirror of
// aiface/provenance_rule.py (the rule, with its tables from provenance.json,
// generated from it) and of aiface/provenance.py's small readers (XMP packet,
// PNG text chunks, EXIF IFD0). C2PA manifests are read by the official reader
// (c2pa-client.js). tests/test_provenance_browser.py runs both runtimes on the
// same fixtures.
import RULES from './provenance.json' with { type: 'json' };

export const DECLARED_AI = 'declared_ai';
export const WATERMARKED_AI = 'watermarked_ai';
export const { declared_words: DECLARED_WORDS } = RULES;

const MAX_XMP_BYTES = 1 << 20;
const MAX_TEXT_BYTES = 64 * 1024;
const MAX_CHUNKS = 10000;
const EXIF_FIELDS = { 0x0131: 'exif:Software', 0x010f: 'exif:Make', 0x0110: 'exif:Model', 0x013b: 'exif:Artist' };
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const latin1 = new TextDecoder('latin1');
const utf8 = new TextDecoder('utf-8');

export const sourceTypeName = (value) => value.trim().replace(/\/+$/, '').split('/').pop();

// The first known generator whose pattern a field's text matches: {name, field}, or null.
export function generator(texts) {
  for (const entry of RULES.generators) {
    for (const field of entry.fields) {
      if (texts[field] && new RegExp(entry.pattern, 'i').test(texts[field])) {
        return { name: entry.name, field };
      }
    }
  }
  return null;
}

const signerName = (c2pa) => c2pa.signer?.organization || c2pa.signer?.common_name || 'an unnamed signer';
const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));

// The provenance answer for findings {c2pa, texts, watermark}, as aiface.provenance_rule.summarise.
export function summarise({ c2pa = null, texts = {}, watermark = null }) {
  const xmpType = texts['xmp:DigitalSourceType'] ? sourceTypeName(texts['xmp:DigitalSourceType']) : null;
  const named = generator(texts);
  const sound = c2pa !== null && (c2pa.validation === 'valid' || c2pa.validation === 'trusted');
  const types = sound ? c2pa.digital_source_types.map(sourceTypeName) : [];
  let status;
  let declaredBy = null;
  if (types.some((type) => RULES.ai_source_types.includes(type))) {
    [status, declaredBy] = [DECLARED_AI, `Content Credentials signed by ${signerName(c2pa)}`];
  } else if (RULES.ai_source_types.includes(xmpType)) {
    [status, declaredBy] = [DECLARED_AI, `its XMP metadata (DigitalSourceType ${xmpType})`];
  } else if (named !== null) {
    [status, declaredBy] = [DECLARED_AI, `${named.name} metadata (${named.field})`];
  } else if (watermark !== null) {
    [status, declaredBy] = [WATERMARKED_AI, `an invisible ${watermark.name} watermark`];
  } else if (c2pa !== null && !sound) {
    status = 'tampered';
  } else if (types.some((type) => RULES.capture_source_types.includes(type))) {
    status = c2pa.validation === 'trusted' ? 'trusted_capture' : 'untrusted_capture';
  } else {
    status = sound ? 'signed' : 'none';
  }
  const fields = {
    by: declaredBy ?? (c2pa ? signerName(c2pa) : ''),
    problems: c2pa?.problems?.join(', ') || 'unknown',
    generator: c2pa?.claim_generator || 'an unnamed tool',
    trust: sound && c2pa.validation === 'trusted' ? 'trusted' : 'not trusted',
    ...(watermark && { mark: watermark.name, matching: watermark.matching_bits, bits: watermark.bits }),
  };
  return { status, declared_by: declaredBy, line: fill(RULES.lines[status], fields), c2pa,
    digital_source_type: xmpType, generator: named, watermark };
}

// The verdict shown: declared_ai when the file declares AI generation or is watermarked, else the pixels'.
export const combine = (pixelVerdict, provenance) =>
  ([DECLARED_AI, WATERMARKED_AI].includes(provenance.status) ? DECLARED_AI : pixelVerdict);

function indexOf(bytes, text, from = 0, to = bytes.length) {
  const needle = [...text].map((c) => c.charCodeAt(0));
  const last = Math.min(to, bytes.length) - needle.length;
  for (let at = bytes.indexOf(needle[0], from); at !== -1 && at <= last; at = bytes.indexOf(needle[0], at + 1)) {
    if (needle.every((value, k) => bytes[at + k] === value)) {
      return at;
    }
  }
  return -1;
}

function xmpTexts(bytes) {
  const start = indexOf(bytes, '<x:xmpmeta');
  if (start < 0) {
    return {};
  }
  const end = indexOf(bytes, '</x:xmpmeta>', start, start + MAX_XMP_BYTES);
  const packet = utf8.decode(bytes.subarray(start, end >= 0 ? end : start + MAX_XMP_BYTES));
  const texts = {};
  for (const [field, pattern] of Object.entries(RULES.xmp_fields)) {
    const match = new RegExp(pattern).exec(packet);
    if (match) {
      texts[field] = match.slice(1).find((group) => group !== undefined);
    }
  }
  return texts;
}

// Inflated to at most MAX_TEXT_BYTES: a zip bomb in a chunk costs no more.
async function inflate(bytes, decoder) {
  try {
    const reader = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('deflate')).getReader();
    const parts = [];
    let size = 0;
    while (size < MAX_TEXT_BYTES) {
      const { done, value } = await reader.read();
      if (done) {
        break;
      }
      parts.push(value);
      size += value.length;
    }
    reader.cancel().catch(() => {});
    const joined = new Uint8Array(size);
    parts.reduce((at, part) => (joined.set(part, at), at + part.length), 0);
    return decoder.decode(joined.subarray(0, MAX_TEXT_BYTES));
  } catch {
    return null;
  }
}

async function pngTexts(bytes) {
  if (!PNG_SIGNATURE.every((value, k) => bytes[k] === value)) {
    return {};
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts = {};
  let at = 8;
  for (let chunk = 0; chunk < MAX_CHUNKS && at + 8 <= bytes.length; chunk += 1) {
    const length = view.getUint32(at);
    const kind = latin1.decode(bytes.subarray(at + 4, at + 8));
    const body = bytes.subarray(at + 8, at + 8 + length);
    at += 12 + length;
    if (kind === 'IEND' || body.length < length) {
      break;
    }
    const zero = body.indexOf(0);
    const [keyword, rest] = zero < 0 ? [body, new Uint8Array()] : [body.subarray(0, zero), body.subarray(zero + 1)];
    const key = `png:${latin1.decode(keyword.subarray(0, 79))}`;
    let text;
    if (kind === 'tEXt') {
      text = latin1.decode(rest.subarray(0, MAX_TEXT_BYTES));
    } else if (kind === 'zTXt') {
      text = await inflate(rest.subarray(1), latin1);
    } else if (kind === 'iTXt' && rest.length >= 2) {
      // Skips the language and translated keyword.
      let value = rest.subarray(2);
      for (let skip = 0; skip < 2 && value.indexOf(0) >= 0; skip += 1) {
        value = value.subarray(value.indexOf(0) + 1);
      }
      text = rest[0] ? await inflate(value, utf8) : utf8.decode(value.subarray(0, MAX_TEXT_BYTES));
    } else {
      continue;
    }
    if (text !== null && !(key in texts)) {
      texts[key] = text.slice(0, MAX_TEXT_BYTES);
    }
  }
  return texts;
}

// The TIFF block of a JPEG's APP1 Exif segment, a PNG's eXIf chunk or a WebP's EXIF chunk.
function exifBlock(bytes) {
  if (bytes[0] === 0xff && bytes[1] === 0xd8) {
    for (let at = 2; at + 4 <= bytes.length && bytes[at] === 0xff;) {
      const marker = bytes[at + 1];
      const length = (bytes[at + 2] << 8) | bytes[at + 3];
      if (marker === 0xda || marker === 0xd9) {
        break;
      }
      if (marker === 0xe1 && indexOf(bytes, 'Exif\0\0', at + 4, at + 10) === at + 4) {
        return bytes.subarray(at + 10, at + 2 + length);
      }
      at += 2 + length;
    }
    return null;
  }
  const chunk = PNG_SIGNATURE.every((value, k) => bytes[k] === value) ? indexOf(bytes, 'eXIf')
    : indexOf(bytes, 'RIFF', 0, 4) === 0 ? indexOf(bytes, 'EXIF', 12) : -1;
  if (chunk < 4) {
    return null;
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = bytes[0] === 0x89 ? view.getUint32(chunk - 4) : view.getUint32(chunk + 4, true);
  const start = bytes[0] === 0x89 ? chunk + 4 : chunk + 8;
  return bytes.subarray(start, start + length);
}

function exifTexts(bytes) {
  const tiff = exifBlock(bytes);
  if (!tiff || tiff.length < 8) {
    return {};
  }
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const little = tiff[0] === 0x49;
  const texts = {};
  try {
    const ifd = view.getUint32(4, little);
    const count = view.getUint16(ifd, little);
    for (let entry = 0; entry < count; entry += 1) {
      const at = ifd + 2 + 12 * entry;
      const field = EXIF_FIELDS[view.getUint16(at, little)];
      const size = view.getUint32(at + 4, little);
      if (field && view.getUint16(at + 2, little) === 2 && size <= MAX_TEXT_BYTES) {
        const start = size <= 4 ? at + 8 : view.getUint32(at + 8, little);
        const value = latin1.decode(tiff.subarray(start, start + size)).replace(/^[\0 ]+|[\0 ]+$/g, '');
        if (value) {
          texts[field] = value;
        }
      }
    }
  } catch {
    // A block cut short: the fields read so far.
  }
  return texts;
}

// The metadata fields that can name a generator or a source type, as aiface.provenance.read_texts.
export async function readTexts(bytes) {
  return { ...exifTexts(bytes), ...(await pngTexts(bytes)), ...xmpTexts(bytes) };
}

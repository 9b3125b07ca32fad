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

const { limits: LIMITS } = RULES;
const MAX_TEXT_BYTES = LIMITS.text_bytes;
const SPACES = /^[ \t\r\n]+|[ \t\r\n]+$/g;
const EXIF_FIELDS = { 0x0131: 'exif:Software', 0x010f: 'exif:Make', 0x0110: 'exif:Model', 0x013b: 'exif:Artist' };
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const latin1 = new TextDecoder('latin1');
const utf8 = new TextDecoder('utf-8');

export const sourceTypeName = (value) => value.replace(SPACES, '').replace(/\/+$/, '').split('/').pop();

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

const fill = (template, values) => template.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));

// The codes of problems ("timeout: ..." -> "timeout"), once each, in order.
function codes(problems) {
  const found = problems.map((problem) => new RegExp(RULES.problem_code).exec(String(problem))?.[0]).filter(Boolean);
  return [...new Set(found)];
}

// The provenance answer for findings {c2pa, texts, unread, watermark}, as aiface.provenance_rule.summarise.
export function summarise({ c2pa = null, texts = {}, unread = [], watermark = null }) {
  const validation = c2pa?.validation ?? null;
  const xmpType = texts['xmp:DigitalSourceType'] ? sourceTypeName(texts['xmp:DigitalSourceType']) : null;
  const named = generator(texts);
  const sound = validation === 'valid' || validation === 'trusted';
  const types = sound ? c2pa.digital_source_types.map(sourceTypeName) : [];
  const notRead = codes([...(validation === 'unavailable' ? c2pa.problems : []), ...(unread ?? [])]);
  let status;
  let declaredBy = null;
  if (types.some((type) => RULES.ai_source_types.includes(type))) {
    [status, declaredBy] = [DECLARED_AI, 'its Content Credentials'];
  } else if (RULES.ai_source_types.includes(xmpType)) {
    [status, declaredBy] = [DECLARED_AI, `its XMP metadata (DigitalSourceType ${xmpType})`];
  } else if (named !== null) {
    [status, declaredBy] = [DECLARED_AI, `${named.name} metadata (${named.field})`];
  } else if (watermark !== null) {
    [status, declaredBy] = [WATERMARKED_AI, `an invisible ${watermark.name} watermark`];
  } else if (validation === 'invalid' || validation === 'unreadable') {
    status = 'tampered';
  } else if (notRead.length) {
    status = 'unavailable';
  } else if (validation === 'remote') {
    status = 'remote';
  } else if (types.some((type) => RULES.capture_source_types.includes(type))) {
    status = validation === 'trusted' ? 'trusted_capture' : 'untrusted_capture';
  } else {
    status = sound ? 'signed' : 'none';
  }
  const reasons = RULES.unavailable_reasons;
  const fields = {
    by: declaredBy,
    problems: codes(c2pa?.problems ?? []).join(', ') || 'unknown',
    why: notRead.map((code) => reasons[code] ?? reasons.over_limit).join('; '),
    trust: validation === 'trusted' ? 'trusted' : 'not trusted',
    ...(watermark && { mark: watermark.name, matching: watermark.matching_bits, bits: watermark.bits }),
  };
  return { status, declared_by: declaredBy, line: fill(RULES.lines[status], fields), c2pa,
    digital_source_type: xmpType, generator: named, watermark };
}

// The verdict shown: declared_ai when the file declares AI generation or is watermarked, else the pixels'.
export const combine = (pixelVerdict, provenance) =>
  ([DECLARED_AI, WATERMARKED_AI].includes(provenance.status) ? DECLARED_AI : pixelVerdict);

// What one file's metadata readers may still spend (RULES.limits), and why they stopped.
export class Budget {
  constructor() {
    this.textBytes = LIMITS.texts_bytes;
    this.unread = [];
  }

  spend(size) {
    this.textBytes -= size;
    if (this.textBytes < 0) {
      throw new OverLimit(`over_limit: more than ${LIMITS.texts_bytes.toLocaleString('en')} bytes of PNG text`);
    }
  }

  stop(error) {
    this.unread.push(error.message);
  }
}

class OverLimit extends Error {}

const bytesOf = (text) => [...text].map((c) => c.charCodeAt(0));

function indexOf(bytes, needle, from = 0, to = bytes.length) {
  needle = typeof needle === 'string' ? bytesOf(needle) : needle;
  const last = Math.min(to, bytes.length) - needle.length;
  for (let at = bytes.indexOf(needle[0], from); at !== -1 && at <= last; at = bytes.indexOf(needle[0], at + 1)) {
    if (needle.every((value, k) => bytes[at + k] === value)) {
      return at;
    }
  }
  return -1;
}

const ENCODINGS = {
  'utf-8': bytesOf,
  'utf-16be': (text) => bytesOf(text).flatMap((c) => [0, c]),
  'utf-16le': (text) => bytesOf(text).flatMap((c) => [c, 0]),
};

// The first XMP packet's text, bounded, in whichever of UTF-8, UTF-16BE, UTF-16LE it is written.
function xmpPacket(bytes) {
  let best = null;
  for (const [encoding, encode] of Object.entries(ENCODINGS)) {
    for (const marker of RULES.xmp_starts) {
      const at = indexOf(bytes, encode(marker));
      if (at >= 0 && (best === null || at < best.at)) {
        best = { at, encoding };
      }
    }
  }
  if (best === null) {
    return '';
  }
  const packet = new TextDecoder(best.encoding).decode(bytes.subarray(best.at, best.at + LIMITS.xmp_bytes));
  const end = new RegExp(RULES.xmp_end).exec(packet);
  return end ? packet.slice(0, end.index) : packet;
}

const escaped = (text) => text.replace(/[.*+?^${}()|[\]\\\-&~#/:]/g, '\\$&');

function resolveReferences(value) {
  return value.replace(new RegExp(RULES.xmp_reference, 'g'), (_, decimal, hexadecimal, name) => {
    if (name) {
      return RULES.xmp_entities[name];
    }
    const code = decimal ? Number.parseInt(decimal, 10) : Number.parseInt(hexadecimal, 16);
    return code > 0 && code <= 0x10ffff && !(code >= 0xd800 && code <= 0xdfff) ? String.fromCodePoint(code) : '\ufffd';
  });
}

function xmpTexts(bytes) {
  const packet = xmpPacket(bytes);
  if (!packet) {
    return {};
  }
  const texts = {};
  for (const [field, spec] of Object.entries(RULES.xmp_fields)) {
    const bound = new RegExp(RULES.xmp_prefix.replaceAll('%NAMESPACE%', escaped(spec.namespace)), 'g');
    const found = [...new Set([...packet.matchAll(bound)].map((match) => match[1]))].slice(0, LIMITS.xmp_prefixes);
    const prefixes = [...new Set([spec.prefix, ...found])].sort(); // a packet could bind thousands
    const names = prefixes.map(escaped).join('|');
    const match = new RegExp(RULES.xmp_value.replaceAll('%PROPERTY%', `(?:${names}):${spec.name}`)).exec(packet);
    if (match) {
      texts[field] = resolveReferences(match.slice(1).find((group) => group !== undefined)).replace(SPACES, '');
    }
  }
  return texts;
}

// Inflated to at most MAX_TEXT_BYTES: a zip bomb in a chunk costs no more.
async function inflate(bytes, decoder, budget) {
  let joined;
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
    joined = new Uint8Array(size);
    parts.reduce((at, part) => (joined.set(part, at), at + part.length), 0);
  } catch {
    return null;
  }
  const kept = joined.subarray(0, MAX_TEXT_BYTES);
  budget.spend(kept.length);
  return decoder.decode(kept);
}

function plain(bytes, decoder, budget) {
  const kept = bytes.subarray(0, MAX_TEXT_BYTES);
  budget.spend(kept.length);
  return decoder.decode(kept);
}

async function pngTexts(bytes, budget) {
  if (!PNG_SIGNATURE.every((value, k) => bytes[k] === value)) {
    return {};
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const texts = {};
  let at = 8;
  try {
    for (let chunk = 0; chunk <= LIMITS.chunks && at + 8 <= bytes.length; chunk += 1) {
      if (chunk === LIMITS.chunks) {
        throw new OverLimit(`over_limit: more than ${LIMITS.chunks.toLocaleString('en')} PNG chunks`);
      }
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
        text = plain(rest, latin1, budget);
      } else if (kind === 'zTXt' && rest.length >= 1 && rest[0] === 0) {
        text = await inflate(rest.subarray(1), latin1, budget);
      } else if (kind === 'iTXt' && rest.length >= 2 && rest[1] === 0 && (rest[0] === 0 || rest[0] === 1)) {
        // Skips the language and translated keyword.
        let value = rest.subarray(2);
        for (let skip = 0; skip < 2 && value.indexOf(0) >= 0; skip += 1) {
          value = value.subarray(value.indexOf(0) + 1);
        }
        text = rest[0] ? await inflate(value, utf8, budget) : plain(value, utf8, budget);
      } else {
        continue; // another chunk, or a compression method that is not deflate (Pillow skips it too)
      }
      if (text !== null && !(key in texts)) {
        texts[key] = text.slice(0, MAX_TEXT_BYTES);
      }
    }
  } catch (error) {
    if (!(error instanceof OverLimit)) {
      throw error;
    }
    budget.stop(error);
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

// The metadata fields that can name a generator or a source type, as aiface.provenance.read_texts;
// budget.unread says what was not read.
export async function readTexts(bytes, budget = new Budget()) {
  const png = await pngTexts(bytes, budget);
  // A PNG's XMP is an iTXt chunk, often compressed: read there when the file's bytes show none.
  let xmp = xmpTexts(bytes);
  if (Object.keys(xmp).length === 0) {
    xmp = xmpTexts(new TextEncoder().encode(png['png:XML:com.adobe.xmp'] ?? ''));
  }
  return { ...exifTexts(bytes), ...png, ...xmp };
}

// Whether a file may hold a C2PA manifest or its address (RULES.manifest_markers); others skip the C2PA reader.
export const mayHoldManifest = (bytes) => RULES.manifest_markers.some((marker) => indexOf(bytes, marker) >= 0);

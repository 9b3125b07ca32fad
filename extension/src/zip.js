// A zip archive of files stored as they are (no compression: the images are
// compressed already), readable by Python's zipfile, unzip and every OS.
// No Zip64: an archive is refused past 4 GiB or 65,535 files.
const LIMIT = 0xffffffff;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) {
      c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    }
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i += 1) {
    crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

// MS-DOS date and time, which zip stores (local time, two-second steps).
function dosTime(date) {
  return {
    time: (date.getHours() << 11) | (date.getMinutes() << 5) | Math.floor(date.getSeconds() / 2),
    date: ((Math.max(date.getFullYear(), 1980) - 1980) << 9) | ((date.getMonth() + 1) << 5) | date.getDate(),
  };
}

// files: [{name, bytes: Uint8Array}], names with '/' between folders.
// Returns the archive as a Uint8Array.
export function zipStore(files, date = new Date()) {
  if (files.length > 0xffff) {
    throw new Error(`a zip without Zip64 holds at most 65535 files, not ${files.length}`);
  }
  const encoder = new TextEncoder();
  const stamp = dosTime(date);
  const locals = [];
  const centrals = [];
  let offset = 0;
  for (const { name, bytes } of files) {
    const encodedName = encoder.encode(name);
    const crc = crc32(bytes);
    // Version 2.0, bit 11: the name is UTF-8; method 0: stored.
    const common = [[20, 2], [0x0800, 2], [0, 2], [stamp.time, 2], [stamp.date, 2], [crc, 4], [bytes.length, 4],
      [bytes.length, 4], [encodedName.length, 2], [0, 2]];
    locals.push(fields([[0x04034b50, 4], ...common]), encodedName, bytes);
    centrals.push(fields([[0x02014b50, 4], [20, 2], ...common, [0, 2], [0, 2], [0, 2], [0, 4], [offset, 4]]),
      encodedName);
    offset += 30 + encodedName.length + bytes.length;
    if (offset > LIMIT) {
      throw new Error('the archive would be larger than 4 GiB, which a zip without Zip64 cannot hold');
    }
  }
  const centralSize = centrals.reduce((total, part) => total + part.length, 0);
  const end = fields([[0x06054b50, 4], [0, 2], [0, 2], [files.length, 2], [files.length, 2], [centralSize, 4],
    [offset, 4], [0, 2]]);
  const parts = [...locals, ...centrals, end];
  const archive = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let at = 0;
  for (const part of parts) {
    archive.set(part, at);
    at += part.length;
  }
  return archive;
}

// Little-endian fields: [[value, byte count], ...].
function fields(values) {
  const bytes = new Uint8Array(values.reduce((total, [, size]) => total + size, 0));
  const view = new DataView(bytes.buffer);
  let at = 0;
  for (const [value, size] of values) {
    if (size === 2) {
      view.setUint16(at, value, true);
    } else {
      view.setUint32(at, value, true);
    }
    at += size;
  }
  return bytes;
}

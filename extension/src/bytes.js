// Bytes through extension messages, which carry JSON only: base64 both ways.

// Chromium refuses an extension message over 64 MiB, and base64 turns 3 bytes
// into 4: a file whose encoding would not fit, with room left for the
// message's other fields (a tab capture among them), is refused here with a
// plain "too large" instead of a message the browser drops.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const ROOM_FOR_OTHER_FIELDS = 8 * 1024 * 1024;
export const MAX_ENCODED_FILE_BYTES = ((MAX_MESSAGE_BYTES - ROOM_FOR_OTHER_FIELDS) / 4) * 3;

export async function toBase64(blob) {
  if (blob.size > MAX_ENCODED_FILE_BYTES) {
    const error = new Error(`The file is ${(blob.size / 1048576).toFixed(1)} MB, too large to check: at most `
      + `${MAX_ENCODED_FILE_BYTES / 1048576} MB can be passed between the extension's parts.`);
    error.code = 'too_large';
    throw error;
  }
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const chunks = [];
  for (let start = 0; start < bytes.length; start += 0x8000) {
    chunks.push(String.fromCharCode(...bytes.subarray(start, start + 0x8000)));
  }
  return btoa(chunks.join(''));
}

export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

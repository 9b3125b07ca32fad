// C2PA Content Credentials in the offscreen document: the official reader
// (@contentauth/c2pa-web's worker and c2pa-rs WebAssembly, copied into
// dist/c2pa/ by build.mjs), driven through its worker's messages. Its own
// createC2pa cannot be used here: it starts the worker from a blob: URL or an
// https: one, and an MV3 extension page may start workers only from its own
// files. The finding has the shape aiface/provenance.py gives, under the same
// rules: nothing is ever fetched (a manifest at an address is `remote`), a file
// past the limits is not handed to the reader, and a read past its time ends
// the worker (WebAssembly cannot be interrupted otherwise) and answers
// `unavailable`, as do the reads it held up: never a broken manifest.
import RULES from './provenance.json' with { type: 'json' };
import { sourceTypeName } from './provenance.js';

const WORKER = 'dist/c2pa/c2pa_worker.js';
const WASM = 'dist/c2pa/c2pa_bg.wasm';
const TIMEOUT_MS = 2000;
const { items: MAX_ITEMS, jumbf_boxes: MAX_JUMBF_BOXES } = RULES.limits;
const UNTRUSTED = 'signingCredential.untrusted';
// What c2pa-rs says when a manifest lives at a URL it was told not to fetch (Display, Debug).
const REMOTE_MESSAGE = /must fetch remote manifests|RemoteManifestUrl/;
// Every setting that could reach the network, off (as aiface/provenance.py's OFFLINE).
const OFFLINE = { verify: { remote_manifest_fetch: false, ocsp_fetch: false },
  core: { allowed_network_hosts: [], max_decompressed_manifest_size_in_mb: 16 } };

// A read the worker could not finish: the worker was ended under it.
class Unavailable extends Error {}

let started = null;
const pending = new Map();
let nextId = 0;

// Ends the worker and answers every read it held `unavailable`; the next read starts a fresh one.
function stop(why) {
  const running = started;
  started = null;
  running?.then(({ worker }) => worker.terminate(), () => {});
  for (const call of pending.values()) {
    call.reject(new Unavailable(why));
  }
  pending.clear();
}

function start() {
  started ??= (async () => {
    const worker = new Worker(chrome.runtime.getURL(WORKER), { type: 'module' });
    worker.addEventListener('message', ({ data }) => {
      const call = pending.get(data?.id);
      if (data?.channelName === 'default' && call) {
        pending.delete(data.id);
        if (data.error) {
          call.reject(data.error instanceof Error ? data.error : new Error(String(data.error)));
        } else {
          call.resolve(data.result);
        }
      }
    });
    const module = await WebAssembly.compileStreaming(fetch(chrome.runtime.getURL(WASM)));
    const send = (method, ...args) => new Promise((resolve, reject) => {
      const id = `c2pa-${nextId += 1}`;
      pending.set(id, { resolve, reject });
      worker.postMessage({ method, args, id, channelName: 'default' });
    });
    await send('initWorker', module, undefined);
    return { worker, send };
  })().catch((error) => {
    started = null;
    throw error;
  });
  return started;
}

function settingsFor(trustAnchors) {
  const verify = { ...OFFLINE.verify, verify_trust: Boolean(trustAnchors), verify_after_reading: true };
  const settings = { ...OFFLINE, verify };
  return JSON.stringify(trustAnchors ? { ...settings, trust: { trust_anchors: trustAnchors } } : settings);
}

const notRead = (validation, why) => ({ validation, problems: [why], signer: null, claim_generator: null,
  digital_source_types: [] });

const KNOWN_TYPES = [...RULES.ai_source_types, ...RULES.capture_source_types];

// Each digitalSourceType once, the AI and capture ones first, as aiface.provenance.source_types.
export function sourceTypes(found) {
  const unique = [...new Set(found)];
  const known = unique.filter((type) => KNOWN_TYPES.includes(sourceTypeName(type)));
  return [...known, ...unique.filter((type) => !known.includes(type))].slice(0, MAX_ITEMS);
}

// How many JUMBF boxes a file holds (each starts with a description box, `jumd`).
export function jumbfBoxes(bytes) {
  let count = 0;
  for (let at = bytes.indexOf(0x6a); at !== -1 && at + 4 <= bytes.length; at = bytes.indexOf(0x6a, at + 1)) {
    count += bytes[at + 1] === 0x75 && bytes[at + 2] === 0x6d && bytes[at + 3] === 0x64 ? 1 : 0;
  }
  return count;
}

export function c2paFinding(store) {
  const manifest = store.manifests?.[store.active_manifest ?? ''] ?? {};
  const state = store.validation_state ?? '';
  const validation = { Trusted: 'trusted', Valid: 'valid' }[state] ?? 'invalid';
  const failures = (store.validation_status ?? []).map((status) => status.code ?? '').filter((code) => code !== UNTRUSTED);
  const problems = validation === 'invalid' ? (failures.length ? failures : ['manifest.invalid']) : [];
  const signature = manifest.signature_info;
  const tool = manifest.claim_generator_info?.[0] ?? {};
  const types = (manifest.assertions ?? []).filter((assertion) => String(assertion.label ?? '').startsWith('c2pa.actions'))
    .flatMap((assertion) => assertion.data?.actions ?? [])
    .map((action) => action?.digitalSourceType).filter((type) => typeof type === 'string');
  return {
    validation,
    problems: problems.slice(0, MAX_ITEMS),
    signer: signature ? { organization: signature.issuer ?? null, common_name: signature.common_name ?? null } : null,
    claim_generator: [tool.name, tool.version].filter(Boolean).join(' ') || null,
    digital_source_types: sourceTypes(types),
  };
}

async function readStore(send, bytes, mimeType, trustAnchors) {
  let reader;
  try {
    reader = await send('reader_fromBlob', mimeType, new Blob([bytes], { type: mimeType }), settingsFor(trustAnchors));
  } catch (error) {
    if (/not ?found|JumbfNotFound|ManifestNotFound|NotSupported|UnsupportedType/i.test(error.message)) {
      return null;
    }
    throw error;
  }
  try {
    return JSON.parse(await send('reader_json', reader));
  } finally {
    send('reader_free', reader).catch(() => {});
  }
}

function failed(error) {
  if (error instanceof Unavailable) {
    return notRead('unavailable', error.message);
  }
  const message = String(error?.message ?? error);
  return REMOTE_MESSAGE.test(message)
    ? notRead('remote', 'remote_manifest: the manifest lives at an address; not fetched')
    : notRead('unreadable', `malformed: ${message.slice(0, 200)}`);
}

// The C2PA finding for a file, or null when it has no manifest store.
export async function readC2pa(bytes, mimeType, trustAnchors) {
  const boxes = jumbfBoxes(bytes);
  if (boxes > MAX_JUMBF_BOXES) {
    return notRead('unavailable',
      `over_limit: ${boxes.toLocaleString('en')} JUMBF boxes, at most ${MAX_JUMBF_BOXES.toLocaleString('en')} read`);
  }
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => {
      const why = `timeout: not read within ${TIMEOUT_MS / 1000} s`;
      stop(`busy: not read, an earlier file held the reader (${why})`);
      resolve(notRead('unavailable', why));
    }, TIMEOUT_MS);
  });
  const reading = (async () => {
    const { send } = await start();
    const store = await readStore(send, bytes, mimeType || 'image/jpeg', trustAnchors);
    return store === null ? null : c2paFinding(store);
  })().catch(failed);
  try {
    return await Promise.race([reading, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

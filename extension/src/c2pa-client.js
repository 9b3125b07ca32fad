// C2PA Content Credentials in the offscreen document: the official reader
// (@contentauth/c2pa-web's worker and c2pa-rs WebAssembly, copied into
// dist/c2pa/ by build.mjs), driven through its worker's messages. Its own
// createC2pa cannot be used here: it starts the worker from a blob: URL or an
// https: one, and an MV3 extension page may start workers only from its own
// files. The finding has the shape aiface/provenance.py gives.
const WORKER = 'dist/c2pa/c2pa_worker.js';
const WASM = 'dist/c2pa/c2pa_bg.wasm';
const TIMEOUT_MS = 2000;
const MAX_ITEMS = 8;
const UNTRUSTED = 'signingCredential.untrusted';

let started = null;
const pending = new Map();
let nextId = 0;

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
  const verify = { verify_trust: Boolean(trustAnchors), verify_after_reading: true };
  return JSON.stringify(trustAnchors ? { verify, trust: { trust_anchors: trustAnchors } } : { verify });
}

const unreadable = (why) => ({ validation: 'unreadable', problems: [why], signer: null, claim_generator: null,
  digital_source_types: [] });

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
    digital_source_types: types.slice(0, MAX_ITEMS),
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

// The C2PA finding for a file, or null when it has no manifest store.
export async function readC2pa(bytes, mimeType, trustAnchors) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve(unreadable(`timeout: not read within ${TIMEOUT_MS / 1000} s`)), TIMEOUT_MS);
  });
  const reading = (async () => {
    const { send } = await start();
    const store = await readStore(send, bytes, mimeType || 'image/jpeg', trustAnchors);
    return store === null ? null : c2paFinding(store);
  })().catch((error) => unreadable(`malformed: ${String(error.message).slice(0, 200)}`));
  try {
    return await Promise.race([reading, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// The offscreen document's side of faces-worker.js: one worker, started with
// the models, answering requests by id.
const WORKER_URL = chrome.runtime.getURL('dist/faces-worker.js');
let worker = null;
let lastId = 0;
const pending = new Map();

function failAll(message) {
  for (const { reject } of pending.values()) {
    reject(new Error(message));
  }
  pending.clear();
  worker = null;
}

// Starts the worker (it loads the detector at once) if it is not running.
export function startFaceFinder() {
  if (worker !== null) {
    return;
  }
  worker = new Worker(WORKER_URL, { type: 'module' });
  worker.onmessage = ({ data }) => {
    const request = pending.get(data.id);
    pending.delete(data.id);
    if (data.error !== undefined) {
      request.reject(new Error(data.error));
    } else {
      request.resolve(data.faces);
    }
  };
  worker.onerror = (event) => {
    event.preventDefault();
    failAll(`the face finder stopped (${event.message || 'worker error'})`);
  };
}

// Faces in straight RGBA pixels, largest first (faces.js findFaces), found in
// the worker; the pixels are copied, so the caller keeps its own.
export function findFacesApart(rgba, width, height) {
  startFaceFinder();
  const id = (lastId += 1);
  const copy = rgba.slice();
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, rgba: copy, width, height }, [copy.buffer]);
  });
}

// The face detector in a dedicated worker: finding faces is the slowest
// stage of a check, and here it runs on a second core while the offscreen
// document scores the whole image, which is the verdict whenever no face is
// found or the face fills the frame (crop.js scoredBox).
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { findFaces, loadFaceDetector } from './faces.js';
import { rgbaToRgb } from './preprocess.js';

// This script is dist/faces-worker.js; workers have no chrome.runtime.getURL.
const ROOT = new URL('../', self.location.href).href;

async function start() {
  // As in the offscreen document: the threaded build hangs in extension pages.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  setWasmPaths(`${ROOT}dist/wasm/`);
  if (!(await tf.setBackend('wasm')) || tf.getBackend() !== 'wasm') {
    throw new Error('the WebAssembly backend could not start for the face finder');
  }
  await loadFaceDetector(`${ROOT}faces/model.json`);
}

const ready = start();
// A failed start is reported to each request, not as an unhandled rejection.
ready.catch(() => {});

// { id, rgba, width, height } -> { id, faces } or { id, error }
self.onmessage = async ({ data: { id, rgba, width, height } }) => {
  try {
    await ready;
    self.postMessage({ id, faces: await findFaces(rgbaToRgb(rgba, width, height), width, height) });
  } catch (error) {
    self.postMessage({ id, error: error.message });
  }
};

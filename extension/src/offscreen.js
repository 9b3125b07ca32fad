// Offscreen document: decodes the image, preprocesses it exactly as
// training/preprocess.py does, and runs the model with TF.js on WebAssembly.
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { MIN_SIDE, toModelInput } from './preprocess.js';

let loading = null;

async function loadModel() {
  // The threaded build hangs in extension pages.
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
  setWasmPaths(chrome.runtime.getURL('dist/wasm/'));
  // Without 'wasm-unsafe-eval' setBackend answers false and TF.js would
  // silently carry on with a slower backend.
  if (!(await tf.setBackend('wasm')) || tf.getBackend() !== 'wasm') {
    throw new Error('the WebAssembly backend could not start');
  }
  const [model, metadata] = await Promise.all([
    loadGraphModel(chrome.runtime.getURL('model/model.json')),
    fetch(chrome.runtime.getURL('model/metadata.json')).then((response) => response.json()),
  ]);
  return { model, metadata };
}

function model() {
  loading ??= loadModel().catch((error) => {
    loading = null;
    throw error;
  });
  return loading;
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) {
    bytes[i] = binary.charCodeAt(i);
  }
  return bytes;
}

// Straight RGBA as the file stores it: no colour management, no
// premultiplication, EXIF orientation applied like the Python loader.
async function decode(bytes, mimeType, maxPixels) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([bytes], { type: mimeType }), {
      imageOrientation: 'from-image',
      premultiplyAlpha: 'none',
      colorSpaceConversion: 'none',
    });
  } catch {
    return { ok: false, code: 'not_image', message: 'This is not an image the browser can decode.' };
  }
  const { width, height } = bitmap;
  if (Math.min(width, height) < MIN_SIDE) {
    bitmap.close();
    return { ok: false, code: 'too_small', width, height,
      message: `The image is ${width}x${height} pixels; at least ${MIN_SIDE} px on each side is needed to judge a face.` };
  }
  if (width * height > maxPixels) {
    bitmap.close();
    return { ok: false, code: 'too_large', width, height,
      message: `The image is ${width}x${height} pixels, more than the ${Number((maxPixels / 1e6).toPrecision(3))} megapixels checked in the browser.` };
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return { ok: true, width, height, rgba: context.getImageData(0, 0, width, height).data };
}

async function classify({ image, mimeType, maxPixels }) {
  const started = performance.now();
  const decoded = await decode(fromBase64(image), mimeType, maxPixels);
  if (!decoded.ok) {
    return decoded;
  }
  const decodedAt = performance.now();
  const { model: graph, metadata } = await model();
  const loadedAt = performance.now();
  const size = metadata.image_size;
  const input = toModelInput(decoded.rgba, decoded.width, decoded.height, size);
  const preprocessedAt = performance.now();
  const output = tf.tidy(() => graph.execute(tf.tensor4d(input, [1, size, size, 3])));
  const [, probabilityFake] = await output.data();
  output.dispose();
  const doneAt = performance.now();
  return {
    ok: true,
    probability: probabilityFake,
    threshold: metadata.threshold,
    width: decoded.width,
    height: decoded.height,
    timings: {
      decode_ms: decodedAt - started,
      model_load_ms: loadedAt - decodedAt,
      preprocess_ms: preprocessedAt - loadedAt,
      inference_ms: doneAt - preprocessedAt,
      backend: tf.getBackend(),
    },
  };
}

chrome.runtime.onMessage.addListener((message, sender, sendResponse) => {
  if (message?.target !== 'offscreen') {
    return false;
  }
  classify(message).then(sendResponse, (error) =>
    sendResponse({ ok: false, code: 'local_failed', message: `Checking in the browser failed (${error.message}).` }));
  return true;
});

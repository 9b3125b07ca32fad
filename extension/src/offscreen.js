// The model's side of a check, in a page with a DOM (Chrome's offscreen
// document, offscreen-document.js; Firefox's event page, event-page.js): decodes the
// image, has the faces found (in a worker, faces-worker.js), preprocesses
// each face's crop (or the whole image when there is none) exactly as the
// server does, and runs the model with TF.js on WebAssembly.
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { fromBase64, toBase64 } from './bytes.js';
import { readC2pa } from './c2pa-client.js';
import { cropRgba, scoredBox, wholeImageBox } from './crop.js';
import { compareWithRendered } from './rendered.js';
import { findFacesApart, startFaceFinder } from './faces-client.js';
import { MIN_SIDE, rgbaToRgb, toModelInput } from './preprocess.js';
import { Budget, mayHoldManifest, readTexts } from './provenance.js';
import { findMark, MAX_PIXELS as WATERMARK_MAX_PIXELS } from './watermark.js';

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
  // The worker loads the face detector while this document loads the model.
  startFaceFinder();
  const read = (path) => fetch(chrome.runtime.getURL(path));
  const [model, metadata] = await Promise.all([
    loadGraphModel(chrome.runtime.getURL('model/model.json')),
    read('model/metadata.json').then((response) => response.json()),
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

// Straight RGBA as the file stores it: no colour management, no
// premultiplication, EXIF orientation applied like the Python loader.
// Above maxPixels it is refused (too_large) or, with downscale, scaled down
// to maxPixels by the browser.
async function decode(bytes, mimeType, maxPixels, downscale = false) {
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
  let { width, height } = bitmap;
  if (Math.min(width, height) < MIN_SIDE) {
    bitmap.close();
    return { ok: false, code: 'too_small', width, height,
      message: `The image is ${width}x${height} pixels; at least ${MIN_SIDE} px on each side is needed to judge a face.` };
  }
  if (width * height > maxPixels && downscale) {
    const factor = Math.sqrt(maxPixels / (width * height));
    width = Math.max(MIN_SIDE, Math.floor(width * factor));
    height = Math.max(MIN_SIDE, Math.floor(height * factor));
  } else if (width * height > maxPixels) {
    bitmap.close();
    return { ok: false, code: 'too_large', width, height,
      message: `The image is ${width}x${height} pixels, more than the ${Number((maxPixels / 1e6).toPrecision(3))} megapixels checked in the browser.` };
  }
  const rgba = draw(bitmap, width, height);
  bitmap.close();
  return { ok: true, width, height, rgba };
}

function draw(bitmap, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.imageSmoothingQuality = 'high';
  context.drawImage(bitmap, 0, 0, width, height);
  return context.getImageData(0, 0, width, height).data;
}

// An upload larger than this as PNG goes as JPEG (quality 0.95) instead.
const MAX_PNG_UPLOAD_BYTES = 8 * 1024 * 1024;

// The image as the service should get it: the decoded pixels, upright,
// alpha over white (as the service would composite them), at most
// maxPixels, re-encoded without any of the file's metadata.
async function encode({ image, mimeType, maxPixels }) {
  const decoded = await decode(fromBase64(image), mimeType, maxPixels, true);
  if (!decoded.ok) {
    return decoded;
  }
  const { width, height, rgba } = decoded;
  const rgb = rgbaToRgb(rgba, width, height);
  const opaque = new ImageData(width, height);
  for (let p = 0; p < width * height; p += 1) {
    opaque.data[4 * p] = rgb[3 * p];
    opaque.data[4 * p + 1] = rgb[3 * p + 1];
    opaque.data[4 * p + 2] = rgb[3 * p + 2];
    opaque.data[4 * p + 3] = 255;
  }
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').putImageData(opaque, 0, 0);
  let blob = await canvas.convertToBlob({ type: 'image/png' });
  if (blob.size > MAX_PNG_UPLOAD_BYTES) {
    blob = await canvas.convertToBlob({ type: 'image/jpeg', quality: 0.95 });
  }
  return { ok: true, image: await toBase64(blob), mimeType: blob.type, width, height };
}

async function probabilityFake(graph, input, size) {
  const output = tf.tidy(() => graph.execute(tf.tensor4d(input, [1, size, size, 3])));
  const [, probability] = await output.data();
  output.dispose();
  return probability;
}

// P(fake) of a region (crop.js box) of the image, and the milliseconds spent preprocessing and in the model.
async function scoreRegion(graph, { width, rgba }, box, size) {
  const started = performance.now();
  const input = toModelInput(cropRgba(rgba, width, box), box.width, box.height, size);
  const preprocessed = performance.now();
  const probability = await probabilityFake(graph, input, size);
  return { probability, preprocessMs: preprocessed - started, inferenceMs: performance.now() - preprocessed };
}

const sameBox = (a, b) => a.x === b.x && a.y === b.y && a.width === b.width && a.height === b.height;

async function classify({ image, mimeType, maxPixels, downscale }) {
  const started = performance.now();
  const decoded = await decode(fromBase64(image), mimeType, maxPixels, downscale);
  if (!decoded.ok) {
    return decoded;
  }
  const decodedAt = performance.now();
  const { model: graph, metadata } = await model();
  const loadedAt = performance.now();
  const size = metadata.image_size;
  const { width, height } = decoded;
  // Searched in the full-size pixels, resized as the service resizes them
  // (faces.js), so that both find the same boxes; meanwhile the whole
  // centred square is scored here, which the verdict needs when no face is
  // found or one fills the frame (a profile photo, as a rule).
  let facesMs;
  const finding = findFacesApart(decoded.rgba, width, height).then((faces) => {
    facesMs = performance.now() - loadedAt;
    return faces;
  });
  const whole = wholeImageBox(width, height);
  const wholeScore = await scoreRegion(graph, decoded, whole, size);
  const found = await finding;
  // As the server: each face's crop is scored (the whole centred square when
  // the face fills the frame), the verdict is the highest (one generated
  // face makes the image fake); no face, the whole image.
  const scores = [];
  for (const { box } of found) {
    const region = scoredBox(box, width, height);
    scores.push(sameBox(region, whole) ? wholeScore : await scoreRegion(graph, decoded, region, size));
  }
  const probabilities = found.length > 0 ? scores.map((score) => score.probability) : [wholeScore.probability];
  const spent = [...new Set([wholeScore, ...scores])];
  const doneAt = performance.now();
  return {
    ok: true,
    probability: Math.max(...probabilities),
    threshold: metadata.threshold,
    width,
    height,
    scored: found.length > 0 ? 'faces' : 'whole_image',
    faces: found.map(({ box }, index) => ({ box, probability_fake: probabilities[index] })),
    // faces_ms runs in the worker alongside the whole image's preprocessing
    // and inference; preprocess_ms and inference_ms add up every region scored.
    timings: {
      decode_ms: decodedAt - started,
      model_load_ms: loadedAt - decodedAt,
      faces_ms: facesMs,
      preprocess_ms: spent.reduce((total, score) => total + score.preprocessMs, 0),
      inference_ms: spent.reduce((total, score) => total + score.inferenceMs, 0),
      scoring_ms: doneAt - loadedAt,
      backend: tf.getBackend(),
    },
  };
}

// The container a file's bytes are, for the C2PA reader: a site's Content-Type may be missing or wrong.
function sniffed(bytes, mimeType) {
  const text = String.fromCharCode(...bytes.subarray(0, 12));
  if (text.startsWith('\xff\xd8')) {
    return 'image/jpeg';
  }
  if (text.startsWith('\x89PNG')) {
    return 'image/png';
  }
  if (text.startsWith('RIFF') && text.slice(8) === 'WEBP') {
    return 'image/webp';
  }
  return text.slice(4, 8) === 'ftyp' ? 'image/avif' : mimeType;
}

// An open generator's invisible watermark in the file's pixels (watermark.js), as
// aiface.watermark.read_watermark. Read here, not in a worker: a worker started per file costs more
// than the decoder takes on pictures up to a few megapixels (docs/reliability.md).
async function readWatermark(bytes, mimeType) {
  const decoded = await decode(bytes, mimeType, WATERMARK_MAX_PIXELS);
  return decoded.ok ? findMark(rgbaToRgb(decoded.rgba, decoded.width, decoded.height), decoded.width, decoded.height)
    : null;
}

// What the file says about its origin: {c2pa, texts, unread, watermark} as aiface/provenance.py reads
// them. A file with no sign of a manifest (mayHoldManifest) is not even given to the C2PA reader.
async function provenance({ image, mimeType, trustAnchors }) {
  const started = performance.now();
  const bytes = fromBase64(image);
  const budget = new Budget();
  const [c2pa, texts, watermark] = await Promise.all([
    mayHoldManifest(bytes) ? readC2pa(bytes, sniffed(bytes, mimeType), trustAnchors) : null, readTexts(bytes, budget),
    readWatermark(bytes, mimeType).catch(() => null)]);
  return { ok: true, findings: { c2pa, texts, unread: budget.unread, watermark }, ms: performance.now() - started };
}

// One request of the background (model-runner.js), answered: a check
// ('classify', the default), 'encode', 'compare' or 'provenance'.
export function runLocally(message) {
  const handle = { encode, compare: compareWithRendered, provenance }[message.type] ?? classify;
  return handle(message).catch((error) =>
    ({ ok: false, code: 'local_failed', message: `Checking in the browser failed (${error.message}).` }));
}

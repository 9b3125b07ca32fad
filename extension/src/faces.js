// Finding faces in the browser: the same network as the service (face-api's
// tiny face detector, converted once from the weights its npm package ships;
// extension/faces/model.json) and the same steps, written out in the
// docstring of aiface/faces.py, on the same TF.js and WebAssembly backend as
// the classifier. Every constant comes from faces/faces.json, which
// aiface.faces.face_config() writes (python -m training.converters.face_detector).
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import CONFIG from '../faces/faces.json' with { type: 'json' };
import { roundHalfEven } from './crop.js';
import { resizeAxis } from './preprocess.js';

const SIZE = CONFIG.input_size;
let detector = null;

// source: faces/model.json's URL, or a TF.js IOHandler (the node tests).
export async function loadFaceDetector(source) {
  detector = await loadGraphModel(source);
}

// round(numerator / denominator), halves up, exact for integers.
function roundHalfUp(numerator, denominator) {
  return Math.floor((2 * numerator + denominator) / (2 * denominator));
}

// Steps 1-2: the image's size and place in the detector's input.
function placement(width, height, border) {
  const longer = Math.max(width, height);
  const extent = border ? longer + 2 * Math.floor(CONFIG.border_fraction * longer) : longer;
  const w = Math.max(1, roundHalfUp(width * SIZE, extent));
  const h = Math.max(1, roundHalfUp(height * SIZE, extent));
  return border
    ? { width: w, height: h, left: Math.floor((SIZE - w) / 2), top: Math.floor((SIZE - h) / 2), fill: CONFIG.border_grey }
    : { width: w, height: h, left: 0, top: 0, fill: 0 };
}

// rgb: (height, width, 3) uint8. The triangle resize of preprocess.js,
// columns then rows, into a filled SIZE x SIZE float32 canvas.
function detectorInput(rgb, width, height, place) {
  const horizontal = resizeAxis(rgb, height, width, place.width, 1);
  const resized = resizeAxis(horizontal, height, place.width, place.height, 0);
  const canvas = new Float32Array(SIZE * SIZE * 3).fill(place.fill);
  for (let row = 0; row < place.height; row += 1) {
    canvas.set(resized.subarray(row * place.width * 3, (row + 1) * place.width * 3),
      ((place.top + row) * SIZE + place.left) * 3);
  }
  return canvas;
}

const sigmoid = (value) => 1 / (1 + Math.exp(-value));

// Step 3: candidates above the score threshold, boxes in input pixels.
function decode(output) {
  const anchors = CONFIG.anchors;
  const cells = CONFIG.cells;
  const unit = SIZE / cells;
  const found = [];
  for (let row = 0; row < cells; row += 1) {
    for (let col = 0; col < cells; col += 1) {
      for (let anchor = 0; anchor < anchors.length; anchor += 1) {
        const at = ((row * cells + col) * anchors.length + anchor) * 5;
        const score = sigmoid(output[at + 4]);
        if (!(score > CONFIG.min_score)) {
          continue;
        }
        const w = Math.exp(output[at + 2]) * anchors[anchor][0] * unit;
        const h = Math.exp(output[at + 3]) * anchors[anchor][1] * unit;
        const centreX = (col + sigmoid(output[at])) * unit;
        const centreY = (row + sigmoid(output[at + 1])) * unit;
        found.push({ score, box: [centreX - w / 2, centreY - h / 2, w, h] });
      }
    }
  }
  return found;
}

function boxIou(a, b) {
  const width = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const height = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const inter = width * height;
  return inter / (a[2] * a[3] + b[2] * b[3] - inter);
}

// Step 4: face-api's non-maximum suppression.
function nonMaxSuppression(found) {
  let order = found.map((_, index) => index).sort((a, b) => found[a].score - found[b].score);
  const kept = [];
  while (order.length > 0) {
    const best = order.pop();
    kept.push(found[best]);
    order = order.filter((index) => boxIou(found[best].box, found[index].box) <= CONFIG.nms_iou);
  }
  return kept;
}

// Step 5: back to the image's pixels, mapped to the box the crop rule was
// measured with, rounded like Python, clipped; null when too small.
function toImageBox(box, place, width, height) {
  const sx = width / place.width;
  const sy = height / place.height;
  const x = (box[0] - place.left) * sx;
  const y = (box[1] - place.top) * sy;
  let w = box[2] * sx;
  let h = box[3] * sy;
  const side = Math.max(w, h);
  const mapping = CONFIG.box_mapping;
  const centreX = x + w / 2 + mapping.centre_x * side;
  const centreY = y + h / 2 + mapping.centre_y * side;
  w *= mapping.width;
  h *= mapping.height;
  let left = roundHalfEven(centreX - w / 2);
  let top = roundHalfEven(centreY - h / 2);
  const right = Math.min(width, left + roundHalfEven(w));
  const bottom = Math.min(height, top + roundHalfEven(h));
  left = Math.max(0, left);
  top = Math.max(0, top);
  if (right <= left || bottom <= top || Math.max(right - left, bottom - top) < CONFIG.min_face_side) {
    return null;
  }
  return { x: left, y: top, width: right - left, height: bottom - top };
}

async function search(rgb, width, height, border) {
  const place = placement(width, height, border);
  const input = detectorInput(rgb, width, height, place);
  const output = tf.tidy(() => detector.execute(tf.tensor4d(input, [1, SIZE, SIZE, 3])));
  const values = await output.data();
  output.dispose();
  const faces = [];
  for (const { score, box } of nonMaxSuppression(decode(values))) {
    const imageBox = toImageBox(box, place, width, height);
    if (imageBox !== null) {
      faces.push({ box: imageBox, score });
    }
  }
  // Step 6: largest first, at most max_faces.
  faces.sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height || a.box.y - b.box.y || a.box.x - b.box.x);
  return faces.slice(0, CONFIG.max_faces);
}

// rgb: the whole upright image, (height, width, 3) uint8, alpha already
// composited onto white. Faces largest first; a second pass with a grey
// border when the first finds none (the detector misses faces that fill the
// frame).
export async function findFaces(rgb, width, height) {
  if (detector === null) {
    throw new Error('the face detector is not loaded');
  }
  const faces = await search(rgb, width, height, false);
  return faces.length > 0 ? faces : search(rgb, width, height, true);
}

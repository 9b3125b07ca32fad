// Finding faces in the browser: face-api's tiny face detector (MIT; its
// weights ship in the npm package, copied into dist/faces by build.mjs),
// run on the same TF.js and WebAssembly backend as the classifier.
import * as tf from '@tensorflow/tfjs-core';
import * as faceapi from '@vladmandic/face-api/dist/face-api.esm-nobundle.js';

// Faces are searched in a copy at most this large, as on the server: the
// detector sees 416 px anyway.
export const DETECT_MAX_SIDE = 1024;
const INPUT_SIZE = 416;
const MIN_SCORE = 0.5;
// As aiface/faces.py: a smaller face crops below the model's minimum side.
const MIN_FACE_SIDE = 24;
const MAX_FACES = 8;
// The border added on each side, as a fraction of the image's longer side.
const FILL_PAD = 0.5;
// The tiny detector's boxes are framed differently from MTCNN's, which the
// crop rule (crop.js) was measured with: wider (MTCNN's width is 0.64 of
// theirs), about as tall (0.95), centred lower (by 0.11 of their longer side).
// Medians over 80 test faces pasted into 1024 px scenes, both detectors
// (benchmarks/face_boxes_js.py). Each box is mapped to the MTCNN box of the
// same face, so that the crops, and the boxes reported, mean what the
// server's do.
const TINY_TO_MTCNN = { width: 0.64, height: 0.95, centreX: 0.0, centreY: -0.11 };

let detector = null;

// weights: the .bin's bytes; manifest: its weights_manifest.json, parsed.
export function loadFaceDetector(weights, manifest) {
  const net = new faceapi.TinyFaceDetector();
  net.loadFromWeightMap(tf.io.decodeWeights(weights, manifest[0].weights));
  detector = net;
}

function toMtcnnBox(box) {
  const side = Math.max(box.width, box.height);
  const width = box.width * TINY_TO_MTCNN.width;
  const height = box.height * TINY_TO_MTCNN.height;
  const centreX = box.x + box.width / 2 + TINY_TO_MTCNN.centreX * side;
  const centreY = box.y + box.height / 2 + TINY_TO_MTCNN.centreY * side;
  return { x: centreX - width / 2, y: centreY - height / 2, width, height };
}

// Integer box inside the image.
function clip(box, width, height) {
  const left = Math.max(0, Math.round(box.x));
  const top = Math.max(0, Math.round(box.y));
  const right = Math.min(width, Math.round(box.x) + Math.round(box.width));
  const bottom = Math.min(height, Math.round(box.y) + Math.round(box.height));
  return { x: left, y: top, width: right - left, height: bottom - top };
}

async function detect(input, pad) {
  const searched = pad > 0 ? tf.pad(input, [[pad, pad], [pad, pad], [0, 0]], 128) : input;
  try {
    const found = await detector.locateFaces(searched,
      new faceapi.TinyFaceDetectorOptions({ inputSize: INPUT_SIZE, scoreThreshold: MIN_SCORE }));
    return found.map(({ box, score }) => ({ x: box.x - pad, y: box.y - pad, width: box.width, height: box.height, score }));
  } finally {
    if (searched !== input) {
      searched.dispose();
    }
  }
}

// rgb: (height, width, 3) uint8 of the image searched, `scale` times the
// size of the image the boxes are for. Largest first, at most MAX_FACES.
export async function findFaces(rgb, width, height, scale, fullWidth, fullHeight) {
  if (detector === null) {
    throw new Error('the face detector is not loaded');
  }
  const input = tf.tensor3d(rgb, [height, width, 3], 'int32');
  let found;
  try {
    found = await detect(input, 0);
    // The detector misses many faces that fill the frame: then once more
    // with a grey border around the image, where such a face is smaller.
    if (found.length === 0) {
      found = await detect(input, Math.round(FILL_PAD * Math.max(width, height)));
    }
  } finally {
    input.dispose();
  }
  const faces = found
    .map(({ x, y, width: w, height: h, score }) => {
      const box = clip(toMtcnnBox({ x: x / scale, y: y / scale, width: w / scale, height: h / scale }), fullWidth, fullHeight);
      return { box, score };
    })
    .filter(({ box }) => Math.max(box.width, box.height) >= MIN_FACE_SIDE);
  faces.sort((a, b) => b.box.width * b.box.height - a.box.width * a.box.height || a.box.y - b.box.y || a.box.x - b.box.x);
  return faces.slice(0, MAX_FACES);
}

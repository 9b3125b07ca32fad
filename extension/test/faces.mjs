// Runs the extension's face finding (src/faces.js) in node, on the same
// TF.js WebAssembly backend as the extension, for the Python comparison tests.
//
//   node test/faces.mjs REQUEST.json
//
// REQUEST: {"images": [{"path", "width", "height"}], "inputs"?: {"path", "count"}}
// images: raw (height, width, 3) uint8 RGB files, searched with findFaces;
// inputs: COUNT detector inputs, (COUNT, 416, 416, 3) float32 little-endian,
// run through faces/model.json as they are. Prints
// {"faces": [[{box, score}]], "outputs": [[...]], "ms": [...]} as JSON, ms
// being findFaces's time per image.
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';
import { findFaces, loadFaceDetector } from '../src/faces.js';
import { fromDirectory } from './artifacts.mjs';
import CONFIG from '../faces/faces.json' with { type: 'json' };

const request = JSON.parse(await readFile(process.argv[2], 'utf8'));
const FACES_DIR = new URL('../faces/', import.meta.url).pathname;

tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
if (!(await tf.setBackend('wasm'))) {
  throw new Error('the WebAssembly backend could not start');
}
await loadFaceDetector(await fromDirectory(FACES_DIR));
const faces = [];
const ms = [];
for (const image of request.images ?? []) {
  const rgb = new Uint8Array(await readFile(image.path));
  const started = performance.now();
  faces.push(await findFaces(rgb, image.width, image.height));
  ms.push(performance.now() - started);
}
const outputs = [];
if (request.inputs) {
  const graph = await loadGraphModel(await fromDirectory(FACES_DIR));
  const bytes = await readFile(request.inputs.path);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const size = CONFIG.input_size;
  for (let index = 0; index < request.inputs.count; index += 1) {
    const input = all.subarray(index * size * size * 3, (index + 1) * size * size * 3);
    const output = tf.tidy(() => graph.execute(tf.tensor4d(input, [1, size, size, 3])));
    outputs.push(Array.from(await output.data()));
    output.dispose();
  }
}
process.stdout.write(`${JSON.stringify({ faces, outputs, ms, backend: tf.getBackend() })}\n`);

// face-api's own tiny face detector, from the npm package, in node: the
// reference the converted network (aiface/faces.py, extension/faces/) is
// checked against (tests/test_faces.py).
//
//   node test/face_api.mjs INPUTS.f32 COUNT
//
// INPUTS: COUNT detector inputs, (COUNT, 416, 416, 3) float32 little-endian
// in [0, 255]. Prints {"outputs": [[13 x 13 x 25 values]], "boxes":
// [[{x, y, width, height, score}]]} as JSON: face-api's forward pass and its
// detections (score above 0.5, its NMS) in input pixels.
//
// face-api's no-bundle build imports the whole of TF.js; esbuild bundles
// it here with our tfjs-core, converter and CPU backend instead (shims/).
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

const ENTRY = `
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import * as faceapi from '@vladmandic/face-api/dist/face-api.esm-nobundle.js';
import { readFile } from 'node:fs/promises';

export async function run(inputsPath, count) {
  await tf.setBackend('cpu');
  const dir = 'node_modules/@vladmandic/face-api/model/';
  const manifest = JSON.parse(await readFile(dir + 'tiny_face_detector_model-weights_manifest.json', 'utf8'));
  const weights = await readFile(dir + 'tiny_face_detector_model.bin');
  const net = new faceapi.TinyFaceDetector();
  net.loadFromWeightMap(tf.io.decodeWeights(
    weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength), manifest[0].weights));
  const bytes = await readFile(inputsPath);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  const size = 416;
  const outputs = [];
  const boxes = [];
  for (let index = 0; index < count; index += 1) {
    const input = tf.tensor4d(all.slice(index * size * size * 3, (index + 1) * size * size * 3), [1, size, size, 3]);
    const output = await net.forward(input, size);
    outputs.push(Array.from(await output.data()));
    output.dispose();
    const found = await net.locateFaces(input, new faceapi.TinyFaceDetectorOptions({ inputSize: size, scoreThreshold: 0.5 }));
    boxes.push(found.map(({ box, score }) => ({ x: box.x, y: box.y, width: box.width, height: box.height, score })));
    input.dispose();
  }
  return { outputs, boxes };
}
`;

const [inputsPath, count] = process.argv.slice(2);
const built = await esbuild.build({
  stdin: { contents: ENTRY, resolveDir: process.cwd(), loader: 'js' },
  bundle: true,
  write: false,
  platform: 'node',
  format: 'esm',
  // One tfjs-core for all (its ESM build), so that the CPU backend registers with face-api's.
  mainFields: ['module', 'main'],
  logLevel: 'error',
  // tfjs-core's node build require()s node's modules.
  banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" },
  alias: {
    '@tensorflow/tfjs/dist/index.js': './test/shims/tfjs.js',
    '@tensorflow/tfjs-backend-webgl/dist/index.js': './test/shims/empty.js',
    '@tensorflow/tfjs-backend-wasm/dist/index.js': './test/shims/empty.js',
  },
});
const bundle = join(tmpdir(), `face-api-reference-${process.pid}.mjs`);
await writeFile(bundle, built.outputFiles[0].text);
try {
  const { run } = await import(pathToFileURL(bundle).href);
  process.stdout.write(`${JSON.stringify(await run(inputsPath, Number(count)))}\n`);
} finally {
  await rm(bundle, { force: true });
}

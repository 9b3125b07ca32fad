// Runs a converted graph model in node on the same TF.js WebAssembly
// backend as the extension, on inputs that are already preprocessed.
//
//   node test/predict.mjs MODEL_DIR INPUTS.f32 SIZE
//
// INPUTS.f32: N model inputs, (N, SIZE, SIZE, 3) float32 little-endian.
// Prints {"probabilities": [P(fake), ...], "backend": "wasm"} as JSON.
import { readFile } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';
import { fromDirectory } from './artifacts.mjs';

const [modelDir, inputsPath, sizeText] = process.argv.slice(2);
const size = Number(sizeText);

tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
if (!(await tf.setBackend('wasm'))) {
  throw new Error('the WebAssembly backend could not start');
}
const model = await loadGraphModel(await fromDirectory(modelDir));
const raw = await readFile(inputsPath);
const inputs = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const perImage = size * size * 3;
const probabilities = [];
for (let start = 0; start < inputs.length; start += perImage) {
  const output = tf.tidy(() => model.execute(tf.tensor4d(inputs.subarray(start, start + perImage), [1, size, size, 3])));
  probabilities.push((await output.data())[1]);
  output.dispose();
}
process.stdout.write(`${JSON.stringify({ probabilities, backend: tf.getBackend() })}\n`);

// Runs a converted graph model in node on the same TF.js WebAssembly
// backend as the extension, on inputs that are already preprocessed.
//
//   node test/predict.mjs MODEL_DIR INPUTS.f32 SIZE
//
// INPUTS.f32: N model inputs, (N, SIZE, SIZE, 3) float32 little-endian.
// Prints {"probabilities": [P(fake), ...], "backend": "wasm"} as JSON.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import '@tensorflow/tfjs-backend-wasm';

const [modelDir, inputsPath, sizeText] = process.argv.slice(2);
const size = Number(sizeText);

// tfjs-core alone cannot read files: hand the converter the artifacts.
async function loadFromDirectory(dir) {
  const modelJson = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const shards = await Promise.all(
    modelJson.weightsManifest.flatMap((group) => group.paths).map((path) => readFile(join(dir, path))),
  );
  const weights = Buffer.concat(shards);
  return loadGraphModel({
    load: async () => ({
      modelTopology: modelJson.modelTopology,
      format: modelJson.format,
      generatedBy: modelJson.generatedBy,
      convertedBy: modelJson.convertedBy,
      signature: modelJson.signature,
      userDefinedMetadata: modelJson.userDefinedMetadata,
      modelInitializer: modelJson.modelInitializer,
      weightSpecs,
      weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
    }),
  });
}

tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
if (!(await tf.setBackend('wasm'))) {
  throw new Error('the WebAssembly backend could not start');
}
const model = await loadFromDirectory(modelDir);
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

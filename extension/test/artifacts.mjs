// tfjs-core alone cannot read files: an IOHandler that hands the converter
// a model directory's artifacts (model.json and its weight shards), for
// loadGraphModel in the node tests.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export async function fromDirectory(dir) {
  const modelJson = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8'));
  const weightSpecs = modelJson.weightsManifest.flatMap((group) => group.weights);
  const shards = await Promise.all(
    modelJson.weightsManifest.flatMap((group) => group.paths).map((path) => readFile(join(dir, path))),
  );
  const weights = Buffer.concat(shards);
  return {
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
  };
}

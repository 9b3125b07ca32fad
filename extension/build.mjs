// npm run build: bundles src/ into dist/ and ships the WebAssembly binaries
// and the face detector's weights with the extension (MV3 loads no remote code).
import { copyFile, mkdir, rm } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const WASM_DIR = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
// The threaded build hangs in extension pages and is never asked for.
const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm'];
// face-api ships its models in the npm package; only the tiny detector is used.
const FACE_DIR = 'node_modules/@vladmandic/face-api/model';
const FACE_FILES = ['tiny_face_detector_model.bin', 'tiny_face_detector_model-weights_manifest.json'];

await rm('dist', { recursive: true, force: true });
await esbuild.build({
  entryPoints: ['src/background.js', 'src/offscreen.js', 'src/options.js', 'src/page.js'],
  bundle: true,
  outdir: 'dist',
  format: 'iife',
  target: 'chrome116',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
  // face-api's no-bundle build imports the whole of TF.js: give it ours.
  alias: {
    '@tensorflow/tfjs/dist/index.js': './src/shims/tfjs.js',
    '@tensorflow/tfjs-backend-webgl/dist/index.js': './src/shims/empty.js',
    '@tensorflow/tfjs-backend-wasm/dist/index.js': './src/shims/empty.js',
  },
});
await mkdir('dist/wasm', { recursive: true });
await mkdir('dist/faces', { recursive: true });
await Promise.all([
  ...WASM_FILES.map((name) => copyFile(`${WASM_DIR}/${name}`, `dist/wasm/${name}`)),
  ...FACE_FILES.map((name) => copyFile(`${FACE_DIR}/${name}`, `dist/faces/${name}`)),
]);

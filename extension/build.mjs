// npm run build: bundles src/ into dist/ and ships the WebAssembly binaries
// with the extension (MV3 loads no remote code). The face detector is a
// committed graph model in faces/ (python -m training.convert_face_detector),
// loaded at run time like model/; faces/faces.json is bundled into the code.
import { copyFile, mkdir, rm } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const WASM_DIR = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
// The threaded build hangs in extension pages and is never asked for.
const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm'];
const C2PA_DIR = 'node_modules/@contentauth/c2pa-web/dist';
const C2PA_FILES = ['c2pa_worker.js', 'resources/c2pa_bg.wasm'];

await rm('dist', { recursive: true, force: true });
const common = { bundle: true, outdir: 'dist', target: 'chrome116', minify: true, legalComments: 'none', logLevel: 'warning' };
// The page script is injected (executeScript files), which takes no modules.
await esbuild.build({ ...common, entryPoints: ['src/background.js', 'src/options.js', 'src/page.js'], format: 'iife' });
// The offscreen document and its face-finding worker share TF.js in one chunk: ES modules.
await esbuild.build({
  ...common, entryPoints: ['src/offscreen.js', 'src/faces-worker.js'], format: 'esm', splitting: true,
  chunkNames: 'shared-[hash]',
});
await mkdir('dist/wasm', { recursive: true });
await Promise.all(WASM_FILES.map((name) => copyFile(`${WASM_DIR}/${name}`, `dist/wasm/${name}`)));
// The official C2PA reader's worker and WebAssembly, started by src/c2pa-client.js.
await mkdir('dist/c2pa', { recursive: true });
await Promise.all(C2PA_FILES.map((path) => copyFile(`${C2PA_DIR}/${path}`, `dist/c2pa/${path.split('/').pop()}`)));

// npm run build: one source tree, two browsers. Makes dist/chrome/ and
// dist/firefox/, each a complete unpacked extension: its manifest (the shared
// manifest.json with what that browser needs), the pages, the model, and
// src/ bundled into dist/ with the WebAssembly binaries (MV3 loads no remote
// code). The browsers differ in one thing: where the model runs
// (src/model-runner.js): Chrome's service worker hands it to an offscreen
// document, Firefox's event page (which has a DOM) runs it itself, and no
// code that calls chrome.offscreen is in Firefox's build. The face detector
// is a committed graph model in faces/ (python -m training.converters.face_detector),
// loaded at run time like model/; faces/faces.json is bundled into the code.
import { copyFile, cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const WASM_DIR = 'node_modules/@tensorflow/tfjs-backend-wasm/dist';
// The threaded build hangs in extension pages and is never asked for.
const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm'];
const C2PA_DIR = 'node_modules/@contentauth/c2pa-web/dist';
const C2PA_FILES = ['c2pa_worker.js', 'resources/c2pa_bg.wasm'];
// Firefox identifies an add-on by this id (signing, updates, storage).
export const GECKO_ID = 'ai-face-check@aiface';
// The oldest Firefox the add-on was tested in (Debian's firefox-esr, tests/test_extension_firefox.py).
export const FIREFOX_MIN_VERSION = '153.0';

const TARGETS = {
  chrome: {
    esbuildTarget: 'chrome116',
    background: 'src/service-worker.js',
    // The offscreen document and the face-finding worker share TF.js in one chunk: ES modules.
    modelPages: ['src/offscreen-document.js'],
    pages: ['options.html', 'offscreen.html'],
    manifest: (base) => ({
      ...base,
      minimum_chrome_version: '116',
      permissions: [...base.permissions, 'offscreen'],
      background: { service_worker: 'dist/service-worker.js' },
    }),
  },
  firefox: {
    esbuildTarget: 'firefox153',
    // The event page runs the model, so it shares TF.js with the worker: an ES module.
    background: null,
    modelPages: ['src/event-page.js'],
    pages: ['options.html'],
    manifest: (base) => ({
      ...base,
      background: { scripts: ['dist/event-page.js'], type: 'module' },
      browser_specific_settings: {
        gecko: {
          id: GECKO_ID,
          strict_min_version: FIREFOX_MIN_VERSION,
          // Nothing is sent anywhere unless the user sets their own detection service.
          data_collection_permissions: { required: ['none'] },
        },
      },
    }),
  },
};

async function build(name, target, base) {
  const out = `dist/${name}`;
  const common = { bundle: true, outdir: `${out}/dist`, target: target.esbuildTarget, minify: true,
    legalComments: 'none', logLevel: 'warning' };
  // The page script is injected (executeScript files), which takes no modules.
  const classic = ['src/options.js', 'src/page.js', ...(target.background ? [target.background] : [])];
  await esbuild.build({ ...common, entryPoints: classic, format: 'iife' });
  await esbuild.build({
    ...common, entryPoints: [...target.modelPages, 'src/faces-worker.js'], format: 'esm', splitting: true,
    chunkNames: 'shared-[hash]',
  });
  await mkdir(`${out}/dist/wasm`, { recursive: true });
  await Promise.all(WASM_FILES.map((file) => copyFile(`${WASM_DIR}/${file}`, `${out}/dist/wasm/${file}`)));
  // The official C2PA reader's worker and WebAssembly, started by src/c2pa-client.js.
  await mkdir(`${out}/dist/c2pa`, { recursive: true });
  await Promise.all(C2PA_FILES.map((path) => copyFile(`${C2PA_DIR}/${path}`, `${out}/dist/c2pa/${path.split('/').pop()}`)));
  await Promise.all([
    ...target.pages.map((page) => copyFile(page, `${out}/${page}`)),
    cp('model', `${out}/model`, { recursive: true }),
    cp('faces', `${out}/faces`, { recursive: true }),
    writeFile(`${out}/manifest.json`, `${JSON.stringify(target.manifest(base), null, 2)}\n`),
  ]);
}

const base = JSON.parse(await readFile('manifest.json', 'utf8'));
await rm('dist', { recursive: true, force: true });
for (const [name, target] of Object.entries(TARGETS)) {
  await build(name, target, base);
}

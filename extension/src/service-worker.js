// Chrome's background (manifest background.service_worker, built by
// build.mjs): the extension's background, with the model in an offscreen
// document.
import './background.js';
import { useModelRunner } from './model-runner.js';
import { inOffscreenDocument } from './offscreen-host.js';

useModelRunner(inOffscreenDocument);

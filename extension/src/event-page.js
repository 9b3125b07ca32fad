// Firefox's background (manifest background.scripts, an event page, built by
// build.mjs): the extension's background, with the model in this page, as
// Firefox has no offscreen documents. A page scan keeps it loaded while it
// runs (keep-warm.js).
import './background.js';
import { acceptWarmPorts } from './keep-warm.js';
import { useModelRunner } from './model-runner.js';
import { runLocally } from './offscreen.js';

useModelRunner(runLocally);
acceptWarmPorts();

import { setUpDataOptions } from './options-data.js';
import { checkedSettings, loadSettings, MEGAPIXELS, originPattern } from './settings.js';
import { NO_SIGN_BELOW, percent, VERDICTS } from './verdict.js';

const field = (id) => document.getElementById(id);

async function showModel() {
  const metadata = await fetch(chrome.runtime.getURL('model/metadata.json')).then((response) => response.json());
  field('model').textContent = `${metadata.name} ${metadata.version} (${metadata.backbone}, ${metadata.image_size} px, `
    + `${metadata.quantization} weights): calls a face AI-generated from a score of ${percent(metadata.threshold)}.`;
  field('bands').textContent = `The percentage on a verdict is calibrated: of the images the model scores 80 %, about 80 in `
    + `100 are AI-generated (on photos like those it was trained on). "${VERDICTS.likely_ai.label}" from `
    + `${percent(metadata.threshold)}; "${VERDICTS.no_sign.label}" below ${percent(Math.min(NO_SIGN_BELOW, metadata.threshold))}; `
    + `"${VERDICTS.inconclusive.label}" between.`;
}

async function showSettings() {
  const settings = await loadSettings();
  field('localOnly').checked = settings.localOnly;
  field('serverUrl').value = settings.serverUrl;
  field('maxLocalMegapixels').value = settings.maxLocalMegapixels;
  field('apiKey').value = settings.apiKey;
}

function save() {
  const { settings, problem } = checkedSettings({
    localOnly: field('localOnly').checked,
    serverUrl: field('serverUrl').value,
    maxLocalMegapixels: field('maxLocalMegapixels').value,
    apiKey: field('apiKey').value,
  });
  if (problem) {
    field('status').textContent = `Not saved. ${problem}`;
    return;
  }
  // Requested inside the click, while Chrome still allows a prompt.
  const access = !settings.localOnly && settings.serverUrl
    ? chrome.permissions.request({ origins: [originPattern(settings.serverUrl)] }).catch(() => false)
    : Promise.resolve(true);
  access.then(async (granted) => {
    await chrome.storage.local.set(settings);
    field('status').textContent = granted ? 'Saved.' : 'Saved, but the server can only be reached if it allows this extension (CORS).';
  });
}

field('maxLocalMegapixels').min = String(MEGAPIXELS.min);
field('maxLocalMegapixels').max = String(MEGAPIXELS.max);
field('save').addEventListener('click', save);
showSettings();
setUpDataOptions();
showModel().catch(() => {
  field('model').textContent = 'No model is installed: run `npm run build` after exporting one into extension/model.';
});

import { DEFAULTS, loadSettings, originPattern } from './settings.js';

const field = (id) => document.getElementById(id);

async function showModel() {
  const metadata = await fetch(chrome.runtime.getURL('model/metadata.json')).then((response) => response.json());
  field('model').textContent = `${metadata.name} ${metadata.version} (${metadata.backbone}, ${metadata.image_size} px, `
    + `${metadata.quantization} weights): threshold in use ${(metadata.threshold * 100).toFixed(1)}%.`;
}

async function showSettings() {
  const settings = await loadSettings();
  field('localOnly').checked = settings.localOnly;
  field('serverUrl').value = settings.serverUrl;
  field('maxLocalMegapixels').value = settings.maxLocalMegapixels;
}

function readForm() {
  const serverUrl = field('serverUrl').value.trim();
  if (serverUrl !== '' && !/^https?:\/\/[^/]+/i.test(serverUrl)) {
    throw new Error('The server URL must start with http:// or https://.');
  }
  const megapixels = Number(field('maxLocalMegapixels').value);
  return {
    localOnly: field('localOnly').checked,
    serverUrl,
    maxLocalMegapixels: Number.isFinite(megapixels) && megapixels >= 1 ? megapixels : DEFAULTS.maxLocalMegapixels,
  };
}

function save() {
  let settings;
  try {
    settings = readForm();
  } catch (error) {
    field('status').textContent = error.message;
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

field('save').addEventListener('click', save);
showSettings();
showModel().catch(() => {
  field('model').textContent = 'No model is installed: run `npm run build` after exporting one into extension/model.';
});

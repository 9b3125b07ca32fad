// Chrome: the service worker's side of the offscreen document that runs the
// model (offscreen-document.js), created when first needed. Messages are
// JSON: the image travels as base64.
const OFFSCREEN_PAGE = 'offscreen.html';

let creating = null;

async function ensureOffscreenDocument() {
  // While it is being created it may be listed before it listens.
  if (creating) {
    await creating;
    return;
  }
  const contexts = await chrome.runtime.getContexts({
    contextTypes: ['OFFSCREEN_DOCUMENT'],
    documentUrls: [chrome.runtime.getURL(OFFSCREEN_PAGE)],
  });
  if (contexts.length > 0) {
    return;
  }
  creating ??= chrome.offscreen
    .createDocument({
      url: OFFSCREEN_PAGE,
      reasons: ['WORKERS'],
      justification: 'Runs the face model with TensorFlow.js (WebAssembly), which needs a document that outlives the service worker.',
    })
    .finally(() => {
      creating = null;
    });
  await creating;
}

export async function inOffscreenDocument(message) {
  await ensureOffscreenDocument();
  return chrome.runtime.sendMessage({ ...message, target: 'offscreen' });
}

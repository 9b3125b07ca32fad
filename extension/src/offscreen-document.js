// Chrome's offscreen document (offscreen.html): a service worker cannot keep
// TF.js's WebAssembly backend, so the model runs here (offscreen.js), asked
// by the service worker's messages (offscreen-host.js).
import { runLocally } from './offscreen.js';

chrome.runtime.onMessage.addListener((message, _sender, sendResponse) => {
  if (message?.target !== 'offscreen') {
    return false;
  }
  runLocally(message).then(sendResponse);
  return true;
});

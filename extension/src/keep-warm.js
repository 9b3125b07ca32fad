// While a page scan runs, in the page (page-scan.js): a port to the
// background with a message every 20 s. Firefox unloads an event page (and
// the model in it) after 30 s without an event, and a scan's next image may
// come minutes later, when the user scrolls; each message is an event
// (event-page.js listens). Chrome's offscreen document stays loaded anyway:
// nothing listens there, and the port closes at once.
export const WARM_PORT = 'page-scan-warm';
const INTERVAL_MS = 20000;

// In the event page: the ports' messages are the events that count.
export function acceptWarmPorts() {
  chrome.runtime.onConnect.addListener((port) => {
    if (port.name === WARM_PORT) {
      port.onMessage.addListener(() => {});
    }
  });
}

// In the page: returns what stops it.
export function keepModelWarm() {
  let port;
  try {
    port = chrome.runtime.connect({ name: WARM_PORT });
  } catch {
    // The extension was reloaded under the page: there is nothing to keep warm.
    return () => {};
  }
  const timer = setInterval(() => port.postMessage('scanning'), INTERVAL_MS);
  port.onDisconnect.addListener(() => {
    // Read, so that Chrome (no listener) does not report it as unchecked.
    void chrome.runtime.lastError;
    clearInterval(timer);
  });
  let released = false;
  return () => {
    clearInterval(timer);
    if (!released) {
      released = true;
      port.disconnect();
    }
  };
}

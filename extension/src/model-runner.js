// Where the model runs: the one thing the two browsers' backgrounds do
// differently, chosen by the background's entry point. Chrome's service
// worker hands the work to an offscreen document (service-worker.js);
// Firefox has no offscreen documents, and its event page has a DOM, so the
// model runs in the event page itself (event-page.js).
let runner = null;

// run(message): resolves to the model page's answer (offscreen.js runLocally).
export function useModelRunner(run) {
  runner = run;
}

export function runModel(message) {
  if (runner === null) {
    throw new Error('no model runner was chosen: the background was started without its entry point');
  }
  return runner(message);
}

// Test only, in the test copy of the Firefox build (firefox.mjs): WebDriver
// BiDi can neither open the add-on's pages nor reach its event page, but a
// content script can. The page's own scripts (puppeteer's page.evaluate) post
// {aifaceTest: {id, op, args}}; this relays it to the event page
// (background.js here) and posts back {aifaceTestReply: id, result | error}.
window.addEventListener('message', (event) => {
  const request = event.source === window ? event.data?.aifaceTest : undefined;
  if (!request) {
    return;
  }
  const reply = (answer) => window.postMessage({ aifaceTestReply: request.id, ...answer }, '*');
  chrome.runtime.sendMessage({ aifaceTest: request }).then((result) => reply({ result }),
    (error) => reply({ error: error.message }));
});

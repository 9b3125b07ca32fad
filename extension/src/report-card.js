// "This verdict is wrong" on a verdict's card (page.js): a first click
// shows what would be kept and two answers, the second records the report in
// the extension's storage (report-worker.js). Nothing is sent anywhere.
import { element } from './dom.js';

function checkbox(text) {
  const label = element('label', 'small');
  const box = document.createElement('input');
  box.type = 'checkbox';
  label.append(box, ` ${text}`);
  return { label, box };
}

// The report part of the card, and read() for the tests: where its buttons
// are. resized() lays the card out again once it grew.
export function reportControls(srcUrl, verdict, resized) {
  const section = element('div', 'report');
  const wrong = element('button', '', 'This verdict is wrong');
  wrong.setAttribute('data-ai-face-report', '');
  const form = element('div', '');
  form.hidden = true;
  const real = element('button', '', 'It is a real photo');
  const fake = element('button', '', 'It is AI-generated');
  const thumbnail = checkbox('Keep only a 256 px thumbnail, not the image');
  const pageUrl = checkbox('Keep the address of this page and of the image');
  const status = element('p', 'small');
  const answers = element('div', 'actions');
  answers.append(real, fake);
  form.append(
    element('p', 'small', 'Kept in this browser only, never sent: the image, its SHA-256, the verdict, the model '
      + 'and your answer. The options page lists, exports and deletes reports.'),
    thumbnail.label, pageUrl.label, answers);
  wrong.addEventListener('click', () => {
    form.hidden = !form.hidden;
    resized();
  });
  const send = async (label) => {
    real.disabled = true;
    fake.disabled = true;
    status.textContent = 'Recording…';
    const reply = await chrome.runtime.sendMessage({
      type: 'report', srcUrl, sha256: verdict.sha256, label, thumbnail: thumbnail.box.checked,
      keepPageUrl: pageUrl.box.checked, verdict,
    }).catch((error) => ({ ok: false, message: `The report could not be recorded (${error.message}).` }));
    real.disabled = false;
    fake.disabled = false;
    if (reply?.ok) {
      form.hidden = true;
      status.textContent = `${reply.already ? 'Already reported' : 'Recorded'}: ${label === 'real' ? 'a real photo'
        : 'AI-generated'}. ${reply.count} report${reply.count === 1 ? '' : 's'} kept in this browser (see the options).`;
    } else {
      status.textContent = reply?.message ?? reply?.error ?? 'The report could not be recorded.';
    }
    resized();
  };
  real.addEventListener('click', () => send('real'));
  fake.addEventListener('click', () => send('fake'));
  section.append(element('div', 'actions'), status, form);
  section.firstChild.append(wrong);
  const rect = (node) => {
    if (!node.isConnected || node.closest('[hidden]')) {
      return null;
    }
    const { left, top, width, height } = node.getBoundingClientRect();
    return { left, top, width, height };
  };
  return {
    node: section,
    read: () => ({ wrong: rect(wrong), real: rect(real), fake: rect(fake), thumbnail: rect(thumbnail.box),
      pageUrl: rect(pageUrl.box), status: status.textContent }),
  };
}

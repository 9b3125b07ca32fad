// "Check every face on this page", in the page's isolated world (bundled
// into dist/page.js): the images in view are checked first, the others as
// they scroll into view (an IntersectionObserver feeds the queue), each URL
// once, icons and images too small to judge skipped. The service worker
// checks each image ('scan-check', the same path as a menu click, without
// the tab capture) and the verdict is drawn as a click's is. A summary in a
// corner of the window counts the verdicts and jumps to each "Likely AI".
//
// Everything here runs in short pieces (one verdict drawn, one batch of
// observer entries): the page stays responsive while the faces are checked.
import { element } from './dom.js';
import { keepModelWarm } from './keep-warm.js';
import { MIN_SIDE } from './preprocess.js';

// Shown smaller than this (CSS px) either way: an icon or a tiny thumbnail.
const MIN_SHOWN = 32;
// Images in flight at once: one's fetch and decode overlap another's model.
const PARALLEL = 2;
const CODES = ['likely_ai', 'inconclusive', 'no_sign', 'error'];
const NAMES = { likely_ai: 'Likely AI', inconclusive: 'Inconclusive', no_sign: 'No sign of AI', error: 'Could not check' };
const COLOURS = { likely_ai: '#b71c1c', inconclusive: '#f9a825', no_sign: '#1b5e20', error: '#616161' };
const STYLE = `
  :host { all: initial; }
  .panel { position: fixed; right: 12px; bottom: 12px; width: 260px; padding: 8px 10px; border-radius: 8px;
    background: #fff; color: #222; font: 12px/1.4 system-ui, sans-serif; box-shadow: 0 1px 6px rgba(0,0,0,.45);
    pointer-events: auto; }
  h2 { all: unset; display: block; font-weight: 700; font-size: 13px; padding-right: 18px; }
  p { margin: 4px 0 0; }
  .counts { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 4px; }
  .count { padding: 1px 6px; border-radius: 9px; color: #fff; font-weight: 600; }
  .count[data-code=inconclusive] { color: #000; }
  .small { font-size: 11px; color: #555; }
  .actions { display: flex; gap: 6px; margin-top: 6px; }
  button { font: 600 12px system-ui, sans-serif; cursor: pointer; }
  .close { position: absolute; right: 6px; top: 2px; border: 0; background: none; font-size: 16px; color: #555; }
`;

let current = null;

// Starts a scan of the page (or carries on the one running, adding images
// that came since); resolves to its state once the images in view are checked.
// show(srcUrl, verdict) draws a verdict (page.js).
export function scanPage({ limit }, show) {
  if (!current || current.stopped) {
    current = new PageScan(limit, show);
  }
  return current.start();
}

export function scanState() {
  return current?.state() ?? null;
}

const inViewport = (rect) => rect.bottom > 0 && rect.right > 0 && rect.top < innerHeight && rect.left < innerWidth
  && rect.width > 0 && rect.height > 0;

class PageScan {
  constructor(limit, show) {
    this.limit = limit;
    this.show = show;
    this.seen = new Set(); // URLs taken (queued, checked or skipped)
    this.queue = [];
    this.inView = new Set();
    this.active = 0;
    this.results = new Map(); // srcUrl -> {code, img}
    this.skipped = new Set(); // srcUrls too small to judge
    this.capped = false;
    this.stopped = false;
    this.waiters = [];
    this.longestTaskMs = 0;
    this.longestTask = null;
    this.jumpedTo = -1;
    this.observer = new IntersectionObserver((entries) => this.timed('observer', () => this.onIntersect(entries)));
    // Pages that add profiles as they scroll: new images are watched too.
    this.mutations = new MutationObserver((records) => this.timed('new images', () => this.onAdded(records)));
    this.mutations.observe(document.documentElement, { childList: true, subtree: true });
    this.panel = new Summary(this);
    this.releaseModel = keepModelWarm();
  }

  // The duration of each piece of our work on the page's main thread.
  timed(what, work) {
    const started = performance.now();
    try {
      return work();
    } finally {
      const spent = performance.now() - started;
      if (spent > this.longestTaskMs) {
        this.longestTaskMs = spent;
        this.longestTask = what;
      }
    }
  }

  start() {
    this.timed('start', () => {
      // The images in view now are queued at once (the observer reports
      // them a frame later), so they go first.
      for (const img of document.images) {
        this.watch(img);
        if (inViewport(img.getBoundingClientRect())) {
          this.inView.add(img);
          this.take(img);
        }
      }
      this.panel.update();
    });
    this.pump();
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.resolveIfIdle();
    });
  }

  watch(img) {
    if (!this.stopped) {
      this.observer.observe(img);
    }
  }

  onIntersect(entries) {
    for (const { target, isIntersecting } of entries) {
      if (isIntersecting) {
        this.inView.add(target);
        this.take(target);
      } else {
        this.inView.delete(target);
      }
    }
    this.panel.update();
    this.pump();
  }

  onAdded(records) {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node instanceof HTMLImageElement) {
          this.watch(node);
        } else if (node instanceof Element) {
          for (const img of node.getElementsByTagName('img')) {
            this.watch(img);
          }
        }
      }
    }
  }

  // Queues an image unless its URL was taken already, it is too small, or
  // the cap is reached.
  take(img) {
    const srcUrl = img.currentSrc || img.src;
    if (!srcUrl || this.seen.has(srcUrl) || this.stopped) {
      return;
    }
    const rect = img.getBoundingClientRect();
    const tooSmall = rect.width < MIN_SHOWN || rect.height < MIN_SHOWN
      || (img.naturalWidth > 0 && (img.naturalWidth < MIN_SIDE || img.naturalHeight < MIN_SIDE));
    if (tooSmall && img.complete) {
      this.seen.add(srcUrl);
      this.skipped.add(srcUrl);
      this.observer.unobserve(img);
      return;
    }
    if (tooSmall) {
      // Shown small while it loads: judged again once loaded, if still in view.
      img.addEventListener('load', () => this.timed('loaded', () => {
        if (this.inView.has(img)) {
          this.take(img);
          this.pump();
        }
      }), { once: true });
      return;
    }
    if (this.seen.size - this.skipped.size >= this.limit) {
      this.capped = true;
      this.stopWatching();
      return;
    }
    this.seen.add(srcUrl);
    this.observer.unobserve(img);
    this.queue.push({ img, srcUrl });
  }

  // Next: an image in view now, before one that scrolled out of view since.
  pump() {
    while (this.active < PARALLEL && this.queue.length > 0 && !this.stopped) {
      const index = Math.max(0, this.queue.findIndex(({ img }) => this.inView.has(img)));
      const [item] = this.queue.splice(index, 1);
      this.active += 1;
      this.check(item).finally(() => {
        this.active -= 1;
        this.pump();
        this.resolveIfIdle();
      });
    }
  }

  async check({ img, srcUrl }) {
    if (!img.complete) {
      await img.decode().catch(() => null);
    }
    if (img.naturalWidth > 0 && (img.naturalWidth < MIN_SIDE || img.naturalHeight < MIN_SIDE)) {
      this.skipped.add(srcUrl);
      this.timed('summary', () => this.panel.update());
      return;
    }
    const verdict = await chrome.runtime.sendMessage({ type: 'scan-check', srcUrl }).catch((error) => (
      { error: 'failed', message: `The extension could not check it (${error.message}).` }));
    if (this.stopped) {
      return;
    }
    this.timed('verdict', () => {
      this.show(srcUrl, verdict);
      this.results.set(srcUrl, { code: verdict?.words?.code ?? 'error', img });
      this.panel.update();
    });
  }

  resolveIfIdle() {
    if ((this.queue.length === 0 || this.stopped) && this.active === 0) {
      this.timed('summary', () => this.panel.update());
      const state = this.state();
      for (const resolve of this.waiters.splice(0)) {
        resolve(state);
      }
    }
  }

  // No image will come any more: the model need not wait for one.
  stopWatching() {
    this.observer.disconnect();
    this.mutations.disconnect();
    this.releaseModel();
  }

  stop() {
    this.stopped = true;
    this.queue = [];
    this.stopWatching();
    this.panel.update();
    this.resolveIfIdle();
  }

  counts() {
    const counts = Object.fromEntries(CODES.map((code) => [code, 0]));
    for (const { code } of this.results.values()) {
      counts[code] += 1;
    }
    return counts;
  }

  // The next "Likely AI" image in the page's order, scrolled to the middle of the window.
  jumpToNext() {
    const likely = [...this.results.values()].filter(({ code, img }) => code === 'likely_ai' && img.isConnected)
      .map(({ img }) => img)
      .sort((a, b) => (a.compareDocumentPosition(b) & Node.DOCUMENT_POSITION_FOLLOWING ? -1 : 1));
    if (likely.length > 0) {
      this.jumpedTo = (this.jumpedTo + 1) % likely.length;
      likely[this.jumpedTo].scrollIntoView({ block: 'center', inline: 'nearest' });
    }
    return likely[this.jumpedTo]?.currentSrc ?? null;
  }

  state() {
    return {
      checked: [...this.results.keys()],
      counts: this.counts(),
      skipped: [...this.skipped],
      waiting: this.queue.length + this.active,
      capped: this.capped,
      stopped: this.stopped,
      limit: this.limit,
      longestTaskMs: this.longestTaskMs,
      longestTask: this.longestTask ?? null,
      summary: this.panel.read(),
    };
  }
}

// The summary in the window's corner, in a closed shadow root like the verdicts.
class Summary {
  constructor(scan) {
    this.host = document.createElement('div');
    this.host.style.cssText = 'all: initial; position: fixed; right: 0; bottom: 0; width: 0; height: 0; '
      // One below the verdicts' cards (page.js): a card the user opened lies over the summary, not under it.
      + 'z-index: 2147483646; pointer-events: none;';
    this.root = this.host.attachShadow({ mode: 'closed' });
    const style = element('style', '');
    style.textContent = STYLE;
    this.panel = element('div', 'panel');
    this.panel.setAttribute('role', 'status');
    this.progress = element('p', 'small');
    this.chips = element('div', 'counts');
    this.chip = Object.fromEntries(CODES.map((code) => {
      const chip = element('span', 'count');
      chip.dataset.code = code;
      chip.style.background = COLOURS[code];
      this.chips.append(chip);
      return [code, chip];
    }));
    this.note = element('p', 'small');
    this.next = element('button', '', 'Next "Likely AI" ›');
    this.next.addEventListener('click', () => scan.jumpToNext());
    this.stop = element('button', '', 'Stop');
    this.stop.addEventListener('click', () => scan.stop());
    const close = element('button', 'close', '×');
    close.setAttribute('aria-label', 'Stop the scan and close this summary');
    close.addEventListener('click', () => {
      scan.stop();
      this.host.remove();
    });
    const actions = element('div', 'actions');
    actions.append(this.next, this.stop);
    this.panel.append(element('h2', '', 'Faces on this page'), this.progress, this.chips, this.note, actions, close);
    this.root.append(style, this.panel);
    this.scan = scan;
    document.documentElement.append(this.host);
  }

  update() {
    const { scan } = this;
    const counts = scan.counts();
    for (const code of CODES) {
      this.chip[code].textContent = `${NAMES[code]} ${counts[code]}`;
    }
    const waiting = scan.queue.length + scan.active;
    this.progress.textContent = `${scan.results.size} checked${waiting ? `, ${waiting} waiting` : ''}`
      + (scan.stopped ? ': stopped.' : waiting ? '.' : '; the others are checked as they scroll into view.');
    const notes = [];
    if (scan.skipped.size > 0) {
      notes.push(`${scan.skipped.size} too small to judge, skipped.`);
    }
    if (scan.capped) {
      notes.push(`Stopped at ${scan.limit} images, the cap set in the options.`);
    }
    this.note.textContent = notes.join(' ');
    this.next.disabled = counts.likely_ai === 0;
    this.stop.disabled = scan.stopped;
  }

  // What the panel shows, and where its buttons are (viewport coordinates).
  read() {
    const rect = (node) => {
      const { left, top, width, height } = node.getBoundingClientRect();
      return { left, top, width, height };
    };
    return { text: this.root.textContent.replace(STYLE, ''), shown: this.host.isConnected, next: rect(this.next),
      stop: rect(this.stop), counts: Object.fromEntries(CODES.map((code) => [code, Number(
        this.chip[code].textContent.split(' ').at(-1))])) };
  }
}

// The verdict on the page: a compact badge anchored to the image, a card with
// the details on click, an outline on each scored face and the explanation
// toggled from the card. Bundled into dist/page.js and injected into the page's
// isolated world (chrome.scripting), where the page's scripts cannot reach it;
// everything it draws lives in closed shadow roots, under hosts that carry no
// attribute the page could read or select (the verdict is not in the page's
// DOM) and whose inline style, !important, outranks any style sheet of the
// page's. The toolbar icon repeats the latest verdict (background.js), where no
// page can draw: a badge on the page that disagrees with it is not ours. A
// verdict goes when its image shows another file (src or srcset changed).
//
// Layout rules: on an image of at least LARGE_SIDE px each way the badge sits
// inside a corner (a few % of the image); on a smaller one, and for the card
// always, beside it. No part of a verdict is placed over the page's text,
// other images or another verdict while a free place is within reach.

import { element } from './dom.js';
import { COLOURS } from './marks.js';
import { scanPage, scanState } from './page-scan.js';
import { overlaps } from './rects.js';
import { reportControls } from './report-card.js';

const LARGE_SIDE = 200;
const GAP = 6;
const SEARCH_STEP = 8;
const SEARCH_REACH = 480;
// The host's whole style: `all` resets every property a page sheet could set, and inline !important beats it.
const HOST_STYLE = ['all: initial', 'position: absolute', 'left: 0', 'top: 0', 'width: 0', 'height: 0',
  'z-index: 2147483647', 'pointer-events: none', 'display: block', 'visibility: visible', 'opacity: 1']
  .map((declaration) => `${declaration} !important;`).join(' ');
const CAPTION = 'Where the evidence for this verdict lies — not a map of fake pixels';
const STYLE = `
  :host { all: initial; }
  * { box-sizing: border-box; }
  .badge, .card { position: absolute; pointer-events: auto; font: 12px/1.35 system-ui, sans-serif;
    box-shadow: 0 1px 4px rgba(0,0,0,.45); }
  .badge { display: flex; align-items: center; gap: 5px; height: 22px; padding: 0 8px; border-radius: 11px;
    white-space: nowrap; cursor: pointer; border: 0; font-weight: 600; }
  .badge:focus-visible, .card button:focus-visible { outline: 2px solid #1565c0; outline-offset: 1px; }
  .card { width: 240px; padding: 10px 12px; border-radius: 8px; background: #fff; color: #222; border-top: 5px solid; }
  .card[hidden] { display: none; }
  .card h2 { all: unset; display: block; font-weight: 700; font-size: 14px; padding-right: 18px; }
  .card p { margin: 6px 0 0; }
  .card .small { font-size: 11px; color: #555; }
  .card .provenance { font-weight: 600; }
  .card .provenance[data-status="tampered"], .card .provenance[data-status="untrusted_capture"] { color: #b71c1c; }
  .card .provenance[data-status="unavailable"], .card .provenance[data-status="remote"] { color: #6d4c00; }
  .card .named { font-size: 11px; color: #555; }
  .card button { font: 600 12px system-ui, sans-serif; cursor: pointer; }
  .card .close { position: absolute; right: 6px; top: 4px; border: 0; background: none; font-size: 16px; color: #555; }
  .card .actions { display: flex; gap: 8px; margin-top: 8px; align-items: center; flex-wrap: wrap; }
  .frame { position: absolute; overflow: hidden; pointer-events: none; }
  .face { position: absolute; border: 2px solid; border-radius: 3px; box-shadow: 0 0 0 1px rgba(255,255,255,.7); }
  .overlay { position: absolute; display: block; pointer-events: none; }
`;

const shown = (globalThis.__aiFaceVerdicts ??= new Map());
// Verdicts not yet laid out again after the page moved: where they are drawn
// is out of date, so the others do not make way for it.
const stale = new Set();

// A rectangle in document coordinates.
const docRect = (rect) => ({ left: rect.left + scrollX, top: rect.top + scrollY, width: rect.width, height: rect.height });
// How far apart two rectangles are (0 when they touch or overlap).
const distance = (a, b) => Math.hypot(
  Math.max(0, b.left - (a.left + a.width), a.left - (b.left + b.width)),
  Math.max(0, b.top - (a.top + a.height), a.top - (b.top + b.height)));

function findImage(srcUrl) {
  return [...document.images].find((img) => img.currentSrc === srcUrl || img.src === srcUrl) ?? null;
}

// The page's text lines, form controls and images near `around`, in document
// coordinates: what a verdict must not cover.
function pageObstacles(around, except) {
  const reach = { left: around.left - 2 * SEARCH_REACH, top: around.top - 2 * SEARCH_REACH,
    width: around.width + 4 * SEARCH_REACH, height: around.height + 4 * SEARCH_REACH };
  const rects = [];
  const keep = (rect) => {
    if (rect.width > 0 && rect.height > 0) {
      const placed = docRect(rect);
      if (overlaps(placed, reach)) {
        rects.push(placed);
      }
    }
  };
  const walker = document.createTreeWalker(document.body ?? document.documentElement, NodeFilter.SHOW_TEXT, {
    acceptNode: (node) => (node.data.trim() && !node.parentElement?.closest('script, style, noscript, template')
      ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_REJECT),
  });
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    range.selectNodeContents(node);
    for (const rect of range.getClientRects()) {
      keep(rect);
    }
  }
  for (const element of document.querySelectorAll('img, video, canvas, svg, input, button, select, textarea, iframe')) {
    if (element !== except) {
      keep(element.getBoundingClientRect());
    }
  }
  return rects;
}

// The nearest place for a box of `size` beside `anchor` (or, with `inside`,
// in one of its corners) that covers none of `obstacles` and stays in the
// document; null when there is none within reach.
function freePlace(anchor, size, obstacles, inside) {
  const pageWidth = Math.max(document.documentElement.scrollWidth, innerWidth);
  const fits = (box) => box.left >= 0 && box.top >= 0 && box.left + box.width <= pageWidth
    && !obstacles.some((rect) => overlaps(box, rect));
  const at = (left, top) => ({ left, top, width: size.width, height: size.height });
  if (inside) {
    const right = anchor.left + anchor.width - size.width - GAP;
    const bottom = anchor.top + anchor.height - size.height - GAP;
    return [at(anchor.left + GAP, anchor.top + GAP), at(right, anchor.top + GAP), at(anchor.left + GAP, bottom),
      at(right, bottom)].find(fits) ?? null;
  }
  // Touching first (right, below, left, above the anchor), then further out on
  // a grid, nearest first.
  const candidates = [
    at(anchor.left + anchor.width + GAP, anchor.top), at(anchor.left, anchor.top + anchor.height + GAP),
    at(anchor.left - size.width - GAP, anchor.top), at(anchor.left, anchor.top - size.height - GAP),
  ];
  if (candidates.some(fits)) {
    return candidates.find(fits);
  }
  for (const [dx, dy] of gridOffsets(anchor, size)) {
    const box = at(anchor.left + dx, anchor.top + dy);
    if (fits(box)) {
      return box;
    }
  }
  return null;
}

// The grid's offsets from the anchor that do not overlap it, nearest first:
// the same for every anchor and box of a size (a page scan places dozens).
const offsetsBySize = new Map();
function gridOffsets(anchor, size) {
  const key = `${anchor.width}x${anchor.height} ${size.width}x${size.height}`;
  if (!offsetsBySize.has(key)) {
    const origin = { left: 0, top: 0, width: anchor.width, height: anchor.height };
    const grid = [];
    for (let dy = -SEARCH_REACH; dy <= SEARCH_REACH; dy += SEARCH_STEP) {
      for (let dx = -SEARCH_REACH; dx <= SEARCH_REACH; dx += SEARCH_STEP) {
        const box = { left: dx, top: dy, width: size.width, height: size.height };
        if (!overlaps(box, origin)) {
          grid.push([distance(box, origin), dx, dy]);
        }
      }
    }
    grid.sort((a, b) => a[0] - b[0]);
    offsetsBySize.set(key, grid.map(([, dx, dy]) => [dx, dy]));
  }
  return offsetsBySize.get(key);
}

// Natural pixels -> the image's box on the page, with object-fit applied:
// {scaleX, scaleY, offsetX, offsetY} relative to the image's border box.
function pixelMapping(img, naturalWidth, naturalHeight, rect) {
  const fit = getComputedStyle(img).objectFit;
  if (fit === 'cover' || fit === 'contain' || fit === 'scale-down' || fit === 'none') {
    let scale = fit === 'cover' ? Math.max(rect.width / naturalWidth, rect.height / naturalHeight)
      : Math.min(rect.width / naturalWidth, rect.height / naturalHeight);
    if (fit === 'none' || (fit === 'scale-down' && scale > 1)) {
      scale = 1;
    }
    return { scaleX: scale, scaleY: scale, offsetX: (rect.width - naturalWidth * scale) / 2,
      offsetY: (rect.height - naturalHeight * scale) / 2 };
  }
  return { scaleX: rect.width / naturalWidth, scaleY: rect.height / naturalHeight, offsetX: 0, offsetY: 0 };
}

// What the file says about its origin (provenance.js), first on the card:
// nothing when it says nothing.
function provenanceLines(provenance) {
  if (!provenance?.line) {
    return [];
  }
  const line = element('p', 'provenance', provenance.line);
  line.setAttribute('data-status', provenance.status);
  const named = [['Signer', signerOf(provenance.c2pa)], ['Tool', provenance.c2pa?.claim_generator]]
    .filter(([, value]) => value).map(([what, value]) => `${what}: \u201c${asData(value)}\u201d`);
  // Names the file gives, apart from our sentence and marked as the file's own words.
  return named.length ? [line, element('p', 'named', `As the file names them: ${named.join(' · ')}`)] : [line];
}

const signerOf = (c2pa) => c2pa?.signer?.organization || c2pa?.signer?.common_name;
// A file's text shown as data: one line, no control characters, bounded.
const asData = (value) => String(value).replace(/\p{Cc}|\p{Zl}|\p{Zp}/gu, ' ').slice(0, 80);

function show(srcUrl, verdict) {
  shown.get(srcUrl)?.remove();
  const ui = new VerdictUi(srcUrl, verdict);
  shown.set(srcUrl, ui);
  ui.layout();
}

class VerdictUi {
  constructor(srcUrl, verdict) {
    this.srcUrl = srcUrl;
    this.verdict = verdict;
    this.image = findImage(srcUrl);
    this.host = document.createElement('div');
    this.root = this.host.attachShadow({ mode: 'closed' });
    const style = element('style');
    style.textContent = STYLE;
    const [background, foreground] = COLOURS[verdict.error ? 'error' : verdict.words.code];
    this.colour = background;
    this.frame = element('div', 'frame');
    this.badge = element('button', 'badge');
    this.badge.style.cssText = `background: ${background}; color: ${foreground};`;
    this.badge.setAttribute('aria-expanded', 'false');
    this.card = element('div', 'card');
    this.card.hidden = true;
    this.card.setAttribute('role', 'dialog');
    this.card.style.borderTopColor = background;
    this.badge.addEventListener('click', () => this.toggleCard());
    this.root.append(style, this.frame, this.badge, this.card);
    if (verdict.error) {
      this.badge.textContent = 'Not checked';
      this.fillError();
    } else {
      this.badge.textContent = `${verdict.words.badge} ${verdict.words.percent}`;
      this.fillCard();
      this.outlineFaces();
    }
    this.badge.setAttribute('aria-label', `AI face check: ${this.badge.textContent}. Details`);
    this.host.style.cssText = HOST_STYLE;
    const written = this.host.getAttribute('style'); // as the browser writes it back
    // A page script that rewrites the host's style, or marks it, gets it back as it was.
    this.guard = new MutationObserver(() => {
      for (const name of this.host.getAttributeNames().filter((other) => other !== 'style')) {
        this.host.removeAttribute(name);
      }
      if (this.host.getAttribute('style') !== written) {
        this.host.setAttribute('style', written);
      }
    });
    this.guard.observe(this.host, { attributes: true });
    this.followImage();
    document.documentElement.append(this.host);
  }

  // The verdict is about one file: when the image is made to show another, it goes.
  followImage() {
    if (!this.image) {
      return;
    }
    const check = () => {
      const now = this.image.currentSrc || this.image.src;
      if (!this.image.isConnected || (now !== this.srcUrl && this.image.src !== this.srcUrl)) {
        this.remove();
      }
    };
    this.watch = new MutationObserver((changes) => {
      if (changes.some((change) => change.oldValue !== this.image.getAttribute(change.attributeName))) {
        this.remove();
      }
    });
    this.watch.observe(this.image, { attributes: true, attributeFilter: ['src', 'srcset'], attributeOldValue: true });
    this.image.addEventListener('load', check);
    this.stopFollowing = () => this.image.removeEventListener('load', check);
  }

  remove() {
    this.guard?.disconnect();
    this.watch?.disconnect();
    this.stopFollowing?.();
    this.host.remove();
    if (shown.get(this.srcUrl) === this) {
      shown.delete(this.srcUrl);
    }
  }

  heading(text) {
    const header = element('h2', '', text);
    const close = element('button', 'close', '×');
    close.setAttribute('aria-label', 'Close the details');
    close.addEventListener('click', () => this.toggleCard(false));
    return [header, close];
  }

  fillError() {
    const dismiss = element('button', '', 'Dismiss');
    dismiss.addEventListener('click', () => this.remove());
    const actions = element('div', 'actions');
    actions.append(dismiss);
    this.card.append(...this.heading('Could not check this image'), element('p', '', this.verdict.message), actions);
  }

  fillCard() {
    const { words, where, scored, faces, note } = this.verdict;
    const lines = [
      ...provenanceLines(this.verdict.provenance),
      element('p', '', words.meaning),
      element('p', '', words.explanation),
    ];
    if (scored === 'faces' && faces.length > 0) {
      lines.push(element('p', 'small', faces.length === 1 ? '1 face checked (outlined).'
        : `${faces.length} faces checked (outlined); the highest score is shown.`));
    } else {
      lines.push(element('p', 'small', 'No face found: the whole image was checked, which is less reliable '
        + 'when the face is small.'));
    }
    this.whereLine = element('p', 'small', where === 'server' ? `Checked by your detection service (${this.verdict.service}).`
      : 'Checked in this browser: the image did not leave this computer.');
    lines.push(this.whereLine);
    if (note) {
      lines.push(element('p', 'small', note));
    }
    const actions = element('div', 'actions');
    this.why = element('button', '', 'Why?');
    this.why.setAttribute('data-ai-face-toggle', '');
    this.whyStatus = element('span', 'small');
    if (this.verdict.explanation || this.verdict.canExplain) {
      this.why.addEventListener('click', () => this.toggleExplanation());
      actions.append(this.why, this.whyStatus);
    } else {
      actions.append(element('span', 'small', this.verdict.explainHint));
    }
    const dismiss = element('button', '', 'Dismiss');
    dismiss.addEventListener('click', () => this.remove());
    actions.append(dismiss);
    this.card.append(...this.heading(words.label), ...lines, actions);
    this.report = reportControls(this.srcUrl, this.verdict, () => this.layout());
    this.card.append(this.report.node);
  }

  // The image's box on the page, and how pixels of an image `size` that the
  // page shows there (the verdict's, or the service's for an explanation)
  // map onto it; rendered pixels (the tab's capture) map as they were drawn.
  placement() {
    if (!this.image?.isConnected) {
      return null;
    }
    const rect = docRect(this.image.getBoundingClientRect());
    if (rect.width === 0 || rect.height === 0) {
      return null; // not displayed (hidden, a closed carousel): the verdict goes in a corner
    }
    const { rendered } = this.verdict;
    const map = (size) => {
      if (rendered) {
        return { scaleX: 1 / rendered.dpr, scaleY: 1 / rendered.dpr, offsetX: rendered.offsetX, offsetY: rendered.offsetY };
      }
      const width = size?.width || this.image.naturalWidth;
      const height = size?.height || this.image.naturalHeight;
      return width && height ? pixelMapping(this.image, width, height, rect) : null;
    };
    return { rect, map };
  }

  toPage(box, map) {
    return { left: map.offsetX + box.x * map.scaleX, top: map.offsetY + box.y * map.scaleY,
      width: box.width * map.scaleX, height: box.height * map.scaleY };
  }

  outlineFaces() {
    const faces = this.verdict.scored === 'faces' ? this.verdict.faces : [];
    if (faces.length > 0) {
      this.decidingBox = faces.reduce((best, face) => (face.probability_fake > best.probability_fake ? face : best)).box;
    }
    this.outlines = faces.map((face) => {
      const outline = element('div', 'face');
      outline.style.borderColor = this.colour;
      outline.style.borderWidth = face === faces.find((f) => f.probability_fake === this.verdict.probability) ? '3px' : '2px';
      this.frame.append(outline);
      return { outline, box: face.box };
    });
  }

  // Places the frame over the image, then the badge and, when open, the card.
  layout() {
    const place = this.placement();
    const anchor = place?.rect ?? { left: scrollX + innerWidth - 12, top: scrollY + 12, width: 0, height: 0 };
    Object.assign(this.frame.style, { left: `${anchor.left}px`, top: `${anchor.top}px`, width: `${anchor.width}px`,
      height: `${anchor.height}px` });
    const faceMap = place?.map(this.verdict);
    if (faceMap) {
      for (const { outline, box } of this.outlines ?? []) {
        const at = this.toPage(box, faceMap);
        Object.assign(outline.style, { left: `${at.left}px`, top: `${at.top}px`, width: `${at.width}px`, height: `${at.height}px` });
      }
    }
    const overlayMap = this.overlay && place?.map(this.overlaySize);
    if (overlayMap) {
      const at = this.toPage(this.overlayBox, overlayMap);
      Object.assign(this.overlay.style, { left: `${at.left}px`, top: `${at.top}px`, width: `${at.width}px`, height: `${at.height}px` });
    }
    stale.delete(this);
    const others = [...shown.values()].filter((ui) => ui !== this && !stale.has(ui)).flatMap((ui) => ui.parts());
    const obstacles = [...pageObstacles(anchor, this.image), ...others];
    const large = anchor.width >= LARGE_SIDE && anchor.height >= LARGE_SIDE;
    const badgeSize = { width: this.badge.offsetWidth || 120, height: this.badge.offsetHeight || 22 };
    // Where it was, while that is still beside (or on) the image and free:
    // verdicts do not jump about when another one opens or the window resizes.
    const kept = (placed, size, against) => {
      const box = placed && { left: placed.left + anchor.left, top: placed.top + anchor.top, ...size };
      return box && !against.some((rect) => overlaps(box, rect)) ? box : null;
    };
    const badgeAt = kept(this.badgePlaced, badgeSize, large ? obstacles : [...obstacles, anchor])
      || (large && freePlace(anchor, badgeSize, obstacles, true))
      || freePlace(anchor, badgeSize, obstacles, false)
      || { left: anchor.left + anchor.width + GAP, top: anchor.top, ...badgeSize };
    this.moveTo(this.badge, badgeAt);
    this.badgePlaced = { left: badgeAt.left - anchor.left, top: badgeAt.top - anchor.top };
    if (!this.card.hidden) {
      const cardSize = { width: this.card.offsetWidth, height: this.card.offsetHeight };
      const around = { left: Math.min(anchor.left, badgeAt.left), top: Math.min(anchor.top, badgeAt.top),
        width: Math.max(anchor.left + anchor.width, badgeAt.left + badgeAt.width) - Math.min(anchor.left, badgeAt.left),
        height: Math.max(anchor.top + anchor.height, badgeAt.top + badgeAt.height) - Math.min(anchor.top, badgeAt.top) };
      const cardObstacles = [...obstacles, docRect(this.badge.getBoundingClientRect()), anchor];
      const cardAt = kept(this.cardPlaced, cardSize, cardObstacles) ?? freePlace(around, cardSize, cardObstacles, false)
        // Nowhere free: over the image itself rather than over the page's text.
        ?? { left: anchor.left, top: anchor.top + (large ? badgeSize.height + 2 * GAP : anchor.height + GAP), ...cardSize };
      this.moveTo(this.card, cardAt);
      this.cardPlaced = { left: cardAt.left - anchor.left, top: cardAt.top - anchor.top };
    } else {
      this.cardPlaced = null;
    }
  }

  moveTo(node, at) {
    node.style.left = `${at.left}px`;
    node.style.top = `${at.top}px`;
  }

  // What this verdict draws, in viewport coordinates: its badge, card and
  // explanation, and a strip along each side of each face outline.
  drawn() {
    const rects = [this.badge, ...(this.card.hidden ? [] : [this.card]),
      ...(this.overlay && this.overlay.style.visibility !== 'hidden' ? [this.overlay] : [])]
      .map((node) => node.getBoundingClientRect());
    for (const { outline } of this.outlines ?? []) {
      const { left, top, width, height } = outline.getBoundingClientRect();
      const side = 6;
      rects.push({ left: left - 2, top: top - 2, width: width + 4, height: side },
        { left: left - 2, top: top + height - side + 2, width: width + 4, height: side },
        { left: left - 2, top: top - 2, width: side, height: height + 4 },
        { left: left + width - side + 2, top: top - 2, width: side, height: height + 4 });
    }
    return rects.map(({ left, top, width, height }) => ({ left, top, width, height }));
  }

  // The rectangles this verdict covers, in document coordinates.
  parts() {
    const visible = [this.badge, ...(this.card.hidden ? [] : [this.card])];
    return visible.map((node) => docRect(node.getBoundingClientRect()));
  }

  toggleCard(open = this.card.hidden) {
    if (open && this.host.nextSibling) {
      // Every verdict's host has the highest z-index: the one placed last is on top. A card the user opens
      // must not lie under the badges of the images below it (a tall card reaches over them).
      document.documentElement.append(this.host);
    }
    this.card.hidden = !open;
    this.badge.setAttribute('aria-expanded', String(open));
    this.layout();
  }

  async toggleExplanation() {
    if (this.overlay) {
      const visible = this.overlay.style.visibility === 'hidden';
      this.overlay.style.visibility = visible ? 'visible' : 'hidden';
      this.showCaption(visible);
      return;
    }
    let explanation = this.verdict.explanation;
    // The service's explanation is in the pixels of the image it got.
    let size = { width: this.verdict.width, height: this.verdict.height };
    if (!explanation) {
      this.why.disabled = true;
      this.whyStatus.textContent = 'Asking your detection service…';
      const reply = await chrome.runtime.sendMessage({ type: 'explain', srcUrl: this.srcUrl }).catch((error) => ({
        error: `The explanation could not be asked for (${error.message}).` }));
      this.why.disabled = false;
      if (!reply?.explanation) {
        this.whyStatus.textContent = reply?.error ?? 'The detection service gave no explanation.';
        return;
      }
      explanation = reply.explanation;
      size = { width: reply.width, height: reply.height };
      this.whereLine.textContent = 'Checked in this browser; sent to your detection service only to explain it (Why?).';
      this.explainedBy = reply.note;
    }
    this.overlay = element('img', 'overlay');
    this.overlay.setAttribute('data-ai-face-explanation', '');
    this.overlay.alt = '';
    this.overlay.src = `data:image/png;base64,${explanation.png_base64}`;
    this.overlayBox = explanation.box;
    this.overlaySize = size;
    this.frame.append(this.overlay);
    this.showCaption(true);
    this.layout();
  }

  showCaption(visible) {
    this.why.textContent = visible ? 'Hide why' : 'Why?';
    this.whyStatus.textContent = visible ? [CAPTION, this.explainedBy].filter(Boolean).join('. ') : '';
    this.layout();
  }

  // What a test (or a debugging session in the isolated world) needs to know.
  read() {
    const rect = (node) => {
      if (!node || !node.isConnected || node.hidden || node.style.visibility === 'hidden') {
        return null;
      }
      const { left, top, width, height } = node.getBoundingClientRect();
      return { left, top, width, height };
    };
    return {
      srcUrl: this.srcUrl,
      attribute: this.verdict.error ? null : String(this.verdict.probability),
      provenance: this.verdict.error ? null : this.verdict.provenance?.status ?? 'none',
      error: this.verdict.error ?? null,
      scored: this.verdict.error ? null : this.verdict.scored,
      faceBox: this.decidingBox ?? null,
      text: this.root.textContent.replace(STYLE, ''),
      image: rect(this.image),
      badge: rect(this.badge),
      card: rect(this.card),
      faces: (this.outlines ?? []).map(({ outline }) => rect(outline)),
      overlay: this.overlay ? { ...rect(this.overlay), shown: this.overlay.style.visibility !== 'hidden',
        png: { width: this.overlay.naturalWidth, height: this.overlay.naturalHeight } } : null,
      toggle: this.why?.textContent ?? null,
      why: rect(this.why),
      code: this.verdict.error ? 'error' : this.verdict.words.code,
      report: this.report && !this.card.hidden ? this.report.read() : null,
    };
  }
}

// Where the image is drawn in the viewport (CSS px, the part that shows),
// which part of its natural pixels that is, and what of ours is drawn over
// it (mask): what the worker compares with a capture of the tab. Answers
// once a frame with the page as it is now has been drawn.
async function locate(srcUrl) {
  for (let frame = 0; frame < 2; frame += 1) {
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
  const img = findImage(srcUrl);
  if (!img?.naturalWidth) {
    return null;
  }
  const rect = img.getBoundingClientRect();
  const natural = { width: img.naturalWidth, height: img.naturalHeight };
  const map = pixelMapping(img, natural.width, natural.height, rect);
  const drawn = { left: rect.left + map.offsetX, top: rect.top + map.offsetY };
  const left = Math.max(drawn.left, rect.left, 0);
  const top = Math.max(drawn.top, rect.top, 0);
  const right = Math.min(drawn.left + natural.width * map.scaleX, rect.right, innerWidth);
  const bottom = Math.min(drawn.top + natural.height * map.scaleY, rect.bottom, innerHeight);
  if (right - left < 8 || bottom - top < 8) {
    return null;
  }
  return {
    visible: { left, top, width: right - left, height: bottom - top },
    // Where the visible part starts in the image's box (CSS px).
    offset: { x: left - rect.left, y: top - rect.top },
    source: { x: (left - drawn.left) / map.scaleX, y: (top - drawn.top) / map.scaleY, width: (right - left) / map.scaleX,
      height: (bottom - top) / map.scaleY },
    natural,
    dpr: devicePixelRatio,
    mask: [...shown.values()].flatMap((ui) => ui.drawn()),
  };
}

function relayout() {
  for (const ui of shown.values()) {
    stale.add(ui);
  }
  for (const ui of shown.values()) {
    ui.layout();
  }
}

if (!globalThis.__aiFace) {
  // The page's layout moves with the window, and with a scrollbar that
  // comes or goes (no resize event then): follow its width.
  addEventListener('resize', relayout);
  new ResizeObserver(relayout).observe(document.documentElement);
  globalThis.__aiFace = {
    show,
    locate,
    read: () => [...shown.values()].map((ui) => ui.read()),
    scan: (options) => scanPage(options, show),
    scanState,
  };
}

// Shows a verdict (or why there is none) on the image on the page, and the
// server's explanation over it.
// Injected with chrome.scripting.executeScript({func}), so it must be
// self-contained: no imports, no helpers from outside the function.
export function showVerdict(srcUrl, verdict) {
  const COLOURS = {
    fake: ['#b71c1c', '#fff'],
    uncertain: ['#f9a825', '#000'],
    real: ['#1b5e20', '#fff'],
    error: ['#424242', '#fff'],
  };
  const boxes = (globalThis.__aiFaceBoxes ??= new Map());
  boxes.get(srcUrl)?.remove();

  const host = document.createElement('div');
  const shadow = host.attachShadow({ mode: 'open' });
  const [background, foreground] = COLOURS[verdict.error ? 'error' : verdict.band];
  const box = document.createElement('div');
  box.setAttribute('role', 'status');
  box.style.cssText = `all: initial; position: relative; display: flex; gap: 8px; align-items: flex-start;
    width: max-content; max-width: 320px; margin: 4px; padding: 6px 8px; border-radius: 6px; font: 13px/1.35 system-ui, sans-serif;
    background: ${background}; color: ${foreground}; box-shadow: 0 2px 6px rgba(0,0,0,.4);`;
  const text = document.createElement('div');
  const headline = document.createElement('strong');
  const detail = document.createElement('div');
  detail.style.cssText = 'font-size: 11px; opacity: .9;';
  if (verdict.error) {
    host.setAttribute('data-ai-face-error', verdict.error);
    headline.textContent = 'Could not check this image';
    detail.textContent = verdict.message;
  } else {
    host.setAttribute('data-ai-face-verdict', String(verdict.probability));
    host.setAttribute('data-ai-face-scored', verdict.scored);
    const percent = (verdict.probability * 100).toFixed(1);
    headline.textContent = `${verdict.headline} (${percent}%)`;
    detail.textContent = `${percent}% probability of AI-generated · threshold ${(verdict.threshold * 100).toFixed(0)}% · `
      + (verdict.where === 'server' ? 'on server' : 'ran locally');
    const scope = document.createElement('div');
    const faces = verdict.faces;
    if (verdict.scored === 'faces' && faces.length > 0) {
      const deciding = faces.reduce((best, face) => (face.probability_fake > best.probability_fake ? face : best));
      host.setAttribute('data-ai-face-box', JSON.stringify(deciding.box));
      scope.textContent = faces.length === 1 ? '1 face checked' : `${faces.length} faces checked, the highest score shown`;
    } else {
      scope.textContent = 'no face found: whole image checked';
    }
    detail.append(scope);
  }
  text.append(headline, detail);
  const dismiss = document.createElement('button');
  dismiss.textContent = '×';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.style.cssText = `all: initial; cursor: pointer; color: ${foreground}; font: bold 16px/1 system-ui, sans-serif;`;
  dismiss.addEventListener('click', () => {
    host.remove();
    boxes.delete(srcUrl);
  });
  box.append(text, dismiss);
  shadow.append(box);

  const image = [...document.images].find((img) => img.currentSrc === srcUrl || img.src === srcUrl);
  const rect = image?.getBoundingClientRect();
  if (!verdict.error) {
    text.append(explain(verdict.explanation, image, rect));
  }
  host.style.cssText = rect
    ? `position: absolute; z-index: 2147483647; left: ${rect.left + scrollX}px; top: ${rect.top + scrollY}px;`
    : 'position: fixed; z-index: 2147483647; right: 12px; top: 12px;';
  document.documentElement.append(host);
  boxes.set(srcUrl, host);

  // The server's heat-map stretched over the region it explains, with a
  // toggle; or why there is none.
  function explain(explanation, img, where) {
    const line = document.createElement('div');
    line.style.cssText = 'font-size: 11px; margin-top: 4px;';
    if (!explanation) {
      line.textContent = verdict.where === 'server' ? 'The server gave no explanation.'
        : 'Why this verdict: explanations need the server (see Options).';
      return line;
    }
    if (!img || !img.naturalWidth) {
      line.textContent = 'The explanation cannot be placed: the image is not on this page.';
      return line;
    }
    const scaleX = where.width / img.naturalWidth;
    const scaleY = where.height / img.naturalHeight;
    const overlay = document.createElement('img');
    overlay.setAttribute('data-ai-face-explanation', '');
    overlay.alt = '';
    overlay.src = `data:image/png;base64,${explanation.png_base64}`;
    const { x, y, width, height } = explanation.box;
    overlay.style.cssText = `all: initial; position: absolute; pointer-events: none; display: block;
      left: ${x * scaleX}px; top: ${y * scaleY}px; width: ${width * scaleX}px; height: ${height * scaleY}px;`;
    shadow.prepend(overlay);
    // Below the image, so that the verdict does not hide what it explains.
    box.style.marginTop = `${where.height + 4}px`;
    const toggle = document.createElement('button');
    toggle.setAttribute('data-ai-face-toggle', '');
    toggle.style.cssText = `all: initial; cursor: pointer; color: inherit; font: 600 11px system-ui, sans-serif;
      text-decoration: underline; margin-right: 6px;`;
    const caption = document.createElement('span');
    caption.textContent = 'Where the evidence for this verdict lies — not a map of fake pixels';
    const show = (visible) => {
      overlay.style.visibility = visible ? 'visible' : 'hidden';
      caption.style.display = visible ? 'inline' : 'none';
      toggle.textContent = visible ? 'Hide why' : 'Show why';
    };
    toggle.addEventListener('click', () => show(overlay.style.visibility === 'hidden'));
    show(true);
    line.append(toggle, caption);
    return line;
  }
}

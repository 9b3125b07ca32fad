// Shows a verdict (or why there is none) beside the image on the page.
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
  box.style.cssText = `all: initial; display: flex; gap: 8px; align-items: flex-start; max-width: 320px;
    padding: 6px 8px; border-radius: 6px; font: 13px/1.35 system-ui, sans-serif;
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
    const percent = (verdict.probability * 100).toFixed(1);
    headline.textContent = `${verdict.headline} (${percent}%)`;
    detail.textContent = `${percent}% probability of AI-generated · threshold ${(verdict.threshold * 100).toFixed(0)}% · `
      + (verdict.where === 'server' ? 'on server' : 'ran locally');
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
  host.style.cssText = rect
    ? `position: absolute; z-index: 2147483647; left: ${rect.left + scrollX + 4}px; top: ${rect.top + scrollY + 4}px;`
    : 'position: fixed; z-index: 2147483647; right: 12px; top: 12px;';
  document.documentElement.append(host);
  boxes.set(srcUrl, host);
}

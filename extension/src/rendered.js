// Is the file the worker fetched the image the page shows? A page's server
// can tell the extension's request from the page's and answer it with
// another file; the tab's capture shows what the user sees. Compared as
// thumbnails (32x32, or a quarter of the smaller of the two sides when that
// is less, so that both are well low-passed) of the part of the image in view, on their central 70 %
// (rounded corners stay out) less the cells under what the extension drew
// there (badges, outlines, explanations); when they differ, the rendered
// pixels are what gets checked.
import { fromBase64, toBase64 } from './bytes.js';
import { overlaps } from './rects.js';

const MAX_SIDE = 32;
const MIN_SIDE = 8;
// Fewer than this share of the central cells left to compare: no
// conclusion, the fetched file is checked.
const MIN_SHARE = 0.25;
// Mean absolute difference per channel (0-255) above which the fetched file
// is not what the page shows. The same file drawn by the page and by the
// extension differs by about 2 (resampling, colour management); another
// photo by tens.
export const MAX_DIFFERENCE = 20;

function thumbnail(source, x, y, width, height, side) {
  const canvas = new OffscreenCanvas(side, side);
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.imageSmoothingQuality = 'high';
  context.drawImage(source, x, y, width, height, 0, 0, side, side);
  return context.getImageData(0, 0, side, side).data;
}


// Mean absolute difference per channel over the cells compared; null when
// too few are left.
function difference(a, b, side, visible, mask) {
  let total = 0;
  let count = 0;
  const margin = Math.round(0.15 * side);
  const cell = { width: visible.width / side, height: visible.height / side };
  for (let row = margin; row < side - margin; row += 1) {
    for (let col = margin; col < side - margin; col += 1) {
      const area = { left: visible.left + col * cell.width, top: visible.top + row * cell.height, ...cell };
      if (mask.some((rect) => overlaps(area, rect))) {
        continue;
      }
      for (let channel = 0; channel < 3; channel += 1) {
        const index = (row * side + col) * 4 + channel;
        total += Math.abs(a[index] - b[index]);
        count += 1;
      }
    }
  }
  return count >= 3 * MIN_SHARE * (side - 2 * margin) ** 2 ? total / count : null;
}

// image, mimeType: the fetched file (base64); screenshot: the tab's capture,
// a JPEG (base64); visible, source, natural, dpr, mask: from page.js locate().
// Answers {ok, match, difference} and, when they differ, the rendered
// pixels of the image as a PNG (base64) with their size.
export async function compareWithRendered({ image, mimeType, screenshot, visible, source, natural, dpr, mask }) {
  const shot = await createImageBitmap(new Blob([fromBase64(screenshot)], { type: 'image/jpeg' }));
  try {
    let fetched;
    try {
      fetched = await createImageBitmap(new Blob([fromBase64(image)], { type: mimeType }), { imageOrientation: 'from-image' });
    } catch {
      return { ok: true, match: false, difference: null, ...(await renderedCrop(shot, visible, dpr)) };
    }
    const region = [visible.left * dpr, visible.top * dpr, visible.width * dpr, visible.height * dpr];
    const sameSize = fetched.width === natural.width && fetched.height === natural.height;
    const smallest = Math.min(source.width, source.height, region[2], region[3]);
    const side = Math.max(MIN_SIDE, Math.min(MAX_SIDE, Math.floor(smallest / 4)));
    const apart = difference(thumbnail(fetched, source.x, source.y, source.width, source.height, side),
      thumbnail(shot, ...region, side), side, visible, mask);
    fetched.close();
    const match = sameSize && (apart === null || apart <= MAX_DIFFERENCE);
    return { ok: true, match, difference: apart, ...(match ? {} : await renderedCrop(shot, visible, dpr)) };
  } finally {
    shot.close();
  }
}

// shot: the tab's capture, decoded.
async function renderedCrop(shot, visible, dpr) {
  const width = Math.max(1, Math.round(visible.width * dpr));
  const height = Math.max(1, Math.round(visible.height * dpr));
  const canvas = new OffscreenCanvas(width, height);
  canvas.getContext('2d').drawImage(shot, Math.round(visible.left * dpr), Math.round(visible.top * dpr), width, height, 0, 0,
    width, height);
  const blob = await canvas.convertToBlob({ type: 'image/png' });
  return { rendered: await toBase64(blob), width, height };
}

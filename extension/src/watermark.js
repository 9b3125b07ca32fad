// The open generators' invisible watermarks, in the browser: the mirror of
// aiface/watermark.py (its docstring gives the steps), with its table from
// watermark.json, generated from it. It must read the same bits from the same
// pixels (tests/test_watermark.py), so every sum runs in the same order and
// the float domains round to float32 where OpenCV and PyWavelets do.
import TABLE from './watermark.json' with { type: 'json' };

export const { marks: MARKS, max_pixels: MAX_PIXELS } = TABLE;

const SCALE = 36;
const HAAR = 0.7071067811865476;
const f32 = Math.fround;
const HAAR32 = f32(HAAR);
const [Y_BLUE, Y_GREEN, Y_RED, U_SCALE] = [0.114, 0.587, 0.299, 0.492].map(f32);

// OpenCV's U (step 1) of the 8 pixel rows from y0, into u (Float64Array of 8 * width). Products of
// the float32 coefficients and 8-bit values, and the sums below, are exact in float64, so one rounding
// to float32 after each is a fused multiply-add's.
function uRows(rgb, width, y0, domain, u) {
  const start = 3 * y0 * width;
  if (domain === '8-bit') {
    for (let p = 0; p < u.length; p += 1) {
      const [r, g, b] = [rgb[start + 3 * p], rgb[start + 3 * p + 1], rgb[start + 3 * p + 2]];
      const y = (b * 1868 + g * 9617 + r * 4899 + 8192) >> 14;
      u[p] = Math.min(255, Math.max(0, ((b - y) * 8061 + (128 << 14) + 8192) >> 14));
    }
    return;
  }
  const [red, blue] = domain === 'float-swapped' ? [2, 0] : [0, 2];
  for (let p = 0; p < u.length; p += 1) {
    const [r, g, b] = [rgb[start + 3 * p + red], rgb[start + 3 * p + 1], rgb[start + 3 * p + blue]];
    const y = f32(b * Y_BLUE + f32(g * Y_GREEN + f32(r * Y_RED)));
    u[p] = f32(f32(b - y) * U_SCALE + 0.5);
  }
}

// One Haar step on two values (step 2): float64 for 8-bit U, float32 for float U.
const haar = (second, first, float) => (float ? f32(f32(second * HAAR32) + f32(first * HAAR32))
  : second * HAAR + first * HAAR);

// The vote (step 3) of the block whose left column is x0 in the 8 rows of u.
function blockVote(u, width, x0, float) {
  let largest = -1;
  for (let k = 1; k < 16; k += 1) {
    const at = 2 * (k >> 2) * width + x0 + 2 * (k & 3);
    const left = haar(u[at + width], u[at], float);
    const right = haar(u[at + width + 1], u[at + 1], float);
    largest = Math.max(largest, Math.abs(haar(right, left, float)));
  }
  return largest % SCALE > 0.5 * SCALE;
}

// The bits a dwtDct mark of each length would carry in a domain: {length: '0'/'1' text}.
// rgb: interleaved 8-bit RGB, width x height, at least MIN_PIXELS pixels.
export function decodeBits(rgb, width, height, domain, lengths) {
  if (width * height < TABLE.min_pixels) {
    throw new Error(`${width}x${height} pixels: under the ${TABLE.min_pixels} a mark needs`);
  }
  if (!['8-bit', 'float', 'float-swapped'].includes(domain)) {
    throw new Error(`unknown domain ${domain}`);
  }
  const blockCols = Math.floor(width / 8);
  const votes = new Uint8Array(blockCols * Math.floor(height / 8));
  const u = new Float64Array(8 * width);
  for (let row = 0; row < Math.floor(height / 8); row += 1) {
    uRows(rgb, width, 8 * row, domain, u);
    for (let col = 0; col < blockCols; col += 1) {
      votes[row * blockCols + col] = blockVote(u, width, 8 * col, domain !== '8-bit') ? 1 : 0;
    }
  }
  return Object.fromEntries(lengths.map((length) => {
    const ones = new Array(length).fill(0);
    const counts = new Array(length).fill(0);
    for (let n = 0; n < votes.length; n += 1) {
      ones[n % length] += votes[n];
      counts[n % length] += 1;
    }
    return [length, ones.map((one, k) => ((one / counts[k]) * 255 > 127 ? '1' : '0')).join('')];
  }));
}

// For each mark, how many of its bits the pixels carry in the best of its domains: {name: matching bits}.
export function agreements(rgb, width, height) {
  const best = Object.fromEntries(MARKS.map((mark) => [mark.name, 0]));
  for (const domain of ['8-bit', 'float', 'float-swapped']) {
    const marks = MARKS.filter((mark) => mark.domains.includes(domain));
    const decoded = decodeBits(rgb, width, height, domain, [...new Set(marks.map((mark) => mark.bits.length))]);
    for (const mark of marks) {
      const bits = decoded[mark.bits.length];
      const matching = [...mark.bits].filter((bit, k) => bit === bits[k]).length;
      best[mark.name] = Math.max(best[mark.name], matching);
    }
  }
  return best;
}

// The best-agreeing mark at or above the level: {name, bits, matching_bits}, or null (also for
// images outside the sizes read), as aiface.watermark.find_mark.
export function findMark(rgb, width, height) {
  if (width * height < TABLE.min_pixels || width * height > MAX_PIXELS) {
    return null;
  }
  const matching = agreements(rgb, width, height);
  let found = null;
  for (const mark of MARKS) {
    const candidate = { name: mark.name, bits: mark.bits.length, matching_bits: matching[mark.name] };
    const share = candidate.matching_bits / candidate.bits;
    if (candidate.matching_bits >= TABLE.min_agreement * candidate.bits
        && (found === null || share > found.matching_bits / found.bits)) {
      found = candidate;
    }
  }
  return found;
}

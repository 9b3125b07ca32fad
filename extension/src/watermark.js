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

// OpenCV's U of one pixel in a domain (step 1). Products of these float32
// coefficients and 8-bit values, and the sums below, are exact in float64, so
// one rounding to float32 after each is a fused multiply-add's.
const U_OF = {
  '8-bit': (r, g, b) => {
    const y = (b * 1868 + g * 9617 + r * 4899 + 8192) >> 14;
    return Math.min(255, Math.max(0, ((b - y) * 8061 + (128 << 14) + 8192) >> 14));
  },
  float: (r, g, b) => {
    const y = f32(b * Y_BLUE + f32(g * Y_GREEN + f32(r * Y_RED)));
    return f32(f32(b - y) * U_SCALE + 0.5);
  },
  'float-swapped': (r, g, b) => U_OF.float(b, g, r),
};

// One Haar step on two values (step 2): float64 for 8-bit U, float32 for float U.
const HAAR_OF = {
  '8-bit': (second, first) => second * HAAR + first * HAAR,
  float: (second, first) => f32(f32(second * HAAR32) + f32(first * HAAR32)),
};

// The vote (step 3) of the 8 x 8 pixel block whose top-left pixel is (x0, y0); values: room for its 64 U values.
function blockVote(rgb, width, x0, y0, u, haar, values) {
  for (let row = 0; row < 8; row += 1) {
    for (let col = 0; col < 8; col += 1) {
      const at = 3 * ((y0 + row) * width + x0 + col);
      values[row * 8 + col] = u(rgb[at], rgb[at + 1], rgb[at + 2]);
    }
  }
  let largest = -1;
  for (let k = 1; k < 16; k += 1) {
    const row = 2 * (k >> 2);
    const col = 2 * (k & 3);
    const left = haar(values[(row + 1) * 8 + col], values[row * 8 + col]);
    const right = haar(values[(row + 1) * 8 + col + 1], values[row * 8 + col + 1]);
    largest = Math.max(largest, Math.abs(haar(right, left)));
  }
  return largest % SCALE > 0.5 * SCALE;
}

// The bits a dwtDct mark of each length would carry in a domain: {length: '0'/'1' text}.
// rgb: interleaved 8-bit RGB, width x height, at least MIN_PIXELS pixels.
export function decodeBits(rgb, width, height, domain, lengths) {
  if (width * height < TABLE.min_pixels) {
    throw new Error(`${width}x${height} pixels: under the ${TABLE.min_pixels} a mark needs`);
  }
  const u = U_OF[domain];
  if (!u) {
    throw new Error(`unknown domain ${domain}`);
  }
  const haar = HAAR_OF[domain === '8-bit' ? '8-bit' : 'float'];
  const blockCols = Math.floor(width / 8);
  const votes = new Uint8Array(blockCols * Math.floor(height / 8));
  const values = new Float64Array(64);
  for (let n = 0; n < votes.length; n += 1) {
    votes[n] = blockVote(rgb, width, 8 * (n % blockCols), 8 * Math.floor(n / blockCols), u, haar, values) ? 1 : 0;
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

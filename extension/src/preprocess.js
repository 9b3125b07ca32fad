// The JavaScript mirror of aiface/preprocess.py, steps 3 to 6: alpha over
// white, centred square, separable triangle resize in float64, float32.
// It must match the Python bit for bit (tests/test_extension_preprocess.py),
// so every sum runs in the same order as the documented convention.

// Below this there is too little face left to judge (Python's MIN_SIDE).
export const MIN_SIDE = 32;

// Straight (non-premultiplied) RGBA, row-major, to RGB composited onto
// white exactly in integers: (c * a + 255 * (255 - a) + 127) // 255.
export function rgbaToRgb(rgba, width, height) {
  const rgb = new Uint8Array(width * height * 3);
  for (let p = 0, q = 0; p < width * height; p += 1, q += 3) {
    const alpha = rgba[4 * p + 3];
    for (let c = 0; c < 3; c += 1) {
      rgb[q + c] = Math.floor((rgba[4 * p + c] * alpha + 255 * (255 - alpha) + 127) / 255);
    }
  }
  return rgb;
}

// Tap indices (clamped to the image) and normalised weights for each output
// pixel: Int32Array and Float64Array of outSize * taps.
function resizeTaps(inSize, outSize) {
  const scale = inSize / outSize;
  const support = Math.max(scale, 1.0);
  const taps = 2 * Math.ceil(support) + 1;
  const indices = new Int32Array(outSize * taps);
  const weights = new Float64Array(outSize * taps);
  for (let i = 0; i < outSize; i += 1) {
    const center = (i + 0.5) * scale;
    const first = Math.floor(center - support);
    let total = 0.0;
    for (let k = 0; k < taps; k += 1) {
      const position = first + k;
      const weight = Math.max(0.0, 1.0 - Math.abs(position + 0.5 - center) / support);
      weights[i * taps + k] = weight;
      indices[i * taps + k] = Math.min(Math.max(position, 0), inSize - 1);
      total += weight;
    }
    for (let k = 0; k < taps; k += 1) {
      weights[i * taps + k] /= total;
    }
  }
  return { indices, weights, taps };
}

// Resize one axis of a (rows, cols, 3) array (float64, or uint8 RGB); axis 1
// = columns. Also the face detector's input resize (faces.js).
export function resizeAxis(pixels, rows, cols, outSize, axis) {
  const inSize = axis === 1 ? cols : rows;
  const { indices, weights, taps } = resizeTaps(inSize, outSize);
  const outRows = axis === 1 ? rows : outSize;
  const outCols = axis === 1 ? outSize : cols;
  const out = new Float64Array(outRows * outCols * 3);
  for (let r = 0; r < outRows; r += 1) {
    for (let c = 0; c < outCols; c += 1) {
      const i = axis === 1 ? c : r;
      for (let ch = 0; ch < 3; ch += 1) {
        let acc = 0.0;
        for (let k = 0; k < taps; k += 1) {
          const j = indices[i * taps + k];
          const source = axis === 1 ? (r * cols + j) * 3 + ch : (j * cols + c) * 3 + ch;
          acc = acc + weights[i * taps + k] * pixels[source];
        }
        out[(r * outCols + c) * 3 + ch] = acc;
      }
    }
  }
  return out;
}

// RGB uint8 (height, width, 3) -> the centred square as float64.
function centerSquare(rgb, width, height) {
  const side = Math.min(width, height);
  const top = Math.floor((height - side) / 2);
  const left = Math.floor((width - side) / 2);
  const square = new Float64Array(side * side * 3);
  for (let r = 0; r < side; r += 1) {
    const start = ((top + r) * width + left) * 3;
    square.set(rgb.subarray(start, start + side * 3), r * side * 3);
  }
  return { square, side };
}

// RGBA pixels of a decoded image -> model input: (size, size, 3) float32 in
// [0, 255], row-major, exactly as aiface.preprocess.to_model_input.
export function toModelInput(rgba, width, height, size) {
  const { square, side } = centerSquare(rgbaToRgb(rgba, width, height), width, height);
  if (side === size) {
    // At scale 1 every output's taps weigh 0, 1, 0: the filter is the identity.
    return Float32Array.from(square);
  }
  const horizontal = resizeAxis(square, side, side, size, 1);
  return Float32Array.from(resizeAxis(horizontal, side, size, size, 0));
}

// Framing a face like the training images: the mirror of aiface/faces.py
// crop_box, integer for integer (tests/test_extension_faces.py), its
// constants from faces/faces.json (aiface.faces.face_config()).
import CONFIG from '../faces/faces.json' with { type: 'json' };

const FACE_FRACTION = CONFIG.face_fraction;
const FACE_BELOW_CENTRE = CONFIG.face_below_centre;

// Python's round(): halves go to the even neighbour. Face centres often
// fall on a half pixel, where Math.round would pick another crop.
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest !== 0.5) {
    return Math.round(value);
  }
  return floor % 2 === 0 ? floor : floor + 1;
}

const clamp = (value, low, high) => Math.min(Math.max(value, low), high);

// The square around `face` ({x, y, width, height}, integers) framed like the
// training images, moved back inside the image, shrunk to fit if needed.
export function cropBox(face, width, height) {
  const side = Math.min(roundHalfEven(Math.max(face.width, face.height) / FACE_FRACTION), width, height);
  const centreX = face.x + face.width / 2;
  const centreY = face.y + face.height / 2 - FACE_BELOW_CENTRE * side;
  return {
    x: clamp(roundHalfEven(centreX - side / 2), 0, width - side),
    y: clamp(roundHalfEven(centreY - side / 2), 0, height - side),
    width: side,
    height: side,
  };
}

// The RGBA pixels of `box` in an image `width` pixels wide.
export function cropRgba(rgba, width, box) {
  const out = new Uint8ClampedArray(box.width * box.height * 4);
  for (let row = 0; row < box.height; row += 1) {
    const start = ((box.y + row) * width + box.x) * 4;
    out.set(rgba.subarray(start, start + box.width * 4), row * box.width * 4);
  }
  return out;
}

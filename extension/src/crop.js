// Framing a face like the training images: the mirror of aiface/faces.py
// crop_box, whole_image_box, fills_frame and scored_box, integer for integer
// (tests/test_extension_faces.py), their constants from faces/faces.json
// (aiface.faces.face_config()).
import CONFIG from '../faces/faces.json' with { type: 'json' };

const FACE_FRACTION = CONFIG.face_fraction;
const FACE_BELOW_CENTRE = CONFIG.face_below_centre;
const FILL_FRACTION = CONFIG.fill_fraction;

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

// The centred square the whole image is scored on (preprocess.js's centerSquare).
export function wholeImageBox(width, height) {
  const side = Math.min(width, height);
  return { x: Math.floor((width - side) / 2), y: Math.floor((height - side) / 2), width: side, height: side };
}

// Whether `box` overlaps the image's centred square by fill_fraction of its
// side, across and down.
export function fillsFrame(box, width, height) {
  const whole = wholeImageBox(width, height);
  const across = Math.min(box.x + box.width, whole.x + whole.width) - Math.max(box.x, whole.x);
  const down = Math.min(box.y + box.height, whole.y + whole.height) - Math.max(box.y, whole.y);
  return Math.min(across, down) >= FILL_FRACTION * whole.width;
}

// The region scored for `face`: its crop, or the whole centred square when
// that crop fills the frame (the face is already framed like the training
// images); per face.
export function scoredBox(face, width, height) {
  const box = cropBox(face, width, height);
  return fillsFrame(box, width, height) ? wholeImageBox(width, height) : box;
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

// The detection service's answer, checked before anything of it is shown:
// only the fields the extension uses, each of the documented type and range
// (server/openapi.json, Detection), are kept.
const MAX_SIDE = 1_000_000;
const MAX_FACES = 64;
const MAX_PNG_BASE64 = 8 * 1024 * 1024;
// base64 of a PNG: its signature, then only the base64 alphabet.
const PNG_BASE64 = /^iVBORw0KGgo[A-Za-z0-9+/]*={0,2}$/;

export class ReplyError extends Error {}

function check(condition, what) {
  if (!condition) {
    throw new ReplyError(what);
  }
}

const isProbability = (value) => typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1;
const isSide = (value) => Number.isInteger(value) && value >= 1 && value <= MAX_SIDE;

function box(value, image, what) {
  check(value && typeof value === 'object', `${what} is not a box`);
  const { x, y, width, height } = value;
  check(Number.isInteger(x) && Number.isInteger(y) && x >= 0 && y >= 0 && isSide(width) && isSide(height)
    && x + width <= image.width && y + height <= image.height, `${what} is not a box inside the image`);
  return { x, y, width, height };
}

// body: the parsed JSON of a 200 answer to POST /v1/detect. Returns a clean
// copy, or throws ReplyError saying what is wrong.
export function validDetection(body) {
  check(body && typeof body === 'object' && !Array.isArray(body), 'the answer is not a JSON object');
  check(isProbability(body.probability_fake), 'probability_fake is not a number from 0 to 1');
  check(isProbability(body.threshold) && body.threshold > 0, 'threshold is not a number from 0 to 1');
  check(body.image && isSide(body.image.width) && isSide(body.image.height), 'image is not a width and height');
  const image = { width: body.image.width, height: body.image.height };
  check(body.scored === 'faces' || body.scored === 'whole_image', 'scored is neither faces nor whole_image');
  check(Array.isArray(body.faces) && body.faces.length <= MAX_FACES, 'faces is not a list');
  const faces = body.faces.map((face, index) => {
    check(isProbability(face?.probability_fake), `face ${index} has no probability from 0 to 1`);
    return { box: box(face.box, image, `face ${index}`), probability_fake: face.probability_fake };
  });
  check(body.scored === 'whole_image' || faces.length > 0, 'scored is faces but no face is given');
  const clean = { probability_fake: body.probability_fake, threshold: body.threshold, image, scored: body.scored, faces };
  if (body.explanation !== undefined) {
    clean.explanation = validExplanation(body.explanation, image);
  }
  return clean;
}

function validExplanation(value, image) {
  check(value && typeof value === 'object', 'explanation is not an object');
  check(typeof value.png_base64 === 'string' && value.png_base64.length <= MAX_PNG_BASE64
    && PNG_BASE64.test(value.png_base64), 'explanation.png_base64 is not a base64 PNG');
  check(isSide(value.width) && isSide(value.height) && value.width <= 4096 && value.height <= 4096,
    'explanation has no size');
  return { png_base64: value.png_base64, box: box(value.box, image, 'explanation.box'), width: value.width,
    height: value.height };
}

// An error answer's message, as plain text of bounded length.
export function errorMessage(body, status) {
  const message = body?.error?.message;
  return typeof message === 'string' && message.trim() ? message.trim().slice(0, 300) : `it answered ${status}`;
}

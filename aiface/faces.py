"""Finding faces, and cropping them the way the training images were cropped.

The classifier learned on face-centred squares. A photo where the face is a
small part of the frame (a profile picture with scenery, a group) is mostly
background once squeezed to the model's input, so we find each face and score
a crop framed like the training data instead.

One face finder, two runtimes. The service runs it here; the browser
extension runs the same network, converted from the same weights
(``extension/faces/model.json``), and the same post-processing
(``extension/src/faces.js``, ``extension/src/crop.js``), with every constant
read from ``extension/faces/faces.json``, which ``face_config()`` writes
(``python -m training.converters.face_detector``) and a test keeps equal to this
module. Boxes and crops then agree between the two for the same bytes (see
``docs/faces.md``).

Detector: face-api's tiny face detector (``@vladmandic/face-api`` 1.7.15, MIT;
a Tiny-YOLOv2-style network with depthwise-separable convolutions, 193 k
weights). Its weights ship in the npm package, uint8-quantized; they were
converted once into ``aiface/weights/tiny_face_detector.npz`` (the same uint8
values with each tensor's ``min`` and ``scale``, dequantized as TF.js does,
``q * scale + min`` in float64 then float32) and ``build_detector`` rebuilds
the network in Keras. ``tests/test_faces.py`` checks it against face-api's
own TF.js forward pass in node.

One search, step by step (each runtime implements exactly this):

1. the upright 8-bit RGB image (H, W), alpha composited onto white as in
   ``aiface.preprocess``, is fitted into the detector's ``INPUT_SIZE`` square:
   in the first pass at its top-left corner, the rest black (0), as face-api
   pads; ``extent = max(W, H)``; in the second pass (only when the first found
   no usable face) centred in a grey (``BORDER_GREY``) square with a border
   of ``BORDER_FRACTION`` of the longer side on each side,
   ``extent = max(W, H) + 2 * floor(BORDER_FRACTION * max(W, H))``,
   because the detector misses many faces that fill the frame and finds them
   smaller;
2. the image is resized to ``w = max(1, round_half_up(W * INPUT_SIZE / extent))``
   by ``h`` (same for H) with ``aiface.preprocess``'s separable triangle
   filter (columns first, then rows; float64), cast to float32 and placed at
   ``(0, 0)`` (first pass) or ``((INPUT_SIZE - w) // 2, (INPUT_SIZE - h) // 2)``;
   ``round_half_up(a / b)`` is integer arithmetic, ``(2 * a + b) // (2 * b)``;
3. the network (which subtracts ``MEAN_RGB`` and divides by 255 itself)
   gives a ``CELLS x CELLS x (5 anchors x 5)`` map; for the cell in row
   ``r``, column ``c`` and anchor ``a`` (channels ``5a .. 5a + 4``:
   ``tx, ty, tw, th, t_score``), ``score = sigmoid(t_score)``, kept when
   ``score > MIN_SCORE``; the box's centre is
   ``((c + sigmoid(tx)) * u, (r + sigmoid(ty)) * u)`` and its size
   ``(exp(tw) * ANCHORS[a][0] * u, exp(th) * ANCHORS[a][1] * u)`` in input
   pixels, ``u = INPUT_SIZE / CELLS``; cells are visited row, column, anchor;
4. non-maximum suppression as face-api: candidates sorted by score, ascending
   and stable; the last is kept, and every other whose IoU with it is above
   ``NMS_IOU`` is dropped; repeat;
5. each kept box goes back to image pixels (``x = (x_in - left) * W / w``,
   ``y = (y_in - top) * H / h``, sizes likewise) and is mapped to the box
   the crop rule was measured with (``BOX_MAPPING``, below); then
   ``x, y, width, height`` are each rounded (half to even, Python's
   ``round``), clipped to the image, and boxes whose longer side is under
   ``MIN_FACE_SIDE`` dropped;
6. largest area first (ties: smaller y, then smaller x), at most ``MAX_FACES``;
7. each face is scored on ``scored_box``: its ``crop_box``, unless that crop
   overlaps the image's centred square by at least ``FILL_FRACTION`` of the
   square's side both across and down, when the face already fills the
   frame and the whole centred square (``whole_image_box``) is scored, as the
   training images were, whole and at their own resolution.

Margin: measured with MTCNN (this module's detector before) on 25 ``train``
images per source, the face box's longer side is 0.71 of the image side on
the 140k sample (FFHQ reals and StyleGAN fakes, one pipeline for both
classes) and 0.71-0.73 on the other StyleGAN sources, with the box centre
0.04 of the side below the image centre; the other real sources are framed
tighter (UTKFace 0.96, CIPLAB 1.0) or looser (LFW 0.49). We frame like the
140k sample, the fairest part of the data: ``FACE_FRACTION`` and
``FACE_BELOW_CENTRE``. The tiny detector's boxes are wider and lower on the
face than MTCNN's, so each is first mapped to the MTCNN box of the same face
(``BOX_MAPPING``: medians over 80 ``test`` faces pasted into 1024 px scenes,
both detectors run; ``benchmarks/face_boxes_js.py`` before this change). Faces
that fill the detector's input get relatively smaller boxes, so their crops
would be tighter than the training framing (about 0.8 of the frame, and
upscaled): step 7 scores such images whole instead (docs/faces.md,
"Face-filling images").
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from aiface.preprocess import resize_axis

# --- the constants, exported to the extension by face_config() ---------------

INPUT_SIZE = 416
CELLS = 13  # INPUT_SIZE / 32: five stride-2 poolings and conv0's valid 3 x 3
MEAN_RGB = (117.001, 114.697, 97.404)
ANCHORS = (
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
)
MIN_SCORE = 0.5
NMS_IOU = 0.4
BORDER_FRACTION = 0.5
BORDER_GREY = 128
# Tiny detector box -> MTCNN box of the same face: width and height scaled,
# centre moved by these fractions of the tiny box's longer side.
BOX_MAPPING = {"width": 0.64, "height": 0.95, "centre_x": 0.0, "centre_y": -0.11}
# The face box's longer side in the image's pixels; its crop is then at least
# 33 px, above aiface.preprocess.MIN_SIDE.
MIN_FACE_SIDE = 24
MAX_FACES = 8
FACE_FRACTION = 0.72
FACE_BELOW_CENTRE = 0.04
# A face whose crop would overlap the image's centred square by at least this
# fraction of that square's side, across and down, is scored as the whole
# centred square: the image is already framed like the training images (the
# face fills the frame), and cropping would frame it tighter and resample it
# (``scored_box``; measured in docs/faces.md, "Face-filling images").
FILL_FRACTION = 0.7

WEIGHTS_FILE = "tiny_face_detector.npz"
WEIGHTS_SHA256 = "23bcaab67bb862070ec297ea685ee1582ce46932d6b6dee923ed9118e1ba4c55"
# The network's layers: (name, kind, filters); conv0 is a plain 3 x 3 valid
# convolution, conv1-5 depthwise-separable 3 x 3 with "same" padding, each
# followed by leaky ReLU (0.1) and a 2 x 2 max-pool (stride 2, the last
# stride 1); conv8 the 1 x 1 output.
LAYERS = (
    ("conv0", "conv", 16),
    ("conv1", "separable", 32),
    ("conv2", "separable", 64),
    ("conv3", "separable", 128),
    ("conv4", "separable", 256),
    ("conv5", "separable", 512),
    ("conv8", "output", 5 * len(ANCHORS)),
)


def face_config() -> dict:
    """Every constant the extension's face finding needs (extension/faces/faces.json)."""
    return {
        "detector": "tiny_face_detector (@vladmandic/face-api 1.7.15, MIT)",
        "input_size": INPUT_SIZE,
        "cells": CELLS,
        "anchors": [list(anchor) for anchor in ANCHORS],
        "min_score": MIN_SCORE,
        "nms_iou": NMS_IOU,
        "border_fraction": BORDER_FRACTION,
        "border_grey": BORDER_GREY,
        "box_mapping": dict(BOX_MAPPING),
        "min_face_side": MIN_FACE_SIDE,
        "max_faces": MAX_FACES,
        "face_fraction": FACE_FRACTION,
        "face_below_centre": FACE_BELOW_CENTRE,
        "fill_fraction": FILL_FRACTION,
    }


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    def to_json(self) -> dict:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True)
class Face:
    box: Box
    score: float  # the detector's confidence that this is a face


# --- the network ---------------------------------------------------------------


def weights_path():
    return resources.files("aiface") / "weights" / WEIGHTS_FILE


def load_weights(path=None) -> dict[str, np.ndarray]:
    """The detector's float32 weights by face-api's names (``conv0/filters``, ...).

    The packaged file is checked against ``WEIGHTS_SHA256``; ``path``, another
    file of the same layout (the conversion's output, before it is committed).
    """
    data = weights_path().read_bytes() if path is None else Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if path is None and digest != WEIGHTS_SHA256:
        raise RuntimeError(f"{WEIGHTS_FILE} has SHA-256 {digest}, not {WEIGHTS_SHA256}: reconvert it "
                           "(python -m training.converters.face_detector)")
    with np.load(io.BytesIO(data)) as stored:
        names = sorted({key.rsplit(".", 1)[0] for key in stored.files})
        return {name.replace(".", "/"): dequantize(stored[f"{name}.q"], float(stored[f"{name}.scale"]),
                                                   float(stored[f"{name}.min"]))
                for name in names}


def dequantize(q: np.ndarray, scale: float, minimum: float) -> np.ndarray:
    """As TF.js decodes uint8 weights: ``v * scale + min`` in float64, stored as float32."""
    return (q.astype(np.float64) * scale + minimum).astype(np.float32)


def build_detector(weights: dict[str, np.ndarray]):
    """The tiny face detector as a Keras model: (N, INPUT_SIZE, INPUT_SIZE, 3) in [0, 255] -> (N, 13, 13, 25)."""
    import keras
    from keras import layers, ops

    inputs = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="image")
    x = ops.divide(ops.subtract(inputs, np.asarray(MEAN_RGB, np.float32)), np.float32(255.0))
    assigned = []
    for name, kind, filters in LAYERS:
        if kind == "separable":
            layer = layers.SeparableConv2D(filters, 3, padding="same", name=name)
            assigned.append((layer, [weights[f"{name}/depthwise_filter"], weights[f"{name}/pointwise_filter"],
                                     weights[f"{name}/bias"]]))
        else:
            layer = layers.Conv2D(filters, 3 if kind == "conv" else 1, padding="valid", name=name)
            assigned.append((layer, [weights[f"{name}/filters"], weights[f"{name}/bias"]]))
        x = layer(x)
        if kind != "output":
            x = layers.LeakyReLU(negative_slope=0.1, name=f"{name}_leaky")(x)
            x = layers.MaxPooling2D(2, strides=1 if name == "conv5" else 2, padding="same", name=f"{name}_pool")(x)
    model = keras.Model(inputs, x, name="tiny_face_detector")
    for layer, values in assigned:
        layer.set_weights(values)
    return model


# --- the search, as the module docstring says ---------------------------------


def round_half_up(numerator: int, denominator: int) -> int:
    """round(numerator / denominator), halves up, in exact integers."""
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class Placement:
    """Where the image lies in the detector's input: its resized size and top-left corner."""

    width: int
    height: int
    left: int
    top: int
    fill: int


def placement(width: int, height: int, border: bool) -> Placement:
    """Step 1 and 2's geometry for a ``width`` x ``height`` image, first pass or border pass."""
    longer = max(width, height)
    extent = longer + 2 * math.floor(BORDER_FRACTION * longer) if border else longer
    w = max(1, round_half_up(width * INPUT_SIZE, extent))
    h = max(1, round_half_up(height * INPUT_SIZE, extent))
    if border:
        return Placement(w, h, (INPUT_SIZE - w) // 2, (INPUT_SIZE - h) // 2, BORDER_GREY)
    return Placement(w, h, 0, 0, 0)


def detector_input(pixels: np.ndarray, place: Placement) -> np.ndarray:
    """(INPUT_SIZE, INPUT_SIZE, 3) float32: ``pixels`` resized and placed, the rest filled."""
    resized = resize_axis(resize_axis(pixels, place.width, axis=1), place.height, axis=0)
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), place.fill, np.float32)
    canvas[place.top : place.top + place.height, place.left : place.left + place.width] = resized.astype(np.float32)
    return canvas


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def decode(output: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
    """(score, (x, y, width, height) in input pixels) of each cell and anchor scoring above MIN_SCORE."""
    found = []
    values = np.asarray(output, np.float64).reshape(CELLS, CELLS, len(ANCHORS), 5).tolist()
    unit = INPUT_SIZE / CELLS
    for row in range(CELLS):
        for col in range(CELLS):
            for anchor, (tx, ty, tw, th, logit) in enumerate(values[row][col]):
                score = _sigmoid(logit)
                if not score > MIN_SCORE:
                    continue
                w = math.exp(tw) * ANCHORS[anchor][0] * unit
                h = math.exp(th) * ANCHORS[anchor][1] * unit
                centre_x = (col + _sigmoid(tx)) * unit
                centre_y = (row + _sigmoid(ty)) * unit
                found.append((score, (centre_x - w / 2, centre_y - h / 2, w, h)))
    return found


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def non_max_suppression(found: list[tuple[float, tuple]]) -> list[tuple[float, tuple]]:
    """face-api's NMS: pop the best remaining, drop those overlapping it by more than NMS_IOU."""
    order = sorted(range(len(found)), key=lambda index: found[index][0])
    kept = []
    while order:
        best = order.pop()
        kept.append(found[best])
        order = [index for index in order if box_iou(found[best][1], found[index][1]) <= NMS_IOU]
    return kept


def to_image_box(box: tuple[float, float, float, float], place: Placement, width: int, height: int) -> Box | None:
    """A detector box in the image's pixels, mapped, rounded and clipped (step 5); None when too small."""
    sx, sy = width / place.width, height / place.height
    x, y, w, h = (box[0] - place.left) * sx, (box[1] - place.top) * sy, box[2] * sx, box[3] * sy
    side = max(w, h)
    centre_x = x + w / 2 + BOX_MAPPING["centre_x"] * side
    centre_y = y + h / 2 + BOX_MAPPING["centre_y"] * side
    w, h = w * BOX_MAPPING["width"], h * BOX_MAPPING["height"]
    left, top = round(centre_x - w / 2), round(centre_y - h / 2)
    right, bottom = left + round(w), top + round(h)
    left, top, right, bottom = max(0, left), max(0, top), min(width, right), min(height, bottom)
    if right <= left or bottom <= top or max(right - left, bottom - top) < MIN_FACE_SIDE:
        return None
    return Box(left, top, right - left, bottom - top)


def faces_from_output(output: np.ndarray, place: Placement, width: int, height: int) -> list[Face]:
    """Steps 3 to 6 on the network's output for one placement."""
    faces = []
    for score, box in non_max_suppression(decode(output)):
        image_box = to_image_box(box, place, width, height)
        if image_box is not None:
            faces.append(Face(image_box, score))
    faces.sort(key=lambda face: (-face.box.width * face.box.height, face.box.y, face.box.x))
    return faces[:MAX_FACES]


class FaceFinder:
    """The tiny face detector, its network in Keras on TensorFlow; safe to call from several threads."""

    def __init__(self, weights: dict[str, np.ndarray] | None = None):
        import tensorflow as tf

        self.model = build_detector(weights if weights is not None else load_weights())
        self._run = tf.function(
            lambda batch: self.model(batch, training=False),
            input_signature=[tf.TensorSpec((None, INPUT_SIZE, INPUT_SIZE, 3), tf.float32)],
            autograph=False,
        )

    def output(self, image: np.ndarray) -> np.ndarray:
        """The network's raw output for one detector input."""
        return self._run(image[None]).numpy()[0]

    def find(self, pixels: np.ndarray) -> list[Face]:
        """Faces in (H, W, 3) uint8 RGB, largest first, at most ``MAX_FACES``."""
        return self.find_many([pixels])[0]

    def find_many(self, images: list[np.ndarray], pool=None, batch_size: int = 16) -> list[list[Face]]:
        """``find`` for each image, the network run on ``batch_size`` inputs at once (a pass, then the border
        pass for the images without a face); ``pool``, an Executor, prepares the detector inputs.

        A batch's outputs can differ from one image's in the last float bits (another kernel order), so a
        score at a hair from ``MIN_SCORE`` may fall the other way; the service runs one image at a time.
        """
        found: list[list[Face]] = [[] for _ in images]
        waiting = list(range(len(images)))
        for border in (False, True):
            shapes = [images[index].shape[:2] for index in waiting]
            places = [placement(width, height, border) for height, width in shapes]
            inputs = pool_map(pool, detector_input, [images[index] for index in waiting], places)
            for start in range(0, len(inputs), batch_size):
                outputs = self._run(np.stack(inputs[start : start + batch_size])).numpy()
                for offset, output in enumerate(outputs):
                    at = start + offset
                    height, width = shapes[at]
                    found[waiting[at]] = faces_from_output(output, places[at], width, height)
            waiting = [index for index in waiting if not found[index]]
            if not waiting:
                break
        return found


def pool_map(pool, function, *iterables) -> list:
    """``map`` into a list, on ``pool`` (a concurrent.futures Executor) where one is given."""
    return list(pool.map(function, *iterables) if pool is not None else map(function, *iterables))


@lru_cache(maxsize=1)
def default_finder() -> FaceFinder:
    """One finder per process."""
    return FaceFinder()


def crop_box(face: Box, width: int, height: int) -> Box:
    """The square around ``face`` framed like the training images, inside the image.

    A square that would leave the image is moved back in (no padding the
    model never saw), and shrunk to the image's shorter side if it is larger.
    """
    side = min(round(max(face.width, face.height) / FACE_FRACTION), width, height)
    centre_x = face.x + face.width / 2
    centre_y = face.y + face.height / 2 - FACE_BELOW_CENTRE * side
    left = int(np.clip(round(centre_x - side / 2), 0, width - side))
    top = int(np.clip(round(centre_y - side / 2), 0, height - side))
    return Box(left, top, side, side)


def whole_image_box(width: int, height: int) -> Box:
    """The centred square that ``aiface.preprocess`` scores when there is no face."""
    side = min(width, height)
    return Box((width - side) // 2, (height - side) // 2, side, side)


def fills_frame(box: Box, width: int, height: int, fraction: float = FILL_FRACTION) -> bool:
    """Whether ``box`` overlaps the image's centred square by ``fraction`` of its side, across and down."""
    whole = whole_image_box(width, height)
    across = min(box.x + box.width, whole.x + whole.width) - max(box.x, whole.x)
    down = min(box.y + box.height, whole.y + whole.height) - max(box.y, whole.y)
    return min(across, down) >= fraction * whole.width


def scored_box(face: Box, width: int, height: int) -> Box:
    """The region scored for ``face``: its ``crop_box``, or the whole centred square when that crop fills the frame.

    Applied to each face on its own: in a group photo the small faces are
    cropped, and a face that fills the frame is scored as the frame, exactly
    the pixels (and the framing) the model saw in training.
    """
    box = crop_box(face, width, height)
    return whole_image_box(width, height) if fills_frame(box, width, height) else box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: how well a found box matches another."""
    return box_iou((a.x, a.y, a.width, a.height), (b.x, b.y, b.width, b.height))


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    return pixels[box.y : box.y + box.height, box.x : box.x + box.width]

"""Finding faces, and cropping them the way the training images were cropped.

The classifier learned on face-centred squares. A photo where the face is a
small part of the frame (a profile picture with scenery, a group) is mostly
background once squeezed to the model's input, so we find each face and score
a crop framed like the training data instead.

Detector: MTCNN from the ``mtcnn`` package (MIT; its three small networks'
weights ship inside the wheel, so nothing is downloaded, and it runs on the
TensorFlow we already have). Chosen over OpenCV's Haar cascade, the only other
detector that works offline beside TensorFlow 2.19 and tensorflowjs 4.22
(MediaPipe's packaged face model needs protobuf < 5, tensorflowjs's ydf needs
>= 5.29; OpenCV's FaceDetectorYN needs an ONNX file the wheel lacks): on 120
``test`` images MTCNN found the face in 119, the cascade in 90 (it misses faces
that fill the frame).

Margin: measured with this detector on 25 ``train`` images per source, the
face box's longer side is 0.71 of the image side on the 140k sample (FFHQ
reals and StyleGAN fakes, one pipeline for both classes) and 0.71-0.73 on the
other StyleGAN sources, with the box centre 0.04 of the side below the image
centre; the other real sources are framed tighter (UTKFace 0.96, CIPLAB 1.0)
or looser (LFW 0.49). We frame like the 140k sample, the fairest part of the
data: ``FACE_FRACTION`` and ``FACE_BELOW_CENTRE``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image

FACE_FRACTION = 0.72
FACE_BELOW_CENTRE = 0.04
# Faces are searched in a copy at most this large: MTCNN's image pyramid on a
# 4000 px photo costs seconds, and a face under 1/40 of the frame is too small
# to judge anyway.
DETECT_MAX_SIDE = 1024
# The face box's longer side in the image's pixels; its crop is then at least
# 33 px, above aiface.preprocess.MIN_SIDE. Filtered after detection: MTCNN's
# own min_face_size changes its image pyramid, and other values than its
# default of 20 px were seen missing an 85 px face.
MIN_FACE_SIDE = 24
MIN_CONFIDENCE = 0.9
MAX_FACES = 8


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


class FaceFinder:
    """MTCNN with the package's own weights; one call at a time."""

    def __init__(
        self,
        min_confidence: float = MIN_CONFIDENCE,
        min_face_side: int = MIN_FACE_SIDE,
        max_side: int = DETECT_MAX_SIDE,
        max_faces: int = MAX_FACES,
    ):
        from mtcnn import MTCNN
        from mtcnn.stages import StageONet, StagePNet, StageRNet

        # Absolute paths: given a bare file name, mtcnn first unpickles a file
        # of that name from the working directory, if there is one.
        weights = resources.files("mtcnn.assets.weights")
        stages = [
            StagePNet(weights=str(weights / "pnet.lz4")),
            StageRNet(weights=str(weights / "rnet.lz4")),
            StageONet(weights=str(weights / "onet.lz4")),
        ]
        self._mtcnn = MTCNN(stages=stages, device="CPU:0")
        self._lock = threading.Lock()
        self.min_confidence = min_confidence
        self.min_face_side = min_face_side
        self.max_side = max_side
        self.max_faces = max_faces

    def find(self, pixels: np.ndarray) -> list[Face]:
        """Faces in (H, W, 3) uint8 RGB, largest first, at most ``max_faces``."""
        height, width = pixels.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = pixels
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(pixels).resize(size, Image.BILINEAR, reducing_gap=2.0))
        with self._lock:
            found = self._mtcnn.detect_faces(small)
        faces = []
        for item in found:
            if item["confidence"] < self.min_confidence:
                continue
            x, y, w, h = (float(v) / scale for v in item["box"])
            box = _clip(Box(round(x), round(y), round(w), round(h)), width, height)
            if max(box.width, box.height) >= self.min_face_side:
                faces.append(Face(box, float(item["confidence"])))
        faces.sort(key=lambda face: (-face.box.width * face.box.height, face.box.y, face.box.x))
        return faces[: self.max_faces]


def _clip(box: Box, width: int, height: int) -> Box:
    left, top = max(0, box.x), max(0, box.y)
    right, bottom = min(width, box.x + box.width), min(height, box.y + box.height)
    return Box(left, top, right - left, bottom - top)


@lru_cache(maxsize=1)
def default_finder() -> FaceFinder:
    """One finder per process (its networks take a second or two to build)."""
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


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes: how well a found box matches another."""
    width = max(0, min(a.x + a.width, b.x + b.width) - max(a.x, b.x))
    height = max(0, min(a.y + a.height, b.y + b.height) - max(a.y, b.y))
    inter = width * height
    return inter / (a.width * a.height + b.width * b.height - inter)


def crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    return pixels[box.y : box.y + box.height, box.x : box.x + box.width]

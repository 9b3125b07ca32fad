"""Latent autoencoders in Keras: TAEF2 and our own decoder families, for making aligned fakes.

Every modern latent-diffusion generator draws its image through the decoder of a latent autoencoder;
a real photo passed through encoder and decoder comes back as the same picture carrying that decoder's
fingerprint (``training.aligned``). One fingerprint teaches one decoder, so there are several families,
differing in latent width and in how the decoder upsamples:

``taef2``
    Ollin Boer Bohan's TAEF2 (MIT), distilled into the FLUX.2 VAE's latent space: 32 channels at 1/8
    of the side, nearest-neighbour x2 then a 3x3 convolution. Its weights are converted from the
    ``.pth`` files (``training.converters.taef2``) and committed.
``ae4_tconv``
    ours: 4 channels at 1/8, as Stable Diffusion 1-2 and SDXL have; transposed-convolution upsampling.
``ae16_shuffle``
    ours: 16 channels at 1/8, as SD3 and FLUX.1 have; sub-pixel (pixel-shuffle) upsampling.

Ours are trained on our real faces by ``training.autoencoders.train``. All take and give NHWC RGB in
[0, 1]; a side must be a multiple of 8 (``reconstruct`` pads by reflection and crops back).

The blocks follow TAESD's layout (the README of ``../shared/weights`` spells TAEF2's out): a block is
three 3x3 convolutions with ReLUs between, added to its input, then a ReLU; TAEF2's deepest blocks first
add a gated 1x1 bottleneck ("pool": 1x1 conv to 256, GroupNorm, ReLU, 1x1 conv back) to their input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
SCALE = 8


@dataclass(frozen=True)
class Family:
    name: str
    latent: int
    width: int
    upsample: str  # "nearest", "transpose" or "shuffle"
    encoder_pools: tuple[int, ...] = ()  # indices of the blocks with the "pool" bottleneck
    decoder_pools: tuple[int, ...] = ()
    trained_here: bool = True  # False: weights converted from elsewhere


FAMILIES = {
    "taef2": Family("taef2", latent=32, width=64, upsample="nearest", encoder_pools=(11, 12, 13),
                    decoder_pools=(3, 4, 5),
                    trained_here=False),
    "ae4_tconv": Family("ae4_tconv", latent=4, width=32, upsample="transpose"),
    "ae16_shuffle": Family("ae16_shuffle", latent=16, width=32, upsample="shuffle"),
}


class AutoencoderError(ValueError):
    """An unknown family or a missing or mismatched weights file."""


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise AutoencoderError(f"unknown autoencoder {name!r}; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.weights.npz"


def _conv(x, filters: int, name: str, strides: int = 1, bias: bool = True, kernel: int = 3):
    return layers.Conv2D(filters, kernel, strides=strides, padding="same" if strides == 1 else "valid",
                         use_bias=bias, name=name)(
        layers.ZeroPadding2D(1, name=name + "_pad")(x) if strides != 1 else x)


def _block(x, width: int, name: str, pool: bool):
    if pool:
        gate = layers.Conv2D(256, 1, use_bias=False, name=f"{name}_pool_0")(x)
        gate = layers.GroupNormalization(4, epsilon=1e-5, name=f"{name}_pool_1")(gate)
        gate = layers.ReLU()(gate)
        x = layers.Add()([x, layers.Conv2D(width, 1, use_bias=False, name=f"{name}_pool_3")(gate)])
    y = layers.ReLU()(_conv(x, width, f"{name}_conv_0"))
    y = layers.ReLU()(_conv(y, width, f"{name}_conv_2"))
    y = _conv(y, width, f"{name}_conv_4")
    return layers.ReLU()(layers.Add()([x, y]))


def build_encoder(spec: Family) -> keras.Model:
    """RGB in [0, 1] at any size divisible by 8 -> the latent at 1/8 of the side."""
    w = spec.width
    image = keras.Input((None, None, 3), name="image")
    x = _conv(image, w, "e0")
    index = 1
    for stage, blocks in enumerate((1, 3, 3, 3)):
        if stage:
            # PyTorch pads 1 on every side for its stride-2 3x3 convolution, unlike Keras's "same".
            x = _conv(x, w, f"e{index}", strides=2, bias=False)
            index += 1
        for _ in range(blocks):
            x = _block(x, w, f"e{index}", index in spec.encoder_pools)
            index += 1
    return keras.Model(image, _conv(x, spec.latent, f"e{index}"), name=f"{spec.name}_encoder")


def _upsample(x, spec: Family, name: str):
    w = spec.width
    if spec.upsample == "nearest":
        return _conv(layers.UpSampling2D(2, interpolation="nearest")(x), w, name, bias=False)
    if spec.upsample == "transpose":
        return layers.Conv2DTranspose(w, 4, strides=2, padding="same", use_bias=False, name=name)(x)
    if spec.upsample == "shuffle":
        x = _conv(x, 4 * w, name, bias=False)
        return layers.Lambda(lambda t: _depth_to_space(t), name=name + "_shuffle")(x)
    raise AutoencoderError(f"unknown upsampling {spec.upsample!r}")


def _depth_to_space(t):
    import tensorflow as tf

    return tf.nn.depth_to_space(t, 2)


def build_decoder(spec: Family) -> keras.Model:
    """A latent -> RGB in [0, 1], 8 times the latent's side."""
    w = spec.width
    latent = keras.Input((None, None, spec.latent), name="latent")
    # 3 tanh(z / 3): the latent soft-clamped to [-3, 3], as TAESD's decoders take it.
    x = layers.Lambda(lambda z: 3.0 * keras.ops.tanh(z / 3.0), name="d0")(latent)
    x = layers.ReLU()(_conv(x, w, "d1"))
    index = 3
    for stage in range(4):
        if stage:
            x = _upsample(x, spec, f"d{index + 1}")
            index += 2
        for _ in range(3 if stage < 3 else 1):
            x = _block(x, w, f"d{index}", index in spec.decoder_pools)
            index += 1
    rgb = _conv(x, 3, f"d{index}")
    return keras.Model(latent, keras.ops.clip(rgb, 0.0, 1.0), name=f"{spec.name}_decoder")


def build_autoencoder(spec: Family) -> tuple[keras.Model, keras.Model, keras.Model]:
    """Encoder, decoder and the two chained (image -> reconstruction)."""
    encoder, decoder = build_encoder(spec), build_decoder(spec)
    image = keras.Input((None, None, 3), name="image")
    return encoder, decoder, keras.Model(image, decoder(encoder(image)), name=spec.name)


def weight_arrays(models: list[keras.Model]) -> dict[str, np.ndarray]:
    """Every weight of ``models`` by ``LAYER/INDEX``, as saved by ``save_weights``."""
    return {
        f"{layer.name}/{i}": np.asarray(weight)
        for model in models for layer in model.layers for i, weight in enumerate(layer.get_weights())
    }


def set_weight_arrays(models: list[keras.Model], arrays: dict[str, np.ndarray], source: str) -> None:
    expected = weight_arrays(models)
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing or extra:
        raise AutoencoderError(f"{source} does not fit: missing {missing[:3]}, unexpected {extra[:3]}")
    for model in models:
        for layer in model.layers:
            count = len(layer.get_weights())
            if count:
                layer.set_weights([arrays[f"{layer.name}/{i}"].astype(np.float32) for i in range(count)])


def save_weights(models: list[keras.Model], path: Path) -> None:
    """float16 ``.npz``: the reconstructions do not change beyond JPEG's rounding, at half the size."""
    partial = path.with_name("partial-" + path.name)
    with open(partial, "wb") as file:
        np.savez_compressed(file, **{k: v.astype(np.float16) for k, v in weight_arrays(models).items()})
    partial.replace(path)


def load_autoencoder(name: str, path: str | Path | None = None) -> tuple[keras.Model, keras.Model, keras.Model]:
    """A family with its trained weights (by default the committed ``training/weights/NAME.weights.npz``)."""
    spec = family(name)
    path = Path(path) if path else weights_path(name)
    if not path.is_file():
        how = "python -m training.converters.taef2" if not spec.trained_here else \
            f"python -m training.autoencoders.train DATA_DIR --family {name}"
        raise AutoencoderError(f"no weights for {name} at {path}; make them with {how}")
    encoder, decoder, chained = build_autoencoder(spec)
    with np.load(path) as saved:
        set_weight_arrays([encoder, decoder], dict(saved), str(path))
    return encoder, decoder, chained


def pad_to_multiple(pixels: np.ndarray, multiple: int = SCALE) -> tuple[np.ndarray, tuple[int, int]]:
    """``pixels`` (H, W, C) reflected out to sides divisible by ``multiple``, and the original (H, W)."""
    height, width = pixels.shape[:2]
    pad_h, pad_w = -height % multiple, -width % multiple
    mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "edge"
    return np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode), (height, width)


def reconstruct(chained, images: list[np.ndarray]) -> list[np.ndarray]:
    """Each uint8 RGB image passed through ``chained`` (the autoencoder, or a traced call of it): uint8 RGB
    of the same size. Images of one size go through in one batch."""
    out: list[np.ndarray | None] = [None] * len(images)
    by_size: dict[tuple, list[int]] = {}
    for i, image in enumerate(images):
        by_size.setdefault(image.shape, []).append(i)
    for indices in by_size.values():
        padded = [pad_to_multiple(images[i].astype(np.float32) / 255.0) for i in indices]
        batch = np.stack([p for p, _ in padded])
        result = np.asarray(chained(batch))
        for i, row, (_, (h, w)) in zip(indices, result, padded, strict=True):
            out[i] = np.round(np.clip(row[:h, :w], 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


def psnr(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, in dB."""
    error = np.mean((original.astype(np.float64) - reconstruction.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10.0 * np.log10(255.0**2 / error))

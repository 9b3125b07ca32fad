"""Convert TAEF2's PyTorch weights to ``training/weights/taef2.weights.npz``, and prove them right.

    python -m training.converters.taef2 [--from ../shared/weights/taef2] [--check-images DIR]

Reads ``taef2_encoder.pth`` and ``taef2_decoder.pth`` without PyTorch (``training.converters.torch_state``),
checks their SHA-256 against the published ones, maps every tensor onto ``training.autoencoders.families``'
Keras layers (OIHW kernels to HWIO), writes the ``.npz`` and its ``.sha256`` beside it, and reports the
reconstruction PSNR on up to 16 images of ``--check-images`` (any folder of photos); it exits non-zero
when the mean is under 30 dB, which only a mismatched layout gives. MIT-licensed, as
``training/weights/taef2.LICENSE`` says.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from training.cli import fail

SOURCE_SHA256 = {
    "taef2_encoder.pth": "10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6",
    "taef2_decoder.pth": "0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5",
}
DEFAULT_SOURCE = Path(__file__).resolve().parent.parent.parent.parent / "shared" / "weights" / "taef2"
MIN_PSNR = 30.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.converters.taef2", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, default=DEFAULT_SOURCE,
                        help="folder with taef2_encoder.pth and taef2_decoder.pth")
    parser.add_argument("--check-images", type=Path, help="a folder of photos to measure the PSNR on")
    parser.add_argument("--out", type=Path, help="the .npz to write (default: training/weights/taef2.weights.npz)")
    return parser.parse_args(argv)


def keras_arrays(state: dict, prefix: str) -> dict:
    """A TAEF2 state dict's tensors as ``training.autoencoders.families`` names them: ``{prefix}{KEY}/{INDEX}``."""
    arrays = {}
    for key, tensor in state.items():
        path, kind = key.rsplit(".", 1)
        layer = prefix + path.replace(".", "_")
        if tensor.ndim == 4:  # a convolution's (out, in, kh, kw) kernel
            arrays[f"{layer}/0"] = tensor.transpose(2, 3, 1, 0)
        else:  # a bias, or GroupNorm's gamma (weight) and beta (bias)
            is_norm = "_pool_1" in layer
            arrays[f"{layer}/{1 if kind == 'bias' else 0}"] = tensor
            if not is_norm and kind != "bias":
                raise ValueError(f"unexpected tensor {key} {tensor.shape}")
    return arrays


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name, digest in SOURCE_SHA256.items():
        path = args.source / name
        if not path.is_file():
            return fail(f"{path} is missing (see ../shared/weights/README.md)")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            return fail(f"{path} is not the published TAEF2 file (SHA-256 differs)")

    from aiface.quiet import quiet_tensorflow

    quiet_tensorflow()
    import numpy as np

    from aiface.preprocess import ImageError, load_image
    from training.autoencoders import families
    from training.converters.torch_state import load_state_dict

    arrays = {
        **keras_arrays(load_state_dict(args.source / "taef2_encoder.pth"), "e"),
        **keras_arrays(load_state_dict(args.source / "taef2_decoder.pth"), "d"),
    }
    spec = families.family("taef2")
    encoder, decoder, chained = families.build_autoencoder(spec)
    families.set_weight_arrays([encoder, decoder], arrays, "the TAEF2 state dicts")
    out = args.out or families.weights_path("taef2")
    families.save_weights([encoder, decoder], out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, SHA-256 {digest})")

    if args.check_images:
        _, _, chained = families.load_autoencoder("taef2", out)
        scores = []
        for path in sorted(args.check_images.iterdir())[:16]:
            try:
                pixels = load_image(path).pixels
            except (ImageError, OSError):
                continue
            scores.append(families.psnr(pixels, families.reconstruct(chained, [pixels])[0]))
        if not scores:
            return fail(f"no readable image in {args.check_images}")
        mean = float(np.mean(scores))
        print(f"reconstruction PSNR on {len(scores)} images: mean {mean:.2f} dB (min {min(scores):.2f})")
        if mean < MIN_PSNR:
            print(f"error: under {MIN_PSNR} dB: the layout was not followed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

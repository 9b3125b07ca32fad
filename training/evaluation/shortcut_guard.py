"""How far a trivial sharpness feature alone tells an aligned folder's reconstructions from their originals.

    python -m training.evaluation.shortcut_guard ALIGNED_DIR [--split test] [--out guard.json]

A reconstruction that is only smoother than its original teaches a detector "smooth = fake", which calls
every blurred or re-compressed real photo fake: worse than no detector for this product. For each decoder
of a ``training.aligned`` folder this prints the mean PSNR of its reconstructions and the ROC AUC with
which two one-number features, each read as "lower = reconstruction", separate the reconstructions from
their originals: the variance of the Laplacian (the classic focus measure) and the share of spectral
energy above half the Nyquist frequency. 0.5 is no shortcut; near 1.0 a detector can score well by
measuring blur alone, and its blur and down-up figures (``training.compare``) must then be watched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.cli import fail
from training.data.layout import SPLITS, LayoutError, list_split


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.shortcut_guard",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("aligned_dir", type=Path, help="a folder made by training.aligned")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file (not overwritten)")
    return parser.parse_args(argv)


def gray(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def laplacian_variance(pixels: np.ndarray) -> float:
    g = gray(pixels)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def high_frequency_share(pixels: np.ndarray) -> float:
    """The share of the (mean-removed) spectrum's energy above half the Nyquist frequency."""
    g = gray(pixels)
    power = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean()))) ** 2
    h, w = power.shape
    y, x = np.ogrid[-(h // 2) : h - h // 2, -(w // 2) : w - w // 2]
    radius = np.sqrt((y / (h / 2)) ** 2 + (x / (w / 2)) ** 2)
    total = power.sum()
    return float(power[radius > 0.5].sum() / total) if total > 0 else 0.0


FEATURES = {"laplacian_variance": laplacian_variance, "high_frequency_share": high_frequency_share}


def guard(aligned_dir: Path, split: str) -> dict:
    from scipy.stats import rankdata

    from aiface.preprocess import load_image
    from training.compare import decoder_of
    from training.evaluation.metrics import roc_auc

    examples = list_split(aligned_dir, split)
    psnrs: dict[str, list[float]] = {}
    pairs = aligned_dir / "pairs.jsonl"
    if pairs.is_file():
        for line in pairs.read_text().splitlines():
            record = json.loads(line)
            if record["split"] == split:
                psnrs.setdefault(record["decoder"], []).append(record["psnr_db"])
    values = {name: [] for name in FEATURES}
    for example in examples:
        pixels = load_image(example.path).pixels
        for name, feature in FEATURES.items():
            values[name].append(feature(pixels))
    labels = np.array([e.label for e in examples])
    decoders = np.array([decoder_of(e.source) for e in examples], dtype=object)
    result = {}
    for decoder in sorted(set(decoders)):
        mask = decoders == decoder
        result[decoder] = {
            "pairs": int(mask.sum() // 2),
            "mean_psnr_db": float(np.mean(psnrs[decoder])) if psnrs.get(decoder) else None,
            # Lower = reconstruction: the AUC of the negated feature, as ranks in (0, 1] (the AUC is a ranking).
            **{f"{name}_auc": roc_auc(labels[mask], rankdata(-np.array(v)[mask]) / mask.sum())
               for name, v in values.items()},
        }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out is not None and args.out.exists():
        return fail(f"{args.out} exists; choose another --out")
    try:
        result = guard(args.aligned_dir, args.split)
    except LayoutError as error:
        return fail(error)
    print("| decoder | pairs | PSNR (dB) | Laplacian variance AUC | high-frequency share AUC |")
    print("|---|---|---|---|---|")
    for decoder, block in result.items():
        psnr = "—" if block["mean_psnr_db"] is None else f"{block['mean_psnr_db']:.2f}"
        print(f"| `{decoder}` | {block['pairs']} | {psnr} | {block['laplacian_variance_auc']:.3f} | "
              f"{block['high_frequency_share_auc']:.3f} |")
    if args.out is not None:
        args.out.write_text(json.dumps({"split": args.split, "decoders": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

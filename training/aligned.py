"""Aligned fakes of our own real photos: every real image passed through a latent autoencoder.

    python -m training.aligned DATA_DIR --out ALIGNED_DIR [--decoder taef2 --decoder ae4_tconv ...]

For each real image of the chosen splits and each decoder (``training.autoencoders.families``), writes a pair in
the 140k layout, ``ALIGNED_DIR/SPLIT/real/DECODER-SOURCE_ID.EXT`` and ``.../fake/DECODER-SOURCE_ID.EXT``:
the photo and its reconstruction, the same size and, for a JPEG original, both re-saved with the
original's quantisation tables and chroma subsampling, so that the two share their whole history
(a decode, one more encode at the same quality) and differ only by the decoder (Rajan et al., ICLR 2025;
"Dual Data Alignment", 2025, on why the JPEG history must match). Other formats are saved as PNG. Each
pair's source is ``DECODER-SOURCE`` (``training.data.layout`` reads it off the name), so training can draw
the pairs as a share of every batch and report them per decoder.

Reproducible (images in sorted order, ``--per-source`` picks the same ones every time, reconstruction is
deterministic) and resumable: a pair is written file by file atomically and then recorded in
``ALIGNED_DIR/pairs.jsonl`` with its PSNR; a rerun skips what is recorded. ``ALIGNED_DIR/sources.csv`` is
written at the end. The folder must lie outside the repository: these are images made from data whose
licences forbid shipping them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
from pathlib import Path

from training.cli import fail, positive_int
from training.data.layout import SPLITS

REPOSITORY = Path(__file__).resolve().parent.parent
PAIRS = "pairs.jsonl"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.aligned", description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder in the 140k layout whose real images are paired")
    parser.add_argument("--out", type=Path, required=True, help="the aligned folder (outside the repository)")
    parser.add_argument("--decoder", action="append", help="an autoencoder family (repeatable; default: taef2)")
    parser.add_argument("--weights", action="append", default=[], metavar="FAMILY=PATH",
                        help="weights for a family other than its committed file (e.g. a training run's)")
    parser.add_argument("--split", action="append", choices=SPLITS, help="splits to pair (default: all three)")
    parser.add_argument("--per-source", type=positive_int, metavar="N",
                        help="at most N real images of each source and split (the same ones every run)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    args = parser.parse_args(argv)
    args.decoder = args.decoder or ["taef2"]
    args.split = args.split or list(SPLITS)
    weights = {}
    for item in args.weights:
        name, sep, path = item.partition("=")
        if not sep or not path:
            parser.error(f"--weights takes FAMILY=PATH, not {item!r}")
        weights[name] = path
    args.weights = weights
    out = args.out.resolve()
    if out == REPOSITORY or REPOSITORY in out.parents:
        parser.error(f"--out {args.out} is inside the repository; aligned images must not be committed")
    return args


def choose(examples, per_source: int | None):
    """The real examples, at most ``per_source`` of each source: those whose names hash lowest, a choice
    that does not depend on what else is in the folder."""
    reals = [e for e in examples if e.label == 0]
    if per_source is None:
        return reals
    by_source: dict[str, list] = {}
    for example in reals:
        by_source.setdefault(example.source, []).append(example)
    chosen = []
    for members in by_source.values():
        members.sort(key=lambda e: hashlib.sha256(e.path.name.encode()).hexdigest())
        chosen.extend(members[:per_source])
    return sorted(chosen, key=lambda e: e.path)


def jpeg_history(path: Path) -> dict | None:
    """The save options that repeat a JPEG's quantisation tables and subsampling; None for other formats."""
    from PIL import Image, JpegImagePlugin

    with Image.open(path) as image:
        if image.format != "JPEG":
            return None
        return {"qtables": image.quantization, "subsampling": JpegImagePlugin.get_sampling(image)}


def encode(pixels, history: dict | None) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    if history is None:
        image.save(buffer, format="PNG")
    else:
        # A subsampling of -1 (Pillow could not tell) falls back to Pillow's default.
        options = {k: v for k, v in history.items() if not (k == "subsampling" and v < 0)}
        image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(".partial-" + path.name)
    partial.write_bytes(data)
    partial.replace(path)


def pair_name(decoder: str, example) -> str:
    # The source in the name is the pair's own (DECODER-SOURCE); the id is kept, so the original is known.
    identifier = example.path.stem.rsplit("_", 1)[-1]
    return f"{decoder}-{example.source}_{identifier}"


def done_pairs(out: Path) -> set[tuple[str, str]]:
    """(split, name) of every pair recorded in ``pairs.jsonl``; a torn last line is ignored."""
    done = set()
    path = out / PAIRS
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            done.add((record["split"], record["name"]))
    return done


def write_sources(out: Path) -> int:
    """``sources.csv`` from ``pairs.jsonl``: a row per image, as ``../shared/data`` has."""
    records = {}
    for line in (out / PAIRS).read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[(record["split"], record["name"])] = record
    with (out / "sources.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "label", "file", "source", "generator", "original", "psnr_db"])
        for (split, _), record in sorted(records.items()):
            for label in ("real", "fake"):
                writer.writerow([split, label, f"{split}/{label}/{record['file']}", record["source"],
                                 record["decoder"] if label == "fake" else "", record["original"],
                                 f"{record['psnr_db']:.2f}"])
    return len(records)


def make_pairs(args: argparse.Namespace) -> int:
    from aiface.quiet import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf
    from tqdm import tqdm

    from aiface.preprocess import ImageError, load_image
    from training.autoencoders import families
    from training.data.layout import list_split

    args.out.mkdir(parents=True, exist_ok=True)
    done = done_pairs(args.out)
    jobs = []
    for split in args.split:
        for example in choose(list_split(args.data_dir, split), args.per_source):
            for decoder in args.decoder:
                if (split, pair_name(decoder, example)) not in done:
                    jobs.append((split, decoder, example))
    print(f"{len(jobs)} pairs to make ({len(done)} already in {args.out})", file=sys.stderr)
    models = {}
    for decoder in args.decoder:
        _, _, chained = families.load_autoencoder(decoder, args.weights.get(decoder))
        # Traced once per image size: eager Keras calls are several times slower on CPU.
        models[decoder] = tf.function(lambda batch, m=chained: m(batch, training=False), reduce_retracing=True)
    skipped = 0
    with (args.out / PAIRS).open("a") as log, tqdm(total=len(jobs), unit="pair", file=sys.stderr) as bar:
        for decoder in args.decoder:
            todo = [(s, e) for s, d, e in jobs if d == decoder]
            for start in range(0, len(todo), args.batch_size):
                batch, pixels = [], []
                for split, example in todo[start : start + args.batch_size]:
                    try:
                        pixels.append(load_image(example.path).pixels)
                        batch.append((split, example))
                    except (ImageError, OSError) as error:
                        print(f"skipped {example.path}: {error}", file=sys.stderr)
                        skipped += 1
                        bar.update(1)
                for (split, example), original, rebuilt in zip(
                    batch, pixels, families.reconstruct(models[decoder], pixels), strict=True
                ):
                    history = jpeg_history(example.path)
                    name = pair_name(decoder, example)
                    file = name + (".jpg" if history else ".png")
                    write_atomically(args.out / split / "real" / file, encode(original, history))
                    write_atomically(args.out / split / "fake" / file, encode(rebuilt, history))
                    log.write(json.dumps({
                        "split": split, "name": name, "file": file, "source": name.rsplit("_", 1)[0],
                        "decoder": decoder, "original": str(example.path),
                        "psnr_db": round(families.psnr(original, rebuilt), 3),
                    }) + "\n")
                    log.flush()
                    bar.update(1)
    count = write_sources(args.out)
    print(f"{count} pairs in {args.out}; {skipped} unreadable image(s) skipped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.autoencoders.families import AutoencoderError, family
    from training.data.layout import LayoutError

    try:
        for name in args.decoder:
            family(name)
        return make_pairs(args)
    except (AutoencoderError, LayoutError) as error:
        return fail(error)


if __name__ == "__main__":
    sys.exit(main())

"""``aiface scan PATH... --out DIR``: many images through the service's path, results to files.

    aiface scan photos/ more/*.jpg list.csv --out audit     # or: python -m aiface.scan ...

Inputs are files, folders (searched recursively for images), glob patterns
and ``.txt`` or ``.csv`` lists of paths (one a line; a CSV's ``path`` column,
or its first). Each input becomes one row of ``DIR/results.jsonl`` and
``DIR/results.csv``: path, SHA-256, probability, label, verdict, what was
scored, faces with boxes, model name and version, or an ``error`` with a
plain message; ``DIR/report.html`` is a page to read (``aiface.scan_report``).
A bad file is a row with its error and the scan goes on; the exit status is
0 when the scan ran, 2 on a usage error. ``--resume`` skips inputs already in
``results.jsonl`` (same path, same SHA-256). Nothing outside ``DIR`` is
written.

Every image goes through ``aiface.pipeline`` with the service's limits
(``aiface.preprocess.DEFAULT_MAX_BYTES`` and ``DEFAULT_MAX_IMAGE_PIXELS``)
and its face finder, so the same bytes get the service's answer. Speed on
one machine: files are read and decoded in worker threads a chunk ahead of
the model, faces are found in batches (``FaceFinder.find_many``), and every
region of a chunk goes through the model in batches. ``--engine ray`` runs
the same ``Scanner`` on Ray Data (``aiface.scan_ray``).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiface.preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGE_PIXELS, ImageError, LoadedImage, load_image

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "server" / "model" / "aiface.keras"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"})
LIST_SUFFIXES = frozenset({".txt", ".csv"})
RESULTS_JSONL, RESULTS_CSV, REPORT_HTML = "results.jsonl", "results.csv", "report.html"
CSV_FIELDS = ("path", "sha256", "probability_fake", "label", "verdict", "scored", "faces", "width", "height",
              "model_name", "model_version", "error_code", "error")
CHUNK = 32


class UsageError(ValueError):
    """Arguments that cannot start a scan: exit status 2."""


# --- inputs -------------------------------------------------------------------


def _listed(path: Path) -> Iterator[str]:
    """The paths in a .txt (one a line) or .csv list (its ``path`` column, else its first); relative to the list."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.reader(handle)
            header = next(reader, [])
            column = header.index("path") if "path" in header else 0
            if "path" not in header and header:
                yield header[0]
            rows = (row[column] for row in reader if len(row) > column)
        else:
            rows = (line.rstrip("\n") for line in handle)
        for row in rows:
            if row.strip() and not row.lstrip().startswith("#"):
                yield row.strip()


def expand(arguments: Sequence[str]) -> list[str]:
    """Every input named, in order, each once: files, folders (recursive), globs, lists of paths."""
    found: list[str] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            found += [str(path.parent / entry) if not os.path.isabs(entry) else entry for entry in _listed(path)]
        elif path.is_file():
            found.append(argument)
        elif glob.has_magic(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                raise UsageError(f"no file matches {argument}")
            found += [match for match in matches if Path(match).is_file()]
        else:
            raise UsageError(f"{argument} does not exist")
    return list(dict.fromkeys(found))


# --- scoring ------------------------------------------------------------------


@dataclass
class Read:
    """One input read: its bytes' SHA-256 and the decoded image, or the error that stopped it."""

    path: str
    sha256: str | None
    image: LoadedImage | None = None
    error: tuple[str, str] | None = None  # (code, message)


def error_row(path: str, sha256: str | None, code: str, message: str, model: dict) -> dict:
    return {"path": path, "sha256": sha256, "error": {"code": code, "message": message}, "model": model}


class Scanner:
    """The model, the face finder and the limits; turns paths into result rows through aiface.pipeline."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL, whole_image: bool = False, batch_size: int = 16,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        from aiface.bundle import load_bundle
        from aiface.faces import default_finder

        bundle = load_bundle(model_path)
        self.metadata = bundle.metadata
        self.model = {"name": self.metadata.name, "version": self.metadata.version}
        self._predict = bundle.predictor()
        self._finder = None if whole_image else default_finder()
        self.batch_size, self.max_bytes, self.max_pixels = batch_size, max_bytes, max_pixels

    def read(self, path: str) -> Read:
        """Read and decode one input (a worker thread's job); never raises for a bad file."""
        try:
            size = os.path.getsize(path)
            if size > self.max_bytes:
                return Read(path, None, error=("too_large", f"the file is {size:,} bytes, over the "
                                                             f"{self.max_bytes:,} allowed"))
            data = Path(path).read_bytes()
        except OSError as error:
            return Read(path, None, error=("unreadable", f"cannot read the file: {error.strerror or error}"))
        digest = hashlib.sha256(data).hexdigest()
        try:
            return Read(path, digest, load_image(data, self.max_pixels))
        except ImageError as error:
            return Read(path, digest, error=(error.code, str(error)))

    def rows(self, reads: Sequence[Read], pool: Executor | None = None) -> list[dict]:
        """Result rows, in order, for inputs read: faces found in a batch, every region through the model in
        batches."""
        from aiface.pipeline import conclude, prepare_many, score
        from aiface.verdict import verdict

        good = [read for read in reads if read.image is not None]
        prepared = prepare_many([read.image for read in good], self._finder, self.metadata.image_size, pool)
        detections = {
            id(read): conclude(item, scores)
            for read, item, scores in zip(good, prepared, score(prepared, self._predict, self.batch_size),
                                          strict=True)
        }
        threshold = self.metadata.threshold
        out = []
        for read in reads:
            if read.image is None:
                out.append(error_row(read.path, read.sha256, *read.error, self.model))
                continue
            detection = detections[id(read)]
            out.append({
                "path": read.path,
                "sha256": read.sha256,
                "probability_fake": detection.probability_fake,
                "label": "fake" if detection.probability_fake >= threshold else "real",
                "verdict": verdict(detection.probability_fake, threshold),
                "threshold": threshold,
                "scored": detection.scored,
                "width": detection.width,
                "height": detection.height,
                "faces": [{"box": face.box.to_json(), "probability_fake": face.probability_fake}
                          for face in detection.faces],
                "model": self.model,
                "error": None,
            })
        return out

    def scan(self, paths: Sequence[str], workers: int) -> Iterator[dict]:
        """Rows for ``paths`` in order; the next chunk is read and decoded while this one is scored."""
        with ThreadPoolExecutor(max_workers=workers) as pool:
            pending = None
            for start in range(0, len(paths), CHUNK):
                futures = [pool.submit(self.read, path) for path in paths[start : start + CHUNK]]
                if pending is not None:
                    yield from self.rows([future.result() for future in pending], pool)
                pending = futures
            if pending is not None:
                yield from self.rows([future.result() for future in pending], pool)


# --- results ------------------------------------------------------------------


def read_results(out: Path) -> list[dict]:
    """The rows of ``out/results.jsonl``; a line cut short by an interrupted scan is dropped."""
    path = out / RESULTS_JSONL
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "path" in row:
            rows.append(row)
    return rows


def csv_row(row: dict) -> dict:
    error = row.get("error") or {}
    faces = ";".join("{x},{y},{width},{height}:{p:.6f}".format(**face["box"], p=face["probability_fake"])
                     for face in row.get("faces", []))
    return {
        "path": row["path"], "sha256": row.get("sha256") or "", "probability_fake": row.get("probability_fake", ""),
        "label": row.get("label", ""), "verdict": row.get("verdict", ""), "scored": row.get("scored", ""),
        "faces": faces, "width": row.get("width", ""), "height": row.get("height", ""),
        "model_name": row["model"]["name"], "model_version": row["model"]["version"],
        "error_code": error.get("code", ""), "error": error.get("message", ""),
    }


def write_summaries(out: Path, rows: list[dict], threshold: float, max_pixels: int) -> None:
    from aiface.scan_report import render

    with (out / RESULTS_CSV).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(row) for row in rows)
    (out / REPORT_HTML).write_text(render(rows, threshold, max_pixels), encoding="utf-8")


def run(paths: list[str], out: Path, resume: bool, engine_rows, progress: bool = True) -> list[dict]:
    """Scan ``paths`` into ``out`` with ``engine_rows(paths) -> iterable of rows``; returns every row."""
    from tqdm import tqdm

    kept = read_results(out) if resume else []
    done = {(row["path"], row.get("sha256")) for row in kept}
    if resume and done:
        todo = [path for path in paths if (path, _sha256(path)) not in done]
    else:
        todo = paths
    out.mkdir(parents=True, exist_ok=True)
    rows = list(kept)
    with (out / RESULTS_JSONL).open("w", encoding="utf-8") as handle:
        for row in kept:  # rewritten whole: a line cut short by an interruption goes
            handle.write(json.dumps(row) + "\n")
        bar = tqdm(total=len(todo), unit="img", desc="scan", file=sys.stderr, disable=not progress,
                   mininterval=0.5 if sys.stderr.isatty() else 30.0)
        for row in engine_rows(todo):
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            rows.append(row)
            bar.update(1)
        bar.close()
    return rows


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


# --- the command --------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aiface scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files, folders, glob patterns, .txt or .csv lists of paths")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.jsonl, results.csv, report.html")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in OUT/results.jsonl and skip their inputs (same path and SHA-256)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="model bundle (default: the bundled one)")
    parser.add_argument("--whole-image", action="store_true", help="score whole images, not the faces found")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local threads (default), or Ray Data (pip install '.[scale]'; RAY_ADDRESS for a cluster)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="threads reading and decoding (local), or Ray actors (ray); default: the CPU count")
    parser.add_argument("--batch-size", type=int, default=16, help="model inputs per forward pass (default: 16)")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES, help="largest file read (the service's)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                        help="largest image decoded, width x height (the service's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    for name in ("workers", "batch_size", "max_bytes", "max_pixels"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = expand(args.inputs)
        if args.out.exists() and not args.out.is_dir():
            raise UsageError(f"{args.out} exists and is not a folder")
        if (args.out / RESULTS_JSONL).exists() and not args.resume:
            raise UsageError(f"{args.out} holds an earlier scan; pass --resume to continue it, or choose another "
                             "--out folder")
    except (UsageError, OSError) as error:
        print(f"aiface scan: error: {error}", file=sys.stderr)
        return 2
    from aiface.bundle import ModelLoadError, metadata_path, read_metadata

    try:
        threshold = read_metadata(metadata_path(args.model)).threshold
        if args.engine == "ray":
            from aiface.scan_ray import ray_rows

            settings = dict(model_path=args.model, whole_image=args.whole_image, batch_size=args.batch_size,
                            max_bytes=args.max_bytes, max_pixels=args.max_pixels)

            def engine_rows(todo):
                return ray_rows(todo, settings, args.workers)
        else:
            scanner = Scanner(args.model, args.whole_image, args.batch_size, args.max_bytes, args.max_pixels)

            def engine_rows(todo):
                return scanner.scan(todo, args.workers)
    except (ModelLoadError, ImportError) as error:
        print(f"aiface scan: error: {error}", file=sys.stderr)
        return 2
    rows = run(paths, args.out, args.resume, engine_rows, progress=not args.quiet)
    write_summaries(args.out, rows, threshold, args.max_pixels)
    errors = sum(1 for row in rows if row.get("error"))
    print(f"{len(rows)} inputs, {errors} could not be scored; results in {args.out / RESULTS_JSONL}, "
          f"{args.out / RESULTS_CSV} and {args.out / REPORT_HTML}", file=sys.stderr)
    return 0


def console(argv: Iterable[str] | None = None) -> int:
    """The ``aiface`` console script: ``aiface scan ...``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "scan":
        print("usage: aiface scan PATH... --out DIR   (aiface scan --help for more)", file=sys.stderr)
        return 2
    return main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())

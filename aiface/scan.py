"""``aiface scan PATH... --out DIR``: many images through the service's path, results to files.

    aiface scan photos/ more/*.jpg list.csv --out audit     # or: python -m aiface.scan ...

Inputs are files, folders (searched recursively for images), glob patterns
and ``.txt`` or ``.csv`` lists of paths (one a line; a CSV's ``path`` column,
or its first). Each input becomes one row of ``DIR/results.jsonl`` and
``DIR/results.csv``: path, SHA-256 and the service's answer (``aiface.answer``:
probability, label, verdict, the file's provenance, what was scored, faces
with boxes, model), or an ``error`` with a plain message; ``DIR/report.html``
is a page to read (``aiface.scan_report``). A bad file is a row with its error
and the scan goes on; the exit status is 0 when the scan ran, 2 on a usage
error. ``--resume`` keeps the rows of inputs unchanged since (same path,
SHA-256 and model) and scans the others again, one row per input however
often it is resumed; earlier results are otherwise never overwritten without
``--overwrite``. Only regular files are read, each checked against the size
limit first, and only plain files inside ``DIR`` are written
(``aiface.scan_files``).

Every image goes through ``aiface.pipeline`` with the service's limits
(``aiface.preprocess.DEFAULT_MAX_BYTES`` and ``DEFAULT_MAX_IMAGE_PIXELS``),
its face finder and its provenance rule, so the same bytes get the service's
answer. Speed on one machine: files are read and decoded in worker threads a
chunk ahead of the model, faces are found in batches
(``FaceFinder.find_many``), and every region of a chunk goes through the model
in batches. ``--engine ray`` runs the same ``Scanner`` on Ray Data
(``aiface.scan_ray``).
"""

from __future__ import annotations

import argparse
import csv
import glob
import hashlib
import json
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiface.preprocess import DEFAULT_MAX_BYTES, DEFAULT_MAX_IMAGE_PIXELS, ImageError, LoadedImage, load_image
from aiface.scan_files import InputError, open_inside, read_regular, sha256_of, write_inside

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "server" / "model" / "aiface.keras"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"})
LIST_SUFFIXES = frozenset({".txt", ".csv"})
RESULTS_JSONL, RESULTS_CSV, REPORT_HTML = "results.jsonl", "results.csv", "report.html"
OUTPUTS = (RESULTS_JSONL, RESULTS_CSV, REPORT_HTML)
CSV_FIELDS = ("path", "sha256", "probability_fake", "label", "verdict", "provenance", "declared_by", "scored", "faces",
              "width", "height", "model_name", "model_version", "error_code", "error")
# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV injection"): it is written
# after a ' so that it is shown as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
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
        elif path.exists():
            raise UsageError(f"{argument} is neither a regular file nor a folder (a device, a fifo or a socket?)")
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
    provenance: dict | None = None  # aiface.answer.file_provenance's
    error: tuple[str, str] | None = None  # (code, message)


def error_row(path: str, sha256: str | None, code: str, message: str, model: dict) -> dict:
    return {"path": path, "sha256": sha256, "error": {"code": code, "message": message}, "model": model}


class Scanner:
    """The model, the face finder and the limits; turns paths into result rows through aiface.pipeline."""

    def __init__(self, model_path: str | Path = DEFAULT_MODEL, whole_image: bool = False, batch_size: int = 16,
                 max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 trust_anchors: str | None = None):
        from aiface.answer import model_of
        from aiface.bundle import load_bundle
        from aiface.faces import default_finder
        from aiface.provenance import C2PA_THREADS, load_trust_anchors

        bundle = load_bundle(model_path)
        self.metadata = bundle.metadata
        self.model = model_of(self.metadata)
        self._predict = bundle.predictor()
        self._finder = None if whole_image else default_finder()
        self.batch_size, self.max_bytes, self.max_pixels = batch_size, max_bytes, max_pixels
        self._trust_anchors = load_trust_anchors(trust_anchors)
        # The C2PA reader answers "busy" when all its threads are taken (right for a service under load);
        # the scan's readers wait their turn instead, so that no file is reported unread.
        self._c2pa_turns = threading.BoundedSemaphore(C2PA_THREADS)

    def read(self, path: str) -> Read:
        """Read and decode one input, and read its provenance (a worker thread's job); never raises for a bad
        file."""
        from aiface.answer import file_provenance

        try:
            data = read_regular(path, self.max_bytes)
        except InputError as error:
            return Read(path, None, error=(error.code, str(error)))
        digest = hashlib.sha256(data).hexdigest()
        try:
            image = load_image(data, self.max_pixels)
        except ImageError as error:
            return Read(path, digest, error=(error.code, str(error)))
        with self._c2pa_turns:
            provenance = file_provenance(data, self._trust_anchors)
        return Read(path, digest, image, provenance)

    def rows(self, reads: Sequence[Read], pool: Executor | None = None) -> list[dict]:
        """Result rows, in order, for inputs read: faces found in a batch, every region through the model in
        batches, each answered as the service answers (aiface.answer)."""
        from aiface.answer import answer
        from aiface.pipeline import detect_many

        good = [read for read in reads if read.image is not None]
        detections = detect_many([read.image for read in good], self._finder, self._predict,
                                 self.metadata.image_size, self.batch_size, pool)
        answers = {id(read): answer(detection, read.provenance, self.metadata)
                   for read, detection in zip(good, detections, strict=True)}
        return [{"path": read.path, "sha256": read.sha256, **answers[id(read)], "error": None}
                if read.image is not None else error_row(read.path, read.sha256, *read.error, self.model)
                for read in reads]

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
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            rows.append(row)
    return rows


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse (UsageError) an --out that is not a folder, holds a link or a folder where a result goes, or holds
    an earlier scan's results that neither --resume continues nor --overwrite replaces."""
    if resume and overwrite:
        raise UsageError("--resume continues an earlier scan and --overwrite replaces it: choose one")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    for name in OUTPUTS:
        if (out / name).is_symlink() or ((out / name).exists() and not (out / name).is_file()):
            raise UsageError(f"{out / name} is a link or not a plain file; the scan writes only plain files in "
                             "--out: remove it or choose another --out folder")
    present = [name for name in OUTPUTS if (out / name).exists()]
    if present and not overwrite and not (resume and RESULTS_JSONL in present):
        how = "--resume to continue it, " if RESULTS_JSONL in present else ""
        raise UsageError(f"{out} holds {', '.join(present)} from an earlier scan; pass {how}--overwrite to replace "
                         "it, or choose another --out folder")


def plan(paths: Sequence[str], kept: Sequence[dict], model: dict, max_bytes: int) -> tuple[list[dict], list[str]]:
    """For a resumed scan: the earlier rows kept, and the inputs to scan (again).

    An input's row is kept when it was scored (or refused for its bytes) by the same model and the file has the
    same SHA-256 now; every other input is scanned again and its earlier rows dropped, so each input has one row
    however often a scan is resumed. Rows without a SHA-256 (a file too large, unreadable, not a file) cost
    nothing to redo. Rows of files not named this time are kept as they were.
    """
    latest = {row["path"]: row for row in kept}  # an older scan may hold several rows for one path
    todo = []
    for path in paths:
        row = latest.get(path)
        same = (row is not None and row.get("sha256") and (row.get("model") or {}).get("name") == model["name"]
                and row["model"].get("version") == model["version"]
                and (row.get("error") or "provenance" in row)  # a row from before provenance was read is redone
                and sha256_of(path, max_bytes) == row["sha256"])
        if not same:
            todo.append(path)
    again = set(todo)
    return [row for path, row in latest.items() if path not in again], todo


def _cell(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def csv_row(row: dict) -> dict:
    error, image, provenance = row.get("error") or {}, row.get("image") or {}, row.get("provenance") or {}
    faces = ";".join("{x},{y},{width},{height}:{p:.6f}".format(**face["box"], p=face["probability_fake"])
                     for face in row.get("faces", []))
    cells = {
        "path": row["path"], "sha256": row.get("sha256") or "", "probability_fake": row.get("probability_fake", ""),
        "label": row.get("label", ""), "verdict": row.get("verdict", ""), "provenance": provenance.get("status", ""),
        "declared_by": provenance.get("declared_by") or "", "scored": row.get("scored", ""), "faces": faces,
        "width": image.get("width", ""), "height": image.get("height", ""),
        "model_name": row["model"]["name"], "model_version": row["model"]["version"],
        "error_code": error.get("code", ""), "error": error.get("message", ""),
    }
    return {name: _cell(value) for name, value in cells.items()}


def write_summaries(out: Path, rows: list[dict], threshold: float, max_pixels: int,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    from aiface.scan_report import render

    with open_inside(out / RESULTS_CSV) as handle:
        writer = csv.DictWriter(handle, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_row(row) for row in rows)
    write_inside(out / REPORT_HTML, render(rows, threshold, max_pixels, max_bytes))


def run(kept: list[dict], todo: list[str], out: Path, engine_rows, progress: bool = True) -> list[dict]:
    """Rewrite ``out/results.jsonl`` with the ``kept`` rows, then add a row for each of ``todo`` as
    ``engine_rows(todo)`` yields it; returns every row."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    rows = list(kept)
    with open_inside(out / RESULTS_JSONL) as handle:
        for row in kept:  # rewritten whole: a line cut short by an interruption goes, and rows scanned again
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


# --- the command --------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aiface scan", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="image files, folders, glob patterns, .txt or .csv lists of paths")
    parser.add_argument("--out", type=Path, required=True, help="folder for results.jsonl, results.csv, report.html")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows already in OUT/results.jsonl and skip their inputs (same path, SHA-256 "
                             "and model)")
    parser.add_argument("--overwrite", action="store_true", help="replace the results of an earlier scan in OUT")
    parser.add_argument("--trust-anchors", default="",
                        help="PEM file or folder of C2PA signers to trust (the service's TRUST_ANCHORS; default none)")
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


def _engine(args: argparse.Namespace):
    """``engine_rows(paths) -> rows``: the model loaded here (local) or in each Ray actor."""
    if args.engine == "ray":
        from aiface.scan_ray import ray_rows

        settings = dict(model_path=args.model, whole_image=args.whole_image, batch_size=args.batch_size,
                        max_bytes=args.max_bytes, max_pixels=args.max_pixels, trust_anchors=args.trust_anchors)
        return lambda todo: ray_rows(todo, settings, args.workers)
    scanner = Scanner(args.model, args.whole_image, args.batch_size, args.max_bytes, args.max_pixels,
                      args.trust_anchors)
    return lambda todo: scanner.scan(todo, args.workers)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from aiface.bundle import ModelLoadError, metadata_path, read_metadata
    from aiface.provenance import TrustAnchorError, load_trust_anchors

    try:
        paths = expand(args.inputs)
        check_out(args.out, args.resume, args.overwrite)
        metadata = read_metadata(metadata_path(args.model))
        load_trust_anchors(args.trust_anchors)
    except (UsageError, OSError, ModelLoadError, TrustAnchorError) as error:
        print(f"aiface scan: error: {error}", file=sys.stderr)
        return 2
    model = {"name": metadata.name, "version": metadata.version}
    kept, todo = plan(paths, read_results(args.out), model, args.max_bytes) if args.resume else ([], paths)
    try:
        # Nothing left to scan: no TensorFlow, no model.
        engine_rows = _engine(args) if todo else (lambda todo: iter(()))
    except (ModelLoadError, ImportError) as error:
        print(f"aiface scan: error: {error}", file=sys.stderr)
        return 2
    try:
        rows = run(kept, todo, args.out, engine_rows, progress=not args.quiet)
        write_summaries(args.out, rows, metadata.threshold, args.max_pixels, args.max_bytes)
    except OSError as error:  # a link put in --out while the scan ran, a full disk
        print(f"aiface scan: error: cannot write the results: {error}", file=sys.stderr)
        return 2
    errors = sum(1 for row in rows if row.get("error"))
    print(f"{len(rows)} inputs ({len(todo)} scanned now), {errors} could not be scored; results in "
          f"{args.out / RESULTS_JSONL}, {args.out / RESULTS_CSV} and {args.out / REPORT_HTML}", file=sys.stderr)
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

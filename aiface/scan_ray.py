"""``aiface scan --engine ray``: the same ``aiface.scan.Scanner`` on Ray Data, one machine or a cluster.

The inputs become a Ray dataset of paths; ``map_batches`` sends chunks of
them to a pool of actors, each holding one ``Scanner`` (the model and the face
finder, loaded once per actor) and returning the same result rows as the local
scan, which the driver writes to ``results.jsonl``. Files are read where the
actor runs: on a cluster, the paths must name storage every node sees (a
shared or network file system). ``ray.init()`` joins the cluster named by
``RAY_ADDRESS`` (e.g. ``ray://head:10001``), or starts one on this machine.
Why Ray rather than Apache Beam: docs/scan.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import numpy as np

from aiface.scan import CHUNK, Scanner


class ScanActor:
    """One Scanner per actor process; a batch of paths in, a batch of JSON result rows out."""

    def __init__(self, settings: dict):
        self.scanner = Scanner(**settings)

    def __call__(self, batch: dict) -> dict:
        reads = [self.scanner.read(str(path)) for path in batch["path"]]
        return {"row": np.array([json.dumps(row) for row in self.scanner.rows(reads)], dtype=object)}


def ray_rows(paths: Sequence[str], settings: dict, actors: int) -> Iterator[dict]:
    """The result rows of ``paths``, in input order, scored by ``actors`` Ray actors."""
    if not paths:
        return
    import ray

    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.from_items([{"path": path} for path in paths]).map_batches(
        ScanActor,
        fn_constructor_kwargs={"settings": settings},
        batch_size=CHUNK,
        concurrency=actors,
        batch_format="numpy",
    )
    for record in dataset.iter_rows():
        yield json.loads(record["row"])

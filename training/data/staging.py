"""Write a folder beside its destination and move it in whole.

Whoever reads the destination (TF Serving polling its base path, an
extension being packed) then sees the old folder or the complete new one,
never a half-written one, and a failed export leaves the old one as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a path to write the new folder to; on a clean exit it replaces ``target``.

    The path's parent is a scratch folder beside ``target`` (the same file
    system, so the move is a rename) that is removed afterwards either way;
    other intermediate files may go there.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as work:
        staged = Path(work) / "staged"
        yield staged
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(staged), str(target))

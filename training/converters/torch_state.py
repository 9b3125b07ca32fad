"""Reading a PyTorch state dict (``torch.save``'s zip format) into numpy arrays, without PyTorch.

Such a ``.pth`` is a zip of ``ARCHIVE/data.pkl`` (a pickle whose tensors point, by key, at raw storages)
and ``ARCHIVE/data/KEY`` (each storage's bytes, little-endian). The unpickler below resolves only what a
plain state dict needs (an ``OrderedDict`` of ``_rebuild_tensor_v2`` calls over typed storages) and
refuses every other global, so a hostile file cannot run code.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

_STORAGE_DTYPES = {
    "HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "BFloat16Storage": None, "LongStorage": np.int64, "IntStorage": np.int32, "ByteStorage": np.uint8,
}


class StateDictError(ValueError):
    """A file that is not a PyTorch state dict of plain tensors."""


def _rebuild_tensor(storage: np.ndarray, offset: int, shape: tuple, stride: tuple, *_ignored) -> np.ndarray:
    if not shape:
        return storage[offset].copy()
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=shape, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.ascontiguousarray(view)


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise StateDictError(f"a state dict does not hold {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _count = pid
        dtype = _STORAGE_DTYPES.get(storage_type) if kind == "storage" else None
        if dtype is None:
            raise StateDictError(f"unsupported storage {pid[:2]}")
        return np.frombuffer(self.archive.read(f"{self.prefix}/data/{key}"), dtype=np.dtype(dtype).newbyteorder("<"))


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of the state dict at ``path``, by its key, in the file's dtype."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise StateDictError(f"{path} holds no single data.pkl")
            prefix = pickles[0][: -len("/data.pkl")]
            with archive.open(pickles[0]) as file:
                state = _StateUnpickler(file, archive, prefix).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError, EOFError) as error:
        raise StateDictError(f"{path} is not a PyTorch state dict: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise StateDictError(f"{path} is not a state dict of tensors")
    return dict(state)

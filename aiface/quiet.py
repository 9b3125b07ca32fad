"""TensorFlow without its start-up noise: one place that sets its logging up before it loads.

On a machine without an NVIDIA GPU, ``import tensorflow`` prints about nine
lines to stderr: CUDA plugin factories registered twice, "computation placer
already registered", no CUDA drivers found, then a failed ``cuInit`` on the
first operation. None of it is actionable there. ``quiet_tensorflow()``, called
before anything imports TensorFlow or Keras:

- sets ``TF_CPP_MIN_LOG_LEVEL`` to 2 (TensorFlow's C++ info and warnings off;
  the oneDNN and CPU-instruction notices are among them), or to 3 where no
  NVIDIA device exists, which also hides the ``cuInit`` error;
- turns TF Decision Forests' welcome message off (tensorflowjs imports it);
- imports TensorFlow with the process's stderr caught, and writes back every
  line except the known CUDA registration noise, so a real error still shows.

A value the user already set for either variable is kept. Once TensorFlow is
imported it only sets the variables (TF Decision Forests reads its own later).
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile

# Lines TensorFlow 2.19's CUDA plugins and XLA print while loading, GPU or not.
NOISE = re.compile(
    r"Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|Could not find cuda drivers on your machine"
)


def has_nvidia_device() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def quiet_tensorflow() -> None:
    """Set TensorFlow's logging up and import it without the CUDA noise (see the module's docstring)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if has_nvidia_device() else "3")
    os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode(errors="replace").splitlines() if not NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)

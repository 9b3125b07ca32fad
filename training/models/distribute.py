"""Where training runs: one device, all local devices, or several machines.

Thin on purpose: tf.distribute does the work. ``mirrored`` replicates the
model on every local GPU (or, with none, on every logical CPU device) and
averages gradients; ``multiworker`` does the same across the machines named
in the ``TF_CONFIG`` environment variable
(https://www.tensorflow.org/guide/distributed_training#setting_up_the_tf_config_environment_variable).
"""

from __future__ import annotations

import tensorflow as tf

from training.cli import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")

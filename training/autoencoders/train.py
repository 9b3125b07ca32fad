"""Train one of our own latent autoencoder families on real faces.

    python -m training.autoencoders.train DATA_DIR --family ae4_tconv --out runs/ae4 [--steps 3000] [--resume]

Trains ``training.autoencoders.families``' encoder and decoder together on random ``--patch`` px windows of the
real images of ``train`` (flipped half the time), so that its reconstructions of real photos carry a
decoder fingerprint of a family no generator here has. Sharp, not smooth: a reconstruction that is only
blurrier than its original would teach a detector "smooth = fake" (``training.evaluation.shortcut_guard`` measures
it), so the loss is an L1 on pixels, plus an L1 on EfficientNet-Lite0 ImageNet features at strides 4 and 8
(a perceptual term) and an L1 on the amplitude of the images' 2-D spectra (which punishes lost high
frequencies directly). Every ``--checkpoint-every`` steps the weights and optimizer state are written to
``OUT/checkpoint``; ``--resume`` continues from there; at the end ``OUT/FAMILY.weights.npz`` holds the
weights and the mean PSNR on ``valid``'s real images is printed and written to ``OUT/result.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from training.cli import fail, positive_int

PERCEPTUAL_LAYERS = ("blocks_2_add", "blocks_4_add")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.autoencoders.train",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder in the 140k layout; its train/real images are used")
    parser.add_argument("--family", required=True, help="ae4_tconv or ae16_shuffle (training.autoencoders.families)")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--steps", type=positive_int, default=3000)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--patch", type=positive_int, default=64, help="training window side (a multiple of 8)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--perceptual", type=float, default=0.1, help="weight of the feature L1")
    parser.add_argument("--spectral", type=float, default=0.05, help="weight of the spectrum amplitude L1")
    parser.add_argument("--images", type=positive_int, default=3000, help="real train images held in memory")
    parser.add_argument("--checkpoint-every", type=positive_int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--overwrite", action="store_true", help="start again in an --out that holds a run")
    args = parser.parse_args(argv)
    if args.patch % 8:
        parser.error("--patch must be a multiple of 8")
    return args


def load_reals(data_dir: Path, split: str, limit: int, seed: int):
    import numpy as np

    from aiface.preprocess import ImageError, load_image
    from training.data.layout import list_split

    reals = [e for e in list_split(data_dir, split) if e.label == 0]
    order = np.random.default_rng(seed).permutation(len(reals))[:limit]
    images = []
    for index in order:
        try:
            images.append(load_image(reals[index].path).pixels)
        except (ImageError, OSError):
            continue
    return images


def train(args: argparse.Namespace) -> dict:
    from aiface.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras
    import numpy as np
    import tensorflow as tf

    from training.autoencoders import families
    from training.models.backbones import LITE0_IMAGENET, verify_sha256
    from training.models.efficientnet_lite import efficientnet_lite

    spec = families.family(args.family)
    if not spec.trained_here:
        raise families.AutoencoderError(f"{args.family} is converted, not trained here")
    checkpoint_dir = args.out / "checkpoint"
    if checkpoint_dir.exists() and not (args.resume or args.overwrite):
        raise FileExistsError(f"{args.out} already holds a run; use --resume or --overwrite")
    args.out.mkdir(parents=True, exist_ok=True)

    images = [i for i in load_reals(args.data_dir, "train", args.images, args.seed) if min(i.shape[:2]) >= args.patch]
    rng = np.random.default_rng(args.seed)

    def patches():
        while True:
            batch = np.empty((args.batch_size, args.patch, args.patch, 3), np.float32)
            for row in batch:
                image = images[int(rng.integers(len(images)))]
                top = int(rng.integers(image.shape[0] - args.patch + 1))
                left = int(rng.integers(image.shape[1] - args.patch + 1))
                window = image[top : top + args.patch, left : left + args.patch]
                row[...] = (window[:, ::-1] if rng.random() < 0.5 else window) / 255.0
            yield batch

    encoder, decoder, chained = families.build_autoencoder(spec)
    lite = efficientnet_lite(None, "lite0")
    verify_sha256(LITE0_IMAGENET)
    lite.load_weights(LITE0_IMAGENET)
    features = keras.Model(lite.input, [lite.get_layer(name).output for name in PERCEPTUAL_LAYERS])
    features.trainable = False
    optimizer = keras.optimizers.Adam(args.lr)
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(encoder=encoder, decoder=decoder, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=1)
    if args.resume and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        print(f"resuming after step {int(step.numpy())}", file=sys.stderr)

    def amplitude(x):
        return tf.abs(tf.signal.rfft2d(tf.transpose(x, (0, 3, 1, 2))))

    @tf.function
    def train_step(batch):
        with tf.GradientTape() as tape:
            rebuilt = chained(batch, training=True)
            loss = tf.reduce_mean(tf.abs(rebuilt - batch))
            for real_f, rebuilt_f in zip(features((batch * 255.0 - 127.0) / 128.0),
                                         features((rebuilt * 255.0 - 127.0) / 128.0), strict=True):
                loss += args.perceptual * tf.reduce_mean(tf.abs(real_f - rebuilt_f))
            size = float(args.patch * args.patch)
            loss += args.spectral * tf.reduce_mean(tf.abs(amplitude(batch) - amplitude(rebuilt))) / tf.sqrt(size)
        variables = chained.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    stream = patches()
    started, losses = time.time(), []
    while int(step.numpy()) < args.steps:
        losses.append(float(train_step(next(stream))))
        step.assign_add(1)
        done = int(step.numpy())
        if done % args.checkpoint_every == 0 or done == args.steps:
            manager.save()
            print(f"step {done}/{args.steps}: loss {np.mean(losses):.4f} "
                  f"({(time.time() - started) / len(losses):.2f} s a step)", file=sys.stderr, flush=True)
            started, losses = time.time(), []

    path = args.out / f"{args.family}.weights.npz"
    families.save_weights([encoder, decoder], path)
    _, _, trained = families.load_autoencoder(args.family, path)
    valid = load_reals(args.data_dir, "valid", 64, args.seed)
    scores = [families.psnr(image, families.reconstruct(trained, [image])[0]) for image in valid]
    result = {"family": args.family, "steps": args.steps, "weights": str(path),
              "valid_psnr_db": float(np.mean(scores)), "valid_images": len(scores), "command": sys.argv}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {path}; valid PSNR {result['valid_psnr_db']:.2f} dB on {len(scores)} real images", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.autoencoders.families import AutoencoderError
    from training.data.layout import LayoutError

    try:
        train(args)
    except (AutoencoderError, LayoutError, FileExistsError) as error:
        return fail(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())

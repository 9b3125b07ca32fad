#!/usr/bin/env bash
# The shipped model, aiface 4.0.0, from data to bundle to the extension's TF.js model: every stage's command,
# with the flags it ran with. MODEL_CARD.md links here; docs/model-history.md says what each stage bought.
#
#   bash training/recipes/aiface.sh DATA OUT            the recipe (3 to 4 hours on 2 CPU cores, most of it
#                                                       stages 1-4; TAEF2 as converted in training/weights)
#   bash training/recipes/aiface.sh DATA OUT --smoke    every stage with the tiny backbone, a few steps and our own
#                                                       small decoder (ae4_tconv) instead of TAEF2: minutes (CI runs it)
#
# DATA is a folder in the 140k layout with the sources of ../shared/data (names from its sources.csv or the
# file names); OUT receives a folder per stage, OUT/model/aiface.keras (the bundle the service loads) and
# OUT/tfjs (the extension's model). An existing OUT is refused: nothing is overwritten. Stages 1-4 were run on
# the data as it was before the diffusion faces were added (docs/model-history.md), so a full run on today's
# data trains a different network from the shipped one; stages 5 and 6 start from what stage 4 gives.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ] || { [ $# -eq 3 ] && [ "$3" != --smoke ]; }; then
    echo "usage: bash training/recipes/aiface.sh DATA OUT [--smoke]" >&2
    exit 2
fi
data=$1 out=$2 smoke=${3:-}
if [ -e "$out" ]; then
    echo "error: $out exists; choose a new folder (a recipe never overwrites a run)" >&2
    exit 2
fi
py=${PYTHON:-$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin/python}

if [ -n "$smoke" ]; then
    # The same commands at toy scale: what CI checks is that every stage runs and hands on a bundle.
    size=(--backbone tiny --image-size 32 --crop-size 24 --batch-size 8 --steps-per-epoch 3)
    epochs() { echo "--epochs $2"; }
    pairs=(--decoder ae4_tconv)
else
    size=(--backbone efficientnet_lite0 --image-size 256 --crop-size 224 --batch-size 32 --steps-per-epoch 100)
    epochs() { echo "--epochs $1"; }
    pairs=(--decoder taef2)
fi
tuned=(--select-laundered --degrade-prob 0.5 --launder-prob 0.5 --fine-tune-lr 3e-5)
set -x

# Stage 1, aiface 2.0.0: EfficientNet-Lite0 (ImageNet) with the second-order head, native 224 px crops of the
# 256 px images, batches half fair pairs, 30 % of draws degraded; then calibrated again on valid.
"$py" -m training.train "$data" "${size[@]}" --head second_order --head-epochs 1 $(epochs 20 2) --patience 5 \
    --degrade-prob 0.3 --fair-share 0.5 --seed 1 --name aiface --version 2.0.0 --out "$out/stage1"
"$py" -m training.recalibrate "$out/stage1/model.keras" "$data" --out "$out/stage1/aiface.keras"
# Stage 2, aiface 2.1.0: more laundering, epochs selected on laundered images too; resumed once.
"$py" -m training.train "$data" --init-from "$out/stage1/aiface.keras" "${size[@]:2}" "${tuned[@]}" \
    $(epochs 10 1) --patience 4 --name aiface --version 2.1.0 --out "$out/stage2"
"$py" -m training.train "$data" --out "$out/stage2" --resume $(epochs 20 2)
# Stage 3: 30 % of draws a random square window (a face cut out of a larger photo).
"$py" -m training.train "$data" --init-from "$out/stage2/model.keras" "${size[@]:2}" "${tuned[@]}" \
    --reframe-prob 0.3 $(epochs 20 2) --patience 6 --plateau-patience 99 --average-from 2 \
    --name aiface --version 2.2.0 --out "$out/stage3"
# Stage 4, aiface 2.2.0: and 30 % of draws shrunk onto another training image; resumed once.
"$py" -m training.train "$data" --init-from "$out/stage3/model.keras" "${size[@]:2}" "${tuned[@]}" \
    --reframe-prob 0.3 --zoom-out-prob 0.3 $(epochs 14 1) --patience 5 --plateau-patience 99 --average-from 2 \
    --name aiface --version 2.2.0 --out "$out/stage4"
"$py" -m training.train "$data" --out "$out/stage4" --resume $(epochs 22 2)
# Stage 5, aiface 3.0.0: a decoder head beside the model's own, learnt from aligned pairs of real photos and
# their TAEF2 reconstructions (100 per source of valid, 400 of train).
"$py" -m training.aligned "$data" --out "$out/aligned" "${pairs[@]}" --split valid --per-source 100
"$py" -m training.aligned "$data" --out "$out/aligned" "${pairs[@]}" --split train --per-source 400
"$py" -m training.add_head "$out/stage4/model.keras" "$data" --head decoder --aligned "$out/aligned" \
    --head-fpr 0.006 --head-max-source-fpr 0.5 --whole-image --calibrate-whole-image \
    --name aiface --version 3.0.0 --out "$out/stage5/aiface.keras"
# Stage 6, aiface 4.0.0: a diffusion head beside those two, learnt from the diffusion-made faces against every
# real source (each source weighing alike), on the faces found; calibrated on the faces found.
"$py" -m training.add_head "$out/stage5/aiface.keras" "$data" --head diffusion \
    --fake-source djb_sd14_blonde --fake-source dhiandika_sd15_faces --fake-source gengap_sd1_class \
    --fake-source gengap_sd1_dreambooth --fake-source gebaltso_sdfd_sd21 --fake-source flux1_politicians \
    --view clean --view degraded --head-slope 4 --c 0.001 --c 0.003 --c 0.01 \
    --name aiface --version 4.0.0 --out "$out/model/aiface.keras"
# The extension's model: weights quantised to float16 where that is lossless enough, uint8 elsewhere.
"$py" -m training.export_tfjs "$out/model/aiface.keras" "$out/tfjs" --quantize mixed

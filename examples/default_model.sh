#!/usr/bin/env bash
# Reproduce the shipped default model fabricnms/weights/default.pt from nothing, on CPU
# (about 4.3 hours on a 2-core CPU: 26 min for the CPU recipe, ~60 + ~12 min for the second
# stage and its low-lr continuation, 2 x ~23 min of 768-px windows, ~7 min for the mask branch,
# 2 x ~40 min for the two fabric-families fine-tunes, run one after the other, ~15 min for 4c).
# Usage: bash examples/default_model.sh [WORK_DIR]   (default: work/default_model)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-work/default_model}

# Stage 1: the CPU recipe (examples/cpu_recipe.yaml): 400 Tianchi-prior frames, seed 0.
# (--geometry v1: the box geometry these stages were made with, before the real one existed.)
fabricnms synth "$work/recipe_synth" --images 400 --seed 0 --difficulty easy --fabrics tianchi \
    --geometry v1 --workers 2
fabricnms convert "$work/recipe_synth" "$work/recipe_coco" --val-fraction 0.1 --seed 0
fabricnms train --data "$work/recipe_coco/dataset.yaml" --config examples/cpu_recipe.yaml \
    --name cpu --project "$work/runs"

# Stage 2: continue on 1,600 uniform-prior frames, seed 7 (examples/default_model.yaml).
fabricnms synth "$work/synth" --images 1600 --seed 7 --difficulty easy --class-prior uniform \
    --normal-fraction 0.2 --fabrics tianchi --geometry v1 --workers 2
fabricnms convert "$work/synth" "$work/coco" --val-fraction 0.05 --seed 0
fabricnms train --data "$work/coco/dataset.yaml" --config examples/default_model.yaml \
    --weights "$work/runs/train/cpu/weights/best.pt" --name default --project "$work/runs"

# Stage 2b: 6 more epochs on the same data at half the learning rate.
fabricnms train --data "$work/coco/dataset.yaml" --config examples/default_model.yaml \
    --weights "$work/runs/train/default/weights/best.pt" --epochs 6 --lr 0.0015 \
    --set warmup_epochs=0.2 --set val_interval=6 --name more6 --project "$work/runs"

# Stages 2c and 2d: 6 epochs of 768-px windows at lr 0.0015 (more of each warp/weft line per
# window), then 6 more at lr 0.001 from its last epoch. (A third such stage, 2e, scored lower
# on a separate 180-frame selection set, seed 13: COCO AP 0.207 vs 0.234, so it is not run.)
fabricnms train --data "$work/coco/dataset.yaml" --config examples/default_model.yaml \
    --weights "$work/runs/train/more6/weights/last.pt" --epochs 6 --lr 0.0015 --tile 768 \
    --batch 4 --set warmup_epochs=0.2 --set val_interval=2 --name long768 --project "$work/runs"
fabricnms train --data "$work/coco/dataset.yaml" --config examples/default_model.yaml \
    --weights "$work/runs/train/long768/weights/last.pt" --epochs 6 --lr 0.001 --tile 768 \
    --batch 4 --set warmup_epochs=0.2 --set val_interval=2 --name long768b --project "$work/runs"

# Stage 3: the mask branch alone, on top of the frozen stage-2d detector (box-only losses).
# (The shipped model was made before --set of a key with a flag was honoured: it validated on
# all val frames, not 10. Validation does not change these weights: with freeze_detector the
# last epoch is best.)
fabricnms train --data "$work/coco/dataset.yaml" --weights "$work/runs/train/long768b/weights/last.pt" \
    --model-width n --set masks=true --set freeze_detector=true --epochs 3 --tile 512 --batch 8 \
    --workers 1 --device cpu --set val_interval=3 --set val_max_frames=10 \
    --name masks --project "$work/runs"

# Stage 4: fabric families. Two fine-tunes of the stage-3 model, 8 epochs each (lr 0.0005, masks
# on, one thread each; they can run side by side), on the stage-2 frames plus 800 frames of
# today's default generator (mixed fabric families: Tianchi twill, denim, greige with selvedge,
# line-scan strips, factory grey; 30 % clean): 4a with the real box geometry (best val epoch:
# the last), 4b with the v1 geometry of stages 1-3 (best val epoch 4). 4a alone is quiet on
# real fabric but loses Tianchi-look AP; 4b keeps more AP; their weight-space average keeps both.
fabricnms synth "$work/mix_synth" --images 800 --seed 300 --difficulty easy --class-prior uniform \
    --normal-fraction 0.3 --workers 2
fabricnms synth "$work/mix_synth_v1" --images 800 --seed 301 --difficulty easy \
    --class-prior uniform --normal-fraction 0.3 --geometry v1 --workers 2
fabricnms convert "$work/synth" "$work/mix_synth" "$work/coco_mix" --val-fraction 0.05 --seed 0
fabricnms convert "$work/synth" "$work/mix_synth_v1" "$work/coco_mix_v1" --val-fraction 0.05 --seed 0
for variant in mix mix_v1; do
    OMP_NUM_THREADS=1 fabricnms train --data "$work/coco_$variant/dataset.yaml" \
        --config examples/default_model.yaml --weights "$work/runs/train/masks/weights/best.pt" \
        --epochs 8 --lr 0.0005 --set warmup_epochs=0.2 --set masks=true --set val_interval=2 \
        --set val_max_frames=40 --name "families_$variant" --project "$work/runs"
done
python -m fabricnms.engine.average "$work/runs/train/families_mix/weights/best.pt" \
    "$work/runs/train/families_mix_v1/weights/best.pt" "$work/families_average.pt"

# Stage 4c: 3 more epochs of the average on the v1-geometry mix (lr 0.0003, one thread): the
# knot / bar / weave-fault shapes the average half-forgot come back (selection set, seed 13:
# COCO AP 0.209 -> 0.222; 3 epochs on the Tianchi look alone reached 0.232 but found 5 % of
# the real stains at its operating point instead of 41 %). Its last epoch is the model.
OMP_NUM_THREADS=1 fabricnms train --data "$work/coco_mix_v1/dataset.yaml" \
    --config examples/default_model.yaml --weights "$work/families_average.pt" \
    --epochs 3 --lr 0.0003 --set warmup_epochs=0.2 --set masks=true --set val_interval=3 \
    --set val_max_frames=40 --name families_more --project "$work/runs"

# Stage 5: the operating point (thresholds with at most 0.1 false alarms per frame on the 120 val
# frames of both looks) and, from the Tianchi-look data (--stats-data: tiles of its first 40
# train frames, limit from its 80 val frames), the fabric statistics for the shift warning: the
# look on which the model's accuracy is measured, so frames of other fabric are flagged. Only
# these two keys are added.
model="$work/runs/train/families_more/weights/best.pt"
fabricnms calibrate "$model" --data "$work/coco_mix/dataset.yaml" \
    --stats-data "$work/coco/dataset.yaml" --fit-frames 40 --false-alarms 0.1

echo "new default model: $model"
echo "ship it with: cp $model fabricnms/weights/default.pt"

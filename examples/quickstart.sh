#!/usr/bin/env bash
# The whole pipeline on a small synthetic release, in a few minutes on a 2-core CPU:
# synth -> convert -> train -> eval -> predict (with the roll report) -> visualize.
# Run from anywhere; everything is written under ./quickstart/ and ./runs/.
set -euo pipefail

fabricnms synth quickstart/synth --images 40 --seed 1 --workers 2 --overwrite
fabricnms convert quickstart/synth quickstart/coco --val-fraction 0.25
fabricnms train --data quickstart/coco/dataset.yaml --name quickstart \
  --epochs 2 --tile 512 --batch 8 --model-width n --workers 1 --device cpu
fabricnms eval --weights runs/train/quickstart/weights/best.pt --data quickstart/coco/dataset.yaml
fabricnms predict quickstart/synth/defect_Images --name quickstart \
  --weights runs/train/quickstart/weights/best.pt --conf 0.05 --px-per-mm 2
fabricnms visualize quickstart/synth/defect_Images --name quickstart \
  --annotations quickstart/synth/Annotations/anno_train.json --grid 16

#!/usr/bin/env bash
# The whole pipeline on a small synthetic release: synth -> convert -> fine-tune the shipped
# model on it (1 epoch) -> eval -> predict (with the roll report) -> visualize.
# Run from anywhere; everything is written under ./quickstart/ and ./runs/ (a second run gets
# the next free run folders: the commands below use the folder train reports).
# Time: see the README quick start (what machine and load each figure is from).
set -euo pipefail
shipped="$(cd "$(dirname "$0")/.." && pwd)/fabricnms/weights/default.pt"

fabricnms synth quickstart/synth --images 40 --seed 1 --workers 2 --overwrite
fabricnms convert quickstart/synth quickstart/coco --val-fraction 0.25
run=$(fabricnms train --data quickstart/coco/dataset.yaml --weights "$shipped" --name quickstart \
  --epochs 1 --tile 512 --batch 8 --model-width n --set masks=true --lr 0.0005 \
  --set warmup_epochs=0.1 --workers 1 --device cpu --json |
  python -c 'import json, sys; print(json.load(sys.stdin)["run_dir"])')
echo "fine-tuned model: $run/weights/best.pt"
fabricnms eval --weights "$run/weights/best.pt" --data quickstart/coco/dataset.yaml
fabricnms predict quickstart/synth/defect_Images --name quickstart \
  --weights "$run/weights/best.pt" --px-per-mm 2 --roll
fabricnms visualize quickstart/synth/defect_Images --name quickstart \
  --annotations quickstart/synth/Annotations/anno_train.json --grid 16

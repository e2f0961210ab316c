#!/usr/bin/env bash
# Regenerate examples/roll_scans/: 8 consecutive synthetic 2446x1000 frames of one fabric
# (frame_0001.jpg ... frame_0008.jpg, 2 of them defect-free) and their COCO ground truth
# labels.json. Seed 2026 (the shipped model trains on seed 7), the v1 box geometry the shipped
# model was trained on. Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
fabricnms synth examples/roll_scans --layout roll --images 8 --normal-fraction 0.25 \
    --size 2446x1000 --seed 2026 --difficulty easy --class-prior uniform --geometry v1 \
    --workers 2 --overwrite

#!/usr/bin/env bash
# The main job on built-in data: self-supervised pretraining (configs/pretrain/demo.yaml: a 4-block ViT-S/14 with
# 4 registers, from scratch, 30 iterations on CPU) on the built-in phantom chest radiographs, export of the teacher
# as a Hugging Face folder, then feature extraction with it. Outputs in out/demo/. Re-running resumes/finishes
# the same run (delete out/demo to start over).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cx() { node dist/cli/main.js "$@"; }
out=out/demo
cx train --config demo output="$out/run"
cx info "$out/run/exported"
cx embed --weights "$out/run/exported" "$out"/run/data/images/P0000{1,2,3}_*.png --out "$out/embeddings.safetensors" --layers=-1
echo "demo: run in $out/run (metrics.jsonl, train.log, checkpoints/, exported/); features in $out/embeddings.safetensors"

#!/usr/bin/env bash
# The main job on built-in data: self-supervised pretraining (configs/pretrain/demo.yaml: a 4-block ViT with
# 4 registers, D 192, from scratch, 200 iterations on CPU) on 1000 generated phantom chest radiographs, with kNN and
# linear probes of the teacher on the phantom findings before the first step (the baseline) and at every
# checkpoint; export of the teacher as a Hugging Face folder, the run report page, then feature extraction with
# the export. Outputs in out/demo/. Re-running resumes/finishes the same run (delete out/demo to start over).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cx() { node dist/cli/main.js "$@"; }
out=out/demo
cx train --config demo output="$out/run"
cx info "$out/run/exported"
cx embed --weights "$out/run/exported" "$out"/run/data/images/P0000{1,2,3}_*.png --out "$out/embeddings.safetensors" --layers=-1
echo "demo: run in $out/run (report.html: curves, probes against the baseline, timings; metrics.jsonl, train.log, checkpoints/, exported/); features in $out/embeddings.safetensors"

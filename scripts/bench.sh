#!/usr/bin/env bash
# `npm run bench`: the TypeScript end-to-end embedding benchmark (dist/bench/embed.js), the pretraining
# step benchmark (dist/bench/train.js), the data-path benchmark (dist/bench/data.js), the
# classification benchmark (dist/bench/finetune.js: features, fine-tuning step, linear-probe head), the segmentation step/inference benchmark (dist/bench/segment.js), the LLaVA training steps and generation
# with the tiny models (dist/bench/llava.js), the 1- vs 2-rank data-parallel step (dist/bench/dist.js), the report-generation metrics (dist/bench/text.js; with TEXT_REF_PY the
# Python reference packages on the same pairs, scripts/bench-text-reference.py), then the cargo
# benches of the core (criterion: ViT-S forward, attention, matmul; the SSL step's hot pieces; the SSL step of the
# side-by-side reference configuration per stage). Results: bench-results/ and target/criterion/.
# With REF_PY and DINOV2_SRC set (BENCHMARKS.md, "Side by side with the official DINOv2 step"), dist/bench/train.js
# also runs the official DINOv2 step timer alternately with cxformer's and records the ratio.
# BENCH_SKIP_CARGO=1 runs only the first part.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run --silent build
node dist/bench/embed.js
node dist/bench/train.js
node dist/bench/data.js
node dist/bench/finetune.js
node dist/bench/segment.js
node dist/bench/llava.js
node dist/bench/dist.js
node dist/bench/text.js
if [ "${BENCH_SKIP_CARGO:-0}" != 1 ]; then
  bash scripts/cargo.sh bench --locked -p cxformer-core --bench embed
  bash scripts/cargo.sh bench --locked -p cxformer-core --bench train
  bash scripts/cargo.sh bench --locked -p cxformer-core --bench step
fi

#!/usr/bin/env bash
# The main job on built-in data: phantom chest radiographs -> a built-in model (ViT-S/14 with 4 registers,
# random-initialised and exported as a Hugging Face folder) -> info -> embed. Outputs in out/demo/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cx() { node dist/cli/main.js "$@"; }
out=out/demo
mkdir -p "$out"
cx phantom --out "$out/images" --count 8 --size 512
cx export --arch vit_small --seed 0 --out "$out/vit_small_reg4"
cx info "$out/vit_small_reg4"
cx embed --weights "$out/vit_small_reg4" "$out"/images/*.png --out "$out/embeddings.safetensors" --layers=-4,-3,-2,-1
echo "demo: features in $out/embeddings.safetensors (cls [8,384], registers [8,4,384], patches [8,1369,384], last_hidden_state [8,1374,384], layer_-4..-1)"

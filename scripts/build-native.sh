#!/usr/bin/env bash
# Builds the Node addon (crates/node) with @napi-rs/cli into src/native/binding/:
#   cxformer.linux-x64-gnu.node, binding.cjs (loader), binding.d.ts (types from the #[napi] signatures).
# Extra arguments go to `napi build` (e.g. --features cuda).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$CXF_ROOT"
out=src/native/binding
mkdir -p "$out"
npx napi build --platform --release \
  --manifest-path crates/node/Cargo.toml --package-json-path package.json \
  --output-dir "$out" --js binding.cjs --dts binding.d.ts "$@" -- --locked
# The TypeScript build copies nothing: dist/native/binding points back at this folder (see src/native/load.ts).

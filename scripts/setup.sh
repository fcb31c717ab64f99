#!/usr/bin/env bash
# The one install path (developers and CI): idempotent, nothing installed by hand.
#   1. .venv with PyPI's torch==2.11.0 (LibTorch for the Rust core; CUDA build, runs on CPU)
#   2. npm ci (exact lockfile)
#   3. native addon (napi build --release, crates/node -> src/native/binding/)
#   4. TypeScript -> dist/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
say() { printf '\n== setup: %s\n' "$*"; }
t0=$SECONDS

# apt: nothing is required on this image (g++, python3 with venv, node 20, cargo come with it). Fail early and
# clearly if one is missing.
for tool in python3 node npm cargo g++; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' is required but not on PATH" >&2; exit 1; }
done

say "python venv + torch==2.11.0"
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.11.0")' 2>/dev/null; then
  .venv/bin/pip install --disable-pip-version-check -q torch==2.11.0
fi
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)' 2>/dev/null

say "npm ci"
npm ci --no-audit --no-fund --loglevel=error

say "native addon (cargo --release; the first build compiles tch's C++ wrapper: minutes)"
bash scripts/build-native.sh "$@"

say "TypeScript"
npm run --silent build
chmod +x dist/cli/main.js
say "done in $((SECONDS - t0)) s"

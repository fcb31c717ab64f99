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

# apt: only libgloo-dev and chromium (below); g++, python3 with venv, node 20 and cargo come with the image. Fail early and
# clearly if one is missing.
for tool in python3 node npm cargo g++; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' is required but not on PATH" >&2; exit 1; }
done

# Gloo's headers (multi-process training): the PyPI wheel does not ship them; Debian's libgloo-dev does (a
# different gloo snapshot, which is fine: the c10d classes hold gloo objects only through pointers). Only when missing.
if [ ! -f /usr/include/gloo/context.h ] && [ -z "${CXF_GLOO_INCLUDE:-}" ]; then
  say "apt: libgloo-dev (gloo headers for c10d's ProcessGroupGloo)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgloo-dev
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libgloo-dev
  else
    echo "setup: warning: /usr/include/gloo is missing and apt needs root: multi-process training will be compiled out" >&2
  fi
fi

# Chromium (Debian's package): test/report/browser.test.ts renders the run report page headless and screenshots it.
# Only when missing.
if ! command -v chromium >/dev/null; then
  say "apt: chromium (headless browser for the run report page test)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
  else
    echo "setup: warning: chromium is missing and apt needs root: test/report/browser.test.ts will fail" >&2
  fi
fi

say "python venv + torch==2.11.0"
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.11.0")' 2>/dev/null; then
  .venv/bin/pip install --disable-pip-version-check -q torch==2.11.0
fi
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)' 2>/dev/null

# CUDA builds (`bash scripts/setup.sh --features cuda` on a GPU server): NCCL needs CUDA toolkit headers that the
# torch wheel's nvidia-* packages lack (crt/host_config.h, nv/target); PyPI's nvidia-cuda-crt/-cccl supply them
# into the venv's nvidia/cu13/include, where crates/core/build.rs looks (docs/distributed.md, "Backends").
case " $* " in
  *" --features cuda "*|*" --features=cuda "*)
    say "CUDA toolkit headers for NCCL (nvidia-cuda-crt, nvidia-cuda-cccl)"
    .venv/bin/pip install --disable-pip-version-check -q nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85 ;;
esac

say "npm ci"
npm ci --no-audit --no-fund --loglevel=error

say "native addon (cargo --release; the first build compiles tch's C++ wrapper: minutes)"
bash scripts/build-native.sh "$@"

say "TypeScript"
npm run --silent build
chmod +x dist/cli/main.js
say "done in $((SECONDS - t0)) s"

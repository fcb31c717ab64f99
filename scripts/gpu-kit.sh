#!/usr/bin/env bash
# Builds, on this CPU machine, everything scripts/gpu-check.sh needs on a GPU server that has a pip torch 2.11
# but no Rust toolchain, no node and no network (toolchain.md §11):
#   out/gpu-kit.tar.xz = addon built with --features cuda (+ loader), cargo test binaries (cuda feature),
#                        dist/ (the TS build), configs/, production node_modules, node (xz), golden fixtures.
# Usage: bash scripts/gpu-kit.sh   (after scripts/setup.sh)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$CXF_ROOT"
kit=out/gpu-kit
rm -rf "$kit" out/gpu-kit.tar.xz
mkdir -p "$kit/binding" "$kit/bin" "$kit/golden"

# 0. CUDA toolkit headers for the NCCL backend (the torch wheel's nvidia-* packages lack crt/host_config.h and
#    nv/target); without them the kit's c10d has Gloo only (docs/distributed.md, "Backends").
.venv/bin/pip install --disable-pip-version-check -q nvidia-cuda-crt==13.0.88 nvidia-cuda-cccl==13.0.85

# 1. The addon, linked with libtorch_cuda kept in NEEDED (cargo feature `cuda`).
npx napi build --platform --release --manifest-path crates/node/Cargo.toml --package-json-path package.json \
  --output-dir "$kit/binding" --js binding.cjs --dts binding.d.ts --features cuda -- --locked
strip --strip-unneeded "$kit/binding/"*.node

# 2. Rust test binaries of the core with the same feature (golden tests run on CXF_TEST_DEVICE=cuda there).
cargo test --release --locked -p cxformer-core --features cuda --no-run --message-format=json 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.profile.test)console.log(m.target.name+" "+m.executable)}})' |
  while read -r name exe; do cp "$exe" "$kit/bin/$name"; strip --strip-unneeded "$kit/bin/$name"; done

# 3. TypeScript build, production dependencies, node itself, golden fixtures, the check script.
npm run --silent build
cp -r dist "$kit/dist"
cp -r configs "$kit/configs"
cp package.json "$kit/"
mkdir -p "$kit/node_modules"
npm ls --omit=dev --all --parseable 2>/dev/null | tail -n +2 | while read -r dir; do
  rel=${dir#"$CXF_ROOT/"}; mkdir -p "$kit/$(dirname "$rel")"; cp -r "$dir" "$kit/$rel"; done
# dist/native/load.js looks for binding/ beside itself.
ln -s ../../binding "$kit/dist/native/binding"
xz -T2 -6 -c "$(command -v node)" > "$kit/node.xz"
cp -r ../shared/fixtures/golden/. "$kit/golden/"
cp scripts/gpu-check.sh "$kit/"
tar -C out -cJf out/gpu-kit.tar.xz gpu-kit
du -sh "$kit" out/gpu-kit.tar.xz

#!/usr/bin/env bash
# Runs on a GPU server with a pip torch 2.11.0 but no Rust toolchain, no node and no network, using the kit
# built on the CPU machine by scripts/gpu-kit.sh (out/gpu-kit.tar.xz, or an unpacked out/gpu-kit):
#   1. the runtime report (torch, CUDA, cuDNN, threads) through the carried addon,
#   2. the Rust golden tests on CUDA (and on CPU) against the server's LibTorch,
#   3. the CLI golden check on CUDA (embed --device cuda on the reference inputs),
#   4. the embedding benchmark on CUDA (f32 and bf16, 224 and 518 px, MFU against BENCH_PEAK_TFLOPS),
#   5. the pretraining step at CXformer's real sizes (518/98, batch 64, K=16384, bf16) with its stage split.
#   6. the segmentation step and inference (ViT-S/14, linear head, 518 px, bf16, batch 32),
#   7. classification features and full fine-tuning step (ViT-S/14, 518 px, bf16), and a one-rank NCCL group,
#   8. the LLaVA recipe: CXformer-S at 518 px + a random Qwen2.5-0.5B-shaped LM, bf16: align and LoRA steps, greedy
#      generation, with the GPU's used memory sampled by nvidia-smi every 0.2 s (its peak in llava-memory.txt).
# Results: $RESULTS (default $OUT or out/gpu-results): one log per step and summary.txt.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
here=$PWD
results=${RESULTS:-${OUT:-$here/out/gpu-results}}
mkdir -p "$results"
kit=$here/out/gpu-kit
if [ -f "$here/out/gpu-kit.tar.xz" ]; then rm -rf "$kit"; tar -C "$here/out" -xJf "$here/out/gpu-kit.tar.xz"; fi
[ -d "$kit" ] || { echo "gpu-check: no kit at $kit (run scripts/gpu-kit.sh on the build machine)" >&2; exit 1; }
summary=$results/summary.txt
: > "$summary"
step() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  "$@" > "$results/$name.log" 2>&1
  local rc=$?
  printf '%-14s rc=%d  %4ds\n' "$name" "$rc" "$((SECONDS - t0))" | tee -a "$summary"
  tail -n 25 "$results/$name.log"
  return 0
}

PY=${PYTHON:-python3}
torch_lib=$($PY -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")' 2>/dev/null)
torch_ver=$($PY -c 'import torch;print(torch.__version__)' 2>/dev/null)
echo "torch $torch_ver at $torch_lib" | tee -a "$summary"
case "$torch_ver" in 2.11.0*) ;; *) echo "gpu-check: cxformer is built for torch 2.11.0, found $torch_ver" | tee -a "$summary"; exit 1 ;; esac
export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
NODE=$(command -v node || true)
if [ -z "$NODE" ]; then xz -dc "$kit/node.xz" > "$kit/node"; chmod +x "$kit/node"; NODE=$kit/node; fi
export CXFORMER_BINDING=$kit/binding/binding.cjs CXF_GOLDEN_DIR=$kit/golden
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$summary" 2>/dev/null || true
device=${CXF_TEST_DEVICE:-cuda}

step runtime "$NODE" "$kit/dist/cli/main.js" info --runtime --json
step golden-cuda env CXF_TEST_DEVICE="$device" "$kit/bin/golden" --test-threads=1
step golden-cpu env CXF_TEST_DEVICE=cpu "$kit/bin/golden" --test-threads=1
step rust-other sh -c "for b in '$kit'/bin/*; do case \$b in */golden) continue;; esac; \$b --test-threads=1 || exit 1; done"
# The CUDA-vs-CPU augmentation test is ignored by default (it needs a GPU).
[ "$device" = cpu ] || step augment-cuda env CXF_TEST_DEVICE="$device" "$kit/bin/augment" --test-threads=1 --include-ignored
# A one-rank process group on the device: NCCL when the kit was built with its headers (gpu-kit.sh installs them).
step dist-device env CXF_TEST_DEVICE="$device" "$kit/bin/dist" single_rank_group_on_the_test_device --test-threads=1
[ "$device" = cpu ] || step seg-tests-cuda env CXF_TEST_DEVICE="$device" "$kit/bin/seg" --test-threads=1
step cli-cuda "$NODE" "$kit/dist/bench/golden-check.js" "$device"
step bench-cuda env BENCH_DEVICE="$device" BENCH_RUNS="${BENCH_RUNS:-10}" BENCH_BATCH="${BENCH_BATCH:-32}" \
  BENCH_PEAK_TFLOPS="${BENCH_PEAK_TFLOPS:-989}" "$NODE" "$kit/dist/bench/embed.js"
step train-cuda env BENCH_REAL="${BENCH_REAL:-1}" BENCH_DEVICE="$device" BENCH_PRECISION=bf16 BENCH_STEPS="${BENCH_TRAIN_STEPS:-13}" "$NODE" "$kit/dist/bench/train.js"
step finetune-cuda env BENCH_DEVICE="$device" BENCH_FT_SIZE="${BENCH_FT_SIZE:-518}" BENCH_RUNS="${BENCH_RUNS:-10}" "$NODE" "$kit/dist/bench/finetune.js"
step seg-cuda env BENCH_DEVICE="$device" BENCH_SEG_SIZE="${BENCH_SEG_SIZE:-518}" BENCH_SEG_PRECISION=bf16 BENCH_SEG_BATCH="${BENCH_SEG_BATCH:-32}" "$NODE" "$kit/dist/bench/segment.js"
# LLaVA: the peak of nvidia-smi's used memory while the benchmark runs (the caching allocator's reserve included).
( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; done ) > "$results/llava-memory-samples.txt" &
mem_pid=$!
step llava-cuda env BENCH_DEVICE="$device" BENCH_LLAVA_SHAPE=qwen05b BENCH_LLAVA_BATCH="${BENCH_LLAVA_BATCH:-4}" BENCH_LLAVA_RUNS="${BENCH_RUNS:-5}" \
  BENCH_PEAK_TFLOPS="${BENCH_PEAK_TFLOPS:-989}" "$NODE" "$kit/dist/bench/llava.js"
kill "$mem_pid" 2>/dev/null || true
echo "llava peak used GPU memory (MiB, nvidia-smi): $(sort -n "$results/llava-memory-samples.txt" | tail -1)" | tee -a "$summary" "$results/llava-memory.txt"
cp bench-results/llava.json "$results/bench-llava.json" 2>/dev/null || true
cp bench-results/embed.json "$results/bench-embed.json" 2>/dev/null || true
cp bench-results/segment.json "$results/bench-segment.json" 2>/dev/null || true
cp bench-results/train.json "$results/bench-train.json" 2>/dev/null || true
cp bench-results/finetune.json "$results/bench-finetune.json" 2>/dev/null || true
echo "gpu-check: results in $results" | tee -a "$summary"

# Sourced by the project's scripts: how cargo finds LibTorch (the venv's torch 2.11.0; toolchain.md §2, §5).
# torch-sys asks `python` for the torch paths when VIRTUAL_ENV is set; never bypass its version check.
CXF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export VIRTUAL_ENV="$CXF_ROOT/.venv"
export PATH="$CXF_ROOT/.venv/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset LIBTORCH LIBTORCH_BYPASS_VERSION_CHECK

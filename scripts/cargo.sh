#!/usr/bin/env bash
# cargo with the LibTorch environment of scripts/env.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$CXF_ROOT"
exec cargo "$@"

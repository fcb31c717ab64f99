#!/usr/bin/env bash
# All tests: Rust (cargo test, release profile, golden fixtures) then TypeScript (vitest: unit, native, CLI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
npm run --silent build   # CLI tests run dist/cli/main.js
bash scripts/cargo.sh test --release --locked
npx vitest run

#!/usr/bin/env bash
# bf16 against fp32 on this machine, for `--precision bf16 is never slower`:
# `iwae-bench speed --json` (every training-step shape, fresh and trained,
# and the k = 5000 evaluation of 1,000 images) run ROUNDS times (default 3)
# for each precision, alternating fp32 and bf16, same build; then per case
# the best of each precision and bf16's time over fp32's (compare.py).
# Extra arguments go to both `iwae-bench speed` runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3}
out=${OUT:-$(mktemp -d)}
swift build -c release >&2
for round in $(seq "$rounds"); do
  for precision in fp32 bf16; do
    echo "round $round: $precision" >&2
    .build/release/iwae-bench speed --json --precision "$precision" "$@" > "$out/$precision-$round.jsonl"
  done
done
.build/release/iwae kernels | head -2
python3 Benchmarks/precision/compare.py "$out"/*.jsonl

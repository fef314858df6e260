#!/usr/bin/env bash
# bf16 against fp32 on this machine, for `--precision bf16 is never slower`:
# `iwae-bench precisions` times every training-step shape of `speed` (both
# layouts) and the k = 5000 evaluation of 1,000 images in both precisions,
# alternating A B B A round after round in one run, same build, on a model
# trained here for one epoch (or --model DIR), and prints per case the
# median of the rounds' own bf16/fp32 ratios (pair by pair: a neighbour's
# drift over the run cancels). Arguments go to `iwae-bench precisions`;
# short timings and many rounds pair best on a loaded machine
# (--rounds 41 --seconds 0.05).
set -euo pipefail
cd "$(dirname "$0")/../.."
swift build -c release >&2
.build/release/iwae kernels | head -2
exec .build/release/iwae-bench precisions "$@"

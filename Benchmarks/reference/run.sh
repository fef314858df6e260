#!/usr/bin/env bash
# The engine, JAX and PyTorch side by side (Benchmarks/reference/side_by_side.py;
# its options pass through, e.g. --shapes 20x1,100x50 --epochs 1 --data DIR).
# Installs PyTorch and JAX with pip into a virtual environment outside the
# repository ($IWAE_REFERENCE_VENV, default ~/.cache/iwae-reference): PyPI's
# torch wheel pulls CUDA libraries, several GB; where download.pytorch.org is
# reachable, PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu gets the
# CPU-only wheel. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${IWAE_REFERENCE_VENV:-$HOME/.cache/iwae-reference}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import torch, jax, numpy" 2>/dev/null || "$venv/bin/pip" install torch "jax[cpu]" numpy
(dpkg -s libopenblas-dev liblapacke-dev libdnnl-dev zlib1g-dev pkg-config dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update && apt-get install -y libopenblas-dev liblapacke-dev libdnnl-dev zlib1g-dev pkg-config dataset-fashion-mnist))
swift build -c release
exec "$venv/bin/python" Benchmarks/reference/side_by_side.py "$@"

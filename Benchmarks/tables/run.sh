#!/usr/bin/env bash
# Real tables no one here made (scikit-learn's digits, breast cancer, wine):
# VAE and IWAE against a full-covariance Gaussian, test NLL in the data's
# units (Benchmarks/tables/tables.py; its options pass through). Installs
# numpy and scikit-learn with pip into a virtual environment outside the
# repository ($IWAE_TABLES_VENV, default ~/.cache/iwae-tables). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=${IWAE_TABLES_VENV:-$HOME/.cache/iwae-tables}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import numpy, sklearn" 2>/dev/null || "$venv/bin/pip" install numpy scikit-learn
(dpkg -s libopenblas-dev liblapacke-dev libdnnl-dev zlib1g-dev pkg-config >/dev/null 2>&1 || (apt-get update && apt-get install -y libopenblas-dev liblapacke-dev libdnnl-dev zlib1g-dev pkg-config))
swift build -c release
exec "$venv/bin/python" Benchmarks/tables/tables.py "$@"

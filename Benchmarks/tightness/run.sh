#!/usr/bin/env bash
# How tight is L_5000 on MNIST (docs/RESULTS.md, "How tight is L_5000?"):
# trains the README protocol's models (10 epochs, batch 100, seed 1, one
# thread each, two at a time), then for each on the first 100 test images
# L_1, L_50, L_5000, L_100000 and AIS at T = 1,000 (16 chains) and
# T = 10,000 (4 chains), with per-image files, and BDMC on 100 examples
# simulated from it at T = 100 and 1,000. About 2.5 hours on 2 cores.
#
#     Benchmarks/tightness/run.sh [OUT_DIR]    (then: python3 Benchmarks/tightness/table.py OUT_DIR)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-/tmp/iwae-tightness}"
mkdir -p "$out"
(cd "$root" && swift build -c release >/dev/null)
cp "$root/.build/release/iwae" "$out/iwae"   # a copy: rebuilding the checkout does not disturb the runs
iwae="$out/iwae"
# One core per stream: one worker, and one thread inside each product.
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
mnist=(--data mnist --mnist-directory "${MNIST_DIRECTORY:-$root/../shared/data/mnist}")
cd "$out"

train() {   # NAME OPTIONS…
    local name=$1; shift
    [ -f "$name/model.safetensors" ] || "$iwae" train "${mnist[@]}" --epochs 10 --batch 100 --validation-examples 0 --threads 1 "$@" --out "$name" > "$name.train.log" 2>&1
}
evaluate() {   # NAME
    local n=$1 e=("${mnist[@]}" --test-examples 100 --threads 1 --json)
    for k in 1 50 5000 100000; do "$iwae" evaluate "$n" "${e[@]}" --k "$k" --per-example "$n/L$k.jsonl" > "$n/L$k.json"; done
    "$iwae" evaluate "$n" "${e[@]}" --method ais --ais-steps 1000 --per-example "$n/ais1000.jsonl" > "$n/ais1000.json"
    "$iwae" bdmc "$n" --examples 100 --steps 100,1000 --chains 4 --pilot-chains 2 --threads 1 --json > "$n/bdmc.json"
    "$iwae" evaluate "$n" "${e[@]}" --method ais --ais-steps 10000 --chains 4 --pilot-chains 2 --per-example "$n/ais10000.jsonl" > "$n/ais10000.json"
}
(
    train vae-k5 --objective elbo --k 5
    train iwae-k5 --objective iwae --k 5
    train iwae-k5-2layer --objective iwae --k 5 --latent 100 --hidden 200,200 --upper-layer 50@100,100
    evaluate vae-k5; evaluate iwae-k5; evaluate iwae-k5-2layer
) &
(
    train vae-k50 --objective elbo --k 50
    train iwae-k50 --objective iwae --k 50
    evaluate vae-k50; evaluate iwae-k50
) &
wait

"""The tightness table of docs/RESULTS.md from the files Benchmarks/tightness/run.sh writes.

For each model: NLL by L_1, L_50, L_5000, L_100000 and by AIS at T = 1,000
and 10,000 (−mean over the same 100 test images), the paired differences
AIS − L_5000 and AIS − L_100000 in log p(x) (positive: AIS finds more
likelihood) with their standard errors over the images, and BDMC's bounds
and gap per T on 100 examples simulated from the model.

    python3 Benchmarks/tightness/table.py [OUT_DIR]
"""
import json, math, os, sys

MODELS = [("vae-k5", "VAE (ELBO), K = 5"), ("iwae-k5", "IWAE, K = 5"), ("vae-k50", "VAE (ELBO), K = 50"),
          ("iwae-k50", "IWAE, K = 50"), ("iwae-k5-2layer", "IWAE, K = 5, two stochastic layers")]


def per_image(path, key):
    with open(path) as f:
        return [json.loads(line)[key] for line in f if line.strip()]


def paired(a, b):
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    se = math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))
    return mean, se


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/iwae-tightness"
    print("| model | L_1 | L_50 | L_5000 | L_100000 | AIS T = 1,000 | AIS T = 10,000 | AIS₁₀₀₀₀ − L_5000 | AIS₁₀₀₀₀ − L_100000 | AIS₁₀₀₀₀ − AIS₁₀₀₀ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    bdmc_rows = []
    for name, label in MODELS:
        d = os.path.join(out, name)
        if not os.path.exists(os.path.join(d, "ais10000.jsonl")):
            print(f"| {label} | (not finished) |")
            continue
        bounds = {k: per_image(os.path.join(d, f"L{k}.jsonl"), "bound") for k in (1, 50, 5000, 100000)}
        ais = {t: per_image(os.path.join(d, f"ais{t}.jsonl"), "log_likelihood") for t in (1000, 10000)}
        nll = lambda v: -sum(v) / len(v)
        g5000, g100000, gais = paired(ais[10000], bounds[5000]), paired(ais[10000], bounds[100000]), paired(ais[10000], ais[1000])
        cells = [f"{nll(bounds[k]):.2f}" for k in (1, 50, 5000, 100000)] + [f"{nll(ais[1000]):.2f}", f"**{nll(ais[10000]):.2f}**"]
        cells += [f"{m:+.2f} ± {s:.2f}" for m, s in (g5000, g100000, gais)]
        print(f"| {label} | " + " | ".join(cells) + " |")
        with open(os.path.join(d, "bdmc.json")) as f:
            for line in f:
                b = json.loads(line)
                bdmc_rows.append(f"| {label} | {b['ais_steps']:,} | {b['lower']:.2f} | {b['upper']:.2f} | {b['gap']:.2f} |")
    print()
    print("| model (100 simulated examples) | T | lower (forward AIS) | upper (reverse AIS) | gap |")
    print("|---|---|---|---|---|")
    print("\n".join(bdmc_rows))


if __name__ == "__main__":
    main()

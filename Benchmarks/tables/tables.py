"""Real tables that no one here made, modelled by the engine.

scikit-learn's bundled tables (digits 1,797 × 64, breast cancer 569 × 30,
wine 178 × 13) are split 80/20 by a fixed permutation; features constant on
the training rows are left out (a Gaussian cannot model them; digits has
such pixels). The engine trains a VAE (ELBO) and an IWAE at K = 1, 5 and 50
on the same architecture and seed, stopped early by the validation bound
(a tenth of the training rows, checked every 25 epochs), and reports the
test NLL by L_5000 in the data's own units (`iwae evaluate --json`), and
per row, paired, against the baseline a user would try first: a
full-covariance Gaussian fitted by maximum likelihood on the training rows,
its exact test log-likelihood in the same units.

    Benchmarks/tables/run.sh [--epochs N] [--tables digits,wine] [--json FILE]
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time

import numpy as np
from sklearn import datasets

LOADERS = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine}


def gaussian_log_likelihoods(train, test):
    """Exact test log-likelihood of each row under N(mean, cov) fitted by maximum likelihood on `train`."""
    mean = train.mean(0)
    cov = np.cov(train, rowvar=False, bias=True)
    sign, logdet = np.linalg.slogdet(cov)
    assert sign > 0, "singular covariance"
    r = test - mean
    q = np.einsum("ij,jk,ik->i", r, np.linalg.inv(cov), r)
    d = train.shape[1]
    return -0.5 * (q + logdet + d * np.log(2 * np.pi))


def stderr(v):
    return v.std(ddof=1) / np.sqrt(len(v))


def train_early_stopped(a, out, arguments):
    """Trains in stages of `a.stage` epochs (`iwae resume` continues bit for
    bit), keeping a copy of the run at its best validation bound (the
    held-out tenth of the training rows), until `a.patience` stages bring no
    better one. Returns the best stage's epochs and the copy's directory."""
    quiet = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([a.iwae, "train", *arguments, "--epochs", str(a.stage), "--out", out], **quiet)
    best, best_epochs, waited, epochs = -float("inf"), 0, 0, a.stage
    while True:
        last = json.loads(open(f"{out}/metrics.jsonl").readlines()[-1])
        if last["validation_bound"] > best:
            best, best_epochs, waited = last["validation_bound"], epochs, 0
            shutil.rmtree(out + "-best", ignore_errors=True)
            shutil.copytree(out, out + "-best")
        else:
            waited += 1
        if waited >= a.patience or epochs >= a.max_epochs:
            return best_epochs, out + "-best"
        epochs += a.stage
        subprocess.run([a.iwae, "resume", out, "--epochs", str(epochs)], **quiet)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iwae", default=".build/release/iwae")
    p.add_argument("--tables", default="digits,breast_cancer,wine")
    p.add_argument("--ks", default="1,5,50")
    p.add_argument("--stage", type=int, default=25, help="epochs between validation checks")
    p.add_argument("--max-epochs", type=int, default=3000)
    p.add_argument("--patience", type=int, default=3, help="stages without a better validation bound before stopping")
    p.add_argument("--hidden", default="100,100")
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--json")
    a = p.parse_args()
    results = []
    work = tempfile.mkdtemp(prefix="iwae-tables-")
    for name in a.tables.split(","):
        X = LOADERS[name]().data.astype(np.float64)
        perm = np.random.default_rng(0).permutation(len(X))
        n_test = int(round(0.2 * len(X)))
        test, train = X[perm[:n_test]], X[perm[n_test:]]
        keep = train.std(0) > 0
        train, test = train[:, keep], test[:, keep]
        np.save(f"{work}/{name}-train.npy", train)
        np.save(f"{work}/{name}-test.npy", test)
        baseline = gaussian_log_likelihoods(train, test)
        nll, se = -baseline.mean(), stderr(baseline)
        print(f"{name}: {len(train)} training rows, {len(test)} test rows, {train.shape[1]} features "
              f"({(~keep).sum()} constant left out); full-covariance Gaussian test NLL {nll:.2f} ± {se:.2f}, "
              f"median {-np.median(baseline):.2f}", flush=True)
        results.append({"table": name, "model": "gaussian-full-covariance", "k": None, "nll": nll, "nll_stderr": se,
                        "median_nll": -float(np.median(baseline)),
                        "features": int(train.shape[1]), "train_rows": len(train), "test_rows": len(test)})
        d = train.shape[1]
        latent = max(2, min(10, d // 3))
        for objective in ["elbo", "iwae"]:
            for k in map(int, a.ks.split(",")):
                out = f"{work}/{name}-{objective}-{k}"
                started = time.time()
                epochs, best = train_early_stopped(a, out, [
                    "--data", f"{work}/{name}-train.npy", "--test-data", f"{work}/{name}-test.npy",
                    "--objective", objective, "--k", str(k), "--batch", "100", "--hidden", a.hidden, "--latent", str(latent)])
                out = best
                seconds = time.time() - started
                ev = json.loads(subprocess.run([a.iwae, "evaluate", out, "--k", str(a.eval_k), "--json",
                                                "--per-example", f"{out}/rows.jsonl"], check=True,
                                               capture_output=True, text=True).stdout)
                rows = np.array([json.loads(line)["bound"] for line in open(f"{out}/rows.jsonl")])
                paired = -(rows - baseline)   # NLL difference per row: the model's minus the Gaussian's
                print(f"  {objective:4s} K={k:<3d} test NLL {ev['nll']:.2f} ± {ev['nll_stderr']:.2f}, median {-np.median(rows):.2f}; "
                      f"− Gaussian, paired per row: {paired.mean():+.2f} ± {stderr(paired):.2f} "
                      f"(log-Jacobian {ev['log_jacobian']:.2f}; best at {epochs} epochs, {seconds:.0f} s; active units {ev['active_units']} of {latent})",
                      flush=True)
                results.append({"table": name, "model": objective, "k": k, "nll": ev["nll"], "nll_stderr": ev["nll_stderr"],
                                "median_nll": -float(np.median(rows)), "minus_gaussian": float(paired.mean()),
                                "minus_gaussian_stderr": float(stderr(paired)),
                                "log_jacobian": ev["log_jacobian"], "epochs": epochs, "latent": latent, "train_seconds": seconds,
                                "active_units": ev["active_units"]})
    if a.json:
        json.dump(results, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()

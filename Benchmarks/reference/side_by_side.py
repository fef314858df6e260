#!/usr/bin/env python3
"""The engine, JAX and PyTorch side by side on this machine: ms per training
step at the same shapes (each the mean over about --seconds of steps, as
`iwae-bench speed` measures the engine; rounds alternate the three and the
medians of the rounds are printed, the ratios as the median of each round's
own ratio, so that the machine's drift between rounds cancels), then the test
NLL (k = 5000) of each after the same training budget, on the same binarized
test images. Run by Benchmarks/reference/run.sh, which installs JAX and
PyTorch and builds the engine.

Each framework is timed in a process of its own (their thread pools do not
meet); the engine by `iwae-bench speed` (its faster layout of the two cores),
the references by `side_by_side.py --time FRAMEWORK`.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

FRAMEWORKS = ("jax", "torch")


def reference(name):
    if name == "jax":
        import iwae_jax as module
    else:
        import iwae_torch as module
    return module


def prepare(data, directory, test_images):
    """A data directory: the source's training files, and its first
    `test_images` test images binarized once (numpy seed 0), as 0/255."""
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        source = common.find(data, stem)
        os.symlink(os.path.abspath(source), os.path.join(directory, os.path.basename(source)))
    test = common.load_images(data, "t10k")[:test_images]
    binary = (np.random.default_rng(0).random(test.shape, dtype=np.float32) < test).astype(np.float32)
    common.write_idx_images(os.path.join(directory, "t10k-images-idx3-ubyte"), binary)
    common.write_idx_labels(os.path.join(directory, "t10k-labels-idx1-ubyte"), binary.shape[0])
    return binary


def time_reference(name, directory, batch, k, seconds):
    """Child process: ms per step of one framework."""
    module = reference(name)
    images = common.load_images(directory, "t10k")
    pixel_mean = common.load_images(directory, "train").mean(0)
    print(json.dumps({"ms": common.mean_ms(module.step_timer(batch, k, images, pixel_mean), seconds)}))


def train_reference(name, directory, epochs, batch, k, eval_k):
    """Child process: trains for the budget, then the k = eval_k test NLL."""
    module = reference(name)
    train = common.load_images(directory, "train")
    test = common.load_images(directory, "t10k")
    trainer = module.Trainer(1, train.mean(0))
    start = time.perf_counter()
    trainer.train(train, epochs, batch, k, seed=1)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    nll = trainer.negative_log_likelihood(test, samples=eval_k)
    print(json.dumps({"train_s": seconds, "nll": nll, "eval_s": time.perf_counter() - start}))


def paired_ratios(reference_ms, engine_ms):
    """The median over rounds of reference/engine within each round, with
    the lowest and highest, as "1.62 [1.48-1.75]"."""
    ratios = sorted(r / e for r, e in zip(reference_ms, engine_ms))
    return f"{statistics.median(ratios):5.2f} [{ratios[0]:.2f}-{ratios[-1]:.2f}]"


def child(arguments):
    out = subprocess.run([sys.executable, os.path.abspath(__file__)] + arguments, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist", help="a directory of MNIST-format IDX files")
    parser.add_argument("--engine", default=".build/release", help="where iwae and iwae-bench are")
    parser.add_argument("--shapes", default="20x1,20x5,20x50,100x5,100x50", help="BxK,…")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--epochs", type=int, default=1, help="training budget (passes), batch 100, IWAE")
    parser.add_argument("--k", type=int, default=5, help="K of the budget's training")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--eval-k", type=int, default=5000)
    parser.add_argument("--skip-nll", action="store_true")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="inputs of the products: bf16 runs the engine with --precision bf16, PyTorch under CPU autocast "
                             "and JAX with bfloat16 matmul inputs and float32 results")
    parser.add_argument("--time", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--train", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    parser.add_argument("--directory", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time:
        return time_reference(args.time, args.directory, args.batch, args.k, args.seconds)
    if args.train:
        return train_reference(args.train, args.directory, args.epochs, 100, args.k, args.eval_k)

    os.environ["IWAE_REFERENCE_PRECISION"] = args.precision   # for the children, read by common.py
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    bench, iwae = os.path.join(args.engine, "iwae-bench"), os.path.join(args.engine, "iwae")
    with tempfile.TemporaryDirectory() as directory:
        prepare(args.data, directory, args.test_images)
        times = {}
        for round in range(args.rounds):
            for batch, k in shapes:
                out = subprocess.run([bench, "speed", "--batches", str(batch), "--ks", str(k), "--eval-images", "0",
                                      "--seconds", str(args.seconds), "--json", "--precision", args.precision], check=True, capture_output=True, text=True).stdout
                row = next(json.loads(l) for l in out.splitlines() if '"train_step"' in l)
                times.setdefault(("engine", batch, k), []).append(row["ms_per_step"])
                for name in FRAMEWORKS:
                    r = child(["--time", name, "--directory", directory, "--batch", str(batch), "--k", str(k),
                               "--seconds", str(args.seconds)])
                    times.setdefault((name, batch, k), []).append(r["ms"])
            print(f"round {round + 1}/{args.rounds} done", file=sys.stderr)
        print(f"ms per training step (gradient + Adam), 784-200-200-50 IWAE, 2 threads each, {args.precision} products, medians of {args.rounds} alternating rounds;")
        print("ratios: the median of each round's reference/engine, lowest and highest in brackets")
        print("   B    K    engine       JAX   PyTorch   JAX/engine          PyTorch/engine")
        for batch, k in shapes:
            e, j, t = (statistics.median(times[(n, batch, k)]) for n in ("engine", "jax", "torch"))
            ratios = [paired_ratios(times[(name, batch, k)], times[("engine", batch, k)]) for name in FRAMEWORKS]
            print(f"{batch:4d} {k:4d} {e:9.3f} {j:9.3f} {t:9.3f}" + "".join(f"   {r}" for r in ratios))
        if args.skip_nll:
            return
        print(f"\ntest NLL after {args.epochs} epoch(s) of IWAE K={args.k}, batch 100, Adam 1e-3 on all "
              f"{common.load_images(directory, 'train').shape[0]} training images; k={args.eval_k} on the same "
              f"{args.test_images} binarized test images")
        with tempfile.TemporaryDirectory() as run:
            start = time.perf_counter()
            subprocess.run([iwae, "train", "--data", directory, "--objective", "iwae", "--k", str(args.k), "--epochs",
                            str(args.epochs), "--batch", "100", "--validation-examples", "0", "--seed", "1", "--precision", args.precision, "--out", run],
                           check=True, capture_output=True)
            train_s = time.perf_counter() - start
            start = time.perf_counter()
            out = subprocess.run([iwae, "evaluate", run, "--data", directory, "--k", str(args.eval_k), "--test-examples",
                                  str(args.test_images), "--json"], check=True, capture_output=True, text=True).stdout
            engine = json.loads(out)
            print(f"  engine   train {train_s:7.1f} s   NLL {engine['nll']:8.2f} ± {engine['nll_stderr']:.2f}   evaluation {time.perf_counter() - start:6.1f} s")
        for name in FRAMEWORKS:
            r = child(["--train", name, "--directory", directory, "--epochs", str(args.epochs), "--k", str(args.k),
                       "--eval-k", str(args.eval_k)])
            print(f"  {name:7s}  train {r['train_s']:7.1f} s   NLL {r['nll']:8.2f}          evaluation {r['eval_s']:6.1f} s")


if __name__ == "__main__":
    sys.exit(main())

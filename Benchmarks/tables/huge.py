"""A .npy larger than half the machine's memory trains: written here as
N × 784 uint8 rows (Fashion-MNIST's images repeated, by default 17,000,000
rows, 13.3 GB), then `iwae train --data FILE --train-examples M` (the whole
file is scanned once to decide its kind; the first M rows train). Reports
the peak resident memory (file pages the kernel may drop included) and the
peak memory the process allocated itself (RssAnon), beside the file's size
and MemTotal.

    python3 Benchmarks/tables/huge.py [--rows 17000000] [--train-examples 200000] [--file /tmp/iwae-huge.npy]
"""
import argparse, gzip, os, struct, subprocess, sys, time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from large import idx_images, run  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iwae", default=".build/release/iwae")
    p.add_argument("--rows", type=int, default=17_000_000)
    p.add_argument("--train-examples", type=int, default=200_000)
    p.add_argument("--file", default="/tmp/iwae-huge.npy")
    a = p.parse_args()
    if not os.path.exists(a.file) or os.path.getsize(a.file) < a.rows * 784:
        images = idx_images("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").reshape(-1, 784)
        out = np.lib.format.open_memmap(a.file, mode="w+", dtype=np.uint8, shape=(a.rows, 784))
        for start in range(0, a.rows, len(images)):
            n = min(len(images), a.rows - start)
            out[start:start + n] = images[:n]
        out.flush()
        del out
    size = os.path.getsize(a.file)
    total = int(open("/proc/meminfo").readline().split()[1]) * 1024
    command = [a.iwae, "train", "--data", a.file, "--train-examples", str(a.train_examples), "--validation-examples", "1000",
               "--epochs", "1", "--k", "5", "--out", a.file + ".run"]
    subprocess.run(["rm", "-rf", a.file + ".run"], check=True)
    seconds, peak, anonymous = run(command)
    print(f"file {size / 2**30:.1f} GiB ({size / total:.2f} × MemTotal {total / 2**30:.1f} GiB): trained in {seconds:.0f} s; "
          f"peak RSS {peak / 2**30:.2f} GiB (mapped file pages included), allocated (RssAnon) {anonymous / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

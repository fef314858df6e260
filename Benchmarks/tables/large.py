"""Data loading off the critical path: a large uint8 .npy against the same
images as IDX files.

Writes N × 784 uint8 rows (Fashion-MNIST's training images repeated) as a
.npy and as an MNIST-format directory, then trains one epoch on each,
alternating A B A B, and reports each run's examples/s (from
metrics.jsonl) and peak resident memory (the kernel's ru_maxrss of the
finished process), beside the file's size and the model's. The .npy is
read in place (mapped); the IDX files are read whole and converted to Float.

    python3 Benchmarks/tables/large.py [--rows 1000000] [--rounds 2] [--k 5] [--dir /tmp/iwae-large]
"""
import argparse, gzip, json, os, shutil, struct, subprocess, time

import numpy as np


def idx_images(path):
    with gzip.open(path) as f:
        data = f.read()
    dims = struct.unpack(">" + "I" * data[3], data[4:4 + 4 * data[3]])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(dims)


def write_idx(path, array):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape))
        f.write(np.ascontiguousarray(array).tobytes())


def run(command):
    """Runs `command`; returns its seconds, its peak resident memory (VmHWM)
    and its peak anonymous memory (RssAnon: what it allocated, as opposed to
    file pages it maps, which the kernel can drop), read from /proc every
    50 ms. (Not ru_maxrss: it counts the forking parent's pages the child
    held before its exec.)"""
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = anonymous = 0
    exe = os.path.realpath(command[0])
    while True:
        pid, status, _ = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        try:
            if os.path.realpath(f"/proc/{process.pid}/exe") == exe:   # after the exec
                for line in open(f"/proc/{process.pid}/status"):
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) * 1024)
                    elif line.startswith("RssAnon:"):
                        anonymous = max(anonymous, int(line.split()[1]) * 1024)
        except OSError:
            pass
        time.sleep(0.05)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed: {process.stderr.read().decode()}")
    return time.time() - started, peak, anonymous


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iwae", default=".build/release/iwae")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--dir", default="/tmp/iwae-large")

    a = p.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    source = "/usr/share/datasets/fashion-mnist/"
    npy, idx = f"{a.dir}/rows.npy", f"{a.dir}/idx"
    if not os.path.exists(npy):
        train = idx_images(source + "train-images-idx3-ubyte.gz")
        rows = np.resize(train, (a.rows, 28, 28))
        np.save(npy, rows.reshape(a.rows, 784))
        os.makedirs(idx, exist_ok=True)
        write_idx(f"{idx}/train-images-idx3-ubyte", rows)
        write_idx(f"{idx}/train-labels-idx1-ubyte", np.zeros(a.rows, np.uint8))
        test = idx_images(source + "t10k-images-idx3-ubyte.gz")[:1000]
        write_idx(f"{idx}/t10k-images-idx3-ubyte", test)
        write_idx(f"{idx}/t10k-labels-idx1-ubyte", np.zeros(len(test), np.uint8))
    size = os.path.getsize(npy)
    # The engine's own footprint with this model and options: the same run on 10,000 of the rows.
    small = f"{a.dir}/small.npy"
    if not os.path.exists(small):
        np.save(small, np.load(npy, mmap_mode="r")[:10_000])
    shutil.rmtree(f"{a.dir}/run-small", ignore_errors=True)
    _, baseline, _ = run([a.iwae, "train", "--data", small, "--objective", "iwae", "--k", str(a.k), "--epochs", "1",
                          "--batch", "100", "--validation-examples", "1000", "--out", f"{a.dir}/run-small"])
    print(f"the same run on 10,000 rows: peak {baseline / 2**20:.0f} MiB (the engine and model alone)", flush=True)
    common = ["--objective", "iwae", "--k", str(a.k), "--epochs", "1", "--batch", "100"]
    figures = {"npy": [], "idx": []}
    for r in range(a.rounds):
        for name, data in [("npy", ["--data", npy]), ("idx", ["--data", idx])]:
            out = f"{a.dir}/run-{name}"
            shutil.rmtree(out, ignore_errors=True)
            seconds, peak, anonymous = run([a.iwae, "train"] + data + common + ["--out", out])
            metrics = json.loads(open(f"{out}/metrics.jsonl").readline())
            model = os.path.getsize(f"{out}/model.safetensors")
            figures[name].append((metrics["examples_per_s"], peak, seconds))
            print(f"round {r + 1} {name}: {metrics['examples_per_s']:.0f} examples/s, peak RSS {peak / 2**20:.0f} MiB "
                  f"= {peak / (size + baseline):.2f} × (file + the 10,000-row run's peak), of it allocated (RssAnon) "
                  f"{anonymous / 2**20:.0f} MiB, {seconds:.0f} s in all", flush=True)
    ratio = [n[0] / i[0] for n, i in zip(figures["npy"], figures["idx"])]
    print(f"file {size / 2**20:.0f} MiB; npy/idx examples/s per round: {', '.join(f'{x:.3f}' for x in ratio)}; "
          f"median npy peak {sorted(f[1] for f in figures['npy'])[len(ratio) // 2] / 2**20:.0f} MiB, "
          f"idx peak {sorted(f[1] for f in figures['idx'])[len(ratio) // 2] / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

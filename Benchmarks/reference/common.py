"""What the PyTorch and JAX references share with each other and with the
engine: the data (MNIST-format IDX files), the protocol and the model's shape.

The model is the engine's default one-stochastic-layer IWAE
(Burda et al. 2015; ../shared/MATH.md):

    encoder  x (784) -> tanh 200 -> tanh 200 -> mu (50), log sigma (50)      two heads
    decoder  z (50)  -> tanh 200 -> tanh 200 -> Bernoulli logits (784)
    log w_k = log p(x|z_k) + log N(z_k; 0, I) - log N(z_k; mu, diag(sigma^2))
    loss    = -mean_b logmeanexp_k log w_k        (the IWAE bound; K = 1 is the ELBO)

Initialization as the engine's: Glorot-uniform weights, zero biases, the
decoder's output bias at logit(pixel mean of the training set), clipped to
[1e-3, 1 - 1e-3]. Adam (beta1 0.9, beta2 0.999, epsilon 1e-4). Training
images are binarized dynamically (pixel d is 1 with probability x_d, each time
the image is used); test images once, by the side-by-side script, so that all
three implementations see the same binary test set.
"""
import gzip
import math
import os
import time

import numpy as np

DATA_DIMENSION = 784
HIDDEN = 200
LATENT = 50
ADAM_EPSILON = 1e-4
# The inputs of the products: fp32, or bf16 (`side_by_side.py --precision bf16`
# sets it for its children): PyTorch under CPU autocast, JAX with bfloat16
# matmul inputs and float32 results.
PRECISION = os.environ.get("IWAE_REFERENCE_PRECISION", "fp32")
LOG_2PI = math.log(2 * math.pi)


def read_idx(path):
    """An IDX file (plain or .gz) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(directory, stem):
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"{stem}(.gz) not in {directory}")


def load_images(directory, split):
    """Images of `split` ("train" or "t10k") as float32 (N, 784) in [0, 1]."""
    images = read_idx(find(directory, f"{split}-images-idx3-ubyte"))
    return images.reshape(images.shape[0], -1).astype(np.float32) / 255.0


def write_idx_images(path, images01):
    """Writes binary images (N, 784) of 0/1 as an IDX image file of 0/255."""
    n = images01.shape[0]
    side = int(round(math.sqrt(images01.shape[1])))
    header = bytes([0, 0, 8, 3]) + n.to_bytes(4, "big") + side.to_bytes(4, "big") + side.to_bytes(4, "big")
    with open(path, "wb") as f:
        f.write(header + (images01 * 255).astype(np.uint8).tobytes())


def write_idx_labels(path, n):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + bytes(n))


def glorot_uniform(rng, fan_in, fan_out):
    a = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-a, a, size=(fan_out, fan_in)).astype(np.float32)   # (out, in): y = x W^T + b


def initial_parameters(seed, pixel_mean):
    """The parameters as numpy arrays: name -> (weight (out, in), bias)."""
    rng = np.random.default_rng(seed)
    shapes = [("enc0", DATA_DIMENSION, HIDDEN), ("enc1", HIDDEN, HIDDEN), ("mu", HIDDEN, LATENT),
              ("log_sigma", HIDDEN, LATENT), ("dec0", LATENT, HIDDEN), ("dec1", HIDDEN, HIDDEN),
              ("out", HIDDEN, DATA_DIMENSION)]
    parameters = {name: (glorot_uniform(rng, i, o), np.zeros(o, np.float32)) for name, i, o in shapes}
    p = np.clip(pixel_mean, 1e-3, 1 - 1e-3)
    parameters["out"] = (parameters["out"][0], np.log(p / (1 - p)).astype(np.float32))
    return parameters


def binarized_batches(images, epochs, batch, seed):
    """The training batches of `epochs` passes: a new order each pass, each
    image binarized anew (pixel d is 1 with probability x_d)."""
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        order = rng.permutation(images.shape[0])
        for lo in range(0, images.shape[0], batch):
            probabilities = images[order[lo:lo + batch]]
            yield (rng.random(probabilities.shape, dtype=np.float32) < probabilities).astype(np.float32)


def mean_ms(step, seconds, warmup=3, minimum=5):
    """Milliseconds per `step()`: the wall time of as many steps as fill
    about `seconds` (after warm-up), divided by their number; the statistic
    `iwae-bench speed` reports for the engine."""
    for _ in range(warmup):
        step()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or steps < minimum:
        step()
        steps += 1
    return 1e3 * (time.perf_counter() - start) / steps

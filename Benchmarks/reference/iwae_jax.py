"""The engine's one-layer IWAE in JAX (jit-compiled step, float32 or bf16 matmul inputs, CPU): the
model, protocol and initialization of common.py. Adam is written out (no
optax): the same update as torch.optim.Adam and the engine."""
import math
import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2")

import jax
import jax.numpy as jnp

import common


def linear(p, x):
    """x Wᵀ + b; with common.PRECISION "bf16" the product takes bfloat16
    inputs and returns float32 (preferred_element_type)."""
    w, b = p
    if common.PRECISION == "bf16":
        return jnp.matmul(x.astype(jnp.bfloat16), w.T.astype(jnp.bfloat16), preferred_element_type=jnp.float32) + b
    return x @ w.T + b


def log_weights(params, x, key, k):
    """log w (B, K) for binary x (B, D)."""
    h = jnp.tanh(linear(params["enc1"], jnp.tanh(linear(params["enc0"], x))))
    mu, log_sigma = linear(params["mu"], h), linear(params["log_sigma"], h)
    eps = jax.random.normal(key, (x.shape[0], k, common.LATENT), jnp.float32)
    z = mu[:, None, :] + jnp.exp(log_sigma)[:, None, :] * eps
    log_q = jnp.sum(-0.5 * eps ** 2 - log_sigma[:, None, :], -1) - 0.5 * common.LATENT * common.LOG_2PI
    log_prior = jnp.sum(-0.5 * z ** 2, -1) - 0.5 * common.LATENT * common.LOG_2PI
    logits = linear(params["out"], jnp.tanh(linear(params["dec1"], jnp.tanh(linear(params["dec0"], z)))))
    # log p(x|z) = sum x·l − softplus(l)
    log_px = jnp.sum(x[:, None, :] * logits - jax.nn.softplus(logits), -1)
    return log_px + log_prior - log_q


def loss(params, x, key, k):
    lw = log_weights(params, x, key, k)
    return -jnp.mean(jax.scipy.special.logsumexp(lw, 1) - math.log(k))


def make_step(k, learning_rate=1e-3, b1=0.9, b2=0.999, eps=common.ADAM_EPSILON):
    @jax.jit
    def step(params, m, v, t, x, key):
        value, grads = jax.value_and_grad(loss)(params, x, key, k)
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        scale = learning_rate * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - scale * m / (jnp.sqrt(v) + eps * jnp.sqrt(1 - b2 ** t)),
                                        params, m, v)
        return params, m, v, t, value
    return step


class Trainer:
    def __init__(self, seed, pixel_mean):
        self.params = jax.tree_util.tree_map(jnp.asarray, common.initial_parameters(seed, pixel_mean))
        self.m = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.v = jax.tree_util.tree_map(jnp.zeros_like, self.params)
        self.t = jnp.zeros((), jnp.float32)
        self.key = jax.random.PRNGKey(seed)
        self.steps = {}

    def step(self, x, k):
        if k not in self.steps:
            self.steps[k] = make_step(k)
        self.key, sub = jax.random.split(self.key)
        self.params, self.m, self.v, self.t, value = self.steps[k](self.params, self.m, self.v, self.t, x, sub)
        return value

    def train(self, images, epochs, batch, k, seed):
        for x in common.binarized_batches(images, epochs, batch, seed):
            self.step(jnp.asarray(x), k)
        jax.block_until_ready(self.params)

    def negative_log_likelihood(self, binary_images, samples=5000, chunk=500):
        chunk_lse = jax.jit(lambda params, x, key: jax.scipy.special.logsumexp(log_weights(params, x, key, chunk), 1))
        key = jax.random.PRNGKey(12345)
        total = 0.0
        for lo in range(0, binary_images.shape[0], 10):
            x = jnp.asarray(binary_images[lo:lo + 10])
            running = jnp.full((x.shape[0],), -jnp.inf)
            for _ in range(0, samples, chunk):
                key, sub = jax.random.split(key)
                running = jnp.logaddexp(running, chunk_lse(self.params, x, sub))
            total += float(jnp.sum(running - math.log(samples)))
        return -total / binary_images.shape[0]


def step_timer(batch, k, images, pixel_mean):
    trainer = Trainer(1, pixel_mean)
    x = jnp.asarray(images[:batch])

    def run():
        jax.block_until_ready(trainer.step(x, k))
    return run

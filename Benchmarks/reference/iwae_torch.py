"""The engine's one-layer IWAE in PyTorch (eager, float32, 2 threads): the
model, protocol and initialization of common.py. With common.PRECISION
"bf16" the forward pass runs under torch.autocast("cpu", dtype=torch.bfloat16)
(what PyTorch offers for bf16 on the CPU: its linear layers take bf16 inputs,
through oneDNN), and the log weights are cast back to float32 for the bound."""
import math

import torch
import torch.nn.functional as F

import common

torch.set_num_threads(2)


class IWAE(torch.nn.Module):
    def __init__(self, seed, pixel_mean):
        super().__init__()
        self.layers = torch.nn.ModuleDict()
        for name, (w, b) in common.initial_parameters(seed, pixel_mean).items():
            layer = torch.nn.Linear(w.shape[1], w.shape[0])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(w))
                layer.bias.copy_(torch.from_numpy(b))
            self.layers[name] = layer

    def log_weights(self, x, k):
        """log w (B, K) for binary x (B, D)."""
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=common.PRECISION == "bf16"):
            return self.log_weights_in_precision(x, k).float()

    def log_weights_in_precision(self, x, k):
        L = self.layers
        h = torch.tanh(L["enc1"](torch.tanh(L["enc0"](x))))
        mu, log_sigma = L["mu"](h), L["log_sigma"](h)
        eps = torch.randn(x.shape[0], k, common.LATENT)
        z = mu[:, None, :] + torch.exp(log_sigma)[:, None, :] * eps
        log_q = (-0.5 * eps.pow(2) - log_sigma[:, None, :]).sum(-1) - 0.5 * common.LATENT * common.LOG_2PI
        log_prior = (-0.5 * z.pow(2)).sum(-1) - 0.5 * common.LATENT * common.LOG_2PI
        logits = L["out"](torch.tanh(L["dec1"](torch.tanh(L["dec0"](z)))))
        log_px = -F.binary_cross_entropy_with_logits(logits, x[:, None, :].expand_as(logits), reduction="none").sum(-1)
        return log_px + log_prior - log_q


class Trainer:
    def __init__(self, seed, pixel_mean, learning_rate=1e-3):
        torch.manual_seed(seed)
        self.model = IWAE(seed, pixel_mean)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate, eps=common.ADAM_EPSILON)

    def step(self, x, k):
        """One Adam step on the IWAE bound of the binary batch x (torch (B, D))."""
        self.optimizer.zero_grad(set_to_none=False)
        lw = self.model.log_weights(x, k)
        loss = -(torch.logsumexp(lw, 1) - math.log(k)).mean()
        loss.backward()
        self.optimizer.step()
        return loss

    def train(self, images, epochs, batch, k, seed):
        for x in common.binarized_batches(images, epochs, batch, seed):
            self.step(torch.from_numpy(x), k)

    @torch.no_grad()
    def negative_log_likelihood(self, binary_images, samples=5000, chunk=500):
        """-mean_x log (1/k) sum_k w_k with k = `samples`, in chunks of samples (running log-sum-exp)."""
        total = 0.0
        for lo in range(0, binary_images.shape[0], 10):
            x = torch.from_numpy(binary_images[lo:lo + 10])
            running = torch.full((x.shape[0],), -math.inf)
            for _ in range(0, samples, chunk):
                running = torch.logaddexp(running, torch.logsumexp(self.model.log_weights(x, chunk), 1))
            total += float((running - math.log(samples)).sum())
        return -total / binary_images.shape[0]


def step_timer(batch, k, images, pixel_mean):
    trainer = Trainer(1, pixel_mean)
    x = torch.from_numpy(images[:batch])
    return lambda: trainer.step(x, k)

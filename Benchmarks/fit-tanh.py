#!/usr/bin/env python3
"""Fits the coefficients of the engine's single-precision tanh
(Sources/CIWAEKernels/kernels_f32.h, tanh_inline):

    tanh x ≈ x · P(x²) / Q(x²) on 0 < x ≤ 9,   Q(0) = 1,   deg P = deg Q = 4,

minimizing the largest relative error. Each round solves the linearized
problem x P(s) − tanh(x) Q(s) ≈ 0 by weighted least squares, dividing by
tanh(x) Q_previous(s) so that the residual is the relative error, and
raises the weights where the last error was largest (Lawson's iteration
towards minimax). The variable is scaled to s / 81 while fitting.

    python3 Benchmarks/fit-tanh.py          # needs numpy

prints the largest relative error in exact arithmetic (about 2e-8) and
the coefficients, highest degree first, as the C code lists them.
"""
import numpy as np

DEGREE_P, DEGREE_Q, LIMIT = 4, 4, 9.0

x = np.sort(np.concatenate([np.linspace(1e-4, LIMIT, 40000), np.geomspace(1e-6, 1, 5000)]))
u = x * x / (LIMIT * LIMIT)
t = np.tanh(x)
columns = [x * u**i for i in range(DEGREE_P + 1)] + [-t * u**j for j in range(1, DEGREE_Q + 1)]
A = np.stack(columns, axis=1)
weights = np.ones_like(x)
q_previous = np.ones_like(x)
best = None
for _ in range(600):
    scale = weights / (t * q_previous)
    solution, *_ = np.linalg.lstsq(A * scale[:, None], t * scale, rcond=None)
    p = solution[:DEGREE_P + 1]
    q = np.concatenate([[1.0], solution[DEGREE_P + 1:]])
    P = np.polyval(p[::-1], u)
    Q = np.polyval(q[::-1], u)
    error = (x * P / Q - t) / t
    largest = np.max(np.abs(error))
    if best is None or largest < best[0]:
        best = (largest, p.copy(), q.copy())
    q_previous = Q
    weights = weights * (np.abs(error) / largest) ** 0.3 + 1e-12
    weights /= weights.max()

largest, p, q = best
S = LIMIT * LIMIT
print(f"largest relative error {largest:.3e}")
print("P:", ", ".join(f"{p[i] / S**i:.17e}" for i in reversed(range(DEGREE_P + 1))))
print("Q:", ", ".join(f"{q[j] / S**j:.17e}" for j in reversed(range(DEGREE_Q + 1))))

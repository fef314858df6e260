// Vectorized single-precision elementwise kernels: exp, log, log1p, tanh,
// σ and softplus over arrays, the Bernoulli log-likelihood pass, a hidden
// layer's bias and tanh, the scaling of rows and rows' sums of squares
// (kernels_f32.h has the dispatch and the inline math).
#include "kernels_f32.h"

// In place (x == y) the loop runs on one pointer; otherwise on two restrict
// pointers. A loop over two pointers that may alias falls back to scalar
// code at run time when they do (measured: 10× slower in place).
#define ELEMENTWISE(f)                                                      \
    if (x == y) {                                                           \
        for (long i = 0; i < n; i++) y[i] = f(y[i]);                        \
    } else {                                                                \
        const float *restrict xr = x;                                       \
        float *restrict yr = y;                                             \
        for (long i = 0; i < n; i++) yr[i] = f(xr[i]);                      \
    }

BODY void iwae_exp_f32_body(const float *x, float *y, long n) { ELEMENTWISE(exp_inline) }
MULTIVERSION(iwae_exp_f32, (const float *x, float *y, long n), (x, y, n))
BODY void iwae_log_f32_body(const float *x, float *y, long n) { ELEMENTWISE(log_inline) }
MULTIVERSION(iwae_log_f32, (const float *x, float *y, long n), (x, y, n))
BODY void iwae_log1p_f32_body(const float *x, float *y, long n) { ELEMENTWISE(log1p_inline) }
MULTIVERSION(iwae_log1p_f32, (const float *x, float *y, long n), (x, y, n))
BODY void iwae_tanh_f32_body(const float *x, float *y, long n) { ELEMENTWISE(tanh_inline) }
MULTIVERSION(iwae_tanh_f32, (const float *x, float *y, long n), (x, y, n))
BODY void iwae_sigmoid_f32_body(const float *x, float *y, long n) { ELEMENTWISE(sigmoid_inline) }
MULTIVERSION(iwae_sigmoid_f32, (const float *x, float *y, long n), (x, y, n))
BODY void iwae_softplus_f32_body(const float *x, float *y, long n) { ELEMENTWISE(softplus_inline) }
MULTIVERSION(iwae_softplus_f32, (const float *x, float *y, long n), (x, y, n))

/// One element of the Bernoulli pass, x·ℓ − softplus(ℓ) with softplus(ℓ) =
/// max(ℓ, 0) + log(1 + e^{−|ℓ|}); ℓ = l + b with `with_bias`. The term is
/// returned less its log, and 1 + e^{−|ℓ|} ∈ (1, 2] is multiplied into
/// *factors, whose log the row subtracts once for up to 64 elements: the
/// same value to fp32's rounding (KernelTests, against Double) at a
/// fraction of the logs. With `with_residual` (a training step's forward),
/// x − σ(ℓ) goes into *res.
static inline __attribute__((always_inline)) float bernoulli_term(float l, float b, float t, float *res, float *factors,
                                                                  int with_bias, int with_residual) {
    float lj = with_bias ? l + b : l;
    if (with_residual) {
        float e = exp_nonpositive_inline(-fabsf(lj));
        float s = 1.0f / (1.0f + e);
        float sigma = lj >= 0.0f ? s : e * s;
        *res = t - sigma;   /* a statement of its own: no FMA across the two */
        *factors *= 1.0f + e;
    } else {
        *factors *= one_plus_exp_nonpositive(-fabsf(lj));
    }
    return t * lj - (lj > 0.0f ? lj : 0.0f);
}

/// One row of the Bernoulli pass; `with_bias` and `with_residual` are
/// compile-time constants at each call site, so every variant vectorizes
/// without a branch in the loop:
///
///     log p(x|ℓ) = Σ_d [x_d ℓ_d − max(ℓ_d, 0)] − Σ_lanes log Π_d (1 + e^{−|ℓ_d|})
///
/// each of sixteen lanes multiplying at most 64 factors of (1, 2] before
/// taking their log (a product below 2⁶⁴, far from overflow).
static inline __attribute__((always_inline)) float bernoulli_row(const float *l, const float *b, const float *t, float *res,
                                                                 long dim, int with_bias, int with_residual) {
    // Sixteen partial sums keep the reduction vectorizable without fast-math.
    float acc[16] = {0};
    float factors[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    long d = 0;
    int held = 0;
    for (; d + 16 <= dim; d += 16) {
        for (int j = 0; j < 16; j++) {
            acc[j] += bernoulli_term(l[d + j], with_bias ? b[d + j] : 0.0f, t[d + j], with_residual ? res + d + j : 0,
                                     factors + j, with_bias, with_residual);
        }
        if (++held == 64) {
            for (int j = 0; j < 16; j++) { acc[j] -= log_inline(factors[j]); factors[j] = 1.0f; }
            held = 0;
        }
    }
    for (int j = 0; j < 16; j++) acc[j] -= log_inline(factors[j]);
    float total = 0.0f;
    for (int j = 0; j < 16; j++) total += acc[j];
    float tail = 1.0f;   // at most fifteen factors
    for (; d < dim; d++) {
        total += bernoulli_term(l[d], with_bias ? b[d] : 0.0f, t[d], with_residual ? res + d : 0, &tail, with_bias, with_residual);
    }
    return total - log_inline(tail);
}

#define BERNOULLI_ROWS(with_bias, with_residual)                                                    \
    for (long r = 0; r < rows; r++)                                                             \
        logp[r] = bernoulli_row(logits + r * dim, bias, x + (r / repeat) * dim,                 \
                                with_residual ? residual + r * dim : 0, dim, with_bias, with_residual);

BODY void iwae_bernoulli_loglik_f32_body(const float *logits, const float *bias, const float *x, long rows, long dim,
                                      long repeat, float *logp, float *residual) {
    if (bias && residual) { BERNOULLI_ROWS(1, 1) }
    else if (bias) { BERNOULLI_ROWS(1, 0) }
    else if (residual) { BERNOULLI_ROWS(0, 1) }
    else { BERNOULLI_ROWS(0, 0) }
}

/// The row sweep of a pass whose new value at column c is VALUE (an
/// expression of row[c] and c): `finish_row`'s work done in the same sweep
/// in the cases a bf16 step asks for (the result rounded, by ROUND, into
/// one form beside it; rounded in place, after its column sums when asked:
/// the emulation's dy, and an activation that only the emulation reads
/// next), in a second sweep over the row otherwise. (Its locals are named
/// sweep_… so that VALUE's names are never shadowed.)
#define ROW_SWEEP_ROUNDING(row, r, VALUE, ROUND)                                                              \
    if (!bits && rounded == row - r * columns) {                                                              \
        if (column_sums) {                                                                                    \
            float *restrict sweep_sums = column_sums;                                                         \
            for (long c = 0; c < columns; c++) { float v = VALUE; sweep_sums[c] += v; row[c] = ROUND(v); }    \
        } else {                                                                                              \
            for (long c = 0; c < columns; c++) row[c] = ROUND(VALUE);                                         \
        }                                                                                                     \
    } else if (!column_sums && bits && !rounded) {                                                            \
        uint16_t *restrict sweep_bits = bits + r * columns;                                                   \
        for (long c = 0; c < columns; c++) { float v = VALUE; row[c] = v; sweep_bits[c] = bf16_bits(v); }     \
    } else if (!column_sums && !bits && rounded) {                                                            \
        float *restrict sweep_rounded = rounded + r * columns;                                                \
        for (long c = 0; c < columns; c++) { float v = VALUE; row[c] = v; sweep_rounded[c] = ROUND(v); }      \
    } else {                                                                                                  \
        for (long c = 0; c < columns; c++) row[c] = VALUE;                                                    \
        finish_row(row, columns, r, column_sums, bits, rounded);                                              \
    }
#define ROW_SWEEP(row, r, VALUE) ROW_SWEEP_ROUNDING(row, r, VALUE, bf16_rounded)

/// y[r][c] = tanh(y[r][c] + bias[c]) in place: a hidden layer's bias and
/// nonlinearity in one sweep after its GEMM (its rounded floats by
/// `bf16_rounded_unit`: tanh's values are in [−1, 1]).
BODY void iwae_bias_tanh_f32_body(float *y, const float *bias, long rows, long columns, uint16_t *bits, float *rounded) {
    float *const column_sums = 0;   // a forward pass sums nothing (ROW_SWEEP reads the name)
    for (long r = 0; r < rows; r++) {
        float *restrict row = y + r * columns;
        const float *restrict b = bias;
        ROW_SWEEP_ROUNDING(row, r, tanh_inline(row[c] + b[c]), bf16_rounded_unit)
    }
}

/// g[r][c] = g[r][c] · (1 − y[r][c]²) in place: the backward of tanh from its
/// output, each operation rounded on its own (no fused multiply-add), as
/// the same line in Swift computes it.
BODY void iwae_tanh_backward_f32_body(float *g, const float *y, long rows, long columns, uint16_t *bits, float *rounded,
                                     float *column_sums) {
#pragma clang fp contract(off)
    for (long r = 0; r < rows; r++) {
        float *restrict row = g + r * columns;
        const float *restrict out = y + r * columns;
        ROW_SWEEP(row, r, row[c] * (1.0f - out[c] * out[c]))
    }
}

/// y[r][c] = scale[r] · y[r][c] in place: the Bernoulli backward's weighting
/// of each draw's residual row by its importance weight.
BODY void iwae_scale_rows_f32_body(float *y, const float *scale, long rows, long columns, uint16_t *bits, float *rounded,
                                  float *column_sums) {
    for (long r = 0; r < rows; r++) {
        float *restrict row = y + r * columns;
        const float s = scale[r];
        ROW_SWEEP(row, r, s * row[c])
    }
}


/// sums[r] = Σ_c x[r][c]², each row summed from column 0 up with each
/// square rounded on its own (no fused multiply-add): the bits of the plain
/// loop. Sixteen rows at a time, their columns gathered, so that sixteen
/// sums run side by side instead of one chain of dependent additions.
BODY void iwae_row_sums_of_squares_f32_body(const float *x, long ldx, long rows, long columns, float *sums) {
#pragma clang fp contract(off)
    long r = 0;
    for (; r + 16 <= rows; r += 16) {
        float acc[16] = {0};
        for (long c = 0; c < columns; c++)
            for (int j = 0; j < 16; j++) { float v = x[(r + j) * ldx + c]; acc[j] += v * v; }
        for (int j = 0; j < 16; j++) sums[r + j] = acc[j];
    }
    for (; r < rows; r++) {
        float acc = 0.0f;
        for (long c = 0; c < columns; c++) { float v = x[r * ldx + c]; acc += v * v; }
        sums[r] = acc;
    }
}


MULTIVERSION(iwae_bernoulli_loglik_f32,
             (const float *logits, const float *bias, const float *x, long rows, long dim, long repeat, float *logp, float *residual),
             (logits, bias, x, rows, dim, repeat, logp, residual))
MULTIVERSION(iwae_bias_tanh_f32, (float *y, const float *bias, long rows, long columns, uint16_t *bits, float *rounded),
             (y, bias, rows, columns, bits, rounded))
MULTIVERSION(iwae_tanh_backward_f32,
             (float *g, const float *y, long rows, long columns, uint16_t *bits, float *rounded, float *column_sums),
             (g, y, rows, columns, bits, rounded, column_sums))
MULTIVERSION(iwae_scale_rows_f32,
             (float *y, const float *scale, long rows, long columns, uint16_t *bits, float *rounded, float *column_sums),
             (y, scale, rows, columns, bits, rounded, column_sums))
MULTIVERSION(iwae_row_sums_of_squares_f32, (const float *x, long ldx, long rows, long columns, float *sums),
             (x, ldx, rows, columns, sums))

/// Into *mismatches, the floats among every `stride`-th bit pattern of
/// [−1, 1] (the normal ones and ±0; a stride below 1 is 1, above the range
/// the whole range) whose `bf16_rounded_unit` differs from `bf16_rounded`.
BODY void iwae_bf16_unit_mismatches_body(long stride, long *mismatches) {
    uint32_t step = stride < 1 ? 1u : stride > 0x3f800000L ? 0x3f800000u : (uint32_t)stride;
    long count = 0;
    for (int sign = 0; sign < 2; sign++) {
        uint32_t high = sign ? 0x80000000u : 0u;
        count += as_int(bf16_rounded_unit(as_float((int32_t)high))) != as_int(bf16_rounded(as_float((int32_t)high)));
        for (uint32_t u = 0x00800000u; u <= 0x3f800000u; u += step) {
            float x = as_float((int32_t)(high | u));
            count += as_int(bf16_rounded_unit(x)) != as_int(bf16_rounded(x));
        }
    }
    *mismatches = count;
}
MULTIVERSION(iwae_bf16_unit_mismatches, (long stride, long *mismatches), (stride, mismatches))

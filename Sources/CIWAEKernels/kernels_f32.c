// Vectorized single-precision kernels. Each inline function below is
// branch-free (selects only) so that clang vectorizes the loops that call it;
// every exported kernel is compiled for AVX-512, AVX2+FMA and the baseline
// and picks one at its first call. (By explicit dispatch rather than
// target_clones: an ifunc resolver runs during relocation, before a
// sanitizer's runtime is up, and crashed the ThreadSanitizer build.) Polynomials are Cephes' (S. Moshier), whose
// single-precision versions are accurate to about 2 ulp on their ranges.
#include "CIWAEKernels.h"
#include <math.h>
#include <stdint.h>

#define BODY static inline __attribute__((always_inline))

/// 2: AVX-512F, 1: AVX2 and FMA, 0: baseline; probed once.
static int cpu_level(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
    if (l < 0) {
        __builtin_cpu_init();
        l = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
        __atomic_store_n(&level, l, __ATOMIC_RELAXED);
    }
    return l;
}

/// Defines `name(params)` dispatching to three compilations of `name_body`.
#define MULTIVERSION(name, params, args)                                              \
    __attribute__((target("avx512f"))) static void name##_avx512 params { name##_body args; } \
    __attribute__((target("avx2,fma"))) static void name##_avx2 params { name##_body args; }  \
    static void name##_baseline params { name##_body args; }                          \
    void name params {                                                                \
        switch (cpu_level()) {                                                        \
        case 2: name##_avx512 args; return;                                           \
        case 1: name##_avx2 args; return;                                             \
        default: name##_baseline args; return;                                        \
        }                                                                             \
    }

typedef union { float f; int32_t i; uint32_t u; } bits32;

static inline float as_float(int32_t i) { bits32 b; b.i = i; return b.f; }
static inline int32_t as_int(float f) { bits32 b; b.f = f; return b.i; }

/// e^x: x = n ln2 + r, |r| ≤ ln2/2, e^r by a degree-6 polynomial, 2^n by the exponent bits.
static inline float exp_inline(float x) {
    const float hi = 88.72283935546875f, lo = -87.33654022216797f;
    float c = x > hi ? hi : x;
    c = c < lo ? lo : c;
    float n = floorf(c * 1.44269504088896341f + 0.5f);
    float r = c - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    // 2^n in two halves: n reaches 128 just below the overflow threshold.
    int32_t n1 = ((int32_t)n) >> 1, n2 = (int32_t)n - n1;
    float y = p * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/// log x: x = 2^e · m, m ∈ [√½, √2), log m by a degree-9 polynomial in m − 1.
static inline float log_inline(float x) {
    int denormal = x < 1.17549435e-38f;
    float xs = denormal ? x * 33554432.0f : x;   // 2^25
    int32_t ix = as_int(xs);
    int32_t e = ((ix >> 23) & 0xff) - 126;
    float m = as_float((ix & 0x007fffff) | 0x3f000000);  // [0.5, 1)
    int small = m < 0.707106781186547524f;
    e = small ? e - 1 : e;
    m = small ? m + m - 1.0f : m - 1.0f;
    float fe = (float)e - (denormal ? 25.0f : 0.0f);
    float z = m * m;
    float p = 7.0376836292e-2f;
    p = p * m - 1.1514610310e-1f;
    p = p * m + 1.1676998740e-1f;
    p = p * m - 1.2420140846e-1f;
    p = p * m + 1.4249322787e-1f;
    p = p * m - 1.6668057665e-1f;
    p = p * m + 2.0000714765e-1f;
    p = p * m - 2.4999993993e-1f;
    p = p * m + 3.3333331174e-1f;
    float y = p * m * z;
    y += -2.12194440e-4f * fe;
    y += -0.5f * z;
    float r = m + y + 0.693359375f * fe;
    r = x == INFINITY ? INFINITY : r;
    r = x == 0.0f ? -INFINITY : r;
    r = x < 0.0f ? NAN : r;
    return x != x ? x : r;
}

/// log(1 + u) with the rounding error of 1 + u corrected (Goldberg 1991, Thm 4).
static inline float log1p_inline(float u) {
    float v = 1.0f + u;
    float d = v - 1.0f;
    float l = log_inline(v);
    float r = d == 0.0f ? u : l * (u / d);
    return v == INFINITY ? INFINITY : r;
}

/// log(1 + u) for u ∈ [0, 1], the softplus tail: with s = u / (2 + u) ∈ [0, ⅓],
/// log(1 + u) = 2 atanh s = 2s (1 + s²/3 + s⁴/5 + … + s¹²/13); the first
/// omitted term is below 2⁻²⁶ relative. Cheaper than log1p_inline.
static inline float log1p_unit(float u) {
    float s = u / (2.0f + u);
    float z = s * s;
    float p = 1.0f / 13.0f;
    p = p * z + 1.0f / 11.0f;
    p = p * z + 1.0f / 9.0f;
    p = p * z + 1.0f / 7.0f;
    p = p * z + 1.0f / 5.0f;
    p = p * z + 1.0f / 3.0f;
    p = p * z + 1.0f;
    return 2.0f * s * p;
}

/// tanh x: odd polynomial below 0.625, 1 − 2/(e^{2|x|} + 1) above.
static inline float tanh_inline(float x) {
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float big = 1.0f - 2.0f / (exp_inline(a + a) + 1.0f);
    big = x < 0.0f ? -big : big;
    return a < 0.625f ? small : big;
}

/// σ(x) = 1 / (1 + e^{−x}), written through e^{−|x|} so that neither side overflows.
static inline float sigmoid_inline(float x) {
    float e = exp_inline(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}

/// softplus x = log(1 + e^x) = max(x, 0) + log1p(e^{−|x|}).
static inline float softplus_inline(float x) {
    float m = x > 0.0f ? x : 0.0f;
    float r = m + log1p_unit(exp_inline(-fabsf(x)));
    return x != x ? x : r;
}

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

/// One element of the Bernoulli pass: x·ℓ − softplus(ℓ), and the residual
/// x − σ(ℓ) into *res when `with_residual`; ℓ = l + b when `with_bias`.
static inline __attribute__((always_inline)) float bernoulli_term(float l, float b, float t, float *res,
                                                                  int with_bias, int with_residual) {
    float lj = with_bias ? l + b : l;
    float e = exp_inline(-fabsf(lj));
    if (with_residual) {
        float s = 1.0f / (1.0f + e);
        float sigma = lj >= 0.0f ? s : e * s;
        *res = t - sigma;   /* a statement of its own: no FMA across the two */
    }
    return t * lj - ((lj > 0.0f ? lj : 0.0f) + log1p_unit(e));
}

/// One row of the Bernoulli pass; `with_bias` and `with_residual` are
/// compile-time constants at each call site, so every variant vectorizes
/// without a branch in the loop.
static inline __attribute__((always_inline)) float bernoulli_row(const float *l, const float *b, const float *t, float *res,
                                                                 long dim, int with_bias, int with_residual) {
    // Sixteen partial sums keep the reduction vectorizable without fast-math.
    float acc[16] = {0};
    long d = 0;
    for (; d + 16 <= dim; d += 16) {
        for (int j = 0; j < 16; j++) {
            acc[j] += bernoulli_term(l[d + j], with_bias ? b[d + j] : 0.0f, t[d + j], with_residual ? res + d + j : 0,
                                     with_bias, with_residual);
        }
    }
    float total = 0.0f;
    for (int j = 0; j < 16; j++) total += acc[j];
    for (; d < dim; d++) {
        total += bernoulli_term(l[d], with_bias ? b[d] : 0.0f, t[d], with_residual ? res + d : 0, with_bias, with_residual);
    }
    return total;
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

/// y[r][c] = tanh(y[r][c] + bias[c]) in place: a hidden layer's bias and
/// nonlinearity in one sweep after its GEMM.
BODY void iwae_bias_tanh_f32_body(float *y, const float *bias, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        float *restrict row = y + r * columns;
        const float *restrict b = bias;
        for (long c = 0; c < columns; c++) row[c] = tanh_inline(row[c] + b[c]);
    }
}

/// y[r][c] = scale[r] · y[r][c] in place: the Bernoulli backward's weighting
/// of each draw's residual row by its importance weight.
BODY void iwae_scale_rows_f32_body(float *y, const float *scale, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        float *restrict row = y + r * columns;
        const float s = scale[r];
        for (long c = 0; c < columns; c++) row[c] = s * row[c];
    }
}

/// bfloat16 bits of x, rounded to nearest, ties to even (NaN stays a quiet NaN).
BODY uint16_t bf16_bits(float x) {
    bits32 b = {.f = x};
    uint32_t rounded = b.u + 0x7fffu + ((b.u >> 16) & 1u);
    uint32_t nan = (b.u | 0x00400000u);
    uint32_t u = ((b.u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded;
    return (uint16_t)(u >> 16);
}

BODY void iwae_round_bf16_f32_body(const float *x, long ldx, float *y, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        const float *restrict in = x + r * ldx;
        float *restrict out = y + r * columns;
        for (long c = 0; c < columns; c++) {
            bits32 b = {.u = (uint32_t)bf16_bits(in[c]) << 16};
            out[c] = b.f;
        }
    }
}

BODY void iwae_to_bf16_body(const float *x, long ldx, uint16_t *y, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        const float *restrict in = x + r * ldx;
        uint16_t *restrict out = y + r * columns;
        for (long c = 0; c < columns; c++) out[c] = bf16_bits(in[c]);
    }
}

/// (cos 2πu, sin 2πu) for u ∈ [0, 1): reduce to an octant, Cephes polynomials on [−π/4, π/4].
static inline void sincos_turns(float u, float *c, float *s) {
    float t = u - floorf(u + 0.5f);           // [-0.5, 0.5]
    float q = floorf(4.0f * t + 0.5f);        // quadrant in {-2..2}
    float a = 6.28318530717958648f * (t - 0.25f * q);  // [-π/4, π/4]
    float z = a * a;
    float sp = -1.9515295891e-4f;
    sp = sp * z + 8.3321608736e-3f;
    sp = sp * z - 1.6666654611e-1f;
    float sn = a + a * z * sp;
    float cp = 2.443315711809948e-5f;
    cp = cp * z - 1.388731625493765e-3f;
    cp = cp * z + 4.166664568298827e-2f;
    float cs = 1.0f - 0.5f * z + z * z * cp;
    int qi = ((int)q) & 3;
    float rc = qi == 0 ? cs : (qi == 1 ? -sn : (qi == 2 ? -cs : sn));
    float rs = qi == 0 ? sn : (qi == 1 ? cs : (qi == 2 ? -sn : -cs));
    *c = rc;
    *s = rs;
}

BODY void iwae_box_muller_f32_body(const uint32_t *bits, float *out, long pairs) {
    for (long i = 0; i < pairs; i++) {
        float u1 = (float)((bits[2 * i] >> 8) + 1) * 5.9604644775390625e-8f;   // (0, 1]
        float u2 = (float)(bits[2 * i + 1] >> 8) * 5.9604644775390625e-8f;     // [0, 1)
        float r = __builtin_elementwise_sqrt(-2.0f * log_inline(u1));  // sqrtf would set errno and stay scalar
        float c, s;
        sincos_turns(u2, &c, &s);
        out[i] = r * c;
        out[pairs + i] = r * s;
    }
}

/// The Adam update of n elements from the gradient g (shared by both entry points).
static inline __attribute__((always_inline)) void adam_elements(float *restrict theta, const float *restrict g,
                                                                float *restrict m, float *restrict v, long n, float beta1,
                                                                float beta2, float step_size, float eps) {
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    for (long i = 0; i < n; i++) {
        float gi = g[i];
        float mi = beta1 * m[i] + c1 * gi;
        float vi = beta2 * v[i] + c2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        theta[i] -= step_size * mi / (__builtin_elementwise_sqrt(vi) + eps);
    }
}

BODY void iwae_adam_f32_body(float *restrict theta, const float *restrict g, float *restrict m, float *restrict v, long n,
                          float beta1, float beta2, float step_size, float eps) {
    adam_elements(theta, g, m, v, n, beta1, beta2, step_size, eps);
}

/// Blocks of 512: the sources are added (and cleared) into a block on the
/// stack, which the update then reads while it is in L1.
BODY void iwae_adam_sum_f32_body(float *restrict theta, float *const *g, long sources, float *restrict m, float *restrict v,
                              long n, float beta1, float beta2, float step_size, float eps) {
    enum { BLOCK = 512 };
    float sum[BLOCK];
    for (long lo = 0; lo < n; lo += BLOCK) {
        const long len = n - lo < BLOCK ? n - lo : BLOCK;
        float *restrict first = g[0] + lo;
        for (long i = 0; i < len; i++) { sum[i] = first[i]; first[i] = 0.0f; }
        for (long s = 1; s < sources; s++) {
            float *restrict gs = g[s] + lo;
            for (long i = 0; i < len; i++) { sum[i] = sum[i] + gs[i]; gs[i] = 0.0f; }
        }
        adam_elements(theta + lo, sum, m + lo, v + lo, len, beta1, beta2, step_size, eps);
    }
}

MULTIVERSION(iwae_bernoulli_loglik_f32,
             (const float *logits, const float *bias, const float *x, long rows, long dim, long repeat, float *logp, float *residual),
             (logits, bias, x, rows, dim, repeat, logp, residual))
MULTIVERSION(iwae_bias_tanh_f32, (float *y, const float *bias, long rows, long columns), (y, bias, rows, columns))
MULTIVERSION(iwae_round_bf16_f32, (const float *x, long ldx, float *y, long rows, long columns), (x, ldx, y, rows, columns))
MULTIVERSION(iwae_to_bf16, (const float *x, long ldx, uint16_t *y, long rows, long columns), (x, ldx, y, rows, columns))
MULTIVERSION(iwae_scale_rows_f32, (float *y, const float *scale, long rows, long columns), (y, scale, rows, columns))
MULTIVERSION(iwae_box_muller_f32, (const uint32_t *bits, float *out, long pairs), (bits, out, pairs))
MULTIVERSION(iwae_adam_sum_f32,
             (float *theta, float *const *g, long sources, float *m, float *v, long n, float beta1, float beta2,
              float step_size, float eps),
             (theta, g, sources, m, v, n, beta1, beta2, step_size, eps))
MULTIVERSION(iwae_adam_f32,
             (float *theta, const float *g, float *m, float *v, long n, float beta1, float beta2, float step_size, float eps),
             (theta, g, m, v, n, beta1, beta2, step_size, eps))

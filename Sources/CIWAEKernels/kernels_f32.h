// The shared machinery of the single-precision kernels (private to this
// target): explicit CPU dispatch and the branch-free inline math.
//
// Each inline function is branch-free (selects only) so that clang vectorizes
// the loops that call it; every exported kernel is compiled for AVX-512,
// AVX2+FMA and the baseline and picks one at its first call. (By explicit
// dispatch rather than target_clones: an ifunc resolver runs during
// relocation, before a sanitizer's runtime is up, and crashed the
// ThreadSanitizer build.) Polynomials are Cephes' (S. Moshier), whose
// single-precision versions are accurate to about 2 ulp on their ranges.
#ifndef IWAE_KERNELS_F32_H
#define IWAE_KERNELS_F32_H
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

/// bfloat16 bits of x, rounded to nearest, ties to even (NaN stays a quiet NaN).
BODY uint16_t bf16_bits(float x) {
    bits32 b = {.f = x};
    uint32_t rounded = b.u + 0x7fffu + ((b.u >> 16) & 1u);
    uint32_t nan = (b.u | 0x00400000u);
    uint32_t u = ((b.u & 0x7fffffffu) > 0x7f800000u) ? nan : rounded;
    return (uint16_t)(u >> 16);
}

/// x rounded to bfloat16, as a float (its low 16 bits zero).
BODY float bf16_rounded(float x) { return as_float((int32_t)((uint32_t)bf16_bits(x) << 16)); }

/// `bf16_rounded` for a tanh's output (|x| ≤ 1, normal or zero, as every
/// computing thread flushes subnormals): Veltkamp's split by 2¹⁶ + 1, three
/// float operations where `bf16_rounded` takes eight integer ones, equal to
/// it on every normal float of [−1, 1] and on ±0 (`iwae_bf16_unit_mismatches`,
/// TanhRoundingTests). A NaN stays a NaN (its low payload bits not cleared).
BODY float bf16_rounded_unit(float x) {
#pragma clang fp contract(off)
    float split = x * 65537.0f;
    float excess = split - x;
    return split - excess;
}

/// x[0..<n] rounded to bfloat16 (`bf16_bits`): the bit patterns into `bits`
/// and the rounded floats into `rounded`, either skipped when NULL;
/// `rounded` may be x itself (rounded in place). Kernels that make a bf16
/// product's operand call it on each block they have just written, while
/// it is in cache, instead of a pass of its own.
BODY void store_bf16(float *x, long n, uint16_t *restrict bits, float *rounded) {
    if (bits)
        for (long i = 0; i < n; i++) bits[i] = bf16_bits(x[i]);
    if (rounded == x) {
        for (long i = 0; i < n; i++) x[i] = bf16_rounded(x[i]);
    } else if (rounded) {
        const float *restrict in = x;
        float *restrict out = rounded;
        for (long i = 0; i < n; i++) out[i] = bf16_rounded(in[i]);
    }
}

/// The end of a row pass's row r (n values, written): its values added
/// into `column_sums` (when not NULL, before rounding: a bias gradient),
/// then rounded by `store_bf16` into row r of `bits` and of `rounded`
/// (which may be the pass's own matrix: rounded in place).
BODY void finish_row(float *row, long n, long r, float *restrict column_sums, uint16_t *bits, float *rounded) {
    if (column_sums) {
        const float *restrict in = row;
        for (long c = 0; c < n; c++) column_sums[c] += in[c];
    }
    store_bf16(row, n, bits ? bits + r * n : 0, rounded ? rounded + r * n : 0);
}

/// e^c = 2^n · p for c in exp_inline's range: c = n ln2 + r, |r| ≤ ln2/2,
/// p = e^r by a degree-6 polynomial; returns p and sets *n.
static inline __attribute__((always_inline)) float exp_reduced(float c, float *n_out) {
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
    *n_out = n;
    return p * z + r + 1.0f;
}

/// e^x: exp_reduced, 2^n by the exponent bits.
static inline float exp_inline(float x) {
    const float hi = 88.72283935546875f, lo = -87.33654022216797f;
    float c = x > hi ? hi : x;
    c = c < lo ? lo : c;
    float n;
    float p = exp_reduced(c, &n);
    // 2^n in two halves: n reaches 128 just below the overflow threshold.
    int32_t n1 = ((int32_t)n) >> 1, n2 = (int32_t)n - n1;
    float y = p * as_float((n1 + 127) << 23) * as_float((n2 + 127) << 23);
    y = x > hi ? INFINITY : y;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/// e^x for x ≤ 0 (or NaN), the softplus and σ tails: exp_inline without
/// its overflow side. Below ln of the smallest normal it gives 0, as
/// exp_inline does; above, 2^n (n ∈ [−126, 0]) is one normal scale, so the
/// value is exp_inline's to the bit.
static inline float exp_nonpositive_inline(float x) {
    const float lo = -87.33654022216797f;
    float c = x < lo ? lo : x;
    float n;
    float p = exp_reduced(c, &n);
    float y = p * as_float(((int32_t)n + 127) << 23);
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/// 1 + e^x for x ≤ 0 (or NaN), the Bernoulli pass's factor: below −17,
/// 1 + e^x rounds to 1 in fp32 (e^−17 < 2⁻²⁴, half an ulp of 1), so x is
/// clamped there and 2^n (n ≥ −25) is one normal scale with nothing to
/// select: the value is 1 + exp_nonpositive_inline(x) to the bit (checked
/// over every float). e^x is rounded before the sum (two statements: no FMA).
static inline float one_plus_exp_nonpositive(float x) {
    float c = x < -17.0f ? -17.0f : x;
    float n;
    float p = exp_reduced(c, &n);
    float e = p * as_float(((int32_t)n + 127) << 23);
    return 1.0f + e;
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

/// tanh x: odd polynomial below 0.625, 1 − 2/(e^{2|x|} + 1) above. From
/// |x| = 9.5 on, 2/(e^{2|x|} + 1) < 2⁻²⁶ and the value rounds to ±1, so |x|
/// is clamped there and e^{2|x|} ≤ e¹⁹ needs one scale and no overflow
/// side (the same values, to the bit, as through exp_inline: checked over
/// every float).
static inline float tanh_inline(float x) {
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float c = a > 9.5f ? 9.5f : a;   // NaN stays NaN
    float n;
    float e = exp_reduced(c + c, &n) * as_float(((int32_t)n + 127) << 23);
    float big = 1.0f - 2.0f / (e + 1.0f);
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

#endif

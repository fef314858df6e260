// Elementwise kernels of the engine: the transcendental passes over K·B·D values
// that would otherwise rival the GEMMs. Float versions are vectorized
// (AVX-512 / AVX2 / baseline chosen at load time); Double versions call libm
// and serve as references and for finite-difference checks.
//
// Accuracy of the Float kernels (tested against the Double ones): within
// 3–4 ulp on their whole domain; results below the normal range (|y| < 2⁻¹²⁶)
// are flushed to zero.
//
// Every function takes (input..., output..., count) with count = number of
// elements; input and output may alias exactly (in place) but not partially.
#ifndef CIWAE_KERNELS_H
#define CIWAE_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

void iwae_exp_f32(const float *x, float *y, long n);
void iwae_log_f32(const float *x, float *y, long n);
void iwae_log1p_f32(const float *x, float *y, long n);
void iwae_tanh_f32(const float *x, float *y, long n);
void iwae_sigmoid_f32(const float *x, float *y, long n);
void iwae_softplus_f32(const float *x, float *y, long n);

void iwae_exp_f64(const double *x, double *y, long n);
void iwae_log_f64(const double *x, double *y, long n);
void iwae_log1p_f64(const double *x, double *y, long n);
void iwae_tanh_f64(const double *x, double *y, long n);
void iwae_sigmoid_f64(const double *x, double *y, long n);
void iwae_softplus_f64(const double *x, double *y, long n);

/// Bernoulli log-likelihood of binary targets under logits, row by row.
///
///     ℓ[r][d] = logits[r][d] + bias[d]        (bias may be NULL: no bias)
///     logp[r] = Σ_d x[r / repeat][d] · ℓ[r][d] − softplus(ℓ[r][d])
///     residual[r][d] = x[r / repeat][d] − sigmoid(ℓ[r][d])    (skipped when residual is NULL)
///
/// logits and residual are (rows, dim), bias is (dim); x is (rows / repeat,
/// dim): each data row serves `repeat` consecutive logit rows (the K samples
/// of one example). Folding the output layer's bias in here saves a pass;
/// the residual is ∂log p/∂ℓ, written where the backward wants it, so the
/// backward only scales its rows.
void iwae_bernoulli_loglik_f32(const float *logits, const float *bias, const float *x, long rows, long dim,
                               long repeat, float *logp, float *residual);
void iwae_bernoulli_loglik_f64(const double *logits, const double *bias, const double *x, long rows, long dim,
                               long repeat, double *logp, double *residual);

/// y[r][c] = tanh(y[r][c] + bias[c]) in place, y is (rows, columns).
void iwae_bias_tanh_f32(float *y, const float *bias, long rows, long columns, uint16_t *bits, float *rounded);
void iwae_bias_tanh_f64(double *y, const double *bias, long rows, long columns);

/// g[r][c] = g[r][c] · (1 − y[r][c]²) in place (tanh's backward from its
/// output y), g and y are (rows, columns).
void iwae_tanh_backward_f32(float *g, const float *y, long rows, long columns, uint16_t *bits, float *rounded,
                            float *column_sums);

/// y[r][c] = scale[r] · y[r][c] in place, y is (rows, columns), scale is (rows).
void iwae_scale_rows_f32(float *y, const float *scale, long rows, long columns, uint16_t *bits, float *rounded,
                         float *column_sums);
void iwae_scale_rows_f64(double *y, const double *scale, long rows, long columns);

/// sums[r] = Σ_c x[r][c]² for a (rows, columns) x read `ldx` apart, each
/// row summed from column 0 up, each square rounded before it is added
/// (the bits of the plain loop).
void iwae_row_sums_of_squares_f32(const float *x, long ldx, long rows, long columns, float *sums);
void iwae_row_sums_of_squares_f64(const double *x, long ldx, long rows, long columns, double *sums);

/// The f32 kernels above that take `bits` and `rounded` also write their
/// result rounded to bfloat16 (as `iwae_to_bf16` and `iwae_round_bf16_f32`
/// round it) into those (rows, columns) buffers when they are not NULL: a
/// bf16 product's operand made in the pass that makes the value. `rounded`
/// may be the result itself (rounded in place), and `column_sums` (when
/// not NULL, `columns` values) receives each column's sum of the result
/// before rounding, added row by row: the bias gradient that the rounded
/// values could no longer give.

/// The same work alone on a contiguous (rows, columns) y already computed:
/// its column sums into `column_sums`, then its rounded forms (`rounded`
/// may be y), each skipped when NULL.
void iwae_finish_rows_f32(float *y, long rows, long columns, uint16_t *bits, float *rounded, float *column_sums);

/// bfloat16 rounding of a (rows, columns) block read `ldx` apart, written
/// contiguously: to nearest, ties to even, NaN kept (a quiet NaN), ±∞ kept,
/// values past the largest bfloat16 to ±∞. `iwae_round_bf16_f32` writes the
/// rounded values as floats (their low 16 bits zero); `iwae_to_bf16` writes
/// the 16-bit patterns. y may be x when ldx = columns (rounded in place).
void iwae_round_bf16_f32(const float *x, long ldx, float *y, long rows, long columns);
/// Into *mismatches, the floats among every `stride`-th bit pattern of
/// [−1, 1] (its normal floats and ±0) that the rounding of tanh's outputs
/// (Veltkamp's split, in `iwae_bias_tanh_f32`) rounds otherwise than
/// `iwae_round_bf16_f32`.
void iwae_bf16_unit_mismatches(long stride, long *mismatches);
void iwae_to_bf16(const float *x, long ldx, uint16_t *y, long rows, long columns);

/// Box–Muller transform of 2·pairs uniform random words into 2·pairs
/// independent standard normals: out[i] = r cos θ, out[pairs + i] = r sin θ,
/// r = √(−2 log u₁), θ = 2π u₂, u₁ ∈ (0, 1] from bits[2i], u₂ ∈ [0, 1) from bits[2i+1].
void iwae_box_muller_f32(const uint32_t *bits, float *out, long pairs);
void iwae_box_muller_f64(const uint64_t *bits, double *out, long pairs);

/// One Adam step over n parameters (Kingma & Ba 2015), bias corrections
/// folded into `step_size` and `eps` by the caller:
///
///     m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,   θ ← θ − step_size · m / (√v + eps)
void iwae_adam_f32(float *theta, const float *g, float *m, float *v, long n,
                   float beta1, float beta2, float step_size, float eps);
void iwae_adam_f64(double *theta, const double *g, double *m, double *v, long n,
                   double beta1, double beta2, double step_size, double eps);

/// The same step on g = g₀ + g₁ + … + g_{sources−1} (added in that order,
/// the order of a left-to-right sum), in one pass that reads the gᵢ and
/// leaves them as they are: a training step's replica sum and update together.
/// The f32 step also writes the new θ rounded to bfloat16 (as
/// `iwae_to_bf16` and `iwae_round_bf16_f32` round) into `bits` and
/// `rounded` when they are not NULL.
void iwae_adam_sum_f32(float *theta, float *const *g, long sources, float *m, float *v, long n,
                       float beta1, float beta2, float step_size, float eps, uint16_t *bits, float *rounded);
void iwae_adam_sum_f64(double *theta, double *const *g, long sources, double *m, double *v, long n,
                       double beta1, double beta2, double step_size, double eps);


/// What the CPU offers (CPUID), each feature counted only when the operating
/// system saves its registers (XGETBV).
typedef struct {
    int vendor;        ///< 1 Intel, 2 AMD, 0 other
    int family;        ///< display family (base + extended)
    int model;         ///< display model (base + extended)
    int avx2_fma;      ///< AVX2 and FMA
    int avx512;        ///< AVX-512 F, DQ, CD, BW and VL
    int avx512_bf16;   ///< AVX512-BF16 dot products
    int amx_bf16;      ///< AMX tiles with BF16
} iwae_cpu_features;

iwae_cpu_features iwae_cpu_probe(void);

/// Sets flush-to-zero and denormals-are-zero in this thread's MXCSR and
/// returns the previous MXCSR, for `iwae_flush_subnormals_end`.
unsigned iwae_flush_subnormals_begin(void);
void iwae_flush_subnormals_end(unsigned previous);
/// 1 when this thread flushes subnormal results and inputs to zero.
int iwae_flushes_subnormals(void);

/// The hardware's fp32 peak loop: `rounds` rounds of 12 independent
/// multiply-adds on vectors of `width` bits (512: AVX-512 FMA, 256: AVX2 FMA,
/// else SSE multiply and add; the caller checks the CPU has them). Returns
/// the floating-point operations done; `sink` receives their sum.
double iwae_fma_peak_loop(long rounds, int width, float *sink);

/// The CPU's hint that this thread is spinning on a shared flag (x86 PAUSE):
/// it frees the core's shared resources and saves power meanwhile.
static inline void iwae_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#ifdef __cplusplus
}
#endif

#endif

// Adam's update over the flat parameter buffer, alone or fused with the sum
// of the workers' gradients.
#include "kernels_f32.h"

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

/// Blocks of 512: the sources are added into a block on the
/// stack, which the update then reads while it is in L1, and the new values
/// are rounded to bfloat16 from L1 too when `bits` or `rounded` is given.
BODY void iwae_adam_sum_f32_body(float *restrict theta, float *const *g, long sources, float *restrict m, float *restrict v,
                              long n, float beta1, float beta2, float step_size, float eps, uint16_t *restrict bits,
                              float *restrict rounded) {
    enum { BLOCK = 512 };
    float sum[BLOCK];
    for (long lo = 0; lo < n; lo += BLOCK) {
        const long len = n - lo < BLOCK ? n - lo : BLOCK;
        const float *restrict first = g[0] + lo;
        if (sources > 1) {   // the first two added in the copy's loop (a copy alone compiles to a memcpy call)
            const float *restrict second = g[1] + lo;
            for (long i = 0; i < len; i++) sum[i] = first[i] + second[i];
        } else {
            for (long i = 0; i < len; i++) sum[i] = first[i];
        }
        for (long s = 2; s < sources; s++) {
            const float *restrict gs = g[s] + lo;
            for (long i = 0; i < len; i++) sum[i] = sum[i] + gs[i];
        }
        adam_elements(theta + lo, sum, m + lo, v + lo, len, beta1, beta2, step_size, eps);
        store_bf16(theta + lo, len, bits ? bits + lo : 0, rounded ? rounded + lo : 0);
    }
}

MULTIVERSION(iwae_adam_sum_f32,
             (float *theta, float *const *g, long sources, float *m, float *v, long n, float beta1, float beta2,
              float step_size, float eps, uint16_t *bits, float *rounded),
             (theta, g, sources, m, v, n, beta1, beta2, step_size, eps, bits, rounded))
MULTIVERSION(iwae_adam_f32,
             (float *theta, const float *g, float *m, float *v, long n, float beta1, float beta2, float step_size, float eps),
             (theta, g, m, v, n, beta1, beta2, step_size, eps))

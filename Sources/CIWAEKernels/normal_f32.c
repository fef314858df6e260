// Standard normal draws from uniform bits: Box–Muller with a vectorized
// log and sin/cos of turns.
#include "kernels_f32.h"

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

MULTIVERSION(iwae_box_muller_f32, (const uint32_t *bits, float *out, long pairs), (bits, out, pairs))

// bfloat16 rounding of fp32 arrays (to nearest, ties to even): as fp32
// values (the emulated bf16 products) or as bfloat16 bit patterns (oneDNN's
// operands).
#include "kernels_f32.h"

BODY void iwae_round_bf16_f32_body(const float *x, long ldx, float *y, long rows, long columns) {
    for (long r = 0; r < rows; r++) store_bf16((float *)(x + r * ldx), columns, 0, y + r * columns);
}

BODY void iwae_to_bf16_body(const float *x, long ldx, uint16_t *y, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        const float *restrict in = x + r * ldx;
        uint16_t *restrict out = y + r * columns;
        for (long c = 0; c < columns; c++) out[c] = bf16_bits(in[c]);
    }
}

MULTIVERSION(iwae_round_bf16_f32, (const float *x, long ldx, float *y, long rows, long columns), (x, ldx, y, rows, columns))
MULTIVERSION(iwae_to_bf16, (const float *x, long ldx, uint16_t *y, long rows, long columns), (x, ldx, y, rows, columns))

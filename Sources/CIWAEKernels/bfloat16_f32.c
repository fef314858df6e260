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

/// Each row of a contiguous (rows, columns) y ended as a row pass ends it
/// (`finish_row`): column sums, then the rounded forms.
BODY void iwae_finish_rows_f32_body(float *y, long rows, long columns, uint16_t *bits, float *rounded, float *column_sums) {
    for (long r = 0; r < rows; r++) finish_row(y + r * columns, columns, r, column_sums, bits, rounded);
}

MULTIVERSION(iwae_finish_rows_f32, (float *y, long rows, long columns, uint16_t *bits, float *rounded, float *column_sums),
             (y, rows, columns, bits, rounded, column_sums))
MULTIVERSION(iwae_round_bf16_f32, (const float *x, long ldx, float *y, long rows, long columns), (x, ldx, y, rows, columns))
MULTIVERSION(iwae_to_bf16, (const float *x, long ldx, uint16_t *y, long rows, long columns), (x, ldx, y, rows, columns))

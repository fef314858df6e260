// Double-precision kernels: plain libm, the reference the vectorized Float
// kernels are tested against and the precision of finite-difference checks.
#include "CIWAEKernels.h"
#include <math.h>

static inline double softplus_d(double x) {
    return (x > 0.0 ? x : 0.0) + log1p(exp(-fabs(x)));
}
static inline double sigmoid_d(double x) {
    double e = exp(-fabs(x));
    return x >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

void iwae_exp_f64(const double *x, double *y, long n) { for (long i = 0; i < n; i++) y[i] = exp(x[i]); }
void iwae_log_f64(const double *x, double *y, long n) { for (long i = 0; i < n; i++) y[i] = log(x[i]); }
void iwae_log1p_f64(const double *x, double *y, long n) { for (long i = 0; i < n; i++) y[i] = log1p(x[i]); }
void iwae_tanh_f64(const double *x, double *y, long n) { for (long i = 0; i < n; i++) y[i] = tanh(x[i]); }
void iwae_sigmoid_f64(const double *x, double *y, long n) { for (long i = 0; i < n; i++) y[i] = sigmoid_d(x[i]); }
void iwae_softplus_f64(const double *x, double *y, long n) {
    for (long i = 0; i < n; i++) y[i] = isnan(x[i]) ? x[i] : softplus_d(x[i]);
}

void iwae_bernoulli_loglik_f64(const double *logits, const double *bias, const double *x, long rows, long dim,
                               long repeat, double *logp, double *residual) {
    for (long r = 0; r < rows; r++) {
        const double *l = logits + r * dim;
        const double *t = x + (r / repeat) * dim;
        double total = 0.0;
        for (long d = 0; d < dim; d++) {
            double ld = bias ? l[d] + bias[d] : l[d];
            total += t[d] * ld - softplus_d(ld);
            if (residual) {
                double sigma = sigmoid_d(ld);
                residual[r * dim + d] = t[d] - sigma;
            }
        }
        logp[r] = total;
    }
}

void iwae_scale_rows_f64(double *y, const double *scale, long rows, long columns) {
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < columns; c++) y[r * columns + c] = scale[r] * y[r * columns + c];
}

void iwae_row_sums_of_squares_f64(const double *x, long ldx, long rows, long columns, double *sums) {
#pragma clang fp contract(off)
    for (long r = 0; r < rows; r++) {
        double acc = 0.0;
        for (long c = 0; c < columns; c++) acc += x[r * ldx + c] * x[r * ldx + c];
        sums[r] = acc;
    }
}

void iwae_bias_tanh_f64(double *y, const double *bias, long rows, long columns) {
    for (long r = 0; r < rows; r++)
        for (long c = 0; c < columns; c++) y[r * columns + c] = tanh(y[r * columns + c] + bias[c]);
}

void iwae_box_muller_f64(const uint64_t *bits, double *out, long pairs) {
    for (long i = 0; i < pairs; i++) {
        double u1 = (double)((bits[2 * i] >> 11) + 1) * 0x1.0p-53;
        double u2 = (double)(bits[2 * i + 1] >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1));
        out[i] = r * cos(6.283185307179586 * u2);
        out[pairs + i] = r * sin(6.283185307179586 * u2);
    }
}

/// One element of the Adam update (shared by both entry points).
static inline void adam_element(double *theta, double g, double *m, double *v,
                                double beta1, double beta2, double step_size, double eps) {
    double mi = beta1 * *m + (1.0 - beta1) * g;
    double vi = beta2 * *v + (1.0 - beta2) * g * g;
    *m = mi;
    *v = vi;
    *theta -= step_size * mi / (sqrt(vi) + eps);
}

void iwae_adam_sum_f64(double *theta, double *const *g, long sources, double *m, double *v, long n,
                       double beta1, double beta2, double step_size, double eps) {
    for (long i = 0; i < n; i++) {
        double gi = g[0][i];
        for (long s = 1; s < sources; s++) gi = gi + g[s][i];
        adam_element(theta + i, gi, m + i, v + i, beta1, beta2, step_size, eps);
    }
}

void iwae_adam_f64(double *theta, const double *g, double *m, double *v, long n,
                   double beta1, double beta2, double step_size, double eps) {
    for (long i = 0; i < n; i++) adam_element(theta + i, g[i], m + i, v + i, beta1, beta2, step_size, eps);
}

// oneDNN (Debian's libdnnl-dev, OpenMP runtime): its BLAS-like sgemm and the
// version; only IWAELinearAlgebra imports this module.
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_version.h>

// libgomp, which oneDNN runs its threads on. The thread count is a per-thread
// setting: each thread that calls oneDNN sets its own.
int omp_get_max_threads(void);
void omp_set_num_threads(int);

// libgomp's entry for a parallel region (what `#pragma omp parallel` calls):
// runs fn(data) on a team of `threads`, the calling thread included.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned threads, unsigned flags);

static void iwae_omp_set_flush(void *unused) {
    (void)unused;
    unsigned csr;
    __asm__ volatile("stmxcsr %0" : "=m"(csr));
    csr |= 0x8040u;   // flush-to-zero and denormals-are-zero
    __asm__ volatile("ldmxcsr %0" : : "m"(csr));
}

/// dnnl_sgemm (row-major) on `threads` OpenMP threads of the calling thread.
/// The team's threads are libgomp's, kept from call to call with the
/// floating-point mode they were made with: before a team size is first
/// used, each of its threads is set to flush subnormals (the calling
/// thread's own mode is left as it was).
static inline dnnl_status_t iwae_dnnl_sgemm(int threads, char transa, char transb, long m, long n, long k, float alpha,
                                           const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    static __thread int flushed_team = 1;
    if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    if (threads > flushed_team) {
        unsigned csr;
        __asm__ volatile("stmxcsr %0" : "=m"(csr));
        GOMP_parallel(iwae_omp_set_flush, 0, (unsigned)threads, 0);
        __asm__ volatile("ldmxcsr %0" : : "m"(csr));
        flushed_team = threads;
    }
    return dnnl_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// The engine's only door to BLAS and LAPACK: OpenBLAS's CBLAS and the
// reference LAPACKE (Debian builds OpenBLAS without LAPACKE, so both link).
#include <cblas.h>
#include <lapacke.h>

// OpenBLAS's thread pool (exported by its pthreads build, not declared in
// cblas.h): stops the pool, and starts it again from the calling thread,
// whose floating-point mode (MXCSR) the new threads inherit.
void blas_thread_shutdown_(void);
int blas_thread_init(void);

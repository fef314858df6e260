// The engine's only door to BLAS and LAPACK: OpenBLAS's CBLAS and the
// reference LAPACKE (Debian builds OpenBLAS without LAPACKE, so both link).
#include <cblas.h>
#include <lapacke.h>

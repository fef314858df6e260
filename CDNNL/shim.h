// oneDNN (Debian's libdnnl-dev, OpenMP runtime): its matmul primitive in
// fp32 and bf16, and the version; only IWAELinearAlgebra imports this module.
//
// Not its BLAS-like dnnl_sgemm: in oneDNN 2.6.3 a signal handled while
// dnnl_sgemm runs corrupts the heap (20000 calls at the engine's shapes
// under a SIGINT every 0.5 ms: 3 crashes in 3 runs; the matmul primitive:
// none), and a user's Ctrl-C during `iwae train` crashed about one run in four.
#include <stdint.h>
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

/// Prepares `threads` OpenMP threads of the calling thread for oneDNN.
/// The team's threads are libgomp's, kept from call to call with the
/// floating-point mode they were made with: before a team size is first
/// used, each of its threads is set to flush subnormals (the calling
/// thread's own mode is left as it was).
static inline void iwae_omp_prepare(int threads) {
    static __thread int flushed_team = 1;
    if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    if (threads > flushed_team) {
        unsigned csr;
        __asm__ volatile("stmxcsr %0" : "=m"(csr));
        GOMP_parallel(iwae_omp_set_flush, 0, (unsigned)threads, 0);
        __asm__ volatile("ldmxcsr %0" : : "m"(csr));
        flushed_team = threads;
    }
}

/// One matmul primitive of oneDNN with its three memory objects, for one
/// shape and operand type: C (m, n, fp32, row stride ldc) ← alpha·op(A)
/// op(B) + beta·C with A and B of `type` (fp32, or bfloat16 bit patterns;
/// row strides lda, ldb).
typedef struct {
    long m, n, k, lda, ldb, ldc;
    char transa, transb;
    float alpha, beta;
    dnnl_data_type_t type;
    dnnl_primitive_t primitive;
    dnnl_memory_t a, b, c;
} iwae_matmul;

enum { iwae_matmul_cache_size = 64 };

/// Creates the primitive of `e`'s shape; returns oneDNN's status
/// (dnnl_unimplemented on a CPU without bf16 support, for bf16).
static inline dnnl_status_t iwae_matmul_create(iwae_matmul *e, dnnl_engine_t engine) {
    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dims_t a_dims = {e->m, e->k}, b_dims = {e->k, e->n}, c_dims = {e->m, e->n};
    dnnl_dims_t a_strides = {e->transa == 'N' ? e->lda : 1, e->transa == 'N' ? 1 : e->lda};
    dnnl_dims_t b_strides = {e->transb == 'N' ? e->ldb : 1, e->transb == 'N' ? 1 : e->ldb};
    dnnl_dims_t c_strides = {e->ldc, 1};
    dnnl_status_t s;
    if ((s = dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, e->type, a_strides)) != dnnl_success) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, e->type, b_strides)) != dnnl_success) return s;
    if ((s = dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides)) != dnnl_success) return s;
    dnnl_matmul_desc_t desc;
    if ((s = dnnl_matmul_desc_init(&desc, &a_md, &b_md, 0, &c_md)) != dnnl_success) return s;
    dnnl_primitive_attr_t attr = 0;
    dnnl_post_ops_t ops = 0;
    if ((s = dnnl_primitive_attr_create(&attr)) != dnnl_success) return s;
    if (e->alpha != 1 && (s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &e->alpha)) != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return s;
    }
    if (e->beta != 0) {
        if ((s = dnnl_post_ops_create(&ops)) == dnnl_success && (s = dnnl_post_ops_append_sum(ops, e->beta)) == dnnl_success)
            s = dnnl_primitive_attr_set_post_ops(attr, ops);
        if (ops) dnnl_post_ops_destroy(ops);
        if (s != dnnl_success) { dnnl_primitive_attr_destroy(attr); return s; }
    }
    dnnl_primitive_desc_t pd = 0;
    s = dnnl_primitive_desc_create(&pd, &desc, attr, engine, 0);
    dnnl_primitive_attr_destroy(attr);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_create(&e->primitive, pd);
    dnnl_primitive_desc_destroy(pd);
    if (s != dnnl_success) { e->primitive = 0; return s; }
    if ((s = dnnl_memory_create(&e->a, &a_md, engine, DNNL_MEMORY_NONE)) != dnnl_success) return s;
    if ((s = dnnl_memory_create(&e->b, &b_md, engine, DNNL_MEMORY_NONE)) != dnnl_success) return s;
    return dnnl_memory_create(&e->c, &c_md, engine, DNNL_MEMORY_NONE);
}

/// C ← alpha·op(A)·op(B) + beta·C by oneDNN's matmul primitive on
/// `threads` OpenMP threads of the calling thread: A and B of `type`
/// (fp32, or bfloat16 bit patterns as `iwae_to_bf16` writes them), C and
/// the sums fp32. Each calling thread keeps its own engine, stream and
/// primitives (one per shape and type, the last 64), so that concurrent
/// workers share nothing. Returns dnnl_unimplemented where oneDNN has no
/// such matmul for this CPU.
static inline dnnl_status_t iwae_dnnl_matmul(dnnl_data_type_t type, int threads, char transa, char transb, long m, long n,
                                            long k, float alpha, const void *a, long lda, const void *b, long ldb,
                                            float beta, float *c, long ldc) {
    static __thread dnnl_engine_t engine = 0;
    static __thread dnnl_stream_t stream = 0;
    static __thread iwae_matmul cache[iwae_matmul_cache_size];
    static __thread int cached = 0, next = 0;
    dnnl_status_t s;
    if (!engine) {
        if ((s = dnnl_engine_create(&engine, dnnl_cpu, 0)) != dnnl_success) { engine = 0; return s; }
        if ((s = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags)) != dnnl_success) { stream = 0; return s; }
    }
    iwae_matmul *e = 0;
    for (int i = 0; i < cached; i++) {
        iwae_matmul *x = &cache[i];
        if (x->m == m && x->n == n && x->k == k && x->lda == lda && x->ldb == ldb && x->ldc == ldc &&
            x->transa == transa && x->transb == transb && x->alpha == alpha && x->beta == beta && x->type == type) { e = x; break; }
    }
    if (!e) {
        e = &cache[next];
        if (next < cached) {   // evict the oldest
            if (e->primitive) dnnl_primitive_destroy(e->primitive);
            if (e->a) dnnl_memory_destroy(e->a);
            if (e->b) dnnl_memory_destroy(e->b);
            if (e->c) dnnl_memory_destroy(e->c);
        }
        iwae_matmul fresh = {m, n, k, lda, ldb, ldc, transa, transb, alpha, beta, type, 0, 0, 0, 0};
        *e = fresh;
        s = iwae_matmul_create(e, engine);
        if (s != dnnl_success) {
            if (e->primitive) dnnl_primitive_destroy(e->primitive);
            if (e->a) dnnl_memory_destroy(e->a);
            if (e->b) dnnl_memory_destroy(e->b);
            if (e->c) dnnl_memory_destroy(e->c);
            e->m = -1;   // matches no shape; its slot is reused
            e->primitive = 0;
            e->a = e->b = e->c = 0;
            return s;
        }
        if (cached < iwae_matmul_cache_size) cached++;
        next = (next + 1) % iwae_matmul_cache_size;
    }
    iwae_omp_prepare(threads);
    if ((s = dnnl_memory_set_data_handle(e->a, (void *)a)) != dnnl_success) return s;
    if ((s = dnnl_memory_set_data_handle(e->b, (void *)b)) != dnnl_success) return s;
    if ((s = dnnl_memory_set_data_handle(e->c, c)) != dnnl_success) return s;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}};
    if ((s = dnnl_primitive_execute(e->primitive, stream, 3, args)) != dnnl_success) return s;
    return dnnl_stream_wait(stream);
}

/// `iwae_dnnl_matmul` in fp32.
static inline dnnl_status_t iwae_dnnl_sgemm(int threads, char transa, char transb, long m, long n, long k, float alpha,
                                           const float *a, long lda, const float *b, long ldb, float beta, float *c, long ldc) {
    return iwae_dnnl_matmul(dnnl_f32, threads, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/// `iwae_dnnl_matmul` on bfloat16 bit patterns, α = 1.
static inline dnnl_status_t iwae_dnnl_bf16_gemm(int threads, char transa, char transb, long m, long n, long k,
                                               const uint16_t *a, long lda, const uint16_t *b, long ldb,
                                               float beta, float *c, long ldc) {
    return iwae_dnnl_matmul(dnnl_bf16, threads, transa, transb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

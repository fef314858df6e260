// What the CPU offers, the floating-point mode of a computing thread, and the
// hardware's own fp32 peak. CPUID and XGETBV are read directly: a feature
// counts only when the operating system also saves its register state.
#include "CIWAEKernels.h"
#include <cpuid.h>
#include <immintrin.h>

static unsigned long long xcr0(void) {
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
}

iwae_cpu_features iwae_cpu_probe(void) {
    iwae_cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
    unsigned maximum = a;
    f.vendor = (b == 0x756e6547u) ? 1 : (b == 0x68747541u) ? 2 : 0;   // "Genu", "Auth"
    __get_cpuid(1, &a, &b, &c, &d);
    unsigned family = (a >> 8) & 0xf, model = (a >> 4) & 0xf;
    if (family == 0xf) family += (a >> 20) & 0xff;
    if (family == 0x6 || family >= 0xf) model += ((a >> 16) & 0xf) << 4;
    f.family = (int)family;
    f.model = (int)model;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    unsigned long long xcr = osxsave ? xcr0() : 0;
    int ymm = (xcr & 0x6) == 0x6, zmm = (xcr & 0xe6) == 0xe6, tiles = (xcr & 0x60000) == 0x60000;
    if (maximum < 7) return f;
    __cpuid_count(7, 0, a, b, c, d);
    unsigned leaf7b = b, leaf7d = d;
    f.avx2_fma = avx && fma && ymm && ((leaf7b >> 5) & 1);
    // F, DQ, CD, BW, VL: the set OpenBLAS's SkylakeX kernels and the engine's kernels use.
    unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
    f.avx512 = f.avx2_fma && zmm && (leaf7b & avx512) == avx512;
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = f.avx512 && ((a >> 5) & 1);
    f.amx_bf16 = tiles && ((leaf7d >> 22) & 1) && ((leaf7d >> 24) & 1);
    return f;
}

// MXCSR bit 15 is flush-to-zero (subnormal results become 0), bit 6 is
// denormals-are-zero (subnormal inputs read as 0).
#define IWAE_MXCSR_FTZ_DAZ 0x8040u

unsigned iwae_flush_subnormals_begin(void) {
    unsigned previous = _mm_getcsr();
    _mm_setcsr(previous | IWAE_MXCSR_FTZ_DAZ);
    return previous;
}

void iwae_flush_subnormals_end(unsigned previous) { _mm_setcsr(previous); }

int iwae_flushes_subnormals(void) { return (_mm_getcsr() & IWAE_MXCSR_FTZ_DAZ) == IWAE_MXCSR_FTZ_DAZ; }

// The peak loop: `chains` independent multiply-adds per round, each its own
// accumulator, so that the FMA units never wait for a result (latency 4 ×
// 2 units needs 8 in flight; 12 leaves room). The sum is returned so that no
// compiler can drop the work.
#define PEAK_CHAINS 12

__attribute__((target("avx512f")))
static float peak_avx512(long rounds) {
    __m512 acc[PEAK_CHAINS];
    const __m512 x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], x, y);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]));
    }
    __m512 s = acc[0];
    for (int i = 1; i < PEAK_CHAINS; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma")))
static float peak_avx2(long rounds) {
    __m256 acc[PEAK_CHAINS];
    const __m256 x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], x, y);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
    }
    __m256 s = acc[0];
    for (int i = 1; i < PEAK_CHAINS; i++) s = _mm256_add_ps(s, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] + lanes[4] + lanes[5] + lanes[6] + lanes[7];
}

static float peak_sse(long rounds) {
    __m128 acc[PEAK_CHAINS];
    const __m128 x = _mm_set1_ps(0.999999f), y = _mm_set1_ps(1e-7f);
    for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm_set1_ps((float)i);
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < PEAK_CHAINS; i++) acc[i] = _mm_add_ps(_mm_mul_ps(acc[i], x), y);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
    }
    __m128 s = acc[0];
    for (int i = 1; i < PEAK_CHAINS; i++) s = _mm_add_ps(s, acc[i]);
    float lanes[4];
    _mm_storeu_ps(lanes, s);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

double iwae_fma_peak_loop(long rounds, int width, float *sink) {
    switch (width) {
    case 512: *sink = peak_avx512(rounds); return 2.0 * 16 * PEAK_CHAINS * (double)rounds;
    case 256: *sink = peak_avx2(rounds); return 2.0 * 8 * PEAK_CHAINS * (double)rounds;
    default: *sink = peak_sse(rounds); return 2.0 * 4 * PEAK_CHAINS * (double)rounds;
    }
}

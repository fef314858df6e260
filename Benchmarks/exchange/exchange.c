// The cost of the exchange between two cores that a data-parallel training
// step needs, on this machine, now: two threads (one per core) each write a
// gradient-sized buffer (425,284 floats, the 784-200-200-50 model's
// parameters), and, after a barrier as in the step, each runs an Adam-like
// update over its half of the parameters that reads both buffers -- half of
// what it reads was written by the other core, and so were half of the
// weights its next gradient reads ("exchange") -- against the same work
// with every thread reading only what it wrote itself ("local"). The two alternate,
// half a second each, and every second prints both and their ratio: on a
// machine whose two cores share a cache the ratio is small; where the
// hypervisor places them apart it is large, and it can change from one
// second to the next. Not part of CI.
//
//     cc -O3 -march=native -fno-math-errno -pthread Benchmarks/exchange/exchange.c -o /tmp/exchange -lm && /tmp/exchange 10
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { N = 425284 };
static float *theta, *m, *v, *gradient[2];
static atomic_int job, finished;
static int exchange;   // which pattern the current jobs run

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/// Thread `who`'s part of a step's phase: 1, its gradient (all of it with
/// exchange, else only its half); 2, Adam over its half from both gradients.
static void phase(int who, int which) {
    long lo = who ? N / 2 : 0, hi = who ? N : N / 2;
    if (which == 1) {
        float *mine = gradient[who];
        for (long i = exchange ? 0 : lo; i < (exchange ? N : hi); i++) mine[i] = 0.5f * theta[i] + 1e-3f;
        if (!exchange) for (long i = lo; i < hi; i++) gradient[1 - who][i] = 0.25f * theta[i];
        return;
    }
    for (long i = lo; i < hi; i++) {
        float g = gradient[0][i] + gradient[1][i];
        m[i] = 0.9f * m[i] + 0.1f * g;
        v[i] = 0.999f * v[i] + 0.001f * g * g;
        theta[i] -= 1e-4f * m[i] / (sqrtf(v[i]) + 1e-4f);
    }
}

/// The second thread: each job published (odd: phase 1, even: phase 2), run, then counted.
static void *helper(void *unused) {
    (void)unused;
    for (int seen = 0;;) {
        int j;
        while ((j = atomic_load(&job)) == seen) {}
        seen = j;
        phase(1, j % 2 ? 1 : 2);
        atomic_fetch_add(&finished, 1);
    }
    return 0;
}

/// Runs one phase on both threads and waits for both (the step's barrier).
static void both(int which) {
    atomic_store(&finished, 0);
    atomic_fetch_add(&job, 1);
    phase(0, which);
    while (atomic_load(&finished) == 0) {}
}

/// Microseconds per step (both phases) of the pattern, over `seconds`.
static double run(int pattern, double seconds) {
    exchange = pattern;
    long steps = 0;
    double start = now();
    while (now() - start < seconds) {
        both(1);
        both(2);
        steps++;
    }
    return (now() - start) / steps * 1e6;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    theta = calloc(N, 4); m = calloc(N, 4); v = calloc(N, 4); gradient[0] = calloc(N, 4); gradient[1] = calloc(N, 4);
    if (!theta || !m || !v || !gradient[0] || !gradient[1]) { fprintf(stderr, "exchange: out of memory\n"); return 1; }
    pthread_t thread;
    if (pthread_create(&thread, 0, helper, 0) != 0) { fprintf(stderr, "exchange: no second thread\n"); return 1; }
    printf("second  local us/step  exchange us/step  exchange/local\n");
    for (int s = 1; s <= seconds; s++) {
        double local = run(0, 0.5), shared = run(1, 0.5);
        printf("%6d  %13.1f  %16.1f  %14.2f\n", s, local, shared, shared / local);
        fflush(stdout);
    }
    return 0;
}

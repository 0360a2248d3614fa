/* Does the nested gradient's math get cheaper if sin and cos of one value are NOT paired?

    gcc -O2 -mavx2 -mfma benchmarks/sincos_structure.c -o /tmp/sincos_structure -lmvec -lm
    /tmp/sincos_structure

nested30 is cos(tan(sin(x))) nested 30 levels. Only the forward chain is dependent (sin -> tan
-> cos -> sin ..., 90 calls); the derivative factors cos(x), 1 + tan^2 and -sin(t) depend only
on forward values. Part 1 times the scalar gradient (the LLVM backend's scalar entry) in four
structures:

  a  what the backend emits: sincos(x), tan(s), sincos(t) per level (llvm.sincos pairing);
  b  the forward chain with plain sin/tan/cos first, then independent scalar cos(x), sin(t);
  b2 interleaved: sin(x), cos(x), tan, cos(t), sin(t) as five separate calls per level (called
     through volatile pointers: gcc would pair them into sincos itself);
  c  the forward chain first, then cos(x) and sin(t) of all 30 levels in 8 AVX2 libmvec calls.

Part 2 times the vector loop question: per point, separate _ZGVdN4v_sin + _ZGVdN4v_cos against
libmvec's one vector sincos (_ZGVdN4vvv_sincos, results through a vector of pointers). Built with
-mavx512f as well, it times the 8-lane variants the LLVM kernels call on an AVX-512 machine:

    gcc -O2 -mavx512f -mfma benchmarks/sincos_structure.c -o /tmp/sincos_structure -lmvec -lm

Rounds are interleaved; each figure is the minimum and median over rounds (the machine is shared).
*/
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define DEPTH 30
#define ROUNDS 31

__m256d _ZGVdN4v_cos(__m256d);
__m256d _ZGVdN4v_sin(__m256d);
void _ZGVdN4vvv_sincos(__m256d, __m256i, __m256i);
#ifdef __AVX512F__
__m512d _ZGVeN8v_cos(__m512d);
__m512d _ZGVeN8v_sin(__m512d);
void _ZGVeN8vvv_sincos(__m512d, __m512i, __m512i);
#endif

static double (*volatile plain_sin)(double) = sin;
static double (*volatile plain_cos)(double) = cos;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

__attribute__((noinline)) static double paired(double x) {
    double derivative = 1;
    for (int i = 0; i < DEPTH; i++) {
        double s, c, st, ct;
        sincos(x, &s, &c);
        double t = tan(s);
        sincos(t, &st, &ct);
        derivative *= c * (1 + t * t) * -st;
        x = ct;
    }
    return derivative;
}

__attribute__((noinline)) static double forward_then_scalar(double x) {
    double xs[DEPTH], ts[DEPTH], derivative = 1;
    for (int i = 0; i < DEPTH; i++) {
        xs[i] = x;
        ts[i] = tan(sin(x));
        x = cos(ts[i]);
    }
    for (int i = 0; i < DEPTH; i++)
        derivative *= cos(xs[i]) * (1 + ts[i] * ts[i]) * -sin(ts[i]);
    return derivative;
}

__attribute__((noinline)) static double interleaved(double x) {
    double derivative = 1;
    for (int i = 0; i < DEPTH; i++) {
        double c = plain_cos(x), t = tan(plain_sin(x));
        derivative *= c * (1 + t * t) * -plain_sin(t);
        x = plain_cos(t);
    }
    return derivative;
}

__attribute__((noinline)) static double forward_then_vector(double x) {
    double xs[32] __attribute__((aligned(32))) = {0}, ts[32] __attribute__((aligned(32))) = {0};
    for (int i = 0; i < DEPTH; i++) {
        xs[i] = x;
        ts[i] = tan(sin(x));
        x = cos(ts[i]);
    }
    __m256d product = _mm256_set1_pd(1.0), one = _mm256_set1_pd(1.0);
    for (int i = 0; i < 32; i += 4) {
        __m256d t = _mm256_load_pd(ts + i);
        __m256d factor = _mm256_mul_pd(_ZGVdN4v_cos(_mm256_load_pd(xs + i)),
                                       _mm256_mul_pd(_mm256_fmadd_pd(t, t, one), _ZGVdN4v_sin(t)));
        if (i + 4 > DEPTH) factor = _mm256_blend_pd(factor, _mm256_set1_pd(-1.0), 0xC);  /* padding */
        product = _mm256_mul_pd(product, factor);
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, product);
    return lanes[0] * lanes[1] * lanes[2] * lanes[3];  /* 30 factors of -sin: the sign is + */
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *name, double *samples) {
    qsort(samples, ROUNDS, sizeof *samples, by_value);
    printf("  %-40s min %7.1f  median %7.1f\n", name, samples[0], samples[ROUNDS / 2]);
}

#define POINTS 100000
static double xs[POINTS] __attribute__((aligned(64))), sines[POINTS] __attribute__((aligned(64))),
    cosines[POINTS] __attribute__((aligned(64)));

static double separate_vector_calls(void) {
    double start = now_ns();
    for (int i = 0; i < POINTS; i += 4) {
        __m256d v = _mm256_load_pd(xs + i);
        _mm256_store_pd(sines + i, _ZGVdN4v_sin(v));
        _mm256_store_pd(cosines + i, _ZGVdN4v_cos(v));
    }
    return (now_ns() - start) / POINTS;
}

static double one_vector_sincos(void) {
    double start = now_ns();
    __m256i lanes = _mm256_setr_epi64x(0, 8, 16, 24);
    for (int i = 0; i < POINTS; i += 4) {
        __m256i to_sines = _mm256_add_epi64(_mm256_set1_epi64x((long long)(sines + i)), lanes);
        __m256i to_cosines = _mm256_add_epi64(_mm256_set1_epi64x((long long)(cosines + i)), lanes);
        _ZGVdN4vvv_sincos(_mm256_load_pd(xs + i), to_sines, to_cosines);
    }
    return (now_ns() - start) / POINTS;
}

#ifdef __AVX512F__
#define VECTOR_CASES 4
static double separate_vector_calls_512(void) {
    double start = now_ns();
    for (int i = 0; i < POINTS; i += 8) {
        __m512d v = _mm512_load_pd(xs + i);
        _mm512_store_pd(sines + i, _ZGVeN8v_sin(v));
        _mm512_store_pd(cosines + i, _ZGVeN8v_cos(v));
    }
    return (now_ns() - start) / POINTS;
}

static double one_vector_sincos_512(void) {
    double start = now_ns();
    __m512i lanes = _mm512_setr_epi64(0, 8, 16, 24, 32, 40, 48, 56);
    for (int i = 0; i < POINTS; i += 8) {
        __m512i to_sines = _mm512_add_epi64(_mm512_set1_epi64((long long)(sines + i)), lanes);
        __m512i to_cosines = _mm512_add_epi64(_mm512_set1_epi64((long long)(cosines + i)), lanes);
        _ZGVeN8vvv_sincos(_mm512_load_pd(xs + i), to_sines, to_cosines);
    }
    return (now_ns() - start) / POINTS;
}
#else
#define VECTOR_CASES 2
#endif

int main(void) {
    double (*structures[])(double) = {paired, forward_then_scalar, interleaved, forward_then_vector};
    const char *names[] = {"a paired sincos (today)", "b forward, then scalar cos/sin",
                           "b2 five separate calls per level", "c forward, then 8 vector calls"};
    double scalar[4][ROUNDS], vector[VECTOR_CASES][ROUNDS];
    for (int k = 0; k < 4; k++) printf("%s: %.17g\n", names[k], structures[k](4.2));
    for (int i = 0; i < POINTS; i++) xs[i] = 0.1 + i * 2.9 / POINTS;
    for (int round = 0; round < ROUNDS; round++) {
        for (int k = 0; k < 4; k++) {
            volatile double sink = 0;
            double start = now_ns();
            for (int call = 0; call < 20000; call++) sink += structures[k](4.2 + (call & 1) * 1e-9);
            scalar[k][round] = (now_ns() - start) / 20000;
        }
        vector[0][round] = separate_vector_calls();
        vector[1][round] = one_vector_sincos();
#ifdef __AVX512F__
        vector[2][round] = separate_vector_calls_512();
        vector[3][round] = one_vector_sincos_512();
#endif
    }
    printf("\n1. scalar gradient of nested30 at 4.2, ns per call\n");
    for (int k = 0; k < 4; k++) report(names[k], scalar[k]);
    printf("\n2. sin and cos of %d points, ns per point\n", POINTS);
    report("_ZGVdN4v_sin + _ZGVdN4v_cos", vector[0]);
    report("_ZGVdN4vvv_sincos", vector[1]);
#ifdef __AVX512F__
    report("_ZGVeN8v_sin + _ZGVeN8v_cos", vector[2]);
    report("_ZGVeN8vvv_sincos", vector[3]);
#endif
    return 0;
}

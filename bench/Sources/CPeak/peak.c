/* cpeak: see include/cpeak.h. */
#include "cpeak.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* Twelve chains: more than latency × throughput of the FMA units of current cores (4 cycles × 2 a cycle), and the
 * registers they need (12 accumulators, 2 operands) fit in the 16 of AVX2. */
#define CHAINS 12

__attribute__((target("avx512f,fma"))) static double
fma512(long const rounds) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i)
        acc[i] = _mm512_set1_ps((float)i);
    __m512 const a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (long r = 0; r < rounds; ++r) {
        for (int i = 0; i < CHAINS; ++i)
            acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        /* Keeps the compiler from folding the rounds. */
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512 sum = acc[0];
    for (int i = 1; i < CHAINS; ++i)
        sum = _mm512_add_ps(sum, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
    return 2.0 * 16 * CHAINS * (double)rounds;
}

__attribute__((target("avx2,fma"))) static double
fma256(long const rounds) {
    __m256 acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i)
        acc[i] = _mm256_set1_ps((float)i);
    __m256 const a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (long r = 0; r < rounds; ++r) {
        for (int i = 0; i < CHAINS; ++i)
            acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]), "+x"(acc[4]), "+x"(acc[5]),
                         "+x"(acc[6]), "+x"(acc[7]), "+x"(acc[8]), "+x"(acc[9]), "+x"(acc[10]), "+x"(acc[11]));
    }
    __m256 sum = acc[0];
    for (int i = 1; i < CHAINS; ++i)
        sum = _mm256_add_ps(sum, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    volatile float sink = lanes[0];
    (void)sink;
    return 2.0 * 8 * CHAINS * (double)rounds;
}

__attribute__((target("avx512f,avx512bf16"))) static double
bf16dot512(long const rounds) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i)
        acc[i] = _mm512_set1_ps((float)i);
    __m512bh const a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
    __m512bh const b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f), _mm512_set1_ps(-1e-7f));
    for (long r = 0; r < rounds; ++r) {
        for (int i = 0; i < CHAINS; ++i)
            acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512 sum = acc[0];
    for (int i = 1; i < CHAINS; ++i)
        sum = _mm512_add_ps(sum, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
    return 2.0 * 32 * CHAINS * (double)rounds;
}

__attribute__((target("avx512f,avx512fp16"))) static double
fp16fma512(long const rounds) {
    __m512h acc[CHAINS];
    for (int i = 0; i < CHAINS; ++i)
        acc[i] = _mm512_set1_ph((_Float16)(0.125f * (float)i));
    __m512h const a = _mm512_set1_ph((_Float16)0.999f), b = _mm512_set1_ph((_Float16)1e-4f);
    for (long r = 0; r < rounds; ++r) {
        for (int i = 0; i < CHAINS; ++i)
            acc[i] = _mm512_fmadd_ph(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]), "+v"(acc[4]), "+v"(acc[5]),
                         "+v"(acc[6]), "+v"(acc[7]), "+v"(acc[8]), "+v"(acc[9]), "+v"(acc[10]), "+v"(acc[11]));
    }
    __m512h sum = acc[0];
    for (int i = 1; i < CHAINS; ++i)
        sum = _mm512_add_ph(sum, acc[i]);
    volatile float sink = (float)_mm512_reduce_add_ph(sum);
    (void)sink;
    return 2.0 * 32 * CHAINS * (double)rounds;
}

double
cpeak_fma512(long const rounds) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? fma512(rounds) : 0;
}

double
cpeak_fma256(long const rounds) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? fma256(rounds) : 0;
}

double
cpeak_bf16dot512(long const rounds) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") ? bf16dot512(rounds) : 0;
}

double
cpeak_fp16fma512(long const rounds) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512fp16") ? fp16fma512(rounds) : 0;
}

#else

double cpeak_fma512(long const rounds) { (void)rounds; return 0; }
double cpeak_fma256(long const rounds) { (void)rounds; return 0; }
double cpeak_bf16dot512(long const rounds) { (void)rounds; return 0; }
double cpeak_fp16fma512(long const rounds) { (void)rounds; return 0; }

#endif

/*
 * 2×2 pooling, one row at a time (see cgemm.h). The forward max pooling records the choice of each window, eight
 * windows at a time, in ymm registers on the AVX2 and AVX-512 paths, in two SSE registers on the portable one; the
 * backward pass sends each window's gradient where the choices and the ReLU mask say, four windows at a time in ymm
 * registers, one by one on the portable path. The same operations everywhere, so every path gives the same bits.
 */
#include "cgemm.h"

#include <string.h>

#pragma clang diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wpsabi"

#define INLINE static inline __attribute__((always_inline))

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef int32_t i8 __attribute__((vector_size(32)));

/* Where `take` is set, `candidate` and its index `index` replace best and winner. */
INLINE void
challenge(v8 const candidate, int32_t const index, v8 * const best, i8 * const winner) {
    i8 const take = candidate > *best;
    i8 candidateBits, bestBits;
    memcpy(&candidateBits, &candidate, sizeof candidateBits);
    memcpy(&bestBits, best, sizeof bestBits);
    bestBits = (candidateBits & take) | (bestBits & ~take);
    memcpy(best, &bestBits, sizeof bestBits);
    *winner = ((i8){index, index, index, index, index, index, index, index} & take) | (*winner & ~take);
}

/* One row of windows: the window over top[2x], top[2x + 1], bottom[2x], bottom[2x + 1] gives out[x], its largest value
 * (the first of equal ones, in that order), and the number of that value, 0 … 3, in bits 2(x mod 4) of choices[x / 4]. */
INLINE void
maxPoolRow(const float * const top, const float * const bottom, int const outputs, float * const out,
           uint8_t * const choices) {
    int x = 0;
    for (; x + 8 <= outputs; x += 8) {
        v8 const t0 = *(const v8u *)(top + 2 * x), t1 = *(const v8u *)(top + 2 * x + 8);
        v8 const b0 = *(const v8u *)(bottom + 2 * x), b1 = *(const v8u *)(bottom + 2 * x + 8);
        v8 best = __builtin_shufflevector(t0, t1, 0, 2, 4, 6, 8, 10, 12, 14);
        i8 winner = {0};
        challenge(__builtin_shufflevector(t0, t1, 1, 3, 5, 7, 9, 11, 13, 15), 1, &best, &winner);
        challenge(__builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14), 2, &best, &winner);
        challenge(__builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15), 3, &best, &winner);
        *(v8u *)(out + x) = best;
        i8 const placed = winner << (i8){0, 2, 4, 6, 0, 2, 4, 6};
        i8 const pairs = placed | __builtin_shufflevector(placed, placed, 1, 0, 3, 2, 5, 4, 7, 6);
        i8 const quads = pairs | __builtin_shufflevector(pairs, pairs, 2, 3, 0, 1, 6, 7, 4, 5);
        choices[x / 4] = (uint8_t)quads[0];
        choices[x / 4 + 1] = (uint8_t)quads[4];
    }
    uint8_t packed = 0;
    for (; x < outputs; ++x) {
        float best = top[2 * x];
        int winner = 0;
        if (top[2 * x + 1] > best) { best = top[2 * x + 1]; winner = 1; }
        if (bottom[2 * x] > best) { best = bottom[2 * x]; winner = 2; }
        if (bottom[2 * x + 1] > best) { best = bottom[2 * x + 1]; winner = 3; }
        out[x] = best;
        packed |= (uint8_t)(winner << ((x & 3) * 2));
        if ((x & 3) == 3 || x == outputs - 1) {
            choices[x / 4] = packed;
            packed = 0;
        }
    }
}

static void
maxPoolRowPortable(const float * const top, const float * const bottom, int const outputs, float * const out,
                   uint8_t * const choices) {
    maxPoolRow(top, bottom, outputs, out, choices);
}

/* The gradient of input value x (one of 2·windows) on an input row of a window's top (bottom = 0) or bottom
 * (bottom = 1) half: its window's gradient (a quarter of it without choices) where the window chose it, or always
 * without choices, and where its mask bit is set, or always without a mask; else zero. */
INLINE float
poolGradient(const float * const gradient, int const x, const uint8_t * const choices, int const bottom,
             const uint8_t * const mask) {
    int const window = x >> 1;
    int const chosen = choices == NULL || ((choices[window >> 2] >> ((window & 3) * 2)) & 3) == 2 * bottom + (x & 1);
    int const passes = mask == NULL || (mask[x >> 3] >> (x & 7)) & 1;
    return chosen && passes ? (choices == NULL ? 0.25f * gradient[window] : gradient[window]) : 0;
}

static void
poolBackwardRowPortable(const float * const gradient, int const windows, const uint8_t * const choices,
                        int const bottom, const uint8_t * const mask, float * const out) {
    for (int x = 0; x < 2 * windows; ++x)
        out[x] = poolGradient(gradient, x, choices, bottom, mask);
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static AVX2 void
poolBackwardRowAVX2(const float * const gradient, int const windows, const uint8_t * const choices,
                    int const bottom, const uint8_t * const mask, float * const out) {
    __m256i const pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    __m256i const shifts = _mm256_setr_epi32(0, 0, 2, 2, 4, 4, 6, 6);
    __m256i const wanted = _mm256_add_epi32(_mm256_set1_epi32(2 * bottom), _mm256_setr_epi32(0, 1, 0, 1, 0, 1, 0, 1));
    __m256i const laneBits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256 const quarter = _mm256_set1_ps(0.25f);
    int w = 0;
    for (; w + 4 <= windows; w += 4) {
        /* Four windows: one byte of choices, and the eight values of one mask byte (w is a multiple of 4). */
        __m256 v = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(gradient + w)), pairs);
        __m256i keep = _mm256_set1_epi32(-1);
        if (choices) {
            __m256i const winners = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(choices[w >> 2]), shifts),
                                                     _mm256_set1_epi32(3));
            keep = _mm256_cmpeq_epi32(winners, wanted);
        } else {
            v = _mm256_mul_ps(v, quarter);
        }
        if (mask) {
            __m256i const bits = _mm256_and_si256(_mm256_set1_epi32(mask[w >> 2]), laneBits);
            keep = _mm256_and_si256(keep, _mm256_cmpeq_epi32(bits, laneBits));
        }
        _mm256_storeu_ps(out + 2 * w, _mm256_and_ps(v, _mm256_castsi256_ps(keep)));
    }
    for (int x = 2 * w; x < 2 * windows; ++x)
        out[x] = poolGradient(gradient, x, choices, bottom, mask);
}

static AVX2 void
maxPoolRowAVX2(const float * const top, const float * const bottom, int const outputs, float * const out,
               uint8_t * const choices) {
    maxPoolRow(top, bottom, outputs, out, choices);
}
#endif

void
cgemm_max_pool_row(const float * const top, const float * const bottom, int const outputs, float * const out,
                   uint8_t * const choices) {
#if defined(__x86_64__) || defined(__i386__)
    if (cgemm_selected() != CGEMM_PORTABLE) {
        maxPoolRowAVX2(top, bottom, outputs, out, choices);
        return;
    }
#endif
    maxPoolRowPortable(top, bottom, outputs, out, choices);
}

void
cgemm_pool_backward_row(const float * const gradient, int const windows, const uint8_t * const choices,
                        int const bottom, const uint8_t * const mask, float * const out) {
#if defined(__x86_64__) || defined(__i386__)
    if (cgemm_selected() != CGEMM_PORTABLE) {
        poolBackwardRowAVX2(gradient, windows, choices, bottom, mask, out);
        return;
    }
#endif
    poolBackwardRowPortable(gradient, windows, choices, bottom, mask, out);
}

/*
 * 2×2 max pooling of one row with the choice of each window recorded (see cgemm.h): eight windows at a time, in ymm
 * registers on the AVX2 and AVX-512 paths, in two SSE registers on the portable one; the same comparisons in the same
 * order everywhere, so every path gives the same bits.
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

#if defined(__x86_64__) || defined(__i386__)
static __attribute__((target("avx2"))) void
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

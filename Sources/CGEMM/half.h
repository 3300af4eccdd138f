/*
 * Half precision (IEEE binary16) in plain C, for the paths without its instructions: the rounding the hardware's
 * conversions do (to nearest, ties to even) and the way back. Shared by gemm.c and winograd.c.
 */
#ifndef CGEMM_HALF_H
#define CGEMM_HALF_H

#include <stdint.h>
#include <string.h>

/* The half-precision value nearest x (ties to even), as its bits; values past the largest finite one become infinities,
 * NaNs stay NaNs. */
static inline uint16_t
halfBits(float const x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    uint32_t const sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7FFFFFFFu;
    if (magnitude >= 0x7F800000u)
        return (uint16_t)(sign | 0x7C00u | (magnitude > 0x7F800000u ? 0x200u : 0));
    if (magnitude >= 0x477FF000u)  // at least 65520: rounds past 65504
        return (uint16_t)(sign | 0x7C00u);
    if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half, in units of 2^-24
        float absolute;
        memcpy(&absolute, &magnitude, sizeof absolute);
        return (uint16_t)(sign | (uint32_t)__builtin_rintf(absolute * 0x1p24f));
    }
    uint32_t const rest = magnitude & 0x1FFFu, kept = (magnitude - 0x38000000u) >> 13;
    uint32_t const up = rest > 0x1000u || (rest == 0x1000u && (kept & 1));
    return (uint16_t)(sign | (kept + up));
}

/* The float a half-precision value's bits stand for. */
static inline float
halfValue(uint16_t const h) {
    uint32_t const exponent = (h >> 10) & 0x1Fu, fraction = h & 0x3FFu;
    float const magnitude = exponent == 0 ? (float)fraction * 0x1p-24f
        : exponent == 31 ? (fraction ? __builtin_nanf("") : __builtin_inff())
        : __builtin_ldexpf(1 + (float)fraction * 0x1p-10f, (int)exponent - 15);
    return h & 0x8000u ? -magnitude : magnitude;
}

/* The float of value `index` of a word of two half-precision values: the low half for an even index, the high half for
 * an odd one. */
static inline float
halfOfPair(uint32_t const pair, int const index) {
    return halfValue((uint16_t)(index % 2 ? pair >> 16 : pair & 0xFFFFu));
}

#endif

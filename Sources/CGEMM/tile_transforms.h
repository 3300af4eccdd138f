/*
 * The arithmetic of Winograd's tile transforms (winograd.c) for vectors of one width: winograd.c includes this once for
 * each vector type it runs them on, with VECTOR that type (lane i holding tile i's value at one place) and NAMED(name)
 * the name of that type's function. Each lane is computed with the same operations in the same order whatever the
 * width, so every width gives the same bits. No include guard: it is meant to be read more than once.
 */

/* Bᵀ d of F(4×4, 3×3). */
INLINE void
NAMED(inputTransform)(VECTOR const d0, VECTOR const d1, VECTOR const d2, VECTOR const d3, VECTOR const d4,
                      VECTOR const d5, VECTOR out[6]) {
    VECTOR const d13 = d1 - d3, d24 = d4 - d2, s14 = d1 + d4, s23 = d2 + d3;
    out[0] = 2.0f * (d0 - d4) + 5.0f * d13;
    out[1] = 2.0f * s14 + 7.0f * s23;
    out[2] = 2.0f * (d4 - d1) + 3.0f * (d3 - d2);
    out[3] = d3 - d1 + 2.0f * d24;
    out[4] = 2.0f * (d3 - d1) + d24;
    out[5] = 2.0f * (d5 - d1) + 5.0f * d24;
}

/* Aᵀ m of F(4×4, 3×3). */
INLINE void
NAMED(outputTransform)(VECTOR const m0, VECTOR const m1, VECTOR const m2, VECTOR const m3, VECTOR const m4,
                       VECTOR const m5, VECTOR out[4]) {
    VECTOR const s12 = m1 + m2, d12 = m1 - m2;
    out[0] = m0 + s12 + m3 + m4;
    out[1] = d12 - 2.0f * m3 - 0.5f * m4;
    out[2] = s12 + 4.0f * m3 + 0.25f * m4;
    out[3] = d12 - 8.0f * m3 - 0.125f * m4 + m5;
}

/* Bᵀ d of F(6×6, 3×3). */
INLINE void
NAMED(inputTransform6)(const VECTOR d[8], VECTOR out[8]) {
    VECTOR const p = d[2] - 5.0f * d[4] + 4.0f * d[6], q = 2.0f * d[1] - 10.0f * d[3] + 8.0f * d[5];
    VECTOR const r = 8.0f * d[2] - 10.0f * d[4] + 2.0f * d[6], s = 4.0f * d[1] - 5.0f * d[3] + d[5];
    VECTOR const s26 = d[2] + d[6], s15 = d[1] + d[5];
    out[0] = 4.0f * (d[0] - d[6]) + 21.0f * (d[4] - d[2]);
    out[1] = 4.0f * (s15 + s26) - 17.0f * (d[3] + d[4]);
    out[2] = 4.0f * (s26 - s15) + 17.0f * (d[3] - d[4]);
    out[3] = p + q;
    out[4] = p - q;
    out[5] = r + s;
    out[6] = r - s;
    out[7] = 4.0f * (d[7] - d[1]) + 21.0f * (d[3] - d[5]);
}

/* Aᵀ m of F(6×6, 3×3). */
INLINE void
NAMED(outputTransform6)(const VECTOR m[8], VECTOR out[6]) {
    VECTOR const s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
    VECTOR const s56 = m[5] + m[6], d56 = m[5] - m[6];
    out[0] = m[0] + s12 + s34 + s56;
    out[1] = d12 + 2.0f * d34 + 0.5f * d56;
    out[2] = s12 + 4.0f * s34 + 0.25f * s56;
    out[3] = d12 + 8.0f * d34 + 0.125f * d56;
    out[4] = s12 + 16.0f * s34 + 0.0625f * s56;
    out[5] = d12 + 32.0f * d34 + 0.03125f * d56 + m[7];
}

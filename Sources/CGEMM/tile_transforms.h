/*
 * The arithmetic of Winograd's tile transforms (winograd.c) for vectors of one width: winograd.c includes this once for
 * each vector type it runs them on, with VECTOR that type (a lane holding one tile's value at one place), LANES its
 * lanes, NAMED(name) the name of that type's function, and GATHERED, LOADED and STORED how its vectors are read from
 * the split rows and moved through the staged tiles. Each lane is computed with the same operations in the same order
 * whatever the width, so every width gives the same bits. No include guard: it is meant to be read more than once,
 * and it undefines those names at its end for the next.
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

/* The first half of Bᵀ d B for the tiles from t: each of their input rows transformed along x, from splitRows' work
 * (and workHigh's, sixteen lanes wide) into tmp (36 · LANES floats). The lanes past tilesX hold the transforms of
 * zeros and the right edge, finite values whose products are never written out. */
INLINE void
NAMED(rowTransforms)(const float * const work, const float * const workHigh, int const qs, int const t,
                     float * const tmp) {
    for (int j = 0; j < 6; ++j) {
        int const q = j * 4 * qs + t;
        VECTOR v[6];
        NAMED(inputTransform)(GATHERED(q), GATHERED(q + qs), GATHERED(q + 2 * qs), GATHERED(q + 3 * qs),
                              GATHERED(q + 1), GATHERED(q + qs + 1), v);
        for (int i = 0; i < 6; ++i)
            STORED(v[i], tmp + (6 * j + i) * LANES);
    }
}

/* Column k of Bᵀ d B from rowTransforms' tmp: positions k + 6i in v[i]. */
INLINE void
NAMED(columnTransform)(const float * const tmp, int const k, VECTOR v[6]) {
    const float * const s = tmp + k * LANES;
    NAMED(inputTransform)(LOADED(s), LOADED(s + 6 * LANES), LOADED(s + 12 * LANES), LOADED(s + 18 * LANES),
                          LOADED(s + 24 * LANES), LOADED(s + 30 * LANES), v);
}

/* rowTransforms of F(6×6, 3×3): from splitRows6's work into tmp (64 · LANES floats). */
INLINE void
NAMED(rowTransforms6)(const float * const work, const float * const workHigh, int const qs, int const t,
                      float * const tmp) {
    for (int j = 0; j < 8; ++j) {
        int const q = j * 6 * qs + t;
        VECTOR const d[8] = {GATHERED(q), GATHERED(q + qs), GATHERED(q + 2 * qs), GATHERED(q + 3 * qs),
                             GATHERED(q + 4 * qs), GATHERED(q + 5 * qs), GATHERED(q + 1), GATHERED(q + qs + 1)};
        VECTOR v[8];
        NAMED(inputTransform6)(d, v);
        for (int i = 0; i < 8; ++i)
            STORED(v[i], tmp + (8 * j + i) * LANES);
    }
}

/* Column k of F(6×6, 3×3)'s Bᵀ d B: positions k + 8i in v[i]. */
INLINE void
NAMED(columnTransform6)(const float * const tmp, int const k, VECTOR v[8]) {
    const float * const s = tmp + k * LANES;
    VECTOR const d[8] = {LOADED(s), LOADED(s + 8 * LANES), LOADED(s + 16 * LANES), LOADED(s + 24 * LANES),
                         LOADED(s + 32 * LANES), LOADED(s + 40 * LANES), LOADED(s + 48 * LANES),
                         LOADED(s + 56 * LANES)};
    NAMED(inputTransform6)(d, v);
}

/* The steps of either tile's input transform; `tile` is a constant wherever these are inlined. */
INLINE void
NAMED(rowStage)(int const tile, const float * const work, const float * const workHigh, int const qs, int const t,
                float * const tmp) {
    if (tile == 6)
        NAMED(rowTransforms6)(work, workHigh, qs, t, tmp);
    else
        NAMED(rowTransforms)(work, workHigh, qs, t, tmp);
}

INLINE void
NAMED(columnStage)(int const tile, const float * const tmp, int const k, VECTOR v[8]) {
    if (tile == 6)
        NAMED(columnTransform6)(tmp, k, v);
    else
        NAMED(columnTransform)(tmp, k, v);
}

/* Aᵀ m of either tile: α values in, `tile` out. */
INLINE void
NAMED(outputStage)(int const tile, const VECTOR m[8], VECTOR out[6]) {
    if (tile == 6)
        NAMED(outputTransform6)(m, out);
    else
        NAMED(outputTransform)(m[0], m[1], m[2], m[3], m[4], m[5], out);
}

#undef VECTOR
#undef NAMED
#undef LANES
#undef GATHERED
#undef LOADED
#undef STORED

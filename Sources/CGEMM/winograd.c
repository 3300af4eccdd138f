/*
 * The Winograd F(4×4, 3×3) input and output tile transforms of one channel's tile row (see cgemm.h and
 * Sources/Kernels/Winograd.swift for the matrices and layouts), in the widest vectors the selected instruction set
 * has: the same code compiled for AVX2 (for the avx2 and avx512 kernels: eight tiles are one ymm register) and for the
 * target's baseline (portable). Both compute every value with the same operations in the same order, so the two give
 * the same bits.
 */
#include "cgemm.h"

#include <string.h>

/* The vector helpers below are always inlined: their 256-bit arguments never cross a call on the baseline target. */
#pragma clang diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) || defined(__i386__)
#define WINOGRAD_X86 1
#else
#define WINOGRAD_X86 0
#endif

#define INLINE static inline __attribute__((always_inline))

/* Eight floats: eight tiles' values at one place, in one ymm register with AVX2, two SSE registers without. */
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));

INLINE v8
load8(const float * const p) {
    return *(const v8u *)p;
}

INLINE void
store8(v8 const v, float * const p) {
    *(v8u *)p = v;
}

INLINE v8
splat(float const x) {
    return (v8){x, x, x, x, x, x, x, x};
}

/* Bᵀ d for eight tiles at once. */
INLINE void
inputTransform(v8 const d0, v8 const d1, v8 const d2, v8 const d3, v8 const d4, v8 const d5, v8 out[6]) {
    v8 const d13 = d1 - d3, d24 = d4 - d2, s14 = d1 + d4, s23 = d2 + d3;
    out[0] = splat(2) * (d0 - d4) + splat(5) * d13;
    out[1] = splat(2) * s14 + splat(7) * s23;
    out[2] = splat(2) * (d4 - d1) + splat(3) * (d3 - d2);
    out[3] = d3 - d1 + splat(2) * d24;
    out[4] = splat(2) * (d3 - d1) + d24;
    out[5] = splat(2) * (d5 - d1) + splat(5) * d24;
}

/* Aᵀ m for eight tiles at once. */
INLINE void
outputTransform(v8 const m0, v8 const m1, v8 const m2, v8 const m3, v8 const m4, v8 const m5, v8 out[4]) {
    v8 const s12 = m1 + m2, d12 = m1 - m2;
    out[0] = m0 + s12 + m3 + m4;
    out[1] = d12 - splat(2) * m3 - splat(0.5f) * m4;
    out[2] = s12 + splat(4) * m3 + splat(0.25f) * m4;
    out[3] = d12 - splat(8) * m3 - splat(0.125f) * m4 + m5;
}

/* Where tile `tile` of channel `channel` sits within a position's floats (WinogradPanels.offset). */
INLINE ptrdiff_t
panelOffset(int const tile, int const channel, int const channels, int const panelWidth, int const panelCount) {
    int const first = tile / panelWidth * panelWidth;
    int const width = panelCount - first < panelWidth ? panelCount - first : panelWidth;
    return (ptrdiff_t)first * channels + (ptrdiff_t)channel * width + (tile - first);
}

INLINE void
inputRow(const float * const rows[6], int const width, int const tilesX, int const qs, float * const work,
         float * const transformed, ptrdiff_t const positionStride, int const panelWidth, int const panelCount,
         int const channel, int const channels, int const firstTile) {
    float * const tmp = work + 24 * qs;
    /* The six input rows, each split by x + 1 mod 4: q[j, p, s] = row j at x = 4s + p − 1. */
    for (int j = 0; j < 6; ++j) {
        float * const q = work + j * 4 * qs;
        memset(q, 0, sizeof(float) * 4 * (size_t)qs);
        const float * const row = rows[j];
        if (!row)
            continue;
        int x = 0;
        for (; x + 16 <= width; x += 16) {
            int const s = x >> 2;
            for (int i = 0; i < 4; ++i) {
                q[qs + s + i] = row[x + 4 * i];
                q[2 * qs + s + i] = row[x + 4 * i + 1];
                q[3 * qs + s + i] = row[x + 4 * i + 2];
                q[s + 1 + i] = row[x + 4 * i + 3];
            }
        }
        for (; x + 4 <= width; x += 4) {
            int const s = x >> 2;
            q[qs + s] = row[x];
            q[2 * qs + s] = row[x + 1];
            q[3 * qs + s] = row[x + 2];
            q[s + 1] = row[x + 3];
        }
        for (; x < width; ++x)
            q[((x + 1) & 3) * qs + ((x + 1) >> 2)] = row[x];
    }
    for (int t = 0; t < tilesX; t += 8) {
        /* Eight tiles at a time: the lanes past tilesX hold the transforms of zeros and the right edge, finite values
         * whose products are never written out. */
        for (int j = 0; j < 6; ++j) {
            const float * const q = work + j * 4 * qs + t;
            v8 v[6];
            inputTransform(load8(q), load8(q + qs), load8(q + 2 * qs), load8(q + 3 * qs), load8(q + 1),
                           load8(q + qs + 1), v);
            for (int i = 0; i < 6; ++i)
                store8(v[i], tmp + j * 48 + 8 * i);
        }
        float * const base = transformed + panelOffset(firstTile + t, channel, channels, panelWidth, panelCount);
        for (int k = 0; k < 6; ++k) {
            const float * const s = tmp + k * 8;
            v8 v[6];
            inputTransform(load8(s), load8(s + 48), load8(s + 96), load8(s + 144), load8(s + 192), load8(s + 240), v);
            for (int i = 0; i < 6; ++i)
                store8(v[i], base + (ptrdiff_t)(k + 6 * i) * positionStride);
        }
    }
}

INLINE void
outputRow(const float * const transformed, ptrdiff_t const positionStride, int const tilesX, int const width,
          int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    float * const tmp = work, * const line = work + 24 * 8;
    for (int t = 0; t < tilesX; t += 8) {
        /* Columns first: z[i', k] = Σ_i Aᵀ[i', i] M[6i + k]. */
        for (int k = 0; k < 6; ++k) {
            const float * const s = transformed + k * positionStride + t;
            v8 z[4];
            outputTransform(load8(s), load8(s + 6 * positionStride), load8(s + 12 * positionStride),
                            load8(s + 18 * positionStride), load8(s + 24 * positionStride),
                            load8(s + 30 * positionStride), z);
            for (int i = 0; i < 4; ++i)
                store8(z[i], tmp + k * 8 + 48 * i);
        }
        int const lanes = tilesX - t < 8 ? tilesX - t : 8;
        for (int i = 0; i < rows; ++i) {
            const float * const s = tmp + i * 48;
            v8 y[4];
            outputTransform(load8(s), load8(s + 8), load8(s + 16), load8(s + 24), load8(s + 32), load8(s + 40), y);
            float * const row = output + i * rowStride + 4 * t;
            if (lanes == 8 && 4 * (t + 8) <= width) {
                /* Tile l's four values, y[j][l], go to row[4l + j]. */
                for (int lane = 0; lane < 8; ++lane)
                    for (int j = 0; j < 4; ++j)
                        row[4 * lane + j] = y[j][lane];
                continue;
            }
            for (int j = 0; j < 4; ++j)
                store8(y[j], line + 8 * j);
            if (4 * (t + lanes) <= width) {
                for (int lane = 0; lane < lanes; ++lane)
                    for (int j = 0; j < 4; ++j)
                        row[4 * lane + j] = line[8 * j + lane];
            } else {
                for (int x = 0; x < width - 4 * t; ++x)
                    row[x] = line[(x & 3) * 8 + (x >> 2)];
            }
        }
    }
}

static void
inputPortable(const float * const rows[6], int const width, int const tilesX, int const qs, float * const work,
              float * const transformed, ptrdiff_t const positionStride, int const panelWidth, int const panelCount,
              int const channel, int const channels, int const firstTile) {
    inputRow(rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount, channel, channels,
             firstTile);
}

static void
outputPortable(const float * const transformed, ptrdiff_t const positionStride, int const tilesX, int const width,
               int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    outputRow(transformed, positionStride, tilesX, width, rows, output, rowStride, work);
}

#if WINOGRAD_X86
/* No FMA: the compiler would fuse the transforms' multiply-adds on this path alone, and the paths would differ. */
#define AVX2 __attribute__((target("avx2")))

static AVX2 void
inputAVX2(const float * const rows[6], int const width, int const tilesX, int const qs, float * const work,
          float * const transformed, ptrdiff_t const positionStride, int const panelWidth, int const panelCount,
          int const channel, int const channels, int const firstTile) {
    inputRow(rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount, channel, channels,
             firstTile);
}

static AVX2 void
outputAVX2(const float * const transformed, ptrdiff_t const positionStride, int const tilesX, int const width,
           int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    outputRow(transformed, positionStride, tilesX, width, rows, output, rowStride, work);
}
#endif

void
cgemm_winograd_input(const float * const rows[6], int const width, int const tilesX, int const phaseStride,
                     float * const work, float * const transformed, ptrdiff_t const positionStride,
                     int const panelWidth, int const panelCount, int const channel, int const channels,
                     int const firstTile) {
#if WINOGRAD_X86
    if (cgemm_selected() != CGEMM_PORTABLE) {
        inputAVX2(rows, width, tilesX, phaseStride, work, transformed, positionStride, panelWidth, panelCount, channel,
                  channels, firstTile);
        return;
    }
#endif
    inputPortable(rows, width, tilesX, phaseStride, work, transformed, positionStride, panelWidth, panelCount, channel,
                  channels, firstTile);
}

void
cgemm_winograd_output(const float * const transformed, ptrdiff_t const positionStride, int const tilesX,
                      int const width, int const rows, float * const output, ptrdiff_t const rowStride,
                      float * const work) {
#if WINOGRAD_X86
    if (cgemm_selected() != CGEMM_PORTABLE) {
        outputAVX2(transformed, positionStride, tilesX, width, rows, output, rowStride, work);
        return;
    }
#endif
    outputPortable(transformed, positionStride, tilesX, width, rows, output, rowStride, work);
}

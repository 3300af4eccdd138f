/*
 * cgemm: see include/cgemm.h for the contract.
 *
 * The inner loop keeps an 8 × 48 block of C in 24 AVX-512 registers and, for each j, loads three vectors of B's row
 * j and broadcasts eight values of A's column j into them: 24 fused multiply-adds for 11 loads. The loop over k runs
 * in slices of KC, so that a slice of a B panel (KC × 48 floats, 24 KiB) stays in the first-level cache while every
 * 8-row panel of A goes over it; slices after the first add to C.
 */
#include "cgemm.h"

#include <immintrin.h>

#define MR CGEMM_PANEL_ROWS
#define NR CGEMM_PANEL_COLUMNS
#define KC 128

#define AVX512 __attribute__((target("avx512f,fma")))

int
cgemm_available(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
}

/* C[0..8, 0..nr) (=, or += when accumulate) alpha · Σ_j a(i, j) · b[j·nr + 0..nr) for j < kc, where a(i, j) sits at
 * a + (j / 8)·chunk + i·rowStep + (j % 8)·columnStep: (1, 8) for the rows order, (8, 1) for the transposed one. */
static inline __attribute__((always_inline)) AVX512 void
block(int const kc, const float *a, ptrdiff_t const chunk, int const rowStep, int const columnStep,
      const float *b, float * const c, ptrdiff_t const ldc, int const nr, float const alpha, int const accumulate) {
    __m512 acc[MR][3];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < 3; ++v)
            acc[i][v] = _mm512_setzero_ps();
    /* The lanes past nr are neither loaded nor stored. */
    __mmask16 mask[3];
    for (int v = 0; v < 3; ++v) {
        int const left = nr - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
    for (int j0 = 0; j0 < kc; j0 += 8) {
        for (int j = 0; j < 8; ++j) {
            __m512 const b0 = _mm512_maskz_loadu_ps(mask[0], b);
            __m512 const b1 = _mm512_maskz_loadu_ps(mask[1], b + 16);
            __m512 const b2 = _mm512_maskz_loadu_ps(mask[2], b + 32);
            b += nr;
            for (int i = 0; i < MR; ++i) {
                __m512 const ai = _mm512_set1_ps(a[i * rowStep + j * columnStep]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            }
        }
        a += chunk;
    }
    __m512 const scale = _mm512_set1_ps(alpha);
    for (int v = 0; v < 3; ++v) {
        if (mask[v] == 0)
            break;
        for (int i = 0; i < MR; ++i) {
            float * const p = c + i * ldc + 16 * v;
            __m512 value = _mm512_mul_ps(acc[i][v], scale);
            if (accumulate)
                value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask[v], p));
            _mm512_mask_storeu_ps(p, mask[v], value);
        }
    }
}

static AVX512 void
blockRows(int const kc, const float * const a, ptrdiff_t const chunk, const float * const b, float * const c,
          ptrdiff_t const ldc, int const nr, float const alpha, int const accumulate) {
    block(kc, a, chunk, 1, MR, b, c, ldc, nr, alpha, accumulate);
}

static AVX512 void
blockTransposed(int const kc, const float * const a, ptrdiff_t const chunk, const float * const b, float * const c,
                ptrdiff_t const ldc, int const nr, float const alpha, int const accumulate) {
    block(kc, a, chunk, MR, 1, b, c, ldc, nr, alpha, accumulate);
}

AVX512 void
cgemm_panels(int const m, int const n, int const k, float const alpha, const float * const a, int const transposedA,
             const float * const b, float * const c, ptrdiff_t const ldc) {
    for (int j0 = 0; j0 < k; j0 += KC) {
        int const kc = k - j0 < KC ? k - j0 : KC;
        for (int l0 = 0; l0 < n; l0 += NR) {
            int const nr = n - l0 < NR ? n - l0 : NR;
            const float * const panel = b + (ptrdiff_t)l0 * k + (ptrdiff_t)j0 * nr;
            for (int i0 = 0; i0 < m; i0 += MR) {
                float * const target = c + (ptrdiff_t)i0 * ldc + l0;
                if (transposedA)
                    blockTransposed(kc, a + (ptrdiff_t)(j0 / MR) * m * MR + (ptrdiff_t)i0 * MR, (ptrdiff_t)m * MR,
                                    panel, target, ldc, nr, alpha, j0 > 0);
                else
                    blockRows(kc, a + (ptrdiff_t)i0 * k + (ptrdiff_t)j0 * MR, MR * MR, panel, target, ldc, nr, alpha,
                              j0 > 0);
            }
        }
    }
}

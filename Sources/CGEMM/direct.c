/*
 * The 3×3 convolution of a few input channels (the image's three) by direct sums, one output row at a time, where
 * AVX-512 is: an im2col product there has only 27 values of k, so it spends more on its operand than on its sums.
 */
#include "cgemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,fma")))

/* Four output channels over four vectors of 16 pixels from x0 (`mask` the last vector's pixels within the row). */
static inline AVX512 __attribute__((always_inline)) void
directBlock(int const taps, const float * const staged[], const float * const kernel, int const o0, int const x0,
            __mmask16 const mask, int const vectors, float * const output, ptrdiff_t const channelStride) {
    __m512 acc[4][4];
    for (int q = 0; q < 4; ++q)
        for (int v = 0; v < 4; ++v)
            acc[q][v] = _mm512_setzero_ps();
    for (int r = 0; r < taps / 3; ++r) {
        for (int dx = 0; dx < 3; ++dx) {
            const float * const p = staged[r] + x0 + dx;
            __m512 in[4];
            for (int v = 0; v < 4; ++v)
                in[v] = v < vectors - 1 ? _mm512_loadu_ps(p + 16 * v)
                      : v == vectors - 1 ? _mm512_maskz_loadu_ps(mask, p + 16 * v) : _mm512_setzero_ps();
            int const j = 3 * r + dx;
            for (int q = 0; q < 4; ++q) {
                __m512 const w = _mm512_set1_ps(kernel[(ptrdiff_t)(o0 + q) * taps + j]);
                for (int v = 0; v < 4; ++v)
                    acc[q][v] = _mm512_fmadd_ps(w, in[v], acc[q][v]);
            }
        }
    }
    for (int q = 0; q < 4; ++q) {
        float * const row = output + (ptrdiff_t)(o0 + q) * channelStride + x0;
        for (int v = 0; v < vectors; ++v) {
            if (v < vectors - 1)
                _mm512_storeu_ps(row + 16 * v, acc[q][v]);
            else
                _mm512_mask_storeu_ps(row + 16 * v, mask, acc[q][v]);
        }
    }
}

static AVX512 void
directRow512(int const outChannels, int const rows, const float * const staged[], int const width,
             const float * const kernel, float * const output, ptrdiff_t const channelStride) {
    int const taps = 3 * rows;
    for (int x0 = 0; x0 < width; x0 += 64) {
        int const left = width - x0 < 64 ? width - x0 : 64;
        int const vectors = (left + 15) / 16;
        int const last = left - 16 * (vectors - 1);
        __mmask16 const mask = (__mmask16)(last == 16 ? 0xFFFF : (1u << last) - 1);
        for (int o0 = 0; o0 < outChannels; o0 += 4)
            directBlock(taps, staged, kernel, o0, x0, mask, vectors, output, channelStride);
    }
}
#endif

int
cgemm_direct_conv3_supported(int const outChannels) {
#if defined(__x86_64__) || defined(__i386__)
    return cgemm_selected() == CGEMM_AVX512 && outChannels % 4 == 0;
#else
    (void)outChannels;
    return 0;
#endif
}

void
cgemm_direct_conv3_row(int const outChannels, int const rows, const float * const staged[], int const width,
                       const float * const kernel, float * const output, ptrdiff_t const channelStride) {
#if defined(__x86_64__) || defined(__i386__)
    directRow512(outChannels, rows, staged, width, kernel, output, channelStride);
#else
    (void)outChannels, (void)rows, (void)staged, (void)width, (void)kernel, (void)output, (void)channelStride;
#endif
}

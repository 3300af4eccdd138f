/*
 * The ReLU around each convolution, one map row at a time (see cgemm.h): the bias and ReLU after the forward
 * convolution, recording which values passed, and the chain rule through that record on the way back. Eight values
 * (one mask byte) at a time in ymm registers on the AVX2 and AVX-512 paths, one by one on the portable path; the same
 * operations everywhere, so every path gives the same bits.
 */
#include "cgemm.h"

static void
biasReLURowPortable(float * const row, int const width, float const bias, uint8_t * const mask) {
    for (int x = 0; x < width; x += 8) {
        uint8_t byte = 0;
        for (int j = 0; j < 8 && x + j < width; ++j) {
            float const v = row[x + j] + bias;
            int const passed = v > 0;
            row[x + j] = passed ? v : 0;
            byte |= (uint8_t)(passed << j);
        }
        mask[x >> 3] = byte;
    }
}

static void
reluMaskRowPortable(float * const gradient, int const width, const uint8_t * const mask) {
    for (int x = 0; x < width; ++x)
        if (!(mask[x >> 3] & (1u << (x & 7))))
            gradient[x] = 0;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2")))

static AVX2 void
biasReLURowAVX2(float * const row, int const width, float const bias, uint8_t * const mask) {
    __m256 const b = _mm256_set1_ps(bias), zero = _mm256_setzero_ps();
    int x = 0;
    for (; x + 8 <= width; x += 8) {
        __m256 const v = _mm256_add_ps(_mm256_loadu_ps(row + x), b);
        __m256 const passed = _mm256_cmp_ps(v, zero, _CMP_GT_OQ);
        _mm256_storeu_ps(row + x, _mm256_and_ps(v, passed));
        mask[x >> 3] = (uint8_t)_mm256_movemask_ps(passed);
    }
    if (x < width)
        biasReLURowPortable(row + x, width - x, bias, mask + (x >> 3));
}

static AVX2 void
reluMaskRowAVX2(float * const gradient, int const width, const uint8_t * const mask) {
    __m256i const laneBits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    int x = 0;
    for (; x + 8 <= width; x += 8) {
        __m256i const bits = _mm256_and_si256(_mm256_set1_epi32(mask[x >> 3]), laneBits);
        __m256 const passed = _mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, laneBits));
        _mm256_storeu_ps(gradient + x, _mm256_and_ps(_mm256_loadu_ps(gradient + x), passed));
    }
    if (x < width)
        reluMaskRowPortable(gradient + x, width - x, mask + (x >> 3));
}
#endif

void
cgemm_bias_relu_row(float * const row, int const width, float const bias, uint8_t * const mask) {
#if defined(__x86_64__) || defined(__i386__)
    if (cgemm_selected() != CGEMM_PORTABLE) {
        biasReLURowAVX2(row, width, bias, mask);
        return;
    }
#endif
    biasReLURowPortable(row, width, bias, mask);
}

void
cgemm_relu_mask_row(float * const gradient, int const width, const uint8_t * const mask) {
#if defined(__x86_64__) || defined(__i386__)
    if (cgemm_selected() != CGEMM_PORTABLE) {
        reluMaskRowAVX2(gradient, width, mask);
        return;
    }
#endif
    reluMaskRowPortable(gradient, width, mask);
}

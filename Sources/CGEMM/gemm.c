/*
 * cgemm: see include/cgemm.h for the contract.
 *
 * The step every product comes down to is `block`: an 8 × columns block of C (columns ≤ 48) = alpha · Σ_j a(i, j) ·
 * b[j·nr + l] over a slice of kc values of j (a multiple of 8), added to C or not, with 8 rows of A addressed as
 *     a(i, j) at a + (j / 8)·chunk + i·rowStep + (j % 8)·columnStep
 * and a kc × nr slice of a B panel stored row by row. Only the first `rows` rows and `columns` columns of the block are
 * stored; the rows of A past `rows` are still read (they are zeros or finite values), the columns of B past `columns`
 * are not. Three orders of A occur: the rows and transposed orders of cgemm.h, and the packed pixels of a Gram matrix,
 * where both operands are the same panels of 48 channels (a(i, j) at a + j·w + i for a panel w channels wide).
 *
 * Each instruction set has its own block:
 *   AVX-512:  the whole 8 × 48 block in 24 zmm registers; per j, three loads of B, eight broadcasts of A, 24 fused
 *             multiply-adds (a block of at most 32 or 16 columns, in 16 or 8 registers, with two or one loads of B);
 *             a product's last panel narrow enough to leave a fifth of those lanes idle takes blocks with the roles
 *             swapped instead (avx512SwappedIn in rows order, avx512Turned in transposed order).
 *   AVX2:     six 4 × 16 strips, each in 8 of the 16 ymm registers; per j, two loads of B, four broadcasts of A,
 *             8 fused multiply-adds (4 × 24 strips would need all 16 registers, and the compiler spills them).
 *   portable: twelve 4 × 8 strips in plain C, whose inner loops the compiler turns into vector code for the target's
 *             baseline (two SSE vectors per row on x86-64).
 * The loops around it are shared: over slices of KC values of k, so that a slice of a B panel (KC × 48 floats, 24 KiB)
 * stays in the first-level cache while the 8-row blocks of A go over it; slices after the first add to C.
 */
#include "cgemm.h"
#include "half.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define CGEMM_X86 1
#include <immintrin.h>
#else
#define CGEMM_X86 0
#endif

#define MR CGEMM_PANEL_ROWS
#define NR CGEMM_PANEL_COLUMNS
#define KC 128

#define INLINE static inline __attribute__((always_inline))

static int
roundUp8(int const value) {
    return (value + 7) & ~7;
}

static int
minimum(int const a, int const b) {
    return a < b ? a : b;
}

static int
maximum(int const a, int const b) {
    return a > b ? a : b;
}

/* Call q's part when `total` items are shared out in order among `calls` calls: items first … first + count. */
struct part {
    int first, count;
};

static struct part
partOf(int const total, int const calls, int const q) {
    int const size = (total + calls - 1) / calls;
    return (struct part){q * size, maximum(0, minimum(size, total - q * size))};
}

/* The values of k of a slice of B in cgemm_panels_fp16: each slice has a scale of its own, and each lane of a block
 * sums its FP16_SLICE / 2 products of a slice in half precision before they are converted to float32. */
#define FP16_SLICE CGEMM_FP16_SLICE

/* The exponents of the largest magnitudes the operands are scaled to: A's (a position's kernel) lies in [2^3, 2^4)
 * and a slice of B's in [2^3, 2^4) (see cgemm.h), so that a product stays below 2^8 and a lane's sum of a slice's 128
 * products below 2^15. */
#define FP16_A_EXPONENT 4
#define FP16_B_EXPONENT 4
/* The exponent of the largest magnitude of each panel of pixels in a half-precision Gram product, where a panel is
 * both A and B: [2^3, 2^4), so that products stay below 2^8. */
#define FP16_GRAM_EXPONENT 4

/* 2^(exponent − e), where largest lies in [2^(e − 1), 2^e): the power of two that scales `largest` into
 * [2^(exponent − 1), 2^exponent); 1 for zero, a non-finite value, or a scale float32 cannot hold. */
static float
powerOfTwoScale(float const largest, int const exponent) {
    if (!(largest > 0) || !(largest <= __FLT_MAX__))
        return 1;
    int e;
    (void)__builtin_frexpf(largest, &e);
    int const shift = exponent - e;
    return shift > 126 || shift < -126 ? 1 : __builtin_ldexpf(1, shift);
}

/* How a block's A is addressed (see above): rowStep and columnStep (1, 8), (8, 1) or (1, stride). */
enum order { ROWS, TRANSPOSED, STRIDED };

typedef void Block(enum order order, int kc, const float *a, ptrdiff_t chunk, int stride, const float *b, int nr,
                   float *c, ptrdiff_t ldc, int rows, int columns, float alpha, int accumulate);

/* Writes channels × kc pixels of F (f[ch·ldf + p]) as panels of 48 channels for cgemm_gram_upper: the panel of
 * channels l0 … l0 + w at work + l0·kp, (kp, w), where kp = kc rounded up to 8 and w = min(48, ⌈channels/8⌉·8 − l0);
 * channels and pixels past the matrix are zeros. */
typedef void PackPixels(int channels, int kc, const float *f, ptrdiff_t ldf, float *work);

/* The scalar form of the packing, for any part of it: channels [ch0, ch1) of the panel at `panel` (width w, starting
 * at channel l0), pixels [p0, kp). */
static void
packPixelsScalar(int const channels, int const kc, int const kp, const float * const f, ptrdiff_t const ldf,
                 float * const panel, int const l0, int const w, int const ch0, int const ch1, int const p0) {
    for (int ch = ch0; ch < ch1; ++ch) {
        float * const target = panel + (ch - l0);
        if (ch >= channels) {
            for (int p = p0; p < kp; ++p)
                target[(ptrdiff_t)p * w] = 0;
            continue;
        }
        const float * const row = f + (ptrdiff_t)ch * ldf;
        for (int p = p0; p < kp; ++p)
            target[(ptrdiff_t)p * w] = p < kc ? row[p] : 0;
    }
}

/* MARK: - Portable */

/* One 4 × width strip (width ≤ 8) of a block; `width` is 8 or a constant wherever speed matters. */
INLINE void
portableStrip(int const width, int const kc, const float * const a, ptrdiff_t const chunk, int const rowStep,
              int const columnStep, const float *b, int const nr, float * const c, ptrdiff_t const ldc,
              int const rows, float const alpha, int const accumulate) {
    float acc[4][8] = {{0}};
    for (int j = 0; j < kc; ++j) {
        const float * const aj = a + (j >> 3) * chunk + (j & 7) * columnStep;
        float bj[8];
        for (int l = 0; l < width; ++l)
            bj[l] = b[l];
        for (int i = 0; i < 4; ++i) {
            float const ai = aj[i * rowStep];
            for (int l = 0; l < width; ++l)
                acc[i][l] += ai * bj[l];
        }
        b += nr;
    }
    for (int i = 0; i < 4; ++i) {
        if (i >= rows)
            break;
        float * const p = c + i * ldc;
        for (int l = 0; l < width; ++l)
            p[l] = accumulate ? p[l] + alpha * acc[i][l] : alpha * acc[i][l];
    }
}

INLINE void
portableBlockIn(int const kc, const float * const a, ptrdiff_t const chunk, int const rowStep, int const columnStep,
                const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows,
                int const columns, float const alpha, int const accumulate) {
    for (int h = 0; h < 2 && 4 * h < rows; ++h) {
        const float * const half = a + 4 * h * rowStep;
        float * const target = c + 4 * h * ldc;
        for (int s = 0; s < columns; s += 8) {
            if (columns - s >= 8)
                portableStrip(8, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc, rows - 4 * h, alpha,
                              accumulate);
            else
                portableStrip(columns - s, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc,
                              rows - 4 * h, alpha, accumulate);
        }
    }
}

static void
portableBlock(enum order const order, int const kc, const float * const a, ptrdiff_t const chunk, int const stride,
              const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows,
              int const columns, float const alpha, int const accumulate) {
    switch (order) {
    case ROWS:
        portableBlockIn(kc, a, chunk, 1, MR, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    case TRANSPOSED:
        portableBlockIn(kc, a, chunk, MR, 1, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    case STRIDED:
        portableBlockIn(kc, a, chunk, 1, stride, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    }
}

static void
portablePackPixels(int const channels, int const kc, const float * const f, ptrdiff_t const ldf, float * const work) {
    int const cp = roundUp8(channels), kp = roundUp8(kc);
    for (int l0 = 0; l0 < cp; l0 += NR) {
        int const w = minimum(NR, cp - l0);
        packPixelsScalar(channels, kc, kp, f, ldf, work + (ptrdiff_t)l0 * kp, l0, w, l0, l0 + w, 0);
    }
}

#if CGEMM_X86

/* MARK: - AVX2 */

#define AVX2 __attribute__((target("avx2,fma")))

/* One 4-row strip of a block: `vectors` (1 or 2) vectors of 8 columns, the last one read and written through `tail`
 * when `masked`. Eleven registers at most: 8 sums, 2 vectors of B, a broadcast of A. */
INLINE AVX2 void
avx2Strip(int const vectors, int const masked, __m256i const tail, int const kc, const float *a,
          ptrdiff_t const chunk, int const rowStep, int const columnStep, const float *b, int const nr,
          float * const c, ptrdiff_t const ldc, int const rows, float const alpha, int const accumulate) {
    __m256 acc[4][2];
    for (int i = 0; i < 4; ++i)
        for (int v = 0; v < 2; ++v)
            acc[i][v] = _mm256_setzero_ps();
    /* The rows of C are far apart (a gradient's rows are whole feature maps): their lines are asked for now, to arrive
     * while the sums run. */
    if (accumulate)
        for (int i = 0; i < 4; ++i)
            if (i < rows) {
                _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
                _mm_prefetch((const char *)(c + i * ldc + 8 * vectors - 1), _MM_HINT_T0);
            }
    for (int j0 = 0; j0 < kc; j0 += 8) {
        for (int j = 0; j < 8; ++j) {
            __m256 bv[2];
            for (int v = 0; v < vectors; ++v)
                bv[v] = masked && v == vectors - 1 ? _mm256_maskload_ps(b + 8 * v, tail) : _mm256_loadu_ps(b + 8 * v);
            b += nr;
            for (int i = 0; i < 4; ++i) {
                __m256 const ai = _mm256_broadcast_ss(a + i * rowStep + j * columnStep);
                for (int v = 0; v < vectors; ++v)
                    acc[i][v] = _mm256_fmadd_ps(ai, bv[v], acc[i][v]);
            }
        }
        a += chunk;
    }
    __m256 const scale = _mm256_set1_ps(alpha);
    for (int i = 0; i < 4; ++i) {
        if (i >= rows)
            break;
        for (int v = 0; v < vectors; ++v) {
            float * const p = c + i * ldc + 8 * v;
            __m256 value = _mm256_mul_ps(acc[i][v], scale);
            if (masked && v == vectors - 1) {
                if (accumulate)
                    value = _mm256_add_ps(value, _mm256_maskload_ps(p, tail));
                _mm256_maskstore_ps(p, tail, value);
            } else {
                if (accumulate)
                    value = _mm256_add_ps(value, _mm256_loadu_ps(p));
                _mm256_storeu_ps(p, value);
            }
        }
    }
}

INLINE AVX2 void
avx2BlockIn(int const kc, const float * const a, ptrdiff_t const chunk, int const rowStep, int const columnStep,
            const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows,
            int const columns, float const alpha, int const accumulate) {
    __m256i const lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int h = 0; h < 2 && 4 * h < rows; ++h) {
        const float * const half = a + 4 * h * rowStep;
        float * const target = c + 4 * h * ldc;
        int const stored = rows - 4 * h;
        for (int s = 0; s < columns; s += 16) {
            int const width = minimum(16, columns - s), vectors = (width + 7) / 8, last = width - 8 * (vectors - 1);
            __m256i const tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(last), lanes);
            if (vectors == 2 && last == 8)
                avx2Strip(2, 0, tail, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc, stored, alpha,
                          accumulate);
            else if (vectors == 2)
                avx2Strip(2, 1, tail, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc, stored, alpha,
                          accumulate);
            else if (last == 8)
                avx2Strip(1, 0, tail, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc, stored, alpha,
                          accumulate);
            else
                avx2Strip(1, 1, tail, kc, half, chunk, rowStep, columnStep, b + s, nr, target + s, ldc, stored, alpha,
                          accumulate);
        }
    }
}

static AVX2 void
avx2Block(enum order const order, int const kc, const float * const a, ptrdiff_t const chunk, int const stride,
          const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows, int const columns,
          float const alpha, int const accumulate) {
    switch (order) {
    case ROWS:
        avx2BlockIn(kc, a, chunk, 1, MR, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    case TRANSPOSED:
        avx2BlockIn(kc, a, chunk, MR, 1, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    case STRIDED:
        avx2BlockIn(kc, a, chunk, 1, stride, b, nr, c, ldc, rows, columns, alpha, accumulate);
        break;
    }
}

/* The packing of portablePackPixels with 8 × 8 transposes in registers wherever 8 channels and 8 pixels exist. */
static AVX2 void
avx2PackPixels(int const channels, int const kc, const float * const f, ptrdiff_t const ldf, float * const work) {
    int const cp = roundUp8(channels), kp = roundUp8(kc);
    for (int l0 = 0; l0 < cp; l0 += NR) {
        int const w = minimum(NR, cp - l0);
        float * const panel = work + (ptrdiff_t)l0 * kp;
        for (int ch0 = l0; ch0 < l0 + w; ch0 += 8) {
            if (ch0 + 8 > channels) {
                packPixelsScalar(channels, kc, kp, f, ldf, panel, l0, w, ch0, ch0 + 8, 0);
                continue;
            }
            const float * const rows = f + (ptrdiff_t)ch0 * ldf;
            float * const target = panel + (ch0 - l0);
            int p = 0;
            for (; p + 8 <= kc; p += 8) {
                __m256 r[8], t[8], u[8];
                for (int i = 0; i < 8; ++i)
                    r[i] = _mm256_loadu_ps(rows + i * ldf + p);
                for (int i = 0; i < 8; i += 2) {
                    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
                    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
                }
                for (int i = 0; i < 8; i += 4) {
                    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
                    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
                    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
                    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
                }
                /* u[i] holds pixels i and i + 4 of channels 0…3, u[i + 4] those of channels 4…7. */
                for (int i = 0; i < 4; ++i) {
                    _mm256_storeu_ps(target + (ptrdiff_t)(p + i) * w, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
                    _mm256_storeu_ps(target + (ptrdiff_t)(p + i + 4) * w, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
                }
            }
            packPixelsScalar(channels, kc, kp, f, ldf, panel, l0, w, ch0, ch0 + 8, p);
        }
    }
}

/* MARK: - AVX-512 */

#define AVX512 __attribute__((target("avx512f,fma")))

/* The masks of the three 16-lane vectors of a 48-column block row with `columns` columns: the lanes past them are
 * neither loaded nor stored. */
INLINE __attribute__((target("avx512f"))) void
columnMasks(int const columns, __mmask16 mask[3]) {
    for (int v = 0; v < 3; ++v) {
        int const left = columns - 16 * v;
        mask[v] = left >= 16 ? (__mmask16)0xFFFF : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
    }
}

/* Stores alpha · acc into the first `rows` rows of an 8 × 48 block of C, adding to C when `accumulate`. */
INLINE __attribute__((target("avx512f"))) void
storeBlock512(int const vectors, __m512 acc[MR][3], const __mmask16 mask[3], float * const c, ptrdiff_t const ldc,
              int const rows, float const alpha, int const accumulate) {
    __m512 const scale = _mm512_set1_ps(alpha);
    for (int v = 0; v < vectors; ++v) {
        if (mask[v] == 0)
            break;
        for (int i = 0; i < MR; ++i) {
            if (i >= rows)
                break;
            float * const p = c + i * ldc + 16 * v;
            __m512 value = _mm512_mul_ps(acc[i][v], scale);
            if (accumulate)
                value = _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask[v], p));
            _mm512_mask_storeu_ps(p, mask[v], value);
        }
    }
}

INLINE AVX512 void
avx512BlockIn(int const vectors, int const kc, const float *a, ptrdiff_t const chunk, int const rowStep,
              int const columnStep, const float *b, int const nr, float * const c, ptrdiff_t const ldc, int const rows,
              int const columns, float const alpha, int const accumulate, ptrdiff_t const ahead) {
    __m512 acc[MR][3];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < vectors; ++v)
            acc[i][v] = _mm512_setzero_ps();
    __mmask16 mask[3];
    columnMasks(columns, mask);
    /* C's lines, asked for now to arrive while the sums run (see avx512Block). */
    if (accumulate)
        for (int i = 0; i < MR && i < rows; ++i)
            for (int v = 0; v < vectors; ++v)
                _mm_prefetch((const char *)(c + i * ldc + 16 * v), _MM_HINT_T0);
    for (int j0 = 0; j0 < kc; j0 += 8) {
        if (ahead)
            for (int line = 0; line < MR * MR / 16; ++line)
                _mm_prefetch((const char *)(a + ahead + 16 * line), _MM_HINT_T0);
        for (int j = 0; j < 8; ++j) {
            __m512 const b0 = _mm512_maskz_loadu_ps(mask[0], b);
            __m512 const b1 = vectors > 1 ? _mm512_maskz_loadu_ps(mask[1], b + 16) : b0;
            __m512 const b2 = vectors > 2 ? _mm512_maskz_loadu_ps(mask[2], b + 32) : b0;
            b += nr;
            for (int i = 0; i < MR; ++i) {
                __m512 const ai = _mm512_set1_ps(a[i * rowStep + j * columnStep]);
                acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
                if (vectors > 1)
                    acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
                if (vectors > 2)
                    acc[i][2] = _mm512_fmadd_ps(ai, b2, acc[i][2]);
            }
        }
        a += chunk;
    }
    storeBlock512(vectors, acc, mask, c, ldc, rows, alpha, accumulate);
}

/* avx512BlockIn in each order, for `vectors` vectors of 16 columns. */
INLINE AVX512 void
avx512BlockOrders(int const vectors, enum order const order, int const kc, const float * const a,
                  ptrdiff_t const chunk, int const stride, const float * const b, int const nr, float * const c,
                  ptrdiff_t const ldc, int const rows, int const columns, float const alpha, int const accumulate) {
    switch (order) {
    case ROWS:
        avx512BlockIn(vectors, kc, a, chunk, 1, MR, b, nr, c, ldc, rows, columns, alpha, accumulate, KC / 8 * chunk);
        break;
    case TRANSPOSED:
        avx512BlockIn(vectors, kc, a, chunk, MR, 1, b, nr, c, ldc, rows, columns, alpha, accumulate, KC / 8 * chunk);
        break;
    case STRIDED:
        avx512BlockIn(vectors, kc, a, chunk, 1, stride, b, nr, c, ldc, rows, columns, alpha, accumulate, 0);
        break;
    }
}

/* One function per vector count (avx512Block48, 32 and 16): inlined side by side into one, the compiler kept their sums
 * on the stack. */
#define AVX512_BLOCK_FUNCTION(width)                                                                                   \
    static AVX512 __attribute__((noinline)) void avx512Block##width(                                                   \
        enum order const order, int const kc, const float * const a, ptrdiff_t const chunk, int const stride,          \
        const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows, int const columns, \
        float const alpha, int const accumulate) {                                                                     \
        avx512BlockOrders(width / 16, order, kc, a, chunk, stride, b, nr, c, ldc, rows, columns, alpha, accumulate);   \
    }
AVX512_BLOCK_FUNCTION(48)
AVX512_BLOCK_FUNCTION(32)
AVX512_BLOCK_FUNCTION(16)
#undef AVX512_BLOCK_FUNCTION

/* The AVX-512 block, on as many vectors of 16 columns as it stores: the last panel of a product whose columns are not
 * a multiple of 48 does no multiply-adds on columns it does not store. In rows and transposed order it asks, each
 * eight values of k, for the 8 × 8 values of A one slice of KC further on: the block's next slice, which cgemm_panels
 * reads next (and, after a block's only slice, the next block in rows order). Both orders' A comes from memory for
 * the deep layers' Winograd products; asking ahead made their samples under perf about a tenth fewer in single
 * precision on a Zen 5. A block that adds to C asks for C's lines first (avx512BlockIn), which arrive while its sums
 * run: the Gram gradient's C is a layer's gradient, whose rows lie a whole map apart. */
static AVX512 void
avx512Block(enum order const order, int const kc, const float * const a, ptrdiff_t const chunk, int const stride,
            const float * const b, int const nr, float * const c, ptrdiff_t const ldc, int const rows,
            int const columns, float const alpha, int const accumulate) {
    Block * const sized = columns > 32 ? avx512Block48 : columns > 16 ? avx512Block32 : avx512Block16;
    sized(order, kc, a, chunk, stride, b, nr, c, ldc, rows, columns, alpha, accumulate);
}

/* The rows of A a narrow panel is taken over at once by a block with the roles swapped (in single precision or bf16),
 * and the widest panel taken so. */
#define NARROW_ROWS 32
#define NARROW_COLUMNS 12
/* F applied to each width of a narrow panel, 1 to NARROW_COLUMNS. */
#define NARROW_WIDTHS(F) F(1) F(2) F(3) F(4) F(5) F(6) F(7) F(8) F(9) F(10) F(11) F(12)

/* A swapped block's sums over one slice of k, starting at `first`, times alpha, into `sums` (alpha · C, column by
 * column), added to the slices before: as a block stores them into C. */
INLINE __attribute__((target("avx512f"))) void
addNarrowSlice(int const vectors, int const columns, __m512 acc[2][NARROW_COLUMNS], __m512 const scale,
               int const first, float sums[NARROW_COLUMNS][NARROW_ROWS]) {
    for (int v = 0; v < vectors; ++v)
        for (int l = 0; l < columns; ++l) {
            __m512 value = _mm512_mul_ps(acc[v][l], scale);
            if (first > 0)
                value = _mm512_add_ps(value, _mm512_load_ps(&sums[l][16 * v]));
            _mm512_store_ps(&sums[l][16 * v], value);
        }
}

/* The first `rows` rows and `columns` columns of `sums` into C. */
INLINE void
storeNarrowSums(int const rows, int const columns, float sums[NARROW_COLUMNS][NARROW_ROWS], float * const c,
                ptrdiff_t const ldc) {
    for (int i = 0; i < rows; ++i)
        for (int l = 0; l < columns; ++l)
            c[(ptrdiff_t)i * ldc + l] = sums[l][i];
}

/* A narrow last panel of B (`columns` ≤ NARROW_COLUMNS of it, in a panel nr wide) with `rows` rows of A in rows order
 * (≤ NARROW_ROWS, a multiple of 8, in `vectors` vectors of 16; both constants wherever this is inlined), into the
 * same rows and columns of C: avx512BlockIn with the operands' roles swapped, so that no lane runs past the panel's
 * columns. Sixteen rows of A are a vector (two 8-row blocks side by side, the second zeros past `rows`) and each
 * value of B is broadcast. Each value of C takes the same products in the same order as in avx512BlockIn (a slice of
 * KC values of k in a register, then alpha times it added to the slices before), so the same bits. Step by step it
 * also asks for the aheadFloats floats at `ahead` into the second-level cache, a line or more a step. */
INLINE AVX512 void
avx512SwappedIn(int const columns, int const vectors, int const rows, int const k, float const alpha,
                const float * const a, const float * const panel, int const nr, float * const c, ptrdiff_t const ldc,
                const float * const ahead, int const aheadFloats) {
    int const perStep = (aheadFloats + 16 * k - 1) / (16 * k);
    static const float zeros[MR];
    /* Where each vector's two halves of 8 rows start, and how far they move per value of k (0 for the zeros). */
    const float *low[2], *high[2];
    int highStep[2];
    for (int v = 0; v < vectors; ++v) {
        int const first = 16 * v;
        low[v] = a + (ptrdiff_t)first * k;
        high[v] = first + 8 < rows ? a + (ptrdiff_t)(first + 8) * k : zeros;
        highStep[v] = first + 8 < rows ? MR : 0;
    }
    _Alignas(64) float sums[NARROW_COLUMNS][NARROW_ROWS];  // alpha · C, column by column
    __m512 const scale = _mm512_set1_ps(alpha);
    for (int j0 = 0; j0 < k; j0 += KC) {
        int const end = minimum(k, j0 + KC);
        __m512 acc[2][NARROW_COLUMNS];
        for (int v = 0; v < vectors; ++v)
            for (int l = 0; l < columns; ++l)
                acc[v][l] = _mm512_setzero_ps();
        const float *b = panel + (ptrdiff_t)j0 * nr;
        for (int j = j0; j < end; ++j) {
            __m512 rowsOfA[2];
            for (int s = 0; s < perStep; ++s) {
                int const offset = (j * perStep + s) * 16;
                if (offset < aheadFloats)
                    _mm_prefetch((const char *)(ahead + offset), _MM_HINT_T1);
            }
            for (int v = 0; v < vectors; ++v) {
                __m256 const lowHalf = _mm256_loadu_ps(low[v] + (ptrdiff_t)j * MR);
                __m256 const highHalf = _mm256_loadu_ps(high[v] + (ptrdiff_t)j * highStep[v]);
                rowsOfA[v] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(lowHalf)),
                                                                  _mm256_castps_pd(highHalf), 1));
            }
            for (int l = 0; l < columns; ++l) {
                __m512 const bl = _mm512_set1_ps(b[l]);
                for (int v = 0; v < vectors; ++v)
                    acc[v][l] = _mm512_fmadd_ps(bl, rowsOfA[v], acc[v][l]);
            }
            b += nr;
        }
        addNarrowSlice(vectors, columns, acc, scale, j0, sums);
    }
    storeNarrowSums(rows, columns, sums, c, ldc);
}

/* avx512SwappedIn per width, each a function of its own (see avx512Block48). */
#define SWAPPED_FUNCTION(width)                                                                                        \
    static AVX512 __attribute__((noinline)) void avx512Swapped##width(                                                \
        int const rows, int const k, float const alpha, const float * const a, const float * const panel,             \
        int const nr, float * const c, ptrdiff_t const ldc, const float * const ahead, int const aheadFloats) {      \
        if (rows > 16)                                                                                                 \
            avx512SwappedIn(width, 2, rows, k, alpha, a, panel, nr, c, ldc, ahead, aheadFloats);                       \
        else                                                                                                           \
            avx512SwappedIn(width, 1, rows, k, alpha, a, panel, nr, c, ldc, ahead, aheadFloats);                       \
    }
NARROW_WIDTHS(SWAPPED_FUNCTION)
#undef SWAPPED_FUNCTION

typedef void SwappedPanel(int rows, int k, float alpha, const float *a, const float *panel, int nr, float *c,
                          ptrdiff_t ldc, const float *ahead, int aheadFloats);
#define SWAPPED_ENTRY(width) avx512Swapped##width,
static SwappedPanel * const swappedPanels[NARROW_COLUMNS + 1] = {NULL, NARROW_WIDTHS(SWAPPED_ENTRY)};
#undef SWAPPED_ENTRY

/* Whether a last panel nr columns wide goes to the swapped or turned blocks: where the block's vectors of 16 would
 * leave a fifth of their lanes or more idle. */
static int
swappedPanel(int const nr) {
    return nr < NR && 5 * nr <= 4 * 16 * ((nr + 15) / 16);
}

/* The last panel of B (nr columns, at `panel`) with rows i0 … i0 + rows of A in rows order, NARROW_COLUMNS at a
 * time, into the same rows of C. Where B is this narrow, each line of A takes few products, so that a deep layer's
 * kernel, read from memory, would keep the products waiting: the calls share out among their steps asking for the
 * next NARROW_ROWS rows of A, which lie right after these, up to row `upTo` (m where this panel is the product's
 * only one; where full panels came before, their blocks have brought the rows near, and upTo is i0 + rows). */
static void
avx512SwappedPanel(int const i0, int const rows, int const k, float const alpha, const float * const a,
                   const float * const panel, int const nr, float * const c, ptrdiff_t const ldc, int const upTo) {
    int const calls = (nr + NARROW_COLUMNS - 1) / NARROW_COLUMNS, next = minimum(NARROW_ROWS, upTo - i0 - rows) * k;
    const float * const ahead = a + (ptrdiff_t)(i0 + rows) * k;
    for (int l = 0, q = 0; l < nr; l += NARROW_COLUMNS, ++q) {
        struct part const part = partOf(next, calls, q);
        swappedPanels[minimum(NARROW_COLUMNS, nr - l)](rows, k, alpha, a + (ptrdiff_t)i0 * k, panel + l, nr,
                                                         c + (ptrdiff_t)i0 * ldc + l, ldc, ahead + part.first,
                                                         part.count);
    }
}

/* The columns a turned block takes at a time, and the most values of k its products may have. */
#define TURNED_COLUMNS 6
#define TURNED_DEPTH 1024
/* How many groups of eight values of k ahead a turned block asks for A: its rows lie a chunk apart, too far for the
 * processor's own prefetching, and where no full panel came before, nothing brought them near. */
#define TURNED_AHEAD 4

/* A narrow last panel of B, turned: (TURNED_DEPTH, NR), column l's values of k side by side, at l · k. */
static _Thread_local _Alignas(64) float turnedPanel[TURNED_DEPTH * NR];

/* Eight rows of A in transposed order (from `a`, where a(i, j) is at (j / 8)·chunk + i·8 + j % 8) times `columns` (≤
 * TURNED_COLUMNS) columns of B turned (column l at bt + l·k, zeros past `columns` up to TURNED_COLUMNS) into C: in
 * this order each row's eight values of k lie side by side, so the sums run along k in the vector, one vector for
 * two rows and a column, and are added up across it at the end. No lane runs past the panel's columns. Step by step
 * it also asks for lines firstLine … firstLine + lineCount of the eight rows at `ahead` (laid out as `a`, four lines
 * a chunk) into the second-level cache. */
static AVX512 __attribute__((noinline)) void
avx512Turned(int const k, float const alpha, const float * const a, ptrdiff_t const chunk, const float * const bt,
             int const columns, float * const c, ptrdiff_t const ldc, const float * const ahead, int const firstLine,
             int const lineCount) {
    int const perStep = (lineCount + k / 8 - 1) / (k / 8);
    __m512 acc[4][TURNED_COLUMNS];
    for (int p = 0; p < 4; ++p)
        for (int l = 0; l < TURNED_COLUMNS; ++l)
            acc[p][l] = _mm512_setzero_ps();
    for (int j0 = 0; j0 < k; j0 += 8) {
        const float * const rows = a + (ptrdiff_t)(j0 / 8) * chunk;
        for (int s = 0; s < perStep; ++s) {
            int const line = (j0 / 8) * perStep + s;
            if (line < lineCount)
                _mm_prefetch((const char *)(ahead + (ptrdiff_t)((firstLine + line) / 4) * chunk
                                            + 16 * ((firstLine + line) % 4)), _MM_HINT_T1);
        }
        __m512 pairs[4];  // rows 2p and 2p + 1, eight values of k each
        for (int p = 0; p < 4; ++p) {
            _mm_prefetch((const char *)(rows + TURNED_AHEAD * chunk + 16 * p), _MM_HINT_T0);
            pairs[p] = _mm512_loadu_ps(rows + 16 * p);
        }
        for (int l = 0; l < TURNED_COLUMNS; ++l) {
            __m512 const column = _mm512_castpd_ps(
                _mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_load_ps(bt + (ptrdiff_t)l * k + j0))));
            for (int p = 0; p < 4; ++p)
                acc[p][l] = _mm512_fmadd_ps(pairs[p], column, acc[p][l]);
        }
    }
    /* Each acc[p][l] holds row 2p's eight partial sums for column l in its low half and row 2p + 1's in its high half:
     * added within each 128-bit lane for columns 0 … 3 and 4 … 5, then lane with lane. */
    __m512 const scale = _mm512_set1_ps(alpha), zero = _mm512_setzero_ps();
    __m512i const low = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 8, 3, 2, 1, 0);
    __m512i const high = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 13, 12, 7, 6, 5, 4);
    __mmask16 const stored = (__mmask16)((1u << columns) - 1);
    for (int p = 0; p < 4; ++p) {
        __m512 half[3];
        for (int h = 0; h < 3; ++h) {
            __m512 const x = acc[p][2 * h], y = acc[p][2 * h + 1];
            half[h] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
        }
        __m512 const first = _mm512_add_ps(_mm512_shuffle_ps(half[0], half[1], 0x44),
                                           _mm512_shuffle_ps(half[0], half[1], 0xEE));
        __m512 const second = _mm512_add_ps(_mm512_shuffle_ps(half[2], zero, 0x44),
                                            _mm512_shuffle_ps(half[2], zero, 0xEE));
        __m512 const sums = _mm512_add_ps(_mm512_shuffle_f32x4(first, second, 0x88),
                                          _mm512_shuffle_f32x4(first, second, 0xDD));
        _mm512_mask_storeu_ps(c + (ptrdiff_t)(2 * p) * ldc, stored,
                              _mm512_mul_ps(_mm512_permutexvar_ps(low, sums), scale));
        _mm512_mask_storeu_ps(c + (ptrdiff_t)(2 * p + 1) * ldc, stored,
                              _mm512_mul_ps(_mm512_permutexvar_ps(high, sums), scale));
    }
}

/* Turns the last panel of B (k × nr, row by row) into turnedPanel, eight rows and columns at a time, zeros in the
 * columns up to a multiple of 8 and of TURNED_COLUMNS. */
static AVX512 __attribute__((noinline)) void
turnPanel(int const k, const float * const panel, int const nr) {
    int const eights = (nr + 7) / 8 * 8, padded = (nr + TURNED_COLUMNS - 1) / TURNED_COLUMNS * TURNED_COLUMNS;
    for (int l0 = 0; l0 < nr; l0 += 8) {
        __m256i const stored = _mm256_cmpgt_epi32(_mm256_set1_epi32(nr - l0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        for (int j0 = 0; j0 < k; j0 += 8) {
            __m256 r[8], t[8], u[8];
            for (int j = 0; j < 8; ++j)
                r[j] = _mm256_maskload_ps(panel + (ptrdiff_t)(j0 + j) * nr + l0, stored);
            for (int j = 0; j < 8; j += 2) {
                t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
                t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
            }
            for (int h = 0; h < 8; h += 4) {
                u[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
                u[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
                u[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
                u[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
            }
            float * const column = turnedPanel + (ptrdiff_t)l0 * k + j0;
            for (int q = 0; q < 4; ++q) {
                _mm256_store_ps(column + (ptrdiff_t)q * k, _mm256_permute2f128_ps(u[q], u[q + 4], 0x20));
                _mm256_store_ps(column + (ptrdiff_t)(q + 4) * k, _mm256_permute2f128_ps(u[q], u[q + 4], 0x31));
            }
        }
    }
    if (padded > eights)
        memset(turnedPanel + (ptrdiff_t)eights * k, 0, sizeof(float) * (size_t)(padded - eights) * (size_t)k);
}

/* The backward pairs of a kernel block's columns j0 … j0 + 7 (cgemm_bf16_kernel_block's layout, for both precisions'
 * kernel blocks): words[4j + q], the pair of rows 2q and 2q + 1 in column j0 + j, to
 * backward + (j0 / 8)·4m + (o0 / 2 + q)·8 + j. */
INLINE void
storeBackwardPairs(int const m, int const o0, int const j0, const uint32_t words[4 * MR], uint32_t * const backward) {
    uint32_t * const target = backward + (ptrdiff_t)j0 * (m / 2) + (ptrdiff_t)(o0 / 2) * MR;
    for (int q = 0; q < MR / 2; ++q)
        for (int j = 0; j < MR; ++j)
            target[q * MR + j] = words[4 * j + q];
}

/* MARK: - AVX-512 with BF16 dot products */

#define BF16 __attribute__((target("avx512f,avx512bf16")))

/* The columns of B converted at a time: eight panels. */
#define BF16_COLUMNS (8 * NR)

/* B's rows in pairs, (KC / 2, nr) 32-bit pairs per panel, panel after panel: pair (j, l) holds B[2j][l] in its low
 * half and B[2j + 1][l] in its high half, as vdpbf16ps pairs them. */
static _Thread_local _Alignas(64) uint32_t bf16Panels[KC / 2 * BF16_COLUMNS];
/* An 8-row block of A in pairs, (KC / 2, 8): pair (j, i) holds A[i][2j] low and A[i][2j + 1] high. */
static _Thread_local _Alignas(64) uint32_t bf16BlockPairs[KC / 2 * MR];

/* 16 pairs from 16 values of an even row (low halves) and 16 of the odd row after it (high halves). */
INLINE BF16 __m512i
bf16Pairs512(__m512 const low, __m512 const high) {
    __m512i const both = (__m512i)_mm512_cvtne2ps_pbh(high, low);  // low's 16 values, then high's
    __m512i const lows = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(both));
    __m512i const highs = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(both, 1));
    return _mm512_or_si512(lows, _mm512_slli_epi32(highs, 16));
}

/* Rows j0 … j0 + kc of a B panel (nr columns, rows nr floats apart) into pairs. */
INLINE BF16 void
bf16PackPanel(int const kc, const float *b, int const nr, uint32_t *pairs) {
    __mmask16 mask[3];
    columnMasks(nr, mask);
    for (int j = 0; j < kc; j += 2) {
        for (int v = 0; v < 3 && mask[v]; ++v) {
            __m512 const low = _mm512_maskz_loadu_ps(mask[v], b + 16 * v);
            __m512 const high = _mm512_maskz_loadu_ps(mask[v], b + nr + 16 * v);
            _mm512_mask_storeu_epi32(pairs + 16 * v, mask[v], bf16Pairs512(low, high));
        }
        b += 2 * nr;
        pairs += nr;
    }
}

/* kc values of 8 rows of A, in either order, into pairs. */
INLINE BF16 void
bf16PackBlock(int const transposed, int const kc, const float *a, ptrdiff_t const chunk, uint32_t *pairs) {
    if (!transposed) {
        /* a(i, j) at a + (j / 8)·chunk + 8·(j % 8) + i: each 8 values of j … j + 1 are 16 consecutive floats. */
        for (int j0 = 0; j0 < kc; j0 += 8) {
            for (int j = 0; j < 8; j += 2) {
                __m512 const values = _mm512_loadu_ps(a + 8 * j);  // row j's 8 values, then row j + 1's
                __m256i const both = (__m256i)_mm512_cvtneps_pbh(values);
                __m256i const lows = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(both));
                __m256i const highs = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(both, 1));
                _mm256_storeu_si256((__m256i *)(pairs + 4 * j), _mm256_or_si256(lows, _mm256_slli_epi32(highs, 16)));
            }
            a += chunk;
            pairs += 32;
        }
        return;
    }
    /* a(i, j) at a + (j / 8)·chunk + 8i + j % 8: the 64 values of 8 rows and 8 columns are consecutive, row after row,
     * so each row's pairs are adjacent already: 32 pairs, (i, 4) turned into (4, i). */
    __m512i const first = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
    __m512i const second = _mm512_add_epi32(first, _mm512_set1_epi32(2));
    for (int j0 = 0; j0 < kc; j0 += 8) {
        __m512i const top = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + 16), _mm512_loadu_ps(a));
        __m512i const bottom = (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(a + 48), _mm512_loadu_ps(a + 32));
        _mm512_storeu_si512(pairs, _mm512_permutex2var_epi32(top, first, bottom));
        _mm512_storeu_si512(pairs + 16, _mm512_permutex2var_epi32(top, second, bottom));
        a += chunk;
        pairs += 32;
    }
}

INLINE BF16 void
bf16BlockIn(int const vectors, int const kc, const uint32_t *a, int const aStride, const uint32_t *b, int const nr,
            float * const c, ptrdiff_t const ldc, int const rows, int const columns, float const alpha,
            int const accumulate, int const prefetch) {
    __m512 acc[MR][3];
    for (int i = 0; i < MR; ++i)
        for (int v = 0; v < vectors; ++v)
            acc[i][v] = _mm512_setzero_ps();
    __mmask16 mask[3];
    columnMasks(columns, mask);
    for (int j = 0; j < kc; j += 2) {
        __m512bh const b0 = (__m512bh)_mm512_maskz_loadu_epi32(mask[0], b);
        __m512bh const b1 = vectors > 1 ? (__m512bh)_mm512_maskz_loadu_epi32(mask[1], b + 16) : b0;
        __m512bh const b2 = vectors > 2 ? (__m512bh)_mm512_maskz_loadu_epi32(mask[2], b + 32) : b0;
        b += nr;
        if (prefetch)
            _mm_prefetch((const char *)(a + prefetch), _MM_HINT_T0);
        for (int i = 0; i < MR; ++i) {
            __m512bh const ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            if (vectors > 1)
                acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
            if (vectors > 2)
                acc[i][2] = _mm512_dpbf16_ps(acc[i][2], ai, b2);
        }
        a += aStride;
    }
    storeBlock512(vectors, acc, mask, c, ldc, rows, alpha, accumulate);
}

/* bf16BlockIn per vector count (bf16Block48, 32 and 16), as the AVX-512 block is. */
#define BF16_BLOCK_FUNCTION(width)                                                                                     \
    static BF16 __attribute__((noinline)) void bf16Block##width(                                                       \
        int const kc, const uint32_t * const a, int const aStride, const uint32_t * const b, int const nr,            \
        float * const c, ptrdiff_t const ldc, int const rows, int const columns, float const alpha,                    \
        int const accumulate, int const prefetch) {                                                                    \
        bf16BlockIn(width / 16, kc, a, aStride, b, nr, c, ldc, rows, columns, alpha, accumulate, prefetch);            \
    }
BF16_BLOCK_FUNCTION(48)
BF16_BLOCK_FUNCTION(32)
BF16_BLOCK_FUNCTION(16)
#undef BF16_BLOCK_FUNCTION

/* The 8 × columns block of C from an 8-row block of A and a B panel, both in pairs: the AVX-512 block with one dot
 * product of two pairs in place of two multiply-adds, on as many vectors of 16 columns as it stores. A's 8 pairs of
 * each k pair are aStride words after the last's. With `prefetch`, each step also asks for the line of A that many
 * words ahead, for an A read from memory in order. */
static BF16 void
bf16Block(int const kc, const uint32_t * const a, int const aStride, const uint32_t * const b, int const nr,
          float * const c, ptrdiff_t const ldc, int const rows, int const columns, float const alpha,
          int const accumulate, int const prefetch) {
    (columns > 32 ? bf16Block48 : columns > 16 ? bf16Block32 : bf16Block16)(kc, a, aStride, b, nr, c, ldc, rows,
                                                                               columns, alpha, accumulate, prefetch);
}

/* Slices of KC values of k; in each, B converted eight panels at a time, and each 8-row block of A converted once and
 * taken over those panels. */
static BF16 void
bf16Panels512(int const m, int const n, int const k, float const alpha, const float * const a, int const transposedA,
              const float * const b, float * const c, ptrdiff_t const ldc) {
    for (int j0 = 0; j0 < k; j0 += KC) {
        int const kc = minimum(KC, k - j0);
        for (int c0 = 0; c0 < n; c0 += BF16_COLUMNS) {
            int const c1 = minimum(n, c0 + BF16_COLUMNS);
            for (int l0 = c0; l0 < c1; l0 += NR) {
                int const nr = minimum(NR, n - l0);
                bf16PackPanel(kc, b + (ptrdiff_t)l0 * k + (ptrdiff_t)j0 * nr, nr, bf16Panels + (l0 - c0) * (KC / 2));
            }
            for (int i0 = 0; i0 < m; i0 += MR) {
                if (transposedA)
                    bf16PackBlock(1, kc, a + (ptrdiff_t)(j0 / MR) * m * MR + (ptrdiff_t)i0 * MR, (ptrdiff_t)m * MR,
                                  bf16BlockPairs);
                else
                    bf16PackBlock(0, kc, a + (ptrdiff_t)i0 * k + (ptrdiff_t)j0 * MR, MR * MR, bf16BlockPairs);
                for (int l0 = c0; l0 < c1; l0 += NR) {
                    int const nr = minimum(NR, n - l0);
                    bf16Block(kc, bf16BlockPairs, MR, bf16Panels + (l0 - c0) * (KC / 2), nr,
                              c + (ptrdiff_t)i0 * ldc + l0, ldc, MR, nr, alpha, j0 > 0, 0);
                }
            }
        }
    }
}

/* How far ahead bf16PairsProduct asks for A, in words: a slice of KC values of k (the kernels of a deep layer, 18 MiB
 * for the 36 positions of F(4×4), come from memory; asking for them a slice ahead made the products 1.2 times as fast
 * on a Zen 5). */
#define PAIRS_PREFETCH (KC / 2 * MR)

static const uint32_t noPairs[MR];

/* The products of a narrow panel of B (`columns` ≤ NARROW_COLUMNS) with `rows` rows of A in pairs from a
 * (≤ NARROW_ROWS, a multiple of 8, in `vectors` vectors of 16; both constants wherever this is inlined), into the same
 * rows of C: bf16Block with the operands' roles swapped, so that no lane runs past the panel's columns. Sixteen rows
 * of A are a vector (two 8-row blocks side by side, the second zeros past `rows`) and each pair of B is broadcast.
 * Each value of C takes the same pair products in the same order as in bf16Block (KC values of k in a register, then
 * alpha times them added to the slices before), so the same bits. */
INLINE BF16 void
bf16NarrowIn(int const columns, int const vectors, int const rows, int const k, float const alpha,
             const uint32_t * const a, const uint32_t * const panel, float * const c, ptrdiff_t const ldc) {
    /* Where each vector's two halves of 8 rows start, and how far they move per pair of k (0 for the zeros). */
    const uint32_t *low[2], *high[2];
    int highStep[2];
    for (int v = 0; v < vectors; ++v) {
        int const first = 16 * v;
        low[v] = a + (ptrdiff_t)first * (k / 2);
        high[v] = first + 8 < rows ? a + (ptrdiff_t)(first + 8) * (k / 2) : noPairs;
        highStep[v] = first + 8 < rows ? MR : 0;
    }
    _Alignas(64) float sums[NARROW_COLUMNS][NARROW_ROWS];  // alpha · C, column by column
    __m512 const scale = _mm512_set1_ps(alpha);
    for (int j0 = 0; j0 < k; j0 += KC) {
        int const pairCount = minimum(KC, k - j0) / 2;
        __m512 acc[2][NARROW_COLUMNS];
        for (int v = 0; v < vectors; ++v)
            for (int l = 0; l < columns; ++l)
                acc[v][l] = _mm512_setzero_ps();
        const uint32_t *b = panel + (ptrdiff_t)(j0 / 2) * columns;
        for (int j = j0 / 2; j < j0 / 2 + pairCount; ++j) {
            __m512bh rowsOfA[2];
            for (int v = 0; v < vectors; ++v) {
                __m256i const lowHalf = _mm256_loadu_si256((const __m256i *)(low[v] + (ptrdiff_t)j * MR));
                __m256i const highHalf = _mm256_loadu_si256((const __m256i *)(high[v] + (ptrdiff_t)j * highStep[v]));
                rowsOfA[v] = (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(lowHalf), highHalf, 1);
            }
            for (int l = 0; l < columns; ++l) {
                __m512bh const bl = (__m512bh)_mm512_set1_epi32((int)b[l]);
                for (int v = 0; v < vectors; ++v)
                    acc[v][l] = _mm512_dpbf16_ps(acc[v][l], rowsOfA[v], bl);
            }
            b += columns;
        }
        addNarrowSlice(vectors, columns, acc, scale, j0, sums);
    }
    storeNarrowSums(rows, columns, sums, c, ldc);
}

/* bf16NarrowIn per width, each a function of its own (see avx512Block48). */
#define NARROW_FUNCTION(width)                                                                                         \
    static BF16 __attribute__((noinline)) void bf16Narrow##width(                                                      \
        int const rows, int const k, float const alpha, const uint32_t * const a, const uint32_t * const panel,        \
        float * const c, ptrdiff_t const ldc) {                                                                        \
        if (rows > 16)                                                                                                 \
            bf16NarrowIn(width, 2, rows, k, alpha, a, panel, c, ldc);                                                  \
        else                                                                                                           \
            bf16NarrowIn(width, 1, rows, k, alpha, a, panel, c, ldc);                                                  \
    }
NARROW_WIDTHS(NARROW_FUNCTION)
#undef NARROW_FUNCTION

typedef void NarrowPanel(int rows, int k, float alpha, const uint32_t *a, const uint32_t *panel, float *c,
                         ptrdiff_t ldc);
#define NARROW_ENTRY(width) bf16Narrow##width,
static NarrowPanel * const narrowPanels[NARROW_COLUMNS + 1] = {NULL, NARROW_WIDTHS(NARROW_ENTRY)};
#undef NARROW_ENTRY

/* bf16Panels512 on operands both in pairs already, with the same sums (KC values of k in registers, then added to C)
 * in another order: each 8-row block of A over every panel of B, the slices of k innermost, so A is read in order
 * and once, and each block of C stays in the first-level cache while its slices are added to it. A last panel of at
 * most NARROW_COLUMNS columns (a band of few tiles, on a small map) is taken over NARROW_ROWS rows of A at a time by
 * bf16NarrowIn, after their blocks, while those rows are still in the caches. */
static BF16 void
bf16PairsProduct(int const m, int const n, int const k, float const alpha, const uint32_t * const a,
                 const uint32_t * const pairs, float * const c, ptrdiff_t const ldc) {
    int const narrow = n % NR <= NARROW_COLUMNS ? n % NR : 0, blocked = n - narrow;
    for (int r0 = 0; r0 < m; r0 += NARROW_ROWS) {
        int const rows = minimum(NARROW_ROWS, m - r0);
        for (int i0 = r0; i0 < r0 + rows; i0 += MR)
            for (int l0 = 0; l0 < blocked; l0 += NR) {
                int const nr = minimum(NR, n - l0);
                for (int j0 = 0; j0 < k; j0 += KC)
                    bf16Block(minimum(KC, k - j0), a + (ptrdiff_t)i0 * (k / 2) + (ptrdiff_t)(j0 / 2) * MR, MR,
                              pairs + (ptrdiff_t)l0 * (k / 2) + (ptrdiff_t)(j0 / 2) * nr, nr,
                              c + (ptrdiff_t)i0 * ldc + l0, ldc, MR, nr, alpha, j0 > 0, PAIRS_PREFETCH);
            }
        if (narrow)
            narrowPanels[narrow](rows, k, alpha, a + (ptrdiff_t)r0 * (k / 2), pairs + (ptrdiff_t)blocked * (k / 2),
                                 c + (ptrdiff_t)r0 * ldc + blocked, ldc);
    }
}

/* Pairs along k of rows j0 … j0 + kc of a row-major B (rows ldb floats apart, nr ≤ 48 columns from b) into a
 * (kc / 2, nr) panel; rows from `rows` on are zeros. */
INLINE BF16 void
bf16PackRows(int const kc, int const rows, const float *b, ptrdiff_t const ldb, int const nr, uint32_t *pairs) {
    __mmask16 mask[3];
    columnMasks(nr, mask);
    for (int j = 0; j < kc; j += 2) {
        for (int v = 0; v < 3 && mask[v]; ++v) {
            __m512 const low = j < rows ? _mm512_maskz_loadu_ps(mask[v], b + 16 * v) : _mm512_setzero_ps();
            __m512 const high = j + 1 < rows ? _mm512_maskz_loadu_ps(mask[v], b + ldb + 16 * v) : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(pairs + 16 * v, mask[v], bf16Pairs512(low, high));
        }
        b += 2 * ldb;
        pairs += nr;
    }
}

/* cgemm_gram_upper_columns on pairs: each slice of pixels packed by `pack` into floats, its panels turned
 * into pairs after them in the work area, the blocks over them as cgemm_gram_upper takes its blocks. */
static BF16 void
bf16GramUpper(PackPixels * const pack, int const channels, int const pixels, const float * const f,
              ptrdiff_t const ldf, float * const g, ptrdiff_t const ldg, float * const work, int const first,
              int const end) {
    int const cp = roundUp8(channels), packed = roundUp8(end);
    uint32_t * const words = (uint32_t *)(work + (ptrdiff_t)cp * KC);
    for (int p0 = 0; p0 < pixels; p0 += KC) {
        int const kc = minimum(KC, pixels - p0), kp = roundUp8(kc);
        pack(end, kc, f + p0, ldf, work);
        for (int q0 = 0; q0 < packed; q0 += NR)
            bf16PackPanel(kp, work + (ptrdiff_t)q0 * kp, minimum(NR, packed - q0), words + (ptrdiff_t)q0 * (kp / 2));
        for (int l0 = first; l0 < end; l0 += NR) {
            int const w = minimum(NR, cp - l0), columns = minimum(w, channels - l0);
            const uint32_t * const panel = words + (ptrdiff_t)l0 * (kp / 2);
            for (int i0 = 0; i0 < l0 + columns; i0 += MR) {
                int const q0 = i0 / NR * NR, wq = minimum(NR, cp - q0);
                int const skip = i0 > l0 ? i0 - l0 : 0;
                bf16Block(kp, words + (ptrdiff_t)q0 * (kp / 2) + (i0 - q0), wq, panel + skip, w,
                          g + (ptrdiff_t)i0 * ldg + l0 + skip, ldg, minimum(MR, channels - i0), columns - skip, 1,
                          p0 > 0, 0);
            }
        }
    }
}

/* How many panels ahead bf16Multiply asks for the rows of B and C into the second-level cache. Its B and C are maps
 * of a layer, read 48 pixels at a time from as many rows as there are channels, each row far from the next: more
 * streams than the processor follows by itself (on a Zen 5, asking 4 panels ahead made the gradient at 64 channels
 * 1.16 times as fast alone on one core). */
#define MULTIPLY_AHEAD 4

/* Asks for the 48 floats from p on each of `rows` rows `stride` floats apart. */
INLINE void
askForPanel(const float * const p, int const rows, ptrdiff_t const stride) {
    for (int j = 0; j < rows; ++j)
        for (int line = 0; line < NR * (int)sizeof(float) / 64; ++line)
            _mm_prefetch((const char *)(p + j * stride) + 64 * line, _MM_HINT_T1);
}

/* cgemm_multiply on pairs: per slice of k, every 8-row block of A turned into pairs once, then each panel of B. */
static BF16 void
bf16Multiply(int const m, int const n, int const k, float const alpha, const float * const packedA,
             const float * const b, ptrdiff_t const ldb, int const accumulate, float * const c, ptrdiff_t const ldc) {
    int const kp = roundUp8(k), mp = roundUp8(m);
    uint32_t * const slice = malloc(sizeof(uint32_t) * (size_t)mp * (KC / 2));
    _Alignas(64) uint32_t panel[KC / 2 * NR];
    for (int j0 = 0; j0 < kp; j0 += KC) {
        int const kc = minimum(KC, kp - j0);
        for (int i0 = 0; i0 < mp; i0 += MR)
            bf16PackBlock(0, kc, packedA + (ptrdiff_t)i0 * kp + (ptrdiff_t)j0 * MR, MR * MR,
                          slice + (ptrdiff_t)i0 * (kc / 2));
        for (int l0 = 0; l0 < n; l0 += NR) {
            int const nr = minimum(NR, n - l0);
            if (l0 + MULTIPLY_AHEAD * NR < n) {
                askForPanel(b + (ptrdiff_t)j0 * ldb + l0 + MULTIPLY_AHEAD * NR, minimum(kc, k - j0), ldb);
                if (accumulate || j0 > 0)
                    askForPanel(c + l0 + MULTIPLY_AHEAD * NR, m, ldc);
            }
            bf16PackRows(kc, k - j0, b + (ptrdiff_t)j0 * ldb + l0, ldb, nr, panel);
            for (int i0 = 0; i0 < m; i0 += MR)
                bf16Block(kc, slice + (ptrdiff_t)i0 * (kc / 2), MR, panel, nr, c + (ptrdiff_t)i0 * ldc + l0, ldc,
                          minimum(MR, m - i0), nr, alpha, accumulate || j0 > 0, 0);
        }
    }
    free(slice);
}

/* cgemm_bf16_kernel_block on this processor: the forward pairs as bf16Panels512 converts a block of A, the backward
 * ones from the same conversion, each column's eight values two by two. */
static BF16 void
bf16KernelBlock512(int const m, int const k, int const o0, const float * const block, uint32_t * const forward,
                   uint32_t * const backward) {
    bf16PackBlock(0, k, block, MR * MR, forward + (ptrdiff_t)o0 * (k / 2));
    for (int j0 = 0; j0 < k; j0 += MR) {
        /* words[4j + q]: the pair of rows 2q and 2q + 1 in column j0 + j. */
        uint32_t words[4 * MR];
        const float * const values = block + (ptrdiff_t)j0 * MR;
        _mm512_storeu_si512(words, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(values + 16), _mm512_loadu_ps(values)));
        _mm512_storeu_si512(words + 16,
                            (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(values + 48), _mm512_loadu_ps(values + 32)));
        storeBackwardPairs(m, o0, j0, words, backward);
    }
}


/* MARK: - AVX-512 with half-precision multiply-adds */

#define FP16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512fp16")))

/* The pair steps (two values of k each) of a chain: a half-precision block sums them in registers from zero, each lane
 * taking FP16_CHAIN products, each rounded to half precision as it is added, before it adds those sums to its slice's
 * (see fp16BlockIn). */
#define FP16_CHAIN 32

/* Rounding to the nearest half-precision value, ties to even. */
#define NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* 16 pairs from 16 values of an even row (low halves) and 16 of the odd row after it (high halves), each times scale
 * and rounded to half precision (to nearest, ties to even). */
INLINE FP16 __m512i
fp16Pairs512(__m512 const low, __m512 const high, __m512 const scale) {
    static const uint16_t order[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                       8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    __m256i const lows = _mm512_cvtps_ph(_mm512_mul_ps(low, scale), NEAREST);
    __m256i const highs = _mm512_cvtps_ph(_mm512_mul_ps(high, scale), NEAREST);
    __m512i const both = _mm512_inserti64x4(_mm512_castsi256_si512(lows), highs, 1);
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(order), both);
}

/* Rows j0 … j0 + kc of a B panel (nr columns, rows ldb floats apart; rows from `rows` on read as zeros) into
 * half-precision pairs (kc / 2, nr), scaled so that the slice's largest magnitude lies in [2^(exponent − 1),
 * 2^exponent); returns the inverse of that scale. */
INLINE FP16 float
fp16PackRows(int const kc, int const rows, const float * const b, ptrdiff_t const ldb, int const nr, int const exponent,
             uint32_t *pairs) {
    __mmask16 mask[3];
    columnMasks(nr, mask);
    int const filled = minimum(kc, rows);
    __m512 largest = _mm512_setzero_ps();
    for (int j = 0; j < filled; ++j)
        for (int v = 0; v < 3 && mask[v]; ++v)
            largest = _mm512_max_ps(largest, _mm512_abs_ps(_mm512_maskz_loadu_ps(mask[v], b + j * ldb + 16 * v)));
    float const scale = powerOfTwoScale(_mm512_reduce_max_ps(largest), exponent);
    __m512 const scales = _mm512_set1_ps(scale);
    for (int j = 0; j < kc; j += 2) {
        for (int v = 0; v < 3 && mask[v]; ++v) {
            __m512 const low = j < rows ? _mm512_maskz_loadu_ps(mask[v], b + j * ldb + 16 * v) : _mm512_setzero_ps();
            __m512 const high = j + 1 < rows ? _mm512_maskz_loadu_ps(mask[v], b + (j + 1) * ldb + 16 * v)
                                             : _mm512_setzero_ps();
            _mm512_mask_storeu_epi32(pairs + 16 * v, mask[v], fp16Pairs512(low, high, scales));
        }
        pairs += nr;
    }
    return 1 / scale;
}

/* An 8-row block of A laid out as cgemm_pack lays it (A[i][j] at block[8j + i], kc values of k) into the pairs
 * fp16BlockIn reads (pair step j's eight words at pairs + 8j), each value times `scales` rounded to half precision:
 * columns 2j and 2j + 1 are 16 consecutive floats, whose pairs are (value i, value 8 + i). */
INLINE FP16 void
fp16PackBlock(int const kc, const float * const block, __m512 const scales, uint32_t * const pairs) {
    for (int j = 0; j < kc; j += 2) {
        __m256i const halves = _mm512_cvtps_ph(_mm512_mul_ps(_mm512_loadu_ps(block + 8 * j), scales), NEAREST);
        __m128i const even = _mm256_castsi256_si128(halves), odd = _mm256_extracti128_si256(halves, 1);
        _mm_storeu_si128((__m128i *)(pairs + 4 * j), _mm_unpacklo_epi16(even, odd));
        _mm_storeu_si128((__m128i *)(pairs + 4 * j + 4), _mm_unpackhi_epi16(even, odd));
    }
}

/* Where a half-precision block keeps its sums between chains: the caller's memory, 64-byte aligned (on a local array
 * the compiler kept them in registers and moved them through the stack at every flush). */
struct fp16Sums {
    /* single[i][v][h]: row i, columns 16v + 8h … 16v + 8h + 7, each as its even and odd float32 sums side by side. */
    float single[MR][3][2][16];
    /* half[i][v]: the sums of a slice of B's chains so far, in half precision, as the accumulators hold them. */
    uint16_t half[MR][3][32];
};

/* The 8 × columns block of C (columns ≤ 48) from an 8-row block of A (pair step j's eight words at a + j·lda) and a
 * B panel (pair step j's at b + j·nr) over all of k, both in half-precision pairs. Each FP16_CHAIN pair steps are
 * summed in half precision (the lanes of a vector are 16 columns, each with the sum of its even and of its odd values
 * of k); a slice of B's FP16_SLICE values of k takes up to four such chains, each started from zero and added at its
 * end, in half precision, to the sums of the slice's chains before it; that slice's sums, times the inverse scale of
 * the slice (inverses[j / (FP16_SLICE / 2)] for pair step j), are added to float32 sums. Chains of 32 from zero added
 * in half precision round about as little as chains of 32 added in float32 (each chain's partial sums start from
 * zero), with a quarter of the conversions. At the end each column's two float32 sums are added and alpha times that
 * is stored into C (added to it when `accumulate`).
 * Registers: 24 sums, three vectors of B, a broadcast pair of A. Each step also asks for the line of A `prefetch` words
 * ahead. */
INLINE FP16 void
fp16BlockIn(int const vectors, int const k, const uint32_t *a, ptrdiff_t const lda, const uint32_t *b, int const nr,
            const float * const inverses, float * const c, ptrdiff_t const ldc, int const rows, int const columns,
            float const alpha, int const prefetch, struct fp16Sums * const sums, int const accumulate) {
    __mmask16 mask[3];
    columnMasks(columns, mask);
    __m512i const evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    __m512i const odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    __m512 total[MR][3];
    for (int j0 = 0; j0 < k / 2; j0 += FP16_CHAIN) {
        int const end = minimum(k / 2, j0 + FP16_CHAIN);
        /* Whether this chain starts its slice of B, and whether it ends it. */
        int const starts = j0 % (FP16_SLICE / 2) == 0, ends = end % (FP16_SLICE / 2) == 0 || end == k / 2;
        __m512h acc[MR][3];
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < vectors; ++v)
                acc[i][v] = _mm512_setzero_ph();
        for (int j = j0; j < end; ++j) {
            __m512h const b0 = (__m512h)_mm512_maskz_loadu_epi32(mask[0], b);
            __m512h const b1 = vectors > 1 ? (__m512h)_mm512_maskz_loadu_epi32(mask[1], b + 16) : b0;
            __m512h const b2 = vectors > 2 ? (__m512h)_mm512_maskz_loadu_epi32(mask[2], b + 32) : b0;
            b += nr;
            _mm_prefetch((const char *)(a + prefetch), _MM_HINT_T0);
            for (int i = 0; i < MR; ++i) {
                __m512h const ai = (__m512h)_mm512_set1_epi32((int)a[i]);
                acc[i][0] = _mm512_fmadd_ph(ai, b0, acc[i][0]);
                if (vectors > 1)
                    acc[i][1] = _mm512_fmadd_ph(ai, b1, acc[i][1]);
                if (vectors > 2)
                    acc[i][2] = _mm512_fmadd_ph(ai, b2, acc[i][2]);
            }
            a += lda;
        }
        if (!ends) {
            /* The slice's sums so far, kept in half precision for its next chain. */
            for (int i = 0; i < MR; ++i)
                for (int v = 0; v < vectors; ++v)
                    _mm512_store_ph(sums->half[i][v],
                                    starts ? acc[i][v] : _mm512_add_ph(acc[i][v], _mm512_load_ph(sums->half[i][v])));
            continue;
        }
        /* The slice's sums times its inverse scale, added to those of the slices before it (to zero in the first
         * slice, which has none: the float32 sums are never read before they are written); after the last slice, each
         * column's even and odd sums added in registers, without going through memory. */
        __m512 const inverse = _mm512_set1_ps(inverses[j0 / (FP16_SLICE / 2)]);
        int const first = j0 < FP16_SLICE / 2, last = end == k / 2;
        for (int i = 0; i < MR; ++i)
            for (int v = 0; v < vectors; ++v) {
                __m512h const slice = starts ? acc[i][v] : _mm512_add_ph(acc[i][v], _mm512_load_ph(sums->half[i][v]));
                __m256h const low = _mm512_castph512_ph256(slice);
                __m256h const high = (__m256h)_mm512_extracti64x4_epi64((__m512i)slice, 1);
                float * const even = sums->single[i][v][0], * const odd = sums->single[i][v][1];
                __m512 const evenSums = _mm512_fmadd_ps(_mm512_cvtxph_ps(low), inverse,
                                                        first ? _mm512_setzero_ps() : _mm512_load_ps(even));
                __m512 const oddSums = _mm512_fmadd_ps(_mm512_cvtxph_ps(high), inverse,
                                                       first ? _mm512_setzero_ps() : _mm512_load_ps(odd));
                if (last) {
                    total[i][v] = _mm512_add_ps(_mm512_permutex2var_ps(evenSums, evens, oddSums),
                                                _mm512_permutex2var_ps(evenSums, odds, oddSums));
                } else {
                    _mm512_store_ps(even, evenSums);
                    _mm512_store_ps(odd, oddSums);
                }
            }
    }
    storeBlock512(vectors, total, mask, c, ldc, rows, alpha, accumulate);
}

/* fp16BlockIn per vector count (fp16Block48, 32 and 16), as the AVX-512 block is. */
#define FP16_BLOCK_FUNCTION(width)                                                                                     \
    static FP16 __attribute__((noinline)) void fp16Block##width(                                                       \
        int const k, const uint32_t * const a, ptrdiff_t const lda, const uint32_t * const b, int const nr,            \
        const float * const inverses, float * const c, ptrdiff_t const ldc, int const rows, int const columns,         \
        float const alpha, int const prefetch, struct fp16Sums * const sums, int const accumulate) {                   \
        fp16BlockIn(width / 16, k, a, lda, b, nr, inverses, c, ldc, rows, columns, alpha, prefetch, sums,              \
                    accumulate);                                                                                       \
    }
FP16_BLOCK_FUNCTION(48)
FP16_BLOCK_FUNCTION(32)
FP16_BLOCK_FUNCTION(16)
#undef FP16_BLOCK_FUNCTION

typedef void FP16Block(int k, const uint32_t *a, ptrdiff_t lda, const uint32_t *b, int nr, const float *inverses,
                       float *c, ptrdiff_t ldc, int rows, int columns, float alpha, int prefetch,
                       struct fp16Sums *sums, int accumulate);

/* The half-precision block for this many columns. */
static FP16Block *
fp16Block(int const columns) {
    return columns > 32 ? fp16Block48 : columns > 16 ? fp16Block32 : fp16Block16;
}

/* The products of cgemm_panels_fp16 with B in half-precision pairs (its panels' layout, as cgemm_panels_bf16_pairs
 * reads B): each panel of B under every 8-row block of A, all of k in each block; panel p's slice s has the inverse
 * scale inverses[p·inverseStride + s]. A panel's pairs (up to 48 KiB, at 512 values of k) stay in the first-level cache
 * while A streams past them, 32 bytes a step where a panel would take 192 (an evaluation at 512×384 0.98 times as long
 * as with the blocks of A outside). */
static FP16 void
fp16PairsProduct(int const m, int const n, int const k, float const alpha, const uint32_t * const a,
                 const uint32_t * const pairs, const float * const inverses, int const inverseStride, float * const c,
                 ptrdiff_t const ldc) {
    _Alignas(64) struct fp16Sums sums;
    for (int l0 = 0; l0 < n; l0 += NR) {
        int const nr = minimum(NR, n - l0);
        for (int i0 = 0; i0 < m; i0 += MR)
            fp16Block(nr)(k, a + (ptrdiff_t)i0 * (k / 2), MR, pairs + (ptrdiff_t)l0 * (k / 2), nr,
                          inverses + (l0 / NR) * inverseStride, c + (ptrdiff_t)i0 * ldc + l0, ldc, MR, nr, alpha,
                          PAIRS_PREFETCH, &sums, 0);
    }
}

/* B's pairs and their slices' inverse scales, grown as a thread's products need: kept for the thread's life. */
static _Thread_local uint32_t *fp16Words;
static _Thread_local size_t fp16WordCount;

/* cgemm_panels_fp16 on this processor: B converted first, each slice of FP16_SLICE values of k of each panel with its
 * own scale, then the products as fp16PairsProduct runs them. Returns 0 (and computes nothing) when the buffer for B's
 * pairs cannot be had. */
static FP16 int
fp16Product(int const m, int const n, int const k, float const alpha, const uint32_t * const a, const float * const b,
            float * const c, ptrdiff_t const ldc) {
    int const panels = (n + NR - 1) / NR, slices = (k + FP16_SLICE - 1) / FP16_SLICE;
    size_t const pairCount = (size_t)(k / 2) * (size_t)n, needed = pairCount + (size_t)panels * (size_t)slices;
    if (needed > fp16WordCount) {
        void *grown = NULL;
        if (posix_memalign(&grown, 64, needed * sizeof(uint32_t)) != 0)
            return 0;
        free(fp16Words);
        fp16Words = grown;
        fp16WordCount = needed;
    }
    uint32_t * const pairs = fp16Words;
    float * const inverses = (float *)(fp16Words + pairCount);
    for (int l0 = 0; l0 < n; l0 += NR) {
        int const nr = minimum(NR, n - l0);
        for (int j0 = 0; j0 < k; j0 += FP16_SLICE)
            inverses[(l0 / NR) * slices + j0 / FP16_SLICE] =
                fp16PackRows(minimum(FP16_SLICE, k - j0), FP16_SLICE, b + (ptrdiff_t)l0 * k + (ptrdiff_t)j0 * nr, nr,
                             nr, FP16_B_EXPONENT, pairs + (ptrdiff_t)l0 * (k / 2) + (ptrdiff_t)(j0 / 2) * nr);
    }
    fp16PairsProduct(m, n, k, alpha, a, pairs, inverses, slices, c, ldc);
    return 1;
}

/* cgemm_gram_upper_columns in half precision: each slice of pixels packed by `pack` into floats, each of its panels
 * then turned into half-precision pairs with a scale of its own (largest magnitude in [2^3, 2^4)) after them in the
 * work area, and the blocks over them as cgemm_gram_upper takes its blocks, each block's sums times the inverses of
 * its two panels' scales. */
static FP16 void
fp16GramUpper(PackPixels * const pack, int const channels, int const pixels, const float * const f,
              ptrdiff_t const ldf, float * const g, ptrdiff_t const ldg, float * const work, int const first,
              int const end) {
    int const cp = roundUp8(channels), packed = roundUp8(end);
    uint32_t * const words = (uint32_t *)(work + (ptrdiff_t)cp * KC);
    float * const inverses = work + (ptrdiff_t)cp * KC * 3 / 2;  // per panel of 48 channels
    _Alignas(64) struct fp16Sums sums;
    for (int p0 = 0; p0 < pixels; p0 += KC) {
        int const kc = minimum(KC, pixels - p0), kp = roundUp8(kc);
        pack(end, kc, f + p0, ldf, work);
        for (int q0 = 0; q0 < packed; q0 += NR) {
            int const w = minimum(NR, packed - q0);
            inverses[q0 / NR] = fp16PackRows(kp, kp, work + (ptrdiff_t)q0 * kp, w, w, FP16_GRAM_EXPONENT,
                                             words + (ptrdiff_t)q0 * (kp / 2));
        }
        for (int l0 = first; l0 < end; l0 += NR) {
            int const w = minimum(NR, cp - l0), columns = minimum(w, channels - l0);
            const uint32_t * const panel = words + (ptrdiff_t)l0 * (kp / 2);
            for (int i0 = 0; i0 < l0 + columns; i0 += MR) {
                int const q0 = i0 / NR * NR, wq = minimum(NR, cp - q0);
                int const skip = i0 > l0 ? i0 - l0 : 0;
                float const inverse = inverses[q0 / NR] * inverses[l0 / NR];
                fp16Block(columns - skip)(kp, words + (ptrdiff_t)q0 * (kp / 2) + (i0 - q0), wq, panel + skip, w,
                                          &inverse, g + (ptrdiff_t)i0 * ldg + l0 + skip, ldg,
                                          minimum(MR, channels - i0), columns - skip, 1, 0, &sums, p0 > 0);
            }
        }
    }
}

/* cgemm_multiply in half precision, as bf16Multiply goes: per slice of k, A's slice scaled as a whole (largest
 * magnitude in [2^3, 2^4)) and turned into pairs once, then each panel of B turned into pairs with a scale of its own
 * (largest magnitude in [2^3, 2^4)) and the 8-row blocks of A over it. Returns 0 (and computes nothing) when the
 * buffer for A's pairs cannot be had. */
static FP16 int
fp16Multiply(int const m, int const n, int const k, float const alpha, const float * const packedA,
             const float * const b, ptrdiff_t const ldb, int const accumulate, float * const c, ptrdiff_t const ldc) {
    int const kp = roundUp8(k), mp = roundUp8(m);
    uint32_t * const slice = malloc(sizeof(uint32_t) * (size_t)mp * (KC / 2));
    if (slice == NULL)
        return 0;
    _Alignas(64) uint32_t panel[KC / 2 * NR];
    _Alignas(64) struct fp16Sums sums;
    for (int j0 = 0; j0 < kp; j0 += KC) {
        int const kc = minimum(KC, kp - j0);
        __m512 largest = _mm512_setzero_ps();
        for (int i0 = 0; i0 < mp; i0 += MR)
            for (int j = 0; j < kc; j += 2)
                largest = _mm512_max_ps(
                    largest, _mm512_abs_ps(_mm512_loadu_ps(packedA + (ptrdiff_t)i0 * kp + (ptrdiff_t)(j0 + j) * MR)));
        float const scale = powerOfTwoScale(_mm512_reduce_max_ps(largest), FP16_A_EXPONENT);
        for (int i0 = 0; i0 < mp; i0 += MR)
            fp16PackBlock(kc, packedA + (ptrdiff_t)i0 * kp + (ptrdiff_t)j0 * MR, _mm512_set1_ps(scale),
                          slice + (ptrdiff_t)i0 * (kc / 2));
        for (int l0 = 0; l0 < n; l0 += NR) {
            int const nr = minimum(NR, n - l0);
            if (l0 + MULTIPLY_AHEAD * NR < n) {
                askForPanel(b + (ptrdiff_t)j0 * ldb + l0 + MULTIPLY_AHEAD * NR, minimum(kc, k - j0), ldb);
                if (accumulate || j0 > 0)
                    askForPanel(c + l0 + MULTIPLY_AHEAD * NR, m, ldc);
            }
            float const inverse = fp16PackRows(kc, k - j0, b + (ptrdiff_t)j0 * ldb + l0, ldb, nr, FP16_B_EXPONENT,
                                               panel) / scale;
            for (int i0 = 0; i0 < m; i0 += MR)
                fp16Block(nr)(kc, slice + (ptrdiff_t)i0 * (kc / 2), MR, panel, nr, &inverse,
                              c + (ptrdiff_t)i0 * ldc + l0, ldc, minimum(MR, m - i0), nr, alpha, 0, &sums,
                              accumulate || j0 > 0);
        }
    }
    free(slice);
    return 1;
}

/* cgemm_fp16_kernel_block on this processor. */
static FP16 void
fp16KernelBlock512(int const m, int const k, int const o0, const float * const block, float const scale,
                   uint32_t * const forward, uint32_t * const backward) {
    __m512 const scales = _mm512_set1_ps(scale);
    /* Forward: block[8j + i] is A[o0 + i][j], as cgemm_pack lays out a block. */
    fp16PackBlock(k, block, scales, forward + (ptrdiff_t)o0 * (k / 2));
    /* Backward: column j's eight values (rows 0 … 7) are consecutive, so their halves are the pairs of rows 2q and
     * 2q + 1 already; pair q of column j goes to backward + (j / 8)·4m + (o0 / 2 + q)·8 + j % 8. */
    for (int j0 = 0; j0 < k; j0 += MR) {
        uint32_t words[4 * MR];  // words[4j + q]: the pair of rows 2q and 2q + 1 in column j0 + j
        for (int h = 0; h < 4; ++h) {
            __m512 const values = _mm512_mul_ps(_mm512_loadu_ps(block + (ptrdiff_t)j0 * MR + 16 * h), scales);
            _mm256_storeu_si256((__m256i *)(words + 8 * h), _mm512_cvtps_ph(values, NEAREST));
        }
        storeBackwardPairs(m, o0, j0, words, backward);
    }
}

#endif

/* MARK: - Dispatch */

struct kernels {
    Block *block;
    PackPixels *packPixels;
};

static const struct kernels kernelTable[3] = {
    [CGEMM_PORTABLE] = {portableBlock, portablePackPixels},
#if CGEMM_X86
    [CGEMM_AVX2] = {avx2Block, avx2PackPixels},
    [CGEMM_AVX512] = {avx512Block, avx2PackPixels},
#else
    [CGEMM_AVX2] = {portableBlock, portablePackPixels},
    [CGEMM_AVX512] = {portableBlock, portablePackPixels},
#endif
};

/* The selected cgemm_isa, or −1 until the first call that needs it. */
static atomic_int selection = -1;

int
cgemm_supports(cgemm_isa const isa) {
    switch (isa) {
    case CGEMM_PORTABLE:
        return 1;
#if CGEMM_X86
    case CGEMM_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CGEMM_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    default:
        return 0;
    }
}

int
cgemm_supports_bf16(void) {
#if CGEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

void
cgemm_panels_bf16(int const m, int const n, int const k, float const alpha, const float * const a,
                  int const transposedA, const float * const b, float * const c, ptrdiff_t const ldc) {
#if CGEMM_X86
    bf16Panels512(m, n, k, alpha, a, transposedA, b, c, ldc);
#else
    cgemm_panels(m, n, k, alpha, a, transposedA, b, c, ldc);
#endif
}

/* The float a bfloat16 in the low (high = 0) or high half of a pair stands for. */
static inline float
bf16Value(uint32_t const pair, int const high) {
    uint32_t const bits = high ? pair & 0xFFFF0000u : pair << 16;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

void
cgemm_panels_bf16_pairs(int const m, int const n, int const k, float const alpha, const uint32_t * const a,
                        const uint32_t * const pairs, float * const c, ptrdiff_t const ldc) {
#if CGEMM_X86
    bf16PairsProduct(m, n, k, alpha, a, pairs, c, ldc);
#else
    /* Never called where cgemm_supports_bf16() is 0: the pairs' values, summed in float. */
    for (int l0 = 0; l0 < n; l0 += NR) {
        int const nr = minimum(NR, n - l0);
        const uint32_t * const panel = pairs + (ptrdiff_t)l0 * (k / 2);
        for (int i = 0; i < m; ++i)
            for (int l = 0; l < nr; ++l) {
                float sum = 0;
                for (int j = 0; j < k; ++j)
                    sum += bf16Value(a[(ptrdiff_t)(i / MR) * MR * (k / 2) + (j / 2) * MR + i % MR], j % 2)
                           * bf16Value(panel[(ptrdiff_t)(j / 2) * nr + l], j % 2);
                c[(ptrdiff_t)i * ldc + l0 + l] = alpha * sum;
            }
    }
#endif
}

void
cgemm_bf16_kernel_block(int const m, int const k, int const o0, const float * const block, uint32_t * const forward,
                        uint32_t * const backward) {
#if CGEMM_X86
    if (cgemm_supports_bf16()) {
        bf16KernelBlock512(m, k, o0, block, forward, backward);
        return;
    }
#endif
    /* Rounded as the transforms round (cgemm_bf16_pairs): forward, columns 2j and 2j + 1 of the eight rows; backward,
     * rows 2q and 2q + 1 of column j. */
    for (int j = 0; j < k; j += 2)
        cgemm_bf16_pairs(MR, block + (ptrdiff_t)j * MR, block + (ptrdiff_t)(j + 1) * MR,
                         forward + (ptrdiff_t)o0 * (k / 2) + (ptrdiff_t)(j / 2) * MR);
    for (int j = 0; j < k; ++j) {
        float low[MR / 2], high[MR / 2];
        uint32_t pairs[MR / 2];
        for (int q = 0; q < MR / 2; ++q) {
            low[q] = block[(ptrdiff_t)j * MR + 2 * q];
            high[q] = block[(ptrdiff_t)j * MR + 2 * q + 1];
        }
        cgemm_bf16_pairs(MR / 2, low, high, pairs);
        for (int q = 0; q < MR / 2; ++q)
            backward[(ptrdiff_t)(j / MR) * MR * (m / 2) + (o0 / 2 + q) * MR + j % MR] = pairs[q];
    }
}

int
cgemm_supports_fp16(void) {
#if CGEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512fp16");
#else
    return 0;
#endif
}

float
cgemm_fp16_kernel_scale(float const largest) {
    return powerOfTwoScale(largest, FP16_A_EXPONENT);
}

float
cgemm_fp16_tiles_scale(float const largest) {
    return powerOfTwoScale(largest, FP16_B_EXPONENT);
}

/* The word of two half-precision values, scale·low in the low half and scale·high in the high half. */
static uint32_t
halfPair(float const low, float const high, float const scale) {
    return (uint32_t)halfBits(low * scale) | (uint32_t)halfBits(high * scale) << 16;
}

void
cgemm_fp16_kernel_block(int const m, int const k, int const o0, const float * const block, float const scale,
                        uint32_t * const forward, uint32_t * const backward) {
#if CGEMM_X86
    if (cgemm_supports_fp16()) {
        fp16KernelBlock512(m, k, o0, block, scale, forward, backward);
        return;
    }
#endif
    for (int j = 0; j < k; j += 2)
        for (int i = 0; i < MR; ++i)
            forward[(ptrdiff_t)o0 * (k / 2) + (ptrdiff_t)(j / 2) * MR + i] =
                halfPair(block[(ptrdiff_t)j * MR + i], block[(ptrdiff_t)(j + 1) * MR + i], scale);
    for (int j = 0; j < k; ++j)
        for (int q = 0; q < MR / 2; ++q)
            backward[(ptrdiff_t)(j / MR) * MR * (m / 2) + (o0 / 2 + q) * MR + j % MR] =
                halfPair(block[(ptrdiff_t)j * MR + 2 * q], block[(ptrdiff_t)j * MR + 2 * q + 1], scale);
}

/* The half-precision products without AVX512_FP16, over one slice of k (values j0 … j0 + kc) of nr columns of C: A in
 * half-precision pairs (cgemm_panels_bf16_pairs's layout, k values a row), the slice of a B panel in pairs (pair step
 * j at slice + j·nr), the products summed in float; factor times each sum is stored into C, or added to it after the
 * first slice. */
static void
halfSliceInFloat(int const m, int const k, int const j0, int const kc, const uint32_t * const a,
                 const uint32_t * const slice, int const nr, float const factor, float * const c,
                 ptrdiff_t const ldc) {
    for (int i = 0; i < m; ++i)
        for (int l = 0; l < nr; ++l) {
            float sum = 0;
            for (int j = j0; j < j0 + kc; ++j)
                sum += halfOfPair(a[(ptrdiff_t)(i / MR) * MR * (k / 2) + (j / 2) * MR + i % MR], j)
                       * halfOfPair(slice[(ptrdiff_t)((j - j0) / 2) * nr + l], j);
            float * const target = c + (ptrdiff_t)i * ldc + l;
            *target = (j0 > 0 ? *target : 0) + factor * sum;
        }
}

void
cgemm_panels_fp16(int const m, int const n, int const k, float const alpha, const uint32_t * const a,
                  const float * const b, float * const c, ptrdiff_t const ldc) {
#if CGEMM_X86
    if (cgemm_supports_fp16() && fp16Product(m, n, k, alpha, a, b, c, ldc))
        return;
#endif
    /* Where the processor lacks AVX512_FP16 (never called there) or the buffer for B's pairs cannot be had: each slice
     * of each panel of B scaled and rounded to pairs as fp16Product does, then summed as cgemm_panels_fp16_pairs sums
     * there. */
    int const slices = (k + FP16_SLICE - 1) / FP16_SLICE;
    uint32_t pairs[FP16_SLICE / 2 * NR];
    for (int l0 = 0; l0 < n; l0 += NR) {
        int const nr = minimum(NR, n - l0);
        const float * const panel = b + (ptrdiff_t)l0 * k;
        for (int s = 0; s < slices; ++s) {
            int const j0 = s * FP16_SLICE, kc = minimum(FP16_SLICE, k - j0);
            float largest = 0;
            for (int j = j0; j < j0 + kc; ++j)
                for (int l = 0; l < nr; ++l)
                    largest = __builtin_fmaxf(largest, __builtin_fabsf(panel[(ptrdiff_t)j * nr + l]));
            float const scale = powerOfTwoScale(largest, FP16_B_EXPONENT);
            for (int j = 0; j < kc; j += 2)
                for (int l = 0; l < nr; ++l)
                    pairs[(j / 2) * nr + l] = halfPair(panel[(ptrdiff_t)(j0 + j) * nr + l],
                                                       panel[(ptrdiff_t)(j0 + j + 1) * nr + l], scale);
            halfSliceInFloat(m, k, j0, kc, a, pairs, nr, alpha / scale, c + l0, ldc);
        }
    }
}

void
cgemm_panels_fp16_pairs(int const m, int const n, int const k, float const alpha, const uint32_t * const a,
                        const uint32_t * const pairs, const float * const inverses, float * const c,
                        ptrdiff_t const ldc) {
#if CGEMM_X86
    if (cgemm_supports_fp16()) {
        fp16PairsProduct(m, n, k, alpha, a, pairs, inverses, 0, c, ldc);
        return;
    }
#endif
    /* Where the processor lacks AVX512_FP16 (never called there): the products of the half-precision values summed in
     * float, a slice at a time. */
    for (int l0 = 0; l0 < n; l0 += NR) {
        int const nr = minimum(NR, n - l0);
        for (int j0 = 0; j0 < k; j0 += FP16_SLICE)
            halfSliceInFloat(m, k, j0, minimum(FP16_SLICE, k - j0), a,
                             pairs + (ptrdiff_t)l0 * (k / 2) + (ptrdiff_t)(j0 / 2) * nr, nr,
                             alpha * inverses[j0 / FP16_SLICE], c + l0, ldc);
    }
}

cgemm_isa
cgemm_detected(void) {
    return cgemm_supports(CGEMM_AVX512) ? CGEMM_AVX512 : cgemm_supports(CGEMM_AVX2) ? CGEMM_AVX2 : CGEMM_PORTABLE;
}

cgemm_isa
cgemm_selected(void) {
    int isa = atomic_load_explicit(&selection, memory_order_relaxed);
    if (isa < 0) {
        int unset = -1;
        int const detected = (int)cgemm_detected();
        /* A cgemm_select on another thread in between wins. */
        isa = atomic_compare_exchange_strong(&selection, &unset, detected) ? detected : unset;
    }
    return (cgemm_isa)isa;
}

int
cgemm_select(cgemm_isa const isa) {
    if ((int)isa < CGEMM_PORTABLE || (int)isa > CGEMM_AVX512 || !cgemm_supports(isa))
        return 0;
    atomic_store_explicit(&selection, (int)isa, memory_order_relaxed);
    return 1;
}

static const struct kernels *
kernels(void) {
    return &kernelTable[cgemm_selected()];
}

/* MARK: - Products */

/* Each 8-row block of A over every panel of B, the slices of k innermost, as bf16PairsProduct goes: A is read in
 * order, a block at a time, and each block of C stays in the first-level cache while its slices are added to it.
 * Every value of C still takes its slices in increasing order, so the bits are those of one slice after the other
 * over all of C. */
void
cgemm_panels(int const m, int const n, int const k, float const alpha, const float * const a, int const transposedA,
             const float * const b, float * const c, ptrdiff_t const ldc) {
    Block * const block = kernels()->block;
#if CGEMM_X86
    /* On AVX-512, a narrow last panel takes, after the blocks of the full panels on the same rows of A, while those
     * are still in the caches: in rows order the swapped blocks, NARROW_ROWS rows at a time; in transposed order the
     * turned block, 8 rows at a time, on the panel turned once here. */
    int const last = (n - 1) / NR * NR, narrow = cgemm_selected() == CGEMM_AVX512 && swappedPanel(n - last);
    int const swapped = narrow && !transposedA, turned = narrow && transposedA && k <= TURNED_DEPTH;
    if (turned)
        turnPanel(k, b + (ptrdiff_t)last * k, n - last);
#else
    int const last = n, swapped = 0, turned = 0;
#endif
    for (int i0 = 0; i0 < m; i0 += MR)
        for (int l0 = 0; l0 < n; l0 += NR) {
            int const nr = minimum(NR, n - l0);
#if CGEMM_X86
            if (swapped && l0 == last) {
                int const group = i0 / NARROW_ROWS * NARROW_ROWS;
                if (i0 + MR == minimum(m, group + NARROW_ROWS))
                    avx512SwappedPanel(group, minimum(NARROW_ROWS, m - group), k, alpha, a, b + (ptrdiff_t)l0 * k, nr,
                                       c + l0, ldc, last == 0 ? m : group + minimum(NARROW_ROWS, m - group));
                continue;
            }
            if (turned && l0 == last) {
                /* Where this panel is the product's only one, the calls on these eight rows share out asking for
                 * the next eight (k / 2 lines), as the swapped blocks ask for their next rows. */
                int const calls = (nr + TURNED_COLUMNS - 1) / TURNED_COLUMNS;
                int const lines = last == 0 && i0 + MR < m ? k / 2 : 0;
                for (int l = 0, q = 0; l < nr; l += TURNED_COLUMNS, ++q) {
                    struct part const part = partOf(lines, calls, q);
                    avx512Turned(k, alpha, a + (ptrdiff_t)i0 * MR, (ptrdiff_t)m * MR, turnedPanel + (ptrdiff_t)l * k,
                                 minimum(TURNED_COLUMNS, nr - l), c + (ptrdiff_t)i0 * ldc + l0 + l, ldc,
                                 a + (ptrdiff_t)(i0 + MR) * MR, part.first, part.count);
                }
                continue;
            }
#endif
            float * const target = c + (ptrdiff_t)i0 * ldc + l0;
            for (int j0 = 0; j0 < k; j0 += KC) {
                int const kc = minimum(KC, k - j0);
                const float * const panel = b + (ptrdiff_t)l0 * k + (ptrdiff_t)j0 * nr;
                if (transposedA)
                    block(TRANSPOSED, kc, a + (ptrdiff_t)(j0 / MR) * m * MR + (ptrdiff_t)i0 * MR, (ptrdiff_t)m * MR, 0,
                          panel, nr, target, ldc, MR, nr, alpha, j0 > 0);
                else
                    block(ROWS, kc, a + (ptrdiff_t)i0 * k + (ptrdiff_t)j0 * MR, MR * MR, 0, panel, nr, target, ldc, MR,
                          nr, alpha, j0 > 0);
            }
        }
}

size_t
cgemm_gram_work_count(int const channels) {
    /* The floats of a slice, for cgemm_gram_upper_bf16 and cgemm_gram_upper_fp16 their pairs, and for the latter the
     * inverse scale of each panel. */
    return (size_t)roundUp8(channels) * KC * 3 / 2 + (size_t)((channels + NR - 1) / NR);
}

/* The first column of share `share` of `shares` in cgemm_gram_share_columns: the start of the first panel before which
 * the panels' costs reach share / shares of their total (a panel l0 … l0 + w costs its (l0 + w) / 8 blocks of 8
 * rows), or `channels`. */
static int
gramShareStart(int const channels, int const share, int const shares) {
    long total = 0;
    for (int l0 = 0; l0 < channels; l0 += NR)
        total += minimum(channels, l0 + NR);
    long sum = 0;
    for (int l0 = 0; l0 < channels; l0 += NR) {
        if (sum * shares >= total * share)
            return l0;
        sum += minimum(channels, l0 + NR);
    }
    return channels;
}

void
cgemm_gram_share_columns(int const channels, int const share, int const shares, int * const first, int * const end) {
    *first = gramShareStart(channels, share, shares);
    *end = share + 1 < shares ? gramShareStart(channels, share + 1, shares) : channels;
}

/* Pixels in slices of KC, each packed into panels of 48 channels (see PackPixels) that serve as both operands: the
 * block of rows i0 … i0 + 8 and the panel of columns l0 … l0 + w, for the blocks that reach the upper triangle, from
 * column i0 on. Of the lower triangle, only the 8 × 8 squares on the diagonal are written. Only the channels below
 * `end` are packed: the panels from `first` on use no others. */
void
cgemm_gram_upper_columns(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf,
                         float * const g, ptrdiff_t const ldg, float * const work, int const first, int const end) {
    if (first >= end)
        return;
    if (pixels <= 0) {
        for (int i = 0; i < end; ++i) {
            int const from = i > first ? i : first;
            memset(g + (ptrdiff_t)i * ldg + from, 0, sizeof(float) * (size_t)(end - from));
        }
        return;
    }
    const struct kernels * const kernel = kernels();
    int const cp = roundUp8(channels);
    for (int p0 = 0; p0 < pixels; p0 += KC) {
        int const kc = minimum(KC, pixels - p0), kp = roundUp8(kc);
        kernel->packPixels(end, kc, f + p0, ldf, work);
        for (int l0 = first; l0 < end; l0 += NR) {
            int const w = minimum(NR, cp - l0), columns = minimum(w, channels - l0);
            const float * const panel = work + (ptrdiff_t)l0 * kp;
            for (int i0 = 0; i0 < l0 + columns; i0 += MR) {
                int const q0 = i0 / NR * NR, wq = minimum(NR, cp - q0);
                /* On the diagonal, the columns left of the block's first row are skipped. */
                int const skip = i0 > l0 ? i0 - l0 : 0;
                kernel->block(STRIDED, kp, work + (ptrdiff_t)q0 * kp + (i0 - q0), (ptrdiff_t)MR * wq, wq, panel + skip,
                              w, g + (ptrdiff_t)i0 * ldg + l0 + skip, ldg, minimum(MR, channels - i0), columns - skip,
                              1, p0 > 0);
            }
        }
    }
}

void
cgemm_gram_upper(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf, float * const g,
                 ptrdiff_t const ldg, float * const work) {
    cgemm_gram_upper_columns(channels, pixels, f, ldf, g, ldg, work, 0, channels);
}

size_t
cgemm_packed_count(int const m, int const k) {
    return (size_t)roundUp8(m) * (size_t)roundUp8(k);
}

void
cgemm_pack(int const m, int const k, const float * const a, ptrdiff_t const lda, int const transposedA,
           float * const packed) {
    int const mp = roundUp8(m), kp = roundUp8(k);
    for (int i0 = 0; i0 < mp; i0 += MR) {
        float * const panel = packed + (ptrdiff_t)i0 * kp;
        for (int j = 0; j < kp; ++j) {
            for (int r = 0; r < MR; ++r) {
                int const i = i0 + r;
                panel[j * MR + r] = i >= m || j >= k ? 0
                    : transposedA ? a[(ptrdiff_t)j * lda + i] : a[(ptrdiff_t)i * lda + j];
            }
        }
    }
}

void
cgemm_gram_upper_bf16_columns(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf,
                              float * const g, ptrdiff_t const ldg, float * const work, int const first, int const end) {
#if CGEMM_X86
    if (pixels > 0 && first < end && cgemm_supports_bf16()) {
        bf16GramUpper(kernels()->packPixels, channels, pixels, f, ldf, g, ldg, work, first, end);
        return;
    }
#endif
    cgemm_gram_upper_columns(channels, pixels, f, ldf, g, ldg, work, first, end);
}

void
cgemm_gram_upper_bf16(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf, float * const g,
                      ptrdiff_t const ldg, float * const work) {
    cgemm_gram_upper_bf16_columns(channels, pixels, f, ldf, g, ldg, work, 0, channels);
}

void
cgemm_multiply_bf16(int const m, int const n, int const k, float const alpha, const float * const packedA,
                    const float * const b, ptrdiff_t const ldb, int const accumulate, float * const c,
                    ptrdiff_t const ldc) {
#if CGEMM_X86
    if (cgemm_supports_bf16()) {
        bf16Multiply(m, n, k, alpha, packedA, b, ldb, accumulate, c, ldc);
        return;
    }
#endif
    cgemm_multiply(m, n, k, alpha, packedA, b, ldb, accumulate, c, ldc);
}

/* Slices of KC rows of B, each copied panel by panel (48 columns, padded with zero rows to a multiple of 8) into a
 * buffer on the stack that the 8-row blocks of A go over. */
void
cgemm_multiply(int const m, int const n, int const k, float const alpha, const float * const packedA,
               const float * const b, ptrdiff_t const ldb, int const accumulate, float * const c,
               ptrdiff_t const ldc) {
    Block * const block = kernels()->block;
    int const kp = roundUp8(k);
    _Alignas(64) float panel[KC * NR];  // (kc, nr): rows j0 … j0 + kc, columns l0 … l0 + nr of B
    for (int j0 = 0; j0 < kp; j0 += KC) {
        int const kc = minimum(KC, kp - j0);
        for (int l0 = 0; l0 < n; l0 += NR) {
            int const nr = minimum(NR, n - l0);
            for (int j = 0; j < kc; ++j) {
                if (j0 + j < k)
                    memcpy(panel + j * nr, b + (ptrdiff_t)(j0 + j) * ldb + l0, sizeof(float) * (size_t)nr);
                else
                    memset(panel + j * nr, 0, sizeof(float) * (size_t)nr);
            }
            for (int i0 = 0; i0 < m; i0 += MR)
                block(ROWS, kc, packedA + (ptrdiff_t)i0 * kp + (ptrdiff_t)j0 * MR, MR * MR, 0, panel, nr,
                      c + (ptrdiff_t)i0 * ldc + l0, ldc, minimum(MR, m - i0), nr, alpha, accumulate || j0 > 0);
        }
    }
}

void
cgemm_gram_upper_fp16_columns(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf,
                              float * const g, ptrdiff_t const ldg, float * const work, int const first, int const end) {
#if CGEMM_X86
    if (pixels > 0 && first < end && cgemm_supports_fp16()) {
        fp16GramUpper(kernels()->packPixels, channels, pixels, f, ldf, g, ldg, work, first, end);
        return;
    }
#endif
    cgemm_gram_upper_columns(channels, pixels, f, ldf, g, ldg, work, first, end);
}

void
cgemm_gram_upper_fp16(int const channels, int const pixels, const float * const f, ptrdiff_t const ldf, float * const g,
                      ptrdiff_t const ldg, float * const work) {
    cgemm_gram_upper_fp16_columns(channels, pixels, f, ldf, g, ldg, work, 0, channels);
}

void
cgemm_multiply_fp16(int const m, int const n, int const k, float const alpha, const float * const packedA,
                    const float * const b, ptrdiff_t const ldb, int const accumulate, float * const c,
                    ptrdiff_t const ldc) {
#if CGEMM_X86
    if (cgemm_supports_fp16() && fp16Multiply(m, n, k, alpha, packedA, b, ldb, accumulate, c, ldc))
        return;
#endif
    cgemm_multiply(m, n, k, alpha, packedA, b, ldb, accumulate, c, ldc);
}

/*
 * cgemm: the single-precision products of pamstyle's heavy steps, single-threaded, in one of three instruction sets
 * chosen at run time: AVX-512, AVX2 with FMA, or portable C that the compiler vectorizes for the target's baseline.
 *
 *   cgemm_panels      the Winograd convolutions' products, on operands the transforms write in the panels below;
 *   cgemm_gram_upper  the upper triangle of F·Fᵀ for a chunk of pixels (the Gram matrices);
 *   cgemm_multiply    C (+)= alpha · A · B for a row-major B, with A packed once by cgemm_pack (the Gram loss's
 *                     gradient, (G − T) · F).
 * Where the processor has AVX512_BF16, each also comes with bfloat16 operands (the _bf16 functions below).
 *
 * All three come down to one step, an 8-row block of C from 8 rows of A and a panel of B, which is where the
 * instruction sets differ; the loops around it and the packing are shared. Every path reads the same layouts and
 * adds the same terms in the same order (but for a narrow last panel of cgemm_panels in transposed order on AVX-512,
 * whose sums run along k in eight lanes and are added up at the end), so the paths differ only by rounding (fused or
 * separate multiply-adds, and that order), and each is deterministic.
 *
 * Panel layouts (row-major float32 throughout):
 *   A, an m × k matrix with m and k multiples of CGEMM_PANEL_ROWS, in one of two orders:
 *     rows:       panels of CGEMM_PANEL_ROWS rows, (m / 8, k, 8): A[i][j] at (i / 8)·8k + 8j + i % 8;
 *     transposed: A is the transpose of a k × m matrix stored in rows order, (k / 8, m, 8):
 *                 A[i][j] at (j / 8)·8m + 8i + j % 8.
 *   B, a k × n matrix, in panels of CGEMM_PANEL_COLUMNS columns, each stored row by row: B[j][l] at
 *     (l / 48)·48k + w·j + l % 48, where w = min(48, n − 48·(l / 48)) is the width of l's panel (the last panel
 *     holds the columns that remain).
 *   C, an m × n matrix with ldc floats between rows.
 */
#ifndef CGEMM_H
#define CGEMM_H

#include <stddef.h>
#include <stdint.h>

#define CGEMM_PANEL_ROWS 8
#define CGEMM_PANEL_COLUMNS 48
/* The values of k that share one scale in the half-precision products (a slice: see cgemm_panels_fp16). */
#define CGEMM_FP16_SLICE 256

/* The instruction sets of the kernels, from the most portable. */
typedef enum cgemm_isa {
    CGEMM_PORTABLE = 0, /* plain C: SSE2 on x86-64, whatever the compiler targets elsewhere */
    CGEMM_AVX2 = 1,     /* AVX2 and FMA */
    CGEMM_AVX512 = 2,   /* AVX-512F (and AVX2 for the packing) */
} cgemm_isa;

/* 1 when this processor runs the kernels of isa (it has the instructions and the system saves their registers), else
 * 0. CGEMM_PORTABLE always runs. */
int cgemm_supports(cgemm_isa isa);

/* The widest instruction set this processor runs: what the kernels use unless cgemm_select chose another. */
cgemm_isa cgemm_detected(void);

/* The instruction set the kernels use now. */
cgemm_isa cgemm_selected(void);

/* Makes every later call use isa; returns 1, or 0 (and changes nothing) when the processor does not run it. Not to be
 * called while a product runs on another thread. */
int cgemm_select(cgemm_isa isa);

/* C = alpha · A · B on one thread, with A in rows order (transposedA = 0) or transposed order (transposedA = 1).
 * m and k must be positive multiples of CGEMM_PANEL_ROWS and n positive. */
void cgemm_panels(int m, int n, int k, float alpha, const float *a, int transposedA, const float *b, float *c,
                  ptrdiff_t ldc);

/* 1 when this processor runs cgemm_panels_bf16 (AVX-512F and AVX512_BF16, and the system saves their registers),
 * else 0. */
int cgemm_supports_bf16(void);

/* cgemm_panels with A and B rounded to bfloat16 (to nearest, ties to even) and their products summed in float32 by
 * AVX512_BF16's dot products (vdpbf16ps), whatever cgemm_selected() says: twice the multiply-adds per instruction of
 * float32 FMA, with the operands' relative rounding error 2⁻⁹ instead of 2⁻²⁴. The same arguments and layouts; k must
 * be even (it is a multiple of 8). Only where cgemm_supports_bf16(); on one thread, with about 100 KiB of buffers of
 * the calling thread's own. */
void cgemm_panels_bf16(int m, int n, int k, float alpha, const float *a, int transposedA, const float *b, float *c,
                       ptrdiff_t ldc);

/* cgemm_panels_bf16 with both operands already in bfloat16 pairs (a word holding two values, the first in its low
 * half), from cgemm_bf16_kernel_block (A) and cgemm_winograd_input_pairs (B); the products and sums are
 * cgemm_panels_bf16's on the floats those pairs round from, bit for bit. m and k multiples of 8.
 *   A, m × k, in blocks of 8 rows with the values of each row paired along k: (m / 8, k / 2, 8), the pair of A[i][2j]
 *     and A[i][2j + 1] at (i / 8)·4k + 8j + i % 8.
 *   B, k × n, in panels of CGEMM_PANEL_COLUMNS columns paired along k: the pair of B[2j][l] and B[2j + 1][l] at
 *     (l / 48)·48·(k / 2) + w·j + l % 48 (w as for B above). */
void cgemm_panels_bf16_pairs(int m, int n, int k, float alpha, const uint32_t *a, const uint32_t *pairs, float *c,
                             ptrdiff_t ldc);

/* Rows o0 … o0 + 7 of an m × k matrix A as cgemm_panels_bf16_pairs reads A, for it and for its transpose: `block`
 * holds them in cgemm_pack's rows order (A[o0 + i][j] at 8j + i); `forward` receives their pairs in A's layout above,
 * at forward + o0·k / 2, and `backward` the pairs of rows o0 + 2q and o0 + 2q + 1 (q < 4) of every column j, which are
 * Aᵀ's pairs: at backward + (j / 8)·4m + (o0 / 2 + q)·8 + j % 8. Called for every block, it writes both whole;
 * m, k and o0 multiples of 8. */
void cgemm_bf16_kernel_block(int m, int k, int o0, const float *block, uint32_t *forward, uint32_t *backward);

/* 1 when this processor runs cgemm_panels_fp16 (AVX-512 with AVX512_FP16, and the system saves their registers),
 * else 0. */
int cgemm_supports_fp16(void);

/* The power of two that scales a transformed kernel position whose largest magnitude is `largest` into [2^3, 2^4),
 * for cgemm_fp16_kernel_block (1 for a zero or non-finite largest). */
float cgemm_fp16_kernel_scale(float largest);

/* cgemm_bf16_kernel_block's pairs, in its layouts, of scale times the block's values rounded to half precision (to
 * nearest, ties to even), for cgemm_panels_fp16. */
void cgemm_fp16_kernel_block(int m, int k, int o0, const float *block, float scale, uint32_t *forward,
                             uint32_t *backward);

/* C = alpha · A · B on one thread in half precision, with A in half-precision pairs from cgemm_fp16_kernel_block
 * (cgemm_panels_bf16_pairs's layout of A, its values times a scale the caller divides alpha by) and B in floats in
 * cgemm_panels' panels. Each slice of 256 values of k of each panel of B is scaled by the power of two that brings its
 * largest magnitude into [2^3, 2^4) and rounded to half precision in pairs; the products then run on AVX512_FP16's
 * multiply-adds, 32 lanes an instruction (twice float32's), each lane summing its 128 products of a slice in half
 * precision, as chains of 32 from zero each added to the sum of those before it (below 2^15 with A's largest
 * magnitude below 2^4: half precision's largest value is 65504), before that sum, times the inverse of its slice's
 * scale, is added to float32 sums; C is alpha times those. m and k multiples of 8. Only where cgemm_supports_fp16()
 * (elsewhere the same roundings with the products summed in float); on one thread, with a buffer of its own for B's
 * pairs that grows to the largest B it has seen. */
void cgemm_panels_fp16(int m, int n, int k, float alpha, const uint32_t *a, const float *b, float *c, ptrdiff_t ldc);

/* The power of two that scales B's values for cgemm_panels_fp16_pairs when their magnitudes are at most `largest`:
 * into [2^3, 2^4) when that bound is reached (1 for a zero or non-finite largest). */
float cgemm_fp16_tiles_scale(float largest);

/* cgemm_panels_fp16 with B already in half-precision pairs, in cgemm_panels_bf16_pairs's layout of B (from
 * cgemm_winograd_input_half_pairs), each value of slice s (values s·256 … s·256 + 255 of k) scaled by a power of two
 * whose inverse is inverses[s], the same in every panel, and no value's magnitude above 2^4: the products and sums
 * as cgemm_panels_fp16 runs them. Where the scaled values and the partial sums stay above half precision's smallest
 * normal value, the same bits as cgemm_panels_fp16 on the floats the pairs stand for, whatever those powers of two.
 * Only where cgemm_supports_fp16() (elsewhere the same roundings with the products summed in float); on one thread. */
void cgemm_panels_fp16_pairs(int m, int n, int k, float alpha, const uint32_t *a, const uint32_t *pairs,
                             const float *inverses, float *c, ptrdiff_t ldc);

/* The floats of a work area for cgemm_gram_upper, cgemm_gram_upper_bf16 or cgemm_gram_upper_fp16 with this many
 * channels. */
size_t cgemm_gram_work_count(int channels);

/* G = F·Fᵀ on one thread, upper triangle: g[i·ldg + j] = Σ_p f[i·ldf + p] · f[j·ldf + p] for i ≤ j < channels, the sum
 * over p < pixels in float32 (keep pixels to a few thousand and sum the chunks in float64 for large maps). Entries
 * below the diagonal of G may be overwritten with other values; nothing outside the channels × channels matrix is
 * written. With no pixels, the upper triangle is zero. channels positive, ldf ≥ pixels, ldg ≥ channels; work holds
 * cgemm_gram_work_count(channels) floats. */
void cgemm_gram_upper(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg, float *work);

/* cgemm_gram_upper for the columns first … end − 1 of G only: g[i·ldg + j] for i ≤ j, first ≤ j < end, the same bits
 * there as cgemm_gram_upper gives, and nothing written outside those columns and the rows above `end`; only the
 * channels below `end` are read. first a multiple of 48 (CGEMM_PANEL_COLUMNS), end one or
 * `channels`; with first ≥ end, nothing. Several threads may write columns of their own of one G. */
void cgemm_gram_upper_columns(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg,
                              float *work, int first, int end);

/* The columns [first, end) of a channels × channels Gram matrix that share `share` of `shares` computes with
 * cgemm_gram_upper_columns: whole panels of 48 in order, each share with about the same part of the upper triangle's
 * products (a share may have none). */
void cgemm_gram_share_columns(int channels, int share, int shares, int *first, int *end);

/* cgemm_gram_upper with F rounded to bfloat16 (as cgemm_panels_bf16 rounds) and the products summed in float32 by
 * AVX512_BF16's dot products, whatever cgemm_selected() says (its pixel packing aside). Only where
 * cgemm_supports_bf16(); elsewhere it is cgemm_gram_upper. */
void cgemm_gram_upper_bf16(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg,
                           float *work);

/* cgemm_gram_upper_columns in cgemm_gram_upper_bf16's arithmetic. */
void cgemm_gram_upper_bf16_columns(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg,
                                   float *work, int first, int end);

/* cgemm_gram_upper in half precision: each slice of 128 pixels of each panel of 48 channels scaled by the power of two
 * that brings its largest magnitude into [2^3, 2^4) and rounded to half precision (to nearest, ties to even), the
 * products summed as cgemm_panels_fp16 sums them (each lane's 64 products of a slice in half precision, as two chains
 * of 32, then times the inverses of both panels' scales into float32 sums). Only where cgemm_supports_fp16();
 * elsewhere it is cgemm_gram_upper. */
void cgemm_gram_upper_fp16(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg,
                           float *work);

/* cgemm_gram_upper_columns in cgemm_gram_upper_fp16's arithmetic. */
void cgemm_gram_upper_fp16_columns(int channels, int pixels, const float *f, ptrdiff_t ldf, float *g, ptrdiff_t ldg,
                                   float *work, int first, int end);

/* The floats cgemm_pack writes for an m × k matrix: m and k each rounded up to a multiple of 8. */
size_t cgemm_packed_count(int m, int k);

/* Writes the m × k matrix A (a[i·lda + j], or a[j·lda + i] when transposedA) in the rows order above, its rows and
 * columns padded with zeros to multiples of 8: (⌈m/8⌉, ⌈k/8⌉·8, 8). m and k positive. */
void cgemm_pack(int m, int k, const float *a, ptrdiff_t lda, int transposedA, float *packed);

/* C = alpha · A · B, or C += alpha · A · B when accumulate, on one thread: A (m × k) packed by cgemm_pack, B (k × n)
 * row-major at b[j·ldb + l], C (m × n) at c[i·ldc + l]; nothing outside those m × n entries is written. m, n and k
 * positive. */
void cgemm_multiply(int m, int n, int k, float alpha, const float *packedA, const float *b, ptrdiff_t ldb,
                    int accumulate, float *c, ptrdiff_t ldc);

/* cgemm_multiply with A and B rounded to bfloat16 (as cgemm_panels_bf16 rounds) and the products summed in float32 by
 * AVX512_BF16's dot products, whatever cgemm_selected() says; allocates m·64 words for A's pairs. Only where
 * cgemm_supports_bf16(); elsewhere it is cgemm_multiply. */
void cgemm_multiply_bf16(int m, int n, int k, float alpha, const float *packedA, const float *b, ptrdiff_t ldb,
                         int accumulate, float *c, ptrdiff_t ldc);

/* cgemm_multiply in half precision: each slice of 128 values of k of A scaled by the power of two that brings its
 * largest magnitude into [2^3, 2^4), each slice of each panel of 48 columns of B by the one that brings its largest
 * into [2^3, 2^4), both rounded to half precision (to nearest, ties to even) and their products summed as
 * cgemm_panels_fp16 sums them (each lane's 64 products of a slice as two chains of 32); allocates m·64 words for A's
 * pairs. Only where cgemm_supports_fp16(); elsewhere (or when that allocation fails) it is cgemm_multiply. */
void cgemm_multiply_fp16(int m, int n, int k, float alpha, const float *packedA, const float *b, ptrdiff_t ldb,
                         int accumulate, float *c, ptrdiff_t ldc);

/* The tile transforms of Winograd's F(4×4, 3×3) (tile 4) and F(6×6, 3×3) (tile 6) for one channel's tile row
 * (Sources/Kernels/Winograd.swift has the matrices and layouts), with α = tile + 2 input values a side and α²
 * positions, eight tiles an AVX2 vector on the avx2 path, sixteen an AVX-512 vector on the avx512 one (two channels'
 * eight for the input to bfloat16 pairs where AVX512_BF16 is), and the target's baseline on the portable one; all
 * give the same bits (no fused multiply-adds).
 *
 * cgemm_winograd_work_count: the floats of the work area of any of the transforms for a tile row of at most
 * phaseStride − 8 tiles (phaseStride a multiple of 8).
 *
 * cgemm_winograd_input: V = Bᵀ d B of the tiles of one tile row. rows: the α input rows the tiles read (the row above
 * the tile row's first to the one below its last), NULL for a row outside the map (zeros); each `width` floats. The
 * tiles, tilesX of them, go to transformed + k·positionStride + offset(tile) for position k, where offset is
 * WinogradPanels.offset of tile firstTile + t of channel `channel` of `channels`, in panels of panelWidth tiles of
 * panelCount. With `ahead` (floats, or 0), each input row's values `ahead` floats on are asked for into the caches
 * as the row is read: where the rows of the next call will be. The places of the same tiles of channel + 1, where
 * there is one, are asked for too, for the call that transforms that channel's tile row.
 *
 * cgemm_winograd_input_pairs: the same transform for two channels, `low` and `high` their input rows, written as
 * bfloat16 pairs (rounded as cgemm_panels_bf16 rounds) for cgemm_panels_bf16_pairs: pair `pair` of `pairCount`, the
 * low channel's value of each tile in a 32-bit word's low half and the high one's in its high half, at
 * pairs + k·positionStride + offset(tile) for position k, offset as above with channel `pair` of `pairCount`; the
 * places of pair + 1 asked for as above.
 *
 * cgemm_winograd_input_half_pairs: the same pairs in half precision, each value times `scale` (a power of two) rounded
 * to nearest, ties to even, for cgemm_panels_fp16_pairs: sixteen values an AVX-512 vector and vcvtps2ph where
 * AVX512_FP16 is, the other paths rounding in plain C; the same bits on every path.
 *
 * cgemm_winograd_output: Y = Aᵀ M A of tilesX tiles of one tile row, M at transformed + k·positionStride + t for
 * position k and tile t, into the first `rows` (≤ tile) rows of `output`, rowStride floats apart, `width` columns each.
 */
size_t cgemm_winograd_work_count(int tile, int phaseStride);

void cgemm_winograd_input(int tile, const float *const rows[], int width, int tilesX, int phaseStride, float *work,
                          float *transformed, ptrdiff_t positionStride, int panelWidth, int panelCount, int channel,
                          int channels, int firstTile, ptrdiff_t ahead);

void cgemm_winograd_input_pairs(int tile, const float *const low[], const float *const high[], int width, int tilesX,
                                int phaseStride, float *work, uint32_t *pairs, ptrdiff_t positionStride, int panelWidth,
                                int panelCount, int pair, int pairCount, int firstTile, ptrdiff_t ahead);

void cgemm_winograd_input_half_pairs(int tile, const float *const low[], const float *const high[], int width,
                                     int tilesX, int phaseStride, float *work, uint32_t *pairs,
                                     ptrdiff_t positionStride, int panelWidth, int panelCount, int pair, int pairCount,
                                     int firstTile, ptrdiff_t ahead, float scale);

/* The most by which Bᵀ d B of a tile of either algorithm (tile 4 or 6) can exceed the largest magnitude of d: the square
 * of the largest sum of magnitudes of a row of Bᵀ. */
float cgemm_winograd_input_gain(int tile);

/* The largest magnitude of count floats at each of x, x + stride, … (blocks of them); NaNs are passed over. */
float cgemm_largest_magnitude(const float *x, ptrdiff_t count, int blocks, ptrdiff_t stride);

/* pairs[i] = the bfloat16 pair of low[i] (low half) and high[i] (high half), rounded as cgemm_winograd_input_pairs
 * rounds: for i < count. */
void cgemm_bf16_pairs(int count, const float *low, const float *high, uint32_t *pairs);

void cgemm_winograd_output(int tile, const float *transformed, ptrdiff_t positionStride, int tilesX, int width,
                           int rows, float *output, ptrdiff_t rowStride, float *work);

/* 2×2 max pooling of one row: out[x] = the largest of top[2x], top[2x + 1], bottom[2x], bottom[2x + 1] (the first of
 * equal ones, in that order), and its number in that order, 0 … 3, in bits 2(x mod 4) … 2(x mod 4) + 1 of
 * choices[x / 4], for x < outputs. The same bits on every instruction set. */
void cgemm_max_pool_row(const float *top, const float *bottom, int outputs, float *out, uint8_t *choices);

/* The input gradient of 2×2 pooling on one input row, the top (bottom = 0) or bottom (bottom = 1) row of its windows:
 * out[x] for x < 2·windows is the gradient of window x / 2, gradient[x / 2], where that window chose x (its number
 * 2·bottom + x mod 2 in choices as cgemm_max_pool_row records them), or a quarter of it for every x when choices is
 * NULL (average pooling); zero where the window chose another value, and zero where bit x mod 8 of mask[x / 8] is
 * clear, when mask is given. The same bits on every instruction set. */
void cgemm_pool_backward_row(const float *gradient, int windows, const uint8_t *choices, int bottom,
                             const uint8_t *mask, float *out);

/* The bias and ReLU of one map row after its convolution: row[x] = row[x] + bias where that sum is above zero, else
 * zero, and bit x mod 8 of mask[x / 8] set where it was above zero, for x < width (the bits of a last partial byte
 * past width are clear). The same bits on every instruction set. */
void cgemm_bias_relu_row(float *row, int width, float bias, uint8_t *mask);

/* The chain rule through that ReLU: gradient[x] = 0 where bit x mod 8 of mask[x / 8] is clear, for x < width. */
void cgemm_relu_mask_row(float *gradient, int width, const uint8_t *mask);

/* One output row of a 3×3 convolution of few input channels by direct sums: output[o·channelStride + x] =
 * Σ over r < rows and dx < 3 of kernel[o·3·rows + 3r + dx] · staged[r][x + dx], for o < outChannels and x < width.
 * staged[r] holds an input row with the padding either side: width + 2 floats, column −1 first (row r is input channel
 * r / 3 at the output row's y + r % 3 − 1, as im2col orders k). Only where cgemm_direct_conv3_supported(outChannels):
 * on the AVX-512 path, for a multiple of 4 output channels; each sum in the order of r and dx, with fused
 * multiply-adds. */
int cgemm_direct_conv3_supported(int outChannels);
void cgemm_direct_conv3_row(int outChannels, int rows, const float *const staged[], int width, const float *kernel,
                            float *output, ptrdiff_t channelStride);

/* A hint to the processor that the caller is spinning in a wait loop. */
static inline void
cgemm_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#endif

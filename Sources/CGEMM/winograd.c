/*
 * The input and output tile transforms of Winograd's F(4×4, 3×3) and F(6×6, 3×3) for one channel's tile row (see
 * cgemm.h and Sources/Kernels/Winograd.swift for the matrices and layouts), in the widest vectors the selected
 * instruction set has: the same code compiled for AVX2 (eight tiles are one ymm register) and for the target's baseline
 * (portable); where AVX-512 is, sixteen tiles of a channel a zmm register (inputRowWide, outputRowWide), the input's
 * groups that a panel's end splits stored with masks; and for the input transform to bfloat16 pairs where AVX512_BF16
 * is, or to half-precision pairs where AVX512_FP16 is, two channels' eight tiles side by side. All compute every value
 * with the same operations in the same order, so all give the same bits. Also the largest magnitude of a band's input
 * rows and the most the input transform can grow it, from which the half-precision pairs take their scale.
 */
#include "cgemm.h"
#include "half.h"

#include <stdint.h>
#include <string.h>

/* The vector helpers below are always inlined: their 256-bit arguments never cross a call on the baseline target. */
#pragma clang diagnostic ignored "-Wpsabi"
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__x86_64__) || defined(__i386__)
#define WINOGRAD_X86 1
#include <immintrin.h>
#else
#define WINOGRAD_X86 0
#endif

/* Every path computes each value with the same operations: none may fuse a multiply and an add where another cannot. */
#pragma STDC FP_CONTRACT OFF

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

/* Sixteen and thirty-two floats: registers put side by side for shuffles that draw from more than two; and sixteen
 * values of the transforms at once, one zmm register where the target has AVX-512. */
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));
typedef float v32 __attribute__((vector_size(128)));

INLINE v16
load16(const float * const p) {
    return *(const v16u *)p;
}

INLINE void
store16(v16 const v, float * const p) {
    *(v16u *)p = v;
}

/* a's eight values, then b's. */
INLINE v16
joined(v8 const a, v8 const b) {
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

INLINE v8
lowHalf(v16 const v) {
    return __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
}

INLINE v8
highHalf(v16 const v) {
    return __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* Eight 32-bit words: the bits of eight floats, or eight pairs of bfloat16 values. */
typedef uint32_t w8 __attribute__((vector_size(32)));
typedef uint32_t w8u __attribute__((vector_size(32), aligned(4)));

/* The bits of eight floats rounded to bfloat16 in their upper halves, as AVX512_BF16's vcvtneps2bf16 rounds finite
 * values: to nearest, ties to even, subnormal inputs taken as zero of their sign. */
INLINE w8
bf16Rounded(v8 const x) {
    w8 bits;
    memcpy(&bits, &x, sizeof bits);
    w8 const subnormal = (w8)((bits & 0x7F800000u) == 0);
    bits &= ~(subnormal & 0x7FFFFFFFu);
    return bits + 0x7FFFu + ((bits >> 16) & 1u);
}

/* Eight bfloat16 pairs, each low's value in the low half and high's in the high half, as vdpbf16ps pairs them. */
INLINE w8
bf16Pairs(v8 const low, v8 const high) {
    return (bf16Rounded(high) & 0xFFFF0000u) | (bf16Rounded(low) >> 16);
}

/* How a path makes the pairs of two channels' eight values side by side, the low channel's in lanes 0 … 7: bfloat16
 * pairs (bf16PairsOfHalves or bf16PairsHardware), which keep float's range and take the values as they are, or
 * half-precision pairs of the values times `scale` (halfPairsOfHalves or halfPairsHardware). A constant wherever the
 * transforms are inlined. */
typedef w8 PairsOf(v16 values, v16 scale);

INLINE w8
bf16PairsOfHalves(v16 const both, v16 const scale) {
    (void)scale;
    return bf16Pairs(lowHalf(both), highHalf(both));
}

/* The half-precision pairs of scale times two channels' eight values, rounded as halfBits rounds. */
INLINE w8
halfPairsOfHalves(v16 const both, v16 const scale) {
    v16 const scaled = both * scale;
    uint32_t words[8];
    for (int lane = 0; lane < 8; ++lane)
        words[lane] = (uint32_t)halfBits(scaled[lane]) | (uint32_t)halfBits(scaled[lane + 8]) << 16;
    w8 pairs;
    memcpy(&pairs, words, sizeof pairs);
    return pairs;
}

#if WINOGRAD_X86
#define BF16_TARGET __attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512bf16")))

/* bf16PairsOfHalves in AVX512_BF16's instructions: the sixteen values rounded by vcvtneps2bf16 (the rounding
 * bf16Rounded copies), then each high value put next to its low one. */
INLINE BF16_TARGET w8
bf16PairsHardware(v16 const both, v16 const scale) {
    (void)scale;
    __m256i const rounded = (__m256i)_mm512_cvtneps_pbh((__m512)both);  // low's 8 values, then high's
    __m256i const order = _mm256_setr_epi16(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    return (w8)_mm256_permutexvar_epi16(order, rounded);
}

#define HALF_TARGET __attribute__((target("avx2,avx512f,avx512vl,avx512bw,f16c")))

/* halfPairsOfHalves in AVX-512's conversion to half precision (vcvtps2ph, to nearest, ties to even), then each high
 * value put next to its low one. */
INLINE HALF_TARGET w8
halfPairsHardware(v16 const both, v16 const scale) {
    __m256i const rounded = _mm512_cvtps_ph((__m512)(both * scale), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i const order = _mm256_setr_epi16(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    return (w8)_mm256_permutexvar_epi16(order, rounded);
}
#endif

/* The transforms' arithmetic on eight tiles of one channel (v8, this file's vectors) and on sixteen values (v16: two
 * channels' eight tiles side by side, the one of `work` in the low lanes and of `workHigh` in the high ones, one zmm
 * register where the target has AVX-512). GATHERED(offset) is the vector of the tiles at that offset of the split
 * rows, LOADED and STORED move vectors to and from the staged tiles; the header undefines them at its end. */
#define VECTOR v8
#define NAMED(name) name
#define LANES 8
#define GATHERED(offset) load8(work + (offset))
#define LOADED(p) load8(p)
#define STORED(v, p) store8(v, p)
#include "tile_transforms.h"
#define VECTOR v16
#define NAMED(name) name##16
#define LANES 16
#define GATHERED(offset) joined(load8(work + (offset)), load8(workHigh + (offset)))
#define LOADED(p) load16(p)
#define STORED(v, p) store16(v, p)
#include "tile_transforms.h"

/* Where tile `tile` of channel `channel` sits within a position's floats (WinogradPanels.offset). */
INLINE ptrdiff_t
panelOffset(int const tile, int const channel, int const channels, int const panelWidth, int const panelCount) {
    int const first = tile / panelWidth * panelWidth;
    int const width = panelCount - first < panelWidth ? panelCount - first : panelWidth;
    return (ptrdiff_t)first * channels + (ptrdiff_t)channel * width + (tile - first);
}

/* How a group of eight or sixteen transformed values of the tiles from `tile` (32-bit words each) goes to a channel's
 * places in a position: in one store at `offset` when the panel holding the first has room for the whole group (lanes
 * past the tile row's end then fall on the channel's places of tiles that come later in the band, which their own
 * tile row writes over afterwards); else `split` of them there and the rest at `rest`, the next panel's first places.
 * Every panel but the last is at least sixteen tiles wide, so no group spans three. */
struct tilePlaces {
    ptrdiff_t offset, rest;
    int split;
};

INLINE struct tilePlaces
tilePlaces(int const tile, int const group, int const lanes, int const channel, int const channels,
           int const panelWidth, int const panelCount) {
    int const first = tile / panelWidth * panelWidth;
    int const width = panelCount - first < panelWidth ? panelCount - first : panelWidth;
    struct tilePlaces places = {panelOffset(tile, channel, channels, panelWidth, panelCount), 0, group};
    if (tile - first + group > width) {
        places.split = first + width - tile < lanes ? first + width - tile : lanes;
        if (places.split < lanes)
            places.rest = panelOffset(first + width, channel, channels, panelWidth, panelCount);
    }
    return places;
}

/* Stores eight words (lanes of them that count) at their places, `stride` words after `base`. */
INLINE void
storeTileWords(w8 const words, struct tilePlaces const places, int const lanes, uint32_t * const base,
               ptrdiff_t const stride) {
    if (places.split == 8) {
        *(w8u *)(base + places.offset + stride) = words;
        return;
    }
    uint32_t staged[8];
    memcpy(staged, &words, sizeof staged);
    memcpy(base + places.offset + stride, staged, sizeof(uint32_t) * (size_t)places.split);
    if (places.split < lanes)
        memcpy(base + places.rest + stride, staged + places.split, sizeof(uint32_t) * (size_t)(lanes - places.split));
}

#if WINOGRAD_X86
/* The AVX-512 input transform's instructions: AVX-512VL's masked stores of eight words, and PREFETCHW, with which
 * askForPlaces asks for lines to write (a plain prefetch fetches a line the other core holds in a shared state, and the
 * store then has to ask again). */
#define AVX512_TARGET __attribute__((target("avx2,avx512f,avx512vl,prfchw")))

/* storeTileWords in AVX-512's masked stores, where the other calls memcpy for the parts. */
INLINE __attribute__((target("avx2,avx512f,avx512vl"))) void
storeTileWordsMasked(w8 const words, struct tilePlaces const places, int const lanes, uint32_t * const base,
                     ptrdiff_t const stride) {
    if (places.split == 8) {
        *(w8u *)(base + places.offset + stride) = words;
        return;
    }
    _mm256_mask_storeu_epi32(base + places.offset + stride, (__mmask8)((1u << places.split) - 1), (__m256i)words);
    if (places.split < lanes) {
        __m256i const from = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                              _mm256_set1_epi32(places.split));
        _mm256_mask_storeu_epi32(base + places.rest + stride, (__mmask8)((1u << (lanes - places.split)) - 1),
                                 _mm256_permutexvar_epi32(from, (__m256i)words));
    }
}

/* Sixteen words at their places (a group of sixteen in tilePlaces), `stride` words after `base`, `lanes` of them that
 * count. */
INLINE __attribute__((target("avx512f"))) void
storeWideWords(__m512i const words, struct tilePlaces const places, int const lanes, uint32_t * const base,
               ptrdiff_t const stride) {
    if (places.split == 16) {
        _mm512_storeu_si512(base + places.offset + stride, words);
        return;
    }
    _mm512_mask_storeu_epi32(base + places.offset + stride, (__mmask16)((1u << places.split) - 1), words);
    if (places.split < lanes) {
        __m512i const from = _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                              _mm512_set1_epi32(places.split));
        _mm512_mask_storeu_epi32(base + places.rest + stride, (__mmask16)((1u << (lanes - places.split)) - 1),
                                 _mm512_permutexvar_epi32(from, words));
    }
}
#endif

/* How a path stores a pair's words (storeTileWords or storeTileWordsMasked): a constant wherever it is inlined. */
typedef void StoreWords(w8, struct tilePlaces, int, uint32_t *, ptrdiff_t);

/* The 8m values of eight tiles' output row, value j of lane l at row[m·l + j], in registers. */
INLINE void
storeTileRowIn(int const m, const v8 * const y, float * const row) {
    if (m == 4) {
        /* The 4 × 8 values turned into 8 × 4, in registers. */
        v8 const y01 = __builtin_shufflevector(y[0], y[1], 0, 8, 1, 9, 2, 10, 3, 11);
        v8 const y01High = __builtin_shufflevector(y[0], y[1], 4, 12, 5, 13, 6, 14, 7, 15);
        v8 const y23 = __builtin_shufflevector(y[2], y[3], 0, 8, 1, 9, 2, 10, 3, 11);
        v8 const y23High = __builtin_shufflevector(y[2], y[3], 4, 12, 5, 13, 6, 14, 7, 15);
        store8(__builtin_shufflevector(y01, y23, 0, 1, 8, 9, 2, 3, 10, 11), row);
        store8(__builtin_shufflevector(y01, y23, 4, 5, 12, 13, 6, 7, 14, 15), row + 8);
        store8(__builtin_shufflevector(y01High, y23High, 0, 1, 8, 9, 2, 3, 10, 11), row + 16);
        store8(__builtin_shufflevector(y01High, y23High, 4, 5, 12, 13, 6, 7, 14, 15), row + 24);
        return;
    }
    /* Value j of lane l at 6l + j: each 8 of the 48 drawn from the six registers side by side. */
    v16 const y01 = __builtin_shufflevector(y[0], y[1], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    v16 const y23 = __builtin_shufflevector(y[2], y[3], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    v16 const y45 = __builtin_shufflevector(y[4], y[5], 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    v32 const low = __builtin_shufflevector(y01, y23, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,
                                            19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
    v32 const high = __builtin_shufflevector(y45, y45, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2,
                                             3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    /* Index of value j of lane l: 8j + l, counting the second register's from 32. */
    store8(__builtin_shufflevector(low, high, 0, 8, 16, 24, 32, 40, 1, 9), row);
    store8(__builtin_shufflevector(low, high, 17, 25, 33, 41, 2, 10, 18, 26), row + 8);
    store8(__builtin_shufflevector(low, high, 34, 42, 3, 11, 19, 27, 35, 43), row + 16);
    store8(__builtin_shufflevector(low, high, 4, 12, 20, 28, 36, 44, 5, 13), row + 24);
    store8(__builtin_shufflevector(low, high, 21, 29, 37, 45, 6, 14, 22, 30), row + 32);
    store8(__builtin_shufflevector(low, high, 38, 46, 7, 15, 23, 31, 39, 47), row + 40);
}

/* Writes one output row of the tiles t … t + lanes − 1 of a tile row: y[j] holds, lane by lane, value j of each tile's
 * row (m values a tile, m = 4 or 6), which go to row[m·lane + j], up to `columns` values: eight whole tiles in
 * registers, fewer (the row's last tiles) arranged the same way in line, 8m floats of work, and copied from there. */
INLINE void
storeTileRow(int const m, const v8 * const y, int const lanes, int const columns, float * const row,
             float * const line) {
    if (columns < 8 * m) {
        storeTileRowIn(m, y, line);
        int const count = columns < m * lanes ? columns : m * lanes;
        int x = 0;
        for (; x + 8 <= count; x += 8)
            store8(load8(line + x), row + x);
        for (; x < count; ++x)
            row[x] = line[x];
        return;
    }
    storeTileRowIn(m, y, row);
}

/* Asks for `lines` cache lines from p into the caches, for rows the next call reads (see cgemm_winograd_input). */
INLINE void
askAhead(const float * const p, int const lines) {
    for (int line = 0; line < lines; ++line)
        __builtin_prefetch(p + 16 * line, 0, 3);
}

/* Zeros the places of a row of `width` floats split by x + 1 mod m (q[p, s] = row at x = ms + p − 1, m phases of qs
 * floats from q) that lie outside the row: x = −1, and x ≥ width up to the end of each phase. The split writes the
 * others. */
INLINE void
clearSplitEdges(float * const q, int const m, int const qs, int const width) {
    q[0] = 0;
    for (int p = 0; p < m; ++p) {
        int const first = (width + m - p) / m;  // the least s with ms + p − 1 ≥ width
        if (first < qs)
            memset(q + p * qs + first, 0, sizeof(float) * (size_t)(qs - first));
    }
}

/* The six input rows of a tile row, each split by x + 1 mod 4 into work: q[j, p, s] = row j at x = 4s + p − 1 (zero
 * outside the map). */
INLINE void
splitRows(const float * const rows[], int const width, int const qs, ptrdiff_t const ahead, float * const work) {
    for (int j = 0; j < 6; ++j) {
        float * const q = work + j * 4 * qs;
        const float * const row = rows[j];
        if (!row) {
            memset(q, 0, sizeof(float) * 4 * (size_t)qs);
            continue;
        }
        clearSplitEdges(q, 4, qs, width);
        int x = 0;
        for (; x + 32 <= width; x += 32) {
            if (ahead)
                askAhead(row + x + ahead, 2);
            /* Eight tiles' worth: the 32 values deinterleaved by x mod 4, in registers. */
            v8 const a = load8(row + x), b = load8(row + x + 8), c = load8(row + x + 16), d = load8(row + x + 24);
            v8 const ab0 = __builtin_shufflevector(a, b, 0, 4, 8, 12, 1, 5, 9, 13);
            v8 const ab1 = __builtin_shufflevector(a, b, 2, 6, 10, 14, 3, 7, 11, 15);
            v8 const cd0 = __builtin_shufflevector(c, d, 0, 4, 8, 12, 1, 5, 9, 13);
            v8 const cd1 = __builtin_shufflevector(c, d, 2, 6, 10, 14, 3, 7, 11, 15);
            int const s = x >> 2;
            store8(__builtin_shufflevector(ab0, cd0, 0, 1, 2, 3, 8, 9, 10, 11), q + qs + s);
            store8(__builtin_shufflevector(ab0, cd0, 4, 5, 6, 7, 12, 13, 14, 15), q + 2 * qs + s);
            store8(__builtin_shufflevector(ab1, cd1, 0, 1, 2, 3, 8, 9, 10, 11), q + 3 * qs + s);
            store8(__builtin_shufflevector(ab1, cd1, 4, 5, 6, 7, 12, 13, 14, 15), q + s + 1);
        }
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
}

/* The eight input rows of a tile row, each split by x + 1 mod 6 into work: q[j, p, s] = row j at x = 6s + p − 1. */
INLINE void
splitRows6(const float * const rows[], int const width, int const qs, ptrdiff_t const ahead, float * const work) {
    for (int j = 0; j < 8; ++j) {
        float * const q = work + j * 6 * qs;
        const float * const row = rows[j];
        if (!row) {
            memset(q, 0, sizeof(float) * 6 * (size_t)qs);
            continue;
        }
        clearSplitEdges(q, 6, qs, width);
        int x = 0;
        for (; x + 48 <= width; x += 48) {
            if (ahead)
                askAhead(row + x + ahead, 3);
            /* Eight tiles' worth: the 48 values deinterleaved by x mod 6, in registers. */
            v8 const a0 = load8(row + x), a1 = load8(row + x + 8), a2 = load8(row + x + 16);
            v8 const a3 = load8(row + x + 24), a4 = load8(row + x + 32), a5 = load8(row + x + 40);
            v16 const first = __builtin_shufflevector(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            v16 const middle = __builtin_shufflevector(a2, a3, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            v16 const last = __builtin_shufflevector(a4, a5, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            v32 const low = __builtin_shufflevector(first, middle, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                    15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31);
            v32 const high = __builtin_shufflevector(last, last, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                                     0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            int const s = x / 6;
#define PHASE(p) __builtin_shufflevector(low, high, p, p + 6, p + 12, p + 18, p + 24, p + 30, p + 36, p + 42)
            store8(PHASE(0), q + qs + s);
            store8(PHASE(1), q + 2 * qs + s);
            store8(PHASE(2), q + 3 * qs + s);
            store8(PHASE(3), q + 4 * qs + s);
            store8(PHASE(4), q + 5 * qs + s);
            store8(PHASE(5), q + s + 1);
#undef PHASE
        }
        for (; x + 6 <= width; x += 6) {
            int const s = x / 6;
            q[qs + s] = row[x];
            q[2 * qs + s] = row[x + 1];
            q[3 * qs + s] = row[x + 2];
            q[4 * qs + s] = row[x + 3];
            q[5 * qs + s] = row[x + 4];
            q[s + 1] = row[x + 5];
        }
        for (; x < width; ++x)
            q[((x + 1) % 6) * qs + (x + 1) / 6] = row[x];
    }
}

/* The floats of one channel's part of a work area: its split rows (splitRows), then its staged tiles. */
INLINE int
splitCount(int const tile, int const qs) {
    return tile == 6 ? 48 * qs : 24 * qs;
}

INLINE int
channelWorkCount(int const tile, int const qs) {
    return splitCount(tile, qs) + (tile == 6 ? 512 : 288);
}

/* The input rows of either tile split; `tile` is a constant wherever this is inlined. */
INLINE void
splitTileRows(int const tile, const float * const rows[], int const width, int const qs, ptrdiff_t const ahead,
              float * const work) {
    if (tile == 6)
        splitRows6(rows, width, qs, ahead, work);
    else
        splitRows(rows, width, qs, ahead, work);
}

/* Asks for the lines that the same tile row of channel `channel` (of `channels`) takes at each of `positions`
 * positions, positionStride words apart from `base`: those the transform of the next channel writes. A band's
 * transformed tiles often outgrow the second-level cache; without this, each of the α² positions' lines comes from
 * further out only when a store reaches it, one after another, and on an Intel Xeon (family 6 model 207) the input
 * transform of the deep layers' bands took three to four times as long. One request per 64-byte line of each run of
 * tiles within a panel, and one for the run's last word. */
INLINE void
askForPlaces(const uint32_t * const base, int const positions, ptrdiff_t const positionStride, int const firstTile,
             int const tilesX, int const channel, int const channels, int const panelWidth, int const panelCount) {
    if (channel >= channels)
        return;
    for (int tile = firstTile; tile < firstTile + tilesX;) {
        int const panelEnd = (tile / panelWidth + 1) * panelWidth;
        int const end = panelEnd < firstTile + tilesX ? panelEnd : firstTile + tilesX;
        ptrdiff_t const offset = panelOffset(tile, channel, channels, panelWidth, panelCount);
        int const words = end - tile;
        for (int k = 0; k < positions; ++k) {
            const uint32_t * const run = base + k * positionStride + offset;
            for (int word = 0; word < words; word += 16)
                __builtin_prefetch(run + word, 1, 3);
            __builtin_prefetch(run + words - 1, 1, 3);
        }
        tile = end;
    }
}

/* One group of at most eight tiles of inputRow, from tile t, `lanes` of them in the row, from the split rows in work
 * through the staged tiles in tmp, stored by storeWords. */
INLINE void
inputGroup(int const tile, StoreWords * const storeWords, const float * const work, int const qs, int const t,
           int const lanes, float * const tmp, float * const transformed, ptrdiff_t const positionStride,
           int const panelWidth, int const panelCount, int const channel, int const channels, int const firstTile) {
    int const alpha = tile + 2;
    rowStage(tile, work, NULL, qs, t, tmp);  // eight lanes read work alone
    struct tilePlaces const places = tilePlaces(firstTile + t, 8, lanes, channel, channels, panelWidth, panelCount);
    for (int k = 0; k < alpha; ++k) {
        v8 v[8];
        columnStage(tile, tmp, k, v);
        for (int i = 0; i < alpha; ++i) {
            w8 words;
            memcpy(&words, &v[i], sizeof words);
            storeWords(words, places, lanes, (uint32_t *)transformed, (ptrdiff_t)(k + alpha * i) * positionStride);
        }
    }
}

/* V = Bᵀ d B of one channel's tile row, written as floats at its panel offset, position k + α·i of a tile (α = tile
 * + 2) positionStride floats after position 0, by storeWords (storeTileWords or storeTileWordsMasked). */
INLINE void
inputRow(int const tile, StoreWords * const storeWords, const float * const rows[], int const width, int const tilesX,
         int const qs, float * const work, float * const transformed, ptrdiff_t const positionStride,
         int const panelWidth, int const panelCount, int const channel, int const channels, int const firstTile,
         ptrdiff_t const ahead) {
    int const alpha = tile + 2;
    float * const tmp = work + splitCount(tile, qs);
    askForPlaces((const uint32_t *)transformed, alpha * alpha, positionStride, firstTile, tilesX, channel + 1,
                 channels, panelWidth, panelCount);
    splitTileRows(tile, rows, width, qs, ahead, work);
    for (int t = 0; t < tilesX; t += 8)
        inputGroup(tile, storeWords, work, qs, t, tilesX - t < 8 ? tilesX - t : 8, tmp, transformed, positionStride,
                   panelWidth, panelCount, channel, channels, firstTile);
}

#if WINOGRAD_X86
/* inputRow on AVX-512: sixteen tiles of the channel a zmm register (the transforms of tiles t … t + 7 and t + 8 … t + 15
 * side by side, as inputRowPairs puts two channels), stored by storeWideWords, and a last group of eight or fewer as
 * inputRow takes it. Each value takes the same operations as in inputRow, so the same bits. */
INLINE AVX512_TARGET void
inputRowWide(int const tile, const float * const rows[], int const width, int const tilesX, int const qs,
             float * const work, float * const transformed, ptrdiff_t const positionStride, int const panelWidth,
             int const panelCount, int const channel, int const channels, int const firstTile, ptrdiff_t const ahead) {
    int const alpha = tile + 2;
    float * const tmp = work + splitCount(tile, qs);
    askForPlaces((const uint32_t *)transformed, alpha * alpha, positionStride, firstTile, tilesX, channel + 1,
                 channels, panelWidth, panelCount);
    splitTileRows(tile, rows, width, qs, ahead, work);
    int t = 0;
    for (; tilesX - t > 8; t += 16) {
        int const lanes = tilesX - t < 16 ? tilesX - t : 16;
        rowStage16(tile, work, work + 8, qs, t, tmp);
        struct tilePlaces const places = tilePlaces(firstTile + t, 16, lanes, channel, channels, panelWidth,
                                                    panelCount);
        for (int k = 0; k < alpha; ++k) {
            v16 v[8];
            columnStage16(tile, tmp, k, v);
            for (int i = 0; i < alpha; ++i)
                storeWideWords((__m512i)v[i], places, lanes, (uint32_t *)transformed,
                               (ptrdiff_t)(k + alpha * i) * positionStride);
        }
    }
    if (t < tilesX)
        inputGroup(tile, storeTileWordsMasked, work, qs, t, tilesX - t, tmp, transformed, positionStride, panelWidth,
                   panelCount, channel, channels, firstTile);
}
#endif

/* inputRow for two channels at once, written as bfloat16 pairs: the even channel's value in each word's low half. The
 * two channels' eight tiles go through the transforms side by side, sixteen values a vector. Work: the low channel's
 * split rows, the high one's, then both channels' staged tiles (2 channelWorkCount floats in all). */
INLINE void
inputRowPairs(int const tile, PairsOf * const pairsOf, StoreWords * const storeWords, const float * const low[],
              const float * const high[],
              int const width, int const tilesX, int const qs, float * const work, uint32_t * const pairs,
              ptrdiff_t const positionStride, int const panelWidth, int const panelCount, int const pair,
              int const pairCount, int const firstTile, ptrdiff_t const ahead, float const scale) {
    int const alpha = tile + 2;
    v16 const scales = {scale, scale, scale, scale, scale, scale, scale, scale,
                        scale, scale, scale, scale, scale, scale, scale, scale};
    float * const workHigh = work + splitCount(tile, qs), * const tmp = workHigh + splitCount(tile, qs);
    askForPlaces(pairs, alpha * alpha, positionStride, firstTile, tilesX, pair + 1, pairCount, panelWidth, panelCount);
    splitTileRows(tile, low, width, qs, ahead, work);
    splitTileRows(tile, high, width, qs, ahead, workHigh);
    for (int t = 0; t < tilesX; t += 8) {
        int const lanes = tilesX - t < 8 ? tilesX - t : 8;
        rowStage16(tile, work, workHigh, qs, t, tmp);
        struct tilePlaces const places = tilePlaces(firstTile + t, 8, lanes, pair, pairCount, panelWidth, panelCount);
        for (int k = 0; k < alpha; ++k) {
            v16 v[8];
            columnStage16(tile, tmp, k, v);
            for (int i = 0; i < alpha; ++i)
                storeWords(pairsOf(v[i], scales), places, lanes, pairs, (ptrdiff_t)(k + alpha * i) * positionStride);
        }
    }
}

/* Lanes 0 … 7 and 8 … 15 of each of `count` vectors. */
INLINE void
splitHalves(int const count, const v16 * const y, v8 * const low, v8 * const high) {
    for (int j = 0; j < count; ++j) {
        low[j] = lowHalf(y[j]);
        high[j] = highHalf(y[j]);
    }
}

/* One group of at most eight tiles of outputRow, from tile t, `lanes` of them in the row. */
INLINE void
outputGroup(int const tile, const float * const transformed, ptrdiff_t const positionStride, int const t,
            int const lanes, int const width, int const rows, float * const output, ptrdiff_t const rowStride,
            float * const work) {
    int const alpha = tile + 2;
    float * const tmp = work, * const line = work + tile * alpha * 8;
    /* Columns first: z[i', k] = Σ_i Aᵀ[i', i] M[α·i + k]. */
    for (int k = 0; k < alpha; ++k) {
        const float * const s = transformed + k * positionStride + t;
        v8 m[8], z[6];
        for (int i = 0; i < alpha; ++i)
            m[i] = load8(s + alpha * i * positionStride);
        outputStage(tile, m, z);
        for (int i = 0; i < tile; ++i)
            store8(z[i], tmp + k * 8 + alpha * 8 * i);
    }
    for (int i = 0; i < rows; ++i) {
        const float * const s = tmp + i * alpha * 8;
        v8 m[8], y[6];
        for (int j = 0; j < alpha; ++j)
            m[j] = load8(s + 8 * j);
        outputStage(tile, m, y);
        storeTileRow(tile, y, lanes, width - tile * t, output + i * rowStride + tile * t, line);
    }
}

/* Y = Aᵀ M A of one channel's tile row, from the products at position k + α·i of a tile positionStride floats after
 * position 0, into `rows` rows of the output, eight tiles at a time. */
INLINE void
outputRow(int const tile, const float * const transformed, ptrdiff_t const positionStride, int const tilesX,
          int const width, int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    for (int t = 0; t < tilesX; t += 8)
        outputGroup(tile, transformed, positionStride, t, tilesX - t < 8 ? tilesX - t : 8, width, rows, output,
                    rowStride, work);
}

#if WINOGRAD_X86
/* outputRow on AVX-512: sixteen tiles a zmm register, each output row's two halves stored as outputRow stores eight
 * tiles, and a last group of eight or fewer as outputRow takes it. The same operations on each value, so the same
 * bits. Reads as outputRow does: the lanes past the row fall on later tiles of the band, or on the 16 floats after a
 * position's last channel (winogradPositionStride). */
INLINE __attribute__((target("avx2,avx512f"))) void
outputRowWide(int const tile, const float * const transformed, ptrdiff_t const positionStride, int const tilesX,
              int const width, int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    int const alpha = tile + 2;
    float * const tmp = work, * const line = work + tile * alpha * 16;
    int t = 0;
    for (; tilesX - t > 8; t += 16) {
        for (int k = 0; k < alpha; ++k) {
            const float * const s = transformed + k * positionStride + t;
            v16 m[8], z[6];
            for (int i = 0; i < alpha; ++i)
                m[i] = *(const v16u *)(s + alpha * i * positionStride);
            outputStage16(tile, m, z);
            for (int i = 0; i < tile; ++i)
                *(v16u *)(tmp + k * 16 + alpha * 16 * i) = z[i];
        }
        int const lanes = tilesX - t < 16 ? tilesX - t : 16;
        for (int i = 0; i < rows; ++i) {
            const float * const s = tmp + i * alpha * 16;
            v16 m[8], y[6];
            for (int j = 0; j < alpha; ++j)
                m[j] = *(const v16u *)(s + 16 * j);
            outputStage16(tile, m, y);
            v8 low[6], high[6];
            splitHalves(tile, y, low, high);
            float * const row = output + i * rowStride + tile * t;
            storeTileRow(tile, low, 8, width - tile * t, row, line);
            storeTileRow(tile, high, lanes - 8, width - tile * (t + 8), row + 8 * tile, line);
        }
    }
    if (t < tilesX)
        outputGroup(tile, transformed, positionStride, t, tilesX - t, width, rows, output, rowStride, work);
}

/* outputRowWide for either tile. */
static __attribute__((target("avx2,avx512f"))) void
outputAVX512(int const tile, const float * const transformed, ptrdiff_t const positionStride, int const tilesX,
             int const width, int const rows, float * const output, ptrdiff_t const rowStride, float * const work) {
    if (tile == 6)
        outputRowWide(6, transformed, positionStride, tilesX, width, rows, output, rowStride, work);
    else
        outputRowWide(4, transformed, positionStride, tilesX, width, rows, output, rowStride, work);
}
#endif

/* The input transform in pairs of one instruction set, with its ways of making pairs and storing them. */
#define PAIRS_FUNCTION(name, attributes, pairsOf, storeWords)                                                          \
    static attributes void name(int const tile, const float * const low[], const float * const high[],                \
                                int const width, int const tilesX, int const qs, float * const work,                   \
                                uint32_t * const pairs, ptrdiff_t const positionStride, int const panelWidth,          \
                                int const panelCount, int const pair, int const pairCount, int const firstTile,        \
                                ptrdiff_t const ahead, float const scale) {                                            \
        if (tile == 6)                                                                                                 \
            inputRowPairs(6, pairsOf, storeWords, low, high, width, tilesX, qs, work, pairs, positionStride,           \
                          panelWidth, panelCount, pair, pairCount, firstTile, ahead, scale);                           \
        else                                                                                                           \
            inputRowPairs(4, pairsOf, storeWords, low, high, width, tilesX, qs, work, pairs, positionStride,           \
                          panelWidth, panelCount, pair, pairCount, firstTile, ahead, scale);                           \
    }

/* The body of an input function: inputRow for either tile, storing with storeWords. */
#define INPUT_ROWS(storeWords)                                                                                         \
    if (tile == 6)                                                                                                     \
        inputRow(6, storeWords, rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount,    \
                 channel, channels, firstTile, ahead);                                                                 \
    else                                                                                                               \
        inputRow(4, storeWords, rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount,    \
                 channel, channels, firstTile, ahead);

/* The arguments of an input function. */
#define INPUT_PARAMETERS                                                                                               \
    int const tile, const float * const rows[], int const width, int const tilesX, int const qs, float * const work,  \
        float * const transformed, ptrdiff_t const positionStride, int const panelWidth, int const panelCount,         \
        int const channel, int const channels, int const firstTile, ptrdiff_t const ahead

/* One function per instruction set and direction, each for both tiles: the rows of the portable and the AVX2 code are
 * the same source compiled twice. */
#define ROW_FUNCTIONS(suffix, attributes)                                                                              \
    static attributes void input##suffix(INPUT_PARAMETERS) {                                                         \
        INPUT_ROWS(storeTileWords)                                                                                     \
    }                                                                                                                  \
    PAIRS_FUNCTION(inputPairs##suffix, attributes, bf16PairsOfHalves, storeTileWords)                                 \
    PAIRS_FUNCTION(inputHalfPairs##suffix, attributes, halfPairsOfHalves, storeTileWords)                             \
    static attributes void output##suffix(int const tile, const float * const transformed,                           \
                                          ptrdiff_t const positionStride, int const tilesX, int const width,           \
                                          int const rows, float * const output, ptrdiff_t const rowStride,             \
                                          float * const work) {                                                        \
        if (tile == 6)                                                                                                 \
            outputRow(6, transformed, positionStride, tilesX, width, rows, output, rowStride, work);                  \
        else                                                                                                           \
            outputRow(4, transformed, positionStride, tilesX, width, rows, output, rowStride, work);                  \
    }

ROW_FUNCTIONS(Portable, )

#if WINOGRAD_X86
/* No FMA: the compiler would fuse the transforms' multiply-adds on this path alone, and the paths would differ. */
ROW_FUNCTIONS(AVX2, __attribute__((target("avx2"))))
/* Where AVX512_BF16 is, the pairs' rounding in its instruction; the transforms as on the AVX2 path (FP_CONTRACT is off
 * above, so the FMA this target has fuses nothing). */
PAIRS_FUNCTION(inputPairsAVX512BF16, BF16_TARGET, bf16PairsHardware, storeTileWordsMasked)
/* Where AVX512_FP16 is (the only processors whose products read these pairs), the half-precision rounding in AVX-512's
 * conversion. */
PAIRS_FUNCTION(inputHalfPairsAVX512, HALF_TARGET, halfPairsHardware, storeTileWordsMasked)
/* The input transform on AVX-512: inputRowWide for either tile, with the masked stores for the groups of tiles a
 * panel's end splits, where the other paths call memcpy twice, and PREFETCHW (see AVX512_TARGET): the same bits. */
static AVX512_TARGET void
inputAVX512(INPUT_PARAMETERS) {
    if (tile == 6)
        inputRowWide(6, rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount, channel,
                     channels, firstTile, ahead);
    else
        inputRowWide(4, rows, width, tilesX, qs, work, transformed, positionStride, panelWidth, panelCount, channel,
                     channels, firstTile, ahead);
}

#endif

#if WINOGRAD_X86
/* cgemm_largest_magnitude in AVX-512 vectors; vmaxps gives its second operand where either is a NaN, so NaNs are
 * passed over as the portable comparison passes them over. */
static __attribute__((target("avx512f"))) float
largestMagnitudeAVX512(const float * const x, ptrdiff_t const count, int const blocks, ptrdiff_t const stride) {
    __m512 largest = _mm512_setzero_ps();
    for (int b = 0; b < blocks; ++b) {
        const float * const p = x + b * stride;
        ptrdiff_t i = 0;
        for (; i + 16 <= count; i += 16)
            largest = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(p + i)), largest);
        if (i < count)
            largest = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps((__mmask16)((1u << (count - i)) - 1), p + i)),
                                    largest);
    }
    return _mm512_reduce_max_ps(largest);
}
#endif

size_t
cgemm_winograd_work_count(int const tile, int const phaseStride) {
    /* Two channels' split rows and staged tiles, for cgemm_winograd_input_pairs. */
    return 2 * (size_t)channelWorkCount(tile, phaseStride);
}

void
cgemm_winograd_input(int const tile, const float * const rows[], int const width, int const tilesX,
                     int const phaseStride, float * const work, float * const transformed,
                     ptrdiff_t const positionStride, int const panelWidth, int const panelCount, int const channel,
                     int const channels, int const firstTile, ptrdiff_t const ahead) {
#if WINOGRAD_X86
    if (cgemm_selected() == CGEMM_AVX512) {
        inputAVX512(tile, rows, width, tilesX, phaseStride, work, transformed, positionStride, panelWidth, panelCount,
                    channel, channels, firstTile, ahead);
        return;
    }
    if (cgemm_selected() != CGEMM_PORTABLE) {
        inputAVX2(tile, rows, width, tilesX, phaseStride, work, transformed, positionStride, panelWidth, panelCount,
                  channel, channels, firstTile, ahead);
        return;
    }
#endif
    inputPortable(tile, rows, width, tilesX, phaseStride, work, transformed, positionStride, panelWidth, panelCount,
                  channel, channels, firstTile, ahead);
}

void
cgemm_winograd_input_pairs(int const tile, const float * const low[], const float * const high[], int const width,
                           int const tilesX, int const phaseStride, float * const work, uint32_t * const pairs,
                           ptrdiff_t const positionStride, int const panelWidth, int const panelCount, int const pair,
                           int const pairCount, int const firstTile, ptrdiff_t const ahead) {
#if WINOGRAD_X86
    if (cgemm_selected() != CGEMM_PORTABLE && cgemm_supports_bf16()) {
        inputPairsAVX512BF16(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth,
                             panelCount, pair, pairCount, firstTile, ahead, 1);
        return;
    }
    if (cgemm_selected() != CGEMM_PORTABLE) {
        inputPairsAVX2(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth, panelCount,
                       pair, pairCount, firstTile, ahead, 1);
        return;
    }
#endif
    inputPairsPortable(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth, panelCount,
                       pair, pairCount, firstTile, ahead, 1);
}

void
cgemm_winograd_input_half_pairs(int const tile, const float * const low[], const float * const high[],
                                int const width, int const tilesX, int const phaseStride, float * const work,
                                uint32_t * const pairs, ptrdiff_t const positionStride, int const panelWidth,
                                int const panelCount, int const pair, int const pairCount, int const firstTile,
                                ptrdiff_t const ahead, float const scale) {
#if WINOGRAD_X86
    if (cgemm_selected() != CGEMM_PORTABLE && cgemm_supports_fp16()) {
        inputHalfPairsAVX512(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth,
                             panelCount, pair, pairCount, firstTile, ahead, scale);
        return;
    }
    if (cgemm_selected() != CGEMM_PORTABLE) {
        inputHalfPairsAVX2(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth,
                           panelCount, pair, pairCount, firstTile, ahead, scale);
        return;
    }
#endif
    inputHalfPairsPortable(tile, low, high, width, tilesX, phaseStride, work, pairs, positionStride, panelWidth,
                           panelCount, pair, pairCount, firstTile, ahead, scale);
}

float
cgemm_winograd_input_gain(int const tile) {
    /* The largest sum of magnitudes of a row of Bᵀ (tile_transforms.h): 2·2 + 7·2 in F(4×4)'s out[1], 4·4 + 17·2
     * in F(6×6)'s out[1] (and 4·2 + 21·2 in its out[0] and out[7]); Bᵀ d B takes it once along each axis. */
    float const row = tile == 6 ? 50 : 18;
    return row * row;
}

float
cgemm_largest_magnitude(const float * const x, ptrdiff_t const count, int const blocks, ptrdiff_t const stride) {
#if WINOGRAD_X86
    if (cgemm_supports(CGEMM_AVX512))
        return largestMagnitudeAVX512(x, count, blocks, stride);
#endif
    float largest = 0;
    for (int b = 0; b < blocks; ++b)
        for (ptrdiff_t i = 0; i < count; ++i) {
            float const magnitude = __builtin_fabsf(x[b * stride + i]);
            largest = magnitude > largest ? magnitude : largest;
        }
    return largest;
}

void
cgemm_bf16_pairs(int const count, const float * const low, const float * const high, uint32_t * const pairs) {
    for (int i = 0; i < count; i += 8) {
        int const lanes = count - i < 8 ? count - i : 8;
        float l[8] = {0}, h[8] = {0};
        memcpy(l, low + i, sizeof(float) * (size_t)lanes);
        memcpy(h, high + i, sizeof(float) * (size_t)lanes);
        w8 const words = bf16Pairs(load8(l), load8(h));
        memcpy(pairs + i, &words, sizeof(uint32_t) * (size_t)lanes);
    }
}

void
cgemm_winograd_output(int const tile, const float * const transformed, ptrdiff_t const positionStride,
                      int const tilesX, int const width, int const rows, float * const output,
                      ptrdiff_t const rowStride, float * const work) {
#if WINOGRAD_X86
    if (cgemm_selected() == CGEMM_AVX512) {
        outputAVX512(tile, transformed, positionStride, tilesX, width, rows, output, rowStride, work);
        return;
    }
    if (cgemm_selected() != CGEMM_PORTABLE) {
        outputAVX2(tile, transformed, positionStride, tilesX, width, rows, output, rowStride, work);
        return;
    }
#endif
    outputPortable(tile, transformed, positionStride, tilesX, width, rows, output, rowStride, work);
}

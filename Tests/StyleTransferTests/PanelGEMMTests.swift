import CGEMM
import XCTest
@testable import Kernels
@testable import StyleTransfer

/// x rounded to the nearest bfloat16, ties to even (no NaNs or subnormals here).
private func bf16(_ x: Float) -> Double {
    let bits = x.bitPattern
    return Double(Float(bitPattern: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000))
}

/// x rounded to the nearest half-precision value, ties to even (as the products round their scaled operands: a power
/// of two does not change the rounding of a value that stays normal).
private func half(_ x: Float) -> Double {
    Double(Float16(x))
}

/// A bound on the error of summing `terms` (in the order of k) as cgemm_gram_upper_fp16 and cgemm_multiply_fp16 sum
/// them: each lane takes the even or the odd values of k of a slice of 128, in two chains of 32 (64 values of k from a
/// multiple of 64), each step's multiply-add rounded once to half precision (2⁻¹¹ of the partial sum), the second
/// chain's sum added to the first's in half precision (2⁻¹¹ of the slice's), then the slices' sums added in float32.
private func halfSumBound(_ terms: [Double]) -> Double {
    var bound = 0.0, size = 0.0
    for slice in stride(from: 0, to: terms.count, by: 128) {
        for parity in 0 ..< 2 {
            var sliceSum = 0.0
            for start in stride(from: slice, to: min(terms.count, slice + 128), by: 64) {
                var partial = 0.0
                for t in stride(from: start + parity, to: min(terms.count, start + 64), by: 2) {
                    partial += terms[t]
                    bound += abs(partial)
                    size += abs(terms[t])
                }
                sliceSum += partial
            }
            bound += abs(sliceSum)
        }
    }
    return 1.01 * 0x1p-11 * bound + 1e-6 * size
}

/// The CGEMM kernels on each instruction set this processor runs, against float64 products written out from the
/// layouts and contracts in cgemm.h.
final class PanelGEMMTests: XCTestCase {
    func testPortableKernels() throws {
        try checkKernels(on: .portable)
    }

    func testAVX2Kernels() throws {
        try checkKernels(on: .avx2)
    }

    func testAVX512Kernels() throws {
        try checkKernels(on: .avx512)
    }

    /// cgemm_panels_bf16 computes the product of its operands rounded to bfloat16 (to nearest, ties to even), summed
    /// in float32: against the float64 product of the rounded operands, in both orders of A, for the shapes of
    /// `checkPanelProduct` and column counts past the eight panels it converts at a time.
    func testBF16Products() throws {
        try XCTSkipUnless(ProductPrecision.bf16.isSupported, "the processor has no AVX512_BF16")
        XCTAssertEqual(bf16(1 + 1.0 / 512), 1)  // a tie: to the even 1
        XCTAssertEqual(bf16(1 + 3.0 / 512), 1 + 4.0 / 512)
        checkPanelProduct(product: cgemm_panels_bf16, operand: bf16, shapes: [(16, 400, 136), (8, 387, 24)],
                              "bf16")
    }

    /// cgemm_gram_upper_bf16 and cgemm_multiply_bf16 compute the products of their operands rounded to bfloat16,
    /// summed in float32, with each pixel packing of the own paths: the shapes, paddings and guards of the single-
    /// precision checks, against the float64 products of the rounded operands.
    func testBF16GramAndMultiply() throws {
        try XCTSkipUnless(ProductPrecision.bf16.isSupported, "the processor has no AVX512_BF16")
        for path in supportedKernelPaths where path != .openblas {
            try withKernelPath(path) {
                checkGramUpperTriangle(path, product: cgemm_gram_upper_bf16, operand: bf16)
                checkMultiply(path, product: cgemm_multiply_bf16, operand: bf16)
            }
        }
    }

    /// cgemm_gram_upper_fp16 and cgemm_multiply_fp16 compute the products of their operands rounded to half precision,
    /// 32 a lane summed in half precision, then in float32, with each pixel packing of the own paths: the shapes,
    /// paddings and guards of the single-precision checks, against the float64 products of the rounded operands, within
    /// the rounding of each of those half-precision partial sums; and a Gram matrix of features far above and far below
    /// one, which the scale of each panel of 48 channels keeps within half precision's range.
    func testHalfGramAndMultiply() throws {
        try XCTSkipUnless(ProductPrecision.half.isSupported, "the processor has no AVX512_FP16")
        for path in supportedKernelPaths where path != .openblas {
            try withKernelPath(path) {
                checkGramUpperTriangle(path, product: cgemm_gram_upper_fp16, operand: half, bound: halfSumBound)
                checkMultiply(path, product: cgemm_multiply_fp16, operand: half, bound: halfSumBound)
            }
        }
        var rng = SplitMix64(seed: 34)
        let channels = 100, pixels = 300
        var f = randomValues(channels * pixels, using: &rng)
        for p in 0 ..< pixels {
            for c in 0 ..< 48 { f[c * pixels + p] *= 1e4 }
            for c in 48 ..< 96 { f[c * pixels + p] *= 1e-4 }
        }
        var g = [Float](repeating: 0, count: channels * channels)
        var work = [Float](repeating: 0, count: cgemm_gram_work_count(Int32(channels)))
        cgemm_gram_upper_fp16(Int32(channels), Int32(pixels), f, pixels, &g, channels, &work)
        for i in 0 ..< channels {
            for j in i ..< channels {
                let terms = (0 ..< pixels).map { half(f[i * pixels + $0]) * half(f[j * pixels + $0]) }
                XCTAssertEqual(Double(g[i * channels + j]), terms.reduce(0, +), accuracy: halfSumBound(terms),
                               "far from one, at \(i), \(j)")
            }
        }
    }

    /// cgemm_gram_share_columns cuts the columns into whole panels of 48 that follow each other, and the shares of
    /// cgemm_gram_upper_columns (and its bf16 and half-precision forms) give cgemm_gram_upper's bits in their columns, writing nothing in
    /// any other column or below the rows of their last one: one to five shares, channel counts of one to eleven
    /// panels, one slice of pixels or several.
    func testGramColumnSharesGiveTheWholeGramsBits() throws {
        var rng = SplitMix64(seed: 33)
        let guardValue: Float = -7.5
        var products: [(String, (Int32, Int32, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int,
                                 UnsafeMutablePointer<Float>?) -> Void,
                         (Int32, Int32, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int,
                          UnsafeMutablePointer<Float>?, Int32, Int32) -> Void)] =
            [("single", cgemm_gram_upper, cgemm_gram_upper_columns)]
        if ProductPrecision.bf16.isSupported {
            products.append(("bf16", cgemm_gram_upper_bf16, cgemm_gram_upper_bf16_columns))
        }
        if ProductPrecision.half.isSupported {
            products.append(("half", cgemm_gram_upper_fp16, cgemm_gram_upper_fp16_columns))
        }
        for path in supportedKernelPaths where path != .openblas {
            try withKernelPath(path) {
                for (channels, pixels) in [(5, 40), (48, 130), (100, 257), (520, 20)] {
                    let ldf = pixels + 1, ldg = channels + 3
                    let f = randomValues(channels * ldf, using: &rng)
                    var work = [Float](repeating: 0, count: cgemm_gram_work_count(Int32(channels)))
                    for (name, whole, columns) in products {
                        var expected = [Float](repeating: guardValue, count: channels * ldg)
                        whole(Int32(channels), Int32(pixels), f, ldf, &expected, ldg, &work)
                        for shares in 1 ... 5 {
                            var next = 0
                            for share in 0 ..< shares {
                                var (first, end): (Int32, Int32) = (0, 0)
                                cgemm_gram_share_columns(Int32(channels), Int32(share), Int32(shares), &first, &end)
                                let (from, to) = (Int(first), Int(end))
                                let label = "\(path) \(name) \(channels)x\(pixels) share \(share) of \(shares)"
                                XCTAssertEqual(from, next, label)
                                XCTAssertTrue(from == to || from % 48 == 0 && (to % 48 == 0 || to == channels), label)
                                next = max(from, to)
                                var g = [Float](repeating: guardValue, count: channels * ldg)
                                columns(Int32(channels), Int32(pixels), f, ldf, &g, ldg, &work, first, end)
                                for i in 0 ..< channels {
                                    for j in 0 ..< ldg {
                                        if (from ..< to).contains(j) && i <= j {
                                            XCTAssertEqual(g[i * ldg + j].bitPattern, expected[i * ldg + j].bitPattern,
                                                           "\(label) at \(i), \(j)")
                                        } else if !(from ..< to).contains(j) || i >= to {
                                            XCTAssertEqual(g[i * ldg + j], guardValue, "\(label): \(i), \(j) written")
                                        }
                                    }
                                }
                            }
                            XCTAssertEqual(next, channels, "\(channels) channels in \(shares) shares")
                        }
                    }
                }
            }
        }
    }

    /// cgemm_panels_bf16_pairs on A and B in the pairs cgemm_bf16_kernel_block and cgemm_bf16_pairs round them to gives
    /// cgemm_panels_bf16's bits on A and B, whose operands the processor rounds (vcvtne2ps2bf16): with values that
    /// round up, down, to even at a tie, and subnormal ones, in both orders of A (the transposed one from the kernel
    /// block's backward pairs), over several slices of k and partial panels, the narrow ones (at most 12 columns) over
    /// 8, 16, 24 and 32 rows of A at a time.
    func testBF16PairsGiveTheBF16ProductsBits() throws {
        try XCTSkipUnless(ProductPrecision.bf16.isSupported, "the processor has no AVX512_BF16")
        let rows = Int(CGEMM_PANEL_ROWS), columns = Int(CGEMM_PANEL_COLUMNS)
        var rng = SplitMix64(seed: 17)
        let special: [Float] = [1 + 1.0 / 512, -(1 + 3.0 / 512), 1 + 1.0 / 256 + 1.0 / 512, 3e-39, -5e-40,
                                Float.leastNormalMagnitude, 0, -0.0, 6.5e4]
        func sprinkled(_ count: Int, every step: Int) -> [Float] {
            var values = randomValues(count, using: &rng)
            for i in stride(from: 0, to: count, by: step) { values[i] = special[(i / step) % special.count] }
            return values
        }
        for (m, n, k) in [(8, 48, 8), (16, 100, 136), (24, 387, 264), (8, 13, 16), (40, 58, 136)] {
            let a = sprinkled(m * k, every: 7), b = sprinkled(n * k, every: 5)
            // B's panels as pairs of rows: pair (j, l) of the panel from `first` from B[2j][l] and B[2j + 1][l].
            var words = [UInt32](repeating: 0, count: n * k / 2)
            for first in stride(from: 0, to: n, by: columns) {
                let width = min(columns, n - first)
                for j in 0 ..< k / 2 {
                    let low = Array(b[(first * k + 2 * j * width)...].prefix(width))
                    let high = Array(b[(first * k + (2 * j + 1) * width)...].prefix(width))
                    words.withUnsafeMutableBufferPointer { words in
                        cgemm_bf16_pairs(Int32(width), low, high, words.baseAddress! + first * k / 2 + j * width)
                    }
                }
            }
            for transposed: Int32 in [0, 1] {
                // A as pairs: the kernel blocks' forward pairs of A (m × k in rows order), or the backward pairs of the
                // k × m matrix in rows order that the transposed order reads.
                let (height, width) = transposed == 0 ? (m, k) : (k, m)
                var forward = [UInt32](repeating: 0, count: m * k / 2), backward = forward
                for first in stride(from: 0, to: height, by: rows) {
                    cgemm_bf16_kernel_block(Int32(height), Int32(width), Int32(first), Array(a[(first * width)...]),
                                            &forward, &backward)
                }
                var rounding = [Float](repeating: 0, count: m * n), paired = rounding
                cgemm_panels_bf16(Int32(m), Int32(n), Int32(k), 0.5, a, transposed, b, &rounding, n)
                cgemm_panels_bf16_pairs(Int32(m), Int32(n), Int32(k), 0.5, transposed == 0 ? forward : backward, words,
                                        &paired, n)
                XCTAssertEqual(paired.map(\.bitPattern), rounding.map(\.bitPattern), "\(m)x\(n)x\(k) \(transposed)")
            }
        }
    }

    /// cgemm_fp16_kernel_block writes A's values times its scale rounded to half precision (to nearest, ties to even,
    /// as Swift's Float16 rounds) in the bf16 pairs' layouts of both directions; cgemm_panels_fp16 on those pairs
    /// computes alpha times the float64 product of the rounded operands, B scaled slice by slice (256 values of k of a
    /// panel) so that its largest magnitude lies in [2³, 2⁴) and the product divided by that scale again: within the
    /// error of summing a slice's 128 products of a lane in half precision, in four chains of 32 each added to the sum
    /// of those before it (2⁻¹¹ of each partial sum, bounded by the sum of the products' magnitudes), in both orders
    /// of A, for several slices, partial and narrow panels, slices of zeros and of values
    /// far below and far above one, and values the rounding takes to even.
    func testHalfProducts() throws {
        try XCTSkipUnless(ProductPrecision.half.isSupported, "the processor has no AVX512_FP16")
        let rows = Int(CGEMM_PANEL_ROWS), columns = Int(CGEMM_PANEL_COLUMNS), slice = 256
        var rng = SplitMix64(seed: 19)
        /// The half-precision bits of x, and the value they stand for.
        func half(_ x: Float) -> UInt32 { UInt32(Float16(x).bitPattern) }
        func value(_ x: Float) -> Double { Double(Float16(x)) }
        XCTAssertEqual(value(1 + 1.0 / 2048), 1)  // a tie: to the even 1
        XCTAssertEqual(value(1 + 3.0 / 2048), 1 + 2.0 / 1024)
        for (m, n, k) in [(8, 48, 8), (16, 100, 136), (24, 387, 264), (8, 13, 16), (40, 58, 400)] {
            var a = randomValues(m * k, scale: 0.05, using: &rng), b = randomValues(n * k, using: &rng)
            a[3] = 0.05 * (1 + 1.0 / 2048)
            // B's first slice of its first panel far below one, its last panel's last slice zeros, a value far above
            // one in the middle.
            let firstWidth = min(columns, n), lastPanel = (n - 1) / columns * columns, lastWidth = n - lastPanel
            for j in 0 ..< min(slice, k) { for l in 0 ..< firstWidth { b[j * firstWidth + l] *= 1e-12 } }
            if (k - 1) / slice > 0 || lastPanel > 0 {
                for j in (k - 1) / slice * slice ..< k {
                    for l in 0 ..< lastWidth { b[lastPanel * k + j * lastWidth + l] = 0 }
                }
            }
            b[n * k / 2] = 3e4
            for transposed in [false, true] {
                // A (m × k) from the kernel block of an m × k matrix, or of the k × m matrix whose backward pairs are
                // its transpose.
                let (height, width) = transposed ? (k, m) : (m, k)
                let blocks = randomValues(height * width, scale: 0.05, using: &rng)
                let source = transposed ? blocks : a
                let largest = source.reduce(Float(0)) { max($0, abs($1)) }
                let scale = cgemm_fp16_kernel_scale(largest)
                XCTAssertTrue(largest * scale >= 8 && largest * scale < 16, "\(largest) scaled by \(scale)")
                var forward = [UInt32](repeating: 0, count: m * k / 2), backward = forward
                for first in stride(from: 0, to: height, by: rows) {
                    cgemm_fp16_kernel_block(Int32(height), Int32(width), Int32(first), Array(source[(first * width)...]),
                                            scale, &forward, &backward)
                }
                /// A[i][j] of the product, scaled and rounded, and its float.
                func aFloat(_ i: Int, _ j: Int) -> Float {
                    transposed ? blocks[(j / rows) * rows * m + i * rows + j % rows]
                        : a[(i / rows) * rows * k + j * rows + i % rows]
                }
                let pairs = transposed ? backward : forward
                for i in 0 ..< m {
                    for j in Swift.stride(from: 0, to: k, by: 2) {
                        let word = pairs[(i / rows) * rows * k / 2 + (j / 2) * rows + i % rows]
                        let expected = half(aFloat(i, j) * scale) | half(aFloat(i, j + 1) * scale) << 16
                        XCTAssertEqual(word, expected, "A's pair \(i), \(j) (\(transposed))")
                    }
                }
                let alpha: Float = 0.5
                var c = [Float](repeating: 7, count: m * n)
                cgemm_panels_fp16(Int32(m), Int32(n), Int32(k), alpha / scale, pairs, b, &c, n)
                for first in stride(from: 0, to: n, by: columns) {
                    let w = min(columns, n - first)
                    for i in 0 ..< m {
                        for l in 0 ..< w {
                            var expected = 0.0, bound = 0.0
                            for j0 in stride(from: 0, to: k, by: slice) {
                                var peak: Float = 0
                                for j in j0 ..< min(k, j0 + slice) {
                                    for x in 0 ..< w { peak = max(peak, abs(b[first * k + j * w + x])) }
                                }
                                let bScale = peak == 0 ? 1 : Float(sign: .plus, exponent: 3 - peak.exponent,
                                                                   significand: 1)
                                XCTAssertTrue(peak == 0 || (peak * bScale >= 8 && peak * bScale < 16))
                                var sum = 0.0, magnitude = 0.0
                                for j in j0 ..< min(k, j0 + slice) {
                                    let product = value(aFloat(i, j) * scale) * value(b[first * k + j * w + l] * bScale)
                                    sum += product
                                    magnitude += abs(product)
                                }
                                expected += sum / Double(bScale)
                                bound += 35 * 0x1p-11 * magnitude / Double(bScale)
                            }
                            let actual = Double(c[i * n + first + l])
                            XCTAssertLessThanOrEqual(abs(actual - Double(alpha) * expected / Double(scale)),
                                                     Double(alpha) * (bound / Double(scale)) + 1e-30,
                                                     "\(m)x\(n)x\(k) \(transposed) at \(i), \(first + l)")
                        }
                    }
                }
            }
        }
    }

    /// cgemm_panels_fp16_pairs, B's pairs scaled slice by slice by powers of two of the caller's (here a quarter of
    /// what cgemm_panels_fp16 picks, as the input transform's bound leaves them), gives the bits of cgemm_panels_fp16
    /// on the floats those pairs stand for: integers times a power of two of each slice (2⁻¹⁰, 1, 2⁵), so that every
    /// scaled value and every partial sum stays a normal half-precision value and the two scalings round alike;
    /// several slices, a last partial slice, partial and narrow panels. On every processor (without AVX512_FP16 both
    /// take their float sums).
    func testHalfPairsProductsGiveTheBitsOfTheFloatProducts() {
        let rows = Int(CGEMM_PANEL_ROWS), columns = Int(CGEMM_PANEL_COLUMNS), slice = Int(CGEMM_FP16_SLICE)
        var rng = SplitMix64(seed: 29)
        let exponents = [-10, 0, 5]
        for (m, n, k) in [(16, 100, 520), (8, 13, 16), (24, 48, 264)] {
            let slices = (k + slice - 1) / slice
            // A: integers from −8 to 8, exact in half precision with the scale 1.
            let a = (0 ..< m * k).map { _ in Float(Int.random(in: -8 ... 8, using: &rng)) }
            var aPairs = [UInt32](repeating: 0, count: m * k / 2), unused = aPairs
            for first in stride(from: 0, to: m, by: rows) {
                cgemm_fp16_kernel_block(Int32(m), Int32(k), Int32(first), Array(a[(first * k)...]), 1, &aPairs, &unused)
            }
            // B in cgemm_panels' panels: integers from −16 to 16 (16 in each slice of each panel) times 2^e of the slice.
            var b = [Float](repeating: 0, count: k * n), pairs = [UInt32](repeating: 0, count: k / 2 * n)
            let inverses = (0 ..< slices).map { Float(sign: .plus, exponent: exponents[$0 % 3] + 2, significand: 1) }
            for first in stride(from: 0, to: n, by: columns) {
                let w = min(columns, n - first)
                for j in 0 ..< k {
                    for l in 0 ..< w {
                        let integer = l == j % w ? 16 : Int.random(in: -16 ... 16, using: &rng)
                        b[first * k + j * w + l] =
                            Float(integer) * Float(sign: .plus, exponent: exponents[j / slice % 3], significand: 1)
                    }
                }
                for j in stride(from: 0, to: k, by: 2) {
                    for l in 0 ..< w {
                        func half(_ x: Float) -> UInt32 { UInt32(Float16(x / inverses[j / slice]).bitPattern) }
                        pairs[first * k / 2 + j / 2 * w + l] =
                            half(b[first * k + j * w + l]) | half(b[first * k + (j + 1) * w + l]) << 16
                    }
                }
            }
            var fromPairs = [Float](repeating: 7, count: m * n), fromFloats = fromPairs
            cgemm_panels_fp16_pairs(Int32(m), Int32(n), Int32(k), 0.75, aPairs, pairs, inverses, &fromPairs, n)
            cgemm_panels_fp16(Int32(m), Int32(n), Int32(k), 0.75, aPairs, b, &fromFloats, n)
            XCTAssertFalse(fromFloats.contains(7), "\(m)x\(n)x\(k)")
            XCTAssertEqual(fromPairs.map(\.bitPattern), fromFloats.map(\.bitPattern), "\(m)x\(n)x\(k)")
        }
    }

    private func checkKernels(on path: KernelPath, file: StaticString = #filePath, line: UInt = #line) throws {
        try XCTSkipUnless(path.isSupported, "the processor cannot run the \(path.rawValue) kernels")
        try withKernelPath(path) {
            XCTAssertEqual(KernelPath.current, path, file: file, line: line)
            checkPanelProduct(product: cgemm_panels, operand: { Double($0) }, path.rawValue)
            checkGramUpperTriangle(path)
            checkMultiply(path)
        }
    }

    /// cgemm_panels in both orders of A, for column counts that fill panels, leave a partial one (of a width that is
    /// or is not a multiple of 8 and 16, in one, two or three vectors of 16; narrow enough for the swapped and turned
    /// blocks, 3 to 36 columns, or not) or stay under one, row counts over one or several groups of 32, and depths
    /// that take one slice of the k loop or several (128 per slice); columns of C past n are left alone. `operand` is
    /// what the product makes of each value of A and B.
    private func checkPanelProduct(
        product: (Int32, Int32, Int32, Float, UnsafePointer<Float>?, Int32, UnsafePointer<Float>?,
                  UnsafeMutablePointer<Float>?, Int) -> Void,
        operand: (Float) -> Double, shapes: [(Int, Int, Int)] = [], _ path: String
    ) {
        let rows = Int(CGEMM_PANEL_ROWS), columns = Int(CGEMM_PANEL_COLUMNS)
        var rng = SplitMix64(seed: 31)
        for (m, n, k) in [(8, 48, 8), (16, 8, 24), (24, 100, 136), (8, 200, 264), (32, 56, 16), (16, 77, 8),
                          (40, 3, 256), (8, 61, 392), (16, 90, 136), (40, 60, 136), (24, 72, 264), (72, 36, 392),
                          (8, 20, 64)] + shapes {
            let a = randomValues(m * k, using: &rng), b = randomValues(n * k, using: &rng)
            let ldc = n + 5
            for transposed in [false, true] {
                /// A[i][j] where the layouts of cgemm.h put it.
                func aValue(_ i: Int, _ j: Int) -> Float {
                    transposed ? a[(j / rows) * rows * m + i * rows + j % rows]
                        : a[(i / rows) * rows * k + j * rows + i % rows]
                }
                let alpha: Float = transposed ? 0.125 : 1
                var c = [Float](repeating: 7, count: m * ldc)
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            product(Int32(m), Int32(n), Int32(k), alpha, a.baseAddress!, transposed ? 1 : 0,
                                    b.baseAddress!, c.baseAddress!, ldc)
                        }
                    }
                }
                for i in 0 ..< m {
                    for l in 0 ..< ldc {
                        guard l < n else {
                            XCTAssertEqual(c[i * ldc + l], 7, "\(path): column \(l) past n written")
                            continue
                        }
                        var expected = 0.0, size = 0.0
                        for j in 0 ..< k {
                            let first = l / columns * columns, panelWidth = min(columns, n - first)
                            let term = operand(aValue(i, j)) * operand(b[first * k + j * panelWidth + l - first])
                            expected += term
                            size += abs(term)
                        }
                        expected *= Double(alpha)
                        XCTAssertEqual(Double(c[i * ldc + l]), expected, accuracy: 1e-6 * max(1, size),
                                       "\(path) \(m)x\(n)x\(k) transposed \(transposed) at \(i), \(l)")
                    }
                }
            }
        }
    }

    /// cgemm_gram_upper for channel counts that are or are not multiples of 8 and span one to three panels of 48,
    /// pixel counts that are odd, under one slice of 128 or over several, rows of F and G with padding: the upper
    /// triangle matches, nothing outside the channels × channels matrix or past the work area is written, and no pixels
    /// give zeros.
    private func checkGramUpperTriangle(
        _ path: KernelPath,
        product: (Int32, Int32, UnsafePointer<Float>?, Int, UnsafeMutablePointer<Float>?, Int,
                  UnsafeMutablePointer<Float>?) -> Void = cgemm_gram_upper,
        operand: (Float) -> Double = { Double($0) },
        bound: ([Double]) -> Double = { terms in 2e-6 * max(1, terms.reduce(0) { $0 + abs($1) }) }
    ) {
        var rng = SplitMix64(seed: 32)
        let guardValue: Float = -3.25
        for (channels, pixels) in [(1, 1), (3, 5), (8, 8), (13, 129), (37, 300), (64, 257), (97, 77), (50, 0)] {
            let ldf = pixels + 3, ldg = channels + 2
            let f = randomValues(channels * ldf, using: &rng)
            var g = [Float](repeating: guardValue, count: channels * ldg)
            let workCount = cgemm_gram_work_count(Int32(channels))
            var work = [Float](repeating: guardValue, count: workCount + 16)
            f.withUnsafeBufferPointer { f in
                g.withUnsafeMutableBufferPointer { g in
                    work.withUnsafeMutableBufferPointer { work in
                        product(Int32(channels), Int32(pixels), f.baseAddress!, ldf, g.baseAddress!, ldg,
                                work.baseAddress!)
                    }
                }
            }
            XCTAssertEqual(Array(work[workCount...]), [Float](repeating: guardValue, count: 16),
                           "\(path) \(channels)x\(pixels): written past the work area")
            for i in 0 ..< channels {
                for j in channels ..< ldg {
                    XCTAssertEqual(g[i * ldg + j], guardValue, "\(path) \(channels)x\(pixels): padding \(i), \(j) written")
                }
                for j in i ..< channels {
                    let terms = (0 ..< pixels).map { operand(f[i * ldf + $0]) * operand(f[j * ldf + $0]) }
                    XCTAssertEqual(Double(g[i * ldg + j]), terms.reduce(0, +), accuracy: bound(terms),
                                   "\(path) \(channels)x\(pixels) at \(i), \(j)")
                }
            }
        }
    }

    /// cgemm_pack and cgemm_multiply for shapes that are or are not multiples of 8, depths under one slice of 128 or
    /// over several, A read directly or transposed, with padded rows, writing and adding: C matches, and nothing past
    /// the packed count or outside the m × n entries of C is written.
    private func checkMultiply(
        _ path: KernelPath,
        product: (Int32, Int32, Int32, Float, UnsafePointer<Float>?, UnsafePointer<Float>?, Int, Int32,
                  UnsafeMutablePointer<Float>?, Int) -> Void = cgemm_multiply,
        operand: (Float) -> Double = { Double($0) },
        bound: ([Double]) -> Double = { terms in 1e-6 * max(1, terms.reduce(0) { $0 + abs($1) }) }
    ) {
        var rng = SplitMix64(seed: 33)
        let guardValue: Float = 5.5
        for (m, n, k) in [(1, 1, 1), (5, 7, 3), (8, 48, 8), (21, 50, 19), (64, 100, 130), (13, 97, 200), (40, 9, 64)] {
            for transposed in [false, true] {
                for accumulate in [false, true] {
                    let lda = (transposed ? m : k) + 1, ldb = n + 2, ldc = n + 3
                    let a = randomValues((transposed ? k : m) * lda, using: &rng)
                    let b = randomValues(k * ldb, using: &rng)
                    let before = randomValues(m * ldc, using: &rng).enumerated().map { $0.offset % ldc < n ? $0.element : guardValue }
                    var c = before
                    let packedCount = cgemm_packed_count(Int32(m), Int32(k))
                    var packed = [Float](repeating: guardValue, count: packedCount + 16)
                    let alpha: Float = 0.375
                    a.withUnsafeBufferPointer { a in
                        packed.withUnsafeMutableBufferPointer { packed in
                            cgemm_pack(Int32(m), Int32(k), a.baseAddress!, lda, transposed ? 1 : 0, packed.baseAddress!)
                        }
                    }
                    XCTAssertEqual(Array(packed[packedCount...]), [Float](repeating: guardValue, count: 16),
                                   "\(path) \(m)x\(k): packed past its count")
                    packed.withUnsafeBufferPointer { packed in
                        b.withUnsafeBufferPointer { b in
                            c.withUnsafeMutableBufferPointer { c in
                                product(Int32(m), Int32(n), Int32(k), alpha, packed.baseAddress!, b.baseAddress!,
                                        ldb, accumulate ? 1 : 0, c.baseAddress!, ldc)
                            }
                        }
                    }
                    let shape = "\(path) \(m)x\(n)x\(k) transposed \(transposed) accumulate \(accumulate)"
                    for i in 0 ..< m {
                        for l in n ..< ldc {
                            XCTAssertEqual(c[i * ldc + l], guardValue, "\(shape): padding \(i), \(l) written")
                        }
                        for l in 0 ..< n {
                            let terms = (0 ..< k).map { j in
                                operand(transposed ? a[j * lda + i] : a[i * lda + j]) * operand(b[j * ldb + l])
                            }
                            let start = accumulate ? Double(before[i * ldc + l]) : 0
                            XCTAssertEqual(Double(c[i * ldc + l]), start + Double(alpha) * terms.reduce(0, +),
                                           accuracy: bound(terms) + 1e-6 * abs(start), "\(shape) at \(i), \(l)")
                        }
                    }
                }
            }
        }
    }
}

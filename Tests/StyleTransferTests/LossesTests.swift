import CGEMM
import Foundation
import Kernels
import XCTest
import StyleTransfer


final class LossesTests: XCTestCase {
    // MARK: Gram

    func testGramMatchesNaiveTripleLoop() {
        var random = TestRandom(state: 1)
        let channels = 7, pixels = 5000  // more than one ssyrk chunk
        let features = random.array(channels * pixels, -1, 2)
        let gram = features.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
        let reference = naiveGram(features, channels: channels, pixels: pixels)
        let scale = reference.map { abs($0) }.max()!
        for i in 0..<(channels * channels) {
            XCTAssertEqual(Double(gram[i]), reference[i], accuracy: 1e-6 * scale, "entry \(i)")
        }
    }

    func testGramAccumulatedInStripesEqualsWholeMap() {
        var random = TestRandom(state: 2)
        let channels = 5, pixels = 300
        let features = random.array(channels * pixels, 0, 3)
        let whole = features.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
        var accumulator = GramAccumulator(channels: channels)
        features.withUnsafeBufferPointer { all in
            for (start, end) in [(0, 37), (37, 200), (200, 300)] {
                // A stripe is a window of every channel's row: stride stays the full map's pixel count.
                let stripe = UnsafeBufferPointer(rebasing: all[start...])
                accumulator.add(stripe, pixels: end - start, stride: pixels)
            }
        }
        XCTAssertEqual(accumulator.pixelCount, pixels)
        let striped = accumulator.gram()
        for i in whole.indices { XCTAssertEqual(striped[i], whole[i], accuracy: 1e-6 * abs(whole[i]) + 1e-7) }
        XCTAssertEqual(striped[1 * channels + 3], striped[3 * channels + 1], "Gram must be symmetric")
    }

    /// Maps of fewer chunks than `GramAccumulator.columnSplitChunks` per core have the cores share each chunk's
    /// columns: each share's float64 sums, and so the Gram and the mean, keep the bits of the chunks shared out among
    /// the cores (each share's chunks summed in float64, then the shares), written out here from single-threaded
    /// products of each chunk.
    func testGramOfFewChunksKeepsTheBitsOfSharedChunks() {
        var random = TestRandom(state: 3)
        let channels = 60, chunkPixels = GramAccumulator.chunkPixels
        var precisions: [ProductPrecision] = [.single]
        if ProductPrecision.bf16.isSupported { precisions.append(.bf16) }
        if ProductPrecision.half.isSupported { precisions.append(.half) }
        for pixels in [1000, 3 * chunkPixels - 100, 5 * chunkPixels + 7] {
            let features = random.array(channels * pixels, -1, 2)
            for precision in precisions {
                var accumulator = GramAccumulator(channels: channels, means: true)
                accumulator.precision = precision
                features.withUnsafeBufferPointer { accumulator.add($0, pixels: pixels, stride: pixels) }
                let chunks = (pixels + chunkPixels - 1) / chunkPixels, shares = min(coreCount, chunks)
                var sums = [[Double]](repeating: [Double](repeating: 0, count: channels * channels), count: shares)
                var featureSums = [[Double]](repeating: [Double](repeating: 0, count: channels), count: shares)
                var partial = [Float](repeating: 0, count: channels * channels)
                var work = [Float](repeating: 0, count: cgemm_gram_work_count(Int32(channels)))
                for share in 0 ..< shares {
                    for index in chunks * share / shares ..< chunks * (share + 1) / shares {
                        let start = index * chunkPixels, n = min(chunkPixels, pixels - start)
                        features.withUnsafeBufferPointer {
                            let product = switch precision {
                            case .bf16: cgemm_gram_upper_bf16
                            case .half: cgemm_gram_upper_fp16
                            case .single: cgemm_gram_upper
                            }
                            product(Int32(channels), Int32(n), $0.baseAddress! + start, pixels, &partial, channels, &work)
                        }
                        for i in 0 ..< channels {
                            for j in i ..< channels { sums[share][i * channels + j] += Double(partial[i * channels + j]) }
                            var total: Float = 0
                            for p in 0 ..< n { total += features[i * pixels + start + p] }
                            featureSums[share][i] += Double(total)
                        }
                    }
                }
                let gram = accumulator.gram(), mean = accumulator.mean(), shareSums = accumulator.shareSums
                for share in 0 ..< shares {
                    for i in 0 ..< channels {
                        for j in i ..< channels {
                            XCTAssertEqual(shareSums[(share * channels + i) * channels + j].bitPattern,
                                           sums[share][i * channels + j].bitPattern,
                                           "\(precision) \(pixels) pixels: share \(share)'s sum at \(i), \(j)")
                        }
                    }
                }
                for i in 0 ..< channels {
                    var meanTotal = 0.0
                    for share in 0 ..< shares { meanTotal += featureSums[share][i] }
                    XCTAssertEqual(mean[i].bitPattern, Float(meanTotal / Double(pixels)).bitPattern,
                                   "\(precision) \(pixels) pixels: mean \(i)")
                    for j in i ..< channels {
                        var total = 0.0
                        for share in 0 ..< shares { total += sums[share][i * channels + j] }
                        let expected = Float(total * (1 / Double(pixels)))
                        XCTAssertEqual(gram[i * channels + j].bitPattern, expected.bitPattern,
                                       "\(precision) \(pixels) pixels at \(i), \(j)")
                        XCTAssertEqual(gram[j * channels + i].bitPattern, expected.bitPattern)
                    }
                }
            }
        }
    }

    func testBlendedGramIsWeightedMean() {
        let a: [Float] = [1, 2, 2, 4], b: [Float] = [5, 0, 0, 1]
        let blend = blendedGram([a, b], weights: [3, 1])
        XCTAssertEqual(blend, [2, 1.5, 1.5, 3.25])
        XCTAssertEqual(blendedGram([a, b], weights: [0, 2]), b)
    }

    // MARK: Style loss

    func testStyleLossValueAndGradient() {
        var random = TestRandom(state: 3)
        let channels = 4, pixels = 12
        let features = random.array(channels * pixels, 0, 2)
        let other = random.array(channels * pixels, 0, 2)
        let target = other.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
        let weight: Float = 1.7
        func evaluate(_ f: [Float]) -> (value: Double, gradient: [Float]) {
            var loss = StyleLoss(target: target, channels: channels)
            var gradient = [Float](repeating: 0, count: f.count)
            let value = f.withUnsafeBufferPointer { f in
                gradient.withUnsafeMutableBufferPointer { loss.evaluate(features: f, pixels: pixels, weight: weight, addingGradientTo: $0) }
            }
            return (value, gradient)
        }
        let (value, gradient) = evaluate(features)

        // E = Σ (G − T)² / C² against a float64 Gram.
        let gram = naiveGram(features, channels: channels, pixels: pixels)
        var expected = 0.0
        for i in gram.indices { expected += (gram[i] - Double(target[i])) * (gram[i] - Double(target[i])) }
        expected /= Double(channels * channels)
        XCTAssertEqual(value, expected, accuracy: 1e-6 * expected)

        assertGradient(gradient.map { $0 / weight }, matchesDifferencesOf: { evaluate($0).value }, at: features)
    }

    /// With bf16 products the Gram loss's value and gradient stay within the rounding of bfloat16 operands of single
    /// precision's, over more pixels than one chunk of the accumulator, and differ from its bits (the bf16 products
    /// ran); with weights, the same loss stays in single precision and gives single precision's bits; a W2 loss stays
    /// in single precision.
    func testBF16StyleLossIsCloseToSingle() throws {
        try XCTSkipUnless(ProductPrecision.bf16.isSupported && KernelPath.current == .avx512,
                          "the processor has no AVX512_BF16")
        checkReducedPrecisionStyleLoss(.bf16, valueError: 2e-3, gradientError: 1e-2)
    }

    /// With half-precision products the same, within half precision's rounding (a quarter of bfloat16's bound).
    func testHalfStyleLossIsCloseToSingle() throws {
        try XCTSkipUnless(ProductPrecision.half.isSupported && KernelPath.current == .avx512,
                          "the processor has no AVX512_FP16")
        checkReducedPrecisionStyleLoss(.half, valueError: 5e-4, gradientError: 2.5e-3)
    }

    private func checkReducedPrecisionStyleLoss(_ precision: ProductPrecision, valueError: Double, gradientError: Double,
                                                file: StaticString = #filePath, line: UInt = #line) {
        var random = TestRandom(state: 41)
        let channels = 64, pixels = GramAccumulator.chunkPixels + 904
        let features = random.array(channels * pixels, 0, 2)
        let other = random.array(channels * pixels, 0, 2)
        let target = other.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
        let ones = [Float](repeating: 1, count: pixels)
        func evaluate(_ precision: ProductPrecision, weighted: Bool = false) -> (value: Double, gradient: [Float]) {
            var loss = StyleLoss(target: target, channels: channels)
            loss.precision = precision
            var gradient = [Float](repeating: 0, count: features.count)
            let value = features.withUnsafeBufferPointer { f in
                gradient.withUnsafeMutableBufferPointer { gradient in
                    guard weighted else { return loss.evaluate(features: f, pixels: pixels, weight: 1.5, addingGradientTo: gradient) }
                    return ones.withUnsafeBufferPointer { ones in
                        loss.accumulator.add(f, pixels: pixels, stride: pixels, weights: ones)
                        let value = loss.finish()
                        loss.addGradient(features: f, pixels: pixels, featureStride: pixels, weights: ones, weight: 1.5,
                                         into: gradient, gradientStride: pixels)
                        return value
                    }
                }
            }
            return (value, gradient)
        }
        let single = evaluate(.single), reduced = evaluate(precision)
        XCTAssertEqual(reduced.value, single.value, accuracy: valueError * single.value, file: file, line: line)
        assertClose(reduced.gradient, single.gradient.map(Double.init), relative: gradientError, "gradient",
                    file: file, line: line)
        XCTAssertNotEqual(reduced.gradient, single.gradient, file: file, line: line)
        let weighted = evaluate(precision, weighted: true), weightedSingle = evaluate(.single, weighted: true)
        XCTAssertEqual(weighted.value, weightedSingle.value, file: file, line: line)
        XCTAssertEqual(weighted.gradient, weightedSingle.gradient, file: file, line: line)
        // The W2 loss keeps single precision whatever is asked.
        var w2 = StyleLoss(target: StyleTarget(gram: target, mean: [Float](repeating: 1, count: channels)),
                           channels: channels, statistic: .w2)
        w2.precision = precision
        XCTAssertEqual(w2.precision, .single, file: file, line: line)
    }

    /// The Wasserstein-2 loss's gradient against finite differences, with a mean and a covariance unlike the target's,
    /// and with features near the target's, where the square root's derivative is large.
    func testWassersteinStyleLossGradient() {
        var random = TestRandom(state: 31)
        let channels = 4, pixels = 15
        let other = random.array(channels * pixels, 0, 2)
        let target = StyleTarget(
            gram: other.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) },
            mean: (0 ..< channels).map { c in other[(c * pixels) ..< ((c + 1) * pixels)].reduce(0, +) / Float(pixels) })
        let weight: Float = 1.3
        func evaluate(_ f: [Float]) -> (value: Double, gradient: [Float]) {
            var loss = StyleLoss(target: target, channels: channels, statistic: .w2)
            var gradient = [Float](repeating: 0, count: f.count)
            let value = f.withUnsafeBufferPointer { f in
                gradient.withUnsafeMutableBufferPointer { loss.evaluate(features: f, pixels: pixels, weight: weight, addingGradientTo: $0) }
            }
            return (value, gradient)
        }
        for features in [random.array(channels * pixels, -1, 3), other.map { $0 + random.uniform(-0.2, 0.2) }] {
            let (value, gradient) = evaluate(features)
            XCTAssertGreaterThan(value, 0)
            assertGradient(gradient.map { $0 / weight }, matchesDifferencesOf: { evaluate($0).value }, at: features)
        }
        // At the target's own features the loss and its gradient vanish.
        let (zero, flat) = evaluate(other)
        XCTAssertEqual(zero, 0, accuracy: 1e-5)
        XCTAssertLessThan(flat.map { abs($0) }.max()!, 1e-3)
    }

    /// A style loss under per-pixel weights (a mask, some of them 0), over more pixels than one chunk of the weighted
    /// products and the cores share: the value against a float64 weighted Gram, G = Σ w f fᵀ / Σ w; the gradient of the
    /// Gram and the W2 loss against finite differences; and the pixels added in two stripes as whole.
    func testMaskedStyleLossValueAndGradient() {
        var random = TestRandom(state: 47)
        let channels = 3, pixels = 2 * GramAccumulator.weightedChunkPixels + 61
        let features = random.array(channels * pixels, 0, 2)
        let other = random.array(channels * pixels, 0, 2)
        let weights: [Float] = (0 ..< pixels).map { p -> Float in p % 7 == 0 ? 0 : random.uniform(0, 1) }
        let target = StyleTarget(
            gram: other.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) },
            mean: (0 ..< channels).map { c in other[(c * pixels) ..< ((c + 1) * pixels)].reduce(0, +) / Float(pixels) })
        let weight: Float = 0.8
        func evaluate(_ f: [Float], _ statistic: StyleStatistic, stripes: [Range<Int>] = [0 ..< pixels])
            -> (value: Double, gradient: [Float]) {
            var loss = StyleLoss(target: target, channels: channels, statistic: statistic)
            var gradient = [Float](repeating: 0, count: f.count)
            f.withUnsafeBufferPointer { f in
                weights.withUnsafeBufferPointer { w in
                    for stripe in stripes {
                        loss.accumulator.add(UnsafeBufferPointer(rebasing: f[stripe.lowerBound...]), pixels: stripe.count,
                                             stride: pixels, weights: UnsafeBufferPointer(rebasing: w[stripe]))
                    }
                }
            }
            let value = loss.finish()
            f.withUnsafeBufferPointer { f in
                weights.withUnsafeBufferPointer { w in
                    gradient.withUnsafeMutableBufferPointer { g in
                        for stripe in stripes {
                            loss.addGradient(features: UnsafeBufferPointer(rebasing: f[stripe.lowerBound...]),
                                             pixels: stripe.count, featureStride: pixels,
                                             weights: UnsafeBufferPointer(rebasing: w[stripe]), weight: weight,
                                             into: UnsafeMutableBufferPointer(rebasing: g[stripe.lowerBound...]),
                                             gradientStride: pixels)
                        }
                    }
                }
            }
            return (value, gradient)
        }

        let total = weights.reduce(0.0) { $0 + Double($1) }
        var expected = 0.0
        for i in 0 ..< channels {
            for j in 0 ..< channels {
                var sum = 0.0
                for p in 0 ..< pixels {
                    sum += Double(weights[p]) * Double(features[i * pixels + p]) * Double(features[j * pixels + p])
                }
                let difference = sum / total - Double(target.gram[i * channels + j])
                expected += difference * difference
            }
        }
        expected /= Double(channels * channels)
        let gram = evaluate(features, .gram)
        XCTAssertEqual(gram.value, expected, accuracy: 1e-5 * expected)

        for statistic in [StyleStatistic.gram, .w2] {
            let (value, gradient) = evaluate(features, statistic)
            XCTAssertGreaterThan(value, 0)
            // Along random directions over every pixel: one coordinate's difference would be drowned by the float32
            // sums over hundreds of pixels.
            var rng = SplitMix64(seed: 9)
            let errors = directionalErrors(image: features, gradient: gradient.map { $0 / weight }, step: 1e-3,
                                           using: &rng) { evaluate($0, statistic).value }
            XCTAssertLessThan(errors.max()!, 3e-4, "\(statistic): \(errors)")
            // Pixels whose weight is 0 get no gradient.
            for p in stride(from: 0, to: pixels, by: 7) { XCTAssertEqual(gradient[p], 0) }
            let striped = evaluate(features, statistic, stripes: [0 ..< 300, 300 ..< pixels])
            XCTAssertEqual(striped.value, value, accuracy: 1e-6 * value)
            assertClose(striped.gradient, gradient.map(Double.init), relative: 1e-5, "\(statistic) in stripes")
        }
    }

    /// Blending style targets blends their Gram matrices and their means alike.
    func testBlendedStyleTargetsBlendMeansToo() {
        let a = StyleTarget(gram: [1, 2, 2, 4], mean: [1, 0]), b = StyleTarget(gram: [5, 0, 0, 1], mean: [3, 2])
        let blend = StyleTarget.blended([a, b], weights: [3, 1])
        XCTAssertEqual(blend.gram, [2, 1.5, 1.5, 3.25])
        XCTAssertEqual(blend.mean, [1.5, 0.5])
    }

    /// Both style losses, as an engine streaming stripes runs them: all stripes' statistics, then all stripes'
    /// gradients, each stripe in a buffer of its own (stride = stripe length), against the whole map.
    func testStyleLossStripesEqualWholeMap() {
        var random = TestRandom(state: 4)
        let channels = 6, pixels = 90
        let features = random.array(channels * pixels, 0, 1)
        let style = random.array(channels * pixels, 0, 2)
        let target = StyleTarget(
            gram: style.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) },
            mean: (0 ..< channels).map { c in style[(c * pixels) ..< ((c + 1) * pixels)].reduce(0, +) / Float(pixels) })
        let stripes = [(0, 40), (40, 41), (41, 90)]
        func stripe(_ buffer: [Float], _ range: (Int, Int)) -> [Float] {
            (0..<channels).flatMap { c in buffer[(c * pixels + range.0)..<(c * pixels + range.1)] }
        }
        for (statistic, tolerance) in [(StyleStatistic.gram, Float(1e-6)), (.w2, 1e-5)] {
            var whole = StyleLoss(target: target, channels: channels, statistic: statistic)
            var wholeGradient = [Float](repeating: 0.5, count: features.count)
            let wholeValue = features.withUnsafeBufferPointer { f in
                wholeGradient.withUnsafeMutableBufferPointer {
                    whole.evaluate(features: f, pixels: pixels, weight: 2, addingGradientTo: $0)
                }
            }
            var striped = StyleLoss(target: target, channels: channels, statistic: statistic)
            for range in stripes {
                stripe(features, range).withUnsafeBufferPointer {
                    striped.accumulator.add($0, pixels: range.1 - range.0, stride: range.1 - range.0)
                }
            }
            let stripedValue = striped.finish()
            XCTAssertEqual(striped.accumulator.pixelCount, 0, "finish() empties the accumulator")
            XCTAssertEqual(stripedValue, wholeValue, accuracy: 1e-6 * wholeValue, "\(statistic)")
            for range in stripes {
                let n = range.1 - range.0
                var gradient = [Float](repeating: 0.5, count: channels * n)
                stripe(features, range).withUnsafeBufferPointer { f in
                    gradient.withUnsafeMutableBufferPointer {
                        striped.addGradient(features: f, pixels: n, featureStride: n, weight: 2, into: $0, gradientStride: n)
                    }
                }
                let expected = stripe(wholeGradient, range)
                for i in gradient.indices { XCTAssertEqual(gradient[i], expected[i], accuracy: tolerance, "\(statistic)") }
            }
        }
    }

    // MARK: Content and total variation

    func testContentLossValueAndGradient() {
        var random = TestRandom(state: 5)
        let features = random.array(3 * 10, -1, 1), target = random.array(3 * 10, -1, 1)
        func evaluate(_ f: [Float]) -> (value: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: f.count)
            let value = f.withUnsafeBufferPointer { f in
                target.withUnsafeBufferPointer { t in
                    gradient.withUnsafeMutableBufferPointer { contentLoss(features: f, target: t, weight: 3, addingGradientTo: $0) }
                }
            }
            return (value, gradient)
        }
        let (value, gradient) = evaluate(features)
        let expected = zip(features, target).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +) / 30
        XCTAssertEqual(value, expected, accuracy: 1e-12)
        assertGradient(gradient.map { $0 / 3 }, matchesDifferencesOf: { evaluate($0).value }, at: features)
    }

    func testTotalVariationValueAndGradient() {
        // A horizontal ramp of slope 2 in one channel of a (2, 3, 4) image: 3 rows × 3 differences of 2.
        var ramp = [Float](repeating: 0, count: 2 * 3 * 4)
        for y in 0..<3 { for x in 0..<4 { ramp[y * 4 + x] = Float(2 * x) } }
        var unused = [Float](repeating: 0, count: ramp.count)
        let rampValue = ramp.withUnsafeBufferPointer { image in
            unused.withUnsafeMutableBufferPointer {
                totalVariationLoss(image: image, channels: 2, height: 3, width: 4, weight: 1, addingGradientTo: $0)
            }
        }
        XCTAssertEqual(rampValue, 9 * 4 / 24)

        var random = TestRandom(state: 6)
        let image = random.array(3 * 5 * 4, 0, 1)
        func evaluate(_ x: [Float]) -> (value: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: x.count)
            let value = x.withUnsafeBufferPointer { image in
                gradient.withUnsafeMutableBufferPointer {
                    totalVariationLoss(image: image, channels: 3, height: 5, width: 4, weight: 0.5, addingGradientTo: $0)
                }
            }
            return (value, gradient)
        }
        assertGradient(evaluate(image).gradient.map { $0 / 0.5 }, matchesDifferencesOf: { evaluate($0).value }, at: image)
    }

    /// The loss summed on one core while the gradient is added on another gives the bits of one pass doing both in
    /// order (written out here): each gradient value takes its terms from the row above, its left and right
    /// neighbors and the row below, in the order that pass adds them; with clamping, onto a gradient already holding
    /// values.
    func testTotalVariationGivesTheBitsOfOnePass() {
        var random = TestRandom(state: 7)
        let (channels, height, width) = (3, 37, 53), count = channels * height * width
        let image = random.array(count, -0.2, 1.2), start = random.array(count, -1, 1)
        let weight: Float = 0.37, scale = Float(2 * Double(weight) / Double(count))
        var expected = start, sum = 0.0
        let value = { (i: Int) -> Float in min(max(image[i], 0), 1) }
        for c in 0 ..< channels {
            for y in 0 ..< height {
                let row = (c * height + y) * width
                for x in 0 ..< width - 1 {
                    let difference = value(row + x + 1) - value(row + x)
                    sum += Double(difference) * Double(difference)
                    expected[row + x + 1] += scale * difference
                    expected[row + x] -= scale * difference
                }
                guard y < height - 1 else { continue }
                for x in 0 ..< width {
                    let difference = value(row + width + x) - value(row + x)
                    sum += Double(difference) * Double(difference)
                    expected[row + width + x] += scale * difference
                    expected[row + x] -= scale * difference
                }
            }
        }
        var gradient = start
        let loss = image.withUnsafeBufferPointer { image in
            gradient.withUnsafeMutableBufferPointer {
                totalVariationLoss(image: image, channels: channels, height: height, width: width, weight: weight,
                                   clampedTo: 0 ... 1, addingGradientTo: $0)
            }
        }
        XCTAssertEqual(loss.bitPattern, (sum / Double(count)).bitPattern)
        XCTAssertEqual(gradient.map(\.bitPattern), expected.map(\.bitPattern))
    }

    func testTemporalLossValueAndGradient() {
        // Two channels of a 2×3 image, one sample off the target by 3 where the flow holds half, one by 2 where it does
        // not hold at all: 0.5 · 9 / 12.
        let target = [Float](repeating: 0.25, count: 12)
        var image = target
        image[1] += 3
        image[6 + 4] += 2
        let reliability: [Float] = [1, 0.5, 1, 1, 0, 1]
        var gradient = [Float](repeating: 0, count: 12)
        let value = image.withUnsafeBufferPointer { image in
            target.withUnsafeBufferPointer { target in
                reliability.withUnsafeBufferPointer { reliability in
                    gradient.withUnsafeMutableBufferPointer {
                        temporalLoss(image: image, target: target, reliability: reliability, channels: 2, height: 2,
                                     width: 3, weight: 2, addingGradientTo: $0)
                    }
                }
            }
        }
        XCTAssertEqual(value, 0.5 * 9 / 12)
        // 2 · weight · r · (X − T) / (C H W): only the held sample's gradient is nonzero.
        XCTAssertEqual(gradient, [0, 2 * 2 * 0.5 * 3 / 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])

        var random = TestRandom(state: 11)
        let x = random.array(3 * 4 * 5, 0.02, 0.98), warped = random.array(3 * 4 * 5, 0, 1)
        let held = random.array(4 * 5, 0, 1).map { $0 < 0.3 ? 0 : $0 }
        func evaluate(_ x: [Float]) -> (value: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: x.count)
            let value = x.withUnsafeBufferPointer { image in
                warped.withUnsafeBufferPointer { target in
                    held.withUnsafeBufferPointer { reliability in
                        gradient.withUnsafeMutableBufferPointer {
                            temporalLoss(image: image, target: target, reliability: reliability, channels: 3,
                                         height: 4, width: 5, weight: 0.5, clampedTo: 0 ... 1, addingGradientTo: $0)
                        }
                    }
                }
            }
            return (value, gradient)
        }
        assertGradient(evaluate(x).gradient.map { $0 / 0.5 }, matchesDifferencesOf: { evaluate($0).value }, at: x)
    }

    // MARK: Layout

    /// B Y as float64 matrices: K = (box of radius r)³ along each axis, each row divided by its sum.
    private func referenceBlurredLuminance(_ image: [Float], height: Int, width: Int, radius: Int) -> [Double] {
        func blurMatrix(_ n: Int) -> [[Double]] {
            let box = (0 ..< n).map { i in (0 ..< n).map { j in abs(i - j) <= radius ? 1.0 : 0.0 } }
            func product(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
                (0 ..< n).map { i in (0 ..< n).map { j in (0 ..< n).reduce(0.0) { $0 + a[i][$1] * b[$1][j] } } }
            }
            let k = product(product(box, box), box)
            return k.map { row in let sum = row.reduce(0, +); return row.map { $0 / sum } }
        }
        let (by, bx) = (blurMatrix(height), blurMatrix(width))
        let plane = height * width
        let y = (0 ..< plane).map { p in
            255 * (0.299 * Double(image[p]) + 0.587 * Double(image[plane + p]) + 0.114 * Double(image[2 * plane + p]))
        }
        var result = [Double](repeating: 0, count: plane)
        for i in 0 ..< height {
            for j in 0 ..< width {
                var sum = 0.0
                for k in 0 ..< height { for l in 0 ..< width { sum += by[i][k] * bx[j][l] * y[k * width + l] } }
                result[i * width + j] = sum
            }
        }
        return result
    }

    func testLayoutLossMatchesAFloat64Blur() {
        var random = TestRandom(state: 21)
        // Radii below, at and above the sides, so that the edges' renormalization is reached from both sides.
        for (height, width, radius) in [(9, 14, 2), (7, 12, 4), (5, 6, 9)] {
            let content = random.array(3 * height * width), image = random.array(3 * height * width)
            var loss = LayoutLoss(content: content, height: height, width: width, radius: radius)
            let target = referenceBlurredLuminance(content, height: height, width: width, radius: radius)
            for p in target.indices {
                XCTAssertEqual(Double(loss.target[p]), target[p], accuracy: 1e-4, "\(height)x\(width) r \(radius) at \(p)")
            }
            let blurred = referenceBlurredLuminance(image, height: height, width: width, radius: radius)
            let expected = zip(blurred, target).reduce(0.0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(target.count)
            var gradient = [Float](repeating: 0, count: image.count)
            let value = image.withUnsafeBufferPointer { image in
                gradient.withUnsafeMutableBufferPointer { loss.evaluate(image: image, weight: 1, addingGradientTo: $0) }
            }
            XCTAssertEqual(value, expected, accuracy: 1e-5 * expected, "\(height)x\(width) r \(radius)")
        }
    }

    /// On an image large enough for its rows, columns and pixels to be shared among the cores: E is quadratic in the
    /// image, so E(x + εv) − E(x − εv) = 2ε ∇E·v exactly but for rounding, along random directions.
    func testLayoutLossGradientAlongDirectionsOnALargeImage() {
        var random = TestRandom(state: 23)
        let (height, width) = (120, 150), count = 3 * height * width
        let content = random.array(count), x = random.array(count)
        var loss = LayoutLoss(content: content, height: height, width: width, radius: 3)
        func evaluate(_ x: [Float]) -> (value: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: x.count)
            let value = x.withUnsafeBufferPointer { image in
                gradient.withUnsafeMutableBufferPointer { loss.evaluate(image: image, weight: 1, addingGradientTo: $0) }
            }
            return (value, gradient)
        }
        let gradient = evaluate(x).gradient
        for _ in 0 ..< 3 {
            let v = random.array(count, -1, 1), step: Float = 0.05
            let slope = zip(gradient, v).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let difference = evaluate(zip(x, v).map { $0 + step * $1 }).value
                - evaluate(zip(x, v).map { $0 - step * $1 }).value
            XCTAssertEqual(difference / (2 * Double(step)), slope, accuracy: 1e-3 * abs(slope))
        }
    }

    func testLayoutLossGradientMatchesFiniteDifferences() {
        var random = TestRandom(state: 22)
        let (height, width) = (6, 7)
        let content = random.array(3 * height * width), x = random.array(3 * height * width, 0.02, 0.98)
        var loss = LayoutLoss(content: content, height: height, width: width, radius: 2)
        func evaluate(_ x: [Float]) -> (value: Double, gradient: [Float]) {
            var gradient = [Float](repeating: 0, count: x.count)
            let value = x.withUnsafeBufferPointer { image in
                gradient.withUnsafeMutableBufferPointer {
                    loss.evaluate(image: image, weight: 0.5, clampedTo: 0 ... 1, addingGradientTo: $0)
                }
            }
            return (value, gradient)
        }
        assertGradient(evaluate(x).gradient.map { $0 / 0.5 }, matchesDifferencesOf: { evaluate($0).value }, at: x)
    }

    func testLayoutLossIsZeroAtTheContentAndBlindToFineDetail() {
        var random = TestRandom(state: 23)
        let (height, width) = (32, 40)
        let content = random.array(3 * height * width)
        var loss = LayoutLoss(content: content, height: height, width: width, radius: 4)
        func value(_ image: [Float]) -> (Double, [Float]) {
            var gradient = [Float](repeating: 0, count: image.count)
            let value = image.withUnsafeBufferPointer { image in
                gradient.withUnsafeMutableBufferPointer { loss.evaluate(image: image, weight: 1, addingGradientTo: $0) }
            }
            return (value, gradient)
        }
        let (atContent, gradient) = value(content)
        XCTAssertEqual(atContent, 0)
        XCTAssertEqual(gradient.map(abs).max(), 0)
        // A checkerboard of ±0.2 added away from the edges changes the blurred luminance far less than the same
        // amplitude as one step across the image.
        let plane = height * width
        var fine = content, coarse = content
        for c in 0 ..< 3 {
            for y in 0 ..< height {
                for x in 0 ..< width {
                    fine[c * plane + y * width + x] += (x + y) % 2 == 0 ? 0.2 : -0.2
                    coarse[c * plane + y * width + x] += x < width / 2 ? 0.2 : -0.2
                }
            }
        }
        XCTAssertLessThan(value(fine).0 * 100, value(coarse).0)
    }

    // MARK: Size independence

    /// The content-to-style ratio of the same statistics at "128 px" (a 32² feature map, relu3_1 of a
    /// 128² image) and "1024 px" (256²) must agree: the normalization makes both terms means.
    /// With unnormalized sums (Gatys' Graw, Σ (F − P)²) the ratio would shift by 64² / 64 = 64×.
    func testContentStyleBalanceIsSizeIndependentForRandomFields() {
        let channels = 16, latent = 8
        var random = TestRandom(state: 7)
        let contentMix = random.array(channels * latent, -1, 1), targetMix = random.array(channels * latent, -1, 1)
        let styleMix = random.array(channels * latent, -1, 1.2)
        let bias = random.array(channels, -0.2, 0.4)
        func ratio(side: Int, seed: UInt64) -> Double {
            var noise = TestRandom(state: seed)
            let z = stationaryNoise(latent: latent, side: side, using: &noise)
            let features = relu(mix: contentMix, bias: bias, z, channels: channels, latent: latent)
            let content = relu(mix: targetMix, bias: bias, z, channels: channels, latent: latent)
            let styleZ = stationaryNoise(latent: latent, side: side, using: &noise)
            let style = relu(mix: styleMix, bias: bias, styleZ, channels: channels, latent: latent)
            return contentToStyleRatio(features: features, content: content, style: style, channels: channels)
        }
        let small = ratio(side: 32, seed: 100), large = ratio(side: 256, seed: 200)
        XCTAssertEqual(small / large, 1, accuracy: 0.2, "ratio \(small) at 32², \(large) at 256²")
    }

    /// The same for a smooth pattern sampled at two resolutions (the same scene at 128 and 1024 px).
    func testContentStyleBalanceIsSizeIndependentForSmoothPatterns() {
        let channels = 8
        func pattern(side: Int, phase: Double, frequencyOffset: Int) -> [Float] {
            var map = [Float](repeating: 0, count: channels * side * side)
            for c in 0..<channels {
                let fu = Double(1 + (c + frequencyOffset) % 3), fv = Double(1 + (c * 2 + frequencyOffset) % 4)
                for y in 0..<side {
                    for x in 0..<side {
                        let u = (Double(x) + 0.5) / Double(side), v = (Double(y) + 0.5) / Double(side)
                        let s = sin(2 * Double.pi * (fu * u + fv * v) + phase + Double(c))
                        map[(c * side + y) * side + x] = Float(max(0, s + 0.3))
                    }
                }
            }
            return map
        }
        func ratio(side: Int) -> Double {
            contentToStyleRatio(features: pattern(side: side, phase: 0, frequencyOffset: 0),
                                content: pattern(side: side, phase: 0.4, frequencyOffset: 0),
                                style: pattern(side: side, phase: 1, frequencyOffset: 1), channels: channels)
        }
        let small = ratio(side: 32), large = ratio(side: 256)
        XCTAssertEqual(small / large, 1, accuracy: 0.2, "ratio \(small) at 32², \(large) at 256²")
    }
}

// MARK: - Helpers

/// G = F Fᵀ / N in float64 by the triple loop.
private func naiveGram(_ features: [Float], channels: Int, pixels: Int) -> [Double] {
    var gram = [Double](repeating: 0, count: channels * channels)
    for i in 0..<channels {
        for j in 0..<channels {
            var sum = 0.0
            for p in 0..<pixels { sum += Double(features[i * pixels + p]) * Double(features[j * pixels + p]) }
            gram[i * channels + j] = sum / Double(pixels)
        }
    }
    return gram
}

/// Compares an analytic gradient with float64 central differences of `value`, coordinate by
/// coordinate, within 10⁻³ of the gradient's largest magnitude.
private func assertGradient(_ gradient: [Float], matchesDifferencesOf value: ([Float]) -> Double, at x: [Float],
                            file: StaticString = #filePath, line: UInt = #line) {
    let scale = gradient.map { abs(Double($0)) }.max()!
    XCTAssertGreaterThan(scale, 0, file: file, line: line)
    for i in x.indices {
        var plus = x, minus = x
        plus[i] += 1e-3
        minus[i] -= 1e-3
        let difference = (value(plus) - value(minus)) / (Double(plus[i]) - Double(minus[i]))
        XCTAssertEqual(difference, Double(gradient[i]), accuracy: 1e-3 * scale, "coordinate \(i)", file: file, line: line)
    }
}

/// (latent, side, side) noise that is the same in distribution at every position and every size:
/// uniform white noise averaged over a 3 × 3 window, wrapping around the borders.
private func stationaryNoise(latent: Int, side: Int, using random: inout TestRandom) -> [Float] {
    let white = random.array(latent * side * side, -1, 1)
    var smooth = [Float](repeating: 0, count: white.count)
    for k in 0..<latent {
        for y in 0..<side {
            for x in 0..<side {
                var sum: Float = 0
                for dy in -1...1 {
                    for dx in -1...1 { sum += white[(k * side + (y + dy + side) % side) * side + (x + dx + side) % side] }
                }
                smooth[(k * side + y) * side + x] = sum / 3  // variance of one white sample
            }
        }
    }
    return smooth
}

/// max(0, A z + b) per pixel: a (channels, pixels) feature map from (latent, pixels) noise.
private func relu(mix: [Float], bias: [Float], _ z: [Float], channels: Int, latent: Int) -> [Float] {
    let pixels = z.count / latent
    var map = [Float](repeating: 0, count: channels * pixels)
    for c in 0..<channels {
        for p in 0..<pixels {
            var sum = bias[c]
            for k in 0..<latent { sum += mix[c * latent + k] * z[k * pixels + p] }
            map[c * pixels + p] = max(0, sum)
        }
    }
    return map
}

/// Content loss of `features` against `content` over style loss against the Gram of `style`.
private func contentToStyleRatio(features: [Float], content: [Float], style: [Float], channels: Int) -> Double {
    let pixels = features.count / channels
    var scratch = [Float](repeating: 0, count: features.count)
    let target = style.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
    var styleLoss = StyleLoss(target: target, channels: channels)
    return features.withUnsafeBufferPointer { f in
        scratch.withUnsafeMutableBufferPointer { gradient in
            let contentValue = content.withUnsafeBufferPointer { contentLoss(features: f, target: $0, weight: 1, addingGradientTo: gradient) }
            let styleValue = styleLoss.evaluate(features: f, pixels: pixels, weight: 1, addingGradientTo: gradient)
            return contentValue / styleValue
        }
    }
}

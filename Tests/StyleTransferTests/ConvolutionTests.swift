import XCTest
@testable import Kernels
@testable import StyleTransfer

final class ConvolutionTests: XCTestCase {
    /// (inChannels, outChannels, height, width): 1x1 and single-row/column images, odd sizes, the image's 3 input
    /// channels and the col2im path's 1, a single output channel.
    let shapes: [(Int, Int, Int, Int)] = [
        (3, 8, 1, 1), (1, 1, 1, 5), (5, 1, 5, 1), (3, 16, 7, 9), (1, 4, 6, 6), (8, 3, 5, 7),
        (16, 16, 13, 11), (6, 5, 2, 3), (4, 7, 3, 8), (9, 2, 10, 4), (2, 9, 9, 2), (8, 6, 9, 37), (12, 20, 14, 5),
        // Channel counts that take the panel GEMM, with rows of tiles that fill several panels and leave partial ones.
        (8, 16, 10, 13), (24, 8, 9, 53), (16, 24, 30, 70),
    ]

    /// Each case once per algorithm (Winograd applies to more than 4 input channels on maps of at least 4×4).
    func withAlgorithms(_ cases: [(Int, Int, Int, Int)]) -> [(Int, Int, Int, Int, ConvolutionAlgorithm)] {
        ConvolutionAlgorithm.allCases.flatMap { algorithm in cases.map { ($0.0, $0.1, $0.2, $0.3, algorithm) } }
    }

    /// Scratch limits in floats: one row per band, two rows, and the whole map in one band.
    let scratchLimits = [1, 2, Int.max / 2]

    func testForwardMatchesDirectConvolution() {
        var rng = SplitMix64(seed: 1)
        for (ci, co, h, w, algorithm) in withAlgorithms(shapes) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng)
            let expected = naiveConvolution(input, height: h, width: w, weights: weights)
            let conv = Convolution(weights, algorithm: algorithm)
            for limit in scratchLimits {
                let rowLimit = limit <= 2 ? limit * max(ci, co) * 9 * w : limit
                let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: rowLimit))
                let output = Tensor(channels: co, height: h, width: w)
                conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                             scratch: scratch)
                assertClose(output.values, expected, relative: 1e-5, "\(algorithm) forward \(ci)→\(co) \(h)x\(w) limit \(limit)")
            }
        }
    }

    func testForwardReLUAndMask() {
        var rng = SplitMix64(seed: 2)
        for (ci, co, h, w, algorithm) in withAlgorithms(shapes) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng)
            let reference = naiveConvolution(input, height: h, width: w, weights: weights)
            let conv = Convolution(weights, algorithm: algorithm)
            let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 2 * co * 9 * w))
            let output = Tensor(channels: co, height: h, width: w)
            let mask = ByteBuffer(capacity: co * h * maskRowBytes(width: w))
            mask.storage.update(repeating: 0xA5, count: mask.capacity)
            conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: mask,
                         scratch: scratch)
            assertClose(output.values, reference.map { max($0, 0) }, relative: 1e-5, "\(algorithm) relu \(ci)→\(co) \(h)x\(w)")
            var wrong = 0
            for o in 0 ..< co {
                for y in 0 ..< h {
                    for x in 0 ..< w where maskBit(mask, row: o * h + y, width: w, x: x) != (output[o, y, x] > 0) {
                        wrong += 1
                    }
                }
            }
            XCTAssertEqual(wrong, 0, "\(algorithm) mask bits \(ci)→\(co) \(h)x\(w)")
        }
    }

    func testInputGradientMatchesDirectReference() {
        var rng = SplitMix64(seed: 3)
        for (ci, co, h, w, algorithm) in withAlgorithms(shapes) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let gradOutput = randomValues(co * h * w, using: &rng)
            let expected = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            let conv = Convolution(weights, algorithm: algorithm)
            for limit in scratchLimits {
                let rowLimit = limit <= 2 ? limit * max(ci, co) * 9 * w : limit
                let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: rowLimit))
                let gradInput = Tensor(channels: ci, height: h, width: w)
                gradInput.assign(randomValues(ci * h * w, using: &rng))  // must be overwritten, not added to
                conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                   inputMask: nil, scratch: scratch)
                assertClose(gradInput.values, expected, relative: 1e-5, "\(algorithm) backward \(ci)→\(co) \(h)x\(w) limit \(limit)")
            }
        }
    }

    /// The input gradient equals the adjoint of the forward pass: ⟨conv(x) − b, g⟩ = ⟨x, backward(g)⟩.
    func testInputGradientIsTheAdjointOfForward() {
        var rng = SplitMix64(seed: 4)
        for (ci, co, h, w, algorithm) in withAlgorithms([(3, 64, 9, 7), (64, 32, 6, 5), (2, 3, 1, 1)]) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let conv = Convolution(weights, algorithm: algorithm)
            let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 1 << 20))
            let x = Tensor(channels: ci, height: h, width: w, values: randomValues(ci * h * w, using: &rng))
            let g = Tensor(channels: co, height: h, width: w, values: randomValues(co * h * w, using: &rng))
            let y = Tensor(channels: co, height: h, width: w)
            let gx = Tensor(channels: ci, height: h, width: w)
            conv.forward(x, into: y, reluMask: nil, scratch: scratch)
            conv.backwardInput(g, into: gx, inputMask: nil, scratch: scratch)
            var lhs = 0.0, rhs = 0.0, size = 0.0
            for o in 0 ..< co {
                for p in 0 ..< h * w {
                    let term = Double(y.values[o * h * w + p] - weights.bias[o]) * Double(g.values[o * h * w + p])
                    lhs += term
                    size += abs(term)
                }
            }
            for k in 0 ..< x.count { rhs += Double(x.values[k]) * Double(gx.values[k]) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * size, "\(algorithm) adjoint \(ci)→\(co) \(h)x\(w)")
        }
    }

    func testInputGradientThroughInputMask() {
        var rng = SplitMix64(seed: 5)
        for (ci, co, h, w, algorithm) in withAlgorithms([(3, 5, 4, 11), (12, 4, 7, 9), (6, 6, 1, 17)]) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let gradOutput = randomValues(co * h * w, using: &rng)
            let reference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            let mask = ByteBuffer(capacity: ci * h * maskRowBytes(width: w))
            for k in 0 ..< mask.capacity { mask.storage[k] = UInt8.random(in: 0 ... 255, using: &rng) }
            mask.storage[0] = 0xFF
            if mask.capacity > 1 { mask.storage[1] = 0 }
            var expected = reference
            for i in 0 ..< ci {
                for y in 0 ..< h {
                    for x in 0 ..< w where !maskBit(mask, row: i * h + y, width: w, x: x) {
                        expected[(i * h + y) * w + x] = 0
                    }
                }
            }
            let conv = Convolution(weights, algorithm: algorithm)
            let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 3 * co * 9 * w))
            let gradInput = Tensor(channels: ci, height: h, width: w)
            conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                               inputMask: mask, scratch: scratch)
            assertClose(gradInput.values, expected, relative: 1e-5, "\(algorithm) masked backward \(ci)→\(co) \(h)x\(w)")
        }
    }

    /// The image's convolution (few input channels) on every kernel path: by direct sums where the AVX-512 path runs
    /// it, im2col elsewhere; against the float64 convolution with zero and mirrored padding, at widths of one vector
    /// group of 64 pixels, several, and partial ones.
    func testFewInputChannelsOnEveryPath() throws {
        var rng = SplitMix64(seed: 19)
        for (ci, co, h, w) in [(3, 64, 5, 70), (3, 8, 4, 64), (1, 12, 3, 17), (3, 64, 6, 130), (4, 4, 3, 2)] {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng)
            for reflecting in [false, true] {
                let expected = naiveConvolution(input, height: h, width: w, weights: weights, reflecting: reflecting)
                for path in supportedKernelPaths {
                    try withKernelPath(path) {
                        let conv = Convolution(weights, padding: reflecting ? .reflect : .zero)
                        XCTAssertEqual(conv.usesDirectSums, path == .avx512, "\(path)")
                        let scratch = Tensor(channels: 1, height: 1,
                                             width: conv.scratchCount(height: h, width: w, limit: co * 9 * w))
                        let output = Tensor(channels: co, height: h, width: w)
                        conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output,
                                     reluMask: nil, scratch: scratch)
                        assertClose(output.values, expected, relative: 1e-5,
                                    "\(path) \(ci)→\(co) \(h)x\(w) reflecting \(reflecting)")
                    }
                }
            }
        }
    }

    /// With `Padding.reflect` (the image's convolution): forward against the direct convolution of the mirrored map,
    /// backward as its exact adjoint, and stripes as the whole map, bit for bit.
    func testReflectionPadding() {
        var rng = SplitMix64(seed: 7)
        for (ci, co, h, w) in [(3, 8, 9, 7), (3, 16, 2, 2), (1, 4, 5, 13), (4, 7, 12, 3), (3, 64, 17, 9), (3, 8, 6, 70)] {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let conv = Convolution(weights, padding: .reflect)
            let input = randomValues(ci * h * w, using: &rng), gradOutput = randomValues(co * h * w, using: &rng)
            let expected = naiveConvolution(input, height: h, width: w, weights: weights, reflecting: true)
            XCTAssertNotEqual(expected, naiveConvolution(input, height: h, width: w, weights: weights))
            let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: co * 9 * w))
            let output = Tensor(channels: co, height: h, width: w)
            conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                         scratch: scratch)
            assertClose(output.values, expected, relative: 1e-5, "reflect forward \(ci)→\(co) \(h)x\(w)")
            let gradInput = Tensor(channels: ci, height: h, width: w)
            conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                               inputMask: nil, scratch: scratch)
            var lhs = 0.0, rhs = 0.0, size = 0.0
            for o in 0 ..< co {
                for p in 0 ..< h * w {
                    let term = (expected[o * h * w + p] - Double(weights.bias[o])) * Double(gradOutput[o * h * w + p])
                    lhs += term
                    size += abs(term)
                }
            }
            for k in 0 ..< input.count { rhs += Double(input[k]) * Double(gradInput.values[k]) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-5 * size, "reflect adjoint \(ci)→\(co) \(h)x\(w)")
            // Every band of rows from stripes holding the rows it needs.
            for first in 0 ..< h {
                for last in first + 1 ... h {
                    let rows = first ..< last
                    let needed = Convolution.inputRows(for: rows, height: h)
                    let span = RowSpan(first: needed.lowerBound, rows: needed.count, height: h, width: w)
                    let rowSpan = RowSpan(first: first, rows: rows.count, height: h, width: w)
                    let part = Tensor(channels: co, height: rows.count, width: w)
                    conv.forward(rows: rows, input: stripe(input, channels: ci, span: span), inputSpan: span, into: part,
                                 outputSpan: rowSpan, reluMask: nil, scratch: scratch)
                    let partGradient = Tensor(channels: ci, height: rows.count, width: w)
                    conv.backwardInput(rows: rows, gradOutput: stripe(gradOutput, channels: co, span: span),
                                       gradOutputSpan: span, into: partGradient, gradInputSpan: rowSpan, inputMask: nil,
                                       scratch: scratch)
                    var wrong = 0
                    for y in rows {
                        for x in 0 ..< w {
                            for o in 0 ..< co where part[o, y - first, x] != output[o, y, x] { wrong += 1 }
                            for i in 0 ..< ci where partGradient[i, y - first, x] != gradInput[i, y, x] { wrong += 1 }
                        }
                    }
                    XCTAssertEqual(wrong, 0, "reflect stripe \(rows) of \(ci)→\(co) \(h)x\(w)")
                }
            }
        }
    }

    /// Copies the rows `span` of a whole CHW map into a stripe tensor.
    func stripe(_ values: [Float], channels: Int, span: RowSpan) -> Tensor {
        let t = Tensor(channels: channels, height: span.rows, width: span.width)
        for c in 0 ..< channels {
            for y in 0 ..< span.rows {
                for x in 0 ..< span.width {
                    t[c, y, x] = values[(c * span.height + span.first + y) * span.width + x]
                }
            }
        }
        return t
    }

    /// The stripe forms compute exactly the rows asked, from stripes holding just the rows they need (one more on each
    /// side where the map has them), and leave every other row and every other mask row alone. With im2col, whose
    /// products run one map row at a time, a stripe's rows are the whole map's bit for bit.
    func testStripesMatchTheWholeMap() {
        var rng = SplitMix64(seed: 6)
        for (ci, co, h, w, algorithm) in withAlgorithms([(3, 8, 9, 7), (8, 3, 10, 5), (16, 16, 7, 12), (2, 5, 1, 4), (5, 4, 2, 3)]) {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let conv = Convolution(weights, algorithm: algorithm)
            let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 2 * 16 * 9 * w))
            let input = randomValues(ci * h * w, using: &rng)
            let gradOutput = randomValues(co * h * w, using: &rng)
            // Per element: Winograd's rounding relative to one element (not the map's scale) is several times im2col's.
            let tolerance = algorithm == .im2col ? 1e-5 : 1e-4
            let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
            let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            let wholeOutput = Tensor(channels: co, height: h, width: w)
            conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: wholeOutput,
                         reluMask: ByteBuffer(capacity: co * h * maskRowBytes(width: w)), scratch: scratch)
            let wholeGradient = Tensor(channels: ci, height: h, width: w)
            conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: wholeGradient,
                               inputMask: nil, scratch: scratch)
            for first in 0 ..< h {
                for last in first + 1 ... h {
                    let rows = first ..< last
                    let needed = Convolution.inputRows(for: rows, height: h)
                    let inSpan = RowSpan(first: needed.lowerBound, rows: needed.count, height: h, width: w)
                    let outSpan = RowSpan(first: max(0, first - 1), rows: min(h, last + 1) - max(0, first - 1),
                                          height: h, width: w)
                    let sentinel: Float = 1234.5
                    // Forward, with ReLU and its mask.
                    let output = Tensor(channels: co, height: outSpan.rows, width: w)
                    output.assign([Float](repeating: sentinel, count: output.count))
                    let mask = ByteBuffer(capacity: co * h * maskRowBytes(width: w))
                    mask.storage.update(repeating: 0x5A, count: mask.capacity)
                    conv.forward(rows: rows, input: stripe(input, channels: ci, span: inSpan), inputSpan: inSpan,
                                 into: output, outputSpan: outSpan, reluMask: .mask(mask, rows: 0 ..< h, width: w),
                                 scratch: scratch)
                    var wrong = 0
                    for o in 0 ..< co {
                        for y in outSpan.first ..< outSpan.first + outSpan.rows {
                            for x in 0 ..< w {
                                let value = output[o, y - outSpan.first, x]
                                if rows.contains(y) {
                                    let expected = max(forwardReference[(o * h + y) * w + x], 0)
                                    if abs(Double(value) - expected) > tolerance * max(1, abs(expected)) { wrong += 1 }
                                    if maskBit(mask, row: o * h + y, width: w, x: x) != (value > 0) { wrong += 1 }
                                    if !conv.usesWinograd && value != wholeOutput[o, y, x] { wrong += 1 }
                                } else if value != sentinel {
                                    wrong += 1
                                }
                            }
                        }
                        for y in 0 ..< h where !rows.contains(y) {
                            for b in 0 ..< maskRowBytes(width: w)
                            where mask.storage[(o * h + y) * maskRowBytes(width: w) + b] != 0x5A {
                                wrong += 1
                            }
                        }
                    }
                    XCTAssertEqual(wrong, 0, "\(algorithm) forward stripe \(rows) of \(ci)→\(co) \(h)x\(w)")
                    // The same mask recorded into records of the stripe's rows alone.
                    let rowBytes = maskRowBytes(width: w)
                    let local = ByteBuffer(capacity: co * rows.count * rowBytes)
                    conv.forward(rows: rows, input: stripe(input, channels: ci, span: inSpan), inputSpan: inSpan,
                                 into: output, outputSpan: outSpan, reluMask: .mask(local, rows: rows, width: w),
                                 scratch: scratch)
                    for o in 0 ..< co {
                        for y in rows {
                            for b in 0 ..< rowBytes {
                                XCTAssertEqual(local.storage[(o * rows.count + y - rows.lowerBound) * rowBytes + b],
                                               mask.storage[(o * h + y) * rowBytes + b], "local mask \(rows)")
                            }
                        }
                    }
                    // Backward.
                    let gradSpan = RowSpan(first: needed.lowerBound, rows: needed.count, height: h, width: w)
                    let gradInput = Tensor(channels: ci, height: outSpan.rows, width: w)
                    gradInput.assign([Float](repeating: sentinel, count: gradInput.count))
                    conv.backwardInput(rows: rows, gradOutput: stripe(gradOutput, channels: co, span: gradSpan),
                                       gradOutputSpan: gradSpan, into: gradInput, gradInputSpan: outSpan,
                                       inputMask: nil, scratch: scratch)
                    wrong = 0
                    for i in 0 ..< ci {
                        for y in outSpan.first ..< outSpan.first + outSpan.rows {
                            for x in 0 ..< w {
                                let value = gradInput[i, y - outSpan.first, x]
                                if rows.contains(y) {
                                    let expected = backwardReference[(i * h + y) * w + x]
                                    if abs(Double(value) - expected) > tolerance * max(1, abs(expected)) { wrong += 1 }
                                    if !conv.usesWinograd && value != wholeGradient[i, y, x] { wrong += 1 }
                                } else if value != sentinel {
                                    wrong += 1
                                }
                            }
                        }
                    }
                    XCTAssertEqual(wrong, 0, "\(algorithm) backward stripe \(rows) of \(ci)→\(co) \(h)x\(w)")
                    // Through the input's ReLU: a whole map's mask and the stripe's rows of it agree.
                    let inputRowBytes = maskRowBytes(width: w)
                    let wholeMask = ByteBuffer(capacity: ci * h * inputRowBytes)
                    for k in 0 ..< wholeMask.capacity { wholeMask.storage[k] = UInt8(truncatingIfNeeded: k &* 37 &+ 11) }
                    let stripeMask = ByteBuffer(capacity: ci * rows.count * inputRowBytes)
                    for i in 0 ..< ci {
                        (stripeMask.storage + i * rows.count * inputRowBytes).update(
                            from: wholeMask.storage + (i * h + rows.lowerBound) * inputRowBytes, count: rows.count * inputRowBytes)
                    }
                    let masked = [Tensor(channels: ci, height: outSpan.rows, width: w),
                                  Tensor(channels: ci, height: outSpan.rows, width: w)]
                    for (k, records) in [RowRecords.mask(wholeMask, rows: 0 ..< h, width: w),
                                         .mask(stripeMask, rows: rows, width: w)].enumerated() {
                        conv.backwardInput(rows: rows, gradOutput: stripe(gradOutput, channels: co, span: gradSpan),
                                           gradOutputSpan: gradSpan, into: masked[k], gradInputSpan: outSpan,
                                           inputMask: records, scratch: scratch)
                    }
                    for i in 0 ..< ci {
                        for y in rows {
                            for x in 0 ..< w {
                                let passes = wholeMask.storage[(i * h + y) * inputRowBytes + x / 8] & (1 << UInt8(x % 8)) != 0
                                let expected = passes ? gradInput[i, y - outSpan.first, x] : 0
                                XCTAssertEqual(masked[0][i, y - outSpan.first, x], expected, "whole input mask")
                                XCTAssertEqual(masked[1][i, y - outSpan.first, x], expected, "stripe input mask")
                            }
                        }
                    }
                }
            }
        }
    }
}

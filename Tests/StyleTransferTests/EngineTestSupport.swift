import XCTest
@testable import Kernels
@testable import StyleTransfer

/// Uniform values in -scale…scale from a seeded generator.
/// The project's weights file (weights/ of this source tree), loaded and checked.
func projectWeights() throws -> VGGWeights {
    try VGGWeights.load(from: VGGWeights.locate(explicit: nil, environment: [:], executablePath: "/nonexistent"))
}

func randomValues(_ count: Int, scale: Float = 1, using rng: inout SplitMix64) -> [Float] {
    (0 ..< count).map { _ in Float.random(in: -scale ... scale, using: &rng) }
}

/// Random weights for one convolution, uniform with the variance of He initialization (2 / fan-in).
func randomConvWeights(name: String = "conv", inChannels: Int, outChannels: Int,
                       using rng: inout SplitMix64) -> ConvLayerWeights {
    let scale = (6 / Float(inChannels * 9)).squareRoot()
    return ConvLayerWeights(name: name, inChannels: inChannels, outChannels: outChannels,
                            kernel: randomValues(outChannels * inChannels * 9, scale: scale, using: &rng),
                            bias: randomValues(outChannels, scale: 0.1, using: &rng))
}

/// The slow reference: a direct 3x3 pad-1 convolution with float64 accumulation. Input and output are CHW. With
/// `reflecting`, a position beyond an edge reads its mirror image (−1 reads 1).
func naiveConvolution(_ input: [Float], height: Int, width: Int, weights: ConvLayerWeights,
                      reflecting: Bool = false) -> [Double] {
    let ci = weights.inChannels, co = weights.outChannels
    let mirror = { (k: Int, n: Int) in reflecting ? (k < 0 ? -k : (k >= n ? 2 * (n - 1) - k : k)) : k }
    var output = [Double](repeating: 0, count: co * height * width)
    for o in 0 ..< co {
        for y in 0 ..< height {
            for x in 0 ..< width {
                var sum = Double(weights.bias[o])
                for i in 0 ..< ci {
                    for ky in 0 ..< 3 {
                        let sy = mirror(y + ky - 1, height)
                        guard sy >= 0 && sy < height else { continue }
                        for kx in 0 ..< 3 {
                            let sx = mirror(x + kx - 1, width)
                            guard sx >= 0 && sx < width else { continue }
                            sum += Double(weights.kernel[((o * ci + i) * 3 + ky) * 3 + kx])
                                * Double(input[(i * height + sy) * width + sx])
                        }
                    }
                }
                output[(o * height + y) * width + x] = sum
            }
        }
    }
    return output
}

/// The slow reference for the input gradient: ∂L/∂input[i, y, x] = Σ w[o, i, ky, kx] · g[o, y − ky + 1, x − kx + 1].
func naiveConvolutionInputGradient(_ gradOutput: [Float], height: Int, width: Int,
                                   weights: ConvLayerWeights) -> [Double] {
    let ci = weights.inChannels, co = weights.outChannels
    var gradInput = [Double](repeating: 0, count: ci * height * width)
    for i in 0 ..< ci {
        for y in 0 ..< height {
            for x in 0 ..< width {
                var sum = 0.0
                for o in 0 ..< co {
                    for ky in 0 ..< 3 {
                        let oy = y - ky + 1
                        guard oy >= 0 && oy < height else { continue }
                        for kx in 0 ..< 3 {
                            let ox = x - kx + 1
                            guard ox >= 0 && ox < width else { continue }
                            sum += Double(weights.kernel[((o * ci + i) * 3 + ky) * 3 + kx])
                                * Double(gradOutput[(o * height + oy) * width + ox])
                        }
                    }
                }
                gradInput[(i * height + y) * width + x] = sum
            }
        }
    }
    return gradInput
}

/// Asserts max |actual − expected| ≤ tolerance · max(max |expected|, floor).
func assertClose(_ actual: [Float], _ expected: [Double], relative tolerance: Double, floor: Double = 1e-6,
                 _ message: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(message): count", file: file, line: line)
    guard actual.count == expected.count else { return }
    let scale = max(expected.map { abs($0) }.max() ?? 0, floor)
    var worst = 0.0, at = 0
    for k in 0 ..< actual.count where abs(Double(actual[k]) - expected[k]) > worst {
        worst = abs(Double(actual[k]) - expected[k])
        at = k
    }
    XCTAssertLessThanOrEqual(worst / scale, tolerance,
                             "\(message): element \(at) is \(actual.isEmpty ? 0 : actual[at]), expected \(expected.isEmpty ? 0 : expected[at])",
                             file: file, line: line)
}

/// Reads bit x of row `row` of a ReLU mask laid out as the kernels write it.
func maskBit(_ mask: ByteBuffer, row: Int, width: Int, x: Int) -> Bool {
    mask.storage[row * maskRowBytes(width: width) + x / 8] & (1 << UInt8(x % 8)) != 0
}

/// How far central finite differences of `loss` along `directions` random ±1 directions over all pixels fall from
/// the directional derivatives the `gradient` predicts, each relative to Σ |gradient · step| of its direction. The
/// step is small so that the kinks of ReLU and max pooling, and the float32 rounding of the forward passes, stay
/// well below the signal.
func directionalErrors(image: [Float], gradient: [Float], step: Float = 3e-5, directions: Int = 6,
                       using rng: inout SplitMix64, loss: ([Float]) -> Double) -> [Double] {
    (0 ..< directions).map { _ in
        let direction = (0 ..< image.count).map { _ in Float(Int.random(in: 0 ... 1, using: &rng) * 2 - 1) }
        let plus = zip(image, direction).map { $0 + step * $1 }, minus = zip(image, direction).map { $0 - step * $1 }
        var expected = 0.0, size = 0.0
        for k in 0 ..< image.count {
            let taken = Double(plus[k] - minus[k])  // the step as float32 rounds it
            expected += Double(gradient[k]) * taken
            size += abs(Double(gradient[k]) * taken)
        }
        return abs(loss(plus) - loss(minus) - expected) / size
    }
}

import CGEMM
import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The kernel paths this processor runs: the own kernels' instruction sets it has, and OpenBLAS.
let supportedKernelPaths = KernelPath.allCases.filter(\.isSupported)

/// Runs `body` with the products forced onto `path`, then forces the path that was current before.
func withKernelPath<Result>(_ path: KernelPath, _ body: () throws -> Result) throws -> Result {
    let previous = KernelPath.current
    try KernelPath.force(path)
    defer { try? KernelPath.force(previous) }
    return try body()
}

final class KernelPathTests: XCTestCase {
    /// The default is the own kernels in the widest instruction set the processor runs; the portable kernels and
    /// OpenBLAS run everywhere.
    func testDefaultIsTheWidestInstructionSet() {
        XCTAssertTrue(KernelPath.portable.isSupported)
        XCTAssertTrue(KernelPath.openblas.isSupported)
        XCTAssertEqual(KernelPath.detected, [KernelPath.avx512, .avx2, .portable].first(where: \.isSupported))
        XCTAssertEqual(KernelPath.current, KernelPath.detected)
        XCTAssertEqual(KernelPath.summary, "kernels: \(KernelPath.detected.rawValue)")
        XCTAssertEqual(cgemm_supports(CGEMM_AVX2) != 0, KernelPath.avx2.isSupported)
        XCTAssertEqual(cgemm_supports(CGEMM_AVX512) != 0, KernelPath.avx512.isSupported)
    }

    /// A forced path is what `current` reports, what the C kernels select and what new convolutions take for their
    /// Winograd products.
    func testForcedPathIsTheOneThatRuns() throws {
        var rng = SplitMix64(seed: 40)
        let weights = randomConvWeights(inChannels: 16, outChannels: 8, using: &rng)
        for path in supportedKernelPaths {
            try withKernelPath(path) {
                XCTAssertEqual(KernelPath.current, path)
                XCTAssertTrue(KernelPath.summary.hasPrefix("kernels: \(path.rawValue)"), KernelPath.summary)
                if path != .openblas {
                    XCTAssertEqual(cgemm_selected(), [KernelPath.portable: CGEMM_PORTABLE, .avx2: CGEMM_AVX2,
                                                      .avx512: CGEMM_AVX512][path])
                }
                XCTAssertEqual(Convolution(weights, threads: 1).usesPanelGEMM, path != .openblas, "\(path)")
                XCTAssertFalse(Convolution(weights, threads: 1, algorithm: .winogradOpenBLAS).usesPanelGEMM)
            }
        }
        XCTAssertEqual(KernelPath.current, KernelPath.detected)
    }

    /// Forcing an instruction set the processor lacks is refused and changes nothing, in Swift and in C.
    func testForcingAMissingInstructionSetIsRefused() throws {
        XCTAssertEqual(cgemm_select(cgemm_isa(rawValue: 7)), 0)
        XCTAssertEqual(cgemm_select(cgemm_isa(rawValue: UInt32(bitPattern: -1))), 0)
        let missing = KernelPath.allCases.filter { !$0.isSupported }
        try XCTSkipIf(missing.isEmpty, "this processor runs every kernel path")
        for path in missing {
            XCTAssertThrowsError(try KernelPath.force(path)) { error in
                XCTAssertEqual(error as? KernelPathError, .unsupported(path))
                XCTAssertTrue(error.localizedDescription.contains(path.rawValue), error.localizedDescription)
            }
            XCTAssertEqual(KernelPath.current, KernelPath.detected)
            XCTAssertEqual(cgemm_select(path == .avx512 ? CGEMM_AVX512 : CGEMM_AVX2), 0)
        }
        XCTAssertEqual(KernelPath.current, KernelPath.detected)
    }

    /// On every path, the im2col convolutions (the image's 3 channels, whose backward pass is the col2im product, and
    /// a layer forced to im2col, whose backward pass reads the rotated kernel) match the float64 direct convolution
    /// and its input gradient, run in the own kernels except on OpenBLAS, and make exactly the kernels they count.
    func testIm2colConvolutionsOnEveryPath() throws {
        var rng = SplitMix64(seed: 42)
        let cases: [(Int, Int, Int, Int, ConvolutionAlgorithm)] = [
            (3, 64, 11, 37, .winograd), (3, 5, 6, 9, .winograd), (12, 20, 9, 13, .im2col), (1, 3, 1, 1, .im2col),
        ]
        for (ci, co, h, w, algorithm) in cases {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng), gradOutput = randomValues(co * h * w, using: &rng)
            let expected = naiveConvolution(input, height: h, width: w, weights: weights)
            let expectedGradient = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            for path in supportedKernelPaths {
                try withKernelPath(path) {
                    let conv = Convolution(weights, threads: 2, algorithm: algorithm)
                    let label = "\(path) \(ci)→\(co) \(h)x\(w)"
                    XCTAssertEqual(conv.usesOwnIm2col, path != .openblas, label)
                    let scratch = Tensor(channels: 1, height: 1,
                                         width: conv.scratchCount(height: h, width: w, limit: 2 * max(ci, co) * 9 * w))
                    let output = Tensor(channels: co, height: h, width: w)
                    conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                                 scratch: scratch)
                    assertClose(output.values, expected, relative: 1e-5, "\(label) forward")
                    let gradInput = Tensor(channels: ci, height: h, width: w)
                    conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                       inputMask: nil, scratch: scratch)
                    assertClose(gradInput.values, expectedGradient, relative: 1e-5, "\(label) backward")
                    XCTAssertEqual(conv.allocatedBytes, conv.derivedKernelCount * MemoryLayout<Float>.stride, label)
                }
            }
        }
    }

    /// A Winograd convolution asked for bf16 products runs them only on the avx512 path of a processor with
    /// AVX512_BF16, with F(4×4), and the network reports the precision that ran. There, on white noise (the worst case
    /// for Winograd's transforms, which amplify its high frequencies and so the operands' rounding), forward and
    /// backward stay within 6 % (in norm) of the float64 direct convolution, where single precision is within 10⁻⁵;
    /// and the network's maps of a photo at every loss layer within 2 % of single precision's (measured: 0.2 % at
    /// relu1_2, about 1 % at the deeper layers of a 512×384 photo).
    func testBF16WinogradProductsOnlyWhereTheyRun() throws {
        try checkReducedPrecision(.bf16, tile: .f4, noiseError: 6e-2, mapError: 2e-2)
    }

    /// A Winograd convolution asked for half-precision products runs them only on the avx512 path of a processor with
    /// AVX512_FP16, with F(6×6), and the network reports the precision that ran. There, on white noise, forward and
    /// backward stay within 3 % (in norm) of the float64 direct convolution (measured: 1.8 and 1.4 %), but farther than
    /// single precision's 10⁻⁵; and the network's maps of a photo at every loss layer within 1.5 % of single
    /// precision's (measured: 0.6 to 0.8 % from relu2_1 on; relu1_1 is conv1_1's, which runs no Winograd products).
    func testHalfWinogradProductsOnlyWhereTheyRun() throws {
        try checkReducedPrecision(.half, tile: .f6, noiseError: 3e-2, mapError: 1.5e-2)
    }

    /// The checks of the two tests above for `precision`: a convolution on white noise against float64 within
    /// `noiseError` but not within single precision's 10⁻⁵, both ways, and the network's maps of a photo within
    /// `mapError` of single precision's, where the precision runs; elsewhere, that it does not.
    private func checkReducedPrecision(_ precision: ProductPrecision, tile: WinogradTile, noiseError: Double,
                                       mapError: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        var rng = SplitMix64(seed: 43)
        let (ci, co, h, w) = (64, 32, 23, 30)
        let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
        let input = randomValues(ci * h * w, using: &rng), gradOutput = randomValues(co * h * w, using: &rng)
        let expected = naiveConvolution(input, height: h, width: w, weights: weights)
        let expectedGradient = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
        /// ‖actual − expected‖ / ‖expected‖.
        func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
            let difference = zip(actual, expected).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
            return (difference / expected.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
        }
        for path in supportedKernelPaths {
            try withKernelPath(path) {
                let conv = Convolution(weights, threads: 2, precision: precision)
                let runs = path == .avx512 && precision.isSupported
                XCTAssertEqual(conv.productPrecision, runs ? precision : .single, "\(path)", file: file, line: line)
                XCTAssertEqual(try VGG19(weights: randomVGGWeights, precision: precision).precision,
                               runs ? precision : .single, file: file, line: line)
                XCTAssertEqual(Convolution(weights, threads: 2).productPrecision, .single, file: file, line: line)
                guard runs else { return }
                XCTAssertEqual(conv.tile, tile, file: file, line: line)
                let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 1 << 20))
                let output = Tensor(channels: co, height: h, width: w)
                conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                             scratch: scratch)
                let gradInput = Tensor(channels: ci, height: h, width: w)
                conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                   inputMask: nil, scratch: scratch)
                for (name, error) in [("forward", relativeError(output.values, expected)),
                                      ("backward", relativeError(gradInput.values, expectedGradient))] {
                    XCTAssertLessThan(error, noiseError, name, file: file, line: line)
                    // Not single precision's 10⁻⁵: the operands were rounded.
                    XCTAssertGreaterThan(error, 1e-5, name, file: file, line: line)
                }

                let (width, height) = (64, 48)
                let photo = try ReferenceTests.readPPM(
                    ReferenceTests.fixtures.appendingPathComponent("chelsea-64x48.ppm"), width: width, height: height)
                let layers: Set<String> = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
                let weights = try projectWeights()
                let single = try VGG19(weights: weights).activations(image: photo, height: height, width: width,
                                                                     layers: layers)
                let reduced = try VGG19(weights: weights, precision: precision)
                    .activations(image: photo, height: height, width: width, layers: layers)
                for layer in layers {
                    let reference = single[layer]!.values.map(Double.init)
                    XCTAssertLessThan(relativeError(reduced[layer]!.values, reference), mapError, layer, file: file,
                                      line: line)
                }
            }
        }
    }

    /// On every path: the Gram matrix of an odd number of channels over several chunks of pixels, added in stripes of
    /// a wider map, matches the float64 Gram; the style loss's gradient, added to a gradient that holds values
    /// already, matches 4 · weight / (C² N) · (G − T) F in float64; and both come out the same bits every time.
    func testGramAndStyleGradientOnEveryPath() throws {
        var random = TestRandom(state: 41)
        let channels = 13, pixels = 9000, stride = 9100
        let features = random.array(channels * stride, 0, 2)
        let target = (0 ..< channels * channels).map { Float(($0 / channels + $0 % channels) % 5) * 0.3 }
        let start = random.array(channels * stride, -1, 1)
        let weight: Float = 2e4
        var reference = [Double](repeating: 0, count: channels * channels)
        for i in 0 ..< channels {
            for j in 0 ..< channels {
                var sum = 0.0
                for p in 0 ..< pixels { sum += Double(features[i * stride + p]) * Double(features[j * stride + p]) }
                reference[i * channels + j] = sum / Double(pixels)
            }
        }
        let scale = 4 * Double(weight) / Double(channels * channels * pixels)
        var gradientReference = [Double](repeating: 0, count: channels * stride)
        for i in 0 ..< channels {
            for p in 0 ..< stride {
                guard p < pixels else {
                    gradientReference[i * stride + p] = Double(start[i * stride + p])
                    continue
                }
                var sum = 0.0
                for j in 0 ..< channels {
                    sum += (reference[i * channels + j] - Double(target[i * channels + j])) * Double(features[j * stride + p])
                }
                gradientReference[i * stride + p] = Double(start[i * stride + p]) + scale * sum
            }
        }
        for path in supportedKernelPaths {
            try withKernelPath(path) {
                var results: [[Float]] = []
                for _ in 0 ..< 2 {
                    var loss = StyleLoss(target: target, channels: channels)
                    var gradient = start
                    features.withUnsafeBufferPointer { all in
                        for (first, end) in [(0, 4097), (4097, 4100), (4100, pixels)] {
                            loss.accumulator.add(UnsafeBufferPointer(rebasing: all[first...]), pixels: end - first,
                                                 stride: stride)
                        }
                    }
                    let gram = loss.accumulator.gram()
                    assertClose(gram, reference, relative: 1e-6, "\(path) Gram")
                    _ = loss.finish()
                    features.withUnsafeBufferPointer { features in
                        gradient.withUnsafeMutableBufferPointer { gradient in
                            loss.addGradient(features: features, pixels: pixels, featureStride: stride, weight: weight,
                                             into: gradient, gradientStride: stride)
                        }
                    }
                    assertClose(gradient, gradientReference, relative: 1e-6, "\(path) gradient")
                    results.append(gram + gradient)
                }
                XCTAssertEqual(results[0], results[1], "\(path) is not deterministic")
            }
        }
    }
}

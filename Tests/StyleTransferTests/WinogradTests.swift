import XCTest
@testable import Kernels
@testable import StyleTransfer

final class WinogradTests: XCTestCase {
    /// At VGG-19's channel counts, on ReLU-like (nonnegative) inputs, Winograd's F(4×4, 3×3) stays within 2·10⁻⁵ of the
    /// float64 direct convolution relative to the output's scale, forward and backward, in bands of several tile rows
    /// and of one, on every kernel path.
    func testAccuracyAtNetworkChannelCounts() throws {
        var rng = SplitMix64(seed: 7)
        for (ci, co, h, w) in [(64, 64, 13, 38), (256, 128, 9, 11), (512, 512, 4, 6)] {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng).map { max($0, 0) * 100 }
            let gradOutput = randomValues(co * h * w, using: &rng)
            let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
            let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            for (path, algorithm) in Self.pathsAndAlgorithms {
                try withKernelPath(path) {
                    let conv = Convolution(weights, threads: 2, algorithm: algorithm)
                    XCTAssertEqual(conv.usesPanelGEMM, algorithm == .winograd && path != .openblas)
                    for limit in [1, Int.max / 2] {
                        let scratch = Tensor(channels: 1, height: 1,
                                             width: conv.scratchCount(height: h, width: w, limit: limit))
                        let output = Tensor(channels: co, height: h, width: w)
                        conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output,
                                     reluMask: nil, scratch: scratch)
                        assertClose(output.values, forwardReference, relative: 2e-5,
                                    "\(path) \(algorithm) forward \(ci)→\(co) \(h)x\(w) limit \(limit)")
                        let gradInput = Tensor(channels: ci, height: h, width: w)
                        conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput),
                                           into: gradInput, inputMask: nil, scratch: scratch)
                        assertClose(gradInput.values, backwardReference, relative: 2e-5,
                                    "\(path) \(algorithm) backward \(ci)→\(co) \(h)x\(w) limit \(limit)")
                    }
                }
            }
        }
    }

    /// Every kernel path the processor runs with the panel GEMM's algorithm, and the one path with OpenBLAS's: the
    /// products of `winogradOpenBLAS` do not depend on the path.
    private static let pathsAndAlgorithms: [(KernelPath, ConvolutionAlgorithm)] =
        supportedKernelPaths.map { ($0, .winograd) } + [(KernelPath.detected, .winogradOpenBLAS)]

    /// A scratch that holds two tile rows of a map five tile rows tall: bands of 2, 2 and 1 tile rows, the last
    /// laid out in panels of its own, with several panels per band for the panel GEMM; on every kernel path.
    func testShorterLastBand() throws {
        var rng = SplitMix64(seed: 8)
        let (ci, co, h, w) = (16, 24, 19, 150)
        let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
        let input = randomValues(ci * h * w, using: &rng)
        let gradOutput = randomValues(co * h * w, using: &rng)
        let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
        let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
        for (path, algorithm) in Self.pathsAndAlgorithms {
            try withKernelPath(path) {
                let conv = Convolution(weights, threads: 2, algorithm: algorithm)
                let scratch = Tensor(channels: 1, height: 1,
                                     width: conv.scratchCount(height: 8, width: w, limit: .max / 2))
                let output = Tensor(channels: co, height: h, width: w)
                conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                             scratch: scratch)
                assertClose(output.values, forwardReference, relative: 2e-5, "\(path) \(algorithm) forward")
                let gradInput = Tensor(channels: ci, height: h, width: w)
                conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                   inputMask: nil, scratch: scratch)
                assertClose(gradInput.values, backwardReference, relative: 2e-5, "\(path) \(algorithm) backward")
            }
        }
    }

    /// The transformed kernel serves the input gradient through the turned positions: G·J = D·P·G exactly.
    func testTurnedKernelIsAScaledPermutation() {
        let kernel: [Float] = (0 ..< 9).map { Float($0 * $0 % 7) - 2.5 }
        let turned: [Float] = kernel.reversed()
        var u = [Float](repeating: 0, count: 36), v = [Float](repeating: 0, count: 36)
        kernel.withUnsafeBufferPointer { winogradTransformKernel($0.baseAddress!, outChannels: 1, inChannels: 1, outputs: 0 ..< 1, panelRows: 1, into: &u) }
        turned.withUnsafeBufferPointer { winogradTransformKernel($0.baseAddress!, outChannels: 1, inChannels: 1, outputs: 0 ..< 1, panelRows: 1, into: &v) }
        for i in 0 ..< 6 {
            for k in 0 ..< 6 {
                let expected = winogradTurnedScale[i] * winogradTurnedScale[k] * u[winogradTurned[i] * 6 + winogradTurned[k]]
                XCTAssertEqual(v[i * 6 + k], expected, accuracy: 1e-6 * max(1, abs(expected)), "position \(i), \(k)")
            }
        }
    }

    /// The kernel transform against G g Gᵀ in float64 written out with the matrix of the comment in Winograd.swift, for
    /// channel counts that leave partial vectors and partial blocks, and for a slice of the output channels, in the plain
    /// order and in panels of 8 and 16 output channels.
    func testKernelTransformMatchesTheMatrices() {
        let gMatrix: [[Double]] = [[0.5, 0, 0], [1.0 / 18, 1.0 / 18, 1.0 / 18], [-0.5, 0.5, -0.5],
                                   [1.0 / 18, -1.0 / 9, 2.0 / 9], [16.0 / 9, -8.0 / 9, 4.0 / 9], [0, 0, 0.5]]
        var rng = SplitMix64(seed: 11)
        for (co, ci, panelRows) in [(3, 1, 1), (2, 37, 1), (5, 70, 1), (8, 37, 8), (24, 70, 8), (32, 9, 16)] {
            let kernel = randomValues(co * ci * 9, using: &rng)
            let plane = co * ci
            var transformed = [Float](repeating: .nan, count: 36 * plane)
            let outputs = co > 2 ? 1 ..< co - 1 : 0 ..< co
            kernel.withUnsafeBufferPointer { k in
                transformed.withUnsafeMutableBufferPointer { t in
                    winogradTransformKernel(k.baseAddress!, outChannels: co, inChannels: ci, outputs: outputs,
                                            panelRows: panelRows, into: t.baseAddress!)
                }
            }
            for o in 0 ..< co {
                for i in 0 ..< ci {
                    for r in 0 ..< 6 {
                        for c in 0 ..< 6 {
                            let value = transformed[(r * 6 + c) * plane + (o / panelRows) * panelRows * ci
                                                    + i * panelRows + o % panelRows]
                            guard outputs.contains(o) else {
                                XCTAssertTrue(value.isNaN, "channel \(o) outside the slice was written")
                                continue
                            }
                            var expected = 0.0
                            for ky in 0 ..< 3 {
                                for kx in 0 ..< 3 {
                                    expected += gMatrix[r][ky] * Double(kernel[(o * ci + i) * 9 + ky * 3 + kx]) * gMatrix[c][kx]
                                }
                            }
                            XCTAssertEqual(Double(value), expected, accuracy: 1e-6 * max(1, abs(expected)),
                                           "\(co)x\(ci) o \(o) i \(i) position \(r), \(c)")
                        }
                    }
                }
            }
        }
    }

    /// Convolutions sharing one slot for their transformed kernels give the same bits as convolutions that keep their
    /// own, in any order of use, and remake a kernel only when another convolution used the slot in between.
    func testSharedKernelSlotGivesTheKeptKernelsResults() {
        var rng = SplitMix64(seed: 12)
        let (h, w) = (9, 10)
        let layers = [randomConvWeights(inChannels: 16, outChannels: 24, using: &rng),
                      randomConvWeights(inChannels: 24, outChannels: 8, using: &rng)]
        let slot = TransformedKernelSlot(capacity: 36 * 16 * 24)
        let shared = layers.map { Convolution($0, threads: 2, algorithm: .winograd, kernelSlot: slot) }
        let kept = layers.map { Convolution($0, threads: 2, algorithm: .winograd) }
        let scratch = Tensor(channels: 1, height: 1, width: 1 << 20)
        let input = Tensor(channels: 16, height: h, width: w, values: randomValues(16 * h * w, using: &rng))
        func run(_ convs: [Convolution]) -> [Float] {
            let middle = Tensor(channels: 24, height: h, width: w), output = Tensor(channels: 8, height: h, width: w)
            convs[0].forward(input, into: middle, reluMask: nil, scratch: scratch)
            convs[1].forward(middle, into: output, reluMask: nil, scratch: scratch)
            let back = Tensor(channels: 24, height: h, width: w), image = Tensor(channels: 16, height: h, width: w)
            convs[1].backwardInput(output, into: back, inputMask: nil, scratch: scratch)
            convs[0].backwardInput(back, into: image, inputMask: nil, scratch: scratch)
            return middle.values + output.values + back.values + image.values
        }
        let expected = run(kept)
        XCTAssertEqual(run(shared), expected)
        // Forward 0, 1, backward 1 (still there), 0: three fills; the second round starts with 0 still there: two.
        XCTAssertEqual(slot.fills, 3)
        XCTAssertEqual(run(shared), expected)
        XCTAssertEqual(slot.fills, 5)
        XCTAssertEqual(slot.allocatedBytes, 36 * 16 * 24 * 4)
        XCTAssertEqual(shared.map(\.allocatedBytes), [0, 0])
    }
}

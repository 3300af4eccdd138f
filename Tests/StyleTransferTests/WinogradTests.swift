import XCTest
@testable import StyleTransfer

final class WinogradTests: XCTestCase {
    /// At VGG-19's channel counts, on ReLU-like (nonnegative) inputs, Winograd's F(4×4, 3×3) stays within 2·10⁻⁵ of the
    /// float64 direct convolution relative to the output's scale, forward and backward, in bands of several tile rows
    /// and of one.
    func testAccuracyAtNetworkChannelCounts() {
        var rng = SplitMix64(seed: 7)
        for (ci, co, h, w) in [(64, 64, 13, 38), (256, 128, 9, 11), (512, 512, 4, 6)] {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng).map { max($0, 0) * 100 }
            let gradOutput = randomValues(co * h * w, using: &rng)
            let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
            let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            let conv = Convolution(weights, threads: 2, algorithm: .winograd)
            for limit in [1, Int.max / 2] {
                let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: limit))
                let output = Tensor(channels: co, height: h, width: w)
                conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                             scratch: scratch)
                assertClose(output.values, forwardReference, relative: 2e-5, "forward \(ci)→\(co) \(h)x\(w) limit \(limit)")
                let gradInput = Tensor(channels: ci, height: h, width: w)
                conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                   inputMask: nil, scratch: scratch)
                assertClose(gradInput.values, backwardReference, relative: 2e-5, "backward \(ci)→\(co) \(h)x\(w) limit \(limit)")
            }
        }
    }

    /// The transformed kernel serves the input gradient through the turned positions: G·J = D·P·G exactly.
    func testTurnedKernelIsAScaledPermutation() {
        let kernel: [Float] = (0 ..< 9).map { Float($0 * $0 % 7) - 2.5 }
        let turned: [Float] = kernel.reversed()
        var u = [Float](repeating: 0, count: 36), v = [Float](repeating: 0, count: 36)
        kernel.withUnsafeBufferPointer { winogradTransformKernel($0.baseAddress!, outChannels: 1, inChannels: 1, outputs: 0 ..< 1, into: &u) }
        turned.withUnsafeBufferPointer { winogradTransformKernel($0.baseAddress!, outChannels: 1, inChannels: 1, outputs: 0 ..< 1, into: &v) }
        for i in 0 ..< 6 {
            for k in 0 ..< 6 {
                let expected = winogradTurnedScale[i] * winogradTurnedScale[k] * u[winogradTurned[i] * 6 + winogradTurned[k]]
                XCTAssertEqual(v[i * 6 + k], expected, accuracy: 1e-6 * max(1, abs(expected)), "position \(i), \(k)")
            }
        }
    }
}

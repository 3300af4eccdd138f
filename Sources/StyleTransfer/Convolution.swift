/// A 3x3, stride-1, padding-1 convolution with bias, and the gradient with respect to its input (never its weights).
///
/// Both directions are im2col + one SGEMM per band of output rows, so the im2col scratch is bounded by the caller's
/// budget, whatever the image size: forward, output (outC, band) = kernel (outC, inC·9) · col (inC·9, band); backward,
/// the input gradient is the forward convolution of the output gradient with the kernel transposed and rotated by
/// 180°. For few input channels (the image's 3), where that GEMM would have only 3 rows, the backward pass instead
/// computes col = kernelᵀ · gradient and adds the columns back onto the pixels (col2im).
final class Convolution {
    let inChannels: Int
    let outChannels: Int
    /// (outChannels, inChannels · 9): the kernel as GEMM rows, taps in (ky, kx) order.
    private let forwardKernel: Tensor
    /// (inChannels, outChannels · 9): forwardKernel[o, i·9 + t] at [i, o·9 + 8 − t], for the input gradient.
    private let backwardKernel: Tensor
    /// (outChannels)
    private let bias: Tensor

    /// At most this many input channels take the col2im path backward.
    private static let col2imInputChannels = 4

    init(_ weights: ConvLayerWeights) {
        inChannels = weights.inChannels
        outChannels = weights.outChannels
        forwardKernel = Tensor(channels: 1, height: outChannels, width: inChannels * 9, values: weights.kernel)
        bias = Tensor(channels: 1, height: 1, width: outChannels, values: weights.bias)
        var rotated = [Float](repeating: 0, count: weights.kernel.count)
        for o in 0 ..< outChannels {
            for i in 0 ..< inChannels {
                for t in 0 ..< 9 {
                    rotated[(i * outChannels + o) * 9 + 8 - t] = weights.kernel[(o * inChannels + i) * 9 + t]
                }
            }
        }
        backwardKernel = Tensor(channels: 1, height: inChannels, width: outChannels * 9, values: rotated)
    }

    /// Multiply-adds of one pass (forward, or backward) over a height × width map.
    func multiplyAdds(height: Int, width: Int) -> Int { inChannels * outChannels * 9 * height * width }

    /// The scratch floats this convolution wants for a height × width map: a band of as many rows as fit in `limit`
    /// floats (at least one row, at most the whole map) of the larger of its two im2col operands.
    func scratchCount(height: Int, width: Int, limit: Int) -> Int {
        var count = 0
        for depth in [inChannels * 9, outChannels * 9] {
            let rowFloats = depth * width
            guard rowFloats > 0 else { continue }
            count = max(count, rowFloats * min(height, max(1, limit / rowFloats)))
        }
        return count
    }

    /// output = conv(input) + bias, then ReLU recording its mask when `reluMask` is given.
    /// - input: (inChannels, height, width)
    /// - output: reshaped to (outChannels, height, width)
    /// - reluMask: (outChannels, height, maskRowBytes(width)) bytes
    /// - scratch: at least one row of `scratchCount`
    func forward(_ input: Tensor, into output: Tensor, reluMask: ByteBuffer?, scratch: Tensor) {
        precondition(input.channels == inChannels && input !== output)
        let height = input.height, width = input.width
        output.reshape(channels: outChannels, height: height, width: width)
        guard height > 0 && width > 0 else { return }
        let depth = inChannels * 9
        let plane = height * width
        let band = bandRows(depth: depth, height: height, width: width, scratch: scratch)
        for first in stride(from: 0, to: height, by: band) {
            let rows = first ..< min(height, first + band)
            im2col(input.storage, channels: inChannels, height: height, width: width, rows: rows, into: scratch.storage)
            sgemm(m: outChannels, n: rows.count * width, k: depth, a: forwardKernel.storage, lda: depth,
                  b: scratch.storage, ldb: rows.count * width, c: output.storage + first * width, ldc: plane)
            addBias(output.storage, bias: bias.storage, channels: outChannels, height: height, width: width,
                    rows: rows, reluMask: reluMask?.storage)
        }
    }

    /// gradInput = ∂L/∂input given gradOutput = ∂L/∂output (taken after the ReLU's mask), then passed back through the
    /// ReLU that produced the input when `inputMask` is given.
    /// - gradOutput: (outChannels, height, width)
    /// - gradInput: reshaped to (inChannels, height, width)
    /// - inputMask: (inChannels, height, maskRowBytes(width)) bytes
    /// - scratch: at least one row of `scratchCount`
    func backwardInput(_ gradOutput: Tensor, into gradInput: Tensor, inputMask: ByteBuffer?, scratch: Tensor) {
        precondition(gradOutput.channels == outChannels && gradOutput !== gradInput)
        let height = gradOutput.height, width = gradOutput.width
        gradInput.reshape(channels: inChannels, height: height, width: width)
        guard height > 0 && width > 0 else { return }
        let plane = height * width
        if inChannels <= Self.col2imInputChannels {
            gradInput.zero()
            let depth = inChannels * 9
            let band = bandRows(depth: depth, height: height, width: width, scratch: scratch)
            for first in stride(from: 0, to: height, by: band) {
                let rows = first ..< min(height, first + band)
                sgemm(m: depth, n: rows.count * width, k: outChannels, a: forwardKernel.storage, lda: depth,
                      transposeA: true, b: gradOutput.storage + first * width, ldb: plane,
                      c: scratch.storage, ldc: rows.count * width)
                col2imAdd(scratch.storage, channels: inChannels, height: height, width: width, rows: rows,
                          into: gradInput.storage)
            }
            if let inputMask {
                applyReLUMask(gradInput.storage, mask: inputMask.storage, channels: inChannels, height: height,
                              width: width, rows: 0 ..< height)
            }
        } else {
            let depth = outChannels * 9
            let band = bandRows(depth: depth, height: height, width: width, scratch: scratch)
            for first in stride(from: 0, to: height, by: band) {
                let rows = first ..< min(height, first + band)
                im2col(gradOutput.storage, channels: outChannels, height: height, width: width, rows: rows,
                       into: scratch.storage)
                sgemm(m: inChannels, n: rows.count * width, k: depth, a: backwardKernel.storage, lda: depth,
                      b: scratch.storage, ldb: rows.count * width, c: gradInput.storage + first * width, ldc: plane)
                if let inputMask {
                    applyReLUMask(gradInput.storage, mask: inputMask.storage, channels: inChannels, height: height,
                                  width: width, rows: rows)
                }
            }
        }
    }

    /// The rows per band for an im2col operand of `depth` rows per pixel in `scratch`.
    private func bandRows(depth: Int, height: Int, width: Int, scratch: Tensor) -> Int {
        let rows = min(height, scratch.capacity / (depth * width))
        precondition(rows >= 1, "convolution scratch smaller than one row")
        return rows
    }
}

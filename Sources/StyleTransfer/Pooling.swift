/// How VGG-19 downsamples between its blocks: 2x2 windows with stride 2, PyTorch's `MaxPool2d(2, 2)` or
/// `AvgPool2d(2, 2)`. An odd last row or column is dropped (the output is ⌊height / 2⌋ × ⌊width / 2⌋).
public enum Pooling: String, Sendable, CaseIterable {
    case max
    case average

    /// Pools `input` into `output`, recording the winner of each max window in `choice`.
    /// - input: (channels, height, width)
    /// - output: reshaped to (channels, height / 2, width / 2)
    /// - choice: (channels, height / 2, width / 2) bytes; needed for `.max` only
    func forward(_ input: Tensor, into output: Tensor, choice: ByteBuffer?, threads: Int = coreCount) {
        precondition(input !== output)
        let (c, h, w) = (input.channels, input.height, input.width)
        output.reshape(channels: c, height: h / 2, width: w / 2)
        switch self {
        case .max:
            maxPoolForward(input.storage, channels: c, height: h, width: w, into: output.storage, choice: choice!.storage, threads: threads)
        case .average:
            averagePoolForward(input.storage, channels: c, height: h, width: w, into: output.storage, threads: threads)
        }
    }

    /// The gradient with respect to the pooled input, of size height × width (the pooled map alone cannot tell an odd
    /// size), passed back through the ReLU of `reluMask` when given.
    /// - gradOutput: (channels, height / 2, width / 2)
    /// - choice: as `forward` recorded it, for `.max`
    /// - gradInput: reshaped to (channels, height, width) and overwritten
    /// - reluMask: (channels, height, maskRowBytes(width)) bytes
    func backward(_ gradOutput: Tensor, choice: ByteBuffer?, height: Int, width: Int, into gradInput: Tensor,
                  reluMask: ByteBuffer?, threads: Int = coreCount) {
        precondition(gradOutput !== gradInput && gradOutput.height == height / 2 && gradOutput.width == width / 2)
        let c = gradOutput.channels
        gradInput.reshape(channels: c, height: height, width: width)
        switch self {
        case .max:
            maxPoolBackward(gradOutput.storage, choice: choice!.storage, channels: c, height: height, width: width,
                            into: gradInput.storage, reluMask: reluMask?.storage, threads: threads)
        case .average:
            averagePoolBackward(gradOutput.storage, channels: c, height: height, width: width, into: gradInput.storage,
                                reluMask: reluMask?.storage, threads: threads)
        }
    }
}

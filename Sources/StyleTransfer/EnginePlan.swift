import Kernels

// How the network runs at one size: which steps run in stripes of rows, which outputs are kept for the backward pass
// and which are recomputed, and how many bytes that takes. Pure code over sizes; `VGG19` allocates what a `Layout`
// says and runs it.

/// How the network divides its maps into horizontal stripes.
public enum Striping: Equatable, Sendable {
    /// Every map whole: one stripe per map.
    case wholeMaps
    /// The steps of the first `blocks` blocks (1 … 5) that the forward pass reaches run in stripes of `rows` image rows
    /// (rounded up to a multiple of 2 to the power of the poolings among them); the rest on whole maps.
    case stripes(rows: Int, blocks: Int)
    /// The fastest layout whose buffers fit in `bytes` (see `Layout.planned`).
    case budget(bytes: Int)
}

/// Where the stripes of one segment fall, step by step. A segment is the steps `first … end`, run for one stripe of
/// rows at a time from its input map (the image, or the whole output of the segment before it). A stripe owns its rows
/// of the input map and the rows under them at each resolution (the last stripe everything to the bottom of each map);
/// each step computes the rows it owns and the rows the steps after it need around them (a row each side per 3x3
/// convolution still to come). Arrays indexed by step hold `first … end` at 0 … end − first.
struct SegmentGeometry: Equatable {
    let first: Int
    let end: Int
    /// Input rows per stripe: a multiple of 2^(poolings in the segment), so that stripes fall on pooling windows.
    let stripeRows: Int
    /// The number of stripes.
    let count: Int
    /// The height of the segment's input map.
    let inputHeight: Int
    /// The output height of each step, and the number of poolings in the segment through it.
    let heights: [Int]
    let levels: [Int]
    /// Whether a loss reads each step's output (after its ReLU, or before it).
    let requested: [Bool]
    let isConvolution: [Bool]
    /// Whether a deeper segment hands back the gradient at `end`'s output as a whole map; the last segment starts its
    /// backward pass from the losses alone.
    let receivesGradient: Bool

    /// - Parameters:
    ///   - stripeRows: input rows per stripe; rounded up to the pooling alignment; a stripe at least as tall as the
    ///     input makes one stripe.
    ///   - heights: the output height of every step of the network through `end` at least.
    ///   - requested: whether a loss reads each step's output, for every step through `end` at least.
    init(first: Int, end: Int, stripeRows: Int, inputHeight: Int, heights: [Int], requested: [Bool],
         receivesGradient: Bool) {
        precondition(first >= 0 && first <= end && end < heights.count && end < requested.count)
        precondition(stripeRows > 0 && inputHeight > 0)
        self.first = first
        self.end = end
        self.inputHeight = inputHeight
        self.receivesGradient = receivesGradient
        isConvolution = (first ... end).map { VGG19Architecture.steps[$0].isConvolution }
        var level = 0
        levels = isConvolution.map { convolution in
            if !convolution { level += 1 }
            return level
        }
        let alignment = 1 << level
        let rows = stripeRows >= inputHeight ? inputHeight : stripeRows
        self.stripeRows = (rows + alignment - 1) / alignment * alignment
        count = max(1, (inputHeight + self.stripeRows - 1) / self.stripeRows)
        self.heights = Array(heights[first ... end])
        self.requested = Array(requested[first ... end])
    }

    /// The rows of `step`'s output that stripe `stripe` owns (`first − 1`: the input map's).
    func ownedRows(step: Int, stripe: Int) -> Range<Int> {
        let (level, mapHeight) = step < first ? (0, inputHeight) : (levels[step - first], heights[step - first])
        let lower = min(mapHeight, (stripe * stripeRows) >> level)
        let upper = stripe == count - 1 ? mapHeight : min(mapHeight, ((stripe + 1) * stripeRows) >> level)
        return lower ..< upper
    }

    /// The height of the map `step` reads.
    func inputHeight(of step: Int) -> Int { step == first ? inputHeight : heights[step - first - 1] }

    /// The rows of the map `step` reads that its forward pass needs for the output rows `rows`.
    func inputRows(step: Int, for rows: Range<Int>) -> Range<Int> {
        guard !rows.isEmpty else { return 0 ..< 0 }
        return isConvolution[step - first]
            ? Convolution.inputRows(for: rows, height: inputHeight(of: step))
            : 2 * rows.lowerBound ..< 2 * rows.upperBound
    }

    /// The rows of the gradient at `step`'s output that its backward pass reads to compute the gradient at its input
    /// on `rows`.
    func gradientRows(step: Int, for rows: Range<Int>) -> Range<Int> {
        guard !rows.isEmpty else { return 0 ..< 0 }
        let h = heights[step - first]
        if isConvolution[step - first] { return Convolution.inputRows(for: rows, height: h) }
        let upper = min(h, (rows.upperBound + 1) / 2)
        return min(upper, rows.lowerBound / 2) ..< upper
    }

    /// The output rows each step computes in the forward pass of stripe `stripe`: those the next step needs, and
    /// those the stripe owns of a layer the losses read.
    func forwardRows(stripe: Int) -> [Range<Int>] {
        var rows = [Range<Int>](repeating: 0 ..< 0, count: end - first + 1)
        rows[end - first] = ownedRows(step: end, stripe: stripe)
        for step in stride(from: end - 1, through: first, by: -1) {
            rows[step - first] = inputRows(step: step + 1, for: rows[step - first + 1])
            if requested[step - first] {
                rows[step - first] = hull(rows[step - first], ownedRows(step: step, stripe: stripe))
            }
        }
        return rows
    }

    /// The gradient rows of the backward pass of stripe `stripe`: [0] at the input (the rows the stripe owns), [i + 1]
    /// at the output of step first + i; at `end` the whole map when it is handed back from a deeper segment.
    func backwardRows(stripe: Int) -> [Range<Int>] {
        var rows = [ownedRows(step: first - 1, stripe: stripe)]
        for step in first ... end {
            rows.append(step == end && receivesGradient ? 0 ..< heights[end - first]
                                                        : gradientRows(step: step, for: rows[step - first]))
        }
        return rows
    }

    /// The output rows each step computes to recompute step `target` on `rows`, from the segment's input.
    func recomputedRows(step target: Int, rows: Range<Int>) -> [Range<Int>] {
        var need = [Range<Int>](repeating: 0 ..< 0, count: target - first + 1)
        need[target - first] = rows
        for step in stride(from: target - 1, through: first, by: -1) {
            need[step - first] = inputRows(step: step + 1, for: need[step - first + 1])
        }
        return need
    }

    private func hull(_ a: Range<Int>, _ b: Range<Int>) -> Range<Int> {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        return min(a.lowerBound, b.lowerBound) ..< max(a.upperBound, b.upperBound)
    }
}

/// Everything an evaluation at one size allocates, and how it runs: the segments, the outputs kept from the forward
/// pass to the backward pass, the whole maps between segments, and the size of every buffer. Building one allocates
/// nothing, so a planner can weigh many.
struct Layout {
    typealias Shape = (channels: Int, height: Int, width: Int)

    let height: Int
    let width: Int
    /// The index of the deepest requested step: where the forward pass stops.
    let deepest: Int
    /// Whether a loss reads each step's output, and each convolution step's output before its ReLU. (steps through
    /// deepest)
    let requested: [Bool]
    let requestedBeforeReLU: [Bool]
    /// The output shape of each step. (steps through deepest)
    let shapes: [Shape]
    /// The segments in network order; the last ends at `deepest`; each but the last ends at a pooling.
    let segments: [SegmentGeometry]
    /// Whether each step's requested output (after the ReLU, or before it) is kept whole from the forward pass for the
    /// backward pass, rather than recomputed: the layers of single-stripe segments but the first layer, which is
    /// cheaper to recompute from the image than to keep. (steps through deepest)
    let kept: [Bool]
    let keptBeforeReLU: [Bool]
    /// Floats of each of the two buffers that take turns as the steps' outputs in the forward pass and when
    /// recomputing; of the buffer for the owned rows of a stripe; of each of the two buffers for the gradient stripes.
    let forwardFloats: Int
    let ownedFloats: Int
    let gradientFloats: Int
    /// Floats of the im2col or Winograd scratch.
    let scratchCount: Int
    /// Bytes of the ReLU masks and max-pooling choices, all whole maps. (steps through deepest)
    let maskBytes: [Int]
    let choiceBytes: [Int]
    /// Whether the poolings record their choices (max pooling).
    let recordsChoices: Bool

    /// The layout for an image of height × width whose losses read `layers`.
    /// - Parameters:
    ///   - striping: `.wholeMaps` or `.stripes`; `.budget` is resolved by `planned`.
    ///   - maxPooling: whether the poolings record their choices (max pooling) or need none (average pooling).
    ///   - scratchFloats: the scratch the convolution `k` needs for a pass over height × width.
    init(height: Int, width: Int, layers: Set<VGGLayer>, striping: Striping, maxPooling: Bool,
         scratchFloats: (_ k: Int, _ height: Int, _ width: Int) -> Int) {
        precondition(height > 0 && width > 0, "empty image")
        precondition(!layers.isEmpty, "no layer requested")
        self.height = height
        self.width = width
        recordsChoices = maxPooling
        let steps = VGG19Architecture.steps
        let deepest = layers.map(\.step).max()!
        self.deepest = deepest
        requested = (0 ... deepest).map { step in layers.contains { $0.step == step && !$0.isBeforeReLU } }
        requestedBeforeReLU = (0 ... deepest).map { step in layers.contains { $0.step == step && $0.isBeforeReLU } }
        let shapes = VGG19Architecture.shapes(height: height, width: width, through: deepest)
        self.shapes = shapes
        let read = zip(requested, requestedBeforeReLU).map { $0 || $1 }
        let heights = shapes.map(\.height)

        // The striped segment ends at the last pooling of the striped blocks, or at `deepest` if it comes first.
        var bounds: [(first: Int, end: Int, rows: Int)] = []
        if case .stripes(let rows, let blocks) = striping {
            precondition(rows > 0 && (1 ... 5).contains(blocks), "stripes of at least one row through 1 … 5 blocks")
            let pool = steps.indices.filter { !steps[$0].isConvolution }[blocks - 1]
            let end = min(pool, deepest)
            bounds.append((0, end, rows))
            if end < deepest { bounds.append((end + 1, deepest, Int.max)) }
        } else {
            precondition(striping == .wholeMaps, "a budget is planned by Layout.planned")
            bounds.append((0, deepest, Int.max))
        }
        var segments: [SegmentGeometry] = []
        for (index, bound) in bounds.enumerated() {
            let inputHeight = bound.first == 0 ? height : heights[bound.first - 1]
            segments.append(SegmentGeometry(first: bound.first, end: bound.end, stripeRows: bound.rows,
                                            inputHeight: max(1, inputHeight), heights: heights, requested: read,
                                            receivesGradient: index < bounds.count - 1))
        }
        self.segments = segments

        var kept = [Bool](repeating: false, count: deepest + 1)
        var keptBeforeReLU = kept
        for segment in segments where segment.count == 1 {
            // Not the first layer (recomputed from the image), nor the map a segment hands to the next (kept anyway).
            for step in segment.first ... segment.end where step > 0 && !(step == segment.end && segment.receivesGradient) {
                kept[step] = requested[step]
                keptBeforeReLU[step] = requestedBeforeReLU[step]
            }
        }
        self.kept = kept
        self.keptBeforeReLU = keptBeforeReLU

        // Buffer sizes: the largest stripe of any step, forward, recomputing and backward. A segment of one stripe
        // runs its backward pass in the forward buffers (it recomputes nothing but the first layer, into the buffer
        // the gradient is not in); a striped one in the gradient buffers, recomputing in the forward buffers.
        func floats(_ step: Int, _ rows: Range<Int>) -> Int {
            step < 0 ? 3 * rows.count * width : shapes[step].channels * rows.count * shapes[step].width
        }
        let recomputes = Self.recomputes(segments: segments, requested: read,
                                         kept: zip(kept, keptBeforeReLU).map { $0 || $1 })
        var forward = 0, owned = 0, gradient = 0, scratch = 0
        Self.forEachPass(segments: segments, recomputes: recomputes) { pass in
            let (segment, step) = (pass.segment, pass.step)
            forward = max(forward, floats(step, pass.computed))
            // The gradient handed back at the end of a segment, and the one handed on from its first step to the
            // segment before, are whole maps of their own.
            let handedBack = step == segment.end && segment.receivesGradient
            let stripes = max(step == segment.first && segment.first > 0 ? 0 : floats(step - 1, pass.gradientIn),
                              handedBack ? 0 : floats(step, pass.gradientOut))
            if segment.count == 1 { forward = max(forward, stripes) } else { gradient = max(gradient, stripes) }
            if case .convolution(let k) = steps[step].kind {
                scratch = max(scratch, scratchFloats(k, max(pass.computed.count, pass.gradientIn.count),
                                                     shapes[step].width))
            }
            if read[step] {
                let ownedRows = segment.ownedRows(step: step, stripe: pass.stripe)
                if ownedRows != pass.computed { owned = max(owned, floats(step, ownedRows)) }
            }
            for (offset, rows) in pass.recomputed.enumerated() {
                forward = max(forward, floats(segment.first + offset, rows))
            }
        }
        forwardFloats = forward
        ownedFloats = owned
        gradientFloats = gradient
        scratchCount = scratch
        maskBytes = (0 ... deepest).map { step in
            steps[step].isConvolution ? shapes[step].channels * shapes[step].height * maskRowBytes(width: shapes[step].width) : 0
        }
        choiceBytes = (0 ... deepest).map { step in
            !steps[step].isConvolution && maxPooling
                ? shapes[step].channels * shapes[step].height * choiceRowBytes(width: shapes[step].width) : 0
        }
    }

    /// The whole map each segment but the last hands to the next (the output of its last step, a pooling), and the
    /// gradient there, each of this many floats.
    func boundaryFloats(_ segment: Int) -> Int {
        let shape = shapes[segments[segment].end]
        return shape.channels * shape.height * shape.width
    }

    /// Floats of each whole map kept from the forward pass. (steps through deepest)
    var keptFloats: [Int] {
        shapes.indices.map { step in
            let shape = shapes[step]
            return ((kept[step] ? 1 : 0) + (keptBeforeReLU[step] ? 1 : 0)) * shape.channels * shape.height * shape.width
        }
    }

    /// The floats of the most output channels of a convolution when a loss reads a convolution's output before its
    /// ReLU (the zero bias of a ReLU applied apart), else 0.
    var zeroBiasFloats: Int {
        requestedBeforeReLU.contains(true) ? VGG19Architecture.convolutions.map(\.outChannels).max()! : 0
    }

    /// Every byte the layout allocates.
    var bytes: Int {
        let boundaries = (0 ..< segments.count - 1).reduce(0) { $0 + 2 * boundaryFloats($1) }
        let floats = 3 * height * width + 2 * forwardFloats + ownedFloats + 2 * gradientFloats + scratchCount
            + keptFloats.reduce(0, +) + boundaries + zeroBiasFloats
        return floats * MemoryLayout<Float>.stride + maskBytes.reduce(0, +) + choiceBytes.reduce(0, +)
    }

    /// Multiply-adds of one evaluation, forward, recomputing and backward, plus a fixed cost per step and stripe for
    /// the work that does not shrink with the stripe (thread hand-offs, kernel set-up): what `planned` minimizes.
    var cost: Int {
        let passCost = 1 << 20
        var total = 0
        Self.forEachPass(segments: segments, recomputes: recomputes) { pass in
            let perRow = VGG19Architecture.multiplyAddsPerRow(step: pass.step, width: shapes[pass.step].width)
            total += perRow * (pass.computed.count + pass.gradientIn.count) + 2 * passCost
            for (offset, rows) in pass.recomputed.enumerated() {
                let s = pass.segment.first + offset
                total += VGG19Architecture.multiplyAddsPerRow(step: s, width: shapes[s].width) * rows.count + passCost
            }
        }
        return total
    }

    /// Whether the backward pass recomputes each step's output for a loss (rather than reading it kept, or reading the
    /// whole map a segment hands on). (steps through deepest)
    private var recomputes: [Bool] {
        Self.recomputes(segments: segments, requested: zip(requested, requestedBeforeReLU).map { $0 || $1 },
                        kept: zip(kept, keptBeforeReLU).map { $0 || $1 })
    }

    private static func recomputes(segments: [SegmentGeometry], requested: [Bool], kept: [Bool]) -> [Bool] {
        var recomputes = requested.indices.map { requested[$0] && !kept[$0] }
        for segment in segments where segment.receivesGradient { recomputes[segment.end] = false }
        return recomputes
    }

    /// One step of one stripe as the engine runs it: the output rows its forward pass computes, the gradient rows at
    /// its input and output in the backward pass, and, when the backward pass recomputes its output for a loss, the
    /// rows each step of its segment computes for that.
    struct Pass {
        let segment: SegmentGeometry
        let stripe: Int
        let step: Int
        let computed: Range<Int>
        let gradientIn: Range<Int>
        let gradientOut: Range<Int>
        /// (first … step of the segment), empty when nothing is recomputed.
        let recomputed: [Range<Int>]
    }

    /// Every step of every stripe of every segment, in the engine's order.
    static func forEachPass(segments: [SegmentGeometry], recomputes: [Bool], _ body: (Pass) -> Void) {
        for segment in segments {
            for stripe in 0 ..< segment.count {
                let need = segment.forwardRows(stripe: stripe)
                let back = segment.backwardRows(stripe: stripe)
                for step in segment.first ... segment.end {
                    let i = step - segment.first
                    body(Pass(segment: segment, stripe: stripe, step: step, computed: need[i], gradientIn: back[i],
                              gradientOut: back[i + 1],
                              recomputed: recomputes[step] ? segment.recomputedRows(step: step, rows: back[i + 1]) : []))
                }
            }
        }
    }

    /// The stripe heights a budget tries, in image rows.
    static let candidateStripeRows = [16, 32, 64, 128, 256, 512, 1024]

    /// The layout of least `cost` whose `bytes` are at most `budget`: whole maps, or the first 1 … 5 blocks in stripes
    /// of `candidateStripeRows`; when none fits, the one of fewest bytes.
    static func planned(height: Int, width: Int, layers: Set<VGGLayer>, budget: Int, maxPooling: Bool,
                        scratchFloats: (_ k: Int, _ height: Int, _ width: Int) -> Int) -> Layout {
        var candidates = [Layout(height: height, width: width, layers: layers, striping: .wholeMaps,
                                 maxPooling: maxPooling, scratchFloats: scratchFloats)]
        let deepestBlock = VGG19Architecture.steps[layers.map(\.step).max()!].block
        for blocks in 1 ... deepestBlock {
            for rows in candidateStripeRows where rows < height {
                candidates.append(Layout(height: height, width: width, layers: layers,
                                         striping: .stripes(rows: rows, blocks: blocks), maxPooling: maxPooling,
                                         scratchFloats: scratchFloats))
            }
        }
        let fitting = candidates.filter { $0.bytes <= budget }
        if let best = fitting.min(by: { ($0.cost, $0.bytes) < ($1.cost, $1.bytes) }) { return best }
        return candidates.min { ($0.bytes, $0.cost) < ($1.bytes, $1.cost) }!
    }

    /// A description for `-verbose`: how many stripes each segment runs in.
    var summary: String {
        segments.map { segment in
            let from = VGG19Architecture.steps[segment.first].output, to = VGG19Architecture.steps[segment.end].output
            let range = segment.first == segment.end ? "\(from)" : "\(from) … \(to)"
            return segment.count == 1 ? "\(range) whole" : "\(range) in \(segment.count) stripes of \(segment.stripeRows) rows"
        }.joined(separator: ", ")
    }
}

import Kernels

// How the network runs at one size: which steps run in stripes of rows, which outputs are kept for the backward pass
// and which are recomputed, and how many bytes that takes. Pure code over sizes; `VGG19` allocates what a `Layout`
// says and runs it.

/// How the network divides its maps into horizontal stripes.
public enum Striping: Equatable, Sendable {
    /// Every map whole: one stripe per map, each output a loss reads kept from the forward pass for the backward pass.
    case wholeMaps
    /// Every map whole, as `wholeMaps`, but for the first layer's outputs the losses read, which the backward pass
    /// recomputes from the image rather than keeps: a map less memory for a few percent more time.
    case wholeMapsRecomputingFirstLayer
    /// Segments in stripes, one after the other from the image, each through a deeper block than the one before; the
    /// steps after the last on whole maps. The forward pass stops at the deepest layer a loss reads, wherever that falls.
    case segments([StripedSegment])
    /// The fastest layout whose buffers fit in `bytes` (see `Layout.planned`).
    case budget(bytes: Int)

    /// The steps of the first `blocks` blocks (1 … 5) in stripes of `rows` image rows; the rest on whole maps.
    public static func stripes(rows: Int, blocks: Int) -> Striping {
        .segments([StripedSegment(rows: rows, throughBlock: blocks)])
    }
}

/// A segment of the network run in stripes: the blocks after the previous segment's through block `throughBlock`
/// (1 … 5), in stripes of `rows` rows of the segment's input map (the image, or the whole map the segment before it
/// ends with), rounded up to a multiple of 2 to the power of the poolings in the segment.
public struct StripedSegment: Equatable, Sendable {
    public let rows: Int
    public let throughBlock: Int
    /// Whether the forward pass records the ReLU masks and pooling choices of the segment's whole maps (a bit an
    /// activation), so that the backward pass replays each stripe only as far as the deepest layer a loss reads in the
    /// segment; else each stripe's replay runs through the segment and records its own.
    public let recordsWhole: Bool

    public init(rows: Int, throughBlock: Int, recordsWhole: Bool = false) {
        self.rows = rows
        self.throughBlock = throughBlock
        self.recordsWhole = recordsWhole
    }
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
    /// Whether the forward pass records the ReLU masks and pooling choices of whole maps for the backward pass: always
    /// in a single stripe; in many, as `StripedSegment.recordsWhole` says.
    let recordsWhole: Bool

    /// - Parameters:
    ///   - stripeRows: input rows per stripe; rounded up to the pooling alignment; a stripe at least as tall as the
    ///     input makes one stripe.
    ///   - heights: the output height of every step of the network through `end` at least.
    ///   - requested: whether a loss reads each step's output, for every step through `end` at least.
    init(first: Int, end: Int, stripeRows: Int, inputHeight: Int, heights: [Int], requested: [Bool],
         receivesGradient: Bool, recordsWhole: Bool = false) {
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
        self.recordsWhole = recordsWhole || count == 1
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

    /// Whether the backward pass replays each stripe from the segment's input, keeping the outputs the losses read on
    /// the rows the stripe owns (and, unless the forward pass recorded them whole, recording the stripe's ReLU masks
    /// and pooling choices), rather than reading whole maps the forward pass kept: segments of more than one stripe,
    /// whose forward pass keeps no activation but the map it hands on.
    var replays: Bool { count > 1 }

    /// The last step a stripe's replay runs: the segment's end when the replay records, else the deepest step whose
    /// output a loss reads on the stripe's rows; nil when nothing is replayed.
    var replayEnd: Int? {
        guard replays else { return nil }
        guard recordsWhole else { return end }
        return (first ... end).last { requested[$0 - first] && !($0 == end && receivesGradient) }
    }

    /// The rows of a stripe's backward pass. The stripe takes back the gradient of the losses on the rows it owns
    /// (and, at the end of a segment handed a gradient back whole, that gradient on those rows), zero elsewhere: at
    /// the output of each step, that gradient is nonzero on the rows the forward pass computes (`forwardRows`), the
    /// rows a replay computes again for their masks. The stripes' gradients at the segment's input overlap and add up.
    struct BackwardRows: Equatable {
        /// The rows each step's output gradient is nonzero on: `forwardRows`. (steps first … end)
        let computed: [Range<Int>]
        /// The rows of each step's output gradient the step's backward pass reads: `computed` and zeros around it.
        /// (steps first … end)
        let padded: [Range<Int>]
        /// The rows of the segment's input the stripe's gradient reaches (all of them for a single stripe).
        let input: Range<Int>
    }

    /// The rows of stripe `stripe`'s backward pass (see `BackwardRows`).
    func backwardRows(stripe: Int) -> BackwardRows {
        let computed = forwardRows(stripe: stripe)
        // A single stripe writes the whole input gradient, rows no output reads (an odd row a pooling drops) as zeros.
        let input = count == 1 ? 0 ..< inputHeight : inputRows(step: first, for: computed[0])
        let padded = (first ... end).map { step in
            let i = step - first
            return hull(computed[i], gradientRows(step: step, for: i == 0 ? input : computed[i - 1]))
        }
        return BackwardRows(computed: computed, padded: padded, input: input)
    }

    /// For each stripe, and after the last: the rows of the segment's input below which the stripes' gradient there
    /// is complete, and the input map no longer read, once the stripes before it have run their backward passes: the
    /// least first row a later stripe's gradient reaches (0 before the first stripe, the input's height after the
    /// last). (count + 1 entries)
    var settledRows: [Int] {
        var settled = [Int](repeating: inputHeight, count: count + 1)
        for stripe in stride(from: count - 1, through: 1, by: -1) {
            settled[stripe] = min(settled[stripe + 1], backwardRows(stripe: stripe).input.lowerBound)
        }
        settled[0] = 0
        return settled
    }

    /// The rows of the window in which the stripes' gradients at the segment's input add up until they settle: from
    /// the rows settled before a stripe through those its gradient reaches and those settled after it.
    var settlingRows: Int {
        let settled = settledRows
        return (0 ..< count).map { stripe in
            max(backwardRows(stripe: stripe).input.upperBound, settled[stripe + 1]) - settled[stripe]
        }.max()!
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
    /// backward pass, rather than recomputed: the layers of single-stripe segments, but the first layer's when
    /// `recomputesFirstLayer`. (steps through deepest)
    let kept: [Bool]
    let keptBeforeReLU: [Bool]
    /// Whether the backward pass recomputes the first layer's requested outputs from the image (a single-stripe first
    /// segment, `Striping.wholeMapsRecomputingFirstLayer`).
    let recomputesFirstLayer: Bool
    /// Floats of the buffer that holds each requested output (after the ReLU, or before it) of a replaying segment
    /// on the rows a stripe owns, the largest stripe's; 0 for the others. (steps through deepest)
    let replayedFloats: [Int]
    let replayedBeforeReLUFloats: [Int]
    /// Floats of each of the two buffers that take turns as the steps' outputs in the forward pass, when recomputing
    /// and as the gradient stripes of the backward pass (a stripe's replay is over before its gradient starts); of the
    /// buffer for the owned rows of a stripe.
    let forwardFloats: Int
    let ownedFloats: Int
    /// The image rows the network's input holds: all of them when the first segment is a single stripe (its first
    /// layer is recomputed from them in the backward pass), else the most one stripe's first step reads.
    let inputRows: Int
    /// Floats of the window in which a replaying segment after the first adds its stripes' gradients at its input until
    /// they settle, the largest such segment's (see `SegmentGeometry.settlingRows`); 0 when there is none.
    let settlingFloats: Int
    /// Floats of the im2col or Winograd scratch.
    let scratchCount: Int
    /// Bytes of the ReLU masks and max-pooling choices: whole maps, recorded by the forward pass, in segments that
    /// record whole (`SegmentGeometry.recordsWhole`); in the others, the rows of the largest stripe's replay. (steps
    /// through deepest)
    let maskBytes: [Int]
    let choiceBytes: [Int]
    /// Whether the poolings record their choices (max pooling).
    let recordsChoices: Bool

    /// The layout for an image of height × width whose losses read `layers`.
    /// - Parameters:
    ///   - striping: `.wholeMaps`, `.wholeMapsRecomputingFirstLayer` or `.segments`; `.budget` is resolved by
    ///     `planned`.
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
        let requested = (0 ... deepest).map { step in layers.contains { $0.step == step && !$0.isBeforeReLU } }
        let requestedBeforeReLU = (0 ... deepest).map { step in layers.contains { $0.step == step && $0.isBeforeReLU } }
        self.requested = requested
        self.requestedBeforeReLU = requestedBeforeReLU
        let shapes = VGG19Architecture.shapes(height: height, width: width, through: deepest)
        self.shapes = shapes
        let read = zip(requested, requestedBeforeReLU).map { $0 || $1 }
        let heights = shapes.map(\.height)

        // Each striped segment ends at the last pooling of its blocks, or at `deepest` if that comes first; whole maps
        // from there to `deepest`.
        var bounds: [(first: Int, end: Int, rows: Int, recordsWhole: Bool)] = []
        var first = 0
        if case .segments(let striped) = striping {
            let pools = steps.indices.filter { !steps[$0].isConvolution }
            for (k, segment) in striped.enumerated() where first <= deepest {
                precondition(segment.rows > 0 && (1 ... 5).contains(segment.throughBlock),
                             "stripes of at least one row through one of blocks 1 … 5")
                precondition(k == 0 || segment.throughBlock > striped[k - 1].throughBlock, "segments out of order")
                let end = min(pools[segment.throughBlock - 1], deepest)
                bounds.append((first, end, segment.rows, segment.recordsWhole))
                first = end + 1
            }
        } else {
            precondition(striping == .wholeMaps || striping == .wholeMapsRecomputingFirstLayer,
                         "a budget is planned by Layout.planned")
        }
        if first <= deepest { bounds.append((first, deepest, Int.max, true)) }
        var segments: [SegmentGeometry] = []
        for (index, bound) in bounds.enumerated() {
            let inputHeight = bound.first == 0 ? height : heights[bound.first - 1]
            segments.append(SegmentGeometry(first: bound.first, end: bound.end, stripeRows: bound.rows,
                                            inputHeight: max(1, inputHeight), heights: heights, requested: read,
                                            receivesGradient: index < bounds.count - 1,
                                            recordsWhole: bound.recordsWhole))
        }
        self.segments = segments

        let recomputesFirstLayer = striping == .wholeMapsRecomputingFirstLayer
        self.recomputesFirstLayer = recomputesFirstLayer
        var kept = [Bool](repeating: false, count: deepest + 1)
        var keptBeforeReLU = kept
        for segment in segments where segment.count == 1 {
            // Not the first layer when it is recomputed from the image, nor the map a segment hands to the next (kept
            // anyway).
            for step in segment.first ... segment.end
            where !(step == 0 && recomputesFirstLayer) && !(step == segment.end && segment.receivesGradient) {
                kept[step] = requested[step]
                keptBeforeReLU[step] = requestedBeforeReLU[step]
            }
        }
        self.kept = kept
        self.keptBeforeReLU = keptBeforeReLU

        // Buffer sizes: the largest stripe of any step, forward, recomputing and backward. The backward pass runs in
        // the forward buffers: a segment of one stripe recomputes nothing but (when asked to) the first layer, into the
        // buffer the gradient is not in; a striped one replays a stripe before its gradient starts, keeping what the
        // losses read apart.
        func floats(_ step: Int, _ rows: Range<Int>) -> Int {
            step < 0 ? 3 * rows.count * width : shapes[step].channels * rows.count * shapes[step].width
        }
        var forward = 0, owned = 0, scratch = 0
        var replayed = [Int](repeating: 0, count: deepest + 1), replayedBeforeReLU = replayed
        var maskBytes = replayed, choiceBytes = replayed
        Self.forEachPass(segments: segments, requested: read, recomputesFirstLayer: recomputesFirstLayer) { pass in
            let (segment, step) = (pass.segment, pass.step)
            forward = max(forward, floats(step, pass.computed))
            // A single-stripe segment reads the gradient handed back at its end, and writes the one it hands on from
            // its first step to the segment before, in whole maps of their own; a striped one takes its rows of the
            // first into its stripes, and adds its stripes into the second.
            let handedBack = step == segment.end && segment.receivesGradient && !segment.replays
            let handsOn = step == segment.first && segment.first > 0 && !segment.replays
            let stripes = max(handsOn ? 0 : floats(step - 1, pass.gradientIn), handedBack ? 0 : floats(step, pass.gradientOut))
            forward = max(forward, stripes)
            if case .convolution(let k) = steps[step].kind {
                scratch = max(scratch, scratchFloats(k, max(pass.computed.count, pass.gradientIn.count,
                                                            pass.recomputed.count), shapes[step].width))
            }
            // The rows a stripe owns of a layer the losses read, when it computes more (or writes the whole map a
            // segment ends with): copied out for the losses in the forward pass; in a replay's backward pass, the
            // buffer the losses add their gradient into.
            let ownedRows = segment.ownedRows(step: step, stripe: pass.stripe)
            let written = step == segment.end && segment.receivesGradient ? 0 ..< shapes[step].height : pass.computed
            if read[step] && (ownedRows != written || ownedRows != pass.gradientOut) {
                owned = max(owned, floats(step, ownedRows))
            }
            forward = max(forward, floats(step, pass.recomputed))
            // The records of a replaying segment hold the rows of one replay; the others, whole maps.
            let recorded = segment.recordsWhole ? shapes[step].height : pass.recomputed.count
            if steps[step].isConvolution {
                maskBytes[step] = max(maskBytes[step], shapes[step].channels * recorded * maskRowBytes(width: shapes[step].width))
            } else if maxPooling {
                choiceBytes[step] = max(choiceBytes[step],
                                        shapes[step].channels * recorded * choiceRowBytes(width: shapes[step].width))
            }
            // A replay keeps the rows the stripe owns of the outputs the losses read (at the end of a segment handed a
            // gradient back, the losses read the whole map the forward pass kept).
            if segment.replays && !(step == segment.end && segment.receivesGradient) {
                if requested[step] { replayed[step] = max(replayed[step], floats(step, ownedRows)) }
                if requestedBeforeReLU[step] {
                    replayedBeforeReLU[step] = max(replayedBeforeReLU[step], floats(step, ownedRows))
                }
            }
        }
        forwardFloats = forward
        ownedFloats = owned
        settlingFloats = segments.dropFirst().filter(\.replays).map { segment in
            let shape = shapes[segment.first - 1]
            return shape.channels * segment.settlingRows * shape.width
        }.max() ?? 0
        let head = segments[0]
        inputRows = head.count == 1 ? height
            : (0 ..< head.count).map { head.inputRows(step: 0, for: head.forwardRows(stripe: $0)[0]).count }.max()!
        scratchCount = scratch
        replayedFloats = replayed
        replayedBeforeReLUFloats = replayedBeforeReLU
        self.maskBytes = maskBytes
        self.choiceBytes = choiceBytes
    }

    /// The whole map each segment but the last hands to the next (the output of its last step, a pooling), and the
    /// gradient there, each of this many floats.
    func boundaryFloats(_ segment: Int) -> Int {
        let shape = shapes[segments[segment].end]
        return shape.channels * shape.height * shape.width
    }

    /// Whether the gradient at the end of each segment but the last is written over the map there: unless a loss reads
    /// that map, nothing reads it once the segment after has its gradient there (a single stripe's backward pass
    /// does not read its input; a replaying segment's stripes settle rows no later stripe reads, see
    /// `SegmentGeometry.settledRows`).
    var sharesBoundary: [Bool] {
        segments.dropLast().map { !(requested[$0.end] || requestedBeforeReLU[$0.end]) }
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
        let shares = sharesBoundary
        let boundaries = (0 ..< segments.count - 1).reduce(0) { $0 + (shares[$1] ? 1 : 2) * boundaryFloats($1) }
        let floats = 3 * inputRows * width + 2 * forwardFloats + ownedFloats + scratchCount
            + keptFloats.reduce(0, +) + replayedFloats.reduce(0, +) + replayedBeforeReLUFloats.reduce(0, +)
            + boundaries + settlingFloats + zeroBiasFloats
        return floats * MemoryLayout<Float>.stride + maskBytes.reduce(0, +) + choiceBytes.reduce(0, +)
    }

    /// Multiply-adds of one evaluation, forward, recomputing and backward, plus a fixed cost per step and stripe for
    /// the work that does not shrink with the stripe (thread hand-offs, kernel set-up): what `planned` minimizes.
    var cost: Int {
        let passCost = 1 << 20
        var total = 0
        forEachPass { pass in
            let perRow = VGG19Architecture.multiplyAddsPerRow(step: pass.step, width: shapes[pass.step].width)
            total += perRow * (pass.computed.count + pass.gradientIn.count + pass.recomputed.count) + 2 * passCost
            if !pass.recomputed.isEmpty { total += passCost }
        }
        return total
    }

    /// One step of one stripe as the engine runs it: the output rows its forward pass computes; in the backward pass,
    /// the rows of the gradient buffers at its input (the padded rows of the step before, or at the segment's input
    /// the rows the gradient reaches) and at its output (see `SegmentGeometry.BackwardRows`); and the rows the
    /// backward pass computes again: a replayed stripe's; in a single-stripe segment, the first layer when a loss
    /// reads it and the layout recomputes it from the image (`Layout.recomputesFirstLayer`).
    struct Pass {
        let segment: SegmentGeometry
        let stripe: Int
        let step: Int
        let computed: Range<Int>
        let gradientIn: Range<Int>
        let gradientOut: Range<Int>
        let recomputed: Range<Int>
    }

    /// Every step of every stripe of this layout's segments, in the engine's order.
    func forEachPass(_ body: (Pass) -> Void) {
        Self.forEachPass(segments: segments, requested: zip(requested, requestedBeforeReLU).map { $0 || $1 },
                         recomputesFirstLayer: recomputesFirstLayer, body)
    }

    /// Every step of every stripe of every segment, in the engine's order.
    /// - requested: whether a loss reads each step's output, after its ReLU or before it
    /// - recomputesFirstLayer: whether a single-stripe first segment recomputes the first layer for its losses
    static func forEachPass(segments: [SegmentGeometry], requested: [Bool], recomputesFirstLayer: Bool,
                            _ body: (Pass) -> Void) {
        for segment in segments {
            for stripe in 0 ..< segment.count {
                let back = segment.backwardRows(stripe: stripe)
                for step in segment.first ... segment.end {
                    let i = step - segment.first
                    let replayed = segment.replayEnd.map { step <= $0 }
                        ?? (step == 0 && requested[0] && recomputesFirstLayer)
                    let recomputed = replayed ? back.computed[i] : 0 ..< 0
                    body(Pass(segment: segment, stripe: stripe, step: step, computed: back.computed[i],
                              gradientIn: i == 0 ? back.input : back.padded[i - 1], gradientOut: back.padded[i],
                              recomputed: recomputed))
                }
            }
        }
    }

    /// The stripe heights a budget tries, in rows of a segment's input map.
    static let candidateStripeRows = [16, 32, 64, 128, 256, 512, 1024]

    /// The layouts a budget chooses from: whole maps, with the first layer's outputs kept or recomputed; the first
    /// 1 … 5 blocks in stripes of `candidateStripeRows`; and two striped segments, the second through deeper blocks
    /// in stripes of its own input's rows. Deeper blocks have wider receptive fields: one segment through them needs
    /// tall halos, recomputed at full resolution, where a second segment starts from the whole map between the two, at
    /// the price of that map and its gradient.
    static func candidates(height: Int, width: Int, layers: Set<VGGLayer>, maxPooling: Bool,
                           scratchFloats: (_ k: Int, _ height: Int, _ width: Int) -> Int) -> [Layout] {
        func layout(_ striping: Striping) -> Layout {
            Layout(height: height, width: width, layers: layers, striping: striping, maxPooling: maxPooling,
                   scratchFloats: scratchFloats)
        }
        // A segment through `block` whose input map is `inputHeight` rows tall: each stripe height shorter than that,
        // its masks recorded by the stripes' replays or whole.
        func segments(through block: Int, inputHeight: Int) -> [StripedSegment] {
            candidateStripeRows.filter { $0 < inputHeight }.flatMap { rows in
                [false, true].map { StripedSegment(rows: rows, throughBlock: block, recordsWhole: $0) }
            }
        }
        var candidates = [layout(.wholeMaps), layout(.wholeMapsRecomputingFirstLayer)]
        let deepestBlock = VGG19Architecture.steps[layers.map(\.step).max()!].block
        for blocks in 1 ... deepestBlock {
            for first in segments(through: blocks, inputHeight: height) {
                candidates.append(layout(.segments([first])))
                for deeper in blocks + 1 ..< deepestBlock + 1 {
                    for second in segments(through: deeper, inputHeight: height >> blocks) {
                        candidates.append(layout(.segments([first, second])))
                    }
                }
            }
        }
        return candidates
    }

    /// Of `candidates`, the one of least `cost` whose `bytes` are at most `budget`; when none fits, the one of fewest
    /// bytes.
    static func best(of candidates: [Layout], budget: Int) -> Layout {
        let fitting = candidates.filter { $0.bytes <= budget }
        if let best = fitting.min(by: { ($0.cost, $0.bytes) < ($1.cost, $1.bytes) }) { return best }
        return candidates.min { ($0.bytes, $0.cost) < ($1.bytes, $1.cost) }!
    }

    /// The best of `candidates` at height × width for `budget` (see `best(of:budget:)`).
    static func planned(height: Int, width: Int, layers: Set<VGGLayer>, budget: Int, maxPooling: Bool,
                        scratchFloats: (_ k: Int, _ height: Int, _ width: Int) -> Int) -> Layout {
        best(of: candidates(height: height, width: width, layers: layers, maxPooling: maxPooling,
                            scratchFloats: scratchFloats), budget: budget)
    }

    /// A description for `-verbose`: how many stripes each segment runs in, and whether the backward pass recomputes
    /// the first layer.
    var summary: String {
        let stripes = segments.map { segment in
            let from = VGG19Architecture.steps[segment.first].output, to = VGG19Architecture.steps[segment.end].output
            let range = segment.first == segment.end ? "\(from)" : "\(from) … \(to)"
            return segment.count == 1 ? "\(range) whole"
                : "\(range) in \(segment.count) stripes of \(segment.stripeRows) rows\(segment.recordsWhole ? " (masks whole)" : "")"
        }.joined(separator: ", ")
        let recomputed = recomputesFirstLayer && (requested[0] || requestedBeforeReLU[0])
        return stripes + (recomputed ? " (the first layer recomputed for the backward pass)" : "")
    }
}

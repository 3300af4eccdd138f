import Kernels
import Foundation

/// Why a network cannot be built from the weights it was given.
public enum NetworkError: LocalizedError, Equatable {
    /// The weights hold a different number of convolution layers than VGG-19's 16.
    case layerCount(found: Int)
    /// Layer `index` of the weights is not the convolution VGG-19 has there.
    case layerMismatch(index: Int, expected: String, found: String)

    public var errorDescription: String? {
        switch self {
        case .layerCount(let found):
            return "The VGG-19 weights hold \(found) convolution layers; the network has 16."
        case .layerMismatch(let index, let expected, let found):
            return "Layer \(index + 1) of the VGG-19 weights is \(found); the network expects \(expected) there."
        }
    }
}

/// A layer's output, or rows of it, as the network hands it to the losses.
public struct FeatureMap {
    public let layer: VGGLayer
    /// The height of the layer's whole map.
    public let height: Int
    /// The rows of the whole map that `values` holds: all of them (`0 ..< height`) where the layer runs on whole maps,
    /// else a stripe. In the forward pass the stripes of a layer arrive in order and cover the map once; in the backward
    /// pass they may overlap their neighbours by a few rows, so the gradient a loss adds must depend only on the
    /// activation rows it is given (and on what the forward pass saw of the whole layer). `FeatureCollector` takes
    /// them apart from the losses' view.
    public let rows: Range<Int>
    /// (channels, rows.count, width)
    public let values: Tensor

    public var channels: Int { values.channels }
    public var width: Int { values.width }
}

/// The time the network spent in one step of its last evaluation (see `VGG19.recordsLayerTimes`).
public struct LayerTime: Sendable {
    /// The step's name: `reluB_N` for a convolution with its ReLU, `poolB` for a pooling.
    public let layer: String
    public var forwardSeconds: Double
    /// The backward pass through the step, recomputations for the losses included (the losses' own time excluded).
    public var backwardSeconds: Double
}

/// VGG-19's sixteen 3x3 convolutions with their ReLUs and the pooling between the blocks, evaluated on the CPU for one
/// image: a forward pass that stops at the deepest layer a loss needs, and a backward pass that returns the gradient
/// with respect to the image only.
///
/// The network takes RGB images, planar (3, height, width) with values 0…1, and feeds the original Caffe weights
/// what they were trained on: BGR, 0…255, minus the mean pixel. Evaluating at a size allocates every buffer once
/// (`prepare`); later evaluations at that size allocate nothing.
///
/// One engine runs every step over row spans, a whole map being one span (see `Layout`): the steps form segments, each
/// run stripe by stripe from its input map (the image, or the whole map the segment before it ends with), a row more
/// each side per 3x3 convolution still to come. In a segment of one stripe, the forward pass keeps what the backward
/// pass needs: one bit per ReLU output, the winner of each max-pooling window, and the outputs the losses read (but,
/// where memory is short, the first layer's, which the backward pass can recompute from the image). A segment of many
/// stripes keeps nothing but the map it ends with: its backward pass replays each stripe from the segment's input on
/// the rows its forward pass computed, recording that stripe's masks and choices and keeping the outputs the losses
/// read on the rows the stripe owns, then takes back through those rows the gradient of the losses on the owned rows;
/// the stripes' gradients at the segment's input overlap and add up. Each step thus runs on a stripe and the rows its
/// receptive field adds, once forward, once replayed and once backward. The backward pass goes segment by segment,
/// deepest first. How much runs in stripes follows `Striping`: whole maps, given stripe heights through given blocks,
/// or a memory budget.
///
/// One evaluation is `forward` (the losses see each requested layer as it is computed) followed by `backward` (the
/// losses add their gradient at each requested layer, deepest first). Not thread-safe: one evaluation at a time.
/// Results do not depend on the number of threads.
public final class VGG19 {
    /// The convolutions in network order: (name, inChannels, outChannels).
    public static var convolutionTable: [(name: String, inChannels: Int, outChannels: Int)] {
        VGG19Architecture.convolutions
    }

    /// The network's steps in network order, named after their outputs (`reluB_N`, `poolB`): the entries of
    /// `layerTimes`.
    public static let layerNames: [String] = VGG19Architecture.steps.map(\.output.name)

    /// The names of the layers whose outputs the losses may read, in network order.
    public static let requestableLayers: [String] = VGGLayer.all.map(\.name)

    /// The shape of a layer's output for an input image of height × width.
    public static func shape(of layer: String, height: Int, width: Int) -> (channels: Int, height: Int, width: Int) {
        VGG19Architecture.shape(of: named(layer), height: height, width: width)
    }

    /// Multiply-adds of the forward pass from the image through `layer` at height × width.
    public static func multiplyAdds(through layer: String, height: Int, width: Int) -> Int {
        VGG19Architecture.multiplyAdds(through: named(layer), height: height, width: width)
    }

    /// The layer called `name`; a name VGG-19 does not have is a programmer error.
    static func named(_ name: String) -> VGGLayer {
        guard let layer = VGGLayer(name) else { preconditionFailure("VGG-19 has no layer \(name)") }
        return layer
    }

    public let pooling: Pooling
    /// The convolutions in network order.
    private let convolutions: [Convolution]
    /// The buffer the convolutions that keep no transformed kernel make it in, each time they run; nil when all keep theirs.
    private let kernelSlot: TransformedKernelSlot?

    /// The most floats one convolution's scratch may use.
    private let scratchLimit: Int
    /// The threads the network's own loops run on.
    public let threads: Int
    /// How the maps are divided into stripes; a change takes effect at the next `prepare`.
    public var striping: Striping {
        didSet { if striping != oldValue { plan = nil; forwardIsCurrent = false } }
    }
    /// The buffers for the size and layers of the last evaluation.
    private var plan: Plan?
    /// The layouts a budget chooses from at the last size planned (see `Layout.candidates`).
    private var candidateLayouts: (height: Int, width: Int, layers: Set<VGGLayer>, layouts: [Layout])?
    /// Whether the buffers hold a forward pass that `backward` may use.
    private var forwardIsCurrent = false
    /// The image of the last forward pass, which `backward` must be given again.
    private var forwardImage: UnsafePointer<Float>?

    /// When set, each evaluation records the time of each step in `layerTimes` (for benchmarks).
    public var recordsLayerTimes = false
    /// The steps of the last evaluation with their times, in network order, when `recordsLayerTimes` is set.
    public private(set) var layerTimes: [LayerTime] = []

    /// Builds the network from the 16 convolution layers of `weights`.
    /// - Parameters:
    ///   - pooling: max pooling as published, or average pooling.
    ///   - scratchBytes: the bound on the scratch of a convolution; any image size works within it.
    ///   - threads: the threads of the convolutions and the other loops (OpenBLAS runs single-threaded inside
    ///     each); the number of cores by default.
    ///   - striping: how the maps are divided into stripes (see `Striping` and `Layout`); whole maps by default.
    ///   - convolution: how the convolutions of many input channels are computed (`conv1_1` always uses im2col).
    ///   - precision: the precision of the Winograd products (`ProductPrecision`), where the processor and the kernel
    ///     path run it; single precision elsewhere.
    ///   - keptKernelBytes: with Winograd, the transformed kernels (α² × in × out floats a layer; through `conv5_1`,
    ///     350 MiB with F(6×6), 197 with F(4×4)) kept from one use to the next, smallest first, up to this many bytes;
    ///     by default those of blocks 1 to 3. The layers left over share one buffer, the size of the largest of them,
    ///     and transform their kernel into it each time they run (a few milliseconds a layer) unless
    ///     `keepsAllKernels`; `Int.max` keeps them all.
    ///   - padding: what `conv1_1` sees beyond the image's edges (the other convolutions pad with zeros, as trained).
    ///   - tile: which Winograd algorithm the convolutions of many input channels run; nil for
    ///     `Convolution.preferredTile` of the precision.
    /// - Throws: `NetworkError` when the weights are not VGG-19's convolutions in order.
    public init(weights: VGGWeights, pooling: Pooling = .max, scratchBytes: Int = 32 << 20, threads: Int? = nil,
                striping: Striping = .wholeMaps, convolution: ConvolutionAlgorithm = .winograd,
                keptKernelBytes: Int? = nil, precision: ProductPrecision = .single,
                padding: Padding = .zero, tile: WinogradTile? = nil) throws {
        try weights.checkArchitecture()
        weightBytes = weights.bytes
        self.pooling = pooling
        let threads = max(1, threads ?? coreCount)
        self.threads = threads
        self.striping = striping
        let tile = tile ?? Convolution.preferredTile(precision: precision, algorithm: convolution)
        self.tile = tile
        // The transformed kernels kept, smallest first within the budget; the others share the slot.
        let sizes = weights.layers.map {
            Convolution.usesWinograd(inChannels: $0.inChannels, algorithm: convolution)
                ? tile.positions * $0.inChannels * $0.outChannels * MemoryLayout<Float>.stride : 0
        }
        // By default the kernels of blocks 1 to 3 (35 MiB with F(4×4), 63 MiB with F(6×6)), which run on large maps,
        // so that their transforms would cost the most often; the 512-channel layers are transformed as they run
        // unless `keepsAllKernels`.
        var kept = Set<Int>()
        let blocksOneToThree = VGG19Architecture.blocks.prefix(3).reduce(0) { $0 + $1.convolutions }
        var budget = keptKernelBytes ?? sizes.prefix(blocksOneToThree).reduce(0, +)
        for k in sizes.indices.sorted(by: { sizes[$0] < sizes[$1] }) where sizes[k] > 0 && sizes[k] <= budget {
            kept.insert(k)
            budget -= sizes[k]
        }
        let shared = sizes.indices.filter { sizes[$0] > 0 && !kept.contains($0) }
        let slot = shared.isEmpty ? nil
            : TransformedKernelSlot(capacity: shared.map { sizes[$0] }.max()! / MemoryLayout<Float>.stride)
        kernelSlot = slot
        sharedKernelBytes = sizes.indices.map { kept.contains($0) ? 0 : sizes[$0] }
        let convolutions = weights.layers.enumerated().map { k, layer in
            Convolution(layer, threads: threads, algorithm: convolution, kernelSlot: kept.contains(k) ? nil : slot,
                        precision: precision, padding: k == 0 ? padding : .zero, tile: tile)
        }
        self.convolutions = convolutions
        self.precision = convolutions.first { $0.productPrecision != .single }?.productPrecision ?? .single
        scratchLimit = max(1, scratchBytes / MemoryLayout<Float>.stride)
        // The kept transforms and the shared buffer, and the rotated kernels some layers' backward passes make.
        kernelCopyCapacity = convolutions.indices.reduce((slot?.capacity ?? 0) * MemoryLayout<Float>.stride) { total, k in
            total + (kept.contains(k) ? sizes[k] : 0) + convolutions[k].derivedKernelCount * MemoryLayout<Float>.stride
        }
    }

    /// The network with the first `stripedBlocks` blocks in stripes of `stripeRows` image rows, or on whole maps when
    /// `stripeRows` is nil.
    public convenience init(weights: VGGWeights, pooling: Pooling = .max, threads: Int? = nil, stripeRows: Int?,
                            stripedBlocks: Int = 2, convolution: ConvolutionAlgorithm = .winograd) throws {
        try self.init(weights: weights, pooling: pooling, threads: threads,
                      striping: stripeRows.map { .stripes(rows: $0, blocks: stripedBlocks) } ?? .wholeMaps,
                      convolution: convolution)
    }

    /// The layout the network runs at height × width for `layers` with `striping` (its own by default), as `prepare`
    /// would choose it.
    func layout(height: Int, width: Int, layers: Set<VGGLayer>, striping: Striping? = nil) -> Layout {
        let scratch = { [convolutions, scratchLimit] (k: Int, h: Int, w: Int) in
            convolutions[k].scratchCount(height: h, width: w, limit: scratchLimit)
        }
        let striping = striping ?? self.striping
        if case .budget(let bytes) = striping {
            // The candidates of one size serve every budget a memory plan weighs.
            if candidateLayouts?.height != height || candidateLayouts?.width != width || candidateLayouts?.layers != layers {
                candidateLayouts = (height, width, layers,
                                    Layout.candidates(height: height, width: width, layers: layers,
                                                      maxPooling: pooling == .max, scratchFloats: scratch))
            }
            return Layout.best(of: candidateLayouts!.layouts, budget: bytes)
        }
        return Layout(height: height, width: width, layers: layers, striping: striping, maxPooling: pooling == .max,
                      scratchFloats: scratch)
    }

    /// The bytes the network would allocate for evaluations at height × width reading `layers` with `striping` (its
    /// own by default), without allocating.
    public func plannedBytes(height: Int, width: Int, layers: Set<VGGLayer>, striping: Striping? = nil) -> Int {
        layout(height: height, width: width, layers: layers, striping: striping).bytes
    }

    /// The work of an evaluation at height × width reading `layers` with `striping` (its own by default; see
    /// `Layout.cost`), as `prepare` would plan it.
    public func plannedCost(height: Int, width: Int, layers: Set<VGGLayer>, striping: Striping? = nil) -> Int {
        layout(height: height, width: width, layers: layers, striping: striping).cost
    }

    /// How the prepared size runs, for `-verbose`: each segment whole or in stripes.
    public var layoutSummary: String { plan?.layout.summary ?? "" }

    /// The bytes allocated for evaluations at the prepared size (activations, gradients, masks, pooling choices,
    /// scratch), not counting weights.
    public var allocatedBytes: Int { plan?.layout.bytes ?? 0 }

    /// The number of stripes each segment of the prepared size runs in, in network order.
    var stripeCounts: [Int] { plan?.layout.segments.map(\.count) ?? [] }

    /// The bytes of weights the network made itself, beyond the weights it was given (which it shares, not copies):
    /// the Winograd-transformed kernels kept, made the first time each layer runs, and the buffer shared by the others
    /// (and the kernels of the im2col layers, packed for the own kernels or rotated for the backward pass, made the
    /// first time each layer runs or is differentiated).
    public var kernelCopyBytes: Int {
        convolutions.reduce(0) { $0 + $1.allocatedBytes } + (kernelSlot?.allocatedBytes ?? 0)
    }

    /// The most bytes of weights the network makes itself (see `kernelCopyBytes`), once every layer has run.
    public let kernelCopyCapacity: Int
    /// The precision its Winograd products run in: `bf16` when it was asked for and the processor and kernel path run
    /// it.
    public let precision: ProductPrecision
    /// The Winograd algorithm of its convolutions of many input channels.
    public let tile: WinogradTile
    /// The bytes of the weights the network was given.
    public let weightBytes: Int

    /// How many times a convolution has transformed its kernel into the shared buffer (see `keptKernelBytes`).
    public var kernelTransforms: Int { kernelSlot?.fills ?? 0 }

    /// The bytes of each convolution's transformed kernel when it shares the buffer, 0 when it keeps its own.
    private let sharedKernelBytes: [Int]

    /// The bytes `keepsAllKernels` takes beyond `kernelCopyCapacity` in evaluations that read `layers`: the transformed
    /// kernels of the layers that share the buffer and run, less the buffer, which it frees (negative when that is
    /// more).
    public func allKernelsExtraBytes(for layers: Set<VGGLayer>) -> Int {
        guard let kernelSlot, let deepest = layers.map(\.step).max() else { return 0 }
        let running = VGG19Architecture.steps[...deepest].compactMap { step -> Int? in
            if case .convolution(let k) = step.kind { return k }
            return nil
        }
        return running.reduce(0) { $0 + sharedKernelBytes[$1] } - kernelSlot.capacity * MemoryLayout<Float>.stride
    }

    /// Whether every layer keeps its transformed kernel, made once, beyond the `keptKernelBytes` given (they take
    /// `allKernelsExtraBytes` more); otherwise those layers make it in the shared buffer each time they run.
    public var keepsAllKernels = false {
        didSet {
            guard keepsAllKernels != oldValue, let kernelSlot else { return }
            for convolution in convolutions { convolution.keepsKernel = keepsAllKernels }
            if keepsAllKernels { kernelSlot.release() }
        }
    }

    /// Allocates the buffers for evaluations at height × width whose losses read `layers`; does nothing when they
    /// are allocated already. `forward` calls it; call it first to allocate before work starts.
    public func prepare(height: Int, width: Int, layers: Set<VGGLayer>) {
        precondition(height > 0 && width > 0, "empty image")
        precondition(!layers.isEmpty, "no layer requested")
        if let plan, plan.layout.height == height, plan.layout.width == width, plan.layers == layers { return }
        plan = nil
        forwardIsCurrent = false
        plan = Plan(layout(height: height, width: width, layers: layers), layers: layers)
    }

    // MARK: - Forward

    /// Runs the network on `image` up to the deepest of `layers`, calling `observe` with each of `layers` as it is
    /// computed, whole or stripe by stripe (see `FeatureMap.rows`). The map handed to `observe` is valid only during
    /// the call.
    /// - Parameters:
    ///   - image: (3, height, width), RGB, values 0…1
    public func forward(image: UnsafeBufferPointer<Float>, height: Int, width: Int, layers: Set<VGGLayer>,
                        observe: (FeatureMap) -> Void) {
        precondition(image.count == 3 * height * width, "image size does not match height × width")
        prepare(height: height, width: width, layers: layers)
        let plan = plan!
        var times = [LayerTime]()
        if recordsLayerTimes {
            times = (0 ... plan.layout.deepest).map {
                LayerTime(layer: VGG19Architecture.steps[$0].output.name, forwardSeconds: 0, backwardSeconds: 0)
            }
        }
        for (index, segment) in plan.layout.segments.enumerated() {
            forward(segment: segment, index: index, image: image, plan: plan, times: &times, observe: observe)
        }
        layerTimes = times
        forwardIsCurrent = true
        forwardImage = image.baseAddress
    }

    /// The map a segment's stripe reads: for the first segment, the image rows its first step reads for the output rows
    /// `rows`, converted into the network's input; else the whole map the segment before ends with.
    private func segmentInput(_ segment: SegmentGeometry, index: Int, image: UnsafeBufferPointer<Float>,
                              rows: Range<Int>, plan: Plan) -> (Tensor, RowSpan) {
        guard index == 0 else {
            let map = plan.boundaries[index - 1]
            return (map, .whole(height: map.height, width: map.width))
        }
        let imageRows = segment.inputRows(step: 0, for: rows)
        let span = RowSpan(first: imageRows.lowerBound, rows: imageRows.count, height: plan.layout.height,
                           width: plan.layout.width)
        plan.input.reshape(channels: 3, height: span.rows, width: span.width)
        caffeInput(fromRGB: image, span: span, into: plan.input)
        return (plan.input, span)
    }

    /// The forward pass through one segment, stripe by stripe: every step on the rows the steps after it need, the
    /// requested layers handed to `observe` on the rows the stripe owns, and the last step's owned rows written into
    /// the whole map the next segment reads.
    private func forward(segment: SegmentGeometry, index: Int, image: UnsafeBufferPointer<Float>, plan: Plan,
                         times: inout [LayerTime], observe: (FeatureMap) -> Void) {
        let layout = plan.layout
        for stripe in 0 ..< segment.count {
            let need = segment.forwardRows(stripe: stripe)
            var (current, currentSpan) = segmentInput(segment, index: index, image: image, rows: need[0], plan: plan)
            for step in segment.first ... segment.end {
                let rows = need[step - segment.first]
                let start = DispatchTime.now().uptimeNanoseconds
                var lossNanoseconds: UInt64 = 0
                let shape = layout.shapes[step]
                let output: Tensor, outputSpan: RowSpan
                if let whole = plan.kept[step] ?? (step == segment.end ? plan.boundaries[safe: index] : nil) {
                    whole.reshape(channels: shape.channels, height: shape.height, width: shape.width)
                    (output, outputSpan) = (whole, .whole(height: shape.height, width: shape.width))
                } else {
                    (output, outputSpan) = plan.stripe(current === plan.a ? plan.b : plan.a, rows: rows, shape: shape)
                }
                let owned = segment.ownedRows(step: step, stripe: stripe)
                // Shows the losses the rows the stripe owns of the step's output as it is now, as `layer`.
                func show(_ layer: VGGLayer) {
                    let lossStart = DispatchTime.now().uptimeNanoseconds
                    defer { lossNanoseconds += DispatchTime.now().uptimeNanoseconds - lossStart }
                    guard !owned.isEmpty || (shape.height == 0 && stripe == 0) else { return }
                    var values = output
                    if !(outputSpan.first == owned.lowerBound && outputSpan.rows == owned.count) {
                        values = plan.owned
                        values.reshape(channels: shape.channels, height: owned.count, width: shape.width)
                        copyRows(of: output, span: outputSpan, rows: owned, into: values)
                    }
                    observe(FeatureMap(layer: layer, height: shape.height, rows: owned, values: values))
                }
                let stepInfo = VGG19Architecture.steps[step]
                // A segment that does not record whole maps records nothing here: its replays record each stripe's own.
                let records = segment.recordsWhole ? plan.records(step, holding: 0 ..< shape.height) : nil
                if layout.requestedBeforeReLU[step] {
                    // The convolution without its ReLU, shown to the losses (and kept), then the ReLU.
                    run(step, rows: rows, input: current, inputSpan: currentSpan, into: output, outputSpan: outputSpan,
                        mode: .beforeReLU, plan: plan)
                    if let kept = plan.keptBeforeReLU[step] {
                        kept.reshape(channels: shape.channels, height: shape.height, width: shape.width)
                        copyRows(of: output, span: outputSpan, rows: rows, intoWhole: kept)
                    }
                    show(VGGLayer(.conv, block: stepInfo.block, number: stepInfo.output.number))
                    addBias(output.storage, span: outputSpan, bias: plan.zeroBias.storage, channels: output.channels,
                            rows: rows, reluMask: records, rectify: true, threads: threads)
                } else {
                    run(step, rows: rows, input: current, inputSpan: currentSpan, into: output, outputSpan: outputSpan,
                        mode: records.map { .record($0) } ?? .rectify, plan: plan)
                }
                if layout.requested[step] { show(stepInfo.output) }
                (current, currentSpan) = (output, outputSpan)
                if recordsLayerTimes {
                    times[step].forwardSeconds += Double(DispatchTime.now().uptimeNanoseconds - start - lossNanoseconds) / 1e9
                }
            }
        }
    }

    /// How `run` treats a step's ReLU mask or pooling choices.
    private enum RunMode {
        /// The convolution's ReLU recording its mask, the pooling recording its choices (none for average pooling),
        /// in these records.
        case record(RowRecords?)
        /// The ReLU applied, nothing recorded.
        case rectify
        /// The convolution's output before its ReLU (`convB_N`); a pooling as in `rectify`.
        case beforeReLU
    }

    /// Step `step` forward on the rows `rows` of its output.
    private func run(_ step: Int, rows: Range<Int>, input: Tensor, inputSpan: RowSpan, into output: Tensor,
                     outputSpan: RowSpan, mode: RunMode, plan: Plan) {
        guard !rows.isEmpty else { return }
        var records: RowRecords?
        if case .record(let r) = mode { records = r }
        switch VGG19Architecture.steps[step].kind {
        case .convolution(let k):
            var rectify = false
            if case .rectify = mode { rectify = true }
            convolutions[k].forward(rows: rows, input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                                    reluMask: records, rectify: rectify, scratch: plan.scratch)
        case .pool:
            pooling.forward(rows: rows, input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                            choice: records, threads: threads)
        }
    }

    /// The backward pass's replay of stripe `stripe` of a replaying segment: the steps from the segment's input
    /// through `SegmentGeometry.replayEnd` on `rows`, the rows its forward pass computed, keeping the rows the stripe
    /// owns of the outputs the losses read, and recording the ReLU masks and pooling choices of those rows unless the
    /// forward pass recorded them whole. Adds each step's time to `seconds`.
    private func replay(stripe: Int, rows: [Range<Int>], segment: SegmentGeometry, index: Int,
                        image: UnsafeBufferPointer<Float>, plan: Plan, seconds: inout [Double]) {
        guard let replayEnd = segment.replayEnd else { return }
        let layout = plan.layout
        var (input, inputSpan) = segmentInput(segment, index: index, image: image, rows: rows[0], plan: plan)
        for step in segment.first ... replayEnd {
            let start = DispatchTime.now().uptimeNanoseconds
            let i = step - segment.first
            let (output, outputSpan) = plan.stripe(input === plan.a ? plan.b : plan.a, rows: rows[i],
                                                   shape: layout.shapes[step])
            let records = segment.recordsWhole ? nil : plan.records(step, holding: rows[i])
            let owned = segment.ownedRows(step: step, stripe: stripe)
            // Keeps the owned rows of the output as it is now in `store`.
            func keep(in store: Tensor?) {
                guard let store else { return }
                store.reshape(channels: output.channels, height: owned.count, width: output.width)
                copyRows(of: output, span: outputSpan, rows: owned, into: store)
            }
            if layout.requestedBeforeReLU[step] {
                run(step, rows: rows[i], input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                    mode: .beforeReLU, plan: plan)
                keep(in: plan.replayedBeforeReLU[step])
                addBias(output.storage, span: outputSpan, bias: plan.zeroBias.storage, channels: output.channels,
                        rows: rows[i], reluMask: records, rectify: true, threads: threads)
            } else {
                run(step, rows: rows[i], input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                    mode: segment.recordsWhole ? .rectify : .record(records), plan: plan)
            }
            keep(in: plan.replayed[step])
            (input, inputSpan) = (output, outputSpan)
            seconds[i] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
    }

    // MARK: - Backward

    /// The gradient of the losses with respect to `image`, the image of the last `forward` (given again, for the
    /// stripes that replay from it). `addGradient(activation, gradient)` is called for each requested layer, deepest
    /// first, whole or stripe by stripe, with the layer's output and the gradient of everything deeper with respect to
    /// it on the same rows; it adds ∂loss/∂activation into `gradient` (same shape as `activation.values`). Both are
    /// valid only during the call.
    /// - Parameter imageGradient: (3, height, width), RGB; overwritten with ∂loss/∂image
    public func backward(image: UnsafeBufferPointer<Float>, into imageGradient: UnsafeMutableBufferPointer<Float>,
                         addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        precondition(forwardIsCurrent, "backward without a forward pass")
        precondition(image.baseAddress == forwardImage, "backward on another image than the forward pass's")
        let plan = plan!
        let layout = plan.layout
        precondition(imageGradient.count == 3 * layout.height * layout.width, "gradient size does not match the image")
        precondition(image.count == imageGradient.count)
        forwardIsCurrent = false
        for index in stride(from: layout.segments.count - 1, through: 0, by: -1) {
            backward(segment: layout.segments[index], index: index, image: image, plan: plan,
                     imageGradient: imageGradient, addGradient: addGradient)
        }
    }

    /// The backward pass through one segment, stripe by stripe: from the gradient at its last step's output (handed
    /// back whole by the segment after it, or nothing but the losses' for the last segment) to the gradient at its
    /// input, written into the whole map the segment before it reads (or the image's). Each stripe takes back the
    /// gradient of the losses on the rows it owns (and its rows of a gradient handed back), on the rows the forward
    /// pass computed for it (see `SegmentGeometry.BackwardRows`); the stripes' gradients at the input overlap and add.
    private func backward(segment: SegmentGeometry, index: Int, image: UnsafeBufferPointer<Float>, plan: Plan,
                          imageGradient: UnsafeMutableBufferPointer<Float>,
                          addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        let layout = plan.layout
        let steps = VGG19Architecture.steps
        var seconds = [Double](repeating: 0, count: segment.end - segment.first + 1)
        let handedBack = segment.receivesGradient ? plan.boundaryGradients[index] : nil
        if let handedBack, layout.requested[segment.end] {
            // The segment's last output is a whole map the forward pass kept: its losses add once, on all of it.
            let start = DispatchTime.now().uptimeNanoseconds
            let activation = plan.boundaries[index]
            addGradient(FeatureMap(layer: steps[segment.end].output, height: activation.height,
                                   rows: 0 ..< activation.height, values: activation), handedBack)
            seconds[segment.end - segment.first] -= Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        }
        // Where the gradient at the segment's input goes: the whole map the segment before reads, or the image's.
        let inputShape = { (step: Int) in
            step == 0 ? (channels: 3, height: layout.height, width: layout.width) : layout.shapes[step - 1]
        }
        let handedOn = index > 0 ? plan.boundaryGradients[index - 1] : nil
        if let handedOn {
            let shape = inputShape(segment.first)
            handedOn.reshape(channels: shape.channels, height: shape.height, width: shape.width)
        }
        // A replaying segment's stripes add their overlapping gradients: into the image's, or, for the map handed on,
        // into a window of the rows not yet settled, written into that map as they settle (see
        // `SegmentGeometry.settledRows`): where the map handed on shares its storage with the map the segment reads,
        // over rows no later stripe reads.
        let settled = segment.replays && handedOn != nil ? segment.settledRows : []
        var window = RowSpan(first: 0, rows: 0, height: 0, width: 0)
        if segment.replays {
            if let handedOn {
                window = RowSpan(first: 0, rows: segment.settlingRows, height: handedOn.height, width: handedOn.width)
                plan.settling.reshape(channels: handedOn.channels, height: window.rows, width: window.width)
                plan.settling.zero()
            } else {
                imageGradient.update(repeating: 0)
            }
        }
        // The buffers the gradient stripes take turns in: the forward pass's (see `Layout`).
        let (first, second) = (plan.a, plan.b)
        for stripe in 0 ..< segment.count {
            let back = segment.backwardRows(stripe: stripe)
            // Records of whole maps, or of the rows the stripe's replay computes.
            func records(_ step: Int) -> RowRecords? {
                plan.records(step, holding: segment.recordsWhole ? 0 ..< layout.shapes[step].height
                                                                 : back.computed[step - segment.first])
            }
            if segment.replays {
                replay(stripe: stripe, rows: back.computed, segment: segment, index: index, image: image, plan: plan,
                       seconds: &seconds)
            }
            let last = segment.end - segment.first
            var gradient: Tensor, gradientSpan: RowSpan
            if let handedBack, !segment.replays {
                (gradient, gradientSpan) = (handedBack, .whole(height: handedBack.height, width: handedBack.width))
            } else {
                (gradient, gradientSpan) = plan.stripe(first, rows: back.padded[last], shape: layout.shapes[segment.end])
                gradient.zero()
                if let handedBack {
                    copyRows(of: handedBack, span: .whole(height: handedBack.height, width: handedBack.width),
                             rows: back.computed[last], into: gradient, span: gradientSpan)
                }
            }
            for step in stride(from: segment.end, through: segment.first, by: -1) {
                var start = DispatchTime.now().uptimeNanoseconds
                let i = step - segment.first
                let stepInfo = steps[step]
                // The losses add on the rows the stripe owns (all of them, on whole maps), unless the step ends a
                // segment whose gradient came back whole (added above). Where the gradient stripe holds more rows, they
                // add into a buffer of the owned rows first.
                let owned = segment.ownedRows(step: step, stripe: stripe)
                func addLoss(_ layer: VGGLayer, beforeReLU: Bool) {
                    let activation = self.activation(step, rows: owned, plan: plan, beforeReLU: beforeReLU,
                                                     spare: gradient === first ? second : first)
                    let lossStart = DispatchTime.now().uptimeNanoseconds
                    defer { start += DispatchTime.now().uptimeNanoseconds - lossStart }
                    let map = FeatureMap(layer: layer, height: gradientSpan.height, rows: owned, values: activation)
                    if gradientSpan.first == owned.lowerBound && gradientSpan.rows == owned.count {
                        addGradient(map, gradient)
                    } else {
                        plan.owned.reshape(channels: gradient.channels, height: owned.count, width: gradient.width)
                        plan.owned.zero()
                        addGradient(map, plan.owned)
                        copyRows(of: plan.owned, span: RowSpan(first: owned.lowerBound, rows: owned.count,
                                                               height: gradientSpan.height, width: gradientSpan.width),
                                 rows: owned, into: gradient, span: gradientSpan, adding: true)
                    }
                }
                if layout.requested[step] && !(step == segment.end && handedBack != nil) {
                    addLoss(stepInfo.output, beforeReLU: false)
                }
                // The step's own ReLU: fused into the backward pass of the step after it unless a loss added at its
                // output (or nothing comes after it in this segment).
                if stepInfo.isConvolution, layout.requested[step] || step == segment.end {
                    applyReLUMask(gradient.storage, span: gradientSpan, mask: records(step)!, channels: gradient.channels,
                                  rows: back.computed[i], threads: threads)
                }
                if layout.requestedBeforeReLU[step] {
                    // The gradient has passed the ReLU: it is the gradient at the convolution's output, where convB_N's
                    // loss adds its own.
                    addLoss(VGGLayer(.conv, block: stepInfo.block, number: stepInfo.output.number), beforeReLU: true)
                }
                // The gradient at the step's input: on the rows the forward pass computed there, in a stripe whose rows
                // around them are zero; at the segment's input, on the rows it reaches, or written straight into the
                // whole map handed on by a single stripe.
                let rows = i > 0 ? back.computed[i - 1] : back.input
                let output: Tensor, outputSpan: RowSpan
                if let handedOn, step == segment.first, !segment.replays {
                    (output, outputSpan) = (handedOn, .whole(height: handedOn.height, width: handedOn.width))
                } else {
                    (output, outputSpan) = plan.stripe(gradient === first ? second : first,
                                                       rows: i > 0 ? back.padded[i - 1] : rows, shape: inputShape(step))
                }
                // The ReLU that made this step's input takes the gradient through its mask at once unless a loss adds
                // to it first.
                let inputMask = step > segment.first && steps[step - 1].isConvolution && !layout.requested[step - 1]
                    ? records(step - 1) : nil
                if !rows.isEmpty {
                    switch stepInfo.kind {
                    case .convolution(let k):
                        convolutions[k].backwardInput(rows: rows, gradOutput: gradient, gradOutputSpan: gradientSpan,
                                                      into: output, gradInputSpan: outputSpan, inputMask: inputMask,
                                                      scratch: plan.scratch)
                    case .pool:
                        pooling.backward(rows: rows, gradOutput: gradient, gradOutputSpan: gradientSpan,
                                         choice: records(step), into: output, gradInputSpan: outputSpan,
                                         reluMask: inputMask, threads: threads)
                    }
                }
                // Zeros around the rows computed, which the step before reads.
                if i > 0 {
                    let end = outputSpan.first + outputSpan.rows
                    if rows.isEmpty {
                        zeroRows(of: output, span: outputSpan, rows: outputSpan.first ..< end)
                    } else {
                        zeroRows(of: output, span: outputSpan, rows: outputSpan.first ..< rows.lowerBound)
                        zeroRows(of: output, span: outputSpan, rows: rows.upperBound ..< end)
                    }
                }
                (gradient, gradientSpan) = (output, outputSpan)
                seconds[i] += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            }
            // The gradient at the segment's input, added to the other stripes' (written, from a single stripe).
            if index == 0 {
                rgbGradient(fromCaffe: gradient, span: gradientSpan, rows: back.input, into: imageGradient,
                            adding: segment.replays)
            } else if let handedOn, segment.replays {
                copyRows(of: gradient, span: gradientSpan, rows: back.input, into: plan.settling, span: window,
                         adding: true)
                let settling = window.first ..< settled[stripe + 1]
                copyRows(of: plan.settling, span: window, rows: settling, into: handedOn,
                         span: .whole(height: handedOn.height, width: handedOn.width))
                window = slideRows(of: plan.settling, span: window, to: settling.upperBound)
            }
        }
        if recordsLayerTimes {
            for step in segment.first ... segment.end where step < layerTimes.count {
                layerTimes[step].backwardSeconds += seconds[step - segment.first]
            }
        }
    }

    /// The output of `step` on `rows` (before its ReLU when `beforeReLU`) for a loss in the backward pass: the whole
    /// map kept from the forward pass; the rows the stripe's replay kept; or, for the first layer of a single-stripe
    /// segment, a recomputation from the image into `spare`, valid until the next one.
    private func activation(_ step: Int, rows: Range<Int>, plan: Plan, beforeReLU: Bool, spare: Tensor) -> Tensor {
        if let kept = beforeReLU ? plan.keptBeforeReLU[step] : plan.kept[step] { return kept }
        if let replayed = beforeReLU ? plan.replayedBeforeReLU[step] : plan.replayed[step] {
            precondition(replayed.height == rows.count, "the replay kept other rows")
            return replayed
        }
        precondition(step == 0, "only the first layer is recomputed in a single-stripe segment")
        let (output, outputSpan) = plan.stripe(spare, rows: rows, shape: plan.layout.shapes[step])
        precondition(plan.input.height == plan.layout.height, "the first segment holds the whole input")
        run(step, rows: rows, input: plan.input, inputSpan: .whole(height: plan.input.height, width: plan.input.width),
            into: output, outputSpan: outputSpan, mode: beforeReLU ? .beforeReLU : .rectify, plan: plan)
        return output
    }

    /// Copies of the whole outputs of `layers` for `image`, (3, height, width) RGB 0…1, assembled by a
    /// `FeatureCollector`: content targets, tests, fixtures.
    public func activations(image: [Float], height: Int, width: Int, layers: Set<VGGLayer>) -> [VGGLayer: Tensor] {
        var collector = FeatureCollector(maps: layers, height: height, width: width)
        image.withUnsafeBufferPointer { image in
            forward(image: image, height: height, width: width, layers: layers) { collector.add($0) }
        }
        forwardIsCurrent = false
        return collector.finishedMaps()
    }

    // MARK: - Buffers

    /// Every buffer of an evaluation at one size for one set of requested layers, allocated together as `layout`
    /// says.
    private final class Plan {
        let layout: Layout
        let layers: Set<VGGLayer>
        /// (3, rows, width): the image rows the first step reads, as the network sees them (BGR, 0…255, minus the
        /// mean): all of them when the first segment is a single stripe, else those of one stripe.
        let input: Tensor
        /// Two buffers taking turns as the steps' outputs in the forward pass and when recomputing, (channels, rows,
        /// width) of the step and the rows it computes; and as the gradient stripes of the backward pass, (channels,
        /// rows, width) of the map and the rows the gradient is computed on.
        let a: Tensor
        let b: Tensor
        /// (channels, rows, width): the rows a stripe owns of a requested layer, when the stripe computed more.
        let owned: Tensor
        /// The whole output of the last step of each segment but the last, and the gradient there, over the output
        /// where the two share storage (`Layout.sharesBoundary`): (channels, height, width) of that step.
        let boundaries: [Tensor]
        let boundaryGradients: [Tensor]
        /// The window of a replaying segment's gradient at its input, (channels, rows, width), while it settles.
        let settling: Tensor
        /// The requested outputs kept whole from the forward pass, after the ReLU and before it: (channels, height,
        /// width) of the step. (steps through deepest; nil where not kept)
        let kept: [Tensor?]
        let keptBeforeReLU: [Tensor?]
        /// The requested outputs of a replaying segment on a stripe's gradient rows, after the ReLU and before it, as
        /// the stripe's replay computed them: (channels, rows, width) of the step. (steps through deepest; nil where
        /// none)
        let replayed: [Tensor?]
        let replayedBeforeReLU: [Tensor?]
        /// (the most output channels of a convolution, or none when no `convB_N` is requested): zeros, the bias of a
        /// ReLU applied apart from its convolution.
        let zeroBias: Tensor
        /// ReLU masks of the convolution steps, and winners of the max-pooling steps, of whole maps or of one stripe's
        /// replay (see `records`). (steps through deepest)
        let masks: [ByteBuffer?]
        let choices: [ByteBuffer?]
        /// (scratch floats): the im2col band or Winograd tiles of the convolution being run.
        let scratch: Tensor

        init(_ layout: Layout, layers: Set<VGGLayer>) {
            self.layout = layout
            self.layers = layers
            input = Tensor(channels: 3, height: layout.inputRows, width: layout.width)
            a = Tensor(channels: 0, height: 0, width: 0, capacity: layout.forwardFloats)
            b = Tensor(channels: 0, height: 0, width: 0, capacity: layout.forwardFloats)
            owned = Tensor(channels: 0, height: 0, width: 0, capacity: layout.ownedFloats)
            let boundaryShapes = layout.segments.dropLast().map { layout.shapes[$0.end] }
            boundaries = boundaryShapes.map { Tensor(channels: $0.channels, height: $0.height, width: $0.width) }
            boundaryGradients = zip(boundaries, layout.sharesBoundary).map { map, shared in
                shared ? map : Tensor(channels: map.channels, height: map.height, width: map.width)
            }
            settling = Tensor(channels: 0, height: 0, width: 0, capacity: layout.settlingFloats)
            kept = layout.shapes.indices.map { step in
                let shape = layout.shapes[step]
                return layout.kept[step] ? Tensor(channels: shape.channels, height: shape.height, width: shape.width) : nil
            }
            keptBeforeReLU = layout.shapes.indices.map { step in
                let shape = layout.shapes[step]
                return layout.keptBeforeReLU[step]
                    ? Tensor(channels: shape.channels, height: shape.height, width: shape.width) : nil
            }
            replayed = layout.replayedFloats.map { $0 > 0 ? Tensor(channels: 0, height: 0, width: 0, capacity: $0) : nil }
            replayedBeforeReLU = layout.replayedBeforeReLUFloats.map {
                $0 > 0 ? Tensor(channels: 0, height: 0, width: 0, capacity: $0) : nil
            }
            zeroBias = Tensor(channels: 1, height: 1, width: layout.zeroBiasFloats)
            let steps = VGG19Architecture.steps
            masks = layout.maskBytes.indices.map { steps[$0].isConvolution ? ByteBuffer(capacity: layout.maskBytes[$0]) : nil }
            choices = layout.choiceBytes.indices.map { step in
                !steps[step].isConvolution && layout.recordsChoices ? ByteBuffer(capacity: layout.choiceBytes[step]) : nil
            }
            scratch = Tensor(channels: 1, height: 1, width: layout.scratchCount)
        }

        /// The ReLU mask of convolution step `step`, or the choices of max-pooling step `step`, for the rows `rows` of
        /// its output map; nil for an average pooling.
        func records(_ step: Int, holding rows: Range<Int>) -> RowRecords? {
            let shape = layout.shapes[step]
            if let mask = masks[step] {
                precondition(mask.capacity >= shape.channels * rows.count * maskRowBytes(width: shape.width), "mask too small")
                return .mask(mask, rows: rows, width: shape.width)
            }
            if let choice = choices[step] {
                precondition(choice.capacity >= shape.channels * rows.count * choiceRowBytes(width: shape.width),
                             "pooling choices too small")
                return .choices(choice, rows: rows, width: shape.width)
            }
            return nil
        }

        /// `buffer` shaped for the rows `rows` of a map of `shape`, with the span that says so.
        func stripe(_ buffer: Tensor, rows: Range<Int>, shape: Layout.Shape) -> (Tensor, RowSpan) {
            buffer.reshape(channels: shape.channels, height: rows.count, width: shape.width)
            return (buffer, RowSpan(first: rows.lowerBound, rows: rows.count, height: shape.height, width: shape.width))
        }
    }
}

extension VGG19 {
    /// `forward` on an image held in an array.
    public func forward(image: [Float], height: Int, width: Int, layers: Set<VGGLayer>, observe: (FeatureMap) -> Void) {
        image.withUnsafeBufferPointer { forward(image: $0, height: height, width: width, layers: layers, observe: observe) }
    }

    /// `forward` on layers given by name.
    public func forward(image: [Float], height: Int, width: Int, layers: Set<String>, observe: (FeatureMap) -> Void) {
        forward(image: image, height: height, width: width, layers: Set(layers.map(VGG19.named)), observe: observe)
    }

    /// `prepare` for layers given by name.
    public func prepare(height: Int, width: Int, layers: Set<String>) {
        prepare(height: height, width: width, layers: Set(layers.map(VGG19.named)))
    }

    /// `backward` for an image held in an array (the array `forward` was given), into an array, which must hold
    /// 3 × height × width values.
    public func backward(image: [Float], into imageGradient: inout [Float],
                         addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        image.withUnsafeBufferPointer { image in
            imageGradient.withUnsafeMutableBufferPointer { backward(image: image, into: $0, addGradient: addGradient) }
        }
    }

    /// `activations` of layers given by name, keyed by name.
    public func activations(image: [Float], height: Int, width: Int, layers: Set<String>) -> [String: Tensor] {
        let maps = activations(image: image, height: height, width: width, layers: Set(layers.map(VGG19.named)))
        return Dictionary(uniqueKeysWithValues: maps.map { ($0.key.name, $0.value) })
    }
}

extension Array {
    /// The element at `index`, or nil past the ends.
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

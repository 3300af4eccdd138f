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

/// A layer's output as the network hands it to the losses.
public struct FeatureMap {
    /// The layer's name, one of `VGG19.requestableLayers`: `conv1_1` … `conv5_4` (before the ReLU), `relu1_1` …
    /// `relu5_4` or `pool1` … `pool5`.
    public let layer: String
    /// The height of the layer's whole map.
    public let height: Int
    /// The rows of the whole map that `values` holds: all of them (`0 ..< height`), unless the network runs its first
    /// blocks in horizontal stripes (`VGG19.stripeRows`). Then the layers of those blocks but their last pooling
    /// (`conv1_1` … `relu2_2` and `pool1` with two striped blocks) arrive in stripes: in the forward pass, consecutive
    /// stripes that cover the map once; in the backward pass, stripes that overlap their neighbours by a few rows, so
    /// the gradient a loss adds must depend only on the activation rows it is given.
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
    /// The backward pass through the step (the losses' own time excluded).
    public var backwardSeconds: Double
}

/// VGG-19's sixteen 3x3 convolutions with their ReLUs and the pooling between the blocks, evaluated on the CPU for one
/// image: a forward pass that stops at the deepest layer a loss needs, and a backward pass that returns the gradient
/// with respect to the image only.
///
/// The network takes RGB images, planar (3, height, width) with values 0…1, and feeds the original Caffe weights
/// what they were trained on: BGR, 0…255, minus the mean pixel. Evaluating at a size allocates every buffer once
/// (`prepare`); later evaluations at that size allocate nothing. The forward pass keeps only what the backward pass
/// needs: one bit per ReLU output, the winner of each max-pooling window, and the outputs of the layers the losses
/// read (for a `convB_N`, a copy of the convolution's output before its ReLU). The activation of the first layer is
/// never kept: the backward pass recomputes it from the image, as it does
/// the layers the losses read inside the striped blocks (see `init`).
///
/// One evaluation is `forward` (the losses see each requested layer as soon as it exists) followed by `backward` (the
/// losses add their gradient at each requested layer, deepest first). Not thread-safe: one evaluation at a time.
public final class VGG19 {
    /// The convolutions in network order: (name, inChannels, outChannels).
    public static let convolutionTable: [(name: String, inChannels: Int, outChannels: Int)] = [
        ("conv1_1", 3, 64), ("conv1_2", 64, 64),
        ("conv2_1", 64, 128), ("conv2_2", 128, 128),
        ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
        ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512),
        ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512), ("conv5_4", 512, 512),
    ]

    /// The network's steps in network order, named after their outputs: each `reluB_N` (convolution `convB_N` with its
    /// ReLU), and `poolB` after the last ReLU of block B. These name the entries of `layerTimes`.
    public static let layerNames: [String] = steps.map(\.name)

    /// The layers whose outputs the losses may read, in network order: each `convB_N` (the convolution's output with
    /// its bias, before the ReLU), `reluB_N` after it, and `poolB` after the last ReLU of block B.
    public static let requestableLayers: [String] = steps.indices.flatMap { index in
        if case .convolution(let k) = steps[index].kind { return [convolutionTable[k].name, steps[index].name] }
        return [steps[index].name]
    }

    /// The shape of a layer's output (one of `requestableLayers`) for an input image of height × width.
    public static func shape(of layer: String, height: Int, width: Int) -> (channels: Int, height: Int, width: Int) {
        let index = locate(layer).step
        return shapes(height: height, width: width, through: index)[index]
    }

    /// Multiply-adds of the forward pass from the image through `layer` (one of `requestableLayers`) at height × width.
    /// The backward pass to the image costs the same.
    public static func multiplyAdds(through layer: String, height: Int, width: Int) -> Int {
        let index = locate(layer).step
        var total = 0
        var (h, w) = (height, width)
        for step in steps[...index] {
            switch step.kind {
            case .convolution(let k):
                total += convolutionTable[k].inChannels * convolutionTable[k].outChannels * 9 * h * w
            case .pool:
                (h, w) = (h / 2, w / 2)
            }
        }
        return total
    }

    public let pooling: Pooling
    /// The convolutions in network order.
    private let convolutions: [Convolution]
    /// The buffer the convolutions that keep no transformed kernel make it in, each time they run; nil when all keep theirs.
    private let kernelSlot: TransformedKernelSlot?

    /// The default of `keptKernelBytes`: the kernels of blocks 1 to 3 (36 MiB), which run on large maps, so that their
    /// transforms would cost the most often; the 512-channel layers are transformed as they run.
    public static let defaultKeptKernelBytes = 36 << 20
    /// The most floats one convolution's im2col band may use.
    private let scratchLimit: Int
    /// The threads the network's own loops run on.
    public let threads: Int
    /// The image rows per stripe of the striped blocks, or nil when all run on whole maps (see `init`).
    public let stripeRows: Int?
    /// How many of the first blocks run in stripes when `stripeRows` is given.
    public let stripedBlocks: Int
    /// The buffers for the size and layers of the last evaluation.
    private var plan: Plan?
    /// Whether the buffers hold a forward pass that `backward` may use.
    private var forwardIsCurrent = false

    /// When set, each evaluation records the time of each step in `layerTimes` (for benchmarks).
    public var recordsLayerTimes = false
    /// The steps of the last evaluation with their times, in network order, when `recordsLayerTimes` is set.
    public private(set) var layerTimes: [LayerTime] = []

    /// Builds the network from the 16 convolution layers of `weights`.
    /// - Parameters:
    ///   - pooling: max pooling as published, or average pooling.
    ///   - scratchBytes: the bound on the im2col scratch of a convolution; any image size works within it.
    ///   - threads: the threads of the convolutions and the other loops (OpenBLAS runs single-threaded inside
    ///     each); the number of cores by default.
    ///   - stripeRows: when given (rounded up to a multiple of 2^stripedBlocks), the first `stripedBlocks` blocks run
    ///     in horizontal stripes of this many image rows, forward and backward, so that their maps (at 1024², 256 MiB
    ///     for one 64-channel map of block 1, 128 MiB for one of block 2) are never whole: each stripe runs through
    ///     the blocks on the rows it needs (a row more each side per 3x3 convolution still to come), and the backward
    ///     pass recomputes the activations the losses read there from the image, stripe by stripe. The losses must
    ///     accept those layers in stripes (see `FeatureMap.rows`). With fewer blocks reached by the forward pass, as
    ///     many as it reaches; not used when it stops within the first block or the image is no taller than a stripe.
    ///   - stripedBlocks: 1, 2 or 3; 2 by default. Each block more halves the largest buffers again and costs the
    ///     recomputation of its halo rows and of the layers the losses read in it.
    ///   - convolution: how the convolutions of many input channels are computed (`conv1_1` always uses im2col).
    ///   - keptKernelBytes: with Winograd, the transformed kernels (36 × in × out floats a layer, 197 MiB for all
    ///     through `conv5_1`) kept from one use to the next, smallest first, up to this many bytes. The layers left over
    ///     share one buffer, the size of the largest of them, and transform their kernel into it each time they run
    ///     (a few milliseconds a layer); `Int.max` keeps them all.
    /// - Throws: `NetworkError` when the weights are not VGG-19's convolutions in order.
    public init(weights: VGGWeights, pooling: Pooling = .max, scratchBytes: Int = 32 << 20, threads: Int? = nil,
                stripeRows: Int? = nil, convolution: ConvolutionAlgorithm = .winograd,
                keptKernelBytes: Int = VGG19.defaultKeptKernelBytes, stripedBlocks: Int = 2) throws {
        precondition((1 ... 3).contains(stripedBlocks), "stripedBlocks must be 1, 2 or 3")
        guard weights.layers.count == Self.convolutionTable.count else {
            throw NetworkError.layerCount(found: weights.layers.count)
        }
        for (index, (layer, row)) in zip(weights.layers, Self.convolutionTable).enumerated()
        where layer.name != row.name || layer.inChannels != row.inChannels || layer.outChannels != row.outChannels {
            throw NetworkError.layerMismatch(index: index,
                                             expected: "\(row.name) (\(row.inChannels) → \(row.outChannels) channels)",
                                             found: "\(layer.name) (\(layer.inChannels) → \(layer.outChannels) channels)")
        }
        self.pooling = pooling
        let threads = max(1, threads ?? coreCount)
        self.threads = threads
        let alignment = 1 << stripedBlocks
        self.stripeRows = stripeRows.map { max(alignment, ($0 + alignment - 1) / alignment * alignment) }
        self.stripedBlocks = stripedBlocks
        // The transformed kernels kept, smallest first within the budget; the others share the slot.
        let sizes = weights.layers.map {
            Convolution.usesWinograd(inChannels: $0.inChannels, algorithm: convolution)
                ? winogradPositions * $0.inChannels * $0.outChannels * MemoryLayout<Float>.stride : 0
        }
        var kept = Set<Int>(), budget = keptKernelBytes
        for k in sizes.indices.sorted(by: { sizes[$0] < sizes[$1] }) where sizes[k] > 0 && sizes[k] <= budget {
            kept.insert(k)
            budget -= sizes[k]
        }
        let shared = sizes.indices.filter { sizes[$0] > 0 && !kept.contains($0) }
        let slot = shared.isEmpty ? nil
            : TransformedKernelSlot(capacity: shared.map { sizes[$0] }.max()! / MemoryLayout<Float>.stride)
        kernelSlot = slot
        convolutions = weights.layers.enumerated().map { k, layer in
            Convolution(layer, threads: threads, algorithm: convolution, kernelSlot: kept.contains(k) ? nil : slot)
        }
        scratchLimit = max(1, scratchBytes / MemoryLayout<Float>.stride)
    }

    /// The bytes allocated for evaluations at the prepared size (activations, gradients, masks, pooling choices,
    /// scratch), not counting weights.
    public var allocatedBytes: Int { plan?.allocatedBytes ?? 0 }

    /// The part of `allocatedBytes` that holds stripes of the striped blocks.
    var stripeBufferBytes: Int {
        guard let front = plan?.front else { return 0 }
        return [front.a, front.b, front.c, front.gradientA, front.gradientB].reduce(0) { $0 + $1.allocatedBytes }
    }

    /// The bytes of weights the network made itself, beyond the weights it was given (which it shares, not copies):
    /// the Winograd-transformed kernels kept, made the first time each layer runs, and the buffer shared by the others
    /// (or with im2col, the rotated kernels for the backward pass, made the first time each layer is differentiated).
    public var kernelCopyBytes: Int {
        convolutions.reduce(0) { $0 + $1.allocatedBytes } + (kernelSlot?.allocatedBytes ?? 0)
    }

    /// How many times a convolution has transformed its kernel into the shared buffer (see `keptKernelBytes`).
    public var kernelTransforms: Int { kernelSlot?.fills ?? 0 }

    /// Allocates the buffers for evaluations at height × width whose losses read `layers`; does nothing when they
    /// are allocated already. `forward` calls it; call it first to allocate before work starts.
    public func prepare(height: Int, width: Int, layers: Set<String>) {
        precondition(height > 0 && width > 0, "empty image")
        precondition(!layers.isEmpty, "no layer requested")
        if let plan, plan.height == height, plan.width == width, plan.layers == layers { return }
        plan = nil
        forwardIsCurrent = false
        plan = Plan(height: height, width: width, layers: layers, pooling: pooling, convolutions: convolutions,
                    scratchLimit: scratchLimit, stripeRows: stripeRows, stripedBlocks: stripedBlocks)
    }

    /// Runs the network on `image` up to the deepest of `layers`, calling `observe` with each of `layers` as soon as it
    /// is computed. The map handed to `observe` is valid only during the call.
    /// - Parameters:
    ///   - image: (3, height, width), RGB, values 0…1
    ///   - layers: names from `requestableLayers`
    public func forward(image: UnsafeBufferPointer<Float>, height: Int, width: Int, layers: Set<String>,
                        observe: (FeatureMap) -> Void) {
        precondition(image.count == 3 * height * width, "image size does not match height × width")
        prepare(height: height, width: width, layers: layers)
        let plan = plan!
        caffeInput(fromRGB: image, into: plan.input)
        var current = plan.input
        layerTimes = []
        var firstStep = 0
        if let front = plan.front {
            current = forwardFront(plan, observe: observe)
            firstStep = front.geometry.end + 1
        }
        for index in firstStep ..< plan.deepest + 1 {
            var start = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
            let output = plan.stored[index] ?? (current === plan.ping ? plan.pong : plan.ping)
            switch Self.steps[index].kind {
            case .convolution(let k) where plan.requestedBeforeReLU[index]:
                // The convolution without its ReLU, shown to the losses and kept for the backward pass, then the ReLU.
                convolutions[k].forward(current, into: output, reluMask: nil, scratch: plan.scratch)
                let whole = RowSpan.whole(height: output.height, width: output.width)
                if let kept = plan.storedBeforeReLU[index] {
                    copyRows(of: output, span: whole, rows: 0 ..< output.height, into: kept)
                }
                let lossStart = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
                observe(FeatureMap(layer: Self.convolutionTable[k].name, height: output.height,
                                   rows: 0 ..< output.height, values: output))
                if recordsLayerTimes { start += DispatchTime.now().uptimeNanoseconds - lossStart }
                applyReLU(output, span: whole, rows: 0 ..< output.height, recordingMask: plan.masks[index]!, plan: plan)
            case .convolution(let k):
                convolutions[k].forward(current, into: output, reluMask: plan.masks[index], scratch: plan.scratch)
            case .pool:
                pooling.forward(current, into: output, choice: plan.choices[index], threads: threads)
            }
            if recordsLayerTimes {
                layerTimes.append(LayerTime(layer: Self.steps[index].name, forwardSeconds: seconds(since: start),
                                            backwardSeconds: 0))
            }
            if plan.requested[index] {
                observe(FeatureMap(layer: Self.steps[index].name, height: output.height, rows: 0 ..< output.height,
                                   values: output))
            }
            current = output
        }
        forwardIsCurrent = true
    }

    /// The gradient of the losses with respect to the image of the last `forward`. `addGradient(activation,
    /// gradient)` is called for each requested layer, deepest first, with the layer's output and the gradient of
    /// everything deeper with respect to it; it adds ∂loss/∂activation into `gradient` (same shape as
    /// `activation.values`). Both are valid only during the call.
    /// - Parameter imageGradient: (3, height, width), RGB; overwritten with ∂loss/∂image
    public func backward(into imageGradient: UnsafeMutableBufferPointer<Float>,
                         addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        precondition(forwardIsCurrent, "backward without a forward pass")
        let plan = plan!
        precondition(imageGradient.count == 3 * plan.height * plan.width, "gradient size does not match the image")
        forwardIsCurrent = false
        var gradient = plan.ping
        let top = plan.shapes[plan.deepest]
        gradient.reshape(channels: top.channels, height: top.height, width: top.width)
        gradient.zero()
        // Whether `gradient` has already been passed back through the ReLU that ends the current step.
        var throughReLU = false
        for index in stride(from: plan.deepest, through: 0, by: -1) {
            let other = gradient === plan.ping ? plan.pong : plan.ping
            var start = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
            if plan.requested[index] {
                let activation: Tensor
                if let stored = plan.stored[index] {
                    activation = stored
                } else {
                    // Only the first layer is not kept: recompute it from the image into the free buffer, with the
                    // forward pass's ReLU.
                    convolutions[0].forward(plan.input, into: other, reluMask: nil, rectify: true,
                                            scratch: plan.scratch)
                    activation = other
                }
                let lossStart = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
                addGradient(FeatureMap(layer: Self.steps[index].name, height: activation.height,
                                       rows: 0 ..< activation.height, values: activation), gradient)
                if recordsLayerTimes { start += DispatchTime.now().uptimeNanoseconds - lossStart }
            }
            if let front = plan.front, index == front.geometry.end {
                backwardFront(plan, gradient: gradient, into: imageGradient, addGradient: addGradient)
                return
            }
            // The ReLU before this step can take the gradient through its mask at once unless a loss adds to it first
            // (a loss at the convolution before it adds after the mask).
            let fuseReLU = index > 0 && !plan.requested[index - 1] && plan.masks[index - 1] != nil
            switch Self.steps[index].kind {
            case .convolution(let k):
                if !throughReLU, let mask = plan.masks[index] {
                    applyReLUMask(gradient, mask: mask, threads: threads)
                }
                if plan.requestedBeforeReLU[index] {
                    // The gradient has passed the ReLU: it is the gradient at the convolution's output, where convB_N's
                    // loss adds its own.
                    let activation: Tensor
                    if let kept = plan.storedBeforeReLU[index] {
                        activation = kept
                    } else {
                        precondition(index == 0, "convolution output not kept")
                        convolutions[0].forward(plan.input, into: other, reluMask: nil, scratch: plan.scratch)
                        activation = other
                    }
                    let lossStart = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
                    addGradient(FeatureMap(layer: Self.convolutionTable[k].name, height: activation.height,
                                           rows: 0 ..< activation.height, values: activation), gradient)
                    if recordsLayerTimes { start += DispatchTime.now().uptimeNanoseconds - lossStart }
                }
                convolutions[k].backwardInput(gradient, into: other, inputMask: fuseReLU ? plan.masks[index - 1] : nil,
                                              scratch: plan.scratch)
            case .pool:
                let input = plan.shapes[index - 1]
                pooling.backward(gradient, choice: plan.choices[index], height: input.height, width: input.width,
                                 into: other, reluMask: fuseReLU ? plan.masks[index - 1] : nil, threads: threads)
            }
            throughReLU = fuseReLU
            gradient = other
            if recordsLayerTimes && index < layerTimes.count { layerTimes[index].backwardSeconds = seconds(since: start) }
        }
        rgbGradient(fromCaffe: gradient, span: .whole(height: plan.height, width: plan.width), into: imageGradient)
    }

    // MARK: - The striped front

    /// The forward pass through the front in stripes of image rows: for each stripe, every step of the front on the rows
    /// the next needs (the stripe's rows at the step's resolution, widened by a row each side per convolution still to
    /// come), the requested layers handed to `observe` on the rows the stripe owns, and the front's last pooling written
    /// into its rows of the whole pooled map, which it returns.
    private func forwardFront(_ plan: Plan, observe: (FeatureMap) -> Void) -> Tensor {
        let front = plan.front!
        let end = front.geometry.end
        let last = plan.shapes[end]
        let pooled = plan.stored[end] ?? plan.ping
        pooled.reshape(channels: last.channels, height: last.height, width: last.width)
        var times = [Double](repeating: 0, count: end + 1)
        for stripe in 0 ..< front.geometry.count {
            let need = front.geometry.forwardRows(stripe: stripe)
            var input = plan.input, inputSpan = RowSpan.whole(height: plan.height, width: plan.width)
            for step in 0 ... end where !need[step].isEmpty {
                let start = DispatchTime.now().uptimeNanoseconds
                let output: Tensor, outputSpan: RowSpan
                if step == end {
                    (output, outputSpan) = (pooled, .whole(height: last.height, width: last.width))
                } else {
                    (output, outputSpan) = front.stripeBuffer(input === front.a ? front.b : front.a, rows: need[step],
                                                              shape: plan.shapes[step])
                }
                let owned = front.geometry.ownedRows(step: step, stripe: stripe)
                // Shows the losses the rows the stripe owns of the step's output as it is now, as `layer`.
                func show(_ layer: String) {
                    guard step < end && (!owned.isEmpty || (outputSpan.height == 0 && stripe == 0)) else { return }
                    var values = output
                    if owned != need[step] {
                        values = front.c
                        values.reshape(channels: output.channels, height: owned.count, width: outputSpan.width)
                        copyRows(of: output, span: outputSpan, rows: owned, into: values)
                    }
                    observe(FeatureMap(layer: layer, height: outputSpan.height, rows: owned, values: values))
                }
                if case .convolution(let k) = Self.steps[step].kind, plan.requestedBeforeReLU[step] {
                    // The convolution without its ReLU, shown to the losses, then the ReLU.
                    run(step, rows: need[step], input: input, inputSpan: inputSpan, into: output,
                        outputSpan: outputSpan, plan: plan, mode: .beforeReLU)
                    times[step] += seconds(since: start)
                    show(Self.convolutionTable[k].name)
                    let reluStart = DispatchTime.now().uptimeNanoseconds
                    applyReLU(output, span: outputSpan, rows: need[step], recordingMask: plan.masks[step]!, plan: plan)
                    times[step] += seconds(since: reluStart)
                } else {
                    run(step, rows: need[step], input: input, inputSpan: inputSpan, into: output,
                        outputSpan: outputSpan, plan: plan, mode: .record)
                    times[step] += seconds(since: start)
                }
                if plan.requested[step] { show(Self.steps[step].name) }
                (input, inputSpan) = (output, outputSpan)
            }
        }
        if recordsLayerTimes {
            layerTimes = (0 ... end).map {
                LayerTime(layer: Self.steps[$0].name, forwardSeconds: times[$0], backwardSeconds: 0)
            }
        }
        if plan.requested[end] {
            observe(FeatureMap(layer: Self.steps[end].name, height: pooled.height, rows: 0 ..< pooled.height,
                               values: pooled))
        }
        return pooled
    }

    /// How `run` treats a step's ReLU mask or pooling choices.
    private enum RunMode {
        /// The forward pass: the convolution's ReLU recording its mask, the pooling recording its choices.
        case record
        /// A recomputation, which leaves the forward pass's records alone: the ReLU as the mask it recorded says.
        case replay
        /// The convolution's output before its ReLU (`convB_N`), the mask left alone; a pooling as in `replay`.
        case beforeReLU
    }

    /// Step `step` forward on the rows `rows` of its output.
    private func run(_ step: Int, rows: Range<Int>, input: Tensor, inputSpan: RowSpan, into output: Tensor,
                     outputSpan: RowSpan, plan: Plan, mode: RunMode) {
        switch Self.steps[step].kind {
        case .convolution(let k):
            let mask = plan.masks[step]!
            convolutions[k].forward(rows: rows, input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                                    reluMask: mode == .record ? mask : nil, rectify: mode == .replay,
                                    scratch: plan.scratch)
        case .pool:
            pooling.forward(rows: rows, input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                            choice: mode == .record ? plan.choices[step] : nil, threads: threads)
        }
    }

    /// The ReLU of a convolution step applied apart from the convolution, to the rows `rows` of an output it made
    /// without a mask, recording the mask: the epilogue `forward` fuses, with a zero bias as the bias is in already.
    /// The values and mask are those of the fused pass, bit for bit.
    private func applyReLU(_ output: Tensor, span: RowSpan, rows: Range<Int>, recordingMask mask: ByteBuffer,
                           plan: Plan) {
        addBias(output.storage, span: span, bias: plan.zeroBias.storage, channels: output.channels, rows: rows,
                reluMask: mask.storage, threads: threads)
    }

    /// The backward pass through the front in stripes, from the gradient at the output of its last pooling (the whole
    /// map) to the image: for each stripe of image rows, each step backward from the last on the rows the one before
    /// needs (the stripe's rows, widened by a row each side per convolution already passed), with the losses of
    /// requested layers added on those rows after recomputing the layer there from the image.
    private func backwardFront(_ plan: Plan, gradient pooledGradient: Tensor,
                               into imageGradient: UnsafeMutableBufferPointer<Float>,
                               addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        let front = plan.front!
        let end = front.geometry.end
        var times = [Double](repeating: 0, count: end + 1)
        for stripe in 0 ..< front.geometry.count {
            // rows[step + 1]: the gradient rows at the output of `step`; rows[0] are the image's.
            let rows = front.geometry.backwardRows(stripe: stripe)
            var gradient = pooledGradient
            var gradientSpan = RowSpan.whole(height: pooledGradient.height, width: pooledGradient.width)
            for step in stride(from: end, through: 0, by: -1) {
                var start = DispatchTime.now().uptimeNanoseconds
                if step < end && plan.requested[step] {
                    let activation = recompute(step, rows: rows[step + 1], plan: plan)
                    let lossStart = DispatchTime.now().uptimeNanoseconds
                    addGradient(FeatureMap(layer: Self.steps[step].name, height: gradientSpan.height,
                                           rows: rows[step + 1], values: activation), gradient)
                    start += DispatchTime.now().uptimeNanoseconds - lossStart
                    if let mask = plan.masks[step] {
                        applyReLUMask(gradient.storage, span: gradientSpan, mask: mask.storage,
                                      channels: gradient.channels, rows: rows[step + 1], threads: threads)
                    }
                }
                if case .convolution(let k) = Self.steps[step].kind, plan.requestedBeforeReLU[step] {
                    // The gradient has passed the ReLU's mask (just above, or fused into the backward pass of the step
                    // after): convB_N's loss adds at the convolution's output.
                    let activation = recompute(step, rows: rows[step + 1], plan: plan, beforeReLU: true)
                    let lossStart = DispatchTime.now().uptimeNanoseconds
                    addGradient(FeatureMap(layer: Self.convolutionTable[k].name, height: gradientSpan.height,
                                           rows: rows[step + 1], values: activation), gradient)
                    start += DispatchTime.now().uptimeNanoseconds - lossStart
                }
                let inputShape = step == 0 ? (channels: 3, height: plan.height, width: plan.width)
                                           : plan.shapes[step - 1]
                let (output, outputSpan) = front.stripeBuffer(gradient === front.gradientA ? front.gradientB
                                                                                           : front.gradientA,
                                                              rows: rows[step], shape: inputShape)
                // The ReLU that made this step's input takes the gradient through its mask at once unless a loss adds
                // to it first.
                let inputMask = step > 0 && !plan.requested[step - 1] ? plan.masks[step - 1] : nil
                switch Self.steps[step].kind {
                case .convolution(let k):
                    convolutions[k].backwardInput(rows: rows[step], gradOutput: gradient, gradOutputSpan: gradientSpan,
                                                  into: output, gradInputSpan: outputSpan, inputMask: inputMask,
                                                  scratch: plan.scratch)
                case .pool:
                    pooling.backward(rows: rows[step], gradOutput: gradient, gradOutputSpan: gradientSpan,
                                     choice: plan.choices[step], into: output, gradInputSpan: outputSpan,
                                     reluMask: inputMask, threads: threads)
                }
                (gradient, gradientSpan) = (output, outputSpan)
                times[step] += seconds(since: start)
            }
            rgbGradient(fromCaffe: gradient, span: gradientSpan, into: imageGradient)
        }
        if recordsLayerTimes {
            for step in 0 ..< min(end + 1, layerTimes.count) { layerTimes[step].backwardSeconds = times[step] }
        }
    }

    /// The output of front step `target` on the rows `rows` (before its ReLU when `beforeReLU`), recomputed from the
    /// image through the steps before it on the rows each needs; it lands in one of the front's forward buffers, valid
    /// until the next recomputation.
    private func recompute(_ target: Int, rows: Range<Int>, plan: Plan, beforeReLU: Bool = false) -> Tensor {
        let front = plan.front!
        let need = front.geometry.recomputedRows(step: target, rows: rows)
        var input = plan.input, inputSpan = RowSpan.whole(height: plan.height, width: plan.width)
        for step in 0 ... target {
            let (output, outputSpan) = front.stripeBuffer(input === front.a ? front.b : front.a, rows: need[step],
                                                          shape: plan.shapes[step])
            if !need[step].isEmpty {
                run(step, rows: need[step], input: input, inputSpan: inputSpan, into: output, outputSpan: outputSpan,
                    plan: plan, mode: beforeReLU && step == target ? .beforeReLU : .replay)
            }
            (input, inputSpan) = (output, outputSpan)
        }
        return input
    }

    /// Copies of the outputs of `layers` for `image`, (3, height, width) RGB 0…1: style targets, tests, fixtures.
    public func activations(image: [Float], height: Int, width: Int, layers: Set<String>) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        image.withUnsafeBufferPointer { image in
            forward(image: image, height: height, width: width, layers: layers) { map in
                if map.rows == 0 ..< map.height {
                    result[map.layer] = Tensor(copying: map.values)
                    return
                }
                // A stripe: into its rows of the whole map.
                let whole = result[map.layer]
                    ?? Tensor(channels: map.channels, height: map.height, width: map.width)
                let n = map.rows.count * map.width
                for c in 0 ..< map.channels {
                    (whole.storage + (c * map.height + map.rows.lowerBound) * map.width)
                        .update(from: map.values.storage + c * n, count: n)
                }
                result[map.layer] = whole
            }
        }
        forwardIsCurrent = false
        return result
    }

    private func seconds(since start: UInt64) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    // MARK: - The layer sequence

    /// One step of the network: a convolution with its ReLU (named after the ReLU), or a pooling.
    fileprivate struct Step {
        enum Kind {
            case convolution(Int)
            case pool
        }

        let name: String
        let kind: Kind
    }

    /// The whole network as steps, derived from the table: a pooling ends each block.
    fileprivate static let steps: [Step] = {
        var steps: [Step] = []
        for (k, row) in convolutionTable.enumerated() {
            let block = row.name.dropFirst(4).prefix { $0 != "_" }
            steps.append(Step(name: "relu" + row.name.dropFirst(4), kind: .convolution(k)))
            let nextBlock = k + 1 < convolutionTable.count
                ? convolutionTable[k + 1].name.dropFirst(4).prefix { $0 != "_" } : ""
            if nextBlock != block {
                steps.append(Step(name: "pool" + block, kind: .pool))
            }
        }
        return steps
    }()

    /// The step that makes each of `requestableLayers`, and whether the layer is its convolution's output before the
    /// ReLU (`convB_N`) rather than the step's output.
    fileprivate static let locations: [String: (step: Int, beforeReLU: Bool)] = {
        var locations: [String: (step: Int, beforeReLU: Bool)] = [:]
        for (index, step) in steps.enumerated() {
            locations[step.name] = (index, false)
            if case .convolution(let k) = step.kind { locations[convolutionTable[k].name] = (index, true) }
        }
        return locations
    }()

    /// Where `layer` is made (see `locations`); a name not in `requestableLayers` is a programmer error.
    fileprivate static func locate(_ layer: String) -> (step: Int, beforeReLU: Bool) {
        guard let location = locations[layer] else { preconditionFailure("VGG-19 has no layer \(layer)") }
        return location
    }

    /// The output shape of each step up to `last` for an input of height × width.
    fileprivate static func shapes(height: Int, width: Int, through last: Int)
        -> [(channels: Int, height: Int, width: Int)] {
        var shapes: [(channels: Int, height: Int, width: Int)] = []
        var shape = (channels: 3, height: height, width: width)
        for step in steps[...last] {
            switch step.kind {
            case .convolution(let k):
                shape.channels = convolutionTable[k].outChannels
            case .pool:
                shape = (shape.channels, shape.height / 2, shape.width / 2)
            }
            shapes.append(shape)
        }
        return shapes
    }

    /// Every buffer of an evaluation at one size for one set of requested layers, allocated together.
    private final class Plan {
        let height: Int
        let width: Int
        let layers: Set<String>
        /// The index of the deepest requested step: where the forward pass stops.
        let deepest: Int
        /// Whether each step's output is read by a loss. (steps through deepest)
        let requested: [Bool]
        /// Whether a loss reads each convolution step's output before its ReLU (`convB_N`). (steps through deepest)
        let requestedBeforeReLU: [Bool]
        /// The output shape of each step. (steps through deepest)
        let shapes: [(channels: Int, height: Int, width: Int)]
        /// (3, height, width): the image as the network sees it (BGR, 0…255, minus the mean).
        let input: Tensor
        /// Two buffers as large as the largest output, taking turns as input and output of the steps, forward and
        /// backward: (channels, height, width) of whatever step uses them.
        let ping: Tensor
        let pong: Tensor
        /// The outputs of the requested layers kept for the backward pass: (channels, height, width) of the step; not
        /// the first layer's, nor those the striped front recomputes. (steps through deepest; nil where not kept)
        let stored: [Tensor?]
        /// The same for the requested convolution outputs before their ReLUs: (channels, height, width) of the step.
        /// (steps through deepest; nil where not kept)
        let storedBeforeReLU: [Tensor?]
        /// (the most output channels of a convolution, or none when no `convB_N` is requested): zeros, the bias of a
        /// ReLU applied apart from its convolution.
        let zeroBias: Tensor
        /// ReLU masks of the convolution steps: (channels, height, maskRowBytes(width)) bits. (steps through deepest)
        let masks: [ByteBuffer?]
        /// Winners of the max-pooling steps: (channels, height / 2, width / 2) bytes. (steps through deepest)
        let choices: [ByteBuffer?]
        /// (scratch floats): the im2col band of the convolution being run.
        let scratch: Tensor
        /// The striped front and its buffers, when the first blocks run in stripes.
        let front: Front?

        init(height: Int, width: Int, layers: Set<String>, pooling: Pooling, convolutions: [Convolution],
             scratchLimit: Int, stripeRows: Int?, stripedBlocks: Int) {
            self.height = height
            self.width = width
            self.layers = layers
            let locations = layers.map(VGG19.locate)
            let deepest = locations.map(\.step).max()!
            let requested = (0 ... deepest).map { index in locations.contains { $0 == (index, false) } }
            let requestedBeforeReLU = (0 ... deepest).map { index in locations.contains { $0 == (index, true) } }
            let shapes = VGG19.shapes(height: height, width: width, through: deepest)
            self.deepest = deepest
            self.requested = requested
            self.requestedBeforeReLU = requestedBeforeReLU
            self.shapes = shapes
            input = Tensor(channels: 3, height: height, width: width)
            // The front ends at the last pooling of the first `stripedBlocks` blocks that the forward pass reaches.
            let pools = VGG19.steps.indices.filter { if case .pool = VGG19.steps[$0].kind { true } else { false } }
            let front: Front?
            if let stripeRows, height > stripeRows,
               let end = pools.prefix(stripedBlocks).last(where: { $0 <= deepest }) {
                let read = zip(requested, requestedBeforeReLU).map { $0 || $1 }
                front = Front(FrontGeometry(end: end, stripeRows: stripeRows, height: height, shapes: shapes,
                                            requested: read), shapes: shapes, width: width)
            } else {
                front = nil
            }
            self.front = front
            // The whole maps that pass through ping and pong: all of them, or those from the front's end on.
            let wholeMaps = front.map { shapes[$0.geometry.end...] } ?? shapes[...]
            let largest = wholeMaps.map { $0.channels * $0.height * $0.width }.max()!
            ping = Tensor(channels: 0, height: 0, width: 0, capacity: largest)
            pong = Tensor(channels: 0, height: 0, width: 0, capacity: largest)
            var stored: [Tensor?] = []
            var storedBeforeReLU: [Tensor?] = []
            var masks: [ByteBuffer?] = []
            var choices: [ByteBuffer?] = []
            var scratchCount = 0
            for (index, shape) in shapes.enumerated() {
                // The front's layers but its last are recomputed in stripes, never kept whole.
                let recomputed = front.map { index < $0.geometry.end } ?? false
                stored.append(index > 0 && requested[index] && !recomputed
                    ? Tensor(channels: shape.channels, height: shape.height, width: shape.width) : nil)
                storedBeforeReLU.append(index > 0 && requestedBeforeReLU[index] && !recomputed
                    ? Tensor(channels: shape.channels, height: shape.height, width: shape.width) : nil)
                switch VGG19.steps[index].kind {
                case .convolution(let k):
                    masks.append(ByteBuffer(capacity: shape.channels * shape.height * maskRowBytes(width: shape.width)))
                    choices.append(nil)
                    scratchCount = max(scratchCount, convolutions[k].scratchCount(height: shape.height,
                                                                                  width: shape.width,
                                                                                  limit: scratchLimit))
                case .pool:
                    masks.append(nil)
                    choices.append(pooling == .max ? ByteBuffer(capacity: shape.channels * shape.height * shape.width)
                                                   : nil)
                }
            }
            self.stored = stored
            self.storedBeforeReLU = storedBeforeReLU
            let applyReLUApart = requestedBeforeReLU.contains(true)
            zeroBias = Tensor(channels: 1, height: 1,
                              width: applyReLUApart ? VGG19.convolutionTable.map(\.outChannels).max()! : 0)
            self.masks = masks
            self.choices = choices
            scratch = Tensor(channels: 1, height: 1, width: scratchCount)
        }

        var allocatedBytes: Int {
            let tensors = [input, ping, pong, scratch, zeroBias] + (stored + storedBeforeReLU).compactMap { $0 }
                + (front.map { [$0.a, $0.b, $0.c, $0.gradientA, $0.gradientB] } ?? [])
            return tensors.reduce(0) { $0 + $1.allocatedBytes }
                + (masks + choices).reduce(0) { $0 + ($1?.capacity ?? 0) }
        }
    }
}

/// Where the stripes of the striped front fall, step by step: the front is the steps 0 … `end` (a pooling), run for one
/// stripe of image rows at a time. A stripe owns its rows of the image and the rows under them at each resolution (the
/// last stripe everything to the bottom of each map); each step computes the rows it owns and the rows the steps after
/// it need around them.
private struct FrontGeometry {
    /// The front's last step, a pooling.
    let end: Int
    /// Image rows per stripe, a multiple of 2^(poolings in the front) so that stripes fall on pooling windows.
    let stripeRows: Int
    /// The number of stripes.
    let count: Int
    /// The image's height.
    let height: Int
    /// The output height of each step, and the number of poolings through it. (0 … end)
    let heights: [Int]
    let levels: [Int]
    let requested: [Bool]
    /// Whether each step is a convolution (else a pooling). (0 … end)
    let isConvolution: [Bool]

    init(end: Int, stripeRows: Int, height: Int, shapes: [(channels: Int, height: Int, width: Int)], requested: [Bool]) {
        self.end = end
        isConvolution = (0 ... end).map { if case .convolution = VGG19.steps[$0].kind { return true } else { return false } }
        var level = 0
        levels = isConvolution.map { convolution in
            if !convolution { level += 1 }
            return level
        }
        let alignment = 1 << level
        self.stripeRows = (stripeRows + alignment - 1) / alignment * alignment
        self.height = height
        count = (height + self.stripeRows - 1) / self.stripeRows
        heights = shapes[...end].map(\.height)
        self.requested = Array(requested[...end])
    }

    /// The rows of step `step`'s output that stripe `stripe` owns (step −1: the image's).
    func ownedRows(step: Int, stripe: Int) -> Range<Int> {
        let (level, mapHeight) = step < 0 ? (0, height) : (levels[step], heights[step])
        let lower = min(mapHeight, (stripe * stripeRows) >> level)
        let upper = stripe == count - 1 ? mapHeight : min(mapHeight, ((stripe + 1) * stripeRows) >> level)
        return lower ..< upper
    }

    /// The rows of the input map of `step` (the output of step − 1, or the image) that its forward pass reads to
    /// compute the output rows `rows`.
    func inputRows(step: Int, for rows: Range<Int>) -> Range<Int> {
        guard !rows.isEmpty else { return 0 ..< 0 }
        let inputHeight = step == 0 ? height : heights[step - 1]
        return isConvolution[step] ? max(0, rows.lowerBound - 1) ..< min(inputHeight, rows.upperBound + 1)
                                   : 2 * rows.lowerBound ..< 2 * rows.upperBound
    }

    /// The rows of the gradient at `step`'s output that its backward pass reads to compute the input gradient on
    /// `rows`.
    func gradientRows(step: Int, for rows: Range<Int>) -> Range<Int> {
        guard !rows.isEmpty else { return 0 ..< 0 }
        let h = heights[step]
        if isConvolution[step] { return max(0, rows.lowerBound - 1) ..< min(h, rows.upperBound + 1) }
        let upper = min(h, (rows.upperBound + 1) / 2)
        return min(upper, rows.lowerBound / 2) ..< upper
    }

    /// The output rows each step computes in the forward pass of stripe `stripe`. (0 … end)
    func forwardRows(stripe: Int) -> [Range<Int>] {
        var rows = [Range<Int>](repeating: 0 ..< 0, count: end + 1)
        rows[end] = ownedRows(step: end, stripe: stripe)
        for step in stride(from: end - 1, through: 0, by: -1) {
            rows[step] = inputRows(step: step + 1, for: rows[step + 1])
            if requested[step] { rows[step] = hull(rows[step], ownedRows(step: step, stripe: stripe)) }
        }
        return rows
    }

    /// The gradient rows of the backward pass of stripe `stripe`: [0] the image's (the stripe's own), [step + 1] those
    /// at the output of `step`. (0 … end + 1)
    func backwardRows(stripe: Int) -> [Range<Int>] {
        var rows = [ownedRows(step: -1, stripe: stripe)]
        for step in 0 ..< end { rows.append(gradientRows(step: step, for: rows[step])) }
        rows.append(0 ..< heights[end])
        return rows
    }

    /// The output rows each step computes to recompute step `target` on `rows`. (0 … target)
    func recomputedRows(step target: Int, rows: Range<Int>) -> [Range<Int>] {
        var need = [Range<Int>](repeating: 0 ..< 0, count: target + 1)
        need[target] = rows
        for step in stride(from: target - 1, through: 0, by: -1) { need[step] = inputRows(step: step + 1, for: need[step + 1]) }
        return need
    }

    private func hull(_ a: Range<Int>, _ b: Range<Int>) -> Range<Int> {
        if a.isEmpty { return b }
        if b.isEmpty { return a }
        return min(a.lowerBound, b.lowerBound) ..< max(a.upperBound, b.upperBound)
    }
}

/// The striped front's geometry and buffers, sized for the largest stripe of any step.
private final class Front {
    let geometry: FrontGeometry
    /// Two buffers taking turns as input and output of the front's steps, forward and when recomputing a layer for
    /// the backward pass: (channels, rows, width) of the step and the rows it computes.
    let a: Tensor
    let b: Tensor
    /// (channels, rows, width): the rows a stripe owns of a requested layer, when the stripe computed more.
    let c: Tensor
    /// Two buffers taking turns for the gradient stripes of the backward pass: (channels, rows, width) of the map and
    /// the rows the gradient is computed on.
    let gradientA: Tensor
    let gradientB: Tensor

    init(_ geometry: FrontGeometry, shapes: [(channels: Int, height: Int, width: Int)], width: Int) {
        self.geometry = geometry
        var forward = 0, owned = 0, gradient = 0
        func floats(_ step: Int, _ rows: Range<Int>) -> Int {
            step < 0 ? 3 * rows.count * width : shapes[step].channels * rows.count * shapes[step].width
        }
        for stripe in 0 ..< geometry.count {
            let need = geometry.forwardRows(stripe: stripe)
            let back = geometry.backwardRows(stripe: stripe)
            for step in 0 ..< geometry.end {
                forward = max(forward, floats(step, need[step]))
                gradient = max(gradient, floats(step - 1, back[step]))
                guard geometry.requested[step] else { continue }
                owned = max(owned, floats(step, geometry.ownedRows(step: step, stripe: stripe)))
                for (s, rows) in geometry.recomputedRows(step: step, rows: back[step + 1]).enumerated() {
                    forward = max(forward, floats(s, rows))
                }
            }
            gradient = max(gradient, floats(geometry.end - 1, back[geometry.end]))
        }
        a = Tensor(channels: 0, height: 0, width: 0, capacity: forward)
        b = Tensor(channels: 0, height: 0, width: 0, capacity: forward)
        c = Tensor(channels: 0, height: 0, width: 0, capacity: owned)
        gradientA = Tensor(channels: 0, height: 0, width: 0, capacity: gradient)
        gradientB = Tensor(channels: 0, height: 0, width: 0, capacity: gradient)
    }

    /// `buffer` shaped for the rows `rows` of a map of `shape`, with the span that says so.
    func stripeBuffer(_ buffer: Tensor, rows: Range<Int>, shape: (channels: Int, height: Int, width: Int))
        -> (Tensor, RowSpan) {
        buffer.reshape(channels: shape.channels, height: rows.count, width: shape.width)
        return (buffer, RowSpan(first: rows.lowerBound, rows: rows.count, height: shape.height, width: shape.width))
    }
}

extension VGG19 {
    /// `forward` on an image held in an array.
    public func forward(image: [Float], height: Int, width: Int, layers: Set<String>, observe: (FeatureMap) -> Void) {
        image.withUnsafeBufferPointer { forward(image: $0, height: height, width: width, layers: layers, observe: observe) }
    }

    /// `backward` into an array, which must hold 3 × height × width values.
    public func backward(into imageGradient: inout [Float], addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        imageGradient.withUnsafeMutableBufferPointer { backward(into: $0, addGradient: addGradient) }
    }
}

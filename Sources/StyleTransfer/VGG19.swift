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
    /// The layer's name, `relu1_1` … `relu5_4` or `pool1` … `pool5`.
    public let layer: String
    /// The height of the layer's whole map.
    public let height: Int
    /// The rows of the whole map that `values` holds: all of them (`0 ..< height`), unless the network runs its first
    /// block in horizontal stripes (`VGG19.stripeRows`). Then `relu1_1` arrives in stripes: in the forward pass,
    /// consecutive stripes that cover the map once; in the backward pass, stripes that overlap their neighbours by a
    /// row or two, so the gradient a loss adds must depend only on the activation rows it is given.
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
/// read. The activation of the first layer is never kept: the backward pass recomputes it from the image.
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

    /// The layers whose outputs the losses may read, in network order: each `reluB_N` after `convB_N`, and `poolB`
    /// after the last ReLU of block B.
    public static let layerNames: [String] = steps.map(\.name)

    /// The shape of a layer's output for an input image of height × width.
    public static func shape(of layer: String, height: Int, width: Int) -> (channels: Int, height: Int, width: Int) {
        guard let index = steps.firstIndex(where: { $0.name == layer }) else {
            preconditionFailure("VGG-19 has no layer \(layer)")
        }
        return shapes(height: height, width: width, through: index)[index]
    }

    /// Multiply-adds of the forward pass from the image through `layer` at height × width. The backward pass to the
    /// image costs the same.
    public static func multiplyAdds(through layer: String, height: Int, width: Int) -> Int {
        guard let index = steps.firstIndex(where: { $0.name == layer }) else {
            preconditionFailure("VGG-19 has no layer \(layer)")
        }
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
    /// The rows per stripe of the first block, or nil when it runs on whole maps (see `init`).
    public let stripeRows: Int?
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
    ///   - stripeRows: when given (rounded up to even), the first block (`conv1_1`, `conv1_2`, `pool1`) runs in
    ///     horizontal stripes of this many rows, forward and backward, so that its two full-resolution 64-channel maps
    ///     are never whole: the largest buffers become those of block 2, half the size. The losses must then accept
    ///     `relu1_1` in stripes (see `FeatureMap.rows`). Not used when a loss reads `relu1_2`, or the forward pass
    ///     stops within the first block, or the image is no taller than a stripe.
    ///   - convolution: how the convolutions of many input channels are computed (`conv1_1` always uses im2col).
    ///   - keptKernelBytes: with Winograd, the transformed kernels (36 × in × out floats a layer, 197 MiB for all
    ///     through `conv5_1`) kept from one use to the next, smallest first, up to this many bytes. The layers left over
    ///     share one buffer, the size of the largest of them, and transform their kernel into it each time they run
    ///     (a few milliseconds a layer); `Int.max` keeps them all.
    /// - Throws: `NetworkError` when the weights are not VGG-19's convolutions in order.
    public init(weights: VGGWeights, pooling: Pooling = .max, scratchBytes: Int = 32 << 20, threads: Int? = nil,
                stripeRows: Int? = nil, convolution: ConvolutionAlgorithm = .winograd,
                keptKernelBytes: Int = VGG19.defaultKeptKernelBytes) throws {
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
        self.stripeRows = stripeRows.map { max(2, ($0 + 1) / 2 * 2) }
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
                    scratchLimit: scratchLimit, stripeRows: stripeRows)
    }

    /// Runs the network on `image` up to the deepest of `layers`, calling `observe` with each of `layers` as soon as it
    /// is computed. The map handed to `observe` is valid only during the call.
    /// - Parameters:
    ///   - image: (3, height, width), RGB, values 0…1
    ///   - layers: names from `layerNames`
    public func forward(image: UnsafeBufferPointer<Float>, height: Int, width: Int, layers: Set<String>,
                        observe: (FeatureMap) -> Void) {
        precondition(image.count == 3 * height * width, "image size does not match height × width")
        prepare(height: height, width: width, layers: layers)
        let plan = plan!
        caffeInput(fromRGB: image, into: plan.input)
        var current = plan.input
        layerTimes = []
        var firstStep = 0
        if plan.stripes != nil {
            current = forwardFirstBlockInStripes(plan, observe: observe)
            firstStep = Self.firstBlockSteps
        }
        for index in firstStep ..< plan.deepest + 1 {
            let start = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
            let output = plan.stored[index] ?? (current === plan.ping ? plan.pong : plan.ping)
            switch Self.steps[index].kind {
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
                    // Only the first layer is not kept: recompute it from the image into the free buffer.
                    convolutions[0].forward(plan.input, into: other, reluMask: nil, scratch: plan.scratch)
                    activation = other
                }
                let lossStart = recordsLayerTimes ? DispatchTime.now().uptimeNanoseconds : 0
                addGradient(FeatureMap(layer: Self.steps[index].name, height: activation.height,
                                       rows: 0 ..< activation.height, values: activation), gradient)
                if recordsLayerTimes { start += DispatchTime.now().uptimeNanoseconds - lossStart }
            }
            if plan.stripes != nil && index == Self.firstBlockSteps - 1 {
                backwardFirstBlockInStripes(plan, gradient: gradient, into: imageGradient, addGradient: addGradient)
                return
            }
            // The ReLU before this step can take the gradient through its mask at once unless a loss adds to it first.
            let fuseReLU = index > 0 && !plan.requested[index - 1] && plan.masks[index - 1] != nil
            switch Self.steps[index].kind {
            case .convolution(let k):
                if !throughReLU, let mask = plan.masks[index] {
                    applyReLUMask(gradient, mask: mask, threads: threads)
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

    /// The steps of the first block: conv1_1, conv1_2, pool1.
    private static let firstBlockSteps = 3

    /// The forward pass through the first block in stripes: conv1_1 on the stripe's rows and one more each side,
    /// conv1_2 on the stripe's rows, pool1 into its rows of the whole pooled map, which it returns.
    private func forwardFirstBlockInStripes(_ plan: Plan, observe: (FeatureMap) -> Void) -> Tensor {
        let (height, width) = (plan.height, plan.width)
        let stripes = plan.stripes!
        let whole = RowSpan.whole(height: height, width: width)
        let pooled = plan.stored[2] ?? plan.ping
        pooled.reshape(channels: 64, height: height / 2, width: width / 2)
        var times = [Double](repeating: 0, count: Self.firstBlockSteps)
        for first in stride(from: 0, to: height, by: stripes.rows) {
            let rows = first ..< min(height, first + stripes.rows)
            let halo = max(0, first - 1) ..< min(height, rows.upperBound + 1)
            let haloSpan = RowSpan(first: halo.lowerBound, rows: halo.count, height: height, width: width)
            let rowSpan = RowSpan(first: first, rows: rows.count, height: height, width: width)
            var start = DispatchTime.now().uptimeNanoseconds
            let relu1 = stripes.a
            relu1.reshape(channels: 64, height: halo.count, width: width)
            convolutions[0].forward(rows: halo, input: plan.input, inputSpan: whole, into: relu1, outputSpan: haloSpan,
                                    reluMask: plan.masks[0], scratch: plan.scratch)
            times[0] += seconds(since: start)
            if plan.requested[0] {
                stripes.c.reshape(channels: 64, height: rows.count, width: width)
                copyRows(of: relu1, span: haloSpan, rows: rows, into: stripes.c)
                observe(FeatureMap(layer: Self.steps[0].name, height: height, rows: rows, values: stripes.c))
            }
            start = DispatchTime.now().uptimeNanoseconds
            let relu2 = stripes.b
            relu2.reshape(channels: 64, height: rows.count, width: width)
            convolutions[1].forward(rows: rows, input: relu1, inputSpan: haloSpan, into: relu2, outputSpan: rowSpan,
                                    reluMask: plan.masks[1], scratch: plan.scratch)
            times[1] += seconds(since: start)
            start = DispatchTime.now().uptimeNanoseconds
            pooling.forward(rows: first / 2 ..< min(height / 2, rows.upperBound / 2), input: relu2, inputSpan: rowSpan,
                            into: pooled, outputSpan: .whole(height: height / 2, width: width / 2),
                            choice: plan.choices[2], threads: threads)
            times[2] += seconds(since: start)
        }
        if recordsLayerTimes {
            layerTimes = (0 ..< Self.firstBlockSteps).map {
                LayerTime(layer: Self.steps[$0].name, forwardSeconds: times[$0], backwardSeconds: 0)
            }
        }
        if plan.requested[2] {
            observe(FeatureMap(layer: Self.steps[2].name, height: pooled.height, rows: 0 ..< pooled.height,
                               values: pooled))
        }
        return pooled
    }

    /// The backward pass through the first block in stripes, from the gradient at pool1's output to the image: for
    /// each stripe of image rows, pool1 backward on the stripe and two rows each side, conv1_2 backward on the stripe
    /// and one row each side (recomputing relu1_1 there when a loss reads it), conv1_1 backward on the stripe.
    private func backwardFirstBlockInStripes(_ plan: Plan, gradient pooledGradient: Tensor,
                                             into imageGradient: UnsafeMutableBufferPointer<Float>,
                                             addGradient: (_ activation: FeatureMap, _ gradient: Tensor) -> Void) {
        let (height, width) = (plan.height, plan.width)
        let stripes = plan.stripes!
        let whole = RowSpan.whole(height: height, width: width)
        var times = [Double](repeating: 0, count: Self.firstBlockSteps)
        for first in stride(from: 0, to: height, by: stripes.rows) {
            let rows = first ..< min(height, first + stripes.rows)
            let rows1 = max(0, first - 1) ..< min(height, rows.upperBound + 1)
            let rows2 = max(0, first - 2) ..< min(height, rows.upperBound + 2)
            let span1 = RowSpan(first: rows1.lowerBound, rows: rows1.count, height: height, width: width)
            let span2 = RowSpan(first: rows2.lowerBound, rows: rows2.count, height: height, width: width)
            let rowSpan = RowSpan(first: first, rows: rows.count, height: height, width: width)
            var start = DispatchTime.now().uptimeNanoseconds
            let gradient2 = stripes.a
            gradient2.reshape(channels: 64, height: rows2.count, width: width)
            pooling.backward(rows: rows2, gradOutput: pooledGradient, choice: plan.choices[2], into: gradient2,
                             gradInputSpan: span2, reluMask: plan.masks[1], threads: threads)
            times[2] += seconds(since: start)
            start = DispatchTime.now().uptimeNanoseconds
            let gradient1 = stripes.b
            gradient1.reshape(channels: 64, height: rows1.count, width: width)
            convolutions[1].backwardInput(rows: rows1, gradOutput: gradient2, gradOutputSpan: span2, into: gradient1,
                                          gradInputSpan: span1, inputMask: plan.requested[0] ? nil : plan.masks[0],
                                          scratch: plan.scratch)
            times[1] += seconds(since: start)
            start = DispatchTime.now().uptimeNanoseconds
            if plan.requested[0] {
                let relu1 = stripes.c
                relu1.reshape(channels: 64, height: rows1.count, width: width)
                convolutions[0].forward(rows: rows1, input: plan.input, inputSpan: whole, into: relu1, outputSpan: span1,
                                        reluMask: nil, scratch: plan.scratch)
                let lossStart = DispatchTime.now().uptimeNanoseconds
                addGradient(FeatureMap(layer: Self.steps[0].name, height: height, rows: rows1, values: relu1), gradient1)
                start += DispatchTime.now().uptimeNanoseconds - lossStart
                applyReLUMask(gradient1.storage, span: span1, mask: plan.masks[0]!.storage, channels: 64, rows: rows1,
                              threads: threads)
            }
            let imageRows = stripes.a
            imageRows.reshape(channels: 3, height: rows.count, width: width)
            convolutions[0].backwardInput(rows: rows, gradOutput: gradient1, gradOutputSpan: span1, into: imageRows,
                                          gradInputSpan: rowSpan, inputMask: nil, scratch: plan.scratch)
            rgbGradient(fromCaffe: imageRows, span: rowSpan, into: imageGradient)
            times[0] += seconds(since: start)
        }
        if recordsLayerTimes {
            for step in 0 ..< min(Self.firstBlockSteps, layerTimes.count) { layerTimes[step].backwardSeconds = times[step] }
        }
    }

    /// Copies of the outputs of `layers` for `image`, (3, height, width) RGB 0…1: style targets, tests, fixtures.
    public func activations(image: [Float], height: Int, width: Int, layers: Set<String>) -> [String: Tensor] {
        var result: [String: Tensor] = [:]
        image.withUnsafeBufferPointer { image in
            forward(image: image, height: height, width: width, layers: layers) { map in
                result[map.layer] = Tensor(copying: map.values)
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
        /// The output shape of each step. (steps through deepest)
        let shapes: [(channels: Int, height: Int, width: Int)]
        /// (3, height, width): the image as the network sees it (BGR, 0…255, minus the mean).
        let input: Tensor
        /// Two buffers as large as the largest output, taking turns as input and output of the steps, forward and
        /// backward: (channels, height, width) of whatever step uses them.
        let ping: Tensor
        let pong: Tensor
        /// The outputs of the requested layers but the first, kept for the backward pass: (channels, height, width)
        /// of the step. (steps through deepest; nil where not kept)
        let stored: [Tensor?]
        /// ReLU masks of the convolution steps: (channels, height, maskRowBytes(width)) bits. (steps through deepest)
        let masks: [ByteBuffer?]
        /// Winners of the max-pooling steps: (channels, height / 2, width / 2) bytes. (steps through deepest)
        let choices: [ByteBuffer?]
        /// (scratch floats): the im2col band of the convolution being run.
        let scratch: Tensor
        /// The buffers of the first block's stripes, when it runs in stripes: (64, rows + 4, width) for `a`,
        /// (64, rows + 2, width) for `b` and `c`, each holding whichever stripe of a map is being worked on.
        let stripes: (rows: Int, a: Tensor, b: Tensor, c: Tensor)?

        init(height: Int, width: Int, layers: Set<String>, pooling: Pooling, convolutions: [Convolution],
             scratchLimit: Int, stripeRows: Int?) {
            self.height = height
            self.width = width
            self.layers = layers
            let indices = layers.map { layer in
                guard let index = VGG19.steps.firstIndex(where: { $0.name == layer }) else {
                    preconditionFailure("VGG-19 has no layer \(layer)")
                }
                return index
            }
            deepest = indices.max()!
            requested = (0 ... deepest).map { indices.contains($0) }
            shapes = VGG19.shapes(height: height, width: width, through: deepest)
            input = Tensor(channels: 3, height: height, width: width)
            let firstBlock = VGG19.firstBlockSteps
            if let stripeRows, deepest >= firstBlock - 1, !requested[1], height > stripeRows {
                stripes = (stripeRows, Tensor(channels: 0, height: 0, width: 0, capacity: 64 * (stripeRows + 4) * width),
                           Tensor(channels: 0, height: 0, width: 0, capacity: 64 * (stripeRows + 2) * width),
                           Tensor(channels: 0, height: 0, width: 0, capacity: 64 * (stripeRows + 2) * width))
            } else {
                stripes = nil
            }
            // The whole maps that pass through ping and pong: all of them, or those after the first block.
            let wholeMaps = stripes == nil ? shapes[...] : shapes[(firstBlock - 1)...]
            let largest = wholeMaps.map { $0.channels * $0.height * $0.width }.max()!
            ping = Tensor(channels: 0, height: 0, width: 0, capacity: largest)
            pong = Tensor(channels: 0, height: 0, width: 0, capacity: largest)
            var stored: [Tensor?] = []
            var masks: [ByteBuffer?] = []
            var choices: [ByteBuffer?] = []
            var scratchCount = 0
            for (index, shape) in shapes.enumerated() {
                stored.append(index > 0 && requested[index]
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
            self.masks = masks
            self.choices = choices
            scratch = Tensor(channels: 1, height: 1, width: scratchCount)
        }

        var allocatedBytes: Int {
            let tensors = [input, ping, pong, scratch] + stored.compactMap { $0 }
                + (stripes.map { [$0.a, $0.b, $0.c] } ?? [])
            return tensors.reduce(0) { $0 + $1.allocatedBytes }
                + (masks + choices).reduce(0) { $0 + ($1?.capacity ?? 0) }
        }
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

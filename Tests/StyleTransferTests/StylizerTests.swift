import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The driver's style targets: Gram matrices of the style image's features at each style layer, the same
/// whether the network hands the early layers over in stripes (as the driver's network does) or whole.
final class StylizerTests: XCTestCase {
    func testStyleTargetsSumAllStripes() throws {
        let weights = try projectWeights()
        let (width, height) = (40, 96)
        var random = TestRandom(state: 11)
        // Texture only in the top rows: a target made from one stripe would miss it.
        let pixels = (0 ..< 3 * width * height).map { i in (i % (width * height)) / width < 30 ? random.unit() : 0.5 }
        let style = RGBImage(width: width, height: height, pixels: pixels)
        var options = Options()
        options.styleLayers = ["relu1_1", "relu2_1", "relu3_1"].map { Options.WeightedLayer($0) }
        // A budget that only stripes of a few rows fit.
        options.memory = 3 << 20
        // The single-precision products of the network it is compared with (bf16 would round them apart).
        options.precision = .single
        let stylizer = try Stylizer(weights: weights, options: options, styles: [style])
        let targets = try stylizer.styleTargets(for: .init(width: width, height: height), content: nil)

        let whole = try VGG19(weights: weights, stripeRows: nil)
        let maps = whole.activations(image: pixels, height: height, width: width, layers: ["relu1_1", "relu2_1", "relu3_1"])
        for (index, layer) in ["relu1_1", "relu2_1", "relu3_1"].enumerated() {
            let map = try XCTUnwrap(maps[layer])
            let expected = map.values.withUnsafeBufferPointer {
                gramMatrix($0, channels: map.channels, pixels: map.height * map.width)
            }
            XCTAssertEqual(targets[index].gram.count, expected.count, layer)
            let scale = expected.map { abs($0) }.max()!
            for (actual, wanted) in zip(targets[index].gram, expected) {
                XCTAssertEqual(actual, wanted, accuracy: scale * 1e-4, layer)
            }
        }
    }
}

/// The scale a benchmark times is the one `stylize` runs: the same loss where it starts, and the same image after one
/// step of the same optimizer.
final class StylizerScaleTests: XCTestCase {
    func testScaleIsWhatStylizeRuns() throws {
        var random = TestRandom(state: 12)
        let style = RGBImage(width: 40, height: 30, pixels: (0 ..< 3 * 40 * 30).map { _ in random.unit() })
        let content = RGBImage(width: 48, height: 36, pixels: (0 ..< 3 * 48 * 36).map { _ in random.unit() })
        var options = Options()
        options.size = nil
        options.scales = 1
        options.iterations = 1
        options.memory = 1 << 30
        var reported: [LossTerms] = []
        let result = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
            .stylize(content, observeStart: true) { reported.append($0.losses) }
        let scale = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
            .scale(of: content, at: Stylizer.Size(width: 48, height: 36))
        XCTAssertEqual(scale.image, content.pixels)
        var image = scale.image
        var gradient = [Float](repeating: 0, count: image.count)
        let start = try image.withUnsafeBufferPointer { image in
            try gradient.withUnsafeMutableBufferPointer { try scale.objective(image, $0) }
        }
        XCTAssertEqual(start, reported.first?.total)
        _ = try image.withUnsafeMutableBufferPointer { try scale.optimizer.step($0, objective: scale.objective) }
        XCTAssertEqual(image.map { min(max($0, 0), 1) }, result.pixels)
    }
}

/// What `-memory` counts beside a scale's own buffers.
final class MemoryAccountingTests: XCTestCase {
    /// A 40×30 style image of uniform random values from `TestRandom(state:)`.
    static func randomStyle(state: UInt64) -> RGBImage {
        var random = TestRandom(state: state)
        return RGBImage(width: 40, height: 30, pixels: (0 ..< 3 * 40 * 30).map { _ in random.unit() })
    }

    /// The resident bytes are the weights, the kernels the network makes from them (as many as it makes once every
    /// layer has run forward and backward), the style images and the process; a scale below the content's own size
    /// counts the content as given too, and every plan fills `-memory` less the resident bytes.
    func testPlansCountTheWeightsKernelsStylesAndTheContentAsGiven() throws {
        var random = TestRandom(state: 5)
        let style = RGBImage(width: 40, height: 30, pixels: (0 ..< 3 * 40 * 30).map { _ in random.unit() })
        var options = Options()
        options.memory = 1 << 30
        let stylizer = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
        let network = stylizer.network
        XCTAssertEqual(stylizer.residentBytes, randomVGGWeights.bytes + network.kernelCopyCapacity + 3 * 40 * 30 * 4
                       + Stylizer.processBytes)
        // 48 pixels a side: block 4's maps, 6 a side, are as wide as an F(6×6) tile, so they run Winograd's algorithm
        // (and fill the shared kernel buffer) with either tile.
        let image = (0 ..< 3 * 48 * 48).map { _ in random.unit() }
        network.forward(image: image, height: 48, width: 48, layers: ["relu5_4"]) { _ in }
        var gradient = [Float](repeating: 0, count: image.count)
        network.backward(image: image, into: &gradient) { _, layerGradient in
            for i in 0 ..< layerGradient.count { layerGradient.storage[i] += 1 }
        }
        XCTAssertEqual(network.kernelCopyBytes, network.kernelCopyCapacity)

        let small = Stylizer.Size(width: 200, height: 150), big = Stylizer.Size(width: 800, height: 600)
        let own = try stylizer.memoryPlan(for: small, content: small)
        let below = try stylizer.memoryPlan(for: small, content: big)
        XCTAssertEqual(below.fixedBytes - own.fixedBytes, 3 * big.pixels * 4)
        for plan in [own, below] {
            XCTAssertEqual(plan.fixedBytes + plan.networkBytes + plan.keptKernelBytes,
                           options.memory - stylizer.residentBytes)
            // With room to spare, every transformed kernel is kept.
            XCTAssertTrue(plan.keepsAllKernels)
            XCTAssertEqual(plan.keptKernelBytes,
                           network.allKernelsExtraBytes(for: Set((options.contentLayers + options.styleLayers).map(\.layer))))
            XCTAssertGreaterThan(plan.keptKernelBytes, 0)
        }
    }

    /// Masks and the layout loss are in the plan: the masks as given with the styles, and at each scale the masks at
    /// the style layers' sizes, the change mask at the scale's size and the layout loss's plane.
    func testPlansCountTheMasksAndTheLayoutLoss() throws {
        var random = TestRandom(state: 7)
        let style = RGBImage(width: 40, height: 30, pixels: (0 ..< 3 * 40 * 30).map { _ in random.unit() })
        var options = Options()
        options.memory = 1 << 30
        options.layoutWeight = 0
        let plain = try Stylizer(weights: randomVGGWeights, options: options, styles: [style, style])
        let mask = Mask(width: 50, height: 20, values: (0 ..< 1000).map { _ in random.unit() })
        options.styleMasks = [mask, mask]
        options.changeMask = Mask(width: 10, height: 10, values: (0 ..< 100).map { _ in random.unit() })
        options.layoutWeight = 1
        let masked = try Stylizer(weights: randomVGGWeights, options: options, styles: [style, style])
        XCTAssertEqual(masked.residentBytes - plain.residentBytes, (2 * 1000 + 100) * 4)
        let size = Stylizer.Size(width: 200, height: 150)
        // With the default 16-pixel margin the network sees 232 × 182; relu1_1 at that size, relu2_1 at 116 × 91,
        // relu3_1 at 58 × 45 (rounded down), relu4_1 at 29 × 22, relu5_1 at 14 × 11.
        let perStyle = 232 * 182 + 232 * 182 + 116 * 91 + 58 * 45 + 29 * 22 + 14 * 11
        XCTAssertEqual(masked.maskFloats(for: size), 2 * perStyle + 200 * 150)
        let before = try plain.memoryPlan(for: size, content: size), after = try masked.memoryPlan(for: size, content: size)
        XCTAssertEqual(after.fixedBytes - before.fixedBytes, (2 * perStyle + 200 * 150) * 4 + 200 * 150 * 4)
    }

    /// The transformed kernels are kept at the price of the first layer's map: with room for whole maps and every
    /// kernel only when the first layer is recomputed, that is the plan (remaking the deep layers' kernels at each use
    /// costs far more than conv1_1 once more).
    func testKernelsAreKeptOverTheFirstLayersMap() throws {
        let style = Self.randomStyle(state: 8)
        var options = Options()
        options.memory = 1 << 30
        let size = Stylizer.Size(width: 200, height: 150)
        let ample = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
        let network = ample.network, seen = ample.networkSize(for: size)
        let layers = Set((options.contentLayers + options.styleLayers).map(\.layer))
        let kernels = network.allKernelsExtraBytes(for: layers)
        XCTAssertGreaterThan(kernels, 0)
        let whole = network.plannedBytes(height: seen.height, width: seen.width, layers: layers, striping: .wholeMaps)
        let recomputing = network.plannedBytes(height: seen.height, width: seen.width, layers: layers,
                                               striping: .wholeMapsRecomputingFirstLayer)
        XCTAssertGreaterThan(whole, recomputing)
        let roomy = try ample.memoryPlan(for: size, content: size)
        XCTAssertTrue(roomy.keepsAllKernels)
        XCTAssertGreaterThanOrEqual(roomy.networkBytes, whole)
        // A byte short of whole maps keeping the first layer beside every kernel.
        options.memory -= roomy.networkBytes - whole + 1
        let tight = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
        let plan = try tight.memoryPlan(for: size, content: size)
        XCTAssertEqual(plan.fixedBytes, roomy.fixedBytes)
        XCTAssertTrue(plan.keepsAllKernels)
        XCTAssertEqual(plan.keptKernelBytes, kernels)
        XCTAssertEqual(plan.networkBytes, whole - 1)
        XCTAssertEqual(tight.network.plannedBytes(height: seen.height, width: seen.width, layers: layers,
                                                  striping: .budget(bytes: plan.networkBytes)), recomputing)
    }

    /// Where the network's buffers would do more work for it, the deep layers' kernels are remade as they run: at the
    /// least `-memory` a size needs, no kernel is kept beyond the network's own few.
    func testKernelsAreKeptOnlyWhereTheyCostTheNetworkNoWork() throws {
        let style = Self.randomStyle(state: 6)
        var options = Options()
        options.memory = 200 << 20
        let big = Stylizer.Size(width: 1600, height: 1200)
        let needed: Int
        do {
            _ = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
                .memoryPlan(for: big, content: big)
            return XCTFail("1600x1200 fits in 200 MiB")
        } catch TransferError.memory(_, let bytes, _) {
            needed = bytes
        }
        options.memory = needed
        let plan = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
            .memoryPlan(for: big, content: big)
        XCTAssertEqual(plan.keptKernelBytes, 0)
        XCTAssertFalse(plan.keepsAllKernels)
    }
}

/// The loss is that of the image as written out: pixels outside 0…1 count as clamped.
final class ClampedLossTests: XCTestCase {
    func testOutOfRangePixelsCountAsClamped() throws {
        let weights = try projectWeights()
        let (width, height) = (40, 32)
        var random = TestRandom(state: 12)
        let content = RGBImage(width: width, height: height, pixels: (0 ..< 3 * width * height).map { _ in random.unit() })
        let style = RGBImage(width: width, height: height, pixels: (0 ..< 3 * width * height).map { _ in random.unit() })
        // A start with a third of its values beyond the range, and the same start clamped.
        let wild = (0 ..< 3 * width * height).map { i in Float(i % 3) - 0.5 + 0.25 * random.unit() }
        let tame = wild.map { min(max($0, 0), 1) }
        XCTAssertGreaterThan(zip(wild, tame).filter { $0 != $1 }.count, wild.count / 4)
        func firstLoss(_ start: [Float]) throws -> Double {
            var options = Options()
            options.scales = 1
            options.iterations = 0
            options.initialization = .image(RGBImage(width: width, height: height, pixels: start))
            var total: Double?
            _ = try Stylizer(weights: weights, options: options, styles: [style])
                .stylize(content, observeStart: true) { total = total ?? $0.losses.total }
            return try XCTUnwrap(total)
        }
        XCTAssertEqual(try firstLoss(wild), try firstLoss(tame))
    }
}

/// -colors match: the style targets are those of the style image with its colors matched to the content's first.
final class ColorMatchTargetTests: XCTestCase {
    func testMatchedTargetsAreThoseOfTheMatchedStyle() throws {
        var random = TestRandom(state: 21)
        let style = RGBImage(width: 40, height: 32, pixels: (0 ..< 3 * 40 * 32).map { i in i < 40 * 32 ? random.unit() : 0.3 * random.unit() })
        let content = RGBImage(width: 40, height: 32, pixels: (0 ..< 3 * 40 * 32).map { _ in 0.2 + 0.5 * random.unit() })
        var options = Options()
        options.styleLayers = ["relu1_1", "relu2_1"].map { Options.WeightedLayer($0) }
        options.precision = .single
        options.colors = .match
        let size = Stylizer.Size(width: 40, height: 32)
        let matched = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
            .styleTargets(for: size, content: content)
        var recolored = style
        matchColorStatistics(&recolored.pixels, to: content.pixels)
        options.colors = .style
        let expected = try Stylizer(weights: randomVGGWeights, options: options, styles: [recolored])
            .styleTargets(for: size, content: nil)
        let plain = try Stylizer(weights: randomVGGWeights, options: options, styles: [style])
            .styleTargets(for: size, content: nil)
        XCTAssertEqual(matched, expected)
        XCTAssertNotEqual(matched, plain)
    }
}

/// Style masks: each style's statistics land in its own region.
final class StyleMaskTests: XCTestCase {
    func testTwoRegionsTakeTheirOwnStyles() throws {
        let weights = try projectWeights()
        let (width, height) = (64, 48)
        var random = TestRandom(state: 41)
        // Style A: red and white horizontal stripes; style B: blue and black noise.
        let a = RGBImage(width: 48, height: 48, pixels: (0 ..< 3 * 48 * 48).map { i in
            let (c, y) = (i / (48 * 48), (i % (48 * 48)) / 48)
            return c == 0 ? 0.9 : (y / 3 % 2 == 0 ? 0.9 : 0.1)
        })
        let b = RGBImage(width: 48, height: 48, pixels: (0 ..< 3 * 48 * 48).map { i in
            i / (48 * 48) == 2 ? random.unit() : 0.1 * random.unit()
        })
        let content = RGBImage(width: width, height: height, pixels: (0 ..< 3 * width * height).map { _ in 0.4 + 0.2 * random.unit() })
        let left = Mask(width: width, height: height, values: (0 ..< width * height).map { $0 % width < width / 2 ? 1 : 0 })
        let right = Mask(width: width, height: height, values: left.values.map { 1 - $0 })
        var options = Options()
        options.size = nil
        options.scales = 1
        options.iterations = 40
        options.styleLayers = ["relu1_1", "relu2_1"].map { Options.WeightedLayer($0) }
        options.styleWeight = 100
        options.styleMasks = [left, right]
        options.precision = .single
        let stylizer = try Stylizer(weights: weights, options: options, styles: [a, b])
        let result = try stylizer.stylize(content) { _ in }
        let size = Stylizer.Size(width: width, height: height)
        let targets = try stylizer.stylesTargets(for: size, content: nil)

        let network = try VGG19(weights: weights, stripeRows: nil)
        let maps = network.activations(image: result.pixels, height: height, width: width, layers: ["relu1_1"])
        let map = try XCTUnwrap(maps["relu1_1"])
        let c = map.channels, n = map.height * map.width
        // The Gram matrix of the result's features over one half, and its distance to each style's.
        func distance(half: Mask, to target: StyleTarget) -> Double {
            var accumulator = GramAccumulator(channels: c)
            map.values.withUnsafeBufferPointer { features in
                half.values.withUnsafeBufferPointer { accumulator.add(features, pixels: n, stride: n, weights: $0) }
            }
            let gram = accumulator.gram()
            return zip(gram, target.gram).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        }
        XCTAssertLessThan(distance(half: left, to: targets[0][0]), distance(half: left, to: targets[1][0]) / 2)
        XCTAssertLessThan(distance(half: right, to: targets[1][0]), distance(half: right, to: targets[0][0]) / 2)
    }
}

/// Video: with -temporal, a frame's result follows the last one's along the scene's motion.
final class TemporalTests: XCTestCase {
    /// A view of 72×48 pixels onto a textured scene, its left edge at `left`.
    func view(left: Int) -> RGBImage {
        let (width, height) = (72, 48)
        var pixels = [Float](repeating: 0, count: 3 * width * height)
        for c in 0 ..< 3 {
            for y in 0 ..< height {
                for x in 0 ..< width {
                    let u = Float(x + left), v = Float(y), k = Float(c + 1)
                    pixels[(c * height + y) * width + x] =
                        0.5 + 0.2 * sin(u * 0.31 * k + v * 0.17) + 0.15 * cos(u * 0.07 - v * 0.23 * k)
                        + 0.1 * sin((u * u + v * v * k) * 0.004)
                }
            }
        }
        return RGBImage(width: width, height: height, pixels: pixels)
    }

    /// The root mean square difference between frame `b` and frame `a` moved `shift` pixels left (a view panning right
    /// by `shift`), over the columns both see and away from the borders, in 0…255.
    func alignedDifference(_ a: RGBImage, _ b: RGBImage, shift: Int) -> Double {
        var sum = 0.0, count = 0
        for c in 0 ..< 3 {
            for y in 6 ..< a.height - 6 {
                for x in 6 ..< a.width - shift - 6 {
                    let d = Double(b.pixels[(c * a.height + y) * a.width + x] - a.pixels[(c * a.height + y) * a.width + x + shift])
                    sum += d * d
                    count += 1
                }
            }
        }
        return 255 * (sum / Double(count)).squareRoot()
    }

    func frames(temporal: Bool, weight: Float? = nil) throws -> [RGBImage] {
        var options = Options()
        options.size = nil
        options.scales = 1
        options.iterations = 12
        options.styleLayers = ["relu1_1", "relu2_1", "relu3_1"].map { Options.WeightedLayer($0) }
        options.precision = .single
        options.temporal = temporal
        if let weight { options.temporalWeight = weight }
        var random = TestRandom(state: 5)
        let style = RGBImage(width: 48, height: 48, pixels: (0 ..< 3 * 48 * 48).map { i in
            (i / 48) % 6 < 3 ? 0.8 * random.unit() : 0.2 + 0.1 * random.unit()
        })
        let stylizer = try Stylizer(weights: try projectWeights(), options: options, styles: [style])
        return try [0, 3, 6].map { try stylizer.stylize(view(left: $0)) { _ in } }
    }

    /// The next frame's start is the last result moved along the flow: for a view panning 3 pixels, the last result
    /// 3 pixels to the left, and in the 3 columns the view has not shown before, the content, free (reliability 0).
    func testTheTargetIsTheLastResultMovedAlongTheFlow() {
        let (a, b) = (view(left: 0), view(left: 3))
        var random = TestRandom(state: 8)
        let result = RGBImage(width: a.width, height: a.height, pixels: random.array(a.pixels.count))
        let target = TemporalTarget(following: result, luminance: YIQ.luminance(ofRGB: a.pixels), content: b,
                                    contentLuminance: YIQ.luminance(ofRGB: b.pixels))
        let plane = a.width * a.height
        var largest: Float = 0
        for c in 0 ..< 3 {
            for y in 4 ..< a.height - 4 {
                for x in 4 ..< a.width - 3 - 4 {
                    let p = y * a.width + x
                    largest = max(largest, abs(target.image.pixels[c * plane + p] - result.pixels[c * plane + p + 3]))
                    XCTAssertEqual(target.reliability[p], 1, "pixel (\(x), \(y)) was seen before")
                }
            }
        }
        XCTAssertLessThan(largest, 0.05)  // noise: a flow error of 0.03 pixels moves a sample by up to 0.03
        for y in 0 ..< a.height {
            for x in a.width - 3 ..< a.width {
                XCTAssertEqual(target.reliability[y * a.width + x], 0, "pixel (\(x), \(y)) is new")
                for c in 0 ..< 3 {
                    XCTAssertEqual(target.image.pixels[c * plane + y * a.width + x],
                                   b.pixels[c * plane + y * a.width + x], "pixel (\(x), \(y)) starts from the content")
                }
            }
        }
    }

    func testFramesFollowTheMotion() throws {
        let alone = try frames(temporal: false)
        let moved = try frames(temporal: true, weight: 0)
        // Twelve iterations from the content leave each frame far from converged, and the style loss still pulls hard
        // (at the default weight the loss changes these frames little): a weight far above the default's shows that
        // the loss holds the frames to the moved result.
        let held = try frames(temporal: true, weight: 1e6)
        for t in 1 ..< 3 {
            let free = alignedDifference(alone[t - 1], alone[t], shift: 3)
            let start = alignedDifference(moved[t - 1], moved[t], shift: 3)
            let tied = alignedDifference(held[t - 1], held[t], shift: 3)
            XCTAssertLessThan(tied, free / 2, "frame \(t): the strokes stay on the scene")
            XCTAssertLessThan(tied, start / 2, "frame \(t): the temporal loss holds them there")
        }
        XCTAssertTrue(held[0] == alone[0], "the first frame is stylized as usual")
    }
}

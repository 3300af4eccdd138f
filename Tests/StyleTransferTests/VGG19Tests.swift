import XCTest
@testable import Kernels
@testable import StyleTransfer

/// VGG-19 weights with the real layer table, uniform random with He initialization's variance, made once per run.
let randomVGGWeights: VGGWeights = {
    var rng = SplitMix64(seed: 19)
    let layers = VGG19.convolutionTable.map { row in
        let count = row.outChannels * row.inChannels * 9
        let scale = (6 / Float(row.inChannels * 9)).squareRoot()
        let kernel = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            for k in 0 ..< count { buffer[k] = scale * (Float(rng.next() >> 40) * 0x1p-23 - 1) }
            initialized = count
        }
        return ConvLayerWeights(name: row.name, inChannels: row.inChannels, outChannels: row.outChannels,
                                kernel: kernel, bias: randomValues(row.outChannels, scale: 0.1, using: &rng))
    }
    return VGGWeights(layers: layers)
}()

final class VGG19Tests: XCTestCase {
    static let styleLayers: Set<String> = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]

    func randomImage(height: Int, width: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0 ..< 3 * height * width).map { _ in Float.random(in: 0 ... 1, using: &rng) }
    }

    func testLayerTableNamesAndShapes() {
        XCTAssertEqual(VGG19.layerNames, [
            "relu1_1", "relu1_2", "pool1", "relu2_1", "relu2_2", "pool2",
            "relu3_1", "relu3_2", "relu3_3", "relu3_4", "pool3", "relu4_1", "relu4_2", "relu4_3", "relu4_4", "pool4",
            "relu5_1", "relu5_2", "relu5_3", "relu5_4", "pool5",
        ])
        XCTAssertTrue(VGG19.shape(of: "relu1_1", height: 20, width: 18) == (64, 20, 18))
        XCTAssertTrue(VGG19.shape(of: "pool1", height: 20, width: 18) == (64, 10, 9))
        XCTAssertTrue(VGG19.shape(of: "relu3_1", height: 20, width: 18) == (256, 5, 4))
        XCTAssertTrue(VGG19.shape(of: "relu5_1", height: 20, width: 18) == (512, 1, 1))
        XCTAssertTrue(VGG19.shape(of: "pool5", height: 20, width: 18) == (512, 0, 0))
        // The design's figures: the forward pass to relu5_1 is 47 GFLOP at 256² and 189 GFLOP at 512².
        XCTAssertEqual(Double(2 * VGG19.multiplyAdds(through: "relu5_1", height: 256, width: 256)) / 1e9, 47.3, accuracy: 0.1)
        XCTAssertEqual(Double(2 * VGG19.multiplyAdds(through: "relu5_1", height: 512, width: 512)) / 1e9, 189.3, accuracy: 0.1)
    }

    func testWeightsThatAreNotVGG19AreRefused() {
        var layers = randomVGGWeights.layers
        layers.removeLast()
        XCTAssertThrowsError(try VGG19(weights: VGGWeights(layers: layers))) { error in
            XCTAssertEqual(error.localizedDescription, "The VGG-19 weights hold 15 convolution layers; the network has 16.")
        }
        var rng = SplitMix64(seed: 5)
        layers = randomVGGWeights.layers
        layers[2] = randomConvWeights(name: "conv2_1", inChannels: 64, outChannels: 64, using: &rng)
        XCTAssertThrowsError(try VGG19(weights: VGGWeights(layers: layers))) { error in
            XCTAssertEqual(error.localizedDescription,
                           "Layer 3 of the VGG-19 weights is conv2_1 (64 → 64 channels); the network expects conv2_1 (64 → 128 channels) there.")
        }
    }

    /// The first two blocks against the slow references: preprocessing, convolution, ReLU, both poolings, odd sizes.
    func testForwardMatchesNaiveNetwork() throws {
        let (h, w) = (11, 9)
        let image = randomImage(height: h, width: w, seed: 7)
        let means: [Float] = [103.939, 116.779, 123.68]
        let bgr = (0 ..< 3 * h * w).map { k in image[(2 - k / (h * w)) * h * w + k % (h * w)] * 255 - means[k / (h * w)] }
        let layers = randomVGGWeights.layers
        func convReLU(_ x: [Float], _ layer: Int, _ h: Int, _ w: Int) -> [Float] {
            naiveConvolution(x, height: h, width: w, weights: layers[layer]).map { Float(max($0, 0)) }
        }
        let relu1_1 = convReLU(bgr, 0, h, w)
        let relu1_2 = convReLU(relu1_1, 1, h, w)
        for pooling in Pooling.allCases {
            var pool1: [Float] = []
            for c in 0 ..< 64 {
                for oy in 0 ..< h / 2 {
                    for ox in 0 ..< w / 2 {
                        let window = [0, 1, w, w + 1].map { relu1_2[(c * h + 2 * oy) * w + 2 * ox + $0] }
                        pool1.append(pooling == .max ? window.max()! : window.reduce(0, +) / 4)
                    }
                }
            }
            let relu2_1 = convReLU(pool1, 2, h / 2, w / 2)
            let net = try VGG19(weights: randomVGGWeights, pooling: pooling)
            let result = net.activations(image: image, height: h, width: w,
                                         layers: ["relu1_1", "relu1_2", "pool1", "relu2_1"])
            XCTAssertEqual(Set(result.keys), ["relu1_1", "relu1_2", "pool1", "relu2_1"])
            for (name, expected, shape) in [("relu1_1", relu1_1, (64, h, w)), ("relu1_2", relu1_2, (64, h, w)),
                                            ("pool1", pool1, (64, h / 2, w / 2)), ("relu2_1", relu2_1, (128, h / 2, w / 2))] {
                let actual = try XCTUnwrap(result[name])
                XCTAssertTrue((actual.channels, actual.height, actual.width) == shape, "\(name) shape")
                assertClose(actual.values, expected.map(Double.init), relative: 1e-5, "\(pooling) \(name)")
            }
        }
    }

    /// The index in a whole (channels, height, width) map of element k of a feature map that may be a stripe.
    func wholeIndex(_ k: Int, in map: FeatureMap) -> Int {
        let rows = map.rows.count, w = map.width
        let c = k / (rows * w), y = map.rows.lowerBound + k / w % rows, x = k % w
        return (c * map.height + y) * w + x
    }

    /// L = Σ over the loss layers of Σ activation · R, R fixed random; returns L in float64.
    func probeLoss(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ probes: [String: [Float]]) -> Double {
        var total = 0.0
        net.forward(image: image, height: h, width: w, layers: Set(probes.keys)) { map in
            let r = probes[map.layer.name]!, v = map.values.values
            for k in 0 ..< v.count { total += Double(v[k]) * Double(r[wholeIndex(k, in: map)]) }
        }
        return total
    }

    func probeGradient(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ probes: [String: [Float]]) -> [Float] {
        net.forward(image: image, height: h, width: w, layers: Set(probes.keys)) { _ in }
        var gradient = [Float](repeating: .nan, count: image.count)
        net.backward(image: image, into: &gradient) { activation, g in
            let r = probes[activation.layer.name]!
            XCTAssertEqual(activation.values.count, g.count)
            for k in 0 ..< g.count { g.buffer[k] += r[wholeIndex(k, in: activation)] }
        }
        return gradient
    }

    /// The image gradient of the whole truncated network against central finite differences of a fixed scalar loss.
    func checkGradient(pooling: Pooling, height h: Int, width w: Int, layers: Set<String>, seed: UInt64,
                       scratchBytes: Int = 32 << 20, stripeRows: Int? = nil) throws {
        let net = try VGG19(weights: randomVGGWeights, pooling: pooling, scratchBytes: scratchBytes,
                            striping: stripeRows.map { .stripes(rows: $0, blocks: 2) } ?? .wholeMaps)
        var rng = SplitMix64(seed: seed)
        let probes = randomProbes(layers.sorted(), height: h, width: w, using: &rng)
        let image = randomImage(height: h, width: w, seed: seed)
        let gradient = probeGradient(net, image, h, w, probes)
        let scale = Double(gradient.map { abs($0) }.max()!)
        XCTAssertGreaterThan(scale, 0)
        // L is piecewise linear, with kinks wherever a ReLU or a max-pooling choice flips; float32 forward passes
        // round it. Both blur a finite difference, the kinks more the larger the step, the rounding more the smaller.
        // Central differences along random directions over all pixels, with a small step, have a signal far above both
        // (errors below 1e-3 here, where a wrong chain rule anywhere gives errors near 1).
        let errors = directionalErrors(image: image, gradient: gradient, using: &rng) {
            probeLoss(net, $0, h, w, probes)
        }
        let label = "\(pooling) \(h)x\(w) \(layers.sorted()): errors relative to Σ|gradient · step| \(errors)"
        XCTAssertLessThan(errors.max()!, 3e-3, label)
    }

    func testImageGradientMatchesFiniteDifferencesMaxPooling() throws {
        try checkGradient(pooling: .max, height: 20, width: 18, layers: Self.styleLayers, seed: 21)
    }

    /// Average pooling, a pooling layer read by a loss, a loss on the ReLU that feeds a pooling, odd sizes, and a
    /// scratch so small that every convolution runs one row at a time.
    func testImageGradientMatchesFiniteDifferencesAveragePooling() throws {
        try checkGradient(pooling: .average, height: 19, width: 13, layers: ["relu1_2", "pool2", "relu3_3"], seed: 22,
                          scratchBytes: 1)
    }

    /// The first block in stripes of 4 rows (the last one shorter), relu1_1 read by a loss stripe by stripe.
    func testImageGradientMatchesFiniteDifferencesInStripes() throws {
        try checkGradient(pooling: .max, height: 19, width: 16, layers: Self.styleLayers, seed: 23, stripeRows: 4)
    }

    /// Striped and whole first blocks agree: the same layer rows, the same image gradient; with one, two and three
    /// striped blocks, with and without losses inside them (recomputed in the backward pass, pooling included), with
    /// both poolings, stripes that do and do not divide the height, odd heights.
    func testStripesMatchWholeMaps() throws {
        var rng = SplitMix64(seed: 60)
        for (pooling, h, w, stripe, blocks, layers) in [
            (Pooling.max, 21, 13, 6, 2, Self.styleLayers),
            (.max, 21, 13, 6, 1, Self.styleLayers),
            (.max, 27, 12, 8, 3, Self.styleLayers.union(["relu1_2", "pool1", "relu3_2"])),
            (.average, 16, 9, 4, 2, ["pool1", "relu2_2"] as Set<String>),
            (.max, 19, 7, 2, 2, ["relu1_1", "relu1_2", "pool1", "relu2_2", "relu3_1"] as Set<String>),
            (.max, 12, 7, 2, 1, ["relu1_1", "relu3_1"] as Set<String>),
            (.max, 9, 11, 3, 2, ["relu2_1"] as Set<String>),
        ] {
            let probes = randomProbes(layers, height: h, width: w, using: &rng)
            let image = randomImage(height: h, width: w, seed: UInt64(h * w))
            let whole = try VGG19(weights: randomVGGWeights, pooling: pooling)
            let striped = try VGG19(weights: randomVGGWeights, pooling: pooling, stripeRows: stripe,
                                    stripedBlocks: blocks)
            striped.prepare(height: h, width: w, layers: Set(layers.map(VGG19.named)))
            let rows = (h + striped.stripeCounts[0] - 1) / striped.stripeCounts[0]
            XCTAssertGreaterThan(striped.stripeCounts[0], 1)
            let label = "\(pooling) \(h)x\(w) stripes of \(rows) through block \(blocks) \(layers.sorted())"
            var expected: [String: [Float]] = [:]
            whole.forward(image: image, height: h, width: w, layers: layers) { expected[$0.layer.name] = $0.values.values }
            var assembled: [String: [Float]] = [:]
            var stripeCount = 0
            striped.forward(image: image, height: h, width: w, layers: layers) { map in
                var values = assembled[map.layer.name] ?? [Float](repeating: .nan, count: expected[map.layer.name]!.count)
                let v = map.values.values
                for k in 0 ..< v.count { values[wholeIndex(k, in: map)] = v[k] }
                assembled[map.layer.name] = values
                if map.layer.name == "relu1_1" { stripeCount += 1 }
            }
            XCTAssertEqual(stripeCount, layers.contains("relu1_1") ? striped.stripeCounts[0] : 0, label)
            XCTAssertLessThanOrEqual(rows, (stripe + (1 << blocks) - 1) / (1 << blocks) * (1 << blocks), label)
            for layer in layers {
                assertClose(assembled[layer]!, expected[layer]!.map(Double.init), relative: 1e-5, "\(label) \(layer)")
            }
            // Winograd's tiles start at each stripe's first row, so the two agree to its rounding, which F(6×6, 3×3)'s
            // larger transforms make about 10⁻⁵ by the image gradient.
            assertClose(probeGradient(striped, image, h, w, probes),
                        probeGradient(whole, image, h, w, probes).map(Double.init), relative: 2e-5, "\(label) gradient")
        }
    }

    /// Stripes shrink the buffers: through two blocks, the largest whole maps are block 3's; through all five,
    /// nothing is whole but the image (though stripes this short need halos and recomputations of most of the map for
    /// the deep layers). What the network allocates is what its
    /// layout planned.
    func testStripesSaveMemory() throws {
        let (h, w) = (512, 192)
        let whole = try VGG19(weights: randomVGGWeights)
        let two = try VGG19(weights: randomVGGWeights, stripeRows: 16, stripedBlocks: 2)
        let five = try VGG19(weights: randomVGGWeights, stripeRows: 16, stripedBlocks: 5)
        for net in [whole, two, five] {
            let planned = net.plannedBytes(height: h, width: w, layers: Set(Self.styleLayers.map(VGG19.named)))
            net.prepare(height: h, width: w, layers: Self.styleLayers)
            XCTAssertEqual(net.allocatedBytes, planned)
        }
        let block1 = 64 * h * w * 4
        XCTAssertGreaterThan(whole.allocatedBytes, 2 * block1)
        XCTAssertLessThan(two.allocatedBytes, whole.allocatedBytes - block1)
        XCTAssertLessThan(five.allocatedBytes, whole.allocatedBytes - block1 / 2)
        XCTAssertEqual(whole.stripeCounts, [1])
        XCTAssertEqual(two.stripeCounts, [32, 1])
        XCTAssertEqual(five.stripeCounts, [32])
    }

    /// The backward pass hands each loss the activation the forward pass showed it, also where it recomputes it (the
    /// first layer when asked to, and the layers inside striped blocks): rectified, row for row. The probe losses of
    /// the gradient tests are linear and cannot tell; a Gram loss can.
    func testBackwardSeesTheForwardActivations() throws {
        let (h, w) = (19, 16)
        let image = randomImage(height: h, width: w, seed: 61)
        let layers = Self.styleLayers.union(["relu1_2", "relu2_2"])
        let runs: [(stripe: Int?, blocks: Int, recomputes: Bool)] = [(nil, 1, false), (nil, 1, true), (4, 1, false),
                                                                      (4, 2, false), (8, 3, false)]
        for (stripe, blocks, recomputes) in runs {
            let net = try VGG19(weights: randomVGGWeights, stripeRows: stripe, stripedBlocks: blocks)
            if recomputes { net.striping = .wholeMapsRecomputingFirstLayer }
            var forward: [String: [Float]] = [:]
            net.forward(image: image, height: h, width: w, layers: layers) { map in
                var values = forward[map.layer.name] ?? [Float](repeating: .nan, count: map.channels * map.height * map.width)
                let v = map.values.values
                for k in 0 ..< v.count { values[wholeIndex(k, in: map)] = v[k] }
                forward[map.layer.name] = values
            }
            var seen = Set<String>()
            var gradient = [Float](repeating: 0, count: image.count)
            net.backward(image: image, into: &gradient) { activation, _ in
                seen.insert(activation.layer.name)
                let v = activation.values.values
                let expected = (0 ..< v.count).map { Double(forward[activation.layer.name]![wholeIndex($0, in: activation)]) }
                assertClose(v, expected, relative: 1e-5,
                            "\(net.striping) through block \(blocks): \(activation.layer.name) rows \(activation.rows)")
            }
            XCTAssertEqual(seen, layers)
        }
    }

    /// Images so small that the deeper maps are empty: the losses there see empty maps, the gradient comes from the
    /// first block alone.
    func testImagesThatPoolToNothing() throws {
        for (h, w) in [(1, 1), (1, 5), (3, 2), (5, 3)] {
            try checkGradient(pooling: .max, height: h, width: w, layers: Self.styleLayers.union(["relu1_2"]),
                              seed: UInt64(50 + h * 10 + w))
        }
    }

    func testEvaluationsAreRepeatableAcrossSizes() throws {
        let net = try VGG19(weights: randomVGGWeights)
        var rng = SplitMix64(seed: 30)
        let probes = randomProbes(Self.styleLayers, height: 17, width: 16, using: &rng)
        let image = randomImage(height: 17, width: 16, seed: 31)
        let first = probeGradient(net, image, 17, 16, probes)
        _ = net.activations(image: randomImage(height: 8, width: 9, seed: 32), height: 8, width: 9, layers: ["relu2_2"])
        XCTAssertEqual(probeGradient(net, image, 17, 16, probes), first)
        XCTAssertEqual(probeGradient(net, image, 17, 16, probes), first)
        XCTAssertFalse(first.contains { $0.isNaN })
    }

    /// One thread and several give the same gradient (up to the order of float additions).
    func testThreadCountsAgree() throws {
        var rng = SplitMix64(seed: 40)
        let probes = randomProbes(Self.styleLayers, height: 24, width: 21, using: &rng)
        let image = randomImage(height: 24, width: 21, seed: 41)
        let one = probeGradient(try VGG19(weights: randomVGGWeights, threads: 1), image, 24, 21, probes)
        let several = probeGradient(try VGG19(weights: randomVGGWeights, threads: 3), image, 24, 21, probes)
        assertClose(several, one.map(Double.init), relative: 1e-5, "threads 3 vs 1")
    }

    /// Buffers are sized by the layers (no 9 × channels × pixels im2col): at 64×48 for the style layers the total
    /// is the two 64-channel maps, the kept activations (relu1_1's too), the input, masks, pooling choices, and the
    /// bounded scratch (2 MiB, which holds one tile row of block 4's F(4×4) Winograd bands, 8 tiles of 1024 channels
    /// at 36 positions).
    func testAllocatedBytes() throws {
        let (h, w) = (64, 48), p = 64 * 48
        let net = try VGG19(weights: randomVGGWeights, scratchBytes: 2 << 20, tile: .f4)
        net.prepare(height: h, width: w, layers: Self.styleLayers)
        let floats = 3 * p + 2 * 64 * p + (64 * p + 128 * p / 4 + 256 * p / 16 + 2 * 512 * p / 64 + 512 * p / 256)
        let maskBytes = 64 * h * 6 * 2 + 128 * 32 * 3 * 2 + 256 * 16 * 2 * 4 + 512 * 8 * 1 * 4 + 512 * 4 * 1
        // Two bits a pooling window: pool1 32×24, pool2 16×12, pool3 8×6, pool4 4×3.
        let choiceBytes = 64 * 32 * 6 + 128 * 16 * 3 + 256 * 8 * 2 + 512 * 4 * 1
        let scratch = net.allocatedBytes - 4 * floats - maskBytes - choiceBytes
        XCTAssertGreaterThan(scratch, 0)
        XCTAssertLessThanOrEqual(scratch, 2 << 20)
    }

    /// Keeping no transformed kernel (each made in the shared buffer as its layer runs) gives the bits of keeping them
    /// all, and keeps only the shared buffer.
    func testKernelsTransformedAsTheyRunGiveTheKeptKernelsResults() throws {
        let (h, w) = (24, 26)
        var rng = SplitMix64(seed: 70)
        let probes = randomProbes(Self.styleLayers, height: h, width: w, using: &rng)
        let image = randomImage(height: h, width: w, seed: 71)
        let keptAll = try VGG19(weights: randomVGGWeights, keptKernelBytes: .max)
        let keptNone = try VGG19(weights: randomVGGWeights, keptKernelBytes: 0)
        let expected = probeGradient(keptAll, image, h, w, probes)
        XCTAssertEqual(probeGradient(keptNone, image, h, w, probes), expected)
        XCTAssertEqual(probeGradient(keptNone, image, h, w, probes), expected)
        XCTAssertEqual(keptAll.kernelTransforms, 0)
        XCTAssertGreaterThan(keptNone.kernelTransforms, 0)
        // conv1_1's kernels packed for the own kernels' im2col products: 64 × 32 floats forward (but where the forward
        // pass sums directly), 32 × 64 backward.
        let conv11 = KernelPath.current == .openblas ? 0 : (KernelPath.current == .avx512 ? 1 : 2) * 64 * 32 * 4
        // F(6×6, 3×3): 64 positions.
        XCTAssertEqual(keptAll.tile, .f6)
        XCTAssertEqual(keptNone.kernelCopyBytes, 64 * 512 * 512 * 4 + conv11)
        // Blocks 1 to 3 at 24x26 (block 4 runs on 3x3 maps, with im2col: never transformed).
        XCTAssertEqual(keptAll.kernelCopyBytes,
                       64 * 4 * (64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 3 * 256 * 256) + conv11)
    }

    /// Keeping every transformed kernel (as a memory plan with room asks) gives the bits of remaking the deep ones in
    /// the shared buffer, remakes none, frees the buffer and takes `allKernelsExtraBytes` more at most; letting them go
    /// gives the same bits again.
    func testKeepingEveryKernelGivesTheSameBits() throws {
        let (h, w) = (48, 52)
        var rng = SplitMix64(seed: 72)
        let probes = randomProbes(Self.styleLayers, height: h, width: w, using: &rng)
        let image = randomImage(height: h, width: w, seed: 73)
        let net = try VGG19(weights: randomVGGWeights)
        let expected = probeGradient(net, image, h, w, probes)
        let transforms = net.kernelTransforms
        // Block 4 on 6x6 maps: its four kernels remade each pass; block 5 on 3x3 maps runs im2col.
        XCTAssertGreaterThan(transforms, 0)
        XCTAssertEqual(net.kernelCopyBytes, net.kernelCopyCapacity)
        net.keepsAllKernels = true
        XCTAssertEqual(probeGradient(net, image, h, w, probes), expected)
        XCTAssertEqual(probeGradient(net, image, h, w, probes), expected)
        XCTAssertEqual(net.kernelTransforms, transforms)
        let conv11 = KernelPath.current == .openblas ? 0 : (KernelPath.current == .avx512 ? 1 : 2) * 64 * 32 * 4
        let blocks = [64 * 64 + 64 * 128 + 128 * 128 + 128 * 256 + 3 * 256 * 256, 256 * 512 + 3 * 512 * 512]
        XCTAssertEqual(net.kernelCopyBytes, 64 * 4 * (blocks[0] + blocks[1]) + conv11)
        // conv5_1 is counted but never made: block 5 runs im2col on its 3x3 maps.
        XCTAssertEqual(net.kernelCopyBytes + 64 * 512 * 512 * 4,
                       net.kernelCopyCapacity + net.allKernelsExtraBytes(for: Set(Self.styleLayers.map(VGG19.named))))
        net.keepsAllKernels = false
        XCTAssertEqual(probeGradient(net, image, h, w, probes), expected)
        XCTAssertGreaterThan(net.kernelTransforms, transforms)
        XCTAssertEqual(net.kernelCopyBytes, net.kernelCopyCapacity)
    }
}

/// Random values of the shape of each of `layers` at an image of height × width, drawn in the order given.
func randomProbes(_ layers: some Sequence<String>, height: Int, width: Int,
                  using rng: inout SplitMix64) -> [String: [Float]] {
    var probes: [String: [Float]] = [:]
    for layer in layers {
        let s = VGG19.shape(of: layer, height: height, width: width)
        probes[layer] = randomValues(s.channels * s.height * s.width, using: &rng)
    }
    return probes
}

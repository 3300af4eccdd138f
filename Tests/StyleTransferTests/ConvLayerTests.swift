import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The convolution outputs before their ReLUs (`convB_N`) as layers the losses read, and the activations the backward
/// pass hands the losses.
final class ConvLayerTests: XCTestCase {
    func randomImage(height: Int, width: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0 ..< 3 * height * width).map { _ in Float.random(in: 0 ... 1, using: &rng) }
    }

    /// The index in a whole (channels, height, width) map of element k of a feature map that may be a stripe.
    func wholeIndex(_ k: Int, in map: FeatureMap) -> Int {
        let rows = map.rows.count, w = map.width
        let c = k / (rows * w), y = map.rows.lowerBound + k / w % rows, x = k % w
        return (c * map.height + y) * w + x
    }

    /// Copies the rows `map` holds into its layer's whole map in `maps` (NaN where no stripe has been yet).
    func place(_ map: FeatureMap, into maps: inout [String: [Float]], _ h: Int, _ w: Int) {
        let s = VGG19.shape(of: map.layer.name, height: h, width: w)
        var values = maps[map.layer.name] ?? [Float](repeating: .nan, count: s.channels * s.height * s.width)
        let v = map.values.values
        for k in 0 ..< v.count { values[wholeIndex(k, in: map)] = v[k] }
        maps[map.layer.name] = values
    }

    /// The maps handed to `observe` by the forward pass, stripes assembled into whole maps.
    func forwardMaps(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ layers: Set<String>) -> [String: [Float]] {
        var maps: [String: [Float]] = [:]
        net.forward(image: image, height: h, width: w, layers: layers) { map in place(map, into: &maps, h, w) }
        return maps
    }

    /// The activations handed to `addGradient` by the backward pass after `forward`, stripes assembled (where stripes
    /// overlap, the later one wins).
    func backwardMaps(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ layers: Set<String>) -> [String: [Float]] {
        net.forward(image: image, height: h, width: w, layers: layers) { _ in }
        var maps: [String: [Float]] = [:]
        var gradient = [Float](repeating: 0, count: image.count)
        net.backward(image: image, into: &gradient) { map, _ in place(map, into: &maps, h, w) }
        return maps
    }

    func testLayerNamesAndShapes() {
        XCTAssertEqual(VGG19.requestableLayers, [
            "conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1", "conv2_1", "relu2_1", "conv2_2", "relu2_2", "pool2",
            "conv3_1", "relu3_1", "conv3_2", "relu3_2", "conv3_3", "relu3_3", "conv3_4", "relu3_4", "pool3",
            "conv4_1", "relu4_1", "conv4_2", "relu4_2", "conv4_3", "relu4_3", "conv4_4", "relu4_4", "pool4",
            "conv5_1", "relu5_1", "conv5_2", "relu5_2", "conv5_3", "relu5_3", "conv5_4", "relu5_4", "pool5",
        ])
        XCTAssertEqual(VGG19.layerNames, VGG19.requestableLayers.filter { !$0.hasPrefix("conv") })
        XCTAssertTrue(VGG19.shape(of: "conv1_1", height: 20, width: 18) == (64, 20, 18))
        XCTAssertTrue(VGG19.shape(of: "conv3_1", height: 20, width: 18) == (256, 5, 4))
        XCTAssertTrue(VGG19.shape(of: "conv4_2", height: 20, width: 18) == (512, 2, 2))
        XCTAssertEqual(VGG19.multiplyAdds(through: "conv4_2", height: 64, width: 48),
                       VGG19.multiplyAdds(through: "relu4_2", height: 64, width: 48))
        XCTAssertGreaterThan(VGG19.multiplyAdds(through: "conv4_2", height: 64, width: 48),
                             VGG19.multiplyAdds(through: "relu4_1", height: 64, width: 48))
    }

    /// conv1_1 and conv1_2 against the naive convolution of the preprocessed image and of relu1_1; each observed
    /// convB_N has negative values and its ReLU is the observed reluB_N exactly, which is the same, bit for bit, as
    /// when no convolution output is requested (the ReLU fused into the convolution); whole and in stripes, where
    /// conv2_1 and conv2_2 are inside the striped blocks.
    func testConvolutionOutputsAreBeforeTheReLU() throws {
        let (h, w) = (13, 10)
        let image = randomImage(height: h, width: w, seed: 81)
        let means: [Float] = [103.939, 116.779, 123.68]
        let bgr = (0 ..< 3 * h * w).map { k in image[(2 - k / (h * w)) * h * w + k % (h * w)] * 255 - means[k / (h * w)] }
        let weights = randomVGGWeights.layers
        let conv1_1 = naiveConvolution(bgr, height: h, width: w, weights: weights[0])
        let conv1_2 = naiveConvolution(conv1_1.map { Float(max($0, 0)) }, height: h, width: w, weights: weights[1])
        let pairs = ["1_1", "1_2", "2_1", "2_2", "3_1", "4_2"]
        let reluLayers = Set(pairs.map { "relu" + $0 })
        for pooling in Pooling.allCases {
            for stripeRows in [nil, 4] as [Int?] {
                let label = "\(pooling) stripes \(String(describing: stripeRows))"
                let net = try VGG19(weights: randomVGGWeights, pooling: pooling, stripeRows: stripeRows)
                let fused = forwardMaps(net, image, h, w, reluLayers)
                let maps = forwardMaps(net, image, h, w, reluLayers.union(pairs.map { "conv" + $0 }))
                assertClose(try XCTUnwrap(maps["conv1_1"]), conv1_1, relative: 1e-5, "\(label) conv1_1")
                assertClose(try XCTUnwrap(maps["conv1_2"]), conv1_2, relative: 1e-5, "\(label) conv1_2")
                for pair in pairs {
                    let conv = try XCTUnwrap(maps["conv" + pair]), relu = try XCTUnwrap(maps["relu" + pair])
                    XCTAssertLessThan(conv.min()!, 0, "\(label) conv\(pair)")
                    XCTAssertGreaterThan(conv.max()!, 0, "\(label) conv\(pair)")
                    XCTAssertEqual(conv.map { max($0, 0) }, relu, "\(label) relu\(pair) is not the ReLU of conv\(pair)")
                    XCTAssertEqual(relu, fused["relu" + pair], "\(label) relu\(pair) differs from the fused ReLU's")
                }
            }
        }
    }

    /// The backward pass hands each loss the activation the forward pass showed it, including those it recomputes
    /// (the first layer when asked to, and the layers inside the striped blocks): with the ReLU applied, or before it
    /// for convB_N.
    func testBackwardSeesTheForwardActivations() throws {
        let (h, w) = (13, 10)
        let image = randomImage(height: h, width: w, seed: 80)
        let layers: Set<String> = ["relu1_1", "relu1_2", "pool1", "relu2_1", "relu2_2", "relu3_1",
                                   "conv1_1", "conv1_2", "conv2_1", "conv3_1", "conv3_2"]
        for (stripeRows, recomputes) in [(nil, false), (nil, true), (4, false)] as [(Int?, Bool)] {
            let net = try VGG19(weights: randomVGGWeights, stripeRows: stripeRows)
            if recomputes { net.striping = .wholeMapsRecomputingFirstLayer }
            let forward = forwardMaps(net, image, h, w, layers)
            let backward = backwardMaps(net, image, h, w, layers)
            for layer in layers {
                let expected = try XCTUnwrap(forward[layer], layer)
                XCTAssertFalse(expected.contains { $0.isNaN }, "\(layer) forward")
                assertClose(try XCTUnwrap(backward[layer], layer), expected.map(Double.init), relative: 1e-5,
                            "stripes \(String(describing: stripeRows)) \(net.striping) \(layer)")
            }
        }
    }

    /// L = ½ Σ over the loss layers of Σ R · activation², R fixed random: a loss whose gradient (R · activation) depends
    /// on the activation the backward pass hands over. In float64.
    func probeLoss(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ probes: [String: [Float]]) -> Double {
        var total = 0.0
        net.forward(image: image, height: h, width: w, layers: Set(probes.keys)) { map in
            let r = probes[map.layer.name]!, v = map.values.values
            for k in 0 ..< v.count { total += 0.5 * Double(r[wholeIndex(k, in: map)]) * Double(v[k]) * Double(v[k]) }
        }
        return total
    }

    func probeGradient(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ probes: [String: [Float]]) -> [Float] {
        net.forward(image: image, height: h, width: w, layers: Set(probes.keys)) { _ in }
        var gradient = [Float](repeating: .nan, count: image.count)
        net.backward(image: image, into: &gradient) { activation, g in
            let r = probes[activation.layer.name]!, v = activation.values
            XCTAssertEqual(v.count, g.count)
            for k in 0 ..< g.count { g.buffer[k] += r[wholeIndex(k, in: activation)] * v.buffer[k] }
        }
        return gradient
    }

    /// The image gradient of a loss at convolution outputs (with ReLU outputs and a pooling beside them) against
    /// central finite differences along random directions.
    func checkGradient(pooling: Pooling, height h: Int, width w: Int, layers: Set<String>, seed: UInt64,
                       stripeRows: Int? = nil, recomputesFirstLayer: Bool = false) throws {
        let net = try VGG19(weights: randomVGGWeights, pooling: pooling, stripeRows: stripeRows)
        if recomputesFirstLayer { net.striping = .wholeMapsRecomputingFirstLayer }
        var rng = SplitMix64(seed: seed)
        var probes: [String: [Float]] = [:]
        for layer in layers.sorted() {
            let s = VGG19.shape(of: layer, height: h, width: w)
            probes[layer] = randomValues(s.channels * s.height * s.width, scale: 1e-3, using: &rng)
        }
        let image = randomImage(height: h, width: w, seed: seed)
        let gradient = probeGradient(net, image, h, w, probes)
        XCTAssertGreaterThan(gradient.map { abs($0) }.max()!, 0)
        // L is piecewise quadratic, with kinks where a ReLU or a max-pooling choice flips; a small step keeps both the
        // kinks and the float32 rounding of the forward passes well below the signal.
        let errors = directionalErrors(image: image, gradient: gradient, using: &rng) {
            probeLoss(net, $0, h, w, probes)
        }
        let label = "\(pooling) \(h)x\(w) \(net.striping) \(layers.sorted()): errors \(errors)"
        XCTAssertLessThan(errors.max()!, 3e-3, label)
    }

    static let briefLayers: Set<String> = ["conv3_1", "conv1_2", "relu2_1"]
    /// The first layer (recomputed from the image), a convolution and its ReLU both read, layers in both striped
    /// blocks, a pooling, and a deep Winograd layer.
    static let manyLayers: Set<String> = ["conv1_1", "conv1_2", "relu1_2", "pool1", "conv2_2", "relu3_1", "conv4_1"]

    func testGradientAtConvolutionOutputsMaxPooling() throws {
        try checkGradient(pooling: .max, height: 20, width: 18, layers: Self.briefLayers, seed: 91)
        try checkGradient(pooling: .max, height: 20, width: 18, layers: Self.manyLayers, seed: 92)
        try checkGradient(pooling: .max, height: 20, width: 18, layers: Self.manyLayers, seed: 95,
                          recomputesFirstLayer: true)
    }

    func testGradientAtConvolutionOutputsAveragePooling() throws {
        try checkGradient(pooling: .average, height: 19, width: 13, layers: Self.briefLayers, seed: 93)
        try checkGradient(pooling: .average, height: 19, width: 13, layers: Self.manyLayers, seed: 94)
    }

    func testGradientAtConvolutionOutputsInStripes() throws {
        for pooling in Pooling.allCases {
            try checkGradient(pooling: pooling, height: 19, width: 16, layers: Self.briefLayers, seed: 95, stripeRows: 4)
            try checkGradient(pooling: pooling, height: 19, width: 16, layers: Self.manyLayers, seed: 96, stripeRows: 4)
        }
    }
}

import XCTest
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

    /// The maps handed to `observe` by the forward pass, stripes assembled into whole maps.
    func forwardMaps(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ layers: Set<String>) -> [String: [Float]] {
        var maps: [String: [Float]] = [:]
        net.forward(image: image, height: h, width: w, layers: layers) { map in
            let s = VGG19.shape(of: map.layer, height: h, width: w)
            var values = maps[map.layer] ?? [Float](repeating: .nan, count: s.channels * s.height * s.width)
            let v = map.values.values
            for k in 0 ..< v.count { values[wholeIndex(k, in: map)] = v[k] }
            maps[map.layer] = values
        }
        return maps
    }

    /// The activations handed to `addGradient` by the backward pass after `forward`, stripes assembled (where stripes
    /// overlap, the later one wins).
    func backwardMaps(_ net: VGG19, _ image: [Float], _ h: Int, _ w: Int, _ layers: Set<String>) -> [String: [Float]] {
        net.forward(image: image, height: h, width: w, layers: layers) { _ in }
        var maps: [String: [Float]] = [:]
        var gradient = [Float](repeating: 0, count: image.count)
        net.backward(into: &gradient) { map, _ in
            let s = VGG19.shape(of: map.layer, height: h, width: w)
            var values = maps[map.layer] ?? [Float](repeating: .nan, count: s.channels * s.height * s.width)
            let v = map.values.values
            for k in 0 ..< v.count { values[wholeIndex(k, in: map)] = v[k] }
            maps[map.layer] = values
        }
        return maps
    }

    /// The backward pass hands each loss the activation the forward pass showed it, including those it recomputes
    /// (the first layer, and the layers inside the striped blocks): with the ReLU applied.
    func testBackwardSeesTheForwardActivations() throws {
        let (h, w) = (13, 10)
        let image = randomImage(height: h, width: w, seed: 80)
        let layers: Set<String> = ["relu1_1", "relu1_2", "pool1", "relu2_1", "relu2_2", "relu3_1"]
        for stripeRows in [nil, 4] as [Int?] {
            let net = try VGG19(weights: randomVGGWeights, stripeRows: stripeRows)
            let forward = forwardMaps(net, image, h, w, layers)
            let backward = backwardMaps(net, image, h, w, layers)
            for layer in layers {
                let expected = try XCTUnwrap(forward[layer], layer)
                XCTAssertFalse(expected.contains { $0.isNaN }, "\(layer) forward")
                assertClose(try XCTUnwrap(backward[layer], layer), expected.map(Double.init), relative: 1e-5,
                            "stripes \(String(describing: stripeRows)) \(layer)")
            }
        }
    }
}

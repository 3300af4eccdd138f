import Foundation
import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The network with the real weights against PyTorch on the same weights and input: activations and the
/// image gradient of a fixed loss, from Fixtures/vgg19-reference.json (made by tools/make_vgg_fixture.py
/// in float64; see that script for the schema). A wrong layout, channel order, mean, padding, pooling or
/// backward pass moves sums and samples far beyond the tolerances.
final class ReferenceTests: XCTestCase {
    struct Stats: Decodable {
        let shape: [Int]
        let sum: Double
        let sum_squares: Double
        let samples: [[Double]]
    }

    struct GradientStats: Decodable {
        let loss: Double
        let shape: [Int]
        let sum: Double
        let sum_squares: Double
        let samples: [[Double]]
    }

    struct Gradients: Decodable {
        let loss_layers: [String]
        let layer_weights: [Double]
        let max: GradientStats
        let avg: GradientStats
    }

    struct Fixture: Decodable {
        let activations: [String: [String: Stats]]
        let gradient: Gradients
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")

    var fixture: Fixture!
    var image: [Float] = []   // (3, 48, 64) RGB 0…1
    let width = 64, height = 48

    override func setUpWithError() throws {
        let json = try Data(contentsOf: Self.fixtures.appendingPathComponent("vgg19-reference.json"))
        fixture = try JSONDecoder().decode(Fixture.self, from: json)
        image = try Self.readPPM(Self.fixtures.appendingPathComponent("chelsea-64x48.ppm"), width: width, height: height)
    }

    /// The planar RGB 0…1 samples of a raw 8-bit PPM with the given header.
    static func readPPM(_ url: URL, width: Int, height: Int) throws -> [Float] {
        let bytes = [UInt8](try Data(contentsOf: url))
        let header = Array("P6\n\(width) \(height)\n255\n".utf8)
        XCTAssertEqual(Array(bytes.prefix(header.count)), header)
        let raster = bytes.dropFirst(header.count)
        XCTAssertEqual(raster.count, width * height * 3)
        var planes = [Float](repeating: 0, count: 3 * width * height)
        for (index, value) in raster.enumerated() {
            planes[(index % 3) * width * height + index / 3] = Float(value) / 255
        }
        return planes
    }

    func network(_ pooling: Pooling) throws -> VGG19 {
        try VGG19(weights: projectWeights(), pooling: pooling)
    }

    /// |a − b| ≤ tolerance · (|b| + scale) for a sample whose layer has root-mean-square `scale`.
    func assertClose(_ actual: Double, _ expected: Double, scale: Double, tolerance: Double, _ what: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(abs(actual - expected), tolerance * (abs(expected) + scale),
                                 "\(what): \(actual) vs \(expected)", file: file, line: line)
    }

    func checkActivations(_ pooling: Pooling, _ key: String) throws {
        let net = try network(pooling)
        let expected = try XCTUnwrap(fixture.activations[key])
        let maps = net.activations(image: image, height: height, width: width, layers: Set(expected.keys))
        for (layer, stats) in expected.sorted(by: { $0.key < $1.key }) {
            let map = try XCTUnwrap(maps[layer], layer)
            XCTAssertEqual([map.channels, map.height, map.width], stats.shape, layer)
            let values = map.values
            let sum = values.reduce(0.0) { $0 + Double($1) }
            let squares = values.reduce(0.0) { $0 + Double($1) * Double($1) }
            let rms = (stats.sum_squares / Double(values.count)).squareRoot()
            assertClose(sum, stats.sum, scale: 0, tolerance: 1e-4, "\(key) \(layer) sum")
            assertClose(squares, stats.sum_squares, scale: 0, tolerance: 1e-4, "\(key) \(layer) sum of squares")
            for sample in stats.samples {
                let (c, y, x) = (Int(sample[0]), Int(sample[1]), Int(sample[2]))
                assertClose(Double(map[c, y, x]), sample[3], scale: rms, tolerance: 1e-4, "\(key) \(layer) [\(c),\(y),\(x)]")
            }
        }
    }

    func testActivationsMatchPyTorchWithMaxPooling() throws {
        try checkActivations(.max, "max")
    }

    func testActivationsMatchPyTorchWithAveragePooling() throws {
        try checkActivations(.average, "avg")
    }

    func checkGradient(_ pooling: Pooling, _ expected: GradientStats) throws {
        let net = try network(pooling)
        let layers = fixture.gradient.loss_layers
        var loss = 0.0
        image.withUnsafeBufferPointer { pixels in
            net.forward(image: pixels, height: height, width: width, layers: Set(layers.map(VGG19.named))) { map in
                let l = Double(layers.firstIndex(of: map.layer.name)!)
                for c in 0 ..< map.channels {
                    for y in 0 ..< map.values.height {
                        for x in 0 ..< map.width {
                            loss += Double(map.values[c, y, x]) * sin(((0.37 * Double(c) + 0.61 * Double(y)) + 1.13 * Double(x)) + l)
                        }
                    }
                }
            }
        }
        assertClose(loss, expected.loss, scale: 0, tolerance: 1e-4, "loss")

        var gradient = [Float](repeating: 0, count: image.count)
        net.backward(image: image, into: &gradient) { activation, layerGradient in
            let l = Double(layers.firstIndex(of: activation.layer.name)!)
            for c in 0 ..< activation.channels {
                for y in 0 ..< activation.values.height {
                    for x in 0 ..< activation.width {
                        layerGradient[c, y, x] += Float(sin(((0.37 * Double(c) + 0.61 * Double(y)) + 1.13 * Double(x)) + l))
                    }
                }
            }
        }
        // The fixture's gradient is with respect to the network's input x = 255 · rgb[2 − c] − mean[c].
        let plane = width * height
        let bgr = (0 ..< 3 * plane).map { i in Double(gradient[(2 - i / plane) * plane + i % plane]) / 255 }
        XCTAssertEqual(expected.shape, [3, height, width])
        let squares = bgr.reduce(0) { $0 + $1 * $1 }
        let rms = (expected.sum_squares / Double(bgr.count)).squareRoot()
        assertClose(squares, expected.sum_squares, scale: 0, tolerance: 1e-3, "gradient sum of squares")
        assertClose(bgr.reduce(0, +), expected.sum, scale: rms * Double(bgr.count).squareRoot(), tolerance: 1e-3,
                    "gradient sum")
        for sample in expected.samples {
            let (c, y, x) = (Int(sample[0]), Int(sample[1]), Int(sample[2]))
            assertClose(bgr[c * plane + y * width + x], sample[3], scale: rms, tolerance: 1e-3, "gradient [\(c),\(y),\(x)]")
        }
    }

    func testImageGradientMatchesPyTorchWithMaxPooling() throws {
        try checkGradient(.max, fixture.gradient.max)
    }

    func testImageGradientMatchesPyTorchWithAveragePooling() throws {
        try checkGradient(.average, fixture.gradient.avg)
    }
}

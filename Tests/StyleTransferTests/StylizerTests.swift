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
        let stylizer = try Stylizer(weights: weights, options: options, styles: [style])
        let targets = try stylizer.styleTargets(for: .init(width: width, height: height), contentLuminance: nil)

        let whole = try VGG19(weights: weights, stripeRows: nil)
        let maps = whole.activations(image: pixels, height: height, width: width, layers: ["relu1_1", "relu2_1", "relu3_1"])
        for (index, layer) in ["relu1_1", "relu2_1", "relu3_1"].enumerated() {
            let map = try XCTUnwrap(maps[layer])
            let expected = map.values.withUnsafeBufferPointer {
                gramMatrix($0, channels: map.channels, pixels: map.height * map.width)
            }
            XCTAssertEqual(targets[index].count, expected.count, layer)
            let scale = expected.map { abs($0) }.max()!
            for (actual, wanted) in zip(targets[index], expected) {
                XCTAssertEqual(actual, wanted, accuracy: scale * 1e-4, layer)
            }
        }
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

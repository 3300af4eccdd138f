import XCTest
@testable import Kernels
@testable import StyleTransfer

/// ContentLoss over stripes of rows agrees with the whole-map `contentLoss`, in value and gradient.
final class ContentLossTests: XCTestCase {
    func testStripesAgreeWithTheWholeMap() {
        let (channels, height, width) = (3, 7, 5)
        let count = channels * height * width
        let features = (0 ..< count).map { Float(sin(Double($0) * 0.7)) }
        let target = (0 ..< count).map { Float(cos(Double($0) * 0.3)) }
        var wholeGradient = [Float](repeating: 0, count: count)
        let whole = features.withUnsafeBufferPointer { f in
            target.withUnsafeBufferPointer { t in
                wholeGradient.withUnsafeMutableBufferPointer { contentLoss(features: f, target: t, weight: 2.5, addingGradientTo: $0) }
            }
        }

        var loss = ContentLoss(target: target, channels: channels, height: height, width: width)
        var gradient = [Float](repeating: 0, count: count)
        for rows in [0 ..< 3, 3 ..< 6, 6 ..< 7] {
            let stripe = stripeOf(features, rows: rows, channels: channels, height: height, width: width)
            stripe.withUnsafeBufferPointer { loss.add($0, rows: rows) }
        }
        XCTAssertEqual(loss.finish(), whole, accuracy: whole * 1e-12)
        // Overlapping stripes, as the backward pass hands them over: each row's gradient is its own.
        for rows in [0 ..< 4, 2 ..< 7] {
            let stripe = stripeOf(features, rows: rows, channels: channels, height: height, width: width)
            var stripeGradient = [Float](repeating: 0, count: stripe.count)
            stripe.withUnsafeBufferPointer { f in
                stripeGradient.withUnsafeMutableBufferPointer {
                    loss.addGradient(features: f, rows: rows, weight: 2.5, into: $0)
                }
            }
            for c in 0 ..< channels {
                for (i, y) in rows.enumerated() {
                    for x in 0 ..< width {
                        gradient[(c * height + y) * width + x] = stripeGradient[(c * rows.count + i) * width + x]
                    }
                }
            }
        }
        for i in 0 ..< count {
            XCTAssertEqual(gradient[i], wholeGradient[i], accuracy: 1e-6)
        }
        XCTAssertEqual(loss.finish(), 0, "finish forgets what was added")
    }

    /// A half-precision target holds each value to 2⁻¹¹ of itself, ReLU outputs far above float16's largest value
    /// included, in half the bytes; the loss and its gradient are those of the rounded target.
    func testHalfPrecisionTarget() {
        let (channels, height, width) = (2, 4, 6)
        let count = channels * height * width
        let target = (0 ..< count).map { Float(max(0, sin(Double($0) * 1.3))) * ($0 % 3 == 0 ? 300_000 : 7) }
        let features = (0 ..< count).map { Float(cos(Double($0) * 0.9)) * 5 }
        let single = ContentLoss(target: target, channels: channels, height: height, width: width)
        var half = ContentLoss(target: target, channels: channels, height: height, width: width, precision: .half)
        XCTAssertEqual(half.targetBytes * 2, single.targetBytes)
        let rounded = half.target
        for i in 0 ..< count {
            XCTAssertEqual(rounded[i], target[i], accuracy: target[i] * 0x1p-11, "element \(i)")
        }
        XCTAssertTrue(rounded.contains { $0 > 65504 })
        var exact = ContentLoss(target: rounded, channels: channels, height: height, width: width)
        features.withUnsafeBufferPointer {
            half.add($0, rows: 0 ..< height)
            exact.add($0, rows: 0 ..< height)
        }
        XCTAssertEqual(half.finish(), exact.finish())
        var gradients = [[Float](repeating: 0, count: count), [Float](repeating: 0, count: count)]
        features.withUnsafeBufferPointer { f in
            gradients[0].withUnsafeMutableBufferPointer { half.addGradient(features: f, rows: 0 ..< height, weight: 3, into: $0) }
            gradients[1].withUnsafeMutableBufferPointer { exact.addGradient(features: f, rows: 0 ..< height, weight: 3, into: $0) }
        }
        XCTAssertEqual(gradients[0], gradients[1])
    }

    private func stripeOf(_ map: [Float], rows: Range<Int>, channels: Int, height: Int, width: Int) -> [Float] {
        (0 ..< channels).flatMap { c in map[(c * height + rows.lowerBound) * width ..< (c * height + rows.upperBound) * width] }
    }
}

import XCTest
@testable import StyleTransfer

/// The mirrored margin the network sees around the image, and the fold of its gradient back onto the image.
final class MarginTests: XCTestCase {
    func testMirroredValues() {
        // One channel, 3 × 4: values 10 · y + x.
        let image: [Float] = (0 ..< 12).map { Float(10 * ($0 / 4) + $0 % 4) }
        let padded = mirrorMargin(image, channels: 1, height: 3, width: 4, margin: 2)
        XCTAssertEqual(padded.count, 7 * 8)
        // Row −2 is row 2, row −1 row 1; column −2 is column 2, column 4 column 2, column 5 column 1.
        XCTAssertEqual(Array(padded[0 ..< 8]), [22, 21, 20, 21, 22, 23, 22, 21])
        XCTAssertEqual(Array(padded[16 ..< 24]), [2, 1, 0, 1, 2, 3, 2, 1])
        XCTAssertEqual(Array(padded[48 ..< 56]), [2, 1, 0, 1, 2, 3, 2, 1], "row 4 is row 0")
    }

    /// ⟨mirror(x), g⟩ = ⟨x, fold(g)⟩ for every margin up to the shorter side less one.
    func testFoldIsTheAdjointOfMirror() {
        var random = TestRandom(state: 51)
        for (channels, height, width, margin) in [(3, 5, 7, 1), (3, 5, 7, 4), (1, 2, 9, 1), (2, 16, 3, 2)] {
            let x = random.array(channels * height * width, -1, 1)
            let padded = mirrorMargin(x, channels: channels, height: height, width: width, margin: margin)
            let g = random.array(padded.count, -1, 1)
            var folded = [Float](repeating: 7, count: x.count)
            g.withUnsafeBufferPointer { g in
                folded.withUnsafeMutableBufferPointer {
                    foldMargin(g, channels: channels, height: height, width: width, margin: margin, into: $0)
                }
            }
            let lhs = zip(padded, g).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let rhs = zip(x, folded).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(lhs, rhs, accuracy: 1e-4, "\(channels)×\(height)×\(width) margin \(margin)")
        }
    }
}

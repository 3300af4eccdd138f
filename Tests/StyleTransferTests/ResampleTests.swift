import XCTest
import StyleTransfer


final class ResampleTests: XCTestCase {
    func testEqualSizeReturnsSameBytes() {
        var random = TestRandom(state: 1)
        let image = random.array(3 * 7 * 5, 0, 255)
        let result = resample(image, channels: 3, height: 7, width: 5, toHeight: 7, toWidth: 5)
        XCTAssertEqual(result.map(\.bitPattern), image.map(\.bitPattern))
    }

    func testConstantImageStaysConstant() {
        let sizes = [(6, 9, 13, 20), (20, 13, 9, 6), (5, 12, 11, 4), (7, 7, 3, 7), (1, 1, 4, 6), (9, 4, 1, 1)]
        for (height, width, newHeight, newWidth) in sizes {
            let image = [Float](repeating: 0.7, count: 2 * height * width) + [Float](repeating: 200, count: height * width)
            let result = resample(image, channels: 3, height: height, width: width, toHeight: newHeight, toWidth: newWidth)
            XCTAssertEqual(result.count, 3 * newHeight * newWidth)
            for (i, value) in result.enumerated() {
                let expected: Float = i < 2 * newHeight * newWidth ? 0.7 : 200
                XCTAssertEqual(value, expected, accuracy: 1e-6 * expected, "\(height)×\(width) → \(newHeight)×\(newWidth) at \(i)")
            }
        }
    }

    func testDownsamplingByTwoIsTwoByTwoMean() {
        var random = TestRandom(state: 2)
        let image = random.array(3 * 8 * 10, 0, 255)
        let result = resample(image, channels: 3, height: 8, width: 10, toHeight: 4, toWidth: 5)
        for c in 0..<3 {
            for y in 0..<4 {
                for x in 0..<5 {
                    let at = { (dy: Int, dx: Int) in image[(c * 8 + 2 * y + dy) * 10 + 2 * x + dx] }
                    let mean = (at(0, 0) + at(0, 1) + at(1, 0) + at(1, 1)) / 4
                    XCTAssertEqual(result[(c * 4 + y) * 5 + x], mean, accuracy: 2e-5 * 255)
                }
            }
        }
    }

    func testAreaAveragingWeighsPartialPixelsByOverlap() {
        // 3 → 2 samples: each output covers 1.5 inputs.
        let row: [Float] = [3, 6, 12]
        XCTAssertEqual(resample(row, channels: 1, height: 1, width: 3, toHeight: 1, toWidth: 2),
                       [(3 + 6 * 0.5) / 1.5, (6 * 0.5 + 12) / 1.5])
        // Any factor keeps the mean: Σ output · (in/out) = Σ input.
        var random = TestRandom(state: 3)
        let column = random.array(17, 0, 255)
        let shrunk = resample(column, channels: 1, height: 17, width: 1, toHeight: 5, toWidth: 1)
        XCTAssertEqual(shrunk.reduce(0, +) * 17 / 5, column.reduce(0, +), accuracy: 1e-5 * column.reduce(0, +))
    }

    func testBilinearUpsamplingKnownValues() {
        // Pixel centres aligned: output o samples input position (o + ½) · 2/4 − ½, clamped to [0, 1].
        XCTAssertEqual(resample([0, 1], channels: 1, height: 1, width: 2, toHeight: 1, toWidth: 4), [0, 0.25, 0.75, 1])
    }

    func testBilinearUpsamplingPreservesRamps() {
        // f(y, x) = 3 + 2x − 5y in input pixel coordinates, enlarged from 6 × 7 to 15 × 16.
        let height = 6, width = 7, newHeight = 15, newWidth = 16
        var image = [Float](repeating: 0, count: height * width)
        for y in 0..<height { for x in 0..<width { image[y * width + x] = Float(3 + 2 * x - 5 * y) } }
        let result = resample(image, channels: 1, height: height, width: width, toHeight: newHeight, toWidth: newWidth)
        func position(_ o: Int, _ input: Int, _ output: Int) -> Double {
            (Double(o) + 0.5) * Double(input) / Double(output) - 0.5
        }
        var checked = 0
        for oy in 0..<newHeight {
            for ox in 0..<newWidth {
                let y = position(oy, height, newHeight), x = position(ox, width, newWidth)
                // Away from the half-sample border band, where edge samples are replicated.
                guard y >= 0 && y <= Double(height - 1) && x >= 0 && x <= Double(width - 1) else { continue }
                XCTAssertEqual(Double(result[oy * newWidth + ox]), 3 + 2 * x - 5 * y, accuracy: 1e-4, "at \(oy), \(ox)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 150)
    }

    func testMixedDirectionsResampleEachAxisWithItsFilter() {
        // Height halves (area mean), width doubles (linear): rows (1, 3) and (5, 7) → mean rows (3, 5).
        let image: [Float] = [1, 3, 5, 7]
        XCTAssertEqual(resample(image, channels: 1, height: 2, width: 2, toHeight: 1, toWidth: 4), [3, 3.5, 4.5, 5])
    }
}

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

    func testHalvingWeighsFourSamplesAsATent() {
        var random = TestRandom(state: 2)
        let image = random.array(3 * 8 * 10, 0, 255)
        let result = resample(image, channels: 3, height: 8, width: 10, toHeight: 4, toWidth: 5)
        /// The 1-D weights of output o over the inputs of an axis of n samples: ⅛ ⅜ ⅜ ⅛ around 2o + ½, renormalized
        /// where a tap falls outside.
        func taps(_ o: Int, _ n: Int) -> [(Int, Double)] {
            let all = [(2 * o - 1, 1.0), (2 * o, 3.0), (2 * o + 1, 3.0), (2 * o + 2, 1.0)].filter { $0.0 >= 0 && $0.0 < n }
            let total = all.reduce(0) { $0 + $1.1 }
            return all.map { ($0.0, $0.1 / total) }
        }
        for c in 0..<3 {
            for y in 0..<4 {
                for x in 0..<5 {
                    var expected = 0.0
                    for (iy, wy) in taps(y, 8) {
                        for (ix, wx) in taps(x, 10) { expected += wy * wx * Double(image[(c * 8 + iy) * 10 + ix]) }
                    }
                    XCTAssertEqual(Double(result[(c * 4 + y) * 5 + x]), expected, accuracy: 2e-5 * 255)
                }
            }
        }
    }

    func testShrinkingMatchesTheStretchedTent() {
        // 3 → 2 samples: s = 1.5, centres 0.25 and 1.75; weights 1 − |i − c| / 1.5 over the samples inside.
        let row: [Float] = [3, 6, 12]
        let first = [(0, 1 - 0.25 / 1.5), (1, 1 - 0.75 / 1.5)], second = [(1, 1 - 0.75 / 1.5), (2, 1 - 0.25 / 1.5)]
        func value(_ taps: [(Int, Double)]) -> Float {
            Float(taps.reduce(0) { $0 + $1.1 * Double(row[$1.0]) } / taps.reduce(0) { $0 + $1.1 })
        }
        let shrunk = resample(row, channels: 1, height: 1, width: 3, toHeight: 1, toWidth: 2)
        XCTAssertEqual(shrunk[0], value(first), accuracy: 1e-5)
        XCTAssertEqual(shrunk[1], value(second), accuracy: 1e-5)
        // Any size: the tent of the documentation, computed here in float64, on a random 2-D image.
        var random = TestRandom(state: 3)
        let (height, width, newHeight, newWidth) = (17, 40, 5, 13)
        let image = random.array(height * width, 0, 255)
        func taps(_ o: Int, _ n: Int, _ m: Int) -> [(Int, Double)] {
            let scale = Double(n) / Double(m), centre = (Double(o) + 0.5) * scale - 0.5
            let all = (0..<n).map { ($0, max(0, 1 - abs(Double($0) - centre) / scale)) }.filter { $0.1 > 0 }
            let total = all.reduce(0) { $0 + $1.1 }
            return all.map { ($0.0, $0.1 / total) }
        }
        let result = resample(image, channels: 1, height: height, width: width, toHeight: newHeight, toWidth: newWidth)
        for y in 0..<newHeight {
            for x in 0..<newWidth {
                var expected = 0.0
                for (iy, wy) in taps(y, height, newHeight) {
                    for (ix, wx) in taps(x, width, newWidth) { expected += wy * wx * Double(image[iy * width + ix]) }
                }
                XCTAssertEqual(Double(result[y * newWidth + x]), expected, accuracy: 1e-3, "at \(y), \(x)")
            }
        }
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
        // Height halves (a tent over both rows, equal weights), width doubles (linear): rows (1, 3) and (5, 7) → (3, 5).
        let image: [Float] = [1, 3, 5, 7]
        XCTAssertEqual(resample(image, channels: 1, height: 2, width: 2, toHeight: 1, toWidth: 4), [3, 3.5, 4.5, 5])
    }
}

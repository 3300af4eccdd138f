import XCTest
import StyleTransfer


final class ColorTests: XCTestCase {
    func testKnownYIQValues() {
        // Planar (3, 1, 5): red, green, blue, white, mid grey.
        var image: [Float] = [1, 0, 0, 1, 0.5, 0, 1, 0, 1, 0.5, 0, 0, 1, 1, 0.5]
        YIQ.convertFromRGB(&image)
        let y = Array(image[0..<5]), i = Array(image[5..<10]), q = Array(image[10..<15])
        let expected: [(Float, Float, Float)] = [
            (0.299, 0.595716, 0.211456), (0.587, -0.274453, -0.522591), (0.114, -0.321263, 0.311135), (1, 0, 0), (0.5, 0, 0),
        ]
        for (k, (ey, ei, eq)) in expected.enumerated() {
            XCTAssertEqual(y[k], ey, accuracy: 1e-6, "Y of pixel \(k)")
            XCTAssertEqual(i[k], ei, accuracy: 1e-6, "I of pixel \(k)")
            XCTAssertEqual(q[k], eq, accuracy: 1e-6, "Q of pixel \(k)")
        }
    }

    func testInverseMatrixIsExact() {
        let a = YIQ.fromRGBMatrix, b = YIQ.toRGBMatrix
        for i in 0..<3 {
            for j in 0..<3 {
                let product = (0..<3).reduce(0) { $0 + a[i * 3 + $1] * b[$1 * 3 + j] }
                XCTAssertEqual(product, i == j ? 1 : 0, accuracy: 1e-12)
            }
        }
    }

    func testRoundTrip() {
        var random = TestRandom(state: 1)
        let image = random.array(3 * 40 * 30)
        var converted = image
        YIQ.convertFromRGB(&converted)
        YIQ.convertToRGB(&converted)
        for k in image.indices { XCTAssertEqual(converted[k], image[k], accuracy: 1e-5) }
        XCTAssertNotEqual(Array(converted[0..<10]), Array(converted[1200..<1210]), "planes must not be mixed up")
    }

    func testLuminanceIsTheYPlane() {
        var random = TestRandom(state: 2)
        let image = random.array(3 * 6 * 4)
        var converted = image
        YIQ.convertFromRGB(&converted)
        XCTAssertEqual(YIQ.luminance(ofRGB: image), Array(converted[0..<24]))
    }

    func testReplacingLuminanceKeepsChrominance() {
        var random = TestRandom(state: 3)
        let content = random.array(3 * 5 * 5)
        let stylized = random.array(5 * 5)
        let result = YIQ.replacingLuminance(of: content, with: stylized)
        var resultYIQ = result, contentYIQ = content
        YIQ.convertFromRGB(&resultYIQ)
        YIQ.convertFromRGB(&contentYIQ)
        for p in 0..<25 {
            XCTAssertEqual(resultYIQ[p], stylized[p], accuracy: 1e-5, "Y")
            XCTAssertEqual(resultYIQ[25 + p], contentYIQ[25 + p], accuracy: 1e-5, "I")
            XCTAssertEqual(resultYIQ[50 + p], contentYIQ[50 + p], accuracy: 1e-5, "Q")
        }
    }

    func testMatchMeanAndDeviation() {
        var random = TestRandom(state: 4)
        var plane = random.array(300).map { $0 * 0.2 + 0.1 }
        let reference = random.array(77).map { $0 * 200 + 20 }
        matchMeanAndDeviation(&plane, to: reference)
        let (mean, deviation) = statistics(plane), (referenceMean, referenceDeviation) = statistics(reference)
        XCTAssertEqual(mean, referenceMean, accuracy: 1e-4)
        XCTAssertEqual(deviation, referenceDeviation, accuracy: 1e-4)

        var flat = [Float](repeating: 3, count: 10)
        matchMeanAndDeviation(&flat, to: reference)
        for v in flat { XCTAssertEqual(Double(v), referenceMean, accuracy: 1e-4) }
    }

    func testMatchColorStatisticsGivesReferenceMeanAndCovariance() {
        var random = TestRandom(state: 5)
        // Two images with different, correlated colour distributions, of different sizes.
        func correlated(_ pixels: Int, _ mix: [Float], _ offset: [Float]) -> [Float] {
            let noise = random.array(3 * pixels)
            var image = [Float](repeating: 0, count: 3 * pixels)
            for c in 0..<3 {
                for p in 0..<pixels {
                    image[c * pixels + p] = offset[c] + (0..<3).reduce(0) { $0 + mix[c * 3 + $1] * noise[$1 * pixels + p] }
                }
            }
            return image
        }
        var style = correlated(400, [1, 0.5, 0, 0, 1, 0.2, 0.3, 0, 0.4], [0.1, 0.2, 0])
        let content = correlated(250, [80, -10, 5, 20, 60, 0, 0, 30, 90], [50, 10, 30])
        matchColorStatistics(&style, to: content)
        let (mean, covariance) = colorStatistics(style), (referenceMean, referenceCovariance) = colorStatistics(content)
        for c in 0..<3 { XCTAssertEqual(mean[c], referenceMean[c], accuracy: 1e-3) }
        let scale = referenceCovariance.map(abs).max()!
        for k in 0..<9 { XCTAssertEqual(covariance[k], referenceCovariance[k], accuracy: 1e-5 * scale, "covariance \(k)") }

        // A grey image (rank-one covariance) must stay finite.
        var grey = [Float](repeating: 0, count: 3 * 50)
        let level = random.array(50)
        for c in 0..<3 { for p in 0..<50 { grey[c * 50 + p] = level[p] } }
        matchColorStatistics(&grey, to: content)
        XCTAssertTrue(grey.allSatisfy(\.isFinite))
    }
}

private func statistics(_ values: [Float]) -> (mean: Double, deviation: Double) {
    let mean = values.reduce(0.0) { $0 + Double($1) } / Double(values.count)
    let variance = values.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(values.count)
    return (mean, variance.squareRoot())
}

/// Per-channel mean and population covariance (3 × 3, row-major) of a planar RGB image, float64.
private func colorStatistics(_ image: [Float]) -> (mean: [Double], covariance: [Double]) {
    let pixels = image.count / 3
    let mean = (0..<3).map { c in (0..<pixels).reduce(0.0) { $0 + Double(image[c * pixels + $1]) } / Double(pixels) }
    var covariance = [Double](repeating: 0, count: 9)
    for i in 0..<3 {
        for j in 0..<3 {
            covariance[i * 3 + j] = (0..<pixels).reduce(0.0) {
                $0 + (Double(image[i * pixels + $1]) - mean[i]) * (Double(image[j * pixels + $1]) - mean[j])
            } / Double(pixels)
        }
    }
    return (mean, covariance)
}

import XCTest
@testable import StyleTransfer

/// The W2 term against its closed form for covariances that share their eigenvectors, where
/// W2² = |μ − μₜ|² + Σᵢ (√aᵢ − √bᵢ)² for eigenvalues aᵢ of Σ and bᵢ of Σₜ.
final class WassersteinTests: XCTestCase {
    /// R diag(values) Rᵀ for the rotation R of angle θ in the (0, 1) plane and of angle φ in the (1, 2) plane.
    private func rotated(_ values: [Double], _ theta: Double, _ phi: Double) -> [Double] {
        let first: [Double] = [cos(theta), -sin(theta), 0, sin(theta), cos(theta), 0, 0, 0, 1]
        let second: [Double] = [1, 0, 0, 0, cos(phi), -sin(phi), 0, sin(phi), cos(phi)]
        var r = [Double](repeating: 0, count: 9)
        for i in 0 ..< 3 { for j in 0 ..< 3 { for k in 0 ..< 3 { r[i * 3 + j] += first[i * 3 + k] * second[k * 3 + j] } } }
        var result = [Double](repeating: 0, count: 9)
        for i in 0 ..< 3 { for j in 0 ..< 3 { for k in 0 ..< 3 { result[i * 3 + j] += r[i * 3 + k] * values[k] * r[j * 3 + k] } } }
        return result
    }

    private func secondMoment(_ covariance: [Double], _ mean: [Double]) -> [Double] {
        (0 ..< 9).map { covariance[$0] + mean[$0 / 3] * mean[$0 % 3] }
    }

    func testValueMatchesTheClosedFormForCommutingCovariances() {
        let (a, b) = ([4.0, 1.0, 0.25], [1.0, 9.0, 0.5])
        let (mean, targetMean) = ([1.0, -2.0, 0.5], [0.0, 1.0, 3.0])
        let target = GaussianTarget(gram: secondMoment(rotated(b, 0.7, -0.4), targetMean).map { Float($0) },
                                    mean: targetMean.map { Float($0) }, channels: 3)
        let term = wassersteinTerm(target: target, mean: mean, secondMoment: secondMoment(rotated(a, 0.7, -0.4), mean))
        var expected = 0.0
        for i in 0 ..< 3 {
            expected += (mean[i] - targetMean[i]) * (mean[i] - targetMean[i])
            expected += (a[i].squareRoot() - b[i].squareRoot()) * (a[i].squareRoot() - b[i].squareRoot())
        }
        // The target's Gram passes through float32; the rest is float64.
        XCTAssertEqual(term.value, expected / 3, accuracy: 1e-5 * expected)
    }

    /// D = ∂E/∂Σ for commuting covariances is R diag((1 − √(bᵢ/aᵢ)) / C) Rᵀ.
    func testCovarianceGradientMatchesTheClosedForm() {
        let (a, b) = ([4.0, 1.0, 0.25], [1.0, 9.0, 0.5])
        let mean = [0.5, 0.5, 0.5]
        let target = GaussianTarget(gram: secondMoment(rotated(b, 0.3, 1.1), mean).map { Float($0) },
                                    mean: mean.map { Float($0) }, channels: 3)
        let term = wassersteinTerm(target: target, mean: mean, secondMoment: secondMoment(rotated(a, 0.3, 1.1), mean))
        let expected = rotated((0 ..< 3).map { (1 - (b[$0] / a[$0]).squareRoot()) / 3 }, 0.3, 1.1)
        for i in 0 ..< 9 { XCTAssertEqual(term.covarianceGradient[i], expected[i], accuracy: 1e-5, "entry \(i)") }
    }

    func testEigenDecompositionReconstructsTheMatrix() throws {
        let matrix = rotated([5, -1, 2], 0.9, 0.2)
        let eigen = try XCTUnwrap(SymmetricEigen(matrix, order: 3))
        XCTAssertEqual(eigen.values, [-1, 2, 5].map { $0 }, accuracy: 1e-12)
        let back = eigen.applying { $0 }
        for i in 0 ..< 9 { XCTAssertEqual(back[i], matrix[i], accuracy: 1e-12) }
    }

    /// Features that are not finite give a value that is not either (the driver reports divergence), not a crash.
    func testNonFiniteFeaturesGiveANonFiniteValue() {
        let target = GaussianTarget(gram: [2, 0, 0, 1], mean: [0, 0], channels: 2)
        XCTAssertTrue(wassersteinTerm(target: target, mean: [.nan, 0], secondMoment: [1, 0, 0, 1]).value.isNaN)
        XCTAssertTrue(wassersteinTerm(target: target, mean: [0, 0], secondMoment: [.infinity, 0, 0, 1]).value.isNaN)
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath,
                            line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}

import Foundation
import XCTest
@testable import StyleTransfer


/// f(x) = ½ (x − x*)ᵀ A (x − x*) with A = Q diag(λ) Qᵀ, λ log-spaced from 1 to `condition`, Q a
/// product of three Householder reflections: minimum 0 at x*, evaluated in float64.
private struct Quadratic {
    let dimension: Int
    let matrix: [Double]  // (dimension, dimension)
    let minimizer: [Double]  // (dimension)

    init(dimension: Int, condition: Double, seed: UInt64) {
        var random = TestRandom(state: seed)
        var q = [Double](repeating: 0, count: dimension * dimension)
        for i in 0..<dimension { q[i * dimension + i] = 1 }
        for _ in 0..<3 {
            let v = (0..<dimension).map { _ in random.uniformDouble(-1, 1) }
            let norm2 = v.reduce(0) { $0 + $1 * $1 }
            for r in 0..<dimension {  // Q ← Q (I − 2 v vᵀ / vᵀv)
                let qv = (0..<dimension).reduce(0) { $0 + q[r * dimension + $1] * v[$1] }
                for c in 0..<dimension { q[r * dimension + c] -= 2 * qv * v[c] / norm2 }
            }
        }
        let eigenvalues = (0..<dimension).map { pow(condition, Double($0) / Double(dimension - 1)) }
        var a = [Double](repeating: 0, count: dimension * dimension)
        for i in 0..<dimension {
            for j in 0..<dimension {
                a[i * dimension + j] = (0..<dimension).reduce(0) { $0 + q[i * dimension + $1] * eigenvalues[$1] * q[j * dimension + $1] }
            }
        }
        self.dimension = dimension
        matrix = a
        minimizer = (0..<dimension).map { _ in random.uniformDouble(-2, 2) }
    }

    func evaluate(_ x: UnsafeBufferPointer<Float>, _ gradient: UnsafeMutableBufferPointer<Float>) -> Double {
        let d = (0..<dimension).map { Double(x[$0]) - minimizer[$0] }
        var value = 0.0
        for i in 0..<dimension {
            let g = (0..<dimension).reduce(0) { $0 + matrix[i * dimension + $1] * d[$1] }
            gradient[i] = Float(g)
            value += 0.5 * d[i] * g
        }
        return value
    }

    func distance(_ x: [Float]) -> Double {
        zip(x, minimizer).map { abs(Double($0) - $1) }.max()!
    }
}

/// The extended Rosenbrock function (Moré, Garbow, Hillstrom no. 21) on an even number of
/// variables: Σ over pairs 100 (x₂ᵢ − x₂ᵢ₋₁²)² + (1 − x₂ᵢ₋₁)², minimum 0 at (1, …, 1). In 2-D it
/// is the classic Rosenbrock function. Evaluated in float64.
private func rosenbrock(_ x: UnsafeBufferPointer<Float>, _ gradient: UnsafeMutableBufferPointer<Float>) -> Double {
    var value = 0.0
    for pair in stride(from: 0, to: x.count, by: 2) {
        let a = Double(x[pair]), b = Double(x[pair + 1])
        let valley = b - a * a
        value += 100 * valley * valley + (1 - a) * (1 - a)
        gradient[pair] = Float(-400 * a * valley - 2 * (1 - a))
        gradient[pair + 1] = Float(200 * valley)
    }
    return value
}

/// Runs `optimizer` until `done(x)`, an unmoved step, or `maxSteps`; returns the steps' infos.
private func minimize(_ optimizer: Optimizer, from start: [Float], maxSteps: Int, objective: Objective,
                 until done: ([Float]) -> Bool = { _ in false }) throws -> (x: [Float], steps: [StepInfo]) {
    var x = start
    var steps: [StepInfo] = []
    while steps.count < maxSteps && !done(x) {
        let info = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: objective) }
        steps.append(info)
        if !info.moved { break }
    }
    return (x, steps)
}

private func evaluations(_ steps: [StepInfo]) -> Int { steps.reduce(0) { $0 + $1.evaluations } }

private struct Interrupted: Error {}

final class OptimizerTests: XCTestCase {
    // MARK: L-BFGS

    /// The two-loop recursion against the dense BFGS update it stands for:
    /// H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ from H₀ = γ I, pairs oldest first, d = −H g, in both
    /// history precisions. The reference uses the pairs as stored (in half precision, rounded and
    /// scaled), with ρ from them, so it checks the recursion and the scales; the rounding itself is
    /// checked against the pairs as given: 2⁻¹¹ relative, float16's half unit in the last place.
    func testTwoLoopDirectionEqualsDenseBFGSUpdates() {
        var random = TestRandom(state: 13)
        let n = 6
        let curvature = Quadratic(dimension: n, condition: 20, seed: 14).matrix  // y = A s: sᵀy > 0
        var s: [[Float]] = [], y: [[Float]] = []
        for pair in 0..<3 {
            // Magnitudes far outside float16's range (10⁻⁹ and 10⁷), to exercise the scales.
            let magnitude = pair == 1 ? 1e-9 : 1e7
            let step = (0..<n).map { _ in magnitude * random.uniformDouble(-1, 1) }
            let change = (0..<n).map { i in (0..<n).reduce(0) { $0 + curvature[i * n + $1] * step[$1] } }
            s.append(step.map { Float($0) })
            y.append(change.map { Float($0) })
        }
        let gradient = (0..<n).map { _ in Float(random.uniformDouble(-1, 1)) }
        let gamma = 0.37

        for precision in LBFGS.HistoryPrecision.allCases {
            // The history holds (s₀, s₁, s₂, y₀, y₁, y₂); vectors (g, d, 0) are float buffers.
            let history = ScaledVectors(count: 6, length: n, precision: precision)
            let work = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3 * n)
            defer { work.deallocate() }
            _ = work.initialize(from: gradient + [Float](repeating: 0, count: 2 * n))
            let vector = { (slot: Int) in UnsafeMutableBufferPointer(rebasing: work[(slot * n)..<((slot + 1) * n)]) }
            let zero = UnsafeBufferPointer(vector(2))
            for (index, values) in (s + y).enumerated() {
                values.withUnsafeBufferPointer { buffer in
                    let v = VectorDifference(buffer, zero)
                    history.store(v, scale: history.scale(for: v), at: index)
                }
            }
            let stored = (0..<6).map { v in (0..<n).map { history.value(v, $0) } }
            for (v, values) in (s + y).enumerated() {
                let largest = values.map { abs(Double($0)) }.max()!
                for i in 0..<n {
                    let tolerance = precision == .single ? 0 : 0x1p-11 * abs(Double(values[i])) + 0x1p-40 * largest
                    XCTAssertEqual(stored[v][i], Double(values[i]), accuracy: tolerance, "\(precision) vector \(v) element \(i)")
                }
            }
            let storedS = Array(stored[0..<3]), storedY = Array(stored[3..<6])
            let rho = (0..<3).map { k in 1 / zip(storedS[k], storedY[k]).reduce(0) { $0 + $1.0 * $1.1 } }

            var h = [Double](repeating: 0, count: n * n)
            for i in 0..<n { h[i * n + i] = gamma }
            for k in 0..<3 {
                // (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ
                var left = [Double](repeating: 0, count: n * n), updated = [Double](repeating: 0, count: n * n)
                for i in 0..<n {
                    for j in 0..<n {
                        left[i * n + j] = (0..<n).reduce(0) { sum, l in
                            sum + ((i == l ? 1 : 0) - rho[k] * storedS[k][i] * storedY[k][l]) * h[l * n + j]
                        }
                    }
                }
                for i in 0..<n {
                    for j in 0..<n {
                        updated[i * n + j] = (0..<n).reduce(0) { sum, l in
                            sum + left[i * n + l] * ((l == j ? 1 : 0) - rho[k] * storedY[k][l] * storedS[k][j])
                        } + rho[k] * storedS[k][i] * storedS[k][j]
                    }
                }
                h = updated
            }
            let expected = (0..<n).map { i in -(0..<n).reduce(0) { $0 + h[i * n + $1] * Double(gradient[$1]) } }

            twoLoopDirection(gradient: vector(0), history: history, pairs: (0..<3).map { (s: $0, y: 3 + $0, rho: rho[$0]) },
                             gamma: gamma, into: vector(1))
            let direction = Array(vector(1))
            let scale = expected.map { abs($0) }.max()!
            for i in 0..<n {
                XCTAssertEqual(Double(direction[i]), expected[i], accuracy: 1e-5 * scale, "\(precision) component \(i)")
            }
        }
    }

    func testLBFGSMinimizesIllConditionedQuadratic() throws {
        let quadratic = Quadratic(dimension: 50, condition: 100, seed: 11)
        let optimizer = LBFGS(parameterCount: 50)
        let (x, steps) = try minimize(optimizer, from: [Float](repeating: 0, count: 50), maxSteps: 500,
                                 objective: quadratic.evaluate) { quadratic.distance($0) < 1e-4 }
        XCTAssertLessThan(quadratic.distance(x), 1e-4)
        XCTAssertLessThan(evaluations(steps), 100)
        XCTAssertLessThanOrEqual(Double(evaluations(steps)), 1.2 * Double(steps.count) + 2, "line search too costly")
        for (before, after) in zip(steps, steps.dropFirst()) {
            XCTAssertLessThanOrEqual(after.value, before.value, "L-BFGS with Armijo never increases f")
        }
    }

    func testLBFGSMinimizesRosenbrock2D() throws {
        let optimizer = LBFGS(parameterCount: 2)
        let (x, steps) = try minimize(optimizer, from: [-1.2, 1], maxSteps: 500, objective: rosenbrock) {
            abs($0[0] - 1) < 1e-4 && abs($0[1] - 1) < 1e-4
        }
        XCTAssertEqual(x[0], 1, accuracy: 1e-4)
        XCTAssertEqual(x[1], 1, accuracy: 1e-4)
        XCTAssertLessThan(evaluations(steps), 200)
    }

    func testLBFGSMinimizesRosenbrock10D() throws {
        let start = (0..<10).map { $0 % 2 == 0 ? Float(-1.2) : 1 }
        let optimizer = LBFGS(parameterCount: 10, historySize: 8)
        let (x, steps) = try minimize(optimizer, from: start, maxSteps: 1000, objective: rosenbrock) {
            $0.allSatisfy { abs($0 - 1) < 1e-4 }
        }
        for value in x { XCTAssertEqual(value, 1, accuracy: 1e-4) }
        XCTAssertLessThan(evaluations(steps), 150)
    }

    /// A style-transfer-like objective: features F (8 × 64) pulled to a target Gram plus a weak
    /// content term (minimum near 0.0037). One evaluation per iteration on average is what makes L-BFGS
    /// worth it when an evaluation costs a second.
    func testLBFGSOnStyleLossNeedsAboutOneEvaluationPerStep() throws {
        var random = TestRandom(state: 12)
        let channels = 8, pixels = 64
        let start = (0..<(channels * pixels)).map { _ in Float(random.uniformDouble(0, 1)) }
        let style = (0..<(channels * pixels)).map { _ in Float(random.uniformDouble(0, 2)) }
        let target = style.withUnsafeBufferPointer { gramMatrix($0, channels: channels, pixels: pixels) }
        var loss = StyleLoss(target: target, channels: channels)
        let objective: Objective = { x, gradient in
            for i in 0..<gradient.count { gradient[i] = 0 }
            let content = start.withUnsafeBufferPointer { contentLoss(features: x, target: $0, weight: 0.01, addingGradientTo: gradient) }
            return 0.01 * content + loss.evaluate(features: x, pixels: pixels, weight: 1, addingGradientTo: gradient)
        }
        let (_, steps) = try minimize(LBFGS(parameterCount: channels * pixels), from: start, maxSteps: 100, objective: objective)
        // Count the steps that still make progress (relative decrease above 10⁻⁵): near the float32
        // floor the Armijo test meets rounding noise and backtracks, which costs a few evaluations.
        let progressing = zip(steps, steps.dropFirst()).prefix { $1.value < $0.value * (1 - 1e-5) }.count + 1
        let spent = evaluations(Array(steps.prefix(progressing)))
        XCTAssertGreaterThan(progressing, 20)
        XCTAssertLessThan(steps.last!.value, 0.1 * steps[0].value)
        XCTAssertLessThanOrEqual(Double(spent), 1.2 * Double(progressing) + 1, "line search too costly")
    }

    func testLBFGSFirstStepMovesLargestCoordinateByFirstStep() throws {
        let optimizer = LBFGS(parameterCount: 3, firstStep: 0.5)
        var x: [Float] = [3, 1, -2]
        let halfSquare: Objective = { x, gradient in  // ½ |x|², gradient x
            for i in 0..<x.count { gradient[i] = x[i] }
            return x.reduce(0) { $0 + 0.5 * Double($1) * Double($1) }
        }
        let info = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: halfSquare) }
        XCTAssertEqual(info.evaluations, 2)
        XCTAssertEqual(x[0], 2.5, accuracy: 1e-6)
        XCTAssertEqual(x[1], 1 - 0.5 / 3, accuracy: 1e-6)
        XCTAssertEqual(info.value, Double(x[0] * x[0] + x[1] * x[1] + x[2] * x[2]) / 2, accuracy: 1e-6)
    }

    func testLBFGSAtMinimumDoesNotMove() throws {
        let optimizer = LBFGS(parameterCount: 2)
        var x: [Float] = [1, 1]
        let info = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: rosenbrock) }
        XCTAssertEqual(info, StepInfo(value: 0, evaluations: 1, moved: false))
        XCTAssertEqual(x, [1, 1])
    }

    func testLBFGSRestoresParametersWhenObjectiveThrows() throws {
        let optimizer = LBFGS(parameterCount: 2)
        var x: [Float] = [-1.2, 1]
        for _ in 0..<5 { _ = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: rosenbrock) } }
        let accepted = x
        XCTAssertThrowsError(try x.withUnsafeMutableBufferPointer { buffer in
            try optimizer.step(buffer) { _, _ in throw Interrupted() }
        })
        XCTAssertEqual(x, accepted, "x must be the last accepted point after an error")
        // The optimizer stays usable: its cached gradient still belongs to x.
        let (final, steps) = try minimize(optimizer, from: x, maxSteps: 500, objective: rosenbrock) {
            abs($0[0] - 1) < 1e-4 && abs($0[1] - 1) < 1e-4
        }
        XCTAssertEqual(steps.first?.evaluations, 1, "no re-evaluation needed after a thrown trial")
        XCTAssertEqual(final[0], 1, accuracy: 1e-4)
    }

    func testResetForgetsCachedEvaluation() throws {
        let optimizer = LBFGS(parameterCount: 2)
        var x: [Float] = [-1.2, 1]
        let first = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: rosenbrock) }
        let second = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: rosenbrock) }
        XCTAssertGreaterThanOrEqual(first.evaluations, 2)
        XCTAssertLessThan(second.value, first.value)
        x = [0.5, 0.5]
        optimizer.reset()
        let restarted = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: rosenbrock) }
        XCTAssertGreaterThanOrEqual(restarted.evaluations, 2, "a reset optimizer evaluates its new starting point")
        XCTAssertLessThan(restarted.value, 6.5, "f(0.5, 0.5) = 6.5 must decrease")
    }

    /// The byte counts against the formula written out: parameterCount · (2 m b + 12) for L-BFGS with
    /// b = 4 or 2, 12 · parameterCount for Adam; each optimizer's count of what it allocated equals the
    /// static prediction.
    func testAllocatedBytes() {
        for (n, m) in [(1, 1), (1000, 5), (12_345, 8)] {
            let single = LBFGS(parameterCount: n, historySize: m)
            let half = LBFGS(parameterCount: n, historySize: m, historyPrecision: .half)
            XCTAssertEqual(single.allocatedBytes, n * (8 * m + 12))
            XCTAssertEqual(half.allocatedBytes, n * (4 * m + 12))
            XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: n, historySize: m, historyPrecision: .single), single.allocatedBytes)
            XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: n, historySize: m, historyPrecision: .half), half.allocatedBytes)
            let adam = Adam(parameterCount: n, learningRate: 0.1)
            XCTAssertEqual(adam.allocatedBytes, 12 * n)
            XCTAssertEqual(Adam.allocatedBytes(parameterCount: n), adam.allocatedBytes)
        }
        // 24 megapixels of RGB with the default history: 3.7 GB in single precision, 2.3 GB in half.
        XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: 72_000_000), 3_744_000_000)
        XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: 72_000_000, historyPrecision: .half), 2_304_000_000)
    }

    // MARK: Adam

    func testAdamApproachesQuadraticMinimum() throws {
        let quadratic = Quadratic(dimension: 50, condition: 100, seed: 11)
        let optimizer = Adam(parameterCount: 50, learningRate: 0.05)
        let (x, steps) = try minimize(optimizer, from: [Float](repeating: 0, count: 50), maxSteps: 2000,
                                 objective: quadratic.evaluate)
        XCTAssertEqual(evaluations(steps), steps.count + 1, "one evaluation per step, plus the start")
        XCTAssertLessThan(quadratic.distance(x), 1e-3)
        XCTAssertLessThan(steps.last!.value, 1e-6 * steps[0].value)
    }

    func testAdamFirstStepMovesEveryCoordinateByLearningRate() throws {
        // With bias correction, m̂ = g and v̂ = g² after one update: each coordinate moves by lr · sign(g).
        let optimizer = Adam(parameterCount: 3, learningRate: 0.1)
        var x: [Float] = [3, -1, 0.001]
        let halfSquare: Objective = { x, gradient in
            for i in 0..<x.count { gradient[i] = x[i] }
            return x.reduce(0) { $0 + 0.5 * Double($1) * Double($1) }
        }
        let info = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: halfSquare) }
        XCTAssertEqual(info.evaluations, 2)
        XCTAssertEqual(x[0], 2.9, accuracy: 1e-6)
        XCTAssertEqual(x[1], -0.9, accuracy: 1e-6)
        XCTAssertEqual(x[2], 0.001 - 0.1, accuracy: 1e-5)
    }

    // MARK: Determinism

    func testSameInputsGiveSameBits() throws {
        let start = (0..<10).map { $0 % 2 == 0 ? Float(-1.2) : 1 }
        func trace(_ make: () -> Optimizer) throws -> ([UInt32], [StepInfo]) {
            let (x, steps) = try minimize(make(), from: start, maxSteps: 40, objective: rosenbrock)
            return (x.map(\.bitPattern), steps)
        }
        let lbfgs1 = try trace { LBFGS(parameterCount: 10) }, lbfgs2 = try trace { LBFGS(parameterCount: 10) }
        XCTAssertEqual(lbfgs1.0, lbfgs2.0)
        XCTAssertEqual(lbfgs1.1, lbfgs2.1)
        let adam1 = try trace { Adam(parameterCount: 10, learningRate: 0.01) }, adam2 = try trace { Adam(parameterCount: 10, learningRate: 0.01) }
        XCTAssertEqual(adam1.0, adam2.0)
        XCTAssertEqual(adam1.1, adam2.1)
    }
}

import Foundation
import XCTest
@testable import Kernels
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

/// Rosenbrock pairs weighted 10³⁰, 1 and 10⁻³⁰ in turn (on 2 · pairs variables): gradients from
/// about 10³² down to 10⁻²⁸ in one vector, far outside float16's range (6 · 10⁻⁸ to 65504) at both
/// ends. Minimum 0 at (1, …, 1); evaluated in float64.
private func weightedRosenbrock(_ x: UnsafeBufferPointer<Float>, _ gradient: UnsafeMutableBufferPointer<Float>) -> Double {
    let weights = [1e30, 1, 1e-30]
    var value = 0.0
    for pair in stride(from: 0, to: x.count, by: 2) {
        let weight = weights[(pair / 2) % weights.count]
        let a = Double(x[pair]), b = Double(x[pair + 1])
        let valley = b - a * a
        value += weight * (100 * valley * valley + (1 - a) * (1 - a))
        gradient[pair] = Float(weight * (-400 * a * valley - 2 * (1 - a)))
        gradient[pair + 1] = Float(weight * 200 * valley)
    }
    return value
}

/// A style-transfer-like objective: features F (8 × 64) pulled to a target Gram plus a weak content
/// term (minimum near 0.0037), with its starting point.
private func styleProblem() -> (start: [Float], objective: Objective) {
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
    return (start, objective)
}

/// Runs `optimizer` until two unmoved steps in a row (the first restarts from −g, the second means
/// no further progress in float32) or `maxSteps`; returns the steps' infos.
private func minimizeToFloor(_ optimizer: Optimizer, from start: [Float], maxSteps: Int,
                             objective: Objective) throws -> (x: [Float], steps: [StepInfo]) {
    var x = start
    var steps: [StepInfo] = []
    while steps.count < maxSteps {
        let info = try x.withUnsafeMutableBufferPointer { try optimizer.step($0, objective: objective) }
        steps.append(info)
        if !info.moved && steps.count >= 2 && !steps[steps.count - 2].moved { break }
    }
    return (x, steps)
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

    // The convergence tests run in both history precisions with the same bounds.

    func testLBFGSMinimizesIllConditionedQuadratic() throws {
        let quadratic = Quadratic(dimension: 50, condition: 100, seed: 11)
        for precision in LBFGS.HistoryPrecision.allCases {
            let optimizer = LBFGS(parameterCount: 50, historyPrecision: precision)
            let (x, steps) = try minimize(optimizer, from: [Float](repeating: 0, count: 50), maxSteps: 500,
                                          objective: quadratic.evaluate) { quadratic.distance($0) < 1e-4 }
            XCTAssertLessThan(quadratic.distance(x), 1e-4, "\(precision)")
            XCTAssertLessThan(evaluations(steps), 100, "\(precision)")
            XCTAssertLessThanOrEqual(Double(evaluations(steps)), 1.2 * Double(steps.count) + 2, "\(precision): line search too costly")
            for (before, after) in zip(steps, steps.dropFirst()) {
                XCTAssertLessThanOrEqual(after.value, before.value, "\(precision): L-BFGS with Armijo never increases f")
            }
        }
    }

    func testLBFGSMinimizesRosenbrock2D() throws {
        for precision in LBFGS.HistoryPrecision.allCases {
            let optimizer = LBFGS(parameterCount: 2, historyPrecision: precision)
            let (x, steps) = try minimize(optimizer, from: [-1.2, 1], maxSteps: 500, objective: rosenbrock) {
                abs($0[0] - 1) < 1e-4 && abs($0[1] - 1) < 1e-4
            }
            XCTAssertEqual(x[0], 1, accuracy: 1e-4, "\(precision)")
            XCTAssertEqual(x[1], 1, accuracy: 1e-4, "\(precision)")
            XCTAssertLessThan(evaluations(steps), 200, "\(precision)")
        }
    }

    func testLBFGSMinimizesRosenbrock10D() throws {
        let start = (0..<10).map { $0 % 2 == 0 ? Float(-1.2) : 1 }
        for precision in LBFGS.HistoryPrecision.allCases {
            let optimizer = LBFGS(parameterCount: 10, historySize: 8, historyPrecision: precision)
            let (x, steps) = try minimize(optimizer, from: start, maxSteps: 1000, objective: rosenbrock) {
                $0.allSatisfy { abs($0 - 1) < 1e-4 }
            }
            for value in x { XCTAssertEqual(value, 1, accuracy: 1e-4, "\(precision)") }
            XCTAssertLessThan(evaluations(steps), 150, "\(precision)")
        }
    }

    /// The style-transfer-like objective of `styleProblem`. One evaluation per iteration on average is
    /// what makes L-BFGS worth it when an evaluation costs a second.
    func testLBFGSOnStyleLossNeedsAboutOneEvaluationPerStep() throws {
        let (start, objective) = styleProblem()
        for precision in LBFGS.HistoryPrecision.allCases {
            let optimizer = LBFGS(parameterCount: start.count, historyPrecision: precision)
            let (_, steps) = try minimize(optimizer, from: start, maxSteps: 100, objective: objective)
            // Count the steps that still make progress (relative decrease above 10⁻⁵): near the float32
            // floor the Armijo test meets rounding noise and backtracks, which costs a few evaluations.
            let progressing = zip(steps, steps.dropFirst()).prefix { $1.value < $0.value * (1 - 1e-5) }.count + 1
            let spent = evaluations(Array(steps.prefix(progressing)))
            XCTAssertGreaterThan(progressing, 20, "\(precision)")
            XCTAssertLessThan(steps.last!.value, 0.1 * steps[0].value, "\(precision)")
            XCTAssertLessThanOrEqual(Double(spent), 1.2 * Double(progressing) + 1, "\(precision): line search too costly")
        }
    }

    /// Half against single precision, each run to its float32 floor (two unmoved steps in a row) on the
    /// problems above: the final values agree within 10⁻⁶ of the value plus 10⁻¹² of f at the start.
    /// Why that close: the history only shapes the search direction. x, the gradient and every Armijo
    /// test stay in float32 and float64, and BFGS with any positive definite H converges to the same
    /// minimum, so half precision changes the path, not the point reached. What is left is where each
    /// run stops on float32's floor: 10⁻⁶ relative is about 8 float32 ulps of the value (the style loss
    /// is summed from float32 products; the two precisions stop 2 · 10⁻⁷ apart), and 10⁻¹² of the start
    /// covers the quadratic's floor: x within half a float32 ulp of x* (|x*| ≤ 2: 1.2 · 10⁻⁷) leaves up
    /// to ½ · 100 · 50 · (1.2 · 10⁻⁷)² ≈ 4 · 10⁻¹¹, against f(0) ≈ 565 (both stop near 2 · 10⁻¹²).
    /// Rosenbrock reaches 0 exactly in both. A misread history (wrong scale or sign) fails here.
    func testHalfHistoryReachesTheValueSingleReaches() throws {
        let quadratic = Quadratic(dimension: 50, condition: 100, seed: 11)
        let style = styleProblem()
        let problems: [(name: String, start: [Float], historySize: Int, objective: Objective)] = [
            ("quadratic", [Float](repeating: 0, count: 50), 5, quadratic.evaluate),
            ("Rosenbrock 2-D", [-1.2, 1], 5, rosenbrock),
            ("Rosenbrock 10-D", (0..<10).map { $0 % 2 == 0 ? -1.2 : 1 }, 8, rosenbrock),
            ("style", style.start, 5, style.objective),
        ]
        for problem in problems {
            var gradient = [Float](repeating: 0, count: problem.start.count)
            let startValue = try problem.start.withUnsafeBufferPointer { x in
                try gradient.withUnsafeMutableBufferPointer { try problem.objective(x, $0) }
            }
            let final = try LBFGS.HistoryPrecision.allCases.map { precision in
                let optimizer = LBFGS(parameterCount: problem.start.count, historySize: problem.historySize,
                                      historyPrecision: precision)
                let (_, steps) = try minimizeToFloor(optimizer, from: problem.start, maxSteps: 300, objective: problem.objective)
                return steps.last!.value
            }
            let (single, half) = (final[0], final[1])
            XCTAssertEqual(half, single, accuracy: 1e-6 * single + 1e-12 * startValue, problem.name)
        }
    }

    /// Gradients spanning 10⁻²⁸ … 10³² in one vector (`weightedRosenbrock`): with half-precision history
    /// every value and parameter stays finite, f never increases, and every pair reaches its minimum
    /// as in single precision; without the per-vector scale the y vectors would overflow float16 and
    /// no pair could be kept. Each weight class needs its own restart (γ of a heavy pair makes the light
    /// pairs' steps vanish), hence the runs to the floor.
    func testHalfHistoryWithHugeAndTinyGradientsStaysFiniteAndConverges() throws {
        let start = (0..<6).map { $0 % 2 == 0 ? Float(-1.2) : 1 }
        for precision in LBFGS.HistoryPrecision.allCases {
            let optimizer = LBFGS(parameterCount: 6, historyPrecision: precision)
            let (x, steps) = try minimizeToFloor(optimizer, from: start, maxSteps: 300, objective: weightedRosenbrock)
            XCTAssert(steps.allSatisfy { $0.value.isFinite }, "\(precision)")
            XCTAssert(x.allSatisfy { $0.isFinite }, "\(precision)")
            for (before, after) in zip(steps, steps.dropFirst()) {
                XCTAssertLessThanOrEqual(after.value, before.value, "\(precision)")
            }
            for value in x { XCTAssertEqual(value, 1, accuracy: 1e-3, "\(precision)") }
            XCTAssertLessThan(evaluations(steps), 400, "\(precision)")
        }
    }

    /// Storage of one vector holding float32's extremes: in half precision every stored value is
    /// finite, elements down to 2⁻²⁸ of the largest are within 2⁻¹¹ relative (float16's rounding),
    /// and those below 2⁻⁴⁰ of it are zero; a vector of float32 subnormals keeps that accuracy (the
    /// scale is relative); single precision stores exactly; a non-finite element makes the products
    /// non-finite, so the pair is refused.
    func testScaledVectorsStoreExtremeMagnitudes() {
        let extremes: [Float] = [3e38, -1e30, 65520, 1, -1e-30, .leastNonzeroMagnitude, 0, -0.0, 2e31, -7e37]
        let subnormals: [Float] = [.leastNonzeroMagnitude, -Float(bitPattern: 21), Float.leastNormalMagnitude.nextDown,
                                   Float(bitPattern: 0x5_7000), -Float(bitPattern: 714)]
        for precision in LBFGS.HistoryPrecision.allCases {
            for values in [extremes, subnormals] {
                let zero = [Float](repeating: 0, count: values.count)
                let history = ScaledVectors(count: 1, length: values.count, precision: precision)
                values.withUnsafeBufferPointer { a in
                    zero.withUnsafeBufferPointer { b in
                        let v = VectorDifference(a, b)
                        history.store(v, scale: history.scale(for: v), at: 0)
                        let (vv, _) = history.storedProducts(0, v, scale: history.scale(for: v))
                        XCTAssert(vv.isFinite && vv > 0, "\(precision): products of the stored vector")
                    }
                }
                let largest = values.map { abs(Double($0)) }.max()!
                for (i, original) in values.enumerated() {
                    let stored = history.value(0, i), exact = Double(original)
                    XCTAssert(stored.isFinite, "\(precision) \(original)")
                    if precision == .single {
                        XCTAssertEqual(stored, exact, "\(original)")
                    } else if abs(exact) >= 0x1p-28 * largest {
                        XCTAssertEqual(stored, exact, accuracy: 0x1p-11 * abs(exact), "\(original)")
                    } else if abs(exact) < 0x1p-40 * largest {
                        XCTAssertEqual(stored, 0, "\(original)")
                    }
                }
            }
            let withInfinity: [Float] = [1, .infinity, 2], zero: [Float] = [0, 0, 0]
            let history = ScaledVectors(count: 1, length: 3, precision: precision)
            withInfinity.withUnsafeBufferPointer { a in
                zero.withUnsafeBufferPointer { b in
                    let v = VectorDifference(a, b), scale = history.scale(for: v)
                    XCTAssertFalse(history.storedProducts(0, v, scale: scale).sy.isFinite, "\(precision)")
                }
            }
        }
    }

    /// sᵀy and yᵀy as `storedProducts` gives them (which set ρ and γ), of a stored s and a y about to
    /// be stored, are the products of the vectors as stored, not as given: within 10⁻¹² relative
    /// (float64 sums in another order) where the rounding to float16 moves them by about 10⁻⁴.
    func testStoredProductsAreThoseOfTheStoredVectors() {
        var random = TestRandom(state: 15)
        let n = 37
        let s = (0..<n).map { _ in Float(random.uniformDouble(-1, 1) * pow(10, random.uniformDouble(-3, 3))) }
        let y = (0..<n).map { i in s[i] * Float(random.uniformDouble(0.5, 2)) }  // sᵀy > 0
        let zero = [Float](repeating: 0, count: n)
        for precision in LBFGS.HistoryPrecision.allCases {
            let history = ScaledVectors(count: 2, length: n, precision: precision)
            let (sy, yy) = s.withUnsafeBufferPointer { sBuffer in
                y.withUnsafeBufferPointer { yBuffer in
                    zero.withUnsafeBufferPointer { zeroBuffer in
                        let sVector = VectorDifference(sBuffer, zeroBuffer), yVector = VectorDifference(yBuffer, zeroBuffer)
                        let sScale = history.scale(for: sVector), yScale = history.scale(for: yVector)
                        history.store(sVector, scale: sScale, at: 0)
                        history.store(yVector, scale: yScale, at: 1)
                        return history.storedProducts(0, yVector, scale: yScale)
                    }
                }
            }
            let storedSY = (0..<n).reduce(0) { $0 + history.value(0, $1) * history.value(1, $1) }
            let storedYY = (0..<n).reduce(0) { $0 + history.value(1, $1) * history.value(1, $1) }
            XCTAssertEqual(sy, storedSY, accuracy: 1e-12 * storedSY, "\(precision)")
            XCTAssertEqual(yy, storedYY, accuracy: 1e-12 * storedYY, "\(precision)")
        }
    }

    /// The bit-level float16 conversions against the standard library's: widening at every finite
    /// float16, rounding at every float16, at the midpoints between neighbours (ties go to even) and a
    /// float32 step either side of them, both signs, up to 2¹⁶.
    func testFloat16ConversionsMatchStandardLibrary() {
        for bits in UInt16.min...UInt16.max {
            let half = Float16(bitPattern: bits)
            guard half.isFinite else { continue }
            XCTAssertEqual(half.widened.bitPattern, Float(half).bitPattern, "widening \(half)")
        }
        // Above the largest finite float16 (65504) the midpoint to the next binade is 65520.
        var points: [Float] = [65504, 65520, Float(65520).nextDown, Float(0x1p16).nextDown]
        var half = Float16.zero
        while half < .greatestFiniteMagnitude {
            let here = Float(half), midpoint = (Float(half) + Float(half.nextUp)) / 2
            points += [here, midpoint, midpoint.nextDown, midpoint.nextUp]
            half = half.nextUp
        }
        for point in points {
            for value in [point, -point] {
                XCTAssertEqual(Float16(rounding: value).bitPattern, Float16(value).bitPattern, "rounding \(value)")
            }
        }
    }

    /// The byte counts against the formula written out: parameterCount · (2 m b + 8) for L-BFGS with
    /// b = 4 or 2, 12 · parameterCount for Adam; each optimizer's count of what it allocated equals the
    /// static prediction.
    func testAllocatedBytes() {
        for (n, m) in [(1, 1), (1000, 5), (12_345, 8)] {
            let single = LBFGS(parameterCount: n, historySize: m)
            let half = LBFGS(parameterCount: n, historySize: m, historyPrecision: .half)
            XCTAssertEqual(single.allocatedBytes, n * (8 * m + 8))
            XCTAssertEqual(half.allocatedBytes, n * (4 * m + 8))
            XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: n, historySize: m, historyPrecision: .single), single.allocatedBytes)
            XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: n, historySize: m, historyPrecision: .half), half.allocatedBytes)
            let adam = Adam(parameterCount: n, learningRate: 0.1)
            XCTAssertEqual(adam.allocatedBytes, 12 * n)
            XCTAssertEqual(Adam.allocatedBytes(parameterCount: n), adam.allocatedBytes)
        }
        // 24 megapixels of RGB with the default history: 3.5 GB in single precision, 2.0 GB in half.
        XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: 72_000_000), 3_456_000_000)
        XCTAssertEqual(LBFGS.allocatedBytes(parameterCount: 72_000_000, historyPrecision: .half), 2_016_000_000)
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
        for (restored, point) in zip(x, accepted) {
            XCTAssertEqual(restored, point, accuracy: 4 * point.ulp, "x must be the last accepted point after an error")
        }
        // The optimizer stays usable: it evaluates the point it stepped back to, then goes on.
        let (final, steps) = try minimize(optimizer, from: x, maxSteps: 500, objective: rosenbrock) {
            abs($0[0] - 1) < 1e-4 && abs($0[1] - 1) < 1e-4
        }
        XCTAssertGreaterThanOrEqual(steps.first?.evaluations ?? 0, 2, "the point stepped back to is evaluated again")
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
        for precision in LBFGS.HistoryPrecision.allCases {
            let lbfgs1 = try trace { LBFGS(parameterCount: 10, historyPrecision: precision) }
            let lbfgs2 = try trace { LBFGS(parameterCount: 10, historyPrecision: precision) }
            XCTAssertEqual(lbfgs1.0, lbfgs2.0, "\(precision)")
            XCTAssertEqual(lbfgs1.1, lbfgs2.1, "\(precision)")
        }
        let adam1 = try trace { Adam(parameterCount: 10, learningRate: 0.01) }, adam2 = try trace { Adam(parameterCount: 10, learningRate: 0.01) }
        XCTAssertEqual(adam1.0, adam2.0)
        XCTAssertEqual(adam1.1, adam2.1)
    }
}

#if canImport(Glibc)
import Glibc  // links libm, where squareRoot() may lower to sqrt
#endif

// Gradient-based minimizers over a flat float32 parameter vector (the image being optimized).
//
// Both optimizers keep the objective's value and gradient at the current parameters between steps,
// so each step after the first costs one evaluation when it goes well. The driver owns the loop:
// it calls `step` as often as it likes, checks its deadline between steps, reports `StepInfo.value`,
// and keeps a copy of the parameters with the lowest value if it wants the best rather than the last.
//
// Contract of `step`: on return, x holds the new parameters and `value` is the objective at that x
// (evaluated, not estimated). Between steps the caller must not change x; after changing it (a
// clamp, a resize, a new image) call `reset()`, which forgets the cached evaluation and history.
// All scalar arithmetic (dot products, step lengths, bias corrections) is float64; vectors are float32.
// Nothing is random and dot products run in a fixed order, so equal inputs give equal bits.

/// The objective: given the parameters x, write ∂f/∂x into every element of `gradient` (same count
/// as x; its prior content is unspecified) and return f(x). Errors thrown propagate out of `step`.
public typealias Objective = (_ x: UnsafeBufferPointer<Float>, _ gradient: UnsafeMutableBufferPointer<Float>) throws -> Double

/// What one optimizer step did.
public struct StepInfo: Sendable, Equatable {
    /// The objective at the parameters x holds after the step.
    public var value: Double
    /// Objective evaluations spent by this step (each computes value and gradient).
    public var evaluations: Int
    /// Whether x changed. `false` when the gradient is zero, the value is not finite, or (L-BFGS)
    /// no step along the search direction decreased the value.
    public var moved: Bool

    public init(value: Double, evaluations: Int, moved: Bool) {
        self.value = value
        self.evaluations = evaluations
        self.moved = moved
    }
}

/// A minimizer advanced one iteration at a time; it owns its work vectors, allocated once.
public protocol Optimizer: AnyObject {
    /// The length of the parameter vector it was built for.
    var parameterCount: Int { get }
    /// One iteration on x (count `parameterCount`); see the file comment for the contract.
    func step(_ x: UnsafeMutableBufferPointer<Float>, objective: Objective) throws -> StepInfo
    /// Forgets the cached evaluation and all history, as if newly made; storage is kept.
    func reset()
}

// MARK: - L-BFGS

/// Limited-memory BFGS (Nocedal, "Updating quasi-Newton matrices with limited storage", 1980) with
/// the two-loop recursion, a history of `historySize` pairs (s = Δx, y = Δgradient), and a
/// backtracking Armijo line search chosen for objectives that cost about a second per evaluation.
///
/// Memory: (2 · historySize + 4) · parameterCount floats: the m pairs, plus the gradient, the trial
/// gradient, the search direction and the last accepted x. At 1024² RGB with m = 5 that is 14 × 12 MB.
///
/// Step length: after the first accepted pair the inverse Hessian starts as γ I with γ = sᵀy / yᵀy
/// of the newest pair, which makes the unit step the natural guess; it is tried first and accepted
/// if it satisfies the Armijo condition f(x + t d) ≤ f(x) + 10⁻⁴ t gᵀd, which it does on almost
/// every iteration, so a step costs one evaluation. Without history (the first step, or after a
/// restart) the direction is −g with length t = f / gᵀg, where the linear model f − t gᵀg reaches
/// zero: scale-free, and a good first guess for a non-negative loss (it halves the distance to the
/// minimum of an isotropic quadratic whose minimum is zero). With `firstStep` set, the first step
/// instead moves the coordinate with the largest gradient by exactly `firstStep`. A rejected trial
/// is replaced by the minimizer of the quadratic through f(x), gᵀd and the trial value, kept within
/// [0.1 t, 0.5 t]. No strong-Wolfe search: it would cost extra evaluations per iteration; instead a
/// pair with sᵀy ≤ 0 (non-positive curvature) is not stored, so H stays positive definite.
///
/// If the search fails (16 trials, or the step becomes too small to change x), x is restored, the
/// history is cleared and the step returns `moved == false`; the next step restarts from −g. A
/// second unmoved step in a row means no further progress in float32. If the objective throws
/// during the search, x is restored to the last accepted point before the error propagates, and
/// the optimizer stays valid.
public final class LBFGS: Optimizer {
    public let parameterCount: Int
    /// m, the number of (s, y) pairs kept.
    public let historySize: Int
    /// If set, the maximum coordinate change of a step without history; otherwise t = f / gᵀg.
    public let firstStep: Double?

    /// Armijo sufficient-decrease constant c₁.
    public static let armijo = 1e-4
    /// Trials of the line search before it gives up.
    public static let maxTrials = 16

    private let vectors: VectorPool  // (2 · historySize + 4, parameterCount): slots indexed below
    private var sSlot: [Int]  // (historySize): pool slot holding sᵢ of history entry i
    private var ySlot: [Int]  // (historySize): pool slot holding yᵢ
    private var rho: [Double]  // (historySize): 1 / sᵢᵀyᵢ
    private var gradientSlot: Int  // ∇f at x
    private var trialSlot: Int  // ∇f at the trial point
    private var directionSlot: Int  // search direction d
    private var previousSlot: Int  // x at the start of the line search
    private var newest = 0  // history index of the newest pair
    private var historyCount = 0
    private var gamma = 1.0  // initial inverse Hessian scale sᵀy / yᵀy
    private var value = 0.0  // f(x), valid when hasValue
    private var hasValue = false

    /// An optimizer for `parameterCount` parameters keeping `historySize` pairs (default 5).
    /// `firstStep`, if given, must be positive and is in the parameters' units.
    public init(parameterCount: Int, historySize: Int = 5, firstStep: Double? = nil) {
        precondition(parameterCount > 0 && historySize > 0)
        precondition(firstStep.map { $0 > 0 && $0.isFinite } ?? true, "first step must be positive")
        self.parameterCount = parameterCount
        self.historySize = historySize
        self.firstStep = firstStep
        vectors = VectorPool(count: 2 * historySize + 4, length: parameterCount)
        sSlot = Array(0..<historySize)
        ySlot = Array(historySize..<(2 * historySize))
        rho = [Double](repeating: 0, count: historySize)
        gradientSlot = 2 * historySize
        trialSlot = 2 * historySize + 1
        directionSlot = 2 * historySize + 2
        previousSlot = 2 * historySize + 3
    }

    public func reset() {
        hasValue = false
        historyCount = 0
    }

    public func step(_ x: UnsafeMutableBufferPointer<Float>, objective: Objective) throws -> StepInfo {
        precondition(x.count == parameterCount, "parameter vector has the wrong length")
        var evaluations = 0
        if !hasValue {
            value = try objective(UnsafeBufferPointer(x), vectors[gradientSlot])
            evaluations += 1
            hasValue = true
        }
        guard value.isFinite else { return StepInfo(value: value, evaluations: evaluations, moved: false) }

        let gradient = vectors[gradientSlot], direction = vectors[directionSlot]
        var length = 1.0
        var slope = 0.0  // gᵀd
        if historyCount > 0 {
            searchDirection(into: direction)
            slope = dot(gradient, direction)
        }
        if historyCount == 0 || !(slope < 0) {
            // No history, or rounding spoiled H: restart along the steepest descent.
            historyCount = 0
            for i in 0..<parameterCount { direction[i] = -gradient[i] }
            slope = -dot(gradient, gradient)
            guard slope < 0 else { return StepInfo(value: value, evaluations: evaluations, moved: false) }
            if let firstStep {
                length = firstStep / Double(maxMagnitude(gradient))
            } else if value > 0 {
                length = value / -slope
            } else {
                length = 1 / Double(maxMagnitude(gradient))
            }
        }

        let previous = vectors[previousSlot], trial = vectors[trialSlot]
        copy(UnsafeBufferPointer(x), to: previous)
        var trialValue = 0.0
        var accepted = false
        for _ in 0..<Self.maxTrials {
            guard stepFrom(previous, along: direction, by: length, into: x) else { break }
            do {
                trialValue = try objective(UnsafeBufferPointer(x), trial)
            } catch {
                copy(UnsafeBufferPointer(previous), to: x)
                throw error
            }
            evaluations += 1
            if trialValue.isFinite && trialValue <= value + Self.armijo * length * slope {
                accepted = true
                break
            }
            length = backtrackedLength(length, slope: slope, trialValue: trialValue)
        }
        guard accepted else {
            copy(UnsafeBufferPointer(previous), to: x)
            historyCount = 0
            return StepInfo(value: value, evaluations: evaluations, moved: false)
        }
        acceptStep(x: UnsafeBufferPointer(x), previous: UnsafeBufferPointer(previous), trialValue: trialValue)
        return StepInfo(value: value, evaluations: evaluations, moved: true)
    }

    /// d = −H g over the stored pairs.
    private func searchDirection(into direction: UnsafeMutableBufferPointer<Float>) {
        let pairs = (0..<historyCount).reversed().map { age in
            let entry = (newest - age + historySize) % historySize
            return (s: vectors[sSlot[entry]], y: vectors[ySlot[entry]], rho: rho[entry])
        }
        twoLoopDirection(gradient: vectors[gradientSlot], pairs: pairs, gamma: gamma, into: direction)
    }

    /// The next trial length after a rejected one: the minimizer of the quadratic through f(0) = value,
    /// f'(0) = slope and f(length) = trialValue, kept within [0.1, 0.5] of `length`.
    private func backtrackedLength(_ length: Double, slope: Double, trialValue: Double) -> Double {
        guard trialValue.isFinite else { return 0.1 * length }
        let curvature = trialValue - value - slope * length  // > 0 when Armijo failed
        let minimizer = -slope * length * length / (2 * curvature)
        return min(max(minimizer, 0.1 * length), 0.5 * length)
    }

    /// Adopts the accepted trial: s = x − previous and y = g_new − g_old become a history pair when
    /// sᵀy > 0; the trial gradient becomes the gradient.
    private func acceptStep(x: UnsafeBufferPointer<Float>, previous: UnsafeBufferPointer<Float>, trialValue: Double) {
        let s = vectors[directionSlot], y = vectors[gradientSlot], newGradient = vectors[trialSlot]
        for i in 0..<parameterCount {
            s[i] = x[i] - previous[i]
            y[i] = newGradient[i] - y[i]
        }
        swap(&gradientSlot, &trialSlot)  // the trial slot now holds y, the direction slot s
        value = trialValue
        let sy = dot(s, y), yy = dot(y, y)
        guard sy > 0 && yy > 0 && sy.isFinite && yy.isFinite else { return }
        let entry = historyCount == 0 ? 0 : (newest + 1) % historySize
        swap(&sSlot[entry], &directionSlot)
        swap(&ySlot[entry], &trialSlot)
        rho[entry] = 1 / sy
        gamma = sy / yy
        newest = entry
        historyCount = min(historyCount + 1, historySize)
    }
}

// MARK: - Adam

/// Adam (Kingma & Ba, 2015) with bias correction:
///
///     m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²,
///     x ← x − lr · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
///
/// Each step updates x with the gradient cached at x, then evaluates the objective at the new x
/// (the value reported, and the gradient for the next step): one evaluation per step, two for the
/// first. `learningRate` is in the parameters' units: a coordinate moves by about that much per step
/// while its gradient keeps its sign. Memory: 3 · parameterCount floats (m, v, gradient). If the
/// objective throws after an update, x keeps the update and the next step evaluates before moving.
public final class Adam: Optimizer {
    public let parameterCount: Int
    public let learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double

    private let vectors: VectorPool  // (3, parameterCount): first moment, second moment, gradient
    private var beta1Power = 1.0  // β₁ᵗ after t updates
    private var beta2Power = 1.0  // β₂ᵗ
    private var value = 0.0  // f(x), valid when hasValue
    private var hasValue = false

    /// An optimizer for `parameterCount` parameters; the defaults are Kingma & Ba's.
    public init(parameterCount: Int, learningRate: Double, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8) {
        precondition(parameterCount > 0)
        precondition(learningRate > 0 && learningRate.isFinite, "learning rate must be positive")
        precondition((0..<1).contains(beta1) && (0..<1).contains(beta2) && epsilon > 0)
        self.parameterCount = parameterCount
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        vectors = VectorPool(count: 3, length: parameterCount)
    }

    public func reset() {
        hasValue = false
        beta1Power = 1
        beta2Power = 1
        vectors.zero()
    }

    public func step(_ x: UnsafeMutableBufferPointer<Float>, objective: Objective) throws -> StepInfo {
        precondition(x.count == parameterCount, "parameter vector has the wrong length")
        let m = vectors[0], v = vectors[1], gradient = vectors[2]
        var evaluations = 0
        if !hasValue {
            value = try objective(UnsafeBufferPointer(x), gradient)
            evaluations += 1
            hasValue = true
        }
        guard value.isFinite else { return StepInfo(value: value, evaluations: evaluations, moved: false) }

        beta1Power *= beta1
        beta2Power *= beta2
        let stepSize = Float(learningRate / (1 - beta1Power))  // lr / (1 − β₁ᵗ)
        let rootCorrection = Float(1 / (1 - beta2Power).squareRoot())  // 1 / √(1 − β₂ᵗ)
        let b1 = Float(beta1), b2 = Float(beta2), eps = Float(epsilon)
        for i in 0..<parameterCount {
            let g = gradient[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            x[i] -= stepSize * m[i] / (v[i].squareRoot() * rootCorrection + eps)
        }
        hasValue = false
        value = try objective(UnsafeBufferPointer(x), gradient)
        evaluations += 1
        hasValue = true
        return StepInfo(value: value, evaluations: evaluations, moved: true)
    }
}

// MARK: - Vector kernels

/// The L-BFGS search direction d = −H g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4):
/// H is the inverse Hessian approximation obtained from H₀ = γ I by the BFGS updates
/// H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ of `pairs`, oldest first, with ρ = 1 / sᵀy.
/// Cost: 4 · pairs dot products and axpys; dot products in float64.
func twoLoopDirection(gradient: UnsafeMutableBufferPointer<Float>,
                      pairs: [(s: UnsafeMutableBufferPointer<Float>, y: UnsafeMutableBufferPointer<Float>, rho: Double)],
                      gamma: Double, into direction: UnsafeMutableBufferPointer<Float>) {
    for i in 0..<direction.count { direction[i] = -gradient[i] }
    var alpha = [Double](repeating: 0, count: pairs.count)  // (pairs)
    for k in pairs.indices.reversed() {
        alpha[k] = pairs[k].rho * dot(pairs[k].s, direction)
        addScaled(pairs[k].y, by: Float(-alpha[k]), to: direction)
    }
    let scale = Float(gamma)
    for i in 0..<direction.count { direction[i] *= scale }
    for k in pairs.indices {
        let beta = pairs[k].rho * dot(pairs[k].y, direction)
        addScaled(pairs[k].s, by: Float(alpha[k] - beta), to: direction)
    }
}

/// `count` float vectors of `length` elements in one zeroed allocation, freed with the pool.
private final class VectorPool {
    let count: Int
    let length: Int
    private let storage: UnsafeMutableBufferPointer<Float>  // (count, length)

    init(count: Int, length: Int) {
        self.count = count
        self.length = length
        storage = .allocate(capacity: count * length)
        storage.initialize(repeating: 0)
    }

    deinit { storage.deallocate() }

    subscript(slot: Int) -> UnsafeMutableBufferPointer<Float> {
        precondition(slot >= 0 && slot < count)
        return UnsafeMutableBufferPointer(rebasing: storage[(slot * length)..<((slot + 1) * length)])
    }

    func zero() { storage.update(repeating: 0) }
}

/// Σ aᵢ bᵢ in float64, four interleaved partial sums combined in a fixed order.
private func dot(_ a: UnsafeMutableBufferPointer<Float>, _ b: UnsafeMutableBufferPointer<Float>) -> Double {
    let n = a.count
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i &+ 4 <= n {
        s0 += Double(a[i]) * Double(b[i])
        s1 += Double(a[i &+ 1]) * Double(b[i &+ 1])
        s2 += Double(a[i &+ 2]) * Double(b[i &+ 2])
        s3 += Double(a[i &+ 3]) * Double(b[i &+ 3])
        i = i &+ 4
    }
    while i < n {
        s0 += Double(a[i]) * Double(b[i])
        i = i &+ 1
    }
    return (s0 + s1) + (s2 + s3)
}

/// max |aᵢ|.
private func maxMagnitude(_ a: UnsafeMutableBufferPointer<Float>) -> Float {
    var result: Float = 0
    for i in 0..<a.count { result = max(result, abs(a[i])) }
    return result
}

/// y += factor · x.
private func addScaled(_ x: UnsafeMutableBufferPointer<Float>, by factor: Float, to y: UnsafeMutableBufferPointer<Float>) {
    for i in 0..<y.count { y[i] += factor * x[i] }
}

private func copy(_ source: UnsafeBufferPointer<Float>, to destination: UnsafeMutableBufferPointer<Float>) {
    _ = destination.update(fromContentsOf: source)
}

/// x = origin + length · direction; false (x unspecified) when that equals origin in every element,
/// i.e. the step is too short to change anything in float32.
private func stepFrom(_ origin: UnsafeMutableBufferPointer<Float>, along direction: UnsafeMutableBufferPointer<Float>,
                      by length: Double, into x: UnsafeMutableBufferPointer<Float>) -> Bool {
    let t = Float(length)
    var changed: UInt8 = 0
    for i in 0..<x.count {
        let moved = origin[i] + t * direction[i]
        changed |= moved != origin[i] ? 1 : 0
        x[i] = moved
    }
    return changed != 0
}

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
// All scalar arithmetic (dot products, step lengths, bias corrections) is float64; vectors are float32,
// except L-BFGS's history, which may be float16 (`LBFGS.HistoryPrecision`).
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
/// Memory: the m = `historySize` pairs, in float32 or float16 (`historyPrecision`), plus two float32
/// work vectors: the gradient and the trial gradient. That is parameterCount · (2 m b + 8) bytes,
/// b = 4 (single) or 2 (half), as `allocatedBytes(parameterCount:historySize:historyPrecision:)`
/// gives: at 1024² RGB with m = 5, 12 × 12 MB in single precision and 7 × 12 MB in half. The search
/// direction d is built in the trial gradient's slot, then stored, rounded as the history is, where
/// the step's own pair goes (s, the step x takes along it, replaces it once accepted): the search
/// steps x along that stored d, in place, and a rejected trial steps it back and out again. When
/// the history is full that slot is the oldest pair's, which the step drops whether or not its own
/// pair is kept. x at the start of the search has no copy: a search that fails, or an objective that
/// throws, steps x back to it, to float32 rounding (a few units in the last place), and the next
/// step evaluates it afresh.
///
/// Half precision: each stored s and y is float16 times a float64 power of two, chosen per vector so
/// that its largest magnitude lands in [2¹⁴, 2¹⁵) (float16's largest finite value is 65504): no
/// element overflows, elements down to 2⁻²⁸ of the largest keep a relative error ≤ 2⁻¹¹, smaller
/// ones keep fewer bits (float16 subnormals) and those below 2⁻⁴⁰ of it are stored as zero. ρ = 1 / sᵀy
/// and γ come from the stored (rounded) vectors, so the recursion applies exact BFGS updates of the
/// pairs it holds and H stays positive definite; a pair whose stored sᵀy ≤ 0 is not kept. In single
/// precision d, s and y are stored as computed (scale 1). s is the step x took, recovered from x and
/// the stored d as x − (x − t d) in float32.
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
/// If the search fails (16 trials, or the step becomes too small to change x), x is stepped back,
/// the history is cleared and the step returns `moved == false`; the next step evaluates x and
/// restarts from −g. A second unmoved step in a row means no further progress in float32. If the
/// objective throws during the search, x is stepped back to the last accepted point before the error
/// propagates, and the optimizer stays valid.
public final class LBFGS: Optimizer {
    /// How the (s, y) pairs are stored.
    public enum HistoryPrecision: Sendable, CaseIterable {
        /// float32, as computed: 4 bytes per element.
        case single
        /// float16 with a float64 power-of-two scale per vector: 2 bytes per element.
        case half

        /// Bytes per stored element.
        var elementBytes: Int {
            switch self {
            case .single: MemoryLayout<Float>.size
            case .half: MemoryLayout<Float16>.size
            }
        }
    }

    public let parameterCount: Int
    /// m, the number of (s, y) pairs kept.
    public let historySize: Int
    /// If set, the maximum coordinate change of a step without history; otherwise t = f / gᵀg.
    public let firstStep: Double?
    /// The precision of the stored pairs.
    public let historyPrecision: HistoryPrecision

    /// Armijo sufficient-decrease constant c₁.
    public static let armijo = 1e-4
    /// Trials of the line search before it gives up.
    public static let maxTrials = 16

    /// The float32 work vectors an optimizer keeps besides its history.
    static let workVectorCount = 2

    /// The bytes of vector storage an optimizer made with these arguments allocates:
    /// parameterCount · (2 · historySize · b + 8) with b = 4 for `.single` and 2 for `.half`.
    /// Per-pair scalars and the object itself (under a kilobyte) are not counted.
    public static func allocatedBytes(parameterCount: Int, historySize: Int = 5,
                                      historyPrecision: HistoryPrecision = .single) -> Int {
        parameterCount * (2 * historySize * historyPrecision.elementBytes + workVectorCount * MemoryLayout<Float>.size)
    }

    /// The bytes of vector storage this optimizer allocated, counted from its allocations; equal to
    /// `allocatedBytes(parameterCount:historySize:historyPrecision:)` of its arguments.
    public var allocatedBytes: Int { work.bytes + history.bytes }

    private let work: VectorPool<Float>  // (2, parameterCount): slots indexed below
    private let history: ScaledVectors  // (2 · historySize, parameterCount): sᵢ in vector i, yᵢ in historySize + i
    private var rho: [Double]  // (historySize): 1 / sᵢᵀyᵢ of the stored pair i
    private var gradientSlot = 0  // ∇f at x
    private var trialSlot = 1  // ∇f at the trial point; the direction while it is built
    private var newest = 0  // history index of the newest pair
    private var historyCount = 0
    private var gamma = 1.0  // initial inverse Hessian scale sᵀy / yᵀy
    private var value = 0.0  // f(x), valid when hasValue
    private var hasValue = false

    /// An optimizer for `parameterCount` parameters keeping `historySize` pairs (default 5) in
    /// `historyPrecision` (default single). `firstStep`, if given, must be positive and is in the
    /// parameters' units.
    public init(parameterCount: Int, historySize: Int = 5, firstStep: Double? = nil,
                historyPrecision: HistoryPrecision = .single) {
        precondition(parameterCount > 0 && historySize > 0)
        precondition(firstStep.map { $0 > 0 && $0.isFinite } ?? true, "first step must be positive")
        self.parameterCount = parameterCount
        self.historySize = historySize
        self.firstStep = firstStep
        self.historyPrecision = historyPrecision
        work = VectorPool(count: Self.workVectorCount, length: parameterCount)
        history = ScaledVectors(count: 2 * historySize, length: parameterCount, precision: historyPrecision)
        rho = [Double](repeating: 0, count: historySize)
    }

    public func reset() {
        hasValue = false
        historyCount = 0
    }

    public func step(_ x: UnsafeMutableBufferPointer<Float>, objective: Objective) throws -> StepInfo {
        precondition(x.count == parameterCount, "parameter vector has the wrong length")
        var evaluations = 0
        if !hasValue {
            value = try objective(UnsafeBufferPointer(x), work[gradientSlot])
            evaluations += 1
            hasValue = true
        }
        guard value.isFinite else { return StepInfo(value: value, evaluations: evaluations, moved: false) }

        let gradient = work[gradientSlot], trial = work[trialSlot]
        var quasiNewton = historyCount > 0
        var slope = writeDirection(quasiNewton: quasiNewton, into: trial)  // gᵀd
        if quasiNewton && !(slope < 0 && slope.isFinite) {
            // Rounding spoiled H, or d overflowed: restart along the steepest descent.
            quasiNewton = false
            historyCount = 0
            slope = writeDirection(quasiNewton: false, into: trial)
        }
        guard slope < 0 else { return StepInfo(value: value, evaluations: evaluations, moved: false) }
        // d, stored where this step's pair goes (over the oldest pair when the history is full, dropping it), is the
        // direction the search takes, as rounded; the trial gradient's slot is free again.
        let entry = historyCount == 0 ? 0 : (newest + 1) % historySize
        historyCount = min(historyCount, historySize - 1)
        history.store(trial, scale: history.scale(for: trial), at: entry)
        slope = history.dot(entry, gradient)
        guard slope < 0 && slope.isFinite else {
            historyCount = 0
            return StepInfo(value: value, evaluations: evaluations, moved: false)
        }
        var length = 1.0
        if !quasiNewton {
            if let firstStep {
                length = firstStep / Double(maxMagnitude(gradient))
            } else if value > 0 {
                length = value / -slope
            } else {
                length = 1 / Double(maxMagnitude(gradient))
            }
        }

        // x stands `taken` along d from where the search started.
        var taken = 0.0
        var trialValue = 0.0
        var accepted = false
        for _ in 0..<Self.maxTrials {
            let moves = history.move(x, along: entry, from: taken, to: length)
            taken = length
            guard moves else { break }
            do {
                trialValue = try objective(UnsafeBufferPointer(x), trial)
            } catch {
                stepBack(x, along: entry, from: taken)
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
            stepBack(x, along: entry, from: taken)
            historyCount = 0
            return StepInfo(value: value, evaluations: evaluations, moved: false)
        }
        acceptStep(x: x, length: length, direction: entry, trialValue: trialValue)
        return StepInfo(value: value, evaluations: evaluations, moved: true)
    }

    /// Steps x back from `taken` along stored vector `direction` to where the search started, to rounding, and
    /// forgets the evaluation there, which the next step makes again.
    private func stepBack(_ x: UnsafeMutableBufferPointer<Float>, along direction: Int, from taken: Double) {
        _ = history.move(x, along: direction, from: taken, to: 0)
        hasValue = false
    }

    /// Writes the search direction into `direction` (count parameterCount) and returns gᵀd: d = −H g
    /// over the stored pairs when `quasiNewton`, else d = −g. Equal state gives equal bits.
    private func writeDirection(quasiNewton: Bool, into direction: UnsafeMutableBufferPointer<Float>) -> Double {
        let gradient = work[gradientSlot]
        if quasiNewton {
            let pairs = (0..<historyCount).reversed().map { age in
                let entry = (newest - age + historySize) % historySize
                return (s: entry, y: historySize + entry, rho: rho[entry])
            }
            twoLoopDirection(gradient: gradient, history: history, pairs: pairs, gamma: gamma, into: direction)
        } else {
            for i in 0..<parameterCount { direction[i] = -gradient[i] }
        }
        return dot(gradient, direction)
    }

    /// The next trial length after a rejected one: the minimizer of the quadratic through f(0) = value,
    /// f'(0) = slope and f(length) = trialValue, kept within [0.1, 0.5] of `length`.
    private func backtrackedLength(_ length: Double, slope: Double, trialValue: Double) -> Double {
        guard trialValue.isFinite else { return 0.1 * length }
        let curvature = trialValue - value - slope * length  // > 0 when Armijo failed
        let minimizer = -slope * length * length / (2 * curvature)
        return min(max(minimizer, 0.1 * length), 0.5 * length)
    }

    /// Adopts the accepted trial at x: the trial gradient becomes the gradient, and s, the step x took
    /// along `length` times the stored direction (vector `direction`, where the pair goes, which s
    /// replaces), and y = g_new − g_old become a history pair when, as stored, sᵀy > 0 and yᵀy > 0
    /// (both finite). In half precision y is rounded twice, once to decide and once to store.
    private func acceptStep(x: UnsafeMutableBufferPointer<Float>, length: Double, direction entry: Int,
                            trialValue: Double) {
        history.replaceWithStep(entry, of: x, length: length)
        let y = VectorDifference(UnsafeBufferPointer(work[trialSlot]), UnsafeBufferPointer(work[gradientSlot]))
        let yScale = history.scale(for: y)
        let (sy, yy) = history.storedProducts(entry, y, scale: yScale)
        value = trialValue
        defer { swap(&gradientSlot, &trialSlot) }
        guard sy > 0 && yy > 0 && sy.isFinite && yy.isFinite else { return }
        history.store(y, scale: yScale, at: historySize + entry)
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
/// while its gradient keeps its sign. Memory: 3 · parameterCount floats (m, v, gradient), 12 bytes per
/// parameter (`allocatedBytes(parameterCount:)`). If the objective throws after an update, x keeps
/// the update and the next step evaluates before moving.
public final class Adam: Optimizer {
    public let parameterCount: Int
    public let learningRate: Double
    public let beta1: Double
    public let beta2: Double
    public let epsilon: Double

    private let vectors: VectorPool<Float>  // (3, parameterCount): first moment, second moment, gradient
    private var beta1Power = 1.0  // β₁ᵗ after t updates
    private var beta2Power = 1.0  // β₂ᵗ
    private var value = 0.0  // f(x), valid when hasValue
    private var hasValue = false

    /// The bytes of vector storage an optimizer for `parameterCount` parameters allocates:
    /// 3 · 4 · parameterCount. The object itself (under a kilobyte) is not counted.
    public static func allocatedBytes(parameterCount: Int) -> Int {
        3 * MemoryLayout<Float>.size * parameterCount
    }

    /// The bytes of vector storage this optimizer allocated, counted from its allocation; equal to
    /// `allocatedBytes(parameterCount:)`.
    public var allocatedBytes: Int { vectors.bytes }

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
/// H ← (I − ρ s yᵀ) H (I − ρ y sᵀ) + ρ s sᵀ of `pairs` (indices of s and y in `history`), oldest
/// first, with ρ = 1 / sᵀy of the stored vectors. Cost: 4 · pairs dot products and axpys; dot
/// products in float64, the stored vectors read at their precision and scale.
func twoLoopDirection(gradient: UnsafeMutableBufferPointer<Float>, history: ScaledVectors,
                      pairs: [(s: Int, y: Int, rho: Double)],
                      gamma: Double, into direction: UnsafeMutableBufferPointer<Float>) {
    for i in 0..<direction.count { direction[i] = -gradient[i] }
    var alpha = [Double](repeating: 0, count: pairs.count)  // (pairs)
    for k in pairs.indices.reversed() {
        alpha[k] = pairs[k].rho * history.dot(pairs[k].s, direction)
        history.addScaled(pairs[k].y, by: -alpha[k], to: direction)
    }
    let scale = Float(gamma)
    for i in 0..<direction.count { direction[i] *= scale }
    for k in pairs.indices {
        let beta = pairs[k].rho * history.dot(pairs[k].y, direction)
        history.addScaled(pairs[k].s, by: alpha[k] - beta, to: direction)
    }
}

/// A float32 vector read element by element: a buffer, or a difference of two computed where it is read.
protocol FloatVector {
    var count: Int { get }
    subscript(i: Int) -> Float { get }
}

extension UnsafeMutableBufferPointer: FloatVector where Element == Float {}

/// The step x took along a stored direction v, xᵢ − (xᵢ − length · vᵢ), computed where it is read; storing it over v
/// reads each element before writing it.
struct TakenStep<Element: StorageScalar>: FloatVector {
    let x: UnsafeMutableBufferPointer<Float>  // (count)
    let direction: UnsafeMutableBufferPointer<Element>  // (count)
    let length: Float

    var count: Int { x.count }

    @inline(__always) subscript(i: Int) -> Float { x[i] - (x[i] - length * direction[i].widened) }
}

/// The float32 vector a − b, computed element by element where it is read: L-BFGS's y = g_new − g_old,
/// which needs no storage of its own until it is stored in the history.
struct VectorDifference: FloatVector {
    let minuend: UnsafeBufferPointer<Float>  // (count)
    let subtrahend: UnsafeBufferPointer<Float>  // (count)

    init(_ minuend: UnsafeBufferPointer<Float>, _ subtrahend: UnsafeBufferPointer<Float>) {
        precondition(minuend.count == subtrahend.count)
        self.minuend = minuend
        self.subtrahend = subtrahend
    }

    var count: Int { minuend.count }

    @inline(__always) subscript(i: Int) -> Float { minuend[i] - subtrahend[i] }
}

/// `count` vectors of `length` elements stored in float32 or float16, each with a float64 scale:
/// element i of vector v stands for scale[v] · stored[v][i]. A vector is stored with scale 1 in
/// single precision, values as given; in half precision with the power of two that maps the
/// vector's largest magnitude into [2¹⁴, 2¹⁵), so nothing overflows float16 (largest finite 65504),
/// every stored value is finite, and rounding is the only error (see `LBFGS` for its bounds).
final class ScaledVectors {
    private enum Storage {
        case single(VectorPool<Float>)  // (count, length)
        case half(VectorPool<Float16>)  // (count, length)
    }

    let count: Int
    let length: Int
    let precision: LBFGS.HistoryPrecision
    private let storage: Storage
    private var scales: [Double]  // (count): vector v holds its values divided by scales[v]

    init(count: Int, length: Int, precision: LBFGS.HistoryPrecision) {
        self.count = count
        self.length = length
        self.precision = precision
        switch precision {
        case .single: storage = .single(VectorPool(count: count, length: length))
        case .half: storage = .half(VectorPool(count: count, length: length))
        }
        scales = [Double](repeating: 1, count: count)
    }

    /// The bytes of the stored vectors.
    var bytes: Int {
        switch storage {
        case .single(let pool): pool.bytes
        case .half(let pool): pool.bytes
        }
    }

    /// The scale `v` would be stored with: 1 in single precision; in half precision 2^(e − 14) where
    /// 2^e ≤ max |vᵢ| < 2^(e+1), 1 when v is zero, and NaN when an element is not finite (which makes
    /// `storedProducts` NaN, so such a vector is never stored).
    func scale(for v: some FloatVector) -> Double {
        precondition(v.count == length)
        guard precision == .half else { return 1 }
        var largest: Float = 0
        var nonFinite: UInt8 = 0
        for i in 0..<length {
            let magnitude = abs(v[i])
            largest = max(largest, magnitude)
            nonFinite |= magnitude.isFinite ? 0 : 1
        }
        guard nonFinite == 0 else { return .nan }
        guard largest > 0 else { return 1 }
        return Double(sign: .plus, exponent: Int(largest.exponent) - 14, significand: 1)
    }

    /// (sᵀy, yᵀy) of stored vector `index` s and of y rounded exactly as `store` with `yScale` would
    /// store it, in float64 in a fixed order; NaN when the scale is not finite.
    func storedProducts(_ index: Int, _ y: VectorDifference, scale yScale: Double) -> (sy: Double, yy: Double) {
        precondition(y.count == length)
        guard yScale.isFinite else { return (.nan, .nan) }
        let sums: SIMD2<Double>
        switch storage {
        case .single(let pool): sums = storedRoundedProducts(pool[index], y, 1 / yScale)
        case .half(let pool): sums = storedRoundedProducts(pool[index], y, 1 / yScale)
        }
        return (sums.x * scales[index] * yScale, sums.y * yScale * yScale)
    }

    /// Replaces stored vector `index` v by the step x took along `length` times it: sᵢ = xᵢ − (xᵢ − length · vᵢ)
    /// in float32 (`move`'s arithmetic), x's actual move from the point it started at, stored as `store` stores.
    func replaceWithStep(_ index: Int, of x: UnsafeMutableBufferPointer<Float>, length: Double) {
        precondition(x.count == self.length)
        let out = Float(length * scales[index])
        switch storage {
        case .single(let pool):
            let step = TakenStep(x: x, direction: pool[index], length: out)
            store(step, scale: scale(for: step), at: index)
        case .half(let pool):
            let step = TakenStep(x: x, direction: pool[index], length: out)
            store(step, scale: scale(for: step), at: index)
        }
    }

    /// Moves x from `taken` to `length` times stored vector `index` v from the point it started at: each
    /// element steps back by `taken` · vᵢ and out by `length` · vᵢ (the factors and the scale meet in
    /// float64, each a float32). False when the step out changes no element: `length` is too short to
    /// move x in float32 (x is moved all the same).
    func move(_ x: UnsafeMutableBufferPointer<Float>, along index: Int, from taken: Double, to length: Double) -> Bool {
        precondition(x.count == self.length)
        let back = Float(taken * scales[index]), out = Float(length * scales[index])
        switch storage {
        case .single(let pool): return moveAlong(pool[index], back: back, out: out, x)
        case .half(let pool): return moveAlong(pool[index], back: back, out: out, x)
        }
    }

    /// Stores v as vector `index` with `scale` (from `scale(for:)`, finite), each element rounded to
    /// nearest.
    func store(_ v: some FloatVector, scale: Double, at index: Int) {
        precondition(v.count == length && scale.isFinite && scale > 0)
        switch storage {
        case .single(let pool): storeRounded(v, 1 / scale, into: pool[index])
        case .half(let pool): storeRounded(v, 1 / scale, into: pool[index])
        }
        scales[index] = scale
    }

    /// Σᵢ vᵢ xᵢ of stored vector `index` v, in float64.
    func dot(_ index: Int, _ x: UnsafeMutableBufferPointer<Float>) -> Double {
        precondition(x.count == length)
        switch storage {
        case .single(let pool): return StyleTransfer.dot(pool[index], x) * scales[index]
        case .half(let pool): return StyleTransfer.dot(pool[index], x) * scales[index]
        }
    }

    /// x += factor · v for stored vector `index` v; the factor and the scale meet in float64 and
    /// multiply the stored values as one float32.
    func addScaled(_ index: Int, by factor: Double, to x: UnsafeMutableBufferPointer<Float>) {
        precondition(x.count == length)
        let combined = Float(factor * scales[index])
        switch storage {
        case .single(let pool): StyleTransfer.addScaled(pool[index], by: combined, to: x)
        case .half(let pool): StyleTransfer.addScaled(pool[index], by: combined, to: x)
        }
    }

    /// Element i of stored vector `index`, as the recursion reads it (exact in float64).
    func value(_ index: Int, _ i: Int) -> Double {
        switch storage {
        case .single(let pool): return Double(pool[index][i].widened) * scales[index]
        case .half(let pool): return Double(pool[index][i].widened) * scales[index]
        }
    }
}

/// A float type vectors are stored in: float32, or float16 for the L-BFGS history in half the memory.
protocol StorageScalar: BinaryFloatingPoint {
    /// `value` rounded to the nearest representable value, ties to even; for float16, `value` must
    /// be finite with |value| < 2¹⁶ (values from 65520 on round to infinity).
    init(rounding value: Float)
    /// The value as float32; exact for every finite value.
    var widened: Float { get }
}

extension Float: StorageScalar {
    init(rounding value: Float) { self = value }
    var widened: Float { self }
}

extension Float16: StorageScalar {
    /// Float32 → float16 on the bits, without branches, so that it vectorizes (the standard library's
    /// conversion is a call per element on x86-64 without F16C). Results of at least 2⁻¹⁴ (normal):
    /// the exponent is rebiased from 127 to 15 and the 13 fraction bits dropped are rounded by adding
    /// 0xfff plus the lowest kept bit (ties to even), a carry moving into the exponent. Smaller results
    /// (subnormal or zero): adding 0.5 in float32 makes its unit in the last place 2⁻²⁴, float16's
    /// subnormal step, so the addition itself rounds, and the bits above 0.5's count those steps.
    init(rounding value: Float) {
        let magnitude = value.bitPattern & 0x7fff_ffff
        let normal = (magnitude &- (112 &<< 23) &+ 0xfff &+ ((magnitude &>> 13) & 1)) &>> 13
        let subnormal = (Float(bitPattern: magnitude) + 0.5).bitPattern &- Float(0.5).bitPattern
        let bits = magnitude < 113 &<< 23 ? subnormal : normal
        self.init(bitPattern: UInt16(truncatingIfNeeded: bits | (value.bitPattern &>> 16) & 0x8000))
    }

    /// Float16's magnitude bits placed in float32's exponent and fraction fields read as 2⁻¹¹² times
    /// the value, normals and subnormals alike, and the multiplication by 2¹¹² is exact; the sign bit
    /// is moved across. A few integer and float operations per element that vectorize, where the
    /// conversion the standard library offers on x86-64 without F16C is a call per element. Infinity
    /// and NaN (exponent field 31) would come out finite; the stored vectors never hold them.
    var widened: Float {
        let magnitude = Float(bitPattern: UInt32(bitPattern & 0x7fff) &<< 13) * 0x1p112
        return Float(bitPattern: magnitude.bitPattern | UInt32(bitPattern & 0x8000) &<< 16)
    }
}

/// `count` vectors of `length` elements in one zeroed allocation, freed with the pool.
final class VectorPool<Element: StorageScalar> {
    let count: Int
    let length: Int
    private let storage: UnsafeMutableBufferPointer<Element>  // (count, length)

    init(count: Int, length: Int) {
        self.count = count
        self.length = length
        storage = .allocate(capacity: count * length)
        storage.initialize(repeating: 0)
    }

    deinit { storage.deallocate() }

    /// The bytes of the allocation.
    var bytes: Int { storage.count * MemoryLayout<Element>.stride }

    subscript(slot: Int) -> UnsafeMutableBufferPointer<Element> {
        precondition(slot >= 0 && slot < count)
        return UnsafeMutableBufferPointer(rebasing: storage[(slot * length)..<((slot + 1) * length)])
    }

    func zero() { storage.update(repeating: 0) }
}

/// Float64 values summed lane by lane: one sum, or two at once.
private protocol Summable {
    static var zero: Self { get }
    static func + (a: Self, b: Self) -> Self
}

extension Double: Summable {}
extension SIMD2: Summable where Scalar == Double {}

/// Σ term(i) over 0..<count: four interleaved partial sums (i mod 4 for the first count − count mod 4
/// terms, the rest into the first) combined as (s₀ + s₁) + (s₂ + s₃), so equal terms give equal bits.
@inline(__always)
private func fixedOrderSum<T: Summable>(count n: Int, _ term: (Int) -> T) -> T {
    var s0 = T.zero, s1 = T.zero, s2 = T.zero, s3 = T.zero
    var i = 0
    while i &+ 4 <= n {
        s0 = s0 + term(i)
        s1 = s1 + term(i &+ 1)
        s2 = s2 + term(i &+ 2)
        s3 = s3 + term(i &+ 3)
        i = i &+ 4
    }
    while i < n {
        s0 = s0 + term(i)
        i = i &+ 1
    }
    return (s0 + s1) + (s2 + s3)
}

/// Σ aᵢ bᵢ in float64 over vectors of equal count.
private func dot<A: StorageScalar, B: StorageScalar>(_ a: UnsafeMutableBufferPointer<A>,
                                                     _ b: UnsafeMutableBufferPointer<B>) -> Double {
    precondition(a.count == b.count)
    return fixedOrderSum(count: a.count) { Double(a[$0].widened) * Double(b[$0].widened) }
}

/// (Σ sᵢ ỹᵢ, Σ ỹᵢ²) of a stored s and ỹᵢ = round(yᵢ · yInverse) in `Element`, rounded as
/// `storeRounded` rounds; sums in float64.
private func storedRoundedProducts<Element: StorageScalar>(_ s: UnsafeMutableBufferPointer<Element>, _ y: VectorDifference,
                                                           _ yInverse: Double) -> SIMD2<Double> {
    precondition(s.count == y.count)
    return fixedOrderSum(count: s.count) { i in
        let ry = Double(Element(rounding: Float(Double(y[i]) * yInverse)).widened)
        return SIMD2(Double(s[i].widened) * ry, ry * ry)
    }
}

/// xᵢ = (xᵢ − back · vᵢ) + out · vᵢ; whether any element differs from xᵢ − back · vᵢ.
private func moveAlong<Element: StorageScalar>(_ v: UnsafeMutableBufferPointer<Element>, back: Float, out: Float,
                                               _ x: UnsafeMutableBufferPointer<Float>) -> Bool {
    precondition(v.count == x.count)
    var changed: UInt8 = 0
    for i in 0..<x.count {
        let origin = x[i] - back * v[i].widened
        let moved = origin + out * v[i].widened
        changed |= moved != origin ? 1 : 0
        x[i] = moved
    }
    return changed != 0
}

/// destinationᵢ = round(vᵢ · inverseScale) in `Element`. The product, a power of two in float64, is
/// exact, and so is its conversion to float32 except below 2⁻¹²⁶, where float16 rounds to zero anyway.
private func storeRounded<Element: StorageScalar>(_ v: some FloatVector, _ inverseScale: Double,
                                                  into destination: UnsafeMutableBufferPointer<Element>) {
    precondition(v.count == destination.count)
    for i in 0..<destination.count { destination[i] = Element(rounding: Float(Double(v[i]) * inverseScale)) }
}

/// max |aᵢ|.
private func maxMagnitude(_ a: UnsafeMutableBufferPointer<Float>) -> Float {
    var result: Float = 0
    for i in 0..<a.count { result = max(result, abs(a[i])) }
    return result
}

/// y += factor · x.
private func addScaled<Element: StorageScalar>(_ x: UnsafeMutableBufferPointer<Element>, by factor: Float,
                                               to y: UnsafeMutableBufferPointer<Float>) {
    precondition(x.count == y.count)
    for i in 0..<y.count { y[i] += factor * x[i].widened }
}


import CBLAS

// The Wasserstein-2 style loss of one layer: the squared W2 distance between Gaussians fitted to the layer's features
// and to the style's, the means and covariances of the features over pixels (Dowson & Landau 1982 for the closed
// form; as a style loss in crowsonkb/style-transfer-pytorch). With F the layer's features (C × N), μ their mean over
// pixels, Σ = F Fᵀ / N − μ μᵀ their covariance, and μₜ, Σₜ the style's:
//
//     E = ( |μ − μₜ|² + tr Σ + tr Σₜ − 2 tr (S Σ S)^½ ) / C,    S = Σₜ^½
//
// a mean per channel, like the Gram loss's mean per entry (so neither the image size nor the layer's width changes
// its scale). With M = S Σ S, d tr M^½ = ½ tr (M^−½ dM), so
//
//     ∂E/∂Σ = D = (I − S M^−½ S) / C,   ∂E/∂μ = 2 (μ − μₜ) / C
//
// and through Σ and μ to each pixel's features f (the μ μᵀ of Σ only moves the mean term):
//
//     ∂E/∂f = 2/N · D f + 1/N · ( 2 (μ − μₜ) / C − 2 D μ )
//
// a product with a C × C matrix, as the Gram loss's gradient is, plus a bias per channel. S is computed once per
// target, M's eigen-decomposition (LAPACK's dsyevd) once per evaluation, all in float64. Eigenvalues of M below
// `eigenvalueFloor` of its largest are raised to that floor for the gradient, where M^−½ would otherwise be
// unbounded: a direction with no variance left is pulled back strongly but finitely.

/// The eigenvalues (ascending) and eigenvectors of a symmetric matrix, in float64.
struct SymmetricEigen {
    let order: Int
    /// λ₀ ≤ λ₁ ≤ …
    let values: [Double]
    /// (order, order): row k is the unit eigenvector of `values[k]`.
    let vectors: [Double]

    /// The decomposition of `matrix`, (order, order) symmetric (only one triangle is read), by LAPACK's divide and
    /// conquer `dsyevd`; nil when it does not converge (or the matrix is not finite).
    init?(_ matrix: [Double], order: Int) {
        precondition(order > 0 && matrix.count == order * order, "a symmetric matrix is order × order")
        var a = matrix, w = [Double](repeating: 0, count: order)
        var n = Int32(order), info: Int32 = 0
        // A workspace query first, then the decomposition; LAPACK's column-major eigenvectors are rows here.
        var workSize = 0.0, iworkSize: Int32 = 0, query: Int32 = -1
        dsyevd_("V", "L", &n, &a, &n, &w, &workSize, &query, &iworkSize, &query, &info, 1, 1)
        precondition(info == 0, "dsyevd workspace query failed (\(info))")
        var lwork = Int32(workSize), liwork = iworkSize
        var work = [Double](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
        dsyevd_("V", "L", &n, &a, &n, &w, &work, &lwork, &iwork, &liwork, &info, 1, 1)
        guard info == 0 else { return nil }
        self.order = order
        values = w
        vectors = a
    }

    /// V diag(f(λ)) Vᵀ, (order, order).
    func applying(_ f: (Double) -> Double) -> [Double] {
        var scaled = vectors  // row k times f(λₖ)
        for k in 0 ..< order {
            let factor = f(values[k])
            for i in 0 ..< order { scaled[k * order + i] *= factor }
        }
        var result = [Double](repeating: 0, count: order * order)
        // Σₖ vₖ (f(λₖ) vₖ)ᵀ: Vᵀ-rows times scaled rows, = (rows)ᵀ · scaled.
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(order), Int32(order), Int32(order),
                    1, vectors, Int32(order), scaled, Int32(order), 0, &result, Int32(order))
        return result
    }
}

/// The style's Gaussian at one layer, as the W2 loss needs it.
struct GaussianTarget {
    let channels: Int
    /// μₜ, (channels).
    let mean: [Double]
    /// S = Σₜ^½, (channels, channels), symmetric.
    let root: [Double]
    /// tr Σₜ.
    let trace: Double

    /// From the style's mean μₜ and second moment T = E[f fᵀ] (its Gram matrix), Σₜ = T − μₜ μₜᵀ.
    init(gram: [Float], mean: [Float], channels: Int) {
        precondition(gram.count == channels * channels && mean.count == channels)
        self.channels = channels
        self.mean = mean.map(Double.init)
        let covariance = Self.covariance(secondMoment: gram.map(Double.init), mean: self.mean)
        guard let eigen = SymmetricEigen(covariance, order: channels) else {
            preconditionFailure("no eigendecomposition of a style's covariance")
        }
        root = eigen.applying { max($0, 0).squareRoot() }
        trace = (0 ..< channels).reduce(0) { $0 + covariance[$1 * channels + $1] }
    }

    /// Σ = G − μ μᵀ.
    static func covariance(secondMoment: [Double], mean: [Double]) -> [Double] {
        let c = mean.count
        var covariance = secondMoment
        for i in 0 ..< c {
            for j in 0 ..< c { covariance[i * c + j] -= mean[i] * mean[j] }
        }
        return covariance
    }
}

/// Eigenvalues of M = S Σ S below this fraction of the largest count as this fraction for the gradient.
let eigenvalueFloor = 1e-6

/// E and what its gradient needs, for features of mean `mean` and second moment `secondMoment` (C × C) against
/// `target`: D = ∂E/∂Σ, (C, C), and the bias per channel b = 2 (μ − μₜ) / C − 2 D μ, so that ∂E/∂f = 2/N · D f + b / N.
func wassersteinTerm(target: GaussianTarget, mean: [Double], secondMoment: [Double])
    -> (value: Double, covarianceGradient: [Double], bias: [Double]) {
    let c = target.channels
    precondition(mean.count == c && secondMoment.count == c * c)
    // Features that are no longer finite (a diverging optimization) give a loss that is not either, which the driver
    // reports.
    let failed = (value: Double.nan, covarianceGradient: [Double](repeating: 0, count: c * c),
                  bias: [Double](repeating: 0, count: c))
    guard mean.allSatisfy(\.isFinite), secondMoment.allSatisfy(\.isFinite) else { return failed }
    let covariance = GaussianTarget.covariance(secondMoment: secondMoment, mean: mean)
    // M = S Σ S.
    var product = [Double](repeating: 0, count: c * c), m = [Double](repeating: 0, count: c * c)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(c), Int32(c), Int32(c),
                1, target.root, Int32(c), covariance, Int32(c), 0, &product, Int32(c))
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(c), Int32(c), Int32(c),
                1, product, Int32(c), target.root, Int32(c), 0, &m, Int32(c))
    guard let eigen = SymmetricEigen(m, order: c) else { return failed }
    let largest = max(eigen.values.last!, 0)
    var rootTrace = 0.0, meanDistance = 0.0, trace = 0.0
    for value in eigen.values { rootTrace += max(value, 0).squareRoot() }
    for i in 0 ..< c {
        meanDistance += (mean[i] - target.mean[i]) * (mean[i] - target.mean[i])
        trace += covariance[i * c + i]
    }
    let value = max(0, meanDistance + trace + target.trace - 2 * rootTrace) / Double(c)

    // D = (I − S M^−½ S) / C: W = S V diag(λ^−¼) (columns), then S M^−½ S = W Wᵀ.
    let floor = largest > 0 ? eigenvalueFloor * largest : 1
    var scaled = eigen.vectors  // rows vₖ λₖ^−¼
    for k in 0 ..< c {
        let factor = 1 / max(eigen.values[k], floor).squareRoot().squareRoot()
        for i in 0 ..< c { scaled[k * c + i] *= factor }
    }
    var w = [Double](repeating: 0, count: c * c)  // (C, C): W = S · scaledᵀ
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(c), Int32(c), Int32(c),
                1, target.root, Int32(c), scaled, Int32(c), 0, &w, Int32(c))
    var gradient = [Double](repeating: 0, count: c * c)
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(c), Int32(c), -1 / Double(c), w, Int32(c),
                0, &gradient, Int32(c))
    for i in 0 ..< c {
        gradient[i * c + i] += 1 / Double(c)
        for j in 0 ..< i { gradient[i * c + j] = gradient[j * c + i] }
    }
    var bias = [Double](repeating: 0, count: c)
    for i in 0 ..< c {
        var dMean = 0.0
        for j in 0 ..< c { dMean += gradient[i * c + j] * mean[j] }
        bias[i] = 2 * (mean[i] - target.mean[i]) / Double(c) - 2 * dMean
    }
    return (value, gradient, bias)
}

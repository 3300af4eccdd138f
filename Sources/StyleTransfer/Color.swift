#if canImport(Glibc)
import Glibc  // links libm, where squareRoot() may lower to sqrt
#endif

// Colour helpers for transfers that keep the content's colours (Gatys, Bethge, Hertzmann, Shechtman,
// "Preserving Color in Neural Artistic Style Transfer", 2016). Two ways, both on planar RGB images
// (3, height, width) in any linear unit (0…1, 0…255: the maps below are linear or affine):
//
// 1. Luminance-only transfer. Take the luminance Y of content and style (`YIQ.luminance`), match the
//    style's Y mean and deviation to the content's (`matchMeanAndDeviation`), run the transfer on
//    grey images made of Y, then give the result the content's chrominance
//    (`YIQ.replacingLuminance`): the output has the stylized brightness and the content's hue.
// 2. Colour matching. Transform the style image's colours affinely so that their mean and 3 × 3
//    covariance equal the content's (`matchColorStatistics`), then run an ordinary transfer: the
//    style's strokes and texture arrive in the content's palette.

/// The YIQ colour space (NTSC 1953, FCC coefficients): Y is luminance, I and Q the chrominance, which
/// is zero for every grey (R = G = B).
public enum YIQ {
    /// RGB → YIQ, row-major 3 × 3.
    public static let fromRGBMatrix: [Double] = [
        0.299, 0.587, 0.114,
        0.595716, -0.274453, -0.321263,
        0.211456, -0.522591, 0.311135,
    ]

    /// YIQ → RGB, the exact inverse of `fromRGBMatrix` computed in float64 (not the rounded published
    /// coefficients), so a round trip is exact up to float32 rounding.
    public static let toRGBMatrix: [Double] = inverse3x3(fromRGBMatrix)

    /// Converts a planar RGB image, (3, height, width), to planar YIQ in place.
    public static func convertFromRGB(_ image: inout [Float]) {
        transform(&image, by: fromRGBMatrix)
    }

    /// Converts a planar YIQ image, (3, height, width), to planar RGB in place.
    public static func convertToRGB(_ image: inout [Float]) {
        transform(&image, by: toRGBMatrix)
    }

    /// The luminance plane Y = 0.299 R + 0.587 G + 0.114 B, (height, width), of a planar RGB image.
    public static func luminance(ofRGB image: [Float]) -> [Float] {
        let pixels = planeSize(image)
        let r = Float(fromRGBMatrix[0]), g = Float(fromRGBMatrix[1]), b = Float(fromRGBMatrix[2])
        var y = [Float](repeating: 0, count: pixels)  // (height, width)
        for p in 0..<pixels {
            y[p] = r * image[p] + g * image[pixels &+ p] + b * image[2 &* pixels &+ p]
        }
        return y
    }

    /// A planar RGB image, (3, height, width), whose luminance is `luminance`, (height, width), and
    /// whose chrominance (I, Q) is that of `chrominanceSource`, (3, height, width) RGB. Values are not
    /// clamped: a bright Y under a saturated hue can leave the RGB cube, which the writer clamps.
    public static func replacingLuminance(of chrominanceSource: [Float], with luminance: [Float]) -> [Float] {
        var image = chrominanceSource
        convertFromRGB(&image)
        precondition(luminance.count * 3 == image.count, "luminance plane differs in size from the image")
        for p in 0..<luminance.count { image[p] = luminance[p] }
        convertToRGB(&image)
        return image
    }

    /// v ← M v for every pixel v of a planar three-channel image.
    private static func transform(_ image: inout [Float], by matrix: [Double]) {
        let pixels = planeSize(image)
        let m = matrix.map { Float($0) }
        for p in 0..<pixels {
            let a = image[p], b = image[pixels &+ p], c = image[2 &* pixels &+ p]
            image[p] = m[0] * a + m[1] * b + m[2] * c
            image[pixels &+ p] = m[3] * a + m[4] * b + m[5] * c
            image[2 &* pixels &+ p] = m[6] * a + m[7] * b + m[8] * c
        }
    }
}

/// Scales and shifts a plane (any shape) so that its mean and standard deviation equal those of
/// `reference` (any size): x ← σ_ref / σ (x − μ) + μ_ref. Used on the style's luminance before a
/// luminance-only transfer, so that the style's contrast, not its brightness, is transferred. A
/// constant plane becomes the constant μ_ref. Statistics are float64.
public func matchMeanAndDeviation(_ plane: inout [Float], to reference: [Float]) {
    precondition(!plane.isEmpty && !reference.isEmpty, "cannot match statistics of an empty plane")
    let (mean, deviation) = meanAndDeviation(plane)
    let (referenceMean, referenceDeviation) = meanAndDeviation(reference)
    let gain = deviation > 0 ? referenceDeviation / deviation : 0
    for i in plane.indices {
        plane[i] = Float(gain * (Double(plane[i]) - mean) + referenceMean)
    }
}

/// Transforms the colours of a planar RGB image, (3, height, width), by the affine map
/// x ← A (x − μ) + μ_ref with A = Σ_ref^½ Σ^−½ (symmetric matrix square roots), so that the mean
/// and the 3 × 3 colour covariance of the result equal those of `reference`, (3, h, w) of any size.
/// Apply it to a style image with the content as reference to paint in the content's palette.
/// Eigenvalues of Σ below 10⁻⁶ of its largest are raised to that bound, so that a grey or flat
/// image is not divided by zero; a constant image becomes μ_ref everywhere. Statistics are float64.
public func matchColorStatistics(_ image: inout [Float], to reference: [Float]) {
    let pixels = planeSize(image)
    let (mean, covariance) = colorStatistics(image)
    let (referenceMean, referenceCovariance) = colorStatistics(reference)
    let (values, vectors) = symmetricEigen3x3(covariance)
    let largest = values.max()!
    var a = [Double](repeating: 0, count: 9)  // (3, 3)
    if largest > 0 {
        let inverseRoot = symmetricFunction(vectors, values.map { 1 / max($0, 1e-6 * largest).squareRoot() })
        let (referenceValues, referenceVectors) = symmetricEigen3x3(referenceCovariance)
        let referenceRoot = symmetricFunction(referenceVectors, referenceValues.map { max($0, 0).squareRoot() })
        a = multiply3x3(referenceRoot, inverseRoot)
    }
    for p in 0..<pixels {
        let d0 = Double(image[p]) - mean[0]
        let d1 = Double(image[pixels &+ p]) - mean[1]
        let d2 = Double(image[2 &* pixels &+ p]) - mean[2]
        image[p] = Float(a[0] * d0 + a[1] * d1 + a[2] * d2 + referenceMean[0])
        image[pixels &+ p] = Float(a[3] * d0 + a[4] * d1 + a[5] * d2 + referenceMean[1])
        image[2 &* pixels &+ p] = Float(a[6] * d0 + a[7] * d1 + a[8] * d2 + referenceMean[2])
    }
}

// MARK: - Small float64 linear algebra

/// Pixels per plane of a planar three-channel image.
private func planeSize(_ image: [Float]) -> Int {
    precondition(!image.isEmpty && image.count % 3 == 0, "a colour image has three planes")
    return image.count / 3
}

private func meanAndDeviation(_ values: [Float]) -> (mean: Double, deviation: Double) {
    var sum = 0.0
    for v in values { sum += Double(v) }
    let mean = sum / Double(values.count)
    var squares = 0.0
    for v in values { squares += (Double(v) - mean) * (Double(v) - mean) }
    return (mean, (squares / Double(values.count)).squareRoot())
}

/// Per-channel mean (3) and population covariance (3, 3) of a planar three-channel image.
private func colorStatistics(_ image: [Float]) -> (mean: [Double], covariance: [Double]) {
    let pixels = planeSize(image)
    var m0 = 0.0, m1 = 0.0, m2 = 0.0
    for p in 0..<pixels {
        m0 += Double(image[p])
        m1 += Double(image[pixels &+ p])
        m2 += Double(image[2 &* pixels &+ p])
    }
    let n = Double(pixels)
    m0 /= n
    m1 /= n
    m2 /= n
    var c00 = 0.0, c01 = 0.0, c02 = 0.0, c11 = 0.0, c12 = 0.0, c22 = 0.0
    for p in 0..<pixels {
        let d0 = Double(image[p]) - m0, d1 = Double(image[pixels &+ p]) - m1, d2 = Double(image[2 &* pixels &+ p]) - m2
        c00 += d0 * d0
        c01 += d0 * d1
        c02 += d0 * d2
        c11 += d1 * d1
        c12 += d1 * d2
        c22 += d2 * d2
    }
    return ([m0, m1, m2], [c00, c01, c02, c01, c11, c12, c02, c12, c22].map { $0 / n })
}

/// Eigenvalues and eigenvectors (columns of a row-major 3 × 3) of a symmetric 3 × 3 matrix, by
/// cyclic Jacobi rotations until the off-diagonal part vanishes in float64.
private func symmetricEigen3x3(_ matrix: [Double]) -> (values: [Double], vectors: [Double]) {
    var a = matrix
    var v: [Double] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
    for _ in 0..<50 {
        let off = a[1] * a[1] + a[2] * a[2] + a[5] * a[5]
        let diagonal = a[0] * a[0] + a[4] * a[4] + a[8] * a[8]
        if off <= 1e-30 * diagonal || off == 0 { break }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] where a[p * 3 + q] != 0 {
            // Rotation in the (p, q) plane that zeroes a[p][q].
            let theta = (a[q * 3 + q] - a[p * 3 + p]) / (2 * a[p * 3 + q])
            let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
            let c = 1 / (t * t + 1).squareRoot(), s = t * c
            for k in 0..<3 {  // a ← a J (columns p, q)
                let akp = a[k * 3 + p], akq = a[k * 3 + q]
                a[k * 3 + p] = c * akp - s * akq
                a[k * 3 + q] = s * akp + c * akq
            }
            for k in 0..<3 {  // a ← Jᵀ a (rows p, q)
                let apk = a[p * 3 + k], aqk = a[q * 3 + k]
                a[p * 3 + k] = c * apk - s * aqk
                a[q * 3 + k] = s * apk + c * aqk
            }
            for k in 0..<3 {  // v ← v J
                let vkp = v[k * 3 + p], vkq = v[k * 3 + q]
                v[k * 3 + p] = c * vkp - s * vkq
                v[k * 3 + q] = s * vkp + c * vkq
            }
        }
    }
    return ([a[0], a[4], a[8]], v)
}

/// V diag(f) Vᵀ for eigenvectors V (columns) and transformed eigenvalues f.
private func symmetricFunction(_ vectors: [Double], _ values: [Double]) -> [Double] {
    var result = [Double](repeating: 0, count: 9)
    for i in 0..<3 {
        for j in 0..<3 {
            for k in 0..<3 { result[i * 3 + j] += vectors[i * 3 + k] * values[k] * vectors[j * 3 + k] }
        }
    }
    return result
}

private func multiply3x3(_ a: [Double], _ b: [Double]) -> [Double] {
    var result = [Double](repeating: 0, count: 9)
    for i in 0..<3 {
        for j in 0..<3 {
            for k in 0..<3 { result[i * 3 + j] += a[i * 3 + k] * b[k * 3 + j] }
        }
    }
    return result
}

/// The inverse of an invertible 3 × 3 matrix (row-major), by cofactors.
private func inverse3x3(_ m: [Double]) -> [Double] {
    let cofactors: [Double] = [
        m[4] * m[8] - m[5] * m[7], m[2] * m[7] - m[1] * m[8], m[1] * m[5] - m[2] * m[4],
        m[5] * m[6] - m[3] * m[8], m[0] * m[8] - m[2] * m[6], m[2] * m[3] - m[0] * m[5],
        m[3] * m[7] - m[4] * m[6], m[1] * m[6] - m[0] * m[7], m[0] * m[4] - m[1] * m[3],
    ]
    let determinant = m[0] * cofactors[0] + m[1] * cofactors[3] + m[2] * cofactors[6]
    precondition(determinant != 0, "singular colour matrix")
    return cofactors.map { $0 / determinant }
}

import Foundation
import Kernels

// Dense optical flow between two video frames, for carrying a stylized frame over to the next one, and the test that
// says where such a flow can be trusted.
//
// The estimator is a coarse-to-fine variational method in the manner of Brox, Bruhn, Papenberg and Weickert, "High
// Accuracy Optical Flow Estimation Based on a Theory for Warping" (ECCV 2004), with the separate robust data terms and
// the blended derivatives that Sun, Roth and Black, "Secrets of Optical Flow Estimation and Their Principles" (CVPR
// 2010), found to help. It minimizes over the flow w = (u, v)
//
//     E(w) = Σ_p ψ(|I₂(p + w) − I₁(p)|²) + γ ψ(|∇I₂(p + w) − ∇I₁(p)|²) + α ψ(|∇u|² + |∇v|²),
//
// ψ(s²) = √(s² + ε²) the Charbonnier penalty (a differentiable L1): brightness and gradient constancy, each robust to
// the pixels that break it (occlusions, specularities), and a total-variation-like smoothness that lets the flow jump
// at motion boundaries and fills textureless regions from their surroundings. Large motions are found on a pyramid
// (each level half the size of the next, the coarsest 8 to 16 pixels on its short side), the flow of a coarser level
// being the start of the next; at each level the second image is warped by the current flow a few times, the data
// terms are linearized about the warped image, and the increment of the flow is solved by lagged-weight fixed-point
// iterations whose linear systems a few red-black successive over-relaxation (SOR) sweeps solve.
//
// Why this method rather than DIS (Kroeger, Timofte, Dai and Van Gool, "Fast Optical Flow using Dense Inverse Search",
// ECCV 2016): DIS's patch search is fast, but its accuracy on smooth motion comes from the variational refinement it
// runs at every level anyway, which is this method with fewer iterations; the variational method alone is one smaller
// piece of code, its subpixel accuracy comes straight from the data term (no averaging of overlapping patches), and
// every step is a pointwise map or a small stencil. The red-black ordering updates each pixel from neighbours of the
// other colour only, so a sweep can be split over rows among threads and still give the same bytes as one thread.

/// A dense displacement field in pixels over a width × height grid: the point (x + dx, y + dy) of the other frame
/// corresponds to the pixel (x, y) of this one.
public struct FlowField: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var dx: [Float]  // (height, width)
    public var dy: [Float]  // (height, width)

    public init(width: Int, height: Int, dx: [Float], dy: [Float]) {
        precondition(width > 0 && height > 0, "a flow field's sizes must be positive")
        precondition(dx.count == width * height && dy.count == width * height, "flow planes differ from the field's size")
        self.width = width
        self.height = height
        self.dx = dx
        self.dy = dy
    }

    /// No motion anywhere.
    public static func zero(width: Int, height: Int) -> FlowField {
        let plane = [Float](repeating: 0, count: width * height)
        return FlowField(width: width, height: height, dx: plane, dy: plane)
    }

    /// Where the flow takes pixel (x, y): (x + dx, y + dy), or nil when that falls outside the frame.
    func source(x: Int, y: Int) -> (x: Float, y: Float)? {
        let p = y * width + x
        let (sourceX, sourceY) = (Float(x) + dx[p], Float(y) + dy[p])
        guard sourceX >= 0 && sourceX <= Float(width - 1) && sourceY >= 0 && sourceY <= Float(height - 1) else {
            return nil
        }
        return (sourceX, sourceY)
    }
}

/// How the flow is estimated: the weights of the energy and the iteration counts. The defaults are the ones the tests and
/// `pamstyle-bench --flow` measure; intensities are taken in 0…1.
package struct FlowSettings {
    package init() {}

    /// α, the weight of the smoothness term.
    package var smoothness: Float = 0.02
    /// γ, the weight of gradient constancy against brightness constancy.
    package var gradientWeight: Float = 1
    /// ε of the Charbonnier penalty √(s² + ε²) in the data terms (intensity units) and in the smoothness term (pixels
    /// per pixel).
    package var epsilon: Float = 0.001
    /// The size ratio of consecutive pyramid levels.
    package var levelScale: Float = 0.5
    /// No level is made whose shorter side would fall below this (unless the image itself is smaller).
    package var coarsestSide = 8
    /// σ in pixels of the Gaussian both frames are blurred with before the pyramid is built.
    package var presmoothing: Float = 0.6
    /// Warps of the second frame by the current flow per level; each starts a new linearization.
    package var warps = 3
    /// Lagged-weight fixed-point iterations per warp: the robust weights are recomputed from the increment so far.
    package var fixedPointIterations = 2
    /// Red-black SOR sweeps per fixed-point iteration.
    package var sweeps = 10
    /// ω of the over-relaxation, in (0, 2).
    package var relaxation: Float = 1.8
}

public enum OpticalFlow {
    /// The flow from `reference` to `target`, two gray images (height, width) with samples in 0…1:
    /// reference(p) ≈ target(p + w(p)).
    ///
    /// The method is described at the top of this file. The result is deterministic: the same frames give the same bytes
    /// whatever `threads` (default: every core) is. Where the frames carry no texture the smoothness term fills the flow
    /// in from the surroundings; a flat pair of frames gives zero flow. Where p + w(p) leaves the target, the data terms
    /// are dropped and the flow there is the smooth continuation of its neighbours'.
    public static func estimate(from reference: [Float], to target: [Float], width: Int, height: Int,
                                threads: Int? = nil) -> FlowField {
        estimate(from: reference, to: target, width: width, height: height, settings: FlowSettings(),
                 threads: threads ?? coreCount)
    }

    /// `estimate` with its settings given.
    package static func estimate(from reference: [Float], to target: [Float], width: Int, height: Int,
                         settings: FlowSettings, threads: Int) -> FlowField {
        precondition(width > 0 && height > 0, "image sizes must be positive")
        precondition(reference.count == width * height && target.count == width * height,
                     "frame buffers differ from their shape")
        let first = gaussianBlur(reference, width: width, height: height, sigma: settings.presmoothing)  // (height, width)
        let second = gaussianBlur(target, width: width, height: height, sigma: settings.presmoothing)  // (height, width)
        var flow: FlowField?
        for (levelWidth, levelHeight) in pyramidSizes(width: width, height: height, settings: settings).reversed() {
            let start = flow.map { upsample($0, width: levelWidth, height: levelHeight) }
                ?? .zero(width: levelWidth, height: levelHeight)
            let levelFirst = resample(first, channels: 1, height: height, width: width,
                                      toHeight: levelHeight, toWidth: levelWidth)  // (levelHeight, levelWidth)
            let levelSecond = resample(second, channels: 1, height: height, width: width,
                                       toHeight: levelHeight, toWidth: levelWidth)  // (levelHeight, levelWidth)
            var level = LevelSolver(reference: levelFirst, target: levelSecond, flow: start, settings: settings,
                                    threads: threads)
            level.solve()
            flow = level.flow
        }
        return flow!
    }

    /// Backward warp of `channels` planes (channels, height, width): out(p) = image(p + w(p)), bilinear, with
    /// coordinates clamped to the image.
    ///
    /// p + w(p) is clamped to [0, width − 1] × [0, height − 1] before it is sampled, so a flow pointing out of the
    /// image reads the nearest edge pixel. Integer displacements copy pixels exactly.
    public static func warp(_ image: [Float], channels: Int, by flow: FlowField) -> [Float] {
        let (width, height) = (flow.width, flow.height)
        let plane = width * height
        precondition(channels > 0 && image.count == channels * plane, "image buffer differs from the flow's shape")
        var out = [Float](repeating: 0, count: image.count)  // (channels, height, width)
        for y in 0 ..< height {
            for x in 0 ..< width {
                let p = y * width + x
                let sample = BilinearSample(x: Float(x) + flow.dx[p], y: Float(y) + flow.dy[p], width: width,
                                            height: height)
                for c in 0 ..< channels {
                    out[c * plane + p] = sample.value(in: image, offset: c * plane)
                }
            }
        }
        return out
    }

    /// Where `backward` (the flow from frame t to frame t−1) can be trusted, per pixel of frame t, 1 or 0, given
    /// `forward` (t−1 to t).
    ///
    /// The two tests of Ruder, Dosovitskiy and Brox, "Artistic Style Transfer for Videos" (GCPR 2016, section 3.2), with
    /// their thresholds. With ŵ = backward(p) and w̃ = forward(p + ŵ) (the forward flow warped to frame t, bilinear):
    /// - forward-backward consistency: a pixel seen in both frames moves back and forth again, w̃ ≈ −ŵ, so p is
    ///   disoccluded (0) where |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5;
    /// - motion boundary: p is 0 where |∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002, the gradients of ŵ = (û, v̂) by central
    ///   differences (one-sided at the image's edges).
    /// A pixel whose p + ŵ falls outside frame t−1 (beyond the outermost pixel centres) is 0 as well: it has no
    /// counterpart there. Every other pixel is 1.
    public static func reliability(backward: FlowField, forward: FlowField) -> [Float] {
        precondition(backward.width == forward.width && backward.height == forward.height,
                     "the forward and backward flows differ in size")
        let (width, height) = (backward.width, backward.height)
        var reliable = [Float](repeating: 0, count: width * height)  // (height, width)
        for y in 0 ..< height {
            for x in 0 ..< width {
                let p = y * width + x
                let (u, v) = (backward.dx[p], backward.dy[p])
                guard let (sourceX, sourceY) = backward.source(x: x, y: y) else { continue }
                let sample = BilinearSample(x: sourceX, y: sourceY, width: width, height: height)
                let (warpedU, warpedV) = (sample.value(in: forward.dx), sample.value(in: forward.dy))
                let (sumU, sumV) = (warpedU + u, warpedV + v)
                let backwardSquared = u * u + v * v
                if sumU * sumU + sumV * sumV > 0.01 * (warpedU * warpedU + warpedV * warpedV + backwardSquared) + 0.5 {
                    continue
                }
                let (ux, vx) = centralDifference(backward, x: x, y: y, alongX: true)
                let (uy, vy) = centralDifference(backward, x: x, y: y, alongX: false)
                if ux * ux + vx * vx + uy * uy + vy * vy > 0.01 * backwardSquared + 0.002 { continue }
                reliable[p] = 1
            }
        }
        return reliable
    }
}

// MARK: - Sampling

/// The four pixels around a point of a (height, width) plane and their bilinear weights, the point clamped to
/// [0, width − 1] × [0, height − 1].
struct BilinearSample {
    let topLeft: Int
    /// Offsets from `topLeft` to the pixel on its right and to the one below (0 at the last column or row).
    let right: Int
    let down: Int
    let fractionX: Float
    let fractionY: Float

    init(x: Float, y: Float, width: Int, height: Int) {
        let cx = min(max(x, 0), Float(width - 1)), cy = min(max(y, 0), Float(height - 1))
        let left = Int(cx), top = Int(cy)  // floor: cx, cy ≥ 0
        topLeft = top * width + left
        right = left + 1 < width ? 1 : 0
        down = top + 1 < height ? width : 0
        fractionX = cx - Float(left)
        fractionY = cy - Float(top)
    }

    /// The interpolated value in the plane that starts at `offset` of `plane`.
    func value(in plane: [Float], offset: Int = 0) -> Float {
        let p = offset + topLeft
        let upper = plane[p] + fractionX * (plane[p + right] - plane[p])
        let lower = plane[p + down] + fractionX * (plane[p + down + right] - plane[p + down])
        return upper + fractionY * (lower - upper)
    }
}

/// (∂u, ∂v) of a flow along x or y at (x, y): central differences, one-sided at the first and last column or row, zero
/// along an axis of one pixel.
private func centralDifference(_ flow: FlowField, x: Int, y: Int, alongX: Bool) -> (Float, Float) {
    let (index, count, stride) = alongX ? (x, flow.width, 1) : (y, flow.height, flow.width)
    let before = max(index - 1, 0), after = min(index + 1, count - 1)
    guard after > before else { return (0, 0) }
    let p = y * flow.width + x
    let (a, b) = (p + (before - index) * stride, p + (after - index) * stride)
    let span = Float(after - before)
    return ((flow.dx[b] - flow.dx[a]) / span, (flow.dy[b] - flow.dy[a]) / span)
}

/// The weights of Keys's cubic convolution (a = −½, Catmull–Rom) for the samples at offsets −1, 0, 1, 2 from the
/// sample left of a point `t` ∈ [0, 1) past it. They sum to one and reproduce quadratics.
@inline(__always)
func cubicWeights(_ t: Float) -> (Float, Float, Float, Float) {
    let t2 = t * t, t3 = t2 * t
    return (0.5 * (-t3 + 2 * t2 - t), 0.5 * (3 * t3 - 5 * t2 + 2), 0.5 * (-3 * t3 + 4 * t2 + t), 0.5 * (t3 - t2))
}

/// The bicubic (Keys, a = −½) value of a (height, width) plane at (x, y), the point clamped to the image and the taps
/// past its edges reading the edge pixels.
@inline(__always)
func bicubicSample(_ plane: UnsafeBufferPointer<Float>, width: Int, height: Int, x: Float, y: Float) -> Float {
    let cx = min(max(x, 0), Float(width - 1)), cy = min(max(y, 0), Float(height - 1))
    let left = Int(cx), top = Int(cy)  // floor: cx, cy ≥ 0
    let (wx0, wx1, wx2, wx3) = cubicWeights(cx - Float(left))
    let (wy0, wy1, wy2, wy3) = cubicWeights(cy - Float(top))
    let x0 = max(left - 1, 0), x1 = left, x2 = min(left + 1, width - 1), x3 = min(left + 2, width - 1)
    @inline(__always) func row(_ r: Int) -> Float {
        let base = min(max(r, 0), height - 1) * width
        return wx0 * plane[base + x0] + wx1 * plane[base + x1] + wx2 * plane[base + x2] + wx3 * plane[base + x3]
    }
    return wy0 * row(top - 1) + wy1 * row(top) + wy2 * row(top + 1) + wy3 * row(top + 2)
}

// MARK: - Pyramid

/// The (width, height) of each pyramid level, finest (the image's own) first: each the previous scaled by
/// `levelScale` and rounded, while the shorter side stays at least `coarsestSide`.
func pyramidSizes(width: Int, height: Int, settings: FlowSettings) -> [(width: Int, height: Int)] {
    var sizes = [(width: width, height: height)]
    var factor = settings.levelScale
    while true {
        let next = (width: Int((Float(width) * factor).rounded()), height: Int((Float(height) * factor).rounded()))
        guard min(next.width, next.height) >= settings.coarsestSide else { break }
        sizes.append(next)
        factor *= settings.levelScale
    }
    return sizes
}

/// A flow resized to a finer grid (bilinear, pixel centres aligned) with its displacements scaled by the change of
/// size along each axis.
func upsample(_ flow: FlowField, width: Int, height: Int) -> FlowField {
    let sx = Float(width) / Float(flow.width), sy = Float(height) / Float(flow.height)
    let dx = resample(flow.dx, channels: 1, height: flow.height, width: flow.width, toHeight: height, toWidth: width)
    let dy = resample(flow.dy, channels: 1, height: flow.height, width: flow.width, toHeight: height, toWidth: width)
    return FlowField(width: width, height: height, dx: dx.map { $0 * sx }, dy: dy.map { $0 * sy })
}

/// A (height, width) plane blurred by a Gaussian of deviation `sigma` pixels (taps to 3σ, normalized), edges replicated.
/// σ ≤ 0 returns the plane.
func gaussianBlur(_ plane: [Float], width: Int, height: Int, sigma: Float) -> [Float] {
    guard sigma > 0 else { return plane }
    let radius = max(1, Int((3 * sigma).rounded(.up)))
    var taps = (-radius ... radius).map { exp(-Float($0 * $0) / (2 * sigma * sigma)) }
    let total = taps.reduce(0, +)
    taps = taps.map { $0 / total }
    var rows = [Float](repeating: 0, count: plane.count)  // (height, width): blurred along x
    for y in 0 ..< height {
        for x in 0 ..< width {
            var sum: Float = 0
            for k in -radius ... radius { sum += taps[k + radius] * plane[y * width + min(max(x + k, 0), width - 1)] }
            rows[y * width + x] = sum
        }
    }
    var blurred = [Float](repeating: 0, count: plane.count)  // (height, width)
    for y in 0 ..< height {
        for k in -radius ... radius {
            let source = min(max(y + k, 0), height - 1) * width, weight = taps[k + radius]
            for x in 0 ..< width { blurred[y * width + x] += weight * rows[source + x] }
        }
    }
    return blurred
}

// MARK: - One level

/// The planes of one level's solver, each (height, width), stored one after another in `LevelSolver.planes`.
private enum Plane: Int, CaseIterable {
    /// The first frame I₁, its derivatives, the second frame I₂, and I₂ warped by the flow.
    case first, firstX, firstY, second, warped, warpedX, warpedY
    /// The flow at the start of the warp and its increment.
    case u, v, du, dv
    /// The linearized data terms: ∂I/∂x, ∂I/∂y (averaged over both frames), I₂(p + w) − I₁(p); their derivatives
    /// ∂²I/∂x², ∂²I/∂x∂y, ∂²I/∂y² and the gradient differences ∂I₂/∂x(p + w) − ∂I₁/∂x(p), likewise in y. Zero where p + w
    /// leaves the image.
    case ix, iy, iz, ixx, ixy, iyy, ixz, iyz
    /// 1 where p + w lies in the image, 0 where it does not.
    case inside
    /// The robust smoothness weight ψ′ at each pixel, then α times the weights of the edges to the right and below.
    case smoothWeight, rightWeight, downWeight
    /// Per pixel, the inverse of the symmetric 2 × 2 matrix of the increment's linear equations and their right-hand
    /// sides without the neighbours' increments.
    case inverse11, inverse12, inverse22, rhsU, rhsV
}

/// The variational solver at one pyramid level: warps, linearizations and SOR sweeps over its planes.
private struct LevelSolver {
    let width: Int
    let height: Int
    let settings: FlowSettings
    let threads: Int
    var planes: [Float]  // (Plane.allCases.count, height, width)

    init(reference: [Float], target: [Float], flow: FlowField, settings: FlowSettings, threads: Int) {
        (width, height) = (flow.width, flow.height)
        self.settings = settings
        self.threads = threads
        let n = width * height
        planes = [Float](repeating: 0, count: Plane.allCases.count * n)
        planes.replaceSubrange(Plane.first.rawValue * n ..< (Plane.first.rawValue + 1) * n, with: reference)
        planes.replaceSubrange(Plane.second.rawValue * n ..< (Plane.second.rawValue + 1) * n, with: target)
        planes.replaceSubrange(Plane.u.rawValue * n ..< (Plane.u.rawValue + 1) * n, with: flow.dx)
        planes.replaceSubrange(Plane.v.rawValue * n ..< (Plane.v.rawValue + 1) * n, with: flow.dy)
        withPlanes { planes in
            planes.derivatives(of: .first, x: .firstX, y: .firstY)
        }
    }

    var flow: FlowField {
        let n = width * height
        return FlowField(width: width, height: height,
                         dx: Array(planes[Plane.u.rawValue * n ..< (Plane.u.rawValue + 1) * n]),
                         dy: Array(planes[Plane.v.rawValue * n ..< (Plane.v.rawValue + 1) * n]))
    }

    mutating func solve() {
        let settings = settings
        withPlanes { planes in
            for _ in 0 ..< settings.warps {
                planes.linearize()
                planes.fill(.du, with: 0)
                planes.fill(.dv, with: 0)
                for _ in 0 ..< settings.fixedPointIterations {
                    planes.buildSystem()
                    for _ in 0 ..< settings.sweeps {
                        planes.sweep(color: 0)
                        planes.sweep(color: 1)
                    }
                }
                planes.addIncrement()
            }
        }
    }

    private mutating func withPlanes(_ body: (Planes) -> Void) {
        let (width, height, settings, threads) = (width, height, settings, threads)
        planes.withUnsafeMutableBufferPointer { buffer in
            body(Planes(buffer: buffer, width: width, height: height, settings: settings, threads: threads))
        }
    }
}

/// A level's planes in one buffer and the passes over them. Each pass writes planes it does not read (or, in an SOR
/// sweep, pixels of one colour from pixels of the other), row by row, so rows can be split among threads freely.
private struct Planes {
    let buffer: UnsafeMutableBufferPointer<Float>  // (Plane.allCases.count, height, width)
    let width: Int
    let height: Int
    let settings: FlowSettings
    let threads: Int

    subscript(_ plane: Plane) -> UnsafeMutableBufferPointer<Float> {
        let n = width * height
        return UnsafeMutableBufferPointer(rebasing: buffer[plane.rawValue * n ..< (plane.rawValue + 1) * n])
    }

    /// Calls `body` for row ranges covering 0..<height, on up to `threads` threads when the level is large enough.
    func rows(cost: Int, _ body: (Range<Int>) -> Void) {
        parallelFor(height, cost: width * cost, threads: threads, body)
    }

    func fill(_ plane: Plane, with value: Float) {
        let target = self[plane]
        for i in target.indices { target[i] = value }
    }

    /// The derivatives along x and y of a plane by the five-point stencil (f₋₂ − 8 f₋₁ + 8 f₁ − f₂) / 12, the taps past
    /// the edges reading the edge pixels.
    func derivatives(of source: Plane, x xPlane: Plane, y yPlane: Plane) {
        let (f, dx, dy) = (self[source], self[xPlane], self[yPlane])
        let (width, height) = (width, height)
        rows(cost: 12) { rows in
            for y in rows {
                let row = y * width
                let up2 = max(y - 2, 0) * width, up1 = max(y - 1, 0) * width
                let down1 = min(y + 1, height - 1) * width, down2 = min(y + 2, height - 1) * width
                for x in 0 ..< width {
                    let left2 = max(x - 2, 0), left1 = max(x - 1, 0)
                    let right1 = min(x + 1, width - 1), right2 = min(x + 2, width - 1)
                    dx[row + x] = (f[row + left2] - 8 * f[row + left1] + 8 * f[row + right1] - f[row + right2]) / 12
                    dy[row + x] = (f[up2 + x] - 8 * f[up1 + x] + 8 * f[down1 + x] - f[down2 + x]) / 12
                }
            }
        }
    }

    /// Warps the second frame by (u, v) and linearizes the data terms about it: the planes ix … iyz.
    func linearize() {
        let (second, warped, u, v) = (UnsafeBufferPointer(self[.second]), self[.warped], self[.u], self[.v])
        let (width, height) = (width, height)
        rows(cost: 40) { rows in
            for y in rows {
                for x in 0 ..< width {
                    let p = y * width + x
                    warped[p] = bicubicSample(second, width: width, height: height, x: Float(x) + u[p], y: Float(y) + v[p])
                }
            }
        }
        derivatives(of: .warped, x: .warpedX, y: .warpedY)
        let (first, firstX, firstY) = (self[.first], self[.firstX], self[.firstY])
        let (warpedX, warpedY) = (self[.warpedX], self[.warpedY])
        let (ix, iy, iz, ixz, iyz) = (self[.ix], self[.iy], self[.iz], self[.ixz], self[.iyz])
        let mask = self[.inside]
        let (right, bottom) = (Float(width - 1), Float(height - 1))
        rows(cost: 12) { rows in
            for y in rows {
                for x in 0 ..< width {
                    let p = y * width + x
                    let (targetX, targetY) = (Float(x) + u[p], Float(y) + v[p])
                    let inside: Float = targetX >= 0 && targetX <= right && targetY >= 0 && targetY <= bottom ? 1 : 0
                    mask[p] = inside
                    ix[p] = inside * 0.5 * (firstX[p] + warpedX[p])
                    iy[p] = inside * 0.5 * (firstY[p] + warpedY[p])
                    iz[p] = inside * (warped[p] - first[p])
                    ixz[p] = inside * (warpedX[p] - firstX[p])
                    iyz[p] = inside * (warpedY[p] - firstY[p])
                }
            }
        }
        // Second derivatives of the blended gradient, zeroed where p + w leaves the image.
        derivatives(of: .ix, x: .ixx, y: .ixy)
        derivatives(of: .iy, x: .warpedX, y: .iyy)
        let (ixx, ixy, iyy, iyx) = (self[.ixx], self[.ixy], self[.iyy], self[.warpedX])
        rows(cost: 6) { rows in
            for y in rows {
                for x in 0 ..< width {
                    let p = y * width + x
                    let inside = mask[p]
                    ixx[p] *= inside
                    ixy[p] = inside * 0.5 * (ixy[p] + iyx[p])
                    iyy[p] *= inside
                }
            }
        }
    }

    /// The linear equations of the increment (du, dv) at the current lagged weights: the robust weights from the
    /// residuals of the data terms at the increment so far and from the gradient of u + du, v + dv; then per pixel the
    /// inverse of its 2 × 2 matrix (data terms plus the sum of its edge weights) and the right-hand sides without the
    /// neighbours' increments.
    func buildSystem() {
        let (u, v, du, dv) = (self[.u], self[.v], self[.du], self[.dv])
        let (width, height) = (width, height)
        let epsilonSquared = settings.epsilon * settings.epsilon
        let smoothWeight = self[.smoothWeight]
        rows(cost: 16) { rows in
            for y in rows {
                for x in 0 ..< width {
                    let p = y * width + x
                    let right = x + 1 < width ? p + 1 : p, below = y + 1 < height ? p + width : p
                    let ux = u[right] + du[right] - u[p] - du[p], uy = u[below] + du[below] - u[p] - du[p]
                    let vx = v[right] + dv[right] - v[p] - dv[p], vy = v[below] + dv[below] - v[p] - dv[p]
                    smoothWeight[p] = 1 / (ux * ux + uy * uy + vx * vx + vy * vy + epsilonSquared).squareRoot()
                }
            }
        }
        let (ix, iy, iz, ixx, ixy, iyy, ixz, iyz) = (self[.ix], self[.iy], self[.iz], self[.ixx], self[.ixy], self[.iyy],
                                                     self[.ixz], self[.iyz])
        let (rightWeight, downWeight) = (self[.rightWeight], self[.downWeight])
        let (inverse11, inverse12, inverse22) = (self[.inverse11], self[.inverse12], self[.inverse22])
        let (rhsU, rhsV) = (self[.rhsU], self[.rhsV])
        let halfAlpha = 0.5 * settings.smoothness, gamma = settings.gradientWeight
        rows(cost: 40) { rows in
            for y in rows {
                for x in 0 ..< width {
                    let p = y * width + x
                    let (a, b) = (du[p], dv[p])
                    let r = iz[p] + ix[p] * a + iy[p] * b
                    let rx = ixz[p] + ixx[p] * a + ixy[p] * b, ry = iyz[p] + ixy[p] * a + iyy[p] * b
                    let brightness = 1 / (r * r + epsilonSquared).squareRoot()
                    let gradient = gamma / (rx * rx + ry * ry + epsilonSquared).squareRoot()
                    var a11 = brightness * ix[p] * ix[p] + gradient * (ixx[p] * ixx[p] + ixy[p] * ixy[p])
                    let a12 = brightness * ix[p] * iy[p] + gradient * (ixx[p] * ixy[p] + ixy[p] * iyy[p])
                    var a22 = brightness * iy[p] * iy[p] + gradient * (ixy[p] * ixy[p] + iyy[p] * iyy[p])
                    var bu = -(brightness * ix[p] * iz[p] + gradient * (ixx[p] * ixz[p] + ixy[p] * iyz[p]))
                    var bv = -(brightness * iy[p] * iz[p] + gradient * (ixy[p] * ixz[p] + iyy[p] * iyz[p]))
                    // The edges to the four neighbours: α times the mean of the two pixels' smoothness weights.
                    var sum: Float = 0
                    @inline(__always) func edge(_ n: Int) -> Float {
                        let w = halfAlpha * (smoothWeight[p] + smoothWeight[n])
                        sum += w
                        bu += w * (u[n] - u[p])
                        bv += w * (v[n] - v[p])
                        return w
                    }
                    if x > 0 { _ = edge(p - 1) }
                    if y > 0 { _ = edge(p - width) }
                    rightWeight[p] = x + 1 < width ? edge(p + 1) : 0
                    downWeight[p] = y + 1 < height ? edge(p + width) : 0
                    a11 += sum
                    a22 += sum
                    let determinant = a11 * a22 - a12 * a12
                    let inverse: Float = determinant > 0 ? 1 / determinant : 0
                    inverse11[p] = inverse * a22
                    inverse12[p] = -inverse * a12
                    inverse22[p] = inverse * a11
                    rhsU[p] = bu
                    rhsV[p] = bv
                }
            }
        }
    }

    /// One SOR pass over the pixels of one colour ((x + y) mod 2 = `color`): each solves its 2 × 2 equations with the
    /// neighbours' increments (all of the other colour) and moves its increment by ω of the way there.
    func sweep(color: Int) {
        let (du, dv) = (self[.du], self[.dv])
        let (rightWeight, downWeight) = (UnsafeBufferPointer(self[.rightWeight]), UnsafeBufferPointer(self[.downWeight]))
        let (inverse11, inverse12, inverse22) = (UnsafeBufferPointer(self[.inverse11]),
                                                 UnsafeBufferPointer(self[.inverse12]),
                                                 UnsafeBufferPointer(self[.inverse22]))
        let (rhsU, rhsV) = (UnsafeBufferPointer(self[.rhsU]), UnsafeBufferPointer(self[.rhsV]))
        let (width, height, omega) = (width, height, settings.relaxation)
        rows(cost: 10) { rows in
            for y in rows {
                var x = (y + color) & 1
                while x < width {
                    let p = y * width + x
                    var su = rhsU[p], sv = rhsV[p]
                    if x > 0 {
                        let w = rightWeight[p - 1]
                        su += w * du[p - 1]
                        sv += w * dv[p - 1]
                    }
                    if x + 1 < width {
                        let w = rightWeight[p]
                        su += w * du[p + 1]
                        sv += w * dv[p + 1]
                    }
                    if y > 0 {
                        let w = downWeight[p - width]
                        su += w * du[p - width]
                        sv += w * dv[p - width]
                    }
                    if y + 1 < height {
                        let w = downWeight[p]
                        su += w * du[p + width]
                        sv += w * dv[p + width]
                    }
                    let newU = inverse11[p] * su + inverse12[p] * sv
                    let newV = inverse12[p] * su + inverse22[p] * sv
                    du[p] += omega * (newU - du[p])
                    dv[p] += omega * (newV - dv[p])
                    x += 2
                }
            }
        }
    }

    /// u ← u + du, v ← v + dv.
    func addIncrement() {
        let (u, v, du, dv) = (self[.u], self[.v], self[.du], self[.dv])
        for i in u.indices {
            u[i] += du[i]
            v[i] += dv[i]
        }
    }
}

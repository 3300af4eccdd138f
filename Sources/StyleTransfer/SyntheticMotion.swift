// Pairs of frames with a known motion between them, made from one still image, and the endpoint error of a flow against
// that motion: how the tests and `pamstyle-bench --flow` measure `OpticalFlow.estimate`.

import Foundation

/// A similarity transform of the frame about its centre c, A(p) = c + zoom · R(θ) (p − c) + translation, with
/// R(θ) = [cos θ, −sin θ; sin θ, cos θ] in the image's coordinates (x right, y down, so a positive θ turns clockwise on
/// the screen): the pixel p of the first frame shows what the point A(p) of the second one shows, so the true flow is
/// w(p) = A(p) − p.
package struct SyntheticMotion: Sendable {
    package var name: String
    package var translation: (x: Double, y: Double) = (0, 0)
    /// θ in degrees.
    package var rotationDegrees: Double = 0
    package var zoom: Double = 1

    package init(name: String, translation: (x: Double, y: Double) = (0, 0), rotationDegrees: Double = 0,
                 zoom: Double = 1) {
        self.name = name
        self.translation = translation
        self.rotationDegrees = rotationDegrees
        self.zoom = zoom
    }

    /// The motions measured: two translations (subpixel, and large), a rotation and a zoom.
    package static let standard = [
        SyntheticMotion(name: "translation_2.5_-1.25", translation: (2.5, -1.25)),
        SyntheticMotion(name: "translation_11_6", translation: (11, 6)),
        SyntheticMotion(name: "rotation_2deg", rotationDegrees: 2),
        SyntheticMotion(name: "zoom_1.03", zoom: 1.03),
    ]

    /// A(p) for a frame of the given size.
    package func map(x: Double, y: Double, width: Int, height: Int) -> (x: Double, y: Double) {
        let (cx, cy) = (Double(width - 1) / 2, Double(height - 1) / 2)
        let angle = rotationDegrees * Double.pi / 180
        let (cosine, sine) = (zoom * cos(angle), zoom * sin(angle))
        let (dx, dy) = (x - cx, y - cy)
        return (cx + cosine * dx - sine * dy + translation.x, cy + sine * dx + cosine * dy + translation.y)
    }

    /// A⁻¹(q).
    package func inverseMap(x: Double, y: Double, width: Int, height: Int) -> (x: Double, y: Double) {
        let (cx, cy) = (Double(width - 1) / 2, Double(height - 1) / 2)
        let angle = -rotationDegrees * Double.pi / 180
        let (cosine, sine) = (cos(angle) / zoom, sin(angle) / zoom)
        let (dx, dy) = (x - translation.x - cx, y - translation.y - cy)
        return (cx + cosine * dx - sine * dy, cy + sine * dx + cosine * dy)
    }

    /// The true flow from the first frame to the second, w(p) = A(p) − p.
    package func flow(width: Int, height: Int) -> FlowField {
        var field = FlowField.zero(width: width, height: height)
        for y in 0 ..< height {
            for x in 0 ..< width {
                let target = map(x: Double(x), y: Double(y), width: width, height: height)
                field.dx[y * width + x] = Float(target.x - Double(x))
                field.dy[y * width + x] = Float(target.y - Double(y))
            }
        }
        return field
    }

    /// Two width × height frames, (height, width) each, cut from `source`, a (sourceHeight, sourceWidth) gray image:
    /// the first shows the middle of the source, slightly enlarged (the frame spans 90 % of the source along its tighter
    /// axis), and the second is the first moved by the motion, second(A(p)) = first(p). Both are sampled from the same
    /// bicubic interpolation of the source at non-integer positions, so neither is sharper than the other. A source
    /// larger than the frames is first shrunk (`resample`, antialiased) to the frames' size along its tighter axis, so
    /// that the samples do not alias.
    package func frames(of source: [Float], sourceWidth: Int, sourceHeight: Int,
                        width: Int, height: Int) -> (first: [Float], second: [Float]) {
        precondition(source.count == sourceWidth * sourceHeight, "source buffer differs from its shape")
        var (source, sourceWidth, sourceHeight) = (source, sourceWidth, sourceHeight)
        let fit = min(Double(sourceWidth) / Double(width), Double(sourceHeight) / Double(height))
        if fit > 1 {
            let (newWidth, newHeight) = (Int((Double(sourceWidth) / fit).rounded()), Int((Double(sourceHeight) / fit).rounded()))
            source = resample(source, channels: 1, height: sourceHeight, width: sourceWidth,
                              toHeight: newHeight, toWidth: newWidth)
            (sourceWidth, sourceHeight) = (newWidth, newHeight)
        }
        let scale = 0.9 * min(Double(sourceWidth) / Double(width), Double(sourceHeight) / Double(height))
        let (sourceCentreX, sourceCentreY) = (Double(sourceWidth - 1) / 2, Double(sourceHeight - 1) / 2)
        let (frameCentreX, frameCentreY) = (Double(width - 1) / 2, Double(height - 1) / 2)
        var first = [Float](repeating: 0, count: width * height)  // (height, width)
        var second = [Float](repeating: 0, count: width * height)  // (height, width)
        source.withUnsafeBufferPointer { source in
            func sample(_ x: Double, _ y: Double) -> Float {
                bicubicSample(source, width: sourceWidth, height: sourceHeight,
                              x: Float(sourceCentreX + scale * (x - frameCentreX)),
                              y: Float(sourceCentreY + scale * (y - frameCentreY)))
            }
            for y in 0 ..< height {
                for x in 0 ..< width {
                    first[y * width + x] = sample(Double(x), Double(y))
                    let origin = inverseMap(x: Double(x), y: Double(y), width: width, height: height)
                    second[y * width + x] = sample(origin.x, origin.y)
                }
            }
        }
        return (first, second)
    }

    /// The mean endpoint error |w − w_true| of `flow` against this motion's over the pixels at least `border` pixels
    /// from every edge; by default the largest true displacement rounded up, plus two.
    package func endpointError(of flow: FlowField, border: Int? = nil) -> Double {
        let truth = self.flow(width: flow.width, height: flow.height)
        let largest = zip(truth.dx, truth.dy).map { ($0 * $0 + $1 * $1).squareRoot() }.max() ?? 0
        let strip = border ?? Int(largest.rounded(.up)) + 2
        var sum = 0.0, count = 0
        for y in strip ..< max(strip, flow.height - strip) {
            for x in strip ..< max(strip, flow.width - strip) {
                let p = y * flow.width + x
                let (ex, ey) = (Double(flow.dx[p] - truth.dx[p]), Double(flow.dy[p] - truth.dy[p]))
                sum += (ex * ex + ey * ey).squareRoot()
                count += 1
            }
        }
        precondition(count > 0, "the border leaves no pixel to measure")
        return sum / Double(count)
    }
}

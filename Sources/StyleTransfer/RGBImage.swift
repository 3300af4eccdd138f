/// A planar RGB image with samples in 0…1, the core's only image type.
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    /// (3, height, width): the red plane, then green, then blue.
    public var pixels: [Float]

    public init(width: Int, height: Int, pixels: [Float]) {
        precondition(width > 0 && height > 0 && pixels.count == 3 * width * height)
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public var pixelCount: Int { width * height }

    /// The image with its samples clamped to 0…1: what is written out.
    var clamped: RGBImage {
        RGBImage(width: width, height: height, pixels: pixels.map { min(max($0, 0), 1) })
    }

    /// Clamps the samples to 0…1 in place.
    mutating func clamp() {
        pixels.withUnsafeMutableBufferPointer { samples in
            for i in samples.indices { samples[i] = min(max(samples[i], 0), 1) }
        }
    }

    /// m · self + (1 − m) · other at each pixel, m the mask resized to the image: self where the mask is 1, `other`
    /// (of the same size) where it is 0.
    func blended(with other: RGBImage, where mask: Mask) -> RGBImage {
        precondition(other.width == width && other.height == height, "blending images of different sizes")
        let weights = mask.resized(width: width, height: height).values, plane = weights.count
        var result = self
        for i in pixels.indices {
            let m = weights[i % plane]
            result.pixels[i] = m * pixels[i] + (1 - m) * other.pixels[i]
        }
        return result
    }
}

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
}

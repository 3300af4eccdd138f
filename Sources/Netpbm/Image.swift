/// One image as pamstyle works on it: planar float RGB in 0…1, with the alpha plane kept apart.
public struct Image: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// Red, green and blue planes, each sample in 0…1; gray input is replicated into all three.
    public let pixels: [Float]   // (3, height, width)
    /// Opacity in 0…1 (1 is opaque), or nil when the image has no alpha plane.
    public let alpha: [Float]?   // (height, width)
    /// What the image was read from; for an image made in memory, what ImageWriter writes for it.
    public let source: SourceFormat

    /// An image from planes in 0…1. `source` defaults to `SourceFormat.written(withAlpha:)`.
    /// - Precondition: width, height ≥ 1; `pixels.count == 3 * width * height`;
    ///   `alpha` is nil or has `width * height` samples.
    public init(width: Int, height: Int, pixels: [Float], alpha: [Float]? = nil, source: SourceFormat? = nil) {
        precondition(width >= 1 && height >= 1, "Image: \(width)x\(height) is not a size")
        precondition(pixels.count == 3 * width * height,
                     "Image: \(pixels.count) samples for 3 planes of \(width)x\(height)")
        precondition(alpha == nil || alpha!.count == width * height,
                     "Image: \(alpha?.count ?? 0) alpha samples for \(width)x\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.alpha = alpha
        self.source = source ?? SourceFormat.written(withAlpha: alpha != nil)
    }
}

/// The Netpbm format an image was stored in.
public struct SourceFormat: Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case pbm = "PBM", pgm = "PGM", ppm = "PPM", pam = "PAM"
    }

    public let kind: Kind
    /// The ASCII variant (P1, P2, P3); PAM has none.
    public let plain: Bool
    /// 1…65535.
    public let maxval: Int
    /// BLACKANDWHITE, GRAYSCALE or RGB for PBM, PGM and PPM; the TUPLTYPE of a PAM (possibly empty).
    public let tupleType: String
    /// Samples per pixel.
    public let depth: Int

    public init(kind: Kind, plain: Bool, maxval: Int, tupleType: String, depth: Int) {
        self.kind = kind
        self.plain = plain
        self.maxval = maxval
        self.tupleType = tupleType
        self.depth = depth
    }

    /// What ImageWriter writes: raw PPM (P6) with maxval 255, or PAM RGB_ALPHA with maxval 255.
    public static func written(withAlpha: Bool) -> SourceFormat {
        withAlpha
            ? SourceFormat(kind: .pam, plain: false, maxval: 255, tupleType: "RGB_ALPHA", depth: 4)
            : SourceFormat(kind: .ppm, plain: false, maxval: 255, tupleType: "RGB", depth: 3)
    }

    /// E.g. "PPM raw, maxval 255" or "PAM RGB_ALPHA, depth 4, maxval 65535".
    public var description: String {
        switch kind {
        case .pam: "PAM \(tupleType.isEmpty ? "(no tuple type)" : tupleType), depth \(depth), maxval \(maxval)"
        case .pbm: "PBM \(plain ? "plain" : "raw")"
        case .pgm, .ppm: "\(kind.rawValue) \(plain ? "plain" : "raw"), maxval \(maxval)"
        }
    }
}

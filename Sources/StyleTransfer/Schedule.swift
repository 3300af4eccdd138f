import Kernels

// The coarse-to-fine schedule of one image and what each of its scales may allocate: pure planning over sizes,
// iteration counts, seconds and bytes, which `Stylizer` follows.

/// A width × height in pixels.
public struct Size: Hashable, Sendable, CustomStringConvertible {
    public var width: Int
    public var height: Int

    public init(width: Int, height: Int) {
        self.width = width
        self.height = height
    }

    public var pixels: Int { width * height }
    public var longestSide: Int { max(width, height) }
    public var description: String { "\(width)x\(height)" }
}

/// The sizes an image is optimized at, smallest first, and the iterations planned at each.
public struct Schedule: Equatable, Sendable {
    public var sizes: [Size]
    public var iterations: [Int]

    /// Scales whose longer side would be shorter than this are left out of a schedule of a given number of scales.
    public static let smallestScale = 128
    /// An automatic schedule halves the working size while the half's longer side is at least this long, so that it
    /// starts at about 256 pixels, where the scene's layout is settled.
    public static let automaticSmallestSide = 192
    /// The largest longer side of the base scale of an automatic schedule: the scale that gets `iterations`; the
    /// scales below it get `scaleIterations`, each scale above it half the iterations of the one below, since
    /// there only texture is refined.
    public static let baseSide = 768

    /// The schedule for an image optimized at `working`.
    /// - Parameters:
    ///   - scales: the number of sizes, each twice the last, up to `working`, as far as their longer side stays at
    ///     least `smallestScale` (and each side at least `minimumSide`); the top one gets `iterations`, the others
    ///     `scaleIterations`. Nil: as many as the size needs, from about 256 pixels up (see `baseSide`).
    public static func planned(working: Size, scales: Int?, iterations: Int, scaleIterations: Int,
                               minimumSide: Int) -> Schedule {
        var sizes = [working]
        for step in 1 ..< 64 {
            if let scales, step >= scales { break }
            let divisor = Double(1 << min(step, 30))
            let size = Size(width: Int((Double(working.width) / divisor).rounded()),
                            height: Int((Double(working.height) / divisor).rounded()))
            let smallest = scales == nil ? automaticSmallestSide : smallestScale
            guard size.longestSide >= smallest, min(size.width, size.height) >= minimumSide else { break }
            sizes.insert(size, at: 0)
        }
        guard scales == nil else {
            return Schedule(sizes: sizes, iterations: sizes.indices.map {
                $0 == sizes.count - 1 ? iterations : scaleIterations
            })
        }
        let base = sizes.lastIndex { $0.longestSide <= baseSide } ?? 0
        return Schedule(sizes: sizes, iterations: sizes.indices.map { index in
            index < base ? scaleIterations : max(1, iterations >> (index - base))
        })
    }

    /// The iterations of the scales from `first` on, scaled down together so that they fit in `seconds` at
    /// `secondsPerPixel` seconds per iteration and pixel (each scale keeping at least one iteration); unchanged when
    /// they fit already.
    public func fitted(from first: Int, seconds: Double, secondsPerPixel: Double) -> [Int] {
        let rest = Array(iterations[first...])
        let planned = zip(rest, sizes[first...]).reduce(0.0) { $0 + Double($1.0) * Double($1.1.pixels) * secondsPerPixel }
        guard planned > seconds, planned > 0 else { return rest }
        let factor = max(0, seconds) / planned
        return rest.map { $0 == 0 ? 0 : max(1, Int((Double($0) * factor).rounded(.down))) }
    }
}

/// How one scale of an image divides its memory budget: the optimizer's history, and what is left for the network.
public struct MemoryPlan: Equatable, Sendable {
    /// L-BFGS's history length and precision.
    public var history: Int
    public var historyPrecision: LBFGS.HistoryPrecision
    /// How the content targets are kept: in half precision with a half-precision history.
    public var targetPrecision: ContentLoss.Precision { historyPrecision == .half ? .half : .single }
    /// The bytes of the optimizer and of the images and targets the driver holds at this scale.
    public var fixedBytes: Int
    /// The bytes left for the network's buffers.
    public var networkBytes: Int
    /// Whether every layer keeps its transformed kernel (`VGG19.keepsAllKernels`): where the bytes that takes, taken
    /// from what the network was left, cost its buffers no work (or where it takes none).
    public var keepsAllKernels = false
    /// The bytes that takes beyond the resident kernels, when it takes any.
    public var keptKernelBytes = 0

    /// The plan for a scale whose images hold `pixels` RGB pixels and whose content targets `targetFloats` floats,
    /// within `budget` bytes. The candidates, in order of preference: L-BFGS's full `history` in single precision, then
    /// in half precision, then shorter histories in half precision (down to 3 while that fits and the network runs
    /// within 25 % of the least work any history allows it; shorter otherwise). Of those whose remainder fits the
    /// network at all, the first whose network runs within 10 % of the least work any of them allows: memory goes to
    /// the optimizer unless the network would run much slower for it (stripes recompute rows and layers). The
    /// shortest history in half precision when nothing fits (the caller checks `networkBytes` against the network's
    /// minimum). With a half-precision history, the content targets are
    /// kept in half precision too; the single-precision maps they are made from count until the optimizer replaces
    /// them.
    /// - imageCopies: the RGB images the driver holds besides the optimizer's (the current image, the content at this
    ///   size, its luminance when the colors are kept, and with Adam the best point).
    /// - networkCost: the network's work (`Layout.cost`) within a number of bytes, or nil when its smallest layout
    ///   does not fit.
    public static func planned(budget: Int, pixels: Int, imageCopies: Int = 2, targetFloats: Int, history: Int,
                               usesLBFGS: Bool, networkCost: (_ bytes: Int) -> Int?) -> MemoryPlan {
        let parameters = 3 * pixels
        var candidates: [(length: Int, precision: LBFGS.HistoryPrecision)] = [(history, .single)]
        for length in stride(from: history, through: 1, by: -1) { candidates.append((length, .half)) }
        if !usesLBFGS { candidates = [(history, .single)] }
        let plans = candidates.map { candidate in
            let optimizer = usesLBFGS
                ? LBFGS.allocatedBytes(parameterCount: parameters, historySize: candidate.length,
                                       historyPrecision: candidate.precision)
                : Adam.allocatedBytes(parameterCount: parameters)
            let targetBytes = candidate.precision == .half ? MemoryLayout<Float16>.stride : MemoryLayout<Float>.stride
            let images = imageCopies * parameters * MemoryLayout<Float>.stride + targetFloats * targetBytes
            // Half-precision targets are made from the network's single-precision maps, before the optimizer is.
            let made = candidate.precision == .half ? targetFloats * MemoryLayout<Float>.stride : 0
            let fixed = images + max(optimizer, made)
            return MemoryPlan(history: candidate.length, historyPrecision: candidate.precision,
                              fixedBytes: fixed, networkBytes: budget - fixed)
        }
        let costs = plans.map { networkCost($0.networkBytes) }
        let fits = plans.indices.filter { costs[$0] != nil }
        guard let leastOfAll = fits.compactMap({ costs[$0] }).min() else { return plans[plans.count - 1] }
        let long = fits.filter { plans[$0].history >= min(history, 3) }
        let longFast = long.compactMap { costs[$0] }.min().map { Double($0) <= 1.25 * Double(leastOfAll) } ?? false
        let fitting = longFast ? long : fits
        let least = fitting.compactMap { costs[$0] }.min()!
        let chosen = fitting.first { Double(costs[$0]!) <= 1.1 * Double(least) }!
        return plans[chosen]
    }
}

import Kernels
import CBLAS
import CGEMM

// The three loss terms of Gatys-style transfer, as value + gradient over flat CHW float32 buffers.
//
// Layout: a feature map F of one layer is (channels, pixels) row-major, pixels = height · width, so
// element (c, p) sits at c · stride + p, where stride is the row length of the buffer (the full
// map's pixel count, or a stripe buffer's own length).
//
// Gradient contract, shared by every function here: the returned value is the loss term E itself,
// unweighted, so that the caller can report each term; the gradient buffer receives
// `weight · ∂E/∂F` ADDED to what it holds (the caller zeroes it once per evaluation), so several
// terms at one layer, or several stripes of one layer, accumulate into one buffer.
//
// Normalization, chosen so that the default weights give the same balance at any image size and
// at any layer (N = pixels of the feature map, C = its channels):
//
//   Gram          G = F Fᵀ / N                         a mean over pixels, size-independent
//   style         E = Σᵢⱼ (Gᵢⱼ − Tᵢⱼ)² / C²             a mean over Gram entries, channel-independent
//                 ∂E/∂F = 4 / (C² N) · (G − T) F
//   content       E = Σ (F − P)² / (C N)                mean squared error
//                 ∂E/∂F = 2 (F − P) / (C N)
//   total var.    E = Σ_c Σ (horizontal and vertical neighbour differences)² / (C H W)
//                 on the image itself, (C, H, W)
//
// For a feature map whose statistics do not depend on how many pixels it has (a stationary texture,
// or the same scene at two resolutions), all three values therefore converge to fixed numbers as
// N grows, and so do the ratios between them: the loss balance chosen at 128 px holds at 1024 px.
// Both gradients per element scale as 1/N, so their ratio is size-independent too. Gatys et al.
// write the style term as Σ (Graw − Araw)² / (4 C² N²) with unnormalized Grams; that equals this E / 4.

// MARK: - Gram matrices

/// Accumulates the Gram matrix `G = F Fᵀ / N` of a feature map F (channels × N pixels), possibly
/// over several stripes of pixels added one after another (`G = Σ over pixels of f fᵀ / N`).
///
/// Each `add` computes the upper triangles of partial products (half the work of a full product) in
/// float32 over at most `chunkPixels` pixels at a time, with `cgemm_gram_upper`, or `cblas_ssyrk` when
/// `KernelPath.current` is OpenBLAS, and sums the chunks in float64, so the rounding error does not
/// grow with the image size. `N` is the total number of pixels added.
/// The chunks of an `add` are shared among the cores in fixed shares, each core summing into its
/// own buffer, so the result does not depend on timing.
public struct GramAccumulator: Sendable {
    /// Channel count C; the Gram is C × C.
    public let channels: Int
    /// Total pixels added since the last `reset()`.
    public private(set) var pixelCount: Int
    /// N: the pixels added, or with per-pixel weights the sum of the weights (see `add`).
    public private(set) var weightTotal: Double
    /// Pixels per partial product: float32 sums run over at most this many terms.
    public static let chunkPixels = 4096
    /// The shares an `add` is cut into: one per core.
    private let shares = coreCount
    /// The chunks per core below which the cores share the columns of each chunk's product rather than the chunks.
    static let columnSplitChunks = 4

    /// Whether the sums of the features, for their mean, are accumulated too.
    public let tracksMeans: Bool

    /// The precision of the unweighted adds' products: with bf16, `cgemm_gram_upper_bf16` (features rounded to
    /// bfloat16, sums in float32 over a chunk, float64 across chunks) where the processor has AVX512_BF16; with half,
    /// `cgemm_gram_upper_fp16` (features scaled by powers of two and rounded to half precision, each lane's products
    /// over 128 pixels summed in half precision, then float32 over a chunk, float64 across chunks) where it has
    /// AVX512_FP16. Weighted adds, and adds on OpenBLAS's path, stay in single precision.
    public var precision = ProductPrecision.single

    private var sum: [Double]  // (shares, channels, channels), upper triangles (column ≥ row) valid: Σ f fᵀ
    private var partial: [Float]  // (shares, channels, channels), upper triangles: one chunk's F Fᵀ
    private var work: [Float]  // (shares, cgemm_gram_work_count(channels)): each share's pixels packed by cgemm_gram_upper
    private var featureSum: [Double]  // (shares, channels) with `tracksMeans`: Σ f

    /// An empty accumulator for C = `channels`; with `means`, it accumulates Σ f for `mean` as well.
    public init(channels: Int, means: Bool = false) {
        precondition(channels > 0, "a Gram matrix needs at least one channel")
        self.channels = channels
        self.pixelCount = 0
        self.weightTotal = 0
        self.tracksMeans = means
        self.sum = [Double](repeating: 0, count: shares * channels * channels)
        self.partial = [Float](repeating: 0, count: shares * channels * channels)
        self.work = [Float](repeating: 0, count: shares * cgemm_gram_work_count(Int32(channels)))
        self.featureSum = [Double](repeating: 0, count: means ? shares * channels : 0)
    }

    /// The float64 sums of each share, (shares, channels, channels), valid in the upper triangles: what `gram` adds
    /// up, share after share.
    package var shareSums: [Double] { sum }

    /// Forgets everything added, keeping the storage.
    public mutating func reset() {
        for i in sum.indices { sum[i] = 0 }
        for i in featureSum.indices { featureSum[i] = 0 }
        pixelCount = 0
        weightTotal = 0
    }

    /// Pixels per partial product of a weighted `add`, whose weighted copy of the features each core holds.
    public static let weightedChunkPixels = 256

    /// Adds the pixels of one stripe, each weighted by `weights[p]` ≥ 0 (a mask): G = Σ w f fᵀ / Σ w, and the mean
    /// Σ w f / Σ w. The products run on the features scaled by √w, `weightedChunkPixels` at a time, the chunks shared
    /// among the cores in fixed shares as in the unweighted `add`.
    public mutating func add(_ features: UnsafeBufferPointer<Float>, pixels: Int, stride: Int,
                             weights: UnsafeBufferPointer<Float>) {
        let c = channels
        precondition(pixels >= 0 && stride >= pixels && weights.count >= pixels && stride <= Int(Int32.max))
        guard pixels > 0 else { return }
        precondition(features.count >= (c - 1) * stride + pixels, "feature buffer smaller than its shape")
        var total = 0.0
        for p in 0 ..< pixels {
            precondition(weights[p] >= 0, "negative mask weight")
            total += Double(weights[p])
        }
        let chunk = Self.weightedChunkPixels
        accumulate(pixels: pixels, chunkPixels: chunk, scratchCount: chunk * (c + 1)) { chunkStart, n, scratch, body in
            // The chunk's √w, then its features scaled by them, (C, n).
            let roots = scratch, scaled = scratch + chunk
            for p in 0 ..< n { roots[p] = weights[chunkStart &+ p].squareRoot() }
            for channel in 0 ..< c {
                let row = features.baseAddress! + (channel &* stride &+ chunkStart), copy = scaled + channel &* n
                for p in 0 ..< n { copy[p] = row[p] * roots[p] }
            }
            body(UnsafePointer(scaled), n, UnsafePointer(roots))
        }
        weightTotal += total
    }

    /// Adds the pixels of one stripe: `features[c · stride + p]` for c < C, p < `pixels`.
    /// `stride` is the buffer's row length (≥ `pixels`); `features.count` must be at least
    /// `(C − 1) · stride + pixels`.
    public mutating func add(_ features: UnsafeBufferPointer<Float>, pixels: Int, stride: Int) {
        let c = channels
        precondition(pixels >= 0 && stride >= pixels && stride <= Int(Int32.max))
        guard pixels > 0 else { return }
        precondition(features.count >= (c - 1) * stride + pixels, "feature buffer smaller than its shape")
        accumulate(pixels: pixels, chunkPixels: Self.chunkPixels, scratchCount: 0, precision: precision) {
            chunkStart, _, _, body in
            body(features.baseAddress! + chunkStart, stride, nil)
        }
        weightTotal += Double(pixels)
    }

    /// The pixels of a chunk as `accumulate` multiplies them: where its features start, their row stride, and √w per
    /// pixel when they are scaled by it (nil: unweighted).
    private typealias ChunkFeatures = (_ features: UnsafePointer<Float>, _ stride: Int, _ roots: UnsafePointer<Float>?) -> Void

    /// Adds `pixels` pixels, `chunkPixels` at a time, the chunks shared among the cores in fixed shares, each core
    /// summing into its own buffers: `chunk(start, n, scratch, body)` hands `body` the n features from pixel `start`
    /// (already scaled by √w for a weighted add, and then with the roots, whose products Σ √w · (√w f) make the mean's
    /// sums), with `scratchCount` floats of the core's own to make them in; the products in `precision` (see
    /// `precision` above). Counts the pixels, not their weights.
    ///
    /// With fewer than `columnSplitChunks` chunks per core (the deep layers' small maps, often a single chunk), the
    /// cores share the columns of each chunk's product instead (`cgemm_gram_share_columns`), every core taking every
    /// chunk; each chunk's partial product still goes into the sums of the share that would have taken it, so the
    /// bits are those of the chunks shared out, only the waiting is gone. (Not on OpenBLAS's path, whose `ssyrk`
    /// takes whole triangles.)
    private mutating func accumulate(pixels: Int, chunkPixels: Int, scratchCount: Int,
                                     precision: ProductPrecision = .single,
                                     _ chunk: (_ start: Int, _ n: Int, _ scratch: UnsafeMutablePointer<Float>,
                                               _ body: ChunkFeatures) -> Void) {
        let c = channels, plane = channels * channels
        let chunks = (pixels + chunkPixels - 1) / chunkPixels
        let shares = min(self.shares, chunks)
        let openBLAS = KernelPath.current == .openblas, workCount = work.count / self.shares
        let splitsColumns = !openBLAS && self.shares > 1 && chunks < Self.columnSplitChunks * self.shares
        let workers = splitsColumns ? self.shares : shares
        let tracksMeans = self.tracksMeans
        let product = switch precision {
        case .bf16: cgemm_gram_upper_bf16_columns
        case .half: cgemm_gram_upper_fp16_columns
        case .single: cgemm_gram_upper_columns
        }
        withoutActuallyEscaping(chunk) { chunk in
            let chunk = UncheckedSendable(value: chunk)
            sum.withUnsafeMutableBufferPointer { sum in
                partial.withUnsafeMutableBufferPointer { partial in
                    work.withUnsafeMutableBufferPointer { work in
                        featureSum.withUnsafeMutableBufferPointer { featureSum in
                            let buffers = UncheckedSendable(value: (sum: sum.baseAddress!, partial: partial.baseAddress!,
                                                                    work: work.baseAddress!,
                                                                    featureSum: featureSum.baseAddress))
                            parallelBands(workers, workers: workers, blasThreads: 1) { worker, _ in
                                let partial = buffers.value.partial + worker &* plane
                                let work = buffers.value.work + worker &* workCount
                                // The chunks this worker takes, and the columns of their products.
                                let (indices, columns): (Range<Int>, Range<Int>)
                                if splitsColumns {
                                    var (first, end): (Int32, Int32) = (0, 0)
                                    cgemm_gram_share_columns(Int32(c), Int32(worker), Int32(workers), &first, &end)
                                    (indices, columns) = (0 ..< chunks, Int(first) ..< Int(end))
                                } else {
                                    indices = (chunks &* worker / shares) ..< (chunks &* (worker &+ 1) / shares)
                                    columns = 0 ..< c
                                }
                                guard !columns.isEmpty else { return }
                                let scratch = UnsafeMutablePointer<Float>.allocate(capacity: max(1, scratchCount))
                                defer { scratch.deallocate() }
                                for index in indices {
                                    // The share whose sums this chunk goes into: the one that takes it when the
                                    // chunks are shared out, the last s with chunks · s / shares ≤ index.
                                    let share = splitsColumns ? ((index &+ 1) &* shares &+ chunks &- 1) / chunks &- 1
                                        : worker
                                    let sum = buffers.value.sum + share &* plane
                                    let start = index &* chunkPixels, n = min(chunkPixels, pixels &- start)
                                    chunk.value(start, n, scratch) { features, stride, roots in
                                        if tracksMeans && columns.lowerBound == 0 {
                                            let featureSum = buffers.value.featureSum! + share &* c
                                            for channel in 0 ..< c {
                                                let row = features + channel &* stride
                                                var total: Float = 0
                                                if let roots {
                                                    for p in 0 ..< n { total += row[p] * roots[p] }
                                                } else {
                                                    for p in 0 ..< n { total += row[p] }
                                                }
                                                featureSum[channel] += Double(total)
                                            }
                                        }
                                        if openBLAS {
                                            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(c), Int32(n),
                                                        1, features, Int32(stride), 0, partial, Int32(c))
                                        } else {
                                            product(Int32(c), Int32(n), features, stride, partial, c, work,
                                                Int32(columns.lowerBound), Int32(columns.upperBound))
                                        }
                                        for i in 0 ..< columns.upperBound {
                                            let row = i &* c
                                            for j in max(i, columns.lowerBound) ..< columns.upperBound {
                                                sum[row &+ j] += Double(partial[row &+ j])
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        pixelCount += pixels
    }

    /// The mean feature `Σ f / N`, (channels); the accumulator must track means and hold at least one pixel.
    public func mean() -> [Float] {
        precondition(tracksMeans, "this accumulator does not track means")
        precondition(pixelCount > 0, "mean of an empty feature map")
        return (0 ..< channels).map { channel in
            var total = 0.0
            for share in 0 ..< shares { total += featureSum[share &* channels &+ channel] }
            return Float(total / weightTotal)
        }
    }

    /// Writes the full symmetric `G = Σ f fᵀ / N` (C × C) into `gram`. At least one pixel must
    /// have been added. The rows are shared among the cores.
    public func gram(into gram: UnsafeMutableBufferPointer<Float>) {
        let c = channels, shares = self.shares
        precondition(pixelCount > 0, "Gram matrix of an empty feature map")
        precondition(gram.count == c * c)
        let scale = weightTotal > 0 ? 1 / weightTotal : 0, plane = c * c
        sum.withUnsafeBufferPointer { sum in
            let (sum, target) = (UncheckedSendable(value: sum.baseAddress!), UncheckedSendable(value: gram.baseAddress!))
            parallelFor(c, cost: c &* shares, threads: coreCount) { rows in
                for i in rows {
                    let row = i &* c
                    for j in i ..< c {
                        var total = 0.0
                        for share in 0 ..< shares { total += sum.value[share &* plane &+ row &+ j] }
                        let value = Float(total * scale)
                        target.value[row &+ j] = value
                        target.value[j &* c &+ i] = value
                    }
                }
            }
        }
    }

    /// The full symmetric `G = Σ f fᵀ / N`, (channels, channels).
    public func gram() -> [Float] {
        var result = [Float](repeating: 0, count: channels * channels)
        result.withUnsafeMutableBufferPointer { gram(into: $0) }
        return result
    }
}

/// The Gram matrix `G = F Fᵀ / N` of a whole feature map F, (channels, pixels) contiguous;
/// returns (channels, channels). Use it for style targets; see `GramAccumulator` for stripes.
public func gramMatrix(_ features: UnsafeBufferPointer<Float>, channels: Int, pixels: Int) -> [Float] {
    var accumulator = GramAccumulator(channels: channels)
    accumulator.add(features, pixels: pixels, stride: pixels)
    return accumulator.gram()
}

/// The style target of several style images: the weighted mean `T = Σᵢ wᵢ Tᵢ / Σᵢ wᵢ` of their
/// Gram matrices at one layer (all C × C; each normalized by its own pixel count, so style images
/// of different sizes blend on an equal footing), or of any other statistics of one shape (their
/// means). Weights must be finite, non-negative, and not all zero; the sum runs in float64.
public func blendedGram(_ grams: [[Float]], weights: [Double]) -> [Float] {
    precondition(!grams.isEmpty && grams.count == weights.count, "one weight per Gram matrix")
    precondition(weights.allSatisfy { $0.isFinite && $0 >= 0 }, "blend weights must be finite and non-negative")
    let total = weights.reduce(0, +)
    precondition(total > 0, "blend weights must not all be zero")
    let count = grams[0].count
    precondition(grams.allSatisfy { $0.count == count }, "Gram matrices of one layer differ in size")
    var blend = [Double](repeating: 0, count: count)
    for (gram, weight) in zip(grams, weights) where weight > 0 {
        let share = weight / total
        for i in 0..<count { blend[i] += share * Double(gram[i]) }
    }
    return blend.map { Float($0) }
}

/// What a style loss matches of each style layer's features.
public enum StyleStatistic: String, Sendable, CaseIterable {
    /// The Gram matrix F Fᵀ / N (Gatys et al. 2016): the second moments.
    case gram
    /// The mean and the covariance, by the squared Wasserstein-2 distance between Gaussians (`Wasserstein.swift`).
    case w2
}

/// A style's statistics at one layer: its Gram matrix G = F Fᵀ / N, which is the second moment E[f fᵀ], and its
/// mean E[f]. Blending styles blends both, so a blend of styles is the mixture of their features' distributions as far
/// as the first two moments see.
public struct StyleTarget: Sendable, Equatable {
    /// (channels, channels).
    public var gram: [Float]
    /// (channels).
    public var mean: [Float]

    public init(gram: [Float], mean: [Float]) {
        precondition(gram.count == mean.count * mean.count, "a Gram matrix is channels × channels")
        self.gram = gram
        self.mean = mean
    }

    /// The weighted mean of several styles' statistics at one layer (`blendedGram` for both).
    public static func blended(_ targets: [StyleTarget], weights: [Double]) -> StyleTarget {
        StyleTarget(gram: blendedGram(targets.map(\.gram), weights: weights),
                    mean: blendedGram(targets.map(\.mean), weights: weights))
    }
}

// MARK: - Style loss

/// The style loss of one layer against a fixed target Gram T (C × C, symmetric):
///
///     E = Σᵢⱼ (Gᵢⱼ − Tᵢⱼ)² / C²,   G = F Fᵀ / N
///     ∂E/∂F = 4 / (C² N) · (G − T) F
///
/// E is the mean squared difference over Gram entries, so neither the image size (N) nor the
/// layer's width (C) changes its scale for features of the same statistics. One evaluation goes:
/// add the feature map to `accumulator` (whole, or stripe by stripe), `finish()` for the value,
/// then `addGradient` over the same pixels (whole, or stripe by stripe). `evaluate` does all three
/// for a whole map. Storage, C² floats for G − T and the accumulator's, is allocated once.
///
/// With `StyleStatistic.w2` it is the Wasserstein-2 loss of `Wasserstein.swift` instead, against the Gaussian of the
/// target's mean and covariance, whose gradient has the same form plus a bias per channel:
///
///     ∂E/∂F = 2 / N · D F + b / N
public struct StyleLoss: Sendable {
    /// Channel count C of the layer.
    public let channels: Int
    /// The target Gram T, (channels, channels), symmetric (a Gram matrix or a blend of them).
    public let target: [Float]
    /// What the loss matches.
    public let statistic: StyleStatistic
    /// Receives the current features of this evaluation; emptied by `finish()`.
    public var accumulator: GramAccumulator

    /// The precision of the Gram products and of the gradient's product for unweighted pixels: with bf16, on bfloat16
    /// operands summed in float32 (`cgemm_gram_upper_bf16`, `cgemm_multiply_bf16`) where the processor has
    /// AVX512_BF16; with half, on half-precision operands in `cgemm_panels_fp16`'s arithmetic (`cgemm_gram_upper_fp16`,
    /// `cgemm_multiply_fp16`) where it has AVX512_FP16. Pixels with weights, and the products on OpenBLAS's path, stay
    /// in single precision, and so does the W2 loss whatever is set (the reduced precisions were admitted on the Gram
    /// loss's convergence alone).
    public var precision: ProductPrecision {
        get { accumulator.precision }
        set { accumulator.precision = statistic == .gram ? newValue : .single }
    }

    private let gaussian: GaussianTarget?  // with `.w2`
    private var residual: [Float]  // (channels, channels): G − T (Gram) or D (W2) of the last finished evaluation
    private var packedResidual: [Float]  // (⌈C/8⌉, ⌈C/8⌉·8, 8): the residual in cgemm_pack's panels
    private var bias: [Float]  // (channels) with `.w2`: b of the last finished evaluation
    private var residualPixels = 0  // pixels of the last finished evaluation
    private var residualWeight = 0.0  // N of the last finished evaluation: its pixels, or the sum of their weights

    /// A style loss for a layer of `channels` channels matching the Gram `target`.
    public init(target: [Float], channels: Int) {
        self.init(target: StyleTarget(gram: target, mean: [Float](repeating: 0, count: channels)), channels: channels,
                  statistic: .gram)
    }

    /// A style loss for a layer of `channels` channels matching `target`'s Gram matrix, or its mean and covariance.
    public init(target: StyleTarget, channels: Int, statistic: StyleStatistic) {
        precondition(target.gram.count == channels * channels, "target Gram must be channels × channels")
        self.channels = channels
        self.target = target.gram
        self.statistic = statistic
        self.accumulator = GramAccumulator(channels: channels, means: statistic == .w2)
        self.gaussian = statistic == .w2 ? GaussianTarget(gram: target.gram, mean: target.mean, channels: channels) : nil
        self.residual = [Float](repeating: 0, count: channels * channels)
        self.packedResidual = [Float](repeating: 0, count: cgemm_packed_count(Int32(channels), Int32(channels)))
        self.bias = [Float](repeating: 0, count: statistic == .w2 ? channels : 0)
    }

    /// Ends the accumulation of this evaluation: forms G (and the mean), keeps G − T (or D and b) and N for
    /// `addGradient`, empties `accumulator` for the next evaluation, and returns E (unweighted; float64 sum).
    public mutating func finish() -> Double {
        residual.withUnsafeMutableBufferPointer { accumulator.gram(into: $0) }
        residualPixels = accumulator.pixelCount
        residualWeight = accumulator.weightTotal
        var value = 0.0
        switch statistic {
        case _ where residualWeight == 0:
            // A mask that leaves no pixel at this layer: nothing to match.
            for i in residual.indices { residual[i] = 0 }
            for i in bias.indices { bias[i] = 0 }
        case .gram:
            for i in residual.indices {
                let difference = residual[i] - target[i]
                residual[i] = difference
                value += Double(difference) * Double(difference)
            }
            value /= Double(channels * channels)
        case .w2:
            // On one thread: the network's threads wait for it, and OpenBLAS's own threads, once woken, would spin
            // beside the network's next convolutions.
            var term: (value: Double, covarianceGradient: [Double], bias: [Double])!
            let (gaussian, mean, secondMoment) = (gaussian!, accumulator.mean().map(Double.init), residual.map(Double.init))
            parallelBands(1, workers: 1, blasThreads: 1) { _, _ in
                term = wassersteinTerm(target: gaussian, mean: mean, secondMoment: secondMoment)
            }
            residual = term.covarianceGradient.map { Float($0) }
            bias = term.bias.map { Float($0) }
            value = term.value
        }
        accumulator.reset()
        residual.withUnsafeBufferPointer { residual in
            packedResidual.withUnsafeMutableBufferPointer { packed in
                cgemm_pack(Int32(channels), Int32(channels), residual.baseAddress!, channels, 0, packed.baseAddress!)
            }
        }
        return value
    }

    /// Adds `weight · ∂E/∂F = weight · 4 / (C² N) · (G − T) F` (or W2's `weight · (2 D F + b) / N`) for one stripe of
    /// the pixels that went into the last `finish()`: `features[c · featureStride + p]` and
    /// `gradient[c · gradientStride + p]` for p < `pixels`. One single-threaded product per core, over its share of
    /// the pixels, added to the gradient: `cgemm_multiply` (or `cgemm_multiply_bf16` or `cgemm_multiply_fp16`, see
    /// `precision`) on the residual packed by `finish`, or `cblas_sgemm` with β = 1 when `KernelPath.current` is
    /// OpenBLAS.
    public func addGradient(features: UnsafeBufferPointer<Float>, pixels: Int, featureStride: Int,
                            weight: Float, into gradient: UnsafeMutableBufferPointer<Float>, gradientStride: Int) {
        let c = channels
        precondition(residualPixels > 0, "addGradient before finish")
        guard residualWeight > 0 else { return }
        precondition(pixels >= 0 && featureStride >= pixels && gradientStride >= pixels)
        precondition(featureStride <= Int(Int32.max) && gradientStride <= Int(Int32.max))
        guard pixels > 0 else { return }
        precondition(features.count >= (c - 1) * featureStride + pixels, "feature buffer smaller than its shape")
        precondition(gradient.count >= (c - 1) * gradientStride + pixels, "gradient buffer smaller than its shape")
        let n = residualWeight
        let alpha = Float(statistic == .gram ? Double(weight) * 4 / (Double(c * c) * n) : Double(weight) * 2 / n)
        if statistic == .w2 {
            let scale = Float(Double(weight) / n)
            for channel in 0 ..< c {
                let shift = scale * bias[channel], row = gradient.baseAddress! + channel * gradientStride
                for p in 0 ..< pixels { row[p] += shift }
            }
        }
        // The pixels in one column band per core, each a single-threaded product.
        let bands = max(1, min(coreCount, pixels / 256))
        let openBLAS = KernelPath.current == .openblas
        let multiply = switch precision {
        case .bf16: cgemm_multiply_bf16
        case .half: cgemm_multiply_fp16
        case .single: cgemm_multiply
        }
        residual.withUnsafeBufferPointer { residual in
            packedResidual.withUnsafeBufferPointer { packed in
                let gradient = UncheckedSendable(value: gradient)
                parallelBands(bands, workers: bands, blasThreads: 1) { band, _ in
                    let first = pixels * band / bands, count = pixels * (band + 1) / bands - first
                    if openBLAS {
                        sgemm(m: c, n: count, k: c, alpha: alpha, a: residual.baseAddress!, lda: c,
                              b: features.baseAddress! + first, ldb: featureStride,
                              beta: 1, c: gradient.value.baseAddress! + first, ldc: gradientStride)
                    } else {
                        multiply(Int32(c), Int32(count), Int32(c), alpha, packed.baseAddress!,
                                 features.baseAddress! + first, featureStride, 1,
                                 gradient.value.baseAddress! + first, gradientStride)
                    }
                }
            }
        }
    }

    /// `addGradient` for pixels that went into the accumulator with per-pixel weights w (`GramAccumulator.add(_:pixels:
    /// stride:weights:)`): the gradient at pixel p is w[p] times the unweighted one's form, `weight · w[p] · 4 / (C² N) ·
    /// (G − T) f` (or W2's `weight · w[p] · (2 D f + b) / N`), N the sum of the weights. Computed in chunks of
    /// `GramAccumulator.weightedChunkPixels` pixels, one band of them per core, each through a buffer of its own.
    public func addGradient(features: UnsafeBufferPointer<Float>, pixels: Int, featureStride: Int,
                            weights: UnsafeBufferPointer<Float>, weight: Float,
                            into gradient: UnsafeMutableBufferPointer<Float>, gradientStride: Int) {
        let c = channels
        precondition(residualPixels > 0, "addGradient before finish")
        precondition(pixels >= 0 && featureStride >= pixels && gradientStride >= pixels && weights.count >= pixels)
        guard pixels > 0, residualWeight > 0 else { return }
        precondition(features.count >= (c - 1) * featureStride + pixels, "feature buffer smaller than its shape")
        precondition(gradient.count >= (c - 1) * gradientStride + pixels, "gradient buffer smaller than its shape")
        let n = residualWeight
        let alpha = Float(statistic == .gram ? Double(weight) * 4 / (Double(c * c) * n) : Double(weight) * 2 / n)
        let shift = statistic == .w2 ? bias.map { Float(Double(weight) / n) * $0 } : [Float](repeating: 0, count: c)
        let chunk = GramAccumulator.weightedChunkPixels
        // The chunks in one band of pixels per core, each through a (C, chunk) buffer of its own for α R F.
        let chunks = (pixels + chunk - 1) / chunk, bands = min(coreCount, chunks)
        let openBLAS = KernelPath.current == .openblas
        residual.withUnsafeBufferPointer { residual in
            packedResidual.withUnsafeBufferPointer { packed in
                shift.withUnsafeBufferPointer { shift in
                    let gradient = UncheckedSendable(value: gradient)
                    parallelBands(bands, workers: bands, blasThreads: 1) { band, _ in
                        let product = UnsafeMutablePointer<Float>.allocate(capacity: c * chunk)
                        defer { product.deallocate() }
                        for index in (chunks * band / bands) ..< (chunks * (band + 1) / bands) {
                            let start = index * chunk, count = min(chunk, pixels - start)
                            if openBLAS {
                                sgemm(m: c, n: count, k: c, alpha: alpha, a: residual.baseAddress!, lda: c,
                                      b: features.baseAddress! + start, ldb: featureStride, beta: 0,
                                      c: product, ldc: count)
                            } else {
                                cgemm_multiply(Int32(c), Int32(count), Int32(c), alpha, packed.baseAddress!,
                                               features.baseAddress! + start, featureStride, 0, product, count)
                            }
                            for channel in 0 ..< c {
                                let row = gradient.value.baseAddress! + (channel * gradientStride + start)
                                let values = product + channel * count, shifted = shift[channel]
                                for p in 0 ..< count { row[p] += weights[start + p] * (values[p] + shifted) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// One whole evaluation on a contiguous feature map F, (channels, pixels): discards anything in
    /// `accumulator`, returns E and adds `weight · ∂E/∂F` into `gradient`, (channels, pixels).
    public mutating func evaluate(features: UnsafeBufferPointer<Float>, pixels: Int, weight: Float,
                                  addingGradientTo gradient: UnsafeMutableBufferPointer<Float>) -> Double {
        accumulator.reset()
        accumulator.add(features, pixels: pixels, stride: pixels)
        let value = finish()
        addGradient(features: features, pixels: pixels, featureStride: pixels,
                    weight: weight, into: gradient, gradientStride: pixels)
        return value
    }
}

// MARK: - Content loss

/// The content loss, the mean squared error between features F and the content target P (same
/// shape, any layout; M = element count = C · N):
///
///     E = Σ (F − P)² / M,   ∂E/∂F = 2 (F − P) / M
///
/// Returns E (float64 sum) and adds `weight · ∂E/∂F` into `gradient` (same shape).
public func contentLoss(features: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>, weight: Float,
                        addingGradientTo gradient: UnsafeMutableBufferPointer<Float>) -> Double {
    let count = features.count
    precondition(count > 0 && target.count == count && gradient.count == count, "content loss buffers differ in size")
    let scale = Float(2 * Double(weight) / Double(count))
    var sum = 0.0
    for i in 0..<count {
        let difference = features[i] - target[i]
        sum += Double(difference) * Double(difference)
        gradient[i] += scale * difference
    }
    return sum / Double(count)
}

/// The content loss of one layer, `E = Σ (F − P)² / M` (M = C · H · W, as `contentLoss`), for feature
/// maps that may arrive in horizontal stripes of rows: `add` sums the squared error of each stripe of the
/// forward pass (stripes that cover the map once), `finish` gives E, and `addGradient` adds
/// `weight · 2 (F − P) / M` for any rows (stripes of the backward pass may overlap; each row's gradient
/// depends on that row only).
public struct ContentLoss {
    public let channels: Int
    public let height: Int
    public let width: Int
    /// (channels, height, width): P, held as given (a whole map from the forward pass is not copied); or, in half
    /// precision, P / `halfScale` rounded to float16 (the map given is not kept).
    private let targetMap: Tensor?
    private let halfTarget: [Float16]?
    private var sum = 0.0

    /// What a half-precision target stores is P divided by this: ReLU outputs of the Caffe weights stay far below
    /// 16 × 65504, float16's largest, and float16 keeps 11 significant bits of each.
    static let halfScale: Float = 16

    /// How the target P is kept.
    public enum Precision: Sendable {
        case single
        /// Half the bytes, with a relative rounding of at most 2⁻¹¹ of each value.
        case half
    }

    /// The content features P, (channels, height, width), as the loss holds them.
    public var target: [Float] { targetMap?.values ?? halfTarget!.map { Float($0) * Self.halfScale } }

    public init(target: [Float], channels: Int, height: Int, width: Int, precision: Precision = .single) {
        precondition(target.count == channels * height * width, "content target does not match its shape")
        self.init(target: Tensor(channels: channels, height: height, width: width, values: target), precision: precision)
    }

    /// A content loss whose target P is `target`, (channels, height, width): kept without a copy in single precision,
    /// rounded to a float16 copy in half.
    public init(target: Tensor, precision: Precision = .single) {
        channels = target.channels
        height = target.height
        width = target.width
        switch precision {
        case .single:
            targetMap = target
            halfTarget = nil
        case .half:
            targetMap = nil
            let values = UnsafeBufferPointer(target.buffer)
            let scale = 1 / Self.halfScale
            halfTarget = [Float16](unsafeUninitializedCapacity: values.count) { half, count in
                for i in 0 ..< values.count { half[i] = Float16(values[i] * scale) }
                count = values.count
            }
        }
    }

    /// The bytes the target takes.
    public var targetBytes: Int {
        targetMap.map { $0.count * MemoryLayout<Float>.stride } ?? halfTarget!.count * MemoryLayout<Float16>.stride
    }

    /// Calls `body(c, target)` for each channel c, where target(i) is P at element i of the rows `rows` of channel c.
    @inline(__always)
    private func forEachChannel(rows: Range<Int>, _ body: (_ c: Int, _ target: (Int) -> Float) -> Void) {
        if let targetMap {
            let target = UnsafeBufferPointer(targetMap.buffer)
            for c in 0 ..< channels {
                let from = c &* height &* width &+ rows.lowerBound &* width
                body(c) { target[from &+ $0] }
            }
        } else {
            halfTarget!.withUnsafeBufferPointer { target in
                for c in 0 ..< channels {
                    let from = c &* height &* width &+ rows.lowerBound &* width
                    body(c) { Float(target[from &+ $0]) * Self.halfScale }
                }
            }
        }
    }

    /// Adds the squared error of `rows` of the map; `features` is (channels, rows.count, width).
    public mutating func add(_ features: UnsafeBufferPointer<Float>, rows: Range<Int>) {
        let stripe = rows.count * width
        precondition(features.count == channels * stripe && rows.upperBound <= height)
        var total = 0.0
        forEachChannel(rows: rows) { c, target in
            for i in 0 ..< stripe {
                let difference = Double(features[c &* stripe &+ i] - target(i))
                total += difference * difference
            }
        }
        sum += total
    }

    /// E for the rows added since the last `finish`, which it forgets.
    public mutating func finish() -> Double {
        defer { sum = 0 }
        return sum / Double(channels * height * width)
    }

    /// Adds `weight · ∂E/∂F = weight · 2 (F − P) / M` for `rows` into `gradient`; both buffers are
    /// (channels, rows.count, width).
    public func addGradient(features: UnsafeBufferPointer<Float>, rows: Range<Int>, weight: Float,
                            into gradient: UnsafeMutableBufferPointer<Float>) {
        let stripe = rows.count * width
        precondition(features.count == channels * stripe && gradient.count == features.count)
        let scale = Float(2 * Double(weight) / Double(channels * height * width))
        forEachChannel(rows: rows) { c, target in
            for i in 0 ..< stripe {
                gradient[c &* stripe &+ i] += scale * (features[c &* stripe &+ i] - target(i))
            }
        }
    }
}

// MARK: - Total variation

/// The total variation regularizer on the image X, (channels, height, width): the squared ("β = 2")
/// form, smooth everywhere so that L-BFGS sees a well-conditioned quadratic,
///
///     E = Σ_c [ Σ_{y, x<W−1} (X[c,y,x+1] − X[c,y,x])² + Σ_{y<H−1, x} (X[c,y+1,x] − X[c,y,x])² ] / (C H W)
///
/// normalized per sample, so pixel-level noise of a given amplitude costs the same at any image size
/// (a smooth gradient costs less at a higher resolution, which is the point: it penalizes noise, not
/// shading). Units are those of X squared. Returns E (float64 sum) and adds `weight · ∂E/∂X` into
/// `gradient`, (channels, height, width).
///
/// With `clampedTo`, X is the image with every value clamped to that range (the image as written out), without a copy.
///
/// On two or more cores one sums E while the other adds the gradient, both walking the differences in the same order.
public func totalVariationLoss(image: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int, weight: Float,
                               clampedTo range: ClosedRange<Float>? = nil,
                               addingGradientTo gradient: UnsafeMutableBufferPointer<Float>) -> Double {
    let count = channels * height * width
    precondition(channels > 0 && height > 0 && width > 0, "image must not be empty")
    precondition(image.count == count && gradient.count == count, "total variation buffers differ from the shape")
    let scale = Float(2 * Double(weight) / Double(count))
    let (low, high) = (range?.lowerBound ?? -.infinity, range?.upperBound ?? .infinity)
    let source = UncheckedSendable(value: image), target = UncheckedSendable(value: gradient)
    // Calls `body(i, j, X[j] − X[i])` for each pair of neighbors, row by row: along the row, then down to the next.
    func differences(_ body: (_ i: Int, _ j: Int, _ difference: Float) -> Void) {
        let image = { (i: Int) -> Float in min(max(source.value[i], low), high) }
        for c in 0 ..< channels {
            let plane = c &* height &* width
            for y in 0 ..< height {
                let row = plane &+ y &* width
                for x in 0 ..< (width &- 1) { body(row &+ x, row &+ x &+ 1, image(row &+ x &+ 1) - image(row &+ x)) }
                guard y < height &- 1 else { continue }
                for x in 0 ..< width { body(row &+ x, row &+ width &+ x, image(row &+ width &+ x) - image(row &+ x)) }
            }
        }
    }
    var sum = 0.0
    withUnsafeMutablePointer(to: &sum) { sum in
        let total = UncheckedSendable(value: sum)
        parallelBands(2, workers: min(2, coreCount), blasThreads: 1) { part, _ in
            if part == 0 {
                var sum = 0.0
                differences { _, _, difference in sum += Double(difference) * Double(difference) }
                total.value.pointee = sum
            } else {
                let gradient = target.value
                differences { i, j, difference in
                    gradient[j] += scale * difference
                    gradient[i] -= scale * difference
                }
            }
        }
    }
    return sum / Double(count)
}

// MARK: - Layout

/// The layout loss: the image's luminance Y = 0.299 R + 0.587 G + 0.114 B (0…255 units), blurred, held to the
/// content's,
///
///     E = Σ_{y,x} ((B Y)[y,x] − (B Y_content)[y,x])² / (H W)
///
/// B = D⁻¹ K: K is three passes of a box of 2r + 1 pixels along x and three along y, with zeros beyond the image (so
/// K is symmetric, and nearly a Gaussian of σ = √(r (r + 1)) pixels), and D the diagonal of K's row sums, which
/// renormalizes the weights within the image near its edges. What the blur leaves is the scene's layout, its large
/// light and dark areas; strokes and textures finer than the blur, and the colors, stay the style's. Normalized per
/// pixel like the total variation, so its weight means the same at any size. The gradient is
/// 2/(H W) · Bᵀ (B Y − B Y_content) through the luminance's coefficients, with Bᵀ = K D⁻¹. Running sums make the cost
/// per pixel independent of r.
public struct LayoutLoss: Sendable {
    public let width: Int
    public let height: Int
    /// The box's radius r, in pixels.
    public let radius: Int
    /// K's row sums along y and along x: D's factors.
    private let rowSums: [Float]
    private let columnSums: [Float]
    /// The content, (3, height, width) RGB in 0…1: the array the caller gave, not a copy. Since B is linear the loss is
    /// |B (Y − Y_content)|², so nothing but this and one plane of scratch is held.
    private let content: [Float]
    /// B (Y − Y_content) of the image.
    private var blurred: [Float]

    /// The loss towards `content`, (3, height, width) RGB in 0…1, with a box of radius `radius`.
    public init(content: [Float], height: Int, width: Int, radius: Int) {
        precondition(height > 0 && width > 0 && content.count == 3 * height * width, "content differs from the shape")
        precondition(radius > 0, "the layout blur needs a radius of a pixel at least")
        self.width = width
        self.height = height
        self.radius = radius
        self.content = content
        rowSums = Self.boxedOnes(count: height, radius: radius)
        columnSums = Self.boxedOnes(count: width, radius: radius)
        blurred = [Float](repeating: 0, count: height * width)
    }

    /// The radius for an image whose longer side is `longestSide` pixels: a 128th of it (4 pixels at 512), at least 1.
    public static func radius(longestSide: Int) -> Int { max(1, Int((Double(longestSide) / 128).rounded())) }

    /// The bytes the loss holds for an image of `pixels` pixels beside the content it is given: a plane of scratch.
    public static func bytes(pixels: Int) -> Int { pixels * MemoryLayout<Float>.stride }

    /// B Y of the content, (height, width): what the blurred luminance of the image is held to.
    public var target: [Float] {
        var target = YIQ.luminance(ofRGB: content).map { 255 * $0 }
        target.withUnsafeMutableBufferPointer { blur($0) }
        return target
    }

    /// E at `image`, (3, height, width) RGB in 0…1 (clamped to `clampedTo` as it is read); adds `weight · ∂E/∂X` into
    /// `gradient`, (3, height, width).
    public mutating func evaluate(image: UnsafeBufferPointer<Float>, weight: Float,
                                  clampedTo range: ClosedRange<Float>? = nil,
                                  addingGradientTo gradient: UnsafeMutableBufferPointer<Float>) -> Double {
        let plane = height * width
        precondition(image.count == 3 * plane && gradient.count == 3 * plane, "layout loss buffers differ from the shape")
        var blurred: [Float] = []
        swap(&blurred, &self.blurred)
        defer { swap(&blurred, &self.blurred) }
        let (low, high) = (range?.lowerBound ?? -.infinity, range?.upperBound ?? .infinity)
        let coefficients = (0 ..< 3).map { Float(255 * YIQ.fromRGBMatrix[$0]) }
        let (c0, c1, c2) = (coefficients[0], coefficients[1], coefficients[2])
        let cost = 16
        blurred.withUnsafeMutableBufferPointer { blurred in
            let blurred = UncheckedSendable(value: blurred)
            content.withUnsafeBufferPointer { content in
                let (image, content) = (UncheckedSendable(value: image), UncheckedSendable(value: content))
                parallelFor(plane, cost: cost, threads: coreCount) { pixels in
                    let (image, content) = (image.value, content.value)
                    for p in pixels {
                        var difference: Float = 0
                        difference += c0 * (min(max(image[p], low), high) - content[p])
                        difference += c1 * (min(max(image[plane &+ p], low), high) - content[plane &+ p])
                        difference += c2 * (min(max(image[2 &* plane &+ p], low), high) - content[2 &* plane &+ p])
                        blurred.value[p] = difference
                    }
                }
            }
            blur(blurred.value)
        }
        var sum = 0.0
        let scale = Float(2 * Double(weight) / Double(plane))
        for p in 0 ..< plane {
            sum += Double(blurred[p]) * Double(blurred[p])
            blurred[p] *= scale
        }
        blurred.withUnsafeMutableBufferPointer { blurred in
            blurAdjoint(blurred)
            let (blurred, gradient) = (UncheckedSendable(value: UnsafeBufferPointer(blurred)),
                                       UncheckedSendable(value: gradient))
            parallelFor(plane, cost: cost, threads: coreCount) { pixels in
                for p in pixels {
                    let value = blurred.value[p]
                    gradient.value[p] += c0 * value
                    gradient.value[plane &+ p] += c1 * value
                    gradient.value[2 &* plane &+ p] += c2 * value
                }
            }
        }
        return sum / Double(plane)
    }

    /// B, in place.
    private func blur(_ plane: UnsafeMutableBufferPointer<Float>) {
        applyK(plane)
        divideBySums(plane)
    }

    /// Bᵀ = K D⁻¹, in place.
    private func blurAdjoint(_ plane: UnsafeMutableBufferPointer<Float>) {
        divideBySums(plane)
        applyK(plane)
    }

    /// The rows shared among the cores.
    private func divideBySums(_ plane: UnsafeMutableBufferPointer<Float>) {
        let width = self.width, plane = UncheckedSendable(value: plane)
        rowSums.withUnsafeBufferPointer { rowSums in
            columnSums.withUnsafeBufferPointer { columnSums in
                let sums = UncheckedSendable(value: (rows: rowSums, columns: columnSums))
                parallelFor(height, cost: width, threads: coreCount) { rows in
                    for y in rows {
                        for x in 0 ..< width { plane.value[y &* width &+ x] /= sums.value.rows[y] * sums.value.columns[x] }
                    }
                }
            }
        }
    }

    /// K, in place: three box passes along x, then three along y; the rows, then the columns, shared among the cores
    /// (each line's sums are its own, so the bits do not depend on the sharing).
    private func applyK(_ plane: UnsafeMutableBufferPointer<Float>) {
        let (width, radius) = (self.width, self.radius), target = UncheckedSendable(value: plane)
        parallelFor(height, cost: 12 * width, threads: coreCount) { rows in
            var sums = [Double](repeating: 0, count: width)
            for y in rows {
                let row = UnsafeMutableBufferPointer(rebasing: target.value[y &* width ..< (y &+ 1) &* width])
                for _ in 0 ..< 3 { Self.box(row, radius: radius, sums: &sums) }
            }
        }
        parallelFor(width, cost: 12 * height, threads: coreCount) { columns in
            var sums = [Double](repeating: 0, count: columns.count)
            for _ in 0 ..< 3 { boxColumns(target.value, columns: columns, sums: &sums) }
        }
    }

    /// One box pass along a line, in place: each value the sum of those within `radius` of it on the line. `sums`
    /// holds at least the line's count.
    private static func box(_ line: UnsafeMutableBufferPointer<Float>, radius: Int, sums: inout [Double]) {
        let count = line.count
        var running = 0.0
        for i in 0 ..< min(radius, count) { running += Double(line[i]) }
        for i in 0 ..< count {
            if i + radius < count { running += Double(line[i &+ radius]) }
            if i - radius - 1 >= 0 { running -= Double(line[i &- radius &- 1]) }
            sums[i] = running
        }
        for i in 0 ..< count { line[i] = Float(sums[i]) }
    }

    /// One box pass along y for the columns `columns`, in place, a row of running sums at a time; `sums` holds at
    /// least `columns.count` values.
    private func boxColumns(_ plane: UnsafeMutableBufferPointer<Float>, columns: Range<Int>, sums: inout [Double]) {
        let (width, height, radius) = (self.width, self.height, self.radius)
        let (first, count) = (columns.lowerBound, columns.count)
        // Rows y − radius … y + radius summed in `sums`; results held back `radius + 1` rows (the rows they still need
        // are read before they are overwritten) in a ring of rows.
        var ring = [Float](repeating: 0, count: (radius + 1) * count)
        for x in 0 ..< count { sums[x] = 0 }
        for y in 0 ..< min(radius, height) {
            for x in 0 ..< count { sums[x] += Double(plane[y &* width &+ first &+ x]) }
        }
        for y in 0 ..< height {
            if y + radius < height {
                for x in 0 ..< count { sums[x] += Double(plane[(y &+ radius) &* width &+ first &+ x]) }
            }
            if y - radius - 1 >= 0 {
                // Row y − radius − 1 leaves the window: its original values are needed, so it is written only now.
                let old = y - radius - 1, slot = (old % (radius + 1)) * count
                for x in 0 ..< count {
                    sums[x] -= Double(plane[old &* width &+ first &+ x])
                    plane[old &* width &+ first &+ x] = ring[slot &+ x]
                }
            }
            let slot = (y % (radius + 1)) * count
            for x in 0 ..< count { ring[slot &+ x] = Float(sums[x]) }
        }
        for old in max(0, height - radius - 1) ..< height {
            let slot = (old % (radius + 1)) * count
            for x in 0 ..< count { plane[old &* width &+ first &+ x] = ring[slot &+ x] }
        }
    }

    /// K applied to a line of ones: the sums of the weights within the line.
    private static func boxedOnes(count: Int, radius: Int) -> [Float] {
        var line = [Float](repeating: 1, count: count)
        var sums = [Double](repeating: 0, count: count)
        line.withUnsafeMutableBufferPointer { line in
            for _ in 0 ..< 3 { box(line, radius: radius, sums: &sums) }
        }
        return line
    }
}

// MARK: - Temporal consistency

/// The temporal loss of video stylization (Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos", 2016): the
/// image X, (channels, height, width), held to the previous frame's result warped to this frame, T, wherever the
/// optical flow can be trusted,
///
///     E = Σ_{c,y,x} r[y,x] (X[c,y,x] − T[c,y,x])² / (C H W)
///
/// with r, (height, width), the flow's reliability: 1 where the previous frame's pixel is seen again, 0 where the frame
/// shows what the previous one did not (disocclusions) and along motion boundaries, which stay free. Normalized per
/// sample like the total variation, so its weight means the same at any size. Units are those of X squared. Returns E
/// (float64 sum) and adds `weight · ∂E/∂X` into `gradient`, (channels, height, width).
///
/// With `clampedTo`, X is the image with every value clamped to that range (the image as written out), without a copy.
public func temporalLoss(image: UnsafeBufferPointer<Float>, target: UnsafeBufferPointer<Float>,
                         reliability: UnsafeBufferPointer<Float>, channels: Int, height: Int, width: Int,
                         weight: Float, clampedTo range: ClosedRange<Float>? = nil,
                         addingGradientTo gradient: UnsafeMutableBufferPointer<Float>) -> Double {
    let plane = height * width, count = channels * plane
    precondition(channels > 0 && height > 0 && width > 0, "image must not be empty")
    precondition(image.count == count && target.count == count && gradient.count == count && reliability.count == plane,
                 "temporal loss buffers differ from the shape")
    let scale = Float(2 * Double(weight) / Double(count))
    let (low, high) = (range?.lowerBound ?? -.infinity, range?.upperBound ?? .infinity)
    var sum = 0.0
    for c in 0..<channels {
        let offset = c &* plane
        for p in 0..<plane where reliability[p] != 0 {
            let difference = min(max(image[offset &+ p], low), high) - target[offset &+ p]
            sum += Double(reliability[p]) * Double(difference) * Double(difference)
            gradient[offset &+ p] += scale * reliability[p] * difference
        }
    }
    return sum / Double(count)
}

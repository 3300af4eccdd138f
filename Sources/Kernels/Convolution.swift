import CGEMM

/// How the 3x3 convolutions of many input channels are computed. Those of few input channels (the image's) always
/// use im2col.
public enum ConvolutionAlgorithm: String, Sendable, CaseIterable {
    /// im2col + one SGEMM per band of rows: 9 · inChannels · outChannels multiply-adds per pixel.
    case im2col
    /// Winograd's F(6×6, 3×3) or F(4×4, 3×3) (`WinogradTile`): α² SGEMMs per band of m×m tiles, 1.78 or 2.25 ·
    /// inChannels · outChannels multiply-adds per pixel; its rounding errors are a few times larger than im2col's
    /// (relative errors around 10⁻⁵ in float32). The products run in `cgemm_panels`, on operands the transforms write
    /// in its panels, when both channel counts are multiples of 8 and the kernel path (`KernelPath.current` when the
    /// convolution is made) is not OpenBLAS; otherwise in OpenBLAS.
    case winograd
    /// Winograd's algorithm with every product in OpenBLAS, whatever the kernel path: kept selectable to compare the
    /// two.
    case winogradOpenBLAS = "winograd-openblas"
}

/// A 3x3, stride-1, padding-1 convolution with bias, and the gradient with respect to its input (never its weights).
///
/// With `ConvolutionAlgorithm.winograd` and more than a few input channels, both directions run Winograd's F(m×m, 3×3)
/// of the convolution's `WinogradTile` (see Winograd.swift) on bands of tile rows as large as the scratch allows: the
/// input tiles of a band are transformed, multiplied by the transformed kernel (α² single-threaded SGEMMs), and
/// transformed back with the epilogue fused. On a map of few bands, all workers share each band, step by step (in
/// parallel over channels, positions, channels); on a map of many, each worker takes whole bands through all three
/// steps in buffers of its own, so that a band's tiles stay in the caches of the core that made them. The
/// transformed kernel serves both directions; it is made on first use and kept, or, when the convolution is given a
/// `TransformedKernelSlot` and does not `keepsKernel`, remade into that shared buffer whenever another convolution used
/// it in between (a network's deep layers thus hold one transformed kernel at a time instead of one each). With bf16
/// products, the transformed kernel and the input tiles are made in bfloat16 pairs, the products' own operands.
///
/// Otherwise both directions are im2col + one SGEMM per band of output rows (except the forward pass of few input
/// channels on the AVX-512 path, which sums directly, `usesDirectSums`), so the im2col scratch is bounded by the caller's
/// budget, whatever the image size: forward, output (outC, band) = kernel (outC, inC·9) · col (inC·9, band); backward,
/// the input gradient is the forward convolution of the output gradient with the kernel transposed and rotated by
/// 180°. For few input channels (the image's 3), where that GEMM would have only 3 rows, the backward pass instead
/// computes col = kernelᵀ · gradient and gathers the columns back onto the pixels (col2im).
///
/// The bands are the unit of parallelism: each core takes the next band and runs im2col, a single-threaded GEMM and
/// the epilogue (bias, ReLU and mask; or the mask of the input's ReLU) on it, in its own slice of the scratch. Bands
/// write disjoint rows, so nothing is shared but the input.
///
/// The forward kernel is the caller's array itself, not a copy; the rotated kernel is made on the first backward pass,
/// so layers that are never differentiated cost nothing more.
package final class Convolution {
    package let inChannels: Int
    package let outChannels: Int
    /// (outChannels, inChannels · 9): the kernel as GEMM rows, taps in (ky, kx) order; shared with the weights.
    private let kernel: [Float]
    /// (outChannels); shared with the weights.
    private let bias: [Float]
    /// The kernel of the input gradient when it is not the col2im product: (inChannels, outChannels · 9) with
    /// kernel[o, i·9 + t] at [i, o·9 + 8 − t]. With the own kernels, the kernel of the col2im product instead: kernelᵀ,
    /// (inChannels · 9, outChannels). In `cgemm_pack`'s panels with the own kernels, plain for OpenBLAS; nil until the
    /// first backward pass that needs it.
    private var backwardKernelStorage: Tensor?
    /// The forward kernel in `cgemm_pack`'s panels, for the own kernels' im2col products; nil until first used.
    private var packedKernel: Tensor?

    /// At most this many input channels take the col2im path backward.
    private static let col2imInputChannels = 4

    /// (α², outChannels, inChannels): the Winograd transform of the kernel, for both directions; nil until first used,
    /// and nil whenever the kernel is made in `kernelSlot`.
    private var transformedKernel: Tensor?
    /// The buffer shared with other convolutions that the transformed kernel is made in each time it is needed, unless
    /// `keepsKernel`; nil when the convolution always keeps its own.
    private let kernelSlot: TransformedKernelSlot?
    /// Whether a convolution given a `kernelSlot` keeps its transformed kernel instead, made once on first use (while
    /// the memory allows); setting it false frees the kept kernel.
    package var keepsKernel = false {
        didSet { if !keepsKernel && kernelSlot != nil { transformedKernel = nil } }
    }

    /// The threads a pass runs on.
    package let threads: Int
    /// What the convolution sees beyond its map's edges: `Padding.reflect` only for few input channels (conv1_1), zeros
    /// otherwise.
    package let padding: Padding
    /// Whether the im2col products run in the project's kernels (`cgemm_multiply`, on kernels packed once), decided
    /// when the convolution is made: for the convolutions that do not run Winograd's algorithm (conv1_1, and every
    /// layer with `ConvolutionAlgorithm.im2col`), unless the kernel path is OpenBLAS. A Winograd layer takes the im2col
    /// path only on maps under 4 pixels a side, where its products are a few thousand multiply-adds; those stay in
    /// OpenBLAS, which reads the kernel as it is, so that no packed copy of a large kernel is kept for them.
    package let usesOwnIm2col: Bool
    /// Whether this convolution runs Winograd's algorithm (rather than im2col), in both directions.
    package let usesWinograd: Bool
    /// Which of Winograd's algorithms it runs when it does.
    package let tile: WinogradTile
    /// Whether its Winograd products run in `cgemm_panels` (rather than OpenBLAS), decided when the convolution is made;
    /// `cgemm_panels` runs in the instruction set `cgemm_selected()` names at each call.
    package let usesPanelGEMM: Bool
    /// Whether its Winograd products run in bfloat16 (`cgemm_panels_bf16`): asked for with `ProductPrecision.bf16`, on
    /// the panel GEMM of the `avx512` kernel path, on a processor with AVX512_BF16; decided when the convolution is made.
    package let usesBF16: Bool
    /// With `usesBF16`, whether the products read both operands in bfloat16 pairs (`cgemm_panels_bf16_pairs`): the
    /// transformed kernel made so once (`cgemm_bf16_kernel_block`, for both directions in the floats of the float
    /// kernel) and the input tiles written so by their transform (`cgemm_winograd_input_pairs`), rather than both in
    /// floats that every product rounds again: the same bits, with half the bytes to write and read. With `usesHalf`,
    /// whether the input tiles are written in half-precision pairs by their transform (`cgemm_winograd_input_half_pairs`,
    /// read by `cgemm_panels_fp16_pairs`), each band's slices of 256 channels scaled by a power of two from the largest
    /// magnitude of their input rows (`winogradHalfTileScales`), rather than in floats that each product scales and
    /// rounds: the same bits wherever the scaled values stay above half precision's smallest normal value, with half
    /// the bytes to write and read and no pass of their own to round them. Off only to compare the two; changing it
    /// drops the kept kernel (set it before a convolution sharing a slot first runs).
    package var usesPairs = true {
        didSet { if usesPairs != oldValue { transformedKernel = nil } }
    }
    /// Whether the products run on bfloat16 pairs.
    private var pairs: Bool { usesBF16 && usesPairs }
    /// Whether the half-precision products read the input tiles in pairs.
    private var halfPairs: Bool { usesHalf && usesPairs }
    /// Whether its Winograd products run in half precision (`cgemm_panels_fp16`): asked for with
    /// `ProductPrecision.half`, on the panel GEMM of the `avx512` kernel path, on a processor with AVX512_FP16; decided
    /// when the convolution is made. The transformed kernel is then held as half-precision pairs for both directions
    /// (`cgemm_fp16_kernel_block`), each position scaled by `halfKernelScales`.
    package let usesHalf: Bool
    /// With `usesHalf`, the power of two each position of the transformed kernel was scaled by before its rounding to
    /// half precision (`cgemm_fp16_kernel_scale`), set whenever the kernel is made.
    private var halfKernelScales: [Float] = []
    /// The precision its Winograd products run in.
    package var productPrecision: ProductPrecision { usesHalf ? .half : usesBF16 ? .bf16 : .single }
    /// The output channels per panel of the transformed kernel: `CGEMM_PANEL_ROWS` for `cgemm_panels`, one (the plain
    /// (outChannels, inChannels) order) for OpenBLAS.
    private var kernelPanelRows: Int { usesPanelGEMM ? Int(CGEMM_PANEL_ROWS) : 1 }

    /// - kernelSlot: where the Winograd-transformed kernel is made each time it is needed; nil to make it once and keep it.
    /// - precision: the precision of the Winograd products, where the processor and the kernel path run it.
    /// - padding: `Padding.reflect` for a convolution of few input channels (the image's), which runs im2col forward
    ///   and col2im backward; zeros for the others.
    /// - tile: the Winograd algorithm, F(6×6, 3×3) or F(4×4, 3×3), when it runs one; nil for `preferredTile`.
    package init(_ weights: ConvLayerWeights, threads: Int = coreCount, algorithm: ConvolutionAlgorithm = .winograd,
                 kernelSlot: TransformedKernelSlot? = nil, precision: ProductPrecision = .single,
                 padding: Padding = .zero, tile: WinogradTile? = nil) {
        precondition(threads >= 1)
        self.threads = threads
        inChannels = weights.inChannels
        outChannels = weights.outChannels
        kernel = weights.kernel
        bias = weights.bias
        usesWinograd = Self.usesWinograd(inChannels: inChannels, algorithm: algorithm)
        let tile = tile ?? Self.preferredTile(precision: precision, algorithm: algorithm)
        self.tile = tile
        precondition(padding == .zero || inChannels <= Self.col2imInputChannels,
                     "reflection runs on the im2col and col2im path of few input channels only")
        self.padding = padding
        let rows = Int(CGEMM_PANEL_ROWS)
        usesPanelGEMM = usesWinograd && algorithm == .winograd && KernelPath.current != .openblas
            && inChannels % rows == 0 && outChannels % rows == 0
        usesOwnIm2col = !usesWinograd && KernelPath.current != .openblas
        usesBF16 = usesPanelGEMM && precision == .bf16 && precision.isSupported && KernelPath.current == .avx512
        usesHalf = usesPanelGEMM && precision == .half && precision.isSupported && KernelPath.current == .avx512
        self.kernelSlot = usesWinograd ? kernelSlot : nil
        precondition(self.kernelSlot.map { $0.capacity >= tile.positions * inChannels * outChannels } ?? true,
                     "transformed kernel slot too small")
    }

    /// The rows of its input map a pass computing the output rows `rows` of a map `height` rows tall reads, in either
    /// direction: those rows and one more each side, where the map has them.
    package static func inputRows(for rows: Range<Int>, height: Int) -> Range<Int> {
        rows.isEmpty ? 0 ..< 0 : max(0, rows.lowerBound - 1) ..< min(height, rows.upperBound + 1)
    }

    /// The Winograd algorithm for products in `precision`: F(6×6, 3×3), whose fewer products cost nothing in accuracy
    /// in single precision (its error against float64 stays about 10⁻⁵, WinogradTests), except where the products run
    /// in bf16 (`ProductPrecision.bf16` on the avx512 path of a processor with AVX512_BF16): there the operands'
    /// rounding, amplified by F(6×6)'s larger transforms, leaves its error about twice F(4×4)'s, and the loss after 100
    /// L-BFGS iterations of a photo 2.7 % above single precision's instead of 0.7 % (bench/README.md), so F(4×4).
    package static func preferredTile(precision: ProductPrecision, algorithm: ConvolutionAlgorithm) -> WinogradTile {
        algorithm == .winograd && precision == .bf16 && precision.isSupported && KernelPath.current == .avx512
            ? .f4 : .f6
    }

    /// Whether a convolution of `inChannels` input channels runs Winograd's algorithm when asked for `algorithm`.
    package static func usesWinograd(inChannels: Int, algorithm: ConvolutionAlgorithm) -> Bool {
        algorithm != .im2col && inChannels > col2imInputChannels
    }

    /// The floats of this convolution's Winograd-transformed kernel, or 0 when it runs im2col.
    package var transformedKernelCount: Int { usesWinograd ? tile.positions * inChannels * outChannels : 0 }

    /// The floats of the im2col kernels the passes make on first use, besides the Winograd kernel: with the own
    /// kernels the forward kernel packed (unless the forward pass sums directly) and the backward one (packed kernelᵀ
    /// for col2im, or the packed rotated kernel); with OpenBLAS only the rotated kernel (the forward and col2im
    /// products read the kernel as it is).
    package var derivedKernelCount: Int {
        guard !usesWinograd else { return 0 }
        let depth = inChannels * 9
        guard usesOwnIm2col else { return backwardUsesCol2im ? 0 : depth * outChannels }
        let backward = backwardUsesCol2im ? cgemm_packed_count(Int32(depth), Int32(outChannels))
            : cgemm_packed_count(Int32(inChannels), Int32(outChannels * 9))
        return (usesDirectSums ? 0 : cgemm_packed_count(Int32(outChannels), Int32(depth))) + backward
    }

    /// The bytes this convolution added to the weights it was given: its im2col or transformed kernels, once made.
    package var allocatedBytes: Int {
        [backwardKernelStorage, packedKernel, transformedKernel].reduce(0) { $0 + ($1?.allocatedBytes ?? 0) }
    }

    /// The Winograd-transformed kernel: the kept one (made on first use), or the shared slot, remade there unless it
    /// holds this convolution's already.
    private func winogradKernel() -> Tensor {
        if let kernelSlot, !keepsKernel {
            return kernelSlot.tensor(for: ObjectIdentifier(self), channels: tile.positions, height: outChannels,
                                     width: inChannels, fill: transformKernel)
        }
        if let transformedKernel { return transformedKernel }
        let transformed = Tensor(channels: tile.positions, height: outChannels, width: inChannels)
        transformKernel(into: transformed)
        transformedKernel = transformed
        return transformed
    }

    /// Writes the Winograd transform of the kernel into `transformed`, (α², outChannels, inChannels) in panels of
    /// `kernelPanelRows` output channels; or, for products on bfloat16 pairs, each position's (outChannels, inChannels)
    /// floats as the pairs of the forward products' A and then of the backward ones' (`cgemm_bf16_kernel_block`), made
    /// eight output channels at a time through a float transform of theirs; or, for half-precision products, the float
    /// transform first, then each position, scaled so that its largest magnitude lies in [2³, 2⁴), as the half-precision
    /// pairs of both directions in its own floats (`cgemm_fp16_kernel_block`).
    private func transformKernel(into transformed: Tensor) {
        let (outChannels, inChannels, panelRows, tile) = (outChannels, inChannels, kernelPanelRows, tile)
        let target = UncheckedSendable(value: transformed.storage)
        let pairs = self.pairs, plane = outChannels * inChannels, block = Int(CGEMM_PANEL_ROWS)
        kernel.withUnsafeBufferPointer { kernel in
            let source = UncheckedSendable(value: kernel.baseAddress!)
            guard pairs else {
                parallelFor(outChannels, cost: inChannels * 9 * 64, threads: threads) { outputs in
                    winogradTransformKernel(source.value, tile: tile, outChannels: outChannels, inChannels: inChannels,
                                            outputs: outputs, panelRows: panelRows, into: target.value)
                }
                if usesHalf { halfKernelScales = Self.roundToHalfPairs(transformed, positions: tile.positions,
                                                                      outChannels: outChannels, inChannels: inChannels,
                                                                      threads: threads) }
                return
            }
            let words = UncheckedSendable(value: UnsafeMutablePointer<UInt32>(OpaquePointer(transformed.storage)))
            parallelFor(outChannels / block, cost: block * inChannels * 9 * 64, threads: threads) { blocks in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: tile.positions * block * inChannels) { floats in
                    for b in blocks {
                        let first = b * block
                        winogradTransformKernel(source.value + first * inChannels * 9, tile: tile, outChannels: block,
                                                inChannels: inChannels, outputs: 0 ..< block, panelRows: block,
                                                into: floats.baseAddress!)
                        for position in 0 ..< tile.positions {
                            let forward = words.value + position * plane
                            cgemm_bf16_kernel_block(Int32(outChannels), Int32(inChannels), Int32(first),
                                                    floats.baseAddress! + position * block * inChannels, forward,
                                                    forward + plane / 2)
                        }
                    }
                }
            }
        }
    }

    /// Turns each position of a float transformed kernel (α², outChannels, inChannels) in panels of 8 output channels
    /// into the half-precision pairs of the forward products' A and then of the backward ones', in the position's own
    /// floats, scaled by `cgemm_fp16_kernel_scale` of its largest magnitude; returns those scales.
    private static func roundToHalfPairs(_ transformed: Tensor, positions: Int, outChannels: Int, inChannels: Int,
                                         threads: Int) -> [Float] {
        let plane = outChannels * inChannels, block = Int(CGEMM_PANEL_ROWS)
        let storage = UncheckedSendable(value: transformed.storage)
        let scales = UncheckedSendable(value: UnsafeMutablePointer<Float>.allocate(capacity: positions))
        defer { scales.value.deallocate() }
        parallelFor(positions, cost: plane * 4, threads: threads) { range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: plane) { copy in
                for position in range {
                    let floats = storage.value + position * plane
                    copy.baseAddress!.update(from: floats, count: plane)
                    let largest = copy.reduce(Float(0)) { max($0, abs($1)) }
                    let scale = cgemm_fp16_kernel_scale(largest)
                    scales.value[position] = scale
                    let forward = UnsafeMutablePointer<UInt32>(OpaquePointer(floats))
                    for first in stride(from: 0, to: outChannels, by: block) {
                        cgemm_fp16_kernel_block(Int32(outChannels), Int32(inChannels), Int32(first),
                                                copy.baseAddress! + first * inChannels, scale, forward,
                                                forward + plane / 2)
                    }
                }
            }
        }
        return Array(UnsafeBufferPointer(start: scales.value, count: positions))
    }

    /// The forward kernel packed for `cgemm_multiply`, made on first use.
    private func forwardPackedKernel() -> Tensor {
        if let packedKernel { return packedKernel }
        let depth = inChannels * 9
        let packed = Tensor(channels: 1, height: 1, width: cgemm_packed_count(Int32(outChannels), Int32(depth)))
        kernel.withUnsafeBufferPointer {
            cgemm_pack(Int32(outChannels), Int32(depth), $0.baseAddress!, depth, 0, packed.storage)
        }
        packedKernel = packed
        return packed
    }

    /// The kernel for the input gradient (see `backwardKernelStorage`), made on first use.
    private func backwardKernel() -> Tensor {
        if let backwardKernelStorage { return backwardKernelStorage }
        let depth = inChannels * 9
        let made: Tensor
        if backwardUsesCol2im {
            // kernelᵀ, (depth, outChannels), packed from the kernel read transposed.
            made = Tensor(channels: 1, height: 1, width: cgemm_packed_count(Int32(depth), Int32(outChannels)))
            kernel.withUnsafeBufferPointer {
                cgemm_pack(Int32(depth), Int32(outChannels), $0.baseAddress!, depth, 1, made.storage)
            }
        } else {
            var rotated = [Float](repeating: 0, count: inChannels * outChannels * 9)
            for o in 0 ..< outChannels {
                for i in 0 ..< inChannels {
                    for t in 0 ..< 9 {
                        rotated[(i * outChannels + o) * 9 + 8 - t] = kernel[(o * inChannels + i) * 9 + t]
                    }
                }
            }
            if usesOwnIm2col {
                made = Tensor(channels: 1, height: 1,
                              width: cgemm_packed_count(Int32(inChannels), Int32(outChannels * 9)))
                cgemm_pack(Int32(inChannels), Int32(outChannels * 9), rotated, outChannels * 9, 0, made.storage)
            } else {
                made = Tensor(channels: 1, height: inChannels, width: outChannels * 9, values: rotated)
            }
        }
        backwardKernelStorage = made
        return made
    }

    /// One im2col product, C (m, n) = A (m, k) · B (k, n) with B and C row-major: in `cgemm_multiply` on `packed`, A
    /// as `cgemm_pack` wrote it, when given; else in OpenBLAS on the plain A at `a` (read transposed, (k, m), when
    /// `transposeA`).
    @inline(__always)
    private func im2colProduct(m: Int, n: Int, k: Int, packed: Tensor?, a: UnsafePointer<Float>, lda: Int,
                               transposeA: Bool = false, b: UnsafePointer<Float>, ldb: Int,
                               c: UnsafeMutablePointer<Float>, ldc: Int) {
        if let packed {
            cgemm_multiply(Int32(m), Int32(n), Int32(k), 1, packed.storage, b, ldb, 0, c, ldc)
        } else {
            sgemm(m: m, n: n, k: k, a: a, lda: lda, transposeA: transposeA, b: b, ldb: ldb, c: c, ldc: ldc)
        }
    }

    /// The im2col band one worker aims for, in floats: small enough to stay in the caches while the GEMM reads it.
    package static let bandTarget = 1 << 20

    /// How one pass splits a map into bands of rows that workers take in turn.
    private struct Bands {
        /// Rows per band (the last band may have fewer).
        let rows: Int
        let count: Int
        let workers: Int
        /// Floats of scratch each worker owns.
        let scratchPerWorker: Int
    }

    /// Bands for a pass whose im2col operand has `depth` rows per pixel, plus `halo` extra rows of it per band, when each
    /// worker may use `perWorker` floats: as large as the memory allows up to `bandTarget`, and at least four per
    /// worker when the map is tall enough, so that the workers stay balanced.
    private func bands(depth: Int, halo: Int, height: Int, width: Int, perWorker: Int) -> Bands {
        let rowFloats = depth * width
        let byMemory = max(1, min(perWorker, Self.bandTarget) / rowFloats - halo)
        // The band height depends on the machine, not on `threads`, so that every thread count gives the same bits.
        let byBalance = max(1, (height + 4 * coreCount - 1) / (4 * coreCount))
        let rows = min(height, byMemory, byBalance)
        let count = (height + rows - 1) / rows
        return Bands(rows: rows, count: count, workers: min(threads, count),
                     scratchPerWorker: (rows + halo) * rowFloats)
    }

    /// The scratch floats this convolution needs for a height × width map when one pass may use at most `limit`
    /// floats (but never less than one row per worker).
    package func scratchCount(height: Int, width: Int, limit: Int) -> Int {
        guard height > 0 && width > 0 else { return 0 }
        if runsWinograd(height: height, width: width) {
            return winogradBands(grid: WinogradGrid(tile: tile, rows: 0 ..< height, height: height, width: width),
                                 limit: limit).count
        }
        let perWorker = max(1, limit / threads)
        let passes = [bands(depth: inChannels * 9, halo: 0, height: height, width: width, perWorker: perWorker),
                      backwardBands(height: height, width: width, perWorker: perWorker)]
        return threads * passes.map(\.scratchPerWorker).max()!
    }

    /// Whether the backward pass takes the col2im path: for few input channels, and for Winograd layers on the maps
    /// Winograd leaves alone (which needs no rotated kernel).
    private var backwardUsesCol2im: Bool { inChannels <= Self.col2imInputChannels || usesWinograd }

    /// Whether a pass over a height × width map runs Winograd's algorithm: on maps at least a tile's side m in rows and
    /// columns. On smaller ones the tiles are mostly padding, which saves nothing and rounds worst.
    private func runsWinograd(height: Int, width: Int) -> Bool {
        usesWinograd && height >= tile.output && width >= tile.output
    }

    private func backwardBands(height: Int, width: Int, perWorker: Int) -> Bands {
        backwardUsesCol2im
            ? bands(depth: inChannels * 9, halo: 2, height: height, width: width, perWorker: perWorker)
            : bands(depth: outChannels * 9, halo: 0, height: height, width: width, perWorker: perWorker)
    }

    /// output = conv(input) + bias, then ReLU recording its mask when `reluMask` is given, or ReLU alone when
    /// `rectify` (a recomputation, whose mask the first pass recorded).
    /// - input: (inChannels, height, width)
    /// - output: reshaped to (outChannels, height, width)
    /// - reluMask: (outChannels, height, maskRowBytes(width)) bytes
    /// - scratch: `scratchCount` floats for this size, or more
    package func forward(_ input: Tensor, into output: Tensor, reluMask: ByteBuffer?, rectify: Bool = false, scratch: Tensor) {
        let span = RowSpan.whole(height: input.height, width: input.width)
        output.reshape(channels: outChannels, height: input.height, width: input.width)
        forward(rows: 0 ..< input.height, input: input, inputSpan: span, into: output, outputSpan: span,
                reluMask: reluMask.map { .mask($0, rows: 0 ..< input.height, width: input.width) }, rectify: rectify,
                scratch: scratch)
    }

    /// The stripe form of `forward`: computes the rows `rows` of the output map from an input that holds the rows
    /// `inputSpan` of its map (at least `inputRows(for: rows)`), into an output
    /// that holds the rows `outputSpan` (at least `rows`). Rows outside `rows` are left alone.
    /// - input: (inChannels, inputSpan.rows, width)
    /// - output: (outChannels, outputSpan.rows, width)
    /// - reluMask: holding at least `rows`
    package func forward(rows: Range<Int>, input: Tensor, inputSpan: RowSpan, into output: Tensor, outputSpan: RowSpan,
                 reluMask: RowRecords?, rectify: Bool = false, scratch: Tensor) {
        let height = inputSpan.height, width = inputSpan.width
        precondition(input.channels == inChannels && input.count == inChannels * inputSpan.plane && input !== output)
        precondition(output.channels == outChannels && output.count == outChannels * outputSpan.plane)
        precondition(outputSpan.height == height && outputSpan.width == width && outputSpan.holds(rows))
        precondition(inputSpan.holds(Self.inputRows(for: rows, height: height)), "convolution input lacks rows")
        guard !rows.isEmpty && width > 0 else { return }
        if runsWinograd(height: height, width: width) {
            bias.withUnsafeBufferPointer { bias in
                winograd(transposed: false, rows: rows, input: input.storage, inputSpan: inputSpan,
                         output: output.storage, outputSpan: outputSpan, scratch: scratch) { c, row, y in
                    addBias(row: row, width: width, bias: bias[c], reluMask: reluMask?.row(channel: c, y),
                            rectify: rectify)
                }
            }
            return
        }
        let depth = inChannels * 9
        let perWorker = scratch.capacity / threads
        let bands = self.bands(depth: depth, halo: 0, height: rows.count, width: width, perWorker: perWorker)
        precondition(bands.scratchPerWorker <= perWorker, "convolution scratch too small")
        let inner = bands.workers == 1 ? threads : 1
        let direct = usesDirectSums
        let packed = usesOwnIm2col && !direct ? forwardPackedKernel() : nil
        kernel.withUnsafeBufferPointer { kernel in
            bias.withUnsafeBufferPointer { bias in
                parallelBands(bands.count, workers: bands.workers, blasThreads: threads) { band, worker in
                    let first = rows.lowerBound + band * bands.rows
                    let band = first ..< min(rows.upperBound, first + bands.rows)
                    let col = scratch.storage + worker * perWorker
                    if direct {
                        for row in band {
                            directSums(row: row, input: input.storage, span: inputSpan, kernel: kernel.baseAddress!,
                                       staging: col, into: output.storage + outputSpan.offset(channel: 0, row: row),
                                       channelStride: outputSpan.plane)
                        }
                    } else {
                        im2col(input.storage, span: inputSpan, channels: inChannels, rows: band, padding: padding,
                               into: col, threads: inner)
                    }
                    // One product per map row, so that a row's values never depend on the band or stripe around it.
                    for row in band where !direct {
                        im2colProduct(m: outChannels, n: width, k: depth, packed: packed, a: kernel.baseAddress!,
                                      lda: depth, b: col + (row - band.lowerBound) * width, ldb: band.count * width,
                                      c: output.storage + outputSpan.offset(channel: 0, row: row),
                                      ldc: outputSpan.plane)
                    }
                    addBias(output.storage, span: outputSpan, bias: bias.baseAddress!, channels: outChannels,
                            rows: band, reluMask: reluMask, rectify: rectify, threads: inner)
                }
            }
        }
    }

    /// The input channels up to which the forward pass sums directly where the processor allows
    /// (`cgemm_direct_conv3_row`) instead of running im2col and a product of so few values of k.
    package static let directSumsInputChannels = 4

    /// Whether the forward pass sums directly.
    package var usesDirectSums: Bool {
        usesOwnIm2col && inChannels <= Self.directSumsInputChannels && cgemm_direct_conv3_supported(Int32(outChannels)) != 0
    }

    /// One output row of the forward pass by direct sums: the input rows around `row`, padded either side, staged in
    /// `staging` (3 · inChannels rows of width + 2 floats), then summed with the kernel into `output` (outChannels
    /// rows, channelStride apart).
    private func directSums(row: Int, input: UnsafePointer<Float>, span: RowSpan, kernel: UnsafePointer<Float>,
                            staging: UnsafeMutablePointer<Float>, into output: UnsafeMutablePointer<Float>,
                            channelStride: Int) {
        let width = span.width, height = span.height, stride = width + 2, reflects = padding == .reflect
        precondition(!reflects || (height >= 2 && width >= 2), "reflection needs maps of at least 2 × 2")
        let stagedRows = 3 * inChannels
        withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: stagedRows) { staged in
            for c in 0 ..< inChannels {
                for dy in 0 ..< 3 {
                    let r = 3 * c + dy, d = staging + r * stride
                    staged[r] = UnsafePointer(d)
                    var y = row + dy - 1
                    if reflects { y = reflected(y, count: height) }
                    guard y >= 0 && y < height else {
                        d.update(repeating: 0, count: stride)
                        continue
                    }
                    let s = input + span.offset(channel: c, row: y)
                    (d + 1).update(from: s, count: width)
                    d[0] = reflects ? s[reflected(-1, count: width)] : 0
                    d[width + 1] = reflects ? s[reflected(width, count: width)] : 0
                }
            }
            cgemm_direct_conv3_row(Int32(outChannels), Int32(stagedRows), staged.baseAddress!, Int32(width), kernel,
                                   output, channelStride)
        }
    }

    /// gradInput = ∂L/∂input given gradOutput = ∂L/∂output (taken after the ReLU's mask), then passed back through the
    /// ReLU that produced the input when `inputMask` is given.
    /// - gradOutput: (outChannels, height, width)
    /// - gradInput: reshaped to (inChannels, height, width)
    /// - inputMask: (inChannels, height, maskRowBytes(width)) bytes
    /// - scratch: `scratchCount` floats for this size, or more
    package func backwardInput(_ gradOutput: Tensor, into gradInput: Tensor, inputMask: ByteBuffer?, scratch: Tensor) {
        let span = RowSpan.whole(height: gradOutput.height, width: gradOutput.width)
        gradInput.reshape(channels: inChannels, height: gradOutput.height, width: gradOutput.width)
        backwardInput(rows: 0 ..< gradOutput.height, gradOutput: gradOutput, gradOutputSpan: span, into: gradInput,
                      gradInputSpan: span,
                      inputMask: inputMask.map { .mask($0, rows: 0 ..< gradOutput.height, width: gradOutput.width) },
                      scratch: scratch)
    }

    /// The stripe form of `backwardInput`: computes the rows `rows` of the input gradient from an output gradient that
    /// holds the rows `gradOutputSpan` of its map (at least `inputRows(for: rows)`), into a buffer that holds the rows `gradInputSpan` (at least `rows`). Other rows are left alone.
    /// - gradOutput: (outChannels, gradOutputSpan.rows, width)
    /// - gradInput: (inChannels, gradInputSpan.rows, width)
    /// - inputMask: holding at least `rows`
    package func backwardInput(rows: Range<Int>, gradOutput: Tensor, gradOutputSpan: RowSpan, into gradInput: Tensor,
                       gradInputSpan: RowSpan, inputMask: RowRecords?, scratch: Tensor) {
        let height = gradOutputSpan.height, width = gradOutputSpan.width
        precondition(gradOutput.channels == outChannels && gradOutput.count == outChannels * gradOutputSpan.plane)
        precondition(gradInput.channels == inChannels && gradInput.count == inChannels * gradInputSpan.plane)
        precondition(gradOutput !== gradInput && gradInputSpan.height == height && gradInputSpan.width == width)
        precondition(gradInputSpan.holds(rows))
        precondition(gradOutputSpan.holds(Self.inputRows(for: rows, height: height)), "convolution gradient lacks rows")
        guard !rows.isEmpty && width > 0 else { return }
        if runsWinograd(height: height, width: width) {
            winograd(transposed: true, rows: rows, input: gradOutput.storage, inputSpan: gradOutputSpan,
                     output: gradInput.storage, outputSpan: gradInputSpan, scratch: scratch) { c, row, y in
                if let inputMask { applyReLUMask(row: row, width: width, mask: inputMask.row(channel: c, y)) }
            }
            return
        }
        let perWorker = scratch.capacity / threads
        let bands = backwardBands(height: rows.count, width: width, perWorker: perWorker)
        precondition(bands.scratchPerWorker <= perWorker, "convolution scratch too small")
        let inner = bands.workers == 1 ? threads : 1
        let col2imPath = backwardUsesCol2im
        // The col2im product reads the kernel as it is unless the own kernels run it; the other always reads the
        // backward kernel.
        let backward = usesOwnIm2col || !col2imPath ? backwardKernel() : nil
        kernel.withUnsafeBufferPointer { kernel in
            parallelBands(bands.count, workers: bands.workers, blasThreads: threads) { band, worker in
                let first = rows.lowerBound + band * bands.rows
                let band = first ..< min(rows.upperBound, first + bands.rows)
                let col = scratch.storage + worker * perWorker
                if col2imPath {
                    // col = kernelᵀ · gradOutput over the band and one row either side, then gathered onto the pixels.
                    let depth = inChannels * 9
                    let colRows = max(0, band.lowerBound - 1) ..< min(height, band.upperBound + 1)
                    for row in colRows {
                        im2colProduct(m: depth, n: width, k: outChannels, packed: backward, a: kernel.baseAddress!,
                                      lda: depth, transposeA: true,
                                      b: gradOutput.storage + gradOutputSpan.offset(channel: 0, row: row),
                                      ldb: gradOutputSpan.plane, c: col + (row - colRows.lowerBound) * width,
                                      ldc: colRows.count * width)
                    }
                    col2im(col, colRows: colRows, channels: inChannels, span: gradInputSpan, rows: band,
                           padding: padding, into: gradInput.storage, threads: inner)
                } else {
                    let depth = outChannels * 9
                    im2col(gradOutput.storage, span: gradOutputSpan, channels: outChannels, rows: band, into: col,
                           threads: inner)
                    for row in band {
                        im2colProduct(m: inChannels, n: width, k: depth, packed: usesOwnIm2col ? backward : nil,
                                      a: backward!.storage, lda: depth, b: col + (row - band.lowerBound) * width,
                                      ldb: band.count * width,
                                      c: gradInput.storage + gradInputSpan.offset(channel: 0, row: row),
                                      ldc: gradInputSpan.plane)
                    }
                }
                if let inputMask {
                    applyReLUMask(gradInput.storage, span: gradInputSpan, mask: inputMask,
                                  channels: inChannels, rows: band, threads: inner)
                }
            }
        }
    }

    // MARK: - Winograd

    /// How a Winograd pass splits its tile rows into bands, who works on a band, and where its buffers sit in the scratch.
    private struct WinogradBands {
        /// Tile rows per band (the last band may have fewer).
        let tileRows: Int
        /// Floats per channel of the first (largest) band's transformed tiles and products.
        let tileStride: Int
        /// Whether each worker takes whole bands through all three steps in buffers of its own (a map of many bands,
        /// where a band's tiles then never leave the core that made them), rather than all workers sharing each band
        /// step by step (few bands).
        let isPrivate: Bool
        /// Floats of one band's buffers: its transformed input and output tiles, then the work areas of the workers
        /// on it (one when private, every worker's when shared).
        let bandCount: Int
        /// Floats of scratch: every private band's buffers, or the one shared band's.
        let count: Int
    }

    /// The tiles per GEMM a Winograd band aims for at least where the transformed kernel is larger than
    /// `winogradBandBytes`: enough columns for the GEMMs to run near full speed. Such a kernel comes from farther out
    /// than the band's own buffers, once for every band, and only many tiles repay that. A smaller kernel (those of the
    /// first two blocks) stays near the core from band to band; there, bands of as many tile rows as fit
    /// `winogradBandBytes` (one at least) ran faster than bands of 128 tiles (an Intel Xeon of family 6 model 207, 2
    /// MiB of second-level cache a core: conv1_2's passes 0.88 times as long at 512×384, the second block's 0.93).
    package static let winogradMinimumTiles = 128
    /// The bytes of transformed input and output tiles a Winograd band aims for at most (unless that leaves fewer than
    /// `winogradMinimumTiles` where those apply): small enough to stay in the caches between the transforms and the
    /// GEMMs, which matters on the large maps of few channels, where the transforms are a large part of the work. Tests
    /// set smaller ones.
    package var winogradBandBytes = 4 << 20
    /// The channels (or bfloat16 pairs of channels) a worker takes at a time for a band's input transform.
    package static let winogradTransformChunk = 8
    /// The bands per worker a pass needs for each worker to take whole bands: enough for the last ones to even out.
    package static let winogradPrivateBandsPerWorker = 4

    /// How a band of `tiles` tiles is stored for the GEMMs this convolution runs.
    private func panels(tiles: Int) -> WinogradPanels {
        usesPanelGEMM ? .cgemm(tiles: tiles) : .rowMajor(tiles: tiles)
    }

    /// Bands for a pass over `grid` within `limit` floats of scratch, but never less than one tile row: as many tile rows
    /// as fit `winogradBandBytes`, or, for a kernel larger than that, as give `winogradMinimumTiles` tiles if that is
    /// more, split evenly; private to each worker where there are `winogradPrivateBandsPerWorker` per worker and their
    /// buffers fit.
    private func winogradBands(grid: WinogradGrid, limit: Int) -> WinogradBands {
        let channels = inChannels + outChannels, positions = tile.positions
        func count(_ tileRows: Int, workAreas: Int) -> Int {
            let tiles = panels(tiles: tileRows * grid.tilesX).count
            return positions * (winogradPositionStride(channels: inChannels, count: tiles)
                                + winogradPositionStride(channels: outChannels, count: tiles)) + workAreas * grid.workCount
        }
        let rowBytes = positions * channels * grid.tilesX * MemoryLayout<Float>.stride
        let kernelBytes = positions * inChannels * outChannels * MemoryLayout<Float>.stride
        let minimumTiles = kernelBytes > winogradBandBytes ? Self.winogradMinimumTiles : 1
        let target = max(winogradBandBytes / rowBytes, (minimumTiles + grid.tilesX - 1) / grid.tilesX)
        var tileRows = max(1, min(grid.tilesY, target, limit / (positions * channels * grid.tilesX)))
        while tileRows > 1 && count(tileRows, workAreas: threads) > limit { tileRows -= 1 }
        // Even bands: the same number of tile rows in each (but the last may have one fewer).
        let bands = (grid.tilesY + tileRows - 1) / tileRows
        tileRows = (grid.tilesY + bands - 1) / max(1, bands)
        let tileStride = panels(tiles: tileRows * grid.tilesX).count
        let privateCount = threads * count(tileRows, workAreas: 1)
        if threads > 1 && bands >= Self.winogradPrivateBandsPerWorker * threads && privateCount <= limit {
            return WinogradBands(tileRows: tileRows, tileStride: tileStride, isPrivate: true,
                                 bandCount: count(tileRows, workAreas: 1), count: privateCount)
        }
        let shared = count(tileRows, workAreas: threads)
        return WinogradBands(tileRows: tileRows, tileStride: tileStride, isPrivate: false, bandCount: shared,
                             count: shared)
    }

    /// Whether a Winograd pass over a whole height × width map within `limit` floats of scratch gives each worker
    /// bands of its own.
    package func winogradUsesPrivateBands(height: Int, width: Int, limit: Int) -> Bool {
        runsWinograd(height: height, width: width)
            && winogradBands(grid: WinogradGrid(tile: tile, rows: 0 ..< height, height: height, width: width),
                             limit: limit).isPrivate
    }

    /// One Winograd pass over the map rows `rows`: the forward convolution (without bias), or, when `transposed`, the
    /// input gradient: the correlation with the kernel turned by 180° and its channels swapped. `epilogue(channel, row,
    /// y)` runs on each output row once it is complete.
    /// - input: (inChannels, or outChannels when transposed, inputSpan.rows, width), holding the rows next to `rows`
    /// - output: (outChannels, or inChannels when transposed, outputSpan.rows, width), holding `rows`
    private func winograd(transposed: Bool, rows: Range<Int>, input: UnsafePointer<Float>, inputSpan: RowSpan,
                          output: UnsafeMutablePointer<Float>, outputSpan: RowSpan, scratch: Tensor,
                          epilogue: (_ channel: Int, _ row: UnsafeMutablePointer<Float>, _ y: Int) -> Void) {
        let grid = WinogradGrid(tile: tile, rows: rows, height: inputSpan.height, width: inputSpan.width)
        let bands = winogradBands(grid: grid, limit: scratch.capacity)
        precondition(bands.count <= scratch.capacity, "convolution scratch too small")
        let (sources, targets) = transposed ? (outChannels, inChannels) : (inChannels, outChannels)
        let kernel = winogradKernel().storage
        let positions = tile.positions, side = tile.input
        let plane = inChannels * outChannels
        let (turned, turnedScale) = (tile.turned, tile.turnedScale)
        let panelGEMM = usesPanelGEMM, bf16 = usesBF16, pairs = self.pairs, half = usesHalf, halfPairs = self.halfPairs
        let halfScales = halfKernelScales
        let slices = (sources + Int(CGEMM_FP16_SLICE) - 1) / Int(CGEMM_FP16_SLICE)
        let kernelWords = UnsafeMutablePointer<UInt32>(OpaquePointer(kernel))
        // The three steps of one band, its buffers from `buffers`, each step over `workers` workers:
        // (α², sources, tileStride) in `panels`, (α², targets, tileStride), positions `winogradPositionStride` apart,
        // then (workers, grid.workCount), where tileStride is the band's, at most the first band's.
        func band(_ tileRows: Range<Int>, buffers: UnsafeMutablePointer<Float>, workers: Int) {
            let tiles = buffers
            let products = tiles + positions * winogradPositionStride(channels: sources, count: bands.tileStride)
            let work = products + positions * winogradPositionStride(channels: targets, count: bands.tileStride)
            // In bfloat16 or half-precision pairs, the transformed tiles take (α², sources / 2, tileStride) words,
            // within the floats above, and each position's kernel the pairs of one direction after the other. Only C
            // reads and writes them, through pointers to 32-bit words.
            let words = UnsafeMutablePointer<UInt32>(OpaquePointer(tiles))
            let n = tileRows.count * grid.tilesX
            // The last band may be shorter: its panels are its own.
            let panels = self.panels(tiles: n), tileStride = panels.count
            // In half-precision pairs, each slice of channels' scale, then their inverses, after the pairs (in the
            // floats the tiles would take, at least α²·sources / 2 more).
            let tileScales = UnsafeMutablePointer<Float>(
                OpaquePointer(words + positions * winogradPositionStride(channels: sources / 2, count: tileStride)))
            let tileInverses = tileScales + slices
            if halfPairs {
                winogradHalfTileScales(input, span: inputSpan, grid: grid, channelCount: sources, tileRows: tileRows,
                                       workers: workers, into: tileScales)
                for s in 0 ..< slices { tileInverses[s] = 1 / tileScales[s] }
            }
            // Channels (or pairs) a few at a time: the transform of each asks for the places of the next, which had
            // better be its own worker's.
            let units = pairs || halfPairs ? sources / 2 : sources, chunk = Self.winogradTransformChunk
            let chunks = (units + chunk - 1) / chunk
            parallelBands(chunks, workers: min(workers, chunks), blasThreads: 1) { index, worker in
                let range = index * chunk ..< min(units, index * chunk + chunk)
                if pairs || halfPairs {
                    winogradInputTransformPairs(input, span: inputSpan, grid: grid, pairs: range,
                                                channelCount: sources, tileRows: tileRows, panels: panels,
                                                into: words, work: work + worker * grid.workCount,
                                                halfScales: halfPairs ? UnsafePointer(tileScales) : nil)
                } else {
                    winogradInputTransform(input, span: inputSpan, grid: grid, channels: range,
                                           channelCount: sources, tileRows: tileRows, panels: panels, into: tiles,
                                           work: work + worker * grid.workCount)
                }
            }
            parallelBands(positions, workers: workers, blasThreads: workers) { position, _ in
                let b = tiles + position * winogradPositionStride(channels: sources, count: tileStride)
                let c = products + position * winogradPositionStride(channels: targets, count: tileStride)
                // The input gradient reads the kernel's position π(ξ), transposed and scaled (see Winograd.swift).
                let (i, k) = (position / side, position % side)
                let source = transposed ? turned[i] * side + turned[k] : position
                let alpha = transposed ? turnedScale[i] * turnedScale[k] : 1
                if halfPairs {
                    cgemm_panels_fp16_pairs(Int32(targets), Int32(n), Int32(sources), alpha / halfScales[source],
                                            kernelWords + source * plane + (transposed ? plane / 2 : 0),
                                            words + position * winogradPositionStride(channels: sources / 2,
                                                                                      count: tileStride),
                                            tileInverses, c, tileStride)
                } else if half {
                    cgemm_panels_fp16(Int32(targets), Int32(n), Int32(sources), alpha / halfScales[source],
                                      kernelWords + source * plane + (transposed ? plane / 2 : 0), b, c, tileStride)
                } else if pairs {
                    cgemm_panels_bf16_pairs(Int32(targets), Int32(n), Int32(sources), alpha,
                                            kernelWords + source * plane + (transposed ? plane / 2 : 0),
                                            words + position * winogradPositionStride(channels: sources / 2,
                                                                                      count: tileStride),
                                            c, tileStride)
                } else if panelGEMM {
                    (bf16 ? cgemm_panels_bf16 : cgemm_panels)(Int32(targets), Int32(n), Int32(sources), alpha,
                                                              kernel + source * plane, transposed ? 1 : 0, b, c,
                                                              tileStride)
                } else {
                    sgemm(m: targets, n: n, k: sources, alpha: alpha, a: kernel + source * plane, lda: inChannels,
                          transposeA: transposed, b: b, ldb: tileStride, c: c, ldc: tileStride)
                }
            }
            parallelBands(targets, workers: min(workers, targets), blasThreads: 1) { c, worker in
                winogradOutputTransform(products, channels: c ..< c + 1, channelCount: targets, tileRows: tileRows,
                                        tileStride: tileStride, grid: grid, into: output, span: outputSpan,
                                        work: work + worker * grid.workCount, epilogue: epilogue)
            }
        }
        let firstRows = stride(from: 0, to: grid.tilesY, by: bands.tileRows).map { $0 }
        func tileRows(_ index: Int) -> Range<Int> {
            firstRows[index] ..< min(grid.tilesY, firstRows[index] + bands.tileRows)
        }
        if bands.isPrivate {
            parallelBands(firstRows.count, workers: threads, blasThreads: 1) { index, worker in
                band(tileRows(index), buffers: scratch.storage + worker * bands.bandCount, workers: 1)
            }
        } else {
            for index in firstRows.indices {
                band(tileRows(index), buffers: scratch.storage, workers: threads)
            }
        }
    }
}

/// One buffer for Winograd-transformed kernels shared by several convolutions: it holds the kernel of the convolution
/// that used it last, and the next one to run remakes its own there unless it was that one. Not thread-safe; the
/// convolutions sharing it run one at a time.
package final class TransformedKernelSlot {
    /// The most floats a kernel held here may have.
    package let capacity: Int
    /// (capacity floats): (α², outChannels, inChannels) of `holder`; allocated on first use.
    private var buffer: Tensor?
    /// Whose kernel `buffer` holds.
    private var holder: ObjectIdentifier?
    /// How many times a kernel was made here (for tests and benchmarks).
    package private(set) var fills = 0

    package init(capacity: Int) {
        self.capacity = capacity
    }

    /// The bytes allocated so far.
    package var allocatedBytes: Int { buffer?.allocatedBytes ?? 0 }

    /// Frees the buffer (while no convolution uses the slot); the next use allocates it again.
    package func release() {
        buffer = nil
        holder = nil
    }

    /// The buffer shaped (channels, height, width) holding `owner`'s tensor, which `fill` writes unless `owner` was the
    /// last to ask.
    package func tensor(for owner: ObjectIdentifier, channels: Int, height: Int, width: Int, fill: (Tensor) -> Void) -> Tensor {
        let buffer = self.buffer ?? Tensor(channels: 0, height: 0, width: 0, capacity: capacity)
        self.buffer = buffer
        if holder != owner {
            buffer.reshape(channels: channels, height: height, width: width)
            fill(buffer)
            holder = owner
            fills += 1
        }
        return buffer
    }
}

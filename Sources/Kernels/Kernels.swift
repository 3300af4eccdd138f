// The loops of the network that BLAS does not do: im2col, bias + ReLU with its bit mask, pooling, the
// preprocessing of the image and its inverse for gradients. Every tensor here is CHW float32, every loop runs over
// raw pointers with wrapping index arithmetic, and nothing allocates. The slow references in the tests check them.

import CBLAS
import CGEMM
import Dispatch
import Foundation

// MARK: - Threads

/// A value captured by closures that must be `@Sendable`. The kernels give each task disjoint memory, so sharing the
/// pointers they capture is safe.
package struct UncheckedSendable<Value>: @unchecked Sendable {
    package let value: Value
    package init(value: Value) { self.value = value }
}

/// The number of cores, the default number of threads of the kernels.
package let coreCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

/// Calls `body` on consecutive slices of `0..<count` covering it exactly, on up to `threads` threads when
/// `count × cost` (an estimate of the values touched) is large enough to pay for the hand-off. Slices never overlap.
package func parallelFor(_ count: Int, cost: Int, threads: Int, _ body: (Range<Int>) -> Void) {
    let tasks = threads > 1 ? min(count, threads &* 4, (count &* cost) / 16_384) : 1
    if tasks <= 1 {
        if count > 0 { body(0 ..< count) }
        return
    }
    WorkerPool.shared.run(tasks, workers: threads) { task, _ in
        body((count &* task / tasks) ..< (count &* (task &+ 1) / tasks))
    }
}

/// Calls `body(band, worker)` for every band in `0..<bands`, on `workers` threads (worker is 0..<workers) that each take
/// the next band as soon as they finish one, so that a core slowed by another process simply does fewer bands. OpenBLAS
/// runs on at most `blasThreads` threads meanwhile (single-threaded in each worker when there are several), and gets
/// its thread count back afterwards.
package func parallelBands(_ bands: Int, workers: Int, blasThreads: Int, _ body: (_ band: Int, _ worker: Int) -> Void) {
    let saved = openblas_get_num_threads()
    let limit = workers > 1 ? 1 : min(saved, Int32(clamping: max(1, blasThreads)))
    if limit != saved { openblas_set_num_threads(limit) }
    defer { if limit != saved { openblas_set_num_threads(saved) } }
    if workers <= 1 {
        for band in 0 ..< bands { body(band, 0) }
        return
    }
    WorkerPool.shared.run(bands, workers: workers, body)
}

// MARK: - GEMM

/// C (m, n) = alpha · A (m, k) · B (k, n) + beta · C, row-major with leading dimensions; A is read transposed, (k, m), when
/// `transposeA`.
@inline(__always)
package func sgemm(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, transposeA: Bool = false,
           b: UnsafePointer<Float>, ldb: Int, beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

// MARK: - Row spans

/// Which rows of a feature map a buffer holds: rows `first ..< first + rows` of a map `height` rows tall and `width`
/// wide, stored channel after channel (rows × width floats per channel). A whole map is the span of all its rows; a
/// horizontal stripe is a span of some.
package struct RowSpan {
    package let first: Int
    package let rows: Int
    package let height: Int
    package let width: Int

    package init(first: Int, rows: Int, height: Int, width: Int) {
        self.first = first
        self.rows = rows
        self.height = height
        self.width = width
    }

    package static func whole(height: Int, width: Int) -> RowSpan {
        RowSpan(first: 0, rows: height, height: height, width: width)
    }

    /// Whether the buffer holds the rows `range` of the map.
    package func holds(_ range: Range<Int>) -> Bool {
        range.isEmpty || (range.lowerBound >= first && range.upperBound <= first &+ rows)
    }

    /// Floats per channel in the buffer.
    package var plane: Int { rows &* width }

    /// Where row `row` of the map (not of the buffer) starts in channel `channel` of the buffer.
    @inline(__always)
    package func offset(channel: Int, row: Int) -> Int { channel &* plane &+ (row &- first) &* width }
}

// MARK: - im2col

/// How a 3x3 pad-1 convolution sees beyond the edges of its map.
public enum Padding: String, Sendable, CaseIterable {
    /// Zeros, as VGG-19 was trained: for the image's convolution, the mean color (the input has the mean removed).
    case zero
    /// The map mirrored about its edge row and column (row −1 is row 1): no edge where the map ends.
    case reflect
}

/// The row or column a 3x3 pad-1 convolution reads for index `index` of a map `count` long, with reflection:
/// −1 reads 1, `count` reads `count − 2`.
@inline(__always)
func reflected(_ index: Int, count: Int) -> Int {
    index < 0 ? -index : (index >= count ? 2 &* (count &- 1) &- index : index)
}

/// Fills the GEMM operand of a 3x3 pad-1 convolution for the output rows `rows` of the map:
/// col[c·9 + ky·3 + kx, (y − rows.lowerBound)·width + x] = input[c, y + ky − 1, x + kx − 1], zero outside the map, or
/// with `Padding.reflect` the map mirrored about its edges (on maps at least 2 rows and columns large).
/// The input must hold the rows rows.lowerBound − 1 ..< rows.upperBound + 1 that exist in the map.
/// - input: (channels, span.rows, span.width)
/// - col: (channels · 9, rows.count · span.width)
package func im2col(_ input: UnsafePointer<Float>, span: RowSpan, channels: Int, rows: Range<Int>,
                    padding: Padding = .zero, into col: UnsafeMutablePointer<Float>, threads: Int) {
    let width = span.width, height = span.height
    let n = rows.count &* width
    let reflects = padding == .reflect
    precondition(!reflects || (height >= 2 && width >= 2), "reflection needs maps of at least 2 × 2")
    parallelFor(channels, cost: 9 &* n, threads: threads) { slice in
        for c in slice {
            for ky in 0 ..< 3 {
                for kx in 0 ..< 3 {
                    var d = col + (c &* 9 &+ ky &* 3 &+ kx) &* n
                    for y in rows {
                        var sy = y &+ ky &- 1
                        if reflects { sy = reflected(sy, count: height) }
                        if sy < 0 || sy >= height {
                            d.update(repeating: 0, count: width)
                        } else {
                            let s = input + span.offset(channel: c, row: sy)
                            switch kx {
                            case 0:
                                d[0] = reflects ? s[1] : 0
                                (d + 1).update(from: s, count: width &- 1)
                            case 1:
                                d.update(from: s, count: width)
                            default:
                                d.update(from: s + 1, count: width &- 1)
                                d[width &- 1] = reflects ? s[width &- 2] : 0
                            }
                        }
                        d += width
                    }
                }
            }
        }
    }
}

/// The transpose of `im2col`, for the input gradient of a convolution: given col = kernelᵀ · gradOutput for the map
/// rows `colRows`, writes gradInput[c, y, x] = Σ over (ky, kx) of col[c·9 + ky·3 + kx, y − ky + 1, x − kx + 1] for the
/// map rows `rows` (terms outside the map are zero), and with `Padding.reflect` also the terms of the taps that read
/// (y, x) as the mirror image of a position beyond the edge. `colRows` must cover
/// rows.lowerBound − 1 ..< rows.upperBound + 1 within the map: the rows next to a band contribute to its edge rows
/// (and, reflected, to the rows next to those).
/// - col: (channels · 9, colRows.count · span.width)
/// - gradInput: (channels, span.rows, span.width), rows `rows` overwritten
package func col2im(_ col: UnsafePointer<Float>, colRows: Range<Int>, channels: Int, span: RowSpan, rows: Range<Int>,
                    padding: Padding = .zero, into gradInput: UnsafeMutablePointer<Float>, threads: Int) {
    let width = span.width, height = span.height
    let n = colRows.count &* width
    let reflects = padding == .reflect
    precondition(!reflects || (height >= 2 && width >= 2), "reflection needs maps of at least 2 × 2")
    parallelFor(channels, cost: 9 &* rows.count &* width, threads: threads) { slice in
        for c in slice {
            for y in rows {
                let t = gradInput + span.offset(channel: c, row: y)
                t.update(repeating: 0, count: width)
                // The output rows whose tap row ky reads row y: y − ky + 1, and with reflection output row 0's ky = 0
                // (which reads row 1) and the last output row's ky = 2 (which reads row height − 2).
                for ky in 0 ..< 3 {
                    for sy in [y &- ky &+ 1, reflects ? (ky == 0 && y == 1 ? 0 : (ky == 2 && y == height &- 2 ? height &- 1 : -1)) : -1]
                    where sy >= 0 && sy < height {
                        let base = col + ((c &* 9 &+ ky &* 3) &* n &+ (sy &- colRows.lowerBound) &* width)
                        let s0 = base, s1 = base + n, s2 = base + 2 &* n
                        for x in 0 ..< width &- 1 { t[x] += s0[x &+ 1] }
                        for x in 0 ..< width { t[x] += s1[x] }
                        for x in 1 ..< max(1, width) { t[x] += s2[x &- 1] }
                        if reflects {
                            // Column 0's kx = 0 reads column 1; the last column's kx = 2 reads column width − 2.
                            t[1] += s0[0]
                            t[width &- 2] += s2[width &- 1]
                        }
                    }
                }
            }
        }
    }
}

// MARK: - Bias, ReLU and its mask

/// Bytes per row of a ReLU mask: one bit per element, each row starting on a byte so that rows are independent.
@inline(__always)
package func maskRowBytes(width: Int) -> Int { (width &+ 7) >> 3 }

/// Bytes recorded for each row of a map, or of some of its rows: a ReLU mask (one bit an element,
/// `maskRowBytes(width:)` a row) or max-pooling choices (two bits a window, `choiceRowBytes(width:)` a row), channel
/// after channel, for the map rows `rows`. A whole map's records hold all its rows; a stripe's, the rows it computed.
package struct RowRecords {
    package let storage: UnsafeMutablePointer<UInt8>
    /// The map rows held.
    package let rows: Range<Int>
    package let rowBytes: Int

    package init(_ buffer: ByteBuffer, rows: Range<Int>, rowBytes: Int) {
        precondition(buffer.capacity >= 0 && rowBytes >= 0)
        storage = buffer.storage
        self.rows = rows
        self.rowBytes = rowBytes
    }

    /// The ReLU mask of a map `width` wide in `buffer`, for the map rows `rows`.
    package static func mask(_ buffer: ByteBuffer, rows: Range<Int>, width: Int) -> RowRecords {
        RowRecords(buffer, rows: rows, rowBytes: maskRowBytes(width: width))
    }

    /// The max-pooling choices of a pooled map `width` wide in `buffer`, for the pooled rows `rows`.
    package static func choices(_ buffer: ByteBuffer, rows: Range<Int>, width: Int) -> RowRecords {
        RowRecords(buffer, rows: rows, rowBytes: choiceRowBytes(width: width))
    }

    /// The bytes of map row `row` (one of `rows`) in channel `channel`.
    @inline(__always)
    package func row(channel: Int, _ row: Int) -> UnsafeMutablePointer<UInt8> {
        storage + (channel &* rows.count &+ (row &- rows.lowerBound)) &* rowBytes
    }
}

/// Adds `bias` to the `width` values of one map row and, when `mask` is given, applies ReLU and records which elements
/// passed (value > 0): bit x & 7 of byte x >> 3 of the row's mask bytes (`cgemm_bias_relu_row`). Without a mask,
/// applies ReLU when `rectify`.
/// - row: (width), updated in place
/// - mask: (maskRowBytes(width)), this row's mask bytes
@inline(__always)
package func addBias(row p: UnsafeMutablePointer<Float>, width: Int, bias b: Float, reluMask m: UnsafeMutablePointer<UInt8>?,
             rectify: Bool = false) {
    guard let m else {
        if rectify {
            for i in 0 ..< width { p[i] = max(p[i] + b, 0) }
        } else {
            for i in 0 ..< width { p[i] += b }
        }
        return
    }
    cgemm_bias_relu_row(p, Int32(width), b, m)
}

/// Zeroes the values of one gradient row whose ReLU did not pass (`cgemm_relu_mask_row`).
/// - gradient: (width), updated in place
/// - mask: (maskRowBytes(width)), the row's mask bytes as `addBias` records them
@inline(__always)
package func applyReLUMask(row g: UnsafeMutablePointer<Float>, width: Int, mask m: UnsafePointer<UInt8>) {
    cgemm_relu_mask_row(g, Int32(width), m)
}

/// Adds the per-channel bias to the map rows `rows` of `output` and, when `mask` is given, applies ReLU and records
/// its mask; without a mask, applies ReLU when `rectify` (see `addBias(row:width:bias:reluMask:rectify:)`).
/// - output: (channels, span.rows, span.width), updated in place
/// - bias: (channels)
/// - mask: holding at least `rows`
package func addBias(_ output: UnsafeMutablePointer<Float>, span: RowSpan, bias: UnsafePointer<Float>, channels: Int,
             rows: Range<Int>, reluMask mask: RowRecords?, rectify: Bool = false, threads: Int) {
    let width = span.width
    parallelFor(channels, cost: rows.count &* width, threads: threads) { slice in
        for c in slice {
            for y in rows {
                addBias(row: output + span.offset(channel: c, row: y), width: width, bias: bias[c],
                        reluMask: mask?.row(channel: c, y), rectify: rectify)
            }
        }
    }
}

/// Zeroes the elements of the map rows `rows` of `gradient` whose ReLU did not pass (the chain rule through ReLU).
/// - gradient: (channels, span.rows, span.width), updated in place
/// - mask: holding at least `rows`, as `addBias` records it
package func applyReLUMask(_ gradient: UnsafeMutablePointer<Float>, span: RowSpan, mask: RowRecords, channels: Int,
                   rows: Range<Int>, threads: Int) {
    let width = span.width
    parallelFor(channels, cost: rows.count &* width, threads: threads) { slice in
        for c in slice {
            for y in rows {
                applyReLUMask(row: gradient + span.offset(channel: c, row: y), width: width,
                              mask: mask.row(channel: c, y))
            }
        }
    }
}

// MARK: - Pooling

/// The bytes of one row of max-pooling choices for a pooled map `width` wide: two bits a window, four windows a byte.
@inline(__always)
package func choiceRowBytes(width: Int) -> Int { (width &+ 3) >> 2 }

/// 2x2 stride-2 max pooling, PyTorch's `MaxPool2d(2, 2)`: an odd last row or column is dropped, and the first of equal
/// values wins. Computes the pooled rows `rows` and records in `choice` which of the four inputs won: 0 top left,
/// 1 top right, 2 bottom left, 3 bottom right, two bits a window (window x in bits 2(x mod 4) of byte x / 4 of its row).
/// - input: (channels, inputSpan.rows, inputSpan.width), holding input rows 2·rows.lowerBound ..< 2·rows.upperBound
/// - output: (channels, outputSpan.rows, inputSpan.width / 2), holding `rows` of the (height / 2)-row pooled map
/// - choice: holding at least the pooled rows `rows`; nil to record nothing
package func maxPoolForward(_ input: UnsafePointer<Float>, span inputSpan: RowSpan, channels: Int,
                    into output: UnsafeMutablePointer<Float>, span outputSpan: RowSpan, rows: Range<Int>,
                    choice: RowRecords?, threads: Int) {
    let ow = inputSpan.width >> 1
    parallelFor(channels, cost: 4 &* rows.count &* ow, threads: threads) { slice in
        for c in slice {
            for oy in rows {
                let top = input + inputSpan.offset(channel: c, row: 2 &* oy)
                let bottom = top + inputSpan.width
                let o = output + outputSpan.offset(channel: c, row: oy)
                guard let choice else {
                    for ox in 0 ..< ow {
                        o[ox] = max(max(top[2 &* ox], top[2 &* ox &+ 1]), max(bottom[2 &* ox], bottom[2 &* ox &+ 1]))
                    }
                    continue
                }
                cgemm_max_pool_row(top, bottom, Int32(ow), o, choice.row(channel: c, oy))
            }
        }
    }
}

/// 2x2 stride-2 average pooling, PyTorch's `AvgPool2d(2, 2)`: an odd last row or column is dropped. Computes the
/// pooled rows `rows`; the buffers are as for `maxPoolForward`.
package func averagePoolForward(_ input: UnsafePointer<Float>, span inputSpan: RowSpan, channels: Int,
                        into output: UnsafeMutablePointer<Float>, span outputSpan: RowSpan, rows: Range<Int>,
                        threads: Int) {
    let ow = inputSpan.width >> 1
    parallelFor(channels, cost: 4 &* rows.count &* ow, threads: threads) { slice in
        for c in slice {
            for oy in rows {
                let top = input + inputSpan.offset(channel: c, row: 2 &* oy)
                let bottom = top + inputSpan.width
                let o = output + outputSpan.offset(channel: c, row: oy)
                for ox in 0 ..< ow {
                    o[ox] = 0.25 * ((top[2 &* ox] + top[2 &* ox &+ 1]) + (bottom[2 &* ox] + bottom[2 &* ox &+ 1]))
                }
            }
        }
    }
}

/// The input gradient of 2x2 stride-2 pooling for the input rows `rows`: with `choice` (max pooling), each output's
/// gradient goes to the input that won and every other input gets zero; without (average pooling), each input gets a
/// quarter of its window's. Dropped odd rows and columns get zero. With `reluMask` (the mask of the ReLU that produced
/// the pooled input), the gradient is also passed back through that ReLU. One pass writes each input row once
/// (`cgemm_pool_backward_row`).
/// - gradOutput: (channels, outputSpan.rows, width / 2), holding the pooled rows of `rows` (y / 2 for y in rows, those
///   below height / 2)
/// - choice: holding at least the pooled rows under `rows`
/// - gradInput: (channels, span.rows, span.width), rows `rows` overwritten
/// - reluMask: holding at least `rows`
package func poolBackward(_ gradOutput: UnsafePointer<Float>, span outputSpan: RowSpan, choice: RowRecords?,
                  channels: Int, into gradInput: UnsafeMutablePointer<Float>, span: RowSpan, rows: Range<Int>,
                  reluMask: RowRecords?, threads: Int) {
    let width = span.width, height = span.height
    let oh = height >> 1, ow = width >> 1
    parallelFor(channels, cost: rows.count &* width, threads: threads) { slice in
        for c in slice {
            for y in rows {
                let t = gradInput + span.offset(channel: c, row: y)
                let oy = y >> 1
                guard oy < oh else {
                    t.update(repeating: 0, count: width)
                    continue
                }
                cgemm_pool_backward_row(gradOutput + outputSpan.offset(channel: c, row: oy), Int32(ow),
                                        choice?.row(channel: c, oy), Int32(y & 1), reluMask?.row(channel: c, y), t)
                if width & 1 == 1 { t[width &- 1] = 0 }
            }
        }
    }
}

// MARK: - Preprocessing

/// The per-channel means subtracted from the 0…255 BGR input of the original VGG weights, in the order B, G, R.
package let caffeMeanBGR: (Float, Float, Float) = (103.939, 116.779, 123.68)

/// The network's input from an RGB image on the image rows `span` holds: BGR planes of 0…255 values minus the mean
/// pixel, the image's values clamped to 0…1 first (the image as it would be written out).
/// - rgb: (3, span.height, span.width), values 0…1 (others are clamped)
/// - bgr: (3, span.rows, span.width)
package func caffeInput(fromRGB rgb: UnsafePointer<Float>, span: RowSpan, into bgr: UnsafeMutablePointer<Float>) {
    let means = [caffeMeanBGR.0, caffeMeanBGR.1, caffeMeanBGR.2]
    let whole = RowSpan.whole(height: span.height, width: span.width)
    for c in 0 ..< 3 {
        let s = rgb + whole.offset(channel: 2 &- c, row: span.first), d = bgr + span.offset(channel: c, row: span.first)
        let mean = means[c]
        for i in 0 ..< span.plane { d[i] = min(max(s[i], 0), 1) * 255 - mean }
    }
}

/// The chain rule through `caffeInput`: d/d rgb = 255 · d/d bgr with the channel order reversed, for the image rows
/// `rows`, written over those rows of `rgbGradient` or, when `adding`, added to them.
/// - bgrGradient: (3, span.rows, span.width), holding at least `rows`
/// - rgbGradient: (3, span.height, span.width)
package func rgbGradient(fromCaffe bgrGradient: UnsafePointer<Float>, span: RowSpan, rows: Range<Int>,
                         into rgbGradient: UnsafeMutablePointer<Float>, adding: Bool) {
    let whole = RowSpan.whole(height: span.height, width: span.width)
    let n = rows.count &* span.width
    for c in 0 ..< 3 {
        let s = bgrGradient + span.offset(channel: 2 &- c, row: rows.lowerBound)
        let d = rgbGradient + whole.offset(channel: c, row: rows.lowerBound)
        if adding {
            for i in 0 ..< n { d[i] += s[i] * 255 }
        } else {
            for i in 0 ..< n { d[i] = s[i] * 255 }
        }
    }
}

// MARK: - Whole tensors

/// Zeroes the elements of `gradient` whose ReLU did not pass; `mask` is the ReLU's, recorded for this shape.
package func applyReLUMask(_ gradient: Tensor, mask: ByteBuffer, threads: Int) {
    applyReLUMask(gradient.storage, span: .whole(height: gradient.height, width: gradient.width),
                  mask: .mask(mask, rows: 0 ..< gradient.height, width: gradient.width),
                  channels: gradient.channels, rows: 0 ..< gradient.height, threads: threads)
}

/// Copies the map rows `rows` of `source`, which holds the rows `span`, into the same rows of `target`, which holds
/// the rows `targetSpan` of a map of the same shape; or, when `adding`, adds them to those rows.
package func copyRows(of source: Tensor, span: RowSpan, rows: Range<Int>, into target: Tensor, span targetSpan: RowSpan,
                      adding: Bool = false) {
    precondition(span.holds(rows) && targetSpan.holds(rows) && target.channels == source.channels)
    precondition(span.height == targetSpan.height && span.width == targetSpan.width)
    precondition(source.count == source.channels * span.plane && target.count == target.channels * targetSpan.plane)
    let n = rows.count &* span.width
    for c in 0 ..< source.channels {
        let from = source.storage + span.offset(channel: c, row: rows.lowerBound)
        let to = target.storage + targetSpan.offset(channel: c, row: rows.lowerBound)
        if adding {
            for i in 0 ..< n { to[i] += from[i] }
        } else {
            to.update(from: from, count: n)
        }
    }
}

/// Copies the map rows `rows` of `source`, which holds the rows `span`, into `target`, (channels, rows.count, width).
package func copyRows(of source: Tensor, span: RowSpan, rows: Range<Int>, into target: Tensor) {
    copyRows(of: source, span: span, rows: rows, into: target,
             span: RowSpan(first: rows.lowerBound, rows: rows.count, height: span.height, width: span.width))
}

/// Copies the map rows `rows` of `source`, which holds the rows `span`, into the same rows of `target`, a whole map
/// (channels, span.height, span.width).
package func copyRows(of source: Tensor, span: RowSpan, rows: Range<Int>, intoWhole target: Tensor) {
    copyRows(of: source, span: span, rows: rows, into: target, span: .whole(height: span.height, width: span.width))
}

/// Zeroes the map rows `rows` of `tensor`, which holds the rows `span`.
package func zeroRows(of tensor: Tensor, span: RowSpan, rows: Range<Int>) {
    precondition(span.holds(rows) && tensor.count == tensor.channels * span.plane)
    for c in 0 ..< tensor.channels {
        (tensor.storage + span.offset(channel: c, row: rows.lowerBound)).update(repeating: 0, count: rows.count &* span.width)
    }
}

/// Slides `tensor`, which holds the rows `span` of a map, down the map to hold the rows from `first` on, as many as
/// before: the rows both spans hold keep their values, the rows new to it are zero. Returns the new span.
package func slideRows(of tensor: Tensor, span: RowSpan, to first: Int) -> RowSpan {
    precondition(first >= span.first && tensor.count == tensor.channels * span.plane)
    let shift = min(first - span.first, span.rows), kept = span.rows - shift
    for c in 0 ..< tensor.channels {
        let plane = tensor.storage + c &* span.plane
        memmove(plane, plane + shift &* span.width, kept &* span.width &* MemoryLayout<Float>.stride)
        (plane + kept &* span.width).update(repeating: 0, count: shift &* span.width)
    }
    return RowSpan(first: first, rows: span.rows, height: span.height, width: span.width)
}

/// `caffeInput` from an image buffer, (3, span.height, span.width) RGB 0…1, into `bgr`, which holds the rows `span`.
package func caffeInput(fromRGB rgb: UnsafeBufferPointer<Float>, span: RowSpan, into bgr: Tensor) {
    precondition(span.first >= 0 && span.first + span.rows <= span.height, "rows outside the image")
    precondition(bgr.channels == 3 && bgr.count == 3 * span.plane && rgb.count == 3 * span.height * span.width)
    caffeInput(fromRGB: rgb.baseAddress!, span: span, into: bgr.storage)
}

/// `rgbGradient` from `bgrGradient`, which holds the rows `span` of the image, for the image rows `rows`, written over
/// those rows of an image buffer, (3, span.height, span.width), or added to them.
package func rgbGradient(fromCaffe bgrGradient: Tensor, span: RowSpan, rows: Range<Int>,
                         into rgbGradient: UnsafeMutableBufferPointer<Float>, adding: Bool = false) {
    precondition(bgrGradient.channels == 3 && bgrGradient.count == 3 * span.plane && span.holds(rows))
    precondition(rgbGradient.count == 3 * span.height * span.width)
    Kernels.rgbGradient(fromCaffe: bgrGradient.storage, span: span, rows: rows, into: rgbGradient.baseAddress!,
                        adding: adding)
}

// The kernels of Winograd's minimal filtering algorithms F(4×4, 3×3) and F(6×6, 3×3) for the 3x3 pad-1 convolutions:
// the transforms of kernels (here), input tiles and output tiles (their loops here, their arithmetic in C,
// `cgemm_winograd_input` and `cgemm_winograd_output`, in AVX2 or AVX-512 vectors where the processor has them). The
// multiplications in between are GEMMs (see `Convolution`).
//
// An m×m output tile Y of a 3x3 correlation of an α×α input tile d (α = m + 2) with a kernel g is
// Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A. The matrices come from the Toom–Cook construction on α − 1 points and ∞, with the
// rows of G and Bᵀ scaled so that Bᵀ is integral. F(4×4, 3×3) on the points 0, 1, −1, −2, −1/2 and ∞:
//
//        ⎡ 1  1  1   1    1    0 ⎤         ⎡ 1/2     0     0  ⎤         ⎡ 2   5   0  −5  −2   0 ⎤
//   Aᵀ = ⎢ 0  1 −1  −2  −1/2   0 ⎥    G =  ⎢ 1/18  1/18  1/18 ⎥    Bᵀ = ⎢ 0   2   7   7   2   0 ⎥
//        ⎢ 0  1  1   4   1/4   0 ⎥         ⎢−1/2   1/2  −1/2  ⎥         ⎢ 0  −2  −3   3   2   0 ⎥
//        ⎣ 0  1 −1  −8  −1/8   1 ⎦         ⎢ 1/18 −1/9   2/9  ⎥         ⎢ 0  −1  −2   1   2   0 ⎥
//                                          ⎢ 16/9 −8/9   4/9  ⎥         ⎢ 0  −2  −1   2   1   0 ⎥
//                                          ⎣  0     0    1/2  ⎦         ⎣ 0  −2  −5   0   5   2 ⎦
//
// F(6×6, 3×3) on the points 0, 1, −1, 2, −2, 1/2, −1/2 and ∞:
//
//        ⎡ 1  1  1   1   1    1      1    0 ⎤         ⎡  1/4     0      0   ⎤        ⎡ 4   0 −21   0  21   0  −4  0 ⎤
//        ⎢ 0  1 −1   2  −2   1/2   −1/2   0 ⎥         ⎢ −1/18  −1/18  −1/18 ⎥        ⎢ 0   4   4 −17 −17   4   4  0 ⎥
//   Aᵀ = ⎢ 0  1  1   4   4   1/4    1/4   0 ⎥    G =  ⎢ −1/18   1/18  −1/18 ⎥   Bᵀ = ⎢ 0  −4   4  17 −17  −4   4  0 ⎥
//        ⎢ 0  1 −1   8  −8   1/8   −1/8   0 ⎥         ⎢ 1/360  1/180  1/90  ⎥        ⎢ 0   2   1 −10  −5   8   4  0 ⎥
//        ⎢ 0  1  1  16  16   1/16   1/16  0 ⎥         ⎢ 1/360 −1/180  1/90  ⎥        ⎢ 0  −2   1  10  −5  −8   4  0 ⎥
//        ⎣ 0  1 −1  32 −32   1/32  −1/32  1 ⎦         ⎢ 16/45  8/45   4/45  ⎥        ⎢ 0   4   8  −5 −10   1   2  0 ⎥
//                                                     ⎢ 16/45 −8/45   4/45  ⎥        ⎢ 0  −4   8   5 −10  −1   2  0 ⎥
//                                                     ⎣   0      0     1/4  ⎦        ⎣ 0  −4   0  21   0 −21   0  4 ⎦
//
// Both point sets are closed under a ↦ 1/a, which makes G of the kernel turned by 180° a scaled permutation of G's
// rows: G·J = D·P·G with P swapping the rows of points a and 1/a (0 and ∞ too) and D a diagonal of powers of two. So
// the input gradient, the correlation with the turned and transposed kernel, uses the forward pass's transformed
// kernel, position π(ξ), transposed and scaled by a power of two: no second copy of the kernels. (Lavin's points 0, ±1,
// ±2, ∞ for F(4×4) are not closed under a ↦ 1/a; these are about as accurate in float32.) F(6×6) needs 64 products
// for 36 outputs where F(4×4) needs 36 for 16: 1.78 multiply-adds per output and channel pair instead of 2.25, and
// 21 % fewer transformed values to write and read; its rounding errors are larger (the 32s of Aᵀ), but in float32
// still about 10⁻⁵ of the output's scale at VGG-19's channel counts (WinogradTests).
//
// Layouts: a transformed kernel is (α², outChannels, inChannels) with each position's plane cut into panels of R
// output channels, (outChannels / R, inChannels, R), position ξ = α·i + k for row i and column k of the α×α tile:
// R = 8 is the order `cgemm_panels` reads, R = 1 the plain (outChannels, inChannels) that OpenBLAS reads. A band of
// tiles is (α², channels, count): position, channel, then the band's tiles row by row, in `WinogradPanels`.

import CGEMM

/// Which of Winograd's minimal filtering algorithms a convolution runs, named by the side of its output tiles.
public enum WinogradTile: Int, Sendable, CaseIterable {
    /// F(4×4, 3×3): 36 products per 16 outputs.
    case f4 = 4
    /// F(6×6, 3×3): 64 products per 36 outputs.
    case f6 = 6

    /// The side of an output tile, m.
    public var output: Int { rawValue }
    /// The side of an input tile, α = m + 2.
    public var input: Int { rawValue + 2 }
    /// The positions of a transformed tile, α².
    public var positions: Int { input * input }
    /// The products' multiply-adds per output pixel and channel pair: α² / m².
    public var multiplyAddsPerPixel: Double { Double(positions) / Double(output * output) }

    /// π: the position of the forward kernel that gives position ξ's row or column of the turned kernel.
    package var turned: [Int] {
        switch self {
        case .f4: [5, 1, 2, 4, 3, 0]
        case .f6: [7, 1, 2, 5, 6, 3, 4, 0]
        }
    }
    /// D: the scale of each row of G·J relative to the row of G it is (see above).
    package var turnedScale: [Float] {
        switch self {
        case .f4: [1, 1, 1, 0.125, 8, 1]
        case .f6: [1, 1, 1, 1.0 / 32, 1.0 / 32, 32, 32, 1]
        }
    }

    /// G · (a, b, c)ᵀ, lane by lane, into u[0 ..< α].
    @inline(__always)
    fileprivate func kernelColumn(_ a: SIMD4<Double>, _ b: SIMD4<Double>, _ c: SIMD4<Double>,
                                  into u: UnsafeMutablePointer<SIMD4<Double>>) {
        switch self {
        case .f4:
            u[0] = a * 0.5; u[1] = (a + b + c) * (1.0 / 18); u[2] = (b - a - c) * 0.5
            u[3] = (a - 2 * b + 4 * c) * (1.0 / 18); u[4] = (16 * a - 8 * b + 4 * c) * (1.0 / 9); u[5] = c * 0.5
        case .f6:
            u[0] = a * 0.25; u[1] = (a + b + c) * (-1.0 / 18); u[2] = (b - a - c) * (1.0 / 18)
            u[3] = (a + 2 * b + 4 * c) * (1.0 / 360); u[4] = (a - 2 * b + 4 * c) * (1.0 / 360)
            u[5] = (16 * a + 8 * b + 4 * c) * (1.0 / 45); u[6] = (16 * a - 8 * b + 4 * c) * (1.0 / 45); u[7] = c * 0.25
        }
    }
}

/// U[ξ, o, i] = (G g[o, i] Gᵀ)[ξ] for the output channels `outputs`, computed in float64 and rounded once to float32.
/// Fast enough (nothing allocated on the heap; at 512², the 8 transforms an evaluation of the layers whose kernels are
/// not kept take 4–5 % of its processor time with F(4×4), mostly in writing the planes) for a network to redo it each
/// time a layer runs: a block of input channels has its taps gathered tap by tap into a small buffer, so that four
/// consecutive input channels go through the transforms as the lanes of vectors loaded and stored whole, and the block
/// is written out position by position (planes a megabyte apart would otherwise fight over the same cache sets).
/// - kernel: (outChannels, inChannels, 3, 3)
/// - transformed: (α², outChannels / panelRows, inChannels, panelRows); panelRows divides outChannels
package func winogradTransformKernel(_ kernel: UnsafePointer<Float>, tile: WinogradTile, outChannels: Int,
                                     inChannels: Int, outputs: Range<Int>, panelRows: Int,
                                     into transformed: UnsafeMutablePointer<Float>) {
    typealias V = SIMD4<Double>
    let plane = outChannels &* inChannels
    let block = 32, alpha = tile.input, positions = tile.positions
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 9 &* block) { taps in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: positions &* block) { buffer in
            withUnsafeTemporaryAllocation(of: V.self, capacity: 4 &* alpha) { columns in
                // (9, block): the block's kernels tap by tap; (α², block): their transforms, position by position;
                // G g's three columns and one row of G g Gᵀ, α vectors each.
                let tap = taps.baseAddress!, staged = buffer.baseAddress!, c = columns.baseAddress!
                tap.initialize(repeating: 0, count: 9 &* block)
                // A panel's output channels block by block, so that the lines of a block's panel rows are completed
                // while they are in the first-level cache.
                var panelStart = outputs.lowerBound
                while panelStart < outputs.upperBound {
                    let panelEnd = min(outputs.upperBound, (panelStart / panelRows &+ 1) &* panelRows)
                    var first = 0
                    while first < inChannels {
                        let count = min(block, inChannels &- first)
                        for o in panelStart ..< panelEnd {
                            let k = kernel + (o &* inChannels &+ first) &* 9
                            for j in 0 ..< count {
                                for t in 0 ..< 9 { tap[t &* block &+ j] = Double(k[j &* 9 &+ t]) }
                            }
                            // Lanes past `count` hold stale or zero taps; their results are never copied out.
                            var j = 0
                            while j < count {
                                @inline(__always)
                                func load(_ t: Int) -> V {
                                    UnsafeRawPointer(tap + (t &* block &+ j)).loadUnaligned(as: V.self)
                                }
                                // G g, column by column: c[kx·α + r] = (G g)[r, kx].
                                tile.kernelColumn(load(0), load(3), load(6), into: c)
                                tile.kernelColumn(load(1), load(4), load(7), into: c + alpha)
                                tile.kernelColumn(load(2), load(5), load(8), into: c + 2 &* alpha)
                                let row = c + 3 &* alpha
                                let stride = block &* MemoryLayout<Float>.stride
                                for r in 0 ..< alpha {
                                    // (G g Gᵀ)[r, ·] = G · (row r of G g).
                                    tile.kernelColumn(c[r], c[alpha &+ r], c[2 &* alpha &+ r], into: row)
                                    let base = UnsafeMutableRawPointer(staged + (r &* alpha &* block &+ j))
                                    for k in 0 ..< alpha {
                                        base.storeBytes(of: SIMD4<Float>(row[k]), toByteOffset: k &* stride,
                                                        as: SIMD4<Float>.self)
                                    }
                                }
                                j &+= 4
                            }
                            let panel = o / panelRows
                            let column = transformed
                                + (panel &* panelRows &* inChannels &+ first &* panelRows &+ o &- panel &* panelRows)
                            for position in 0 ..< positions {
                                let source = staged + position &* block, target = column + position &* plane
                                for j in 0 ..< count { target[j &* panelRows] = source[j] }
                            }
                        }
                        first &+= block
                    }
                    panelStart = panelEnd
                }
            }
        }
    }
}

/// The geometry of a Winograd pass over a map: where its tiles sit and how a band of them is stored.
package struct WinogradGrid {
    /// The algorithm, which sets the tiles' size.
    package let tile: WinogradTile
    /// The map rows being computed; tile row r covers rows rows.lowerBound + m·r ..< + m for tiles of side m.
    package let rows: Range<Int>
    /// The input rows that may be read: the rows next to `rows` that exist in the map. Others count as zero.
    package let inputRows: Range<Int>
    package let height: Int
    package let width: Int
    /// Tiles per tile row, and tile rows.
    package let tilesX: Int
    package let tilesY: Int

    package init(tile: WinogradTile, rows: Range<Int>, height: Int, width: Int) {
        self.tile = tile
        self.rows = rows
        self.height = height
        self.width = width
        inputRows = max(0, rows.lowerBound &- 1) ..< min(height, rows.upperBound &+ 1)
        tilesX = (width &+ tile.output &- 1) / tile.output
        tilesY = (rows.count &+ tile.output &- 1) / tile.output
    }

    /// Floats between the phase arrays of the per-worker work area (see `winogradInputTransform`): a tile row's tiles
    /// rounded up to a multiple of 8, since the transforms take eight tiles at a time, and one group more (sixteen
    /// at a time on AVX-512 read no further past the row than eight do).
    package var phaseStride: Int { ((tilesX &+ 7) & ~7) &+ 8 }

    /// Floats of the per-worker work area.
    package var workCount: Int { cgemm_winograd_work_count(Int32(tile.rawValue), Int32(phaseStride)) }
}

/// The floats from one position's (channels, count) floats of a band to the next's: one cache line more than they
/// take. Otherwise the distance would often be a multiple of 4 KiB (channels is a multiple of 8, and usually of 16 or
/// more), and the α² values of a tile, written by the input transform and read by the output transform, would all
/// fall in the same set of an 8-way first-level cache (and of the second level, at multiples of 64 KiB).
@inline(__always)
package func winogradPositionStride(channels: Int, count: Int) -> Int { channels &* count &+ 16 }

/// How the transformed tiles of a band are stored for the GEMMs that read them, position by position: (α², channels,
/// count) cut into panels of `width` tiles, each panel stored channel by channel, (channels, w) with w = width or, in
/// the last panel, the tiles that remain: the B operand of `cgemm_panels`. A single panel is the plain row-major
/// (channels, count) that OpenBLAS reads.
package struct WinogradPanels {
    /// Tiles per panel: a multiple of 8.
    package let width: Int
    /// Floats per channel and position: the band's tiles, or more.
    package let count: Int

    /// Panels for `tiles` tiles read by `cgemm_panels`.
    package static func cgemm(tiles: Int) -> WinogradPanels {
        WinogradPanels(width: Int(CGEMM_PANEL_COLUMNS), count: tiles)
    }

    /// One panel of `tiles` tiles, rounded up to a cache line when there are many.
    package static func rowMajor(tiles: Int) -> WinogradPanels {
        let count = tiles <= 64 ? tiles : (tiles &+ 15) & ~15
        return WinogradPanels(width: count, count: count)
    }

    /// Where tile `tile` of channel `channel` sits within a position's (channels, count) floats.
    @inline(__always)
    package func offset(channel: Int, channels: Int, tile: Int) -> Int {
        let panel = tile / width, first = panel &* width
        return first &* channels &+ channel &* min(width, count &- first) &+ (tile &- first)
    }
}

/// V[ξ, c, t] = (Bᵀ d B)[ξ] for the input tiles d of the channels `channels` and the tile rows `tileRows` of `grid`,
/// t = grid.tilesX · (r − tileRows.lowerBound) + x for the tile in column x of tile row r: the band's tiles without
/// gaps, so that the GEMMs multiply no tile that is not there.
/// - input: (channels, span.rows, span.width), holding grid.inputRows
/// - transformed: (α², channels, panels.count), stored in `panels`, positions `winogradPositionStride` apart
/// - work: grid.workCount floats, this worker's alone
package func winogradInputTransform(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid, channels: Range<Int>,
                            channelCount: Int, tileRows: Range<Int>, panels: WinogradPanels,
                            into transformed: UnsafeMutablePointer<Float>, work: UnsafeMutablePointer<Float>) {
    let positionStride = winogradPositionStride(channels: channelCount, count: panels.count)
    let m = grid.tile.output
    let ahead = aheadOfTileRow(span: span, grid: grid, tileRows: tileRows, channelStep: 1)
    withTileRowInputs(input, span: span, grid: grid, channels: channels, tileRows: tileRows) { c, r, rows, _ in
        cgemm_winograd_input(Int32(m), rows, Int32(grid.width), Int32(grid.tilesX), Int32(grid.phaseStride), work,
                             transformed, positionStride, Int32(panels.width), Int32(panels.count), Int32(c),
                             Int32(channelCount), Int32((r &- tileRows.lowerBound) &* grid.tilesX), ahead)
    }
}

/// `winogradInputTransform` of the channel pairs `pairs` (pair p: channels 2p and 2p + 1) in bfloat16 pairs for
/// `cgemm_panels_bf16_pairs`, as `cgemm_winograd_input_pairs` writes them: (α², channelCount / 2, panels.count) 32-bit
/// words stored in `panels`, positions `winogradPositionStride(channels: channelCount / 2, count: panels.count)` apart.
/// With `halfScales`, in half-precision pairs for `cgemm_panels_fp16_pairs` instead (`cgemm_winograd_input_half_pairs`),
/// each channel's values times halfScales[channel / CGEMM_FP16_SLICE].
package func winogradInputTransformPairs(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid,
                                         pairs: Range<Int>, channelCount: Int, tileRows: Range<Int>,
                                         panels: WinogradPanels, into transformed: UnsafeMutablePointer<UInt32>,
                                         work: UnsafeMutablePointer<Float>, halfScales: UnsafePointer<Float>? = nil) {
    precondition(channelCount % 2 == 0, "pairs need an even number of channels")
    let positionStride = winogradPositionStride(channels: channelCount / 2, count: panels.count)
    let m = grid.tile.output
    let ahead = aheadOfTileRow(span: span, grid: grid, tileRows: tileRows, channelStep: 2)
    withTileRowInputs(input, span: span, grid: grid, channels: pairs.lowerBound * 2 ..< pairs.upperBound * 2,
                      tileRows: tileRows, pairs: true) { c, r, low, high in
        let firstTile = Int32((r &- tileRows.lowerBound) &* grid.tilesX)
        if let halfScales {
            cgemm_winograd_input_half_pairs(Int32(m), low, high!, Int32(grid.width), Int32(grid.tilesX),
                                            Int32(grid.phaseStride), work, transformed, positionStride,
                                            Int32(panels.width), Int32(panels.count), Int32(c / 2),
                                            Int32(channelCount / 2), firstTile, ahead,
                                            halfScales[c / Int(CGEMM_FP16_SLICE)])
        } else {
            cgemm_winograd_input_pairs(Int32(m), low, high!, Int32(grid.width), Int32(grid.tilesX),
                                       Int32(grid.phaseStride), work, transformed, positionStride, Int32(panels.width),
                                       Int32(panels.count), Int32(c / 2), Int32(channelCount / 2), firstTile, ahead)
        }
    }
}

/// The powers of two that scale the half-precision pairs of the input tiles of `tileRows` of `grid`
/// (`winogradInputTransformPairs` with `halfScales`), one for each slice of `CGEMM_FP16_SLICE` channels of
/// `channelCount`, into `scales`: from the largest magnitude among the input rows those tiles read, times the most
/// the transform can grow it (`cgemm_winograd_input_gain`), so that no transformed value's magnitude exceeds 2⁴, as
/// `cgemm_panels_fp16_pairs` needs. Each of `workers` workers takes a share of the channels.
package func winogradHalfTileScales(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid,
                                    channelCount: Int, tileRows: Range<Int>, workers: Int,
                                    into scales: UnsafeMutablePointer<Float>) {
    let m = grid.tile.output, slice = Int(CGEMM_FP16_SLICE)
    let first = max(grid.inputRows.lowerBound, grid.rows.lowerBound &+ m &* tileRows.lowerBound &- 1)
    let end = min(grid.inputRows.upperBound, grid.rows.lowerBound &+ m &* tileRows.upperBound &+ 1)
    let slices = (channelCount &+ slice &- 1) / slice
    // Parts of a slice each, as many as give every worker some (of a slice's channels, or of all when there are fewer).
    let parts = max(1, min(slice, (workers &+ slices &- 1) / slices))
    let partChannels = (min(slice, channelCount) &+ parts &- 1) / parts
    withUnsafeTemporaryAllocation(of: Float.self, capacity: slices &* parts) { largest in
        parallelBands(slices &* parts, workers: min(workers, slices &* parts), blasThreads: 1) { index, _ in
            let channel = (index / parts) &* slice &+ (index % parts) &* partChannels
            let count = min(partChannels, min(channelCount, (index / parts &+ 1) &* slice) &- channel)
            largest[index] = count > 0 && end > first
                ? cgemm_largest_magnitude(input + span.offset(channel: channel, row: first), (end &- first) &* span.width,
                                          Int32(count), span.plane)
                : 0
        }
        let gain = cgemm_winograd_input_gain(Int32(m))
        for s in 0 ..< slices {
            let most = largest[s &* parts ..< (s &+ 1) &* parts].max()!
            scales[s] = cgemm_fp16_tiles_scale(most * gain)
        }
    }
}

/// How far the input rows of the next tile row `withTileRowInputs` takes lie from this one's, in floats, for the
/// transforms to ask for them early: the same rows `channelStep` channels on when a band is one tile row tall, else
/// the next tile row's, m rows down.
private func aheadOfTileRow(span: RowSpan, grid: WinogradGrid, tileRows: Range<Int>, channelStep: Int) -> Int {
    tileRows.count == 1 ? channelStep &* span.plane : grid.tile.output &* span.width
}

/// Runs `body(c, r, rows, next)` for each channel c of `channels` (each even one, with `pairs`) and tile row r of
/// `tileRows`: rows are the α input rows of tile row r in channel c, nil outside the map; with `pairs`, next those of
/// channel c + 1.
private func withTileRowInputs(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid, channels: Range<Int>,
                               tileRows: Range<Int>, pairs: Bool = false,
                               _ body: (_ channel: Int, _ tileRow: Int, _ rows: UnsafePointer<UnsafePointer<Float>?>,
                                        _ next: UnsafePointer<UnsafePointer<Float>?>?) -> Void) {
    let m = grid.tile.output, alpha = grid.tile.input
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: 2 * alpha) { rows in
        for c in Swift.stride(from: channels.lowerBound, to: channels.upperBound, by: pairs ? 2 : 1) {
            for r in tileRows {
                for j in 0 ..< alpha {
                    let y = grid.rows.lowerBound &+ m &* r &- 1 &+ j
                    let inside = grid.inputRows.contains(y)
                    rows[j] = inside ? input + span.offset(channel: c, row: y) : nil
                    if pairs { rows[alpha &+ j] = inside ? input + span.offset(channel: c &+ 1, row: y) : nil }
                }
                body(c, r, UnsafePointer(rows.baseAddress!), pairs ? UnsafePointer(rows.baseAddress! + alpha) : nil)
            }
        }
    }
}

/// Writes the output tiles Aᵀ M A of the channels `channels` for the band's tile rows `tileRows` into the map rows
/// they cover within grid.rows, then runs `epilogue(channel, row)` on each row written.
/// - transformed: (α², channels, tileStride), positions `winogradPositionStride` apart, as the GEMMs left it, tiles
///   numbered as `winogradInputTransform` does
/// - output: (channels, span.rows, span.width), holding grid.rows
/// - work: grid.workCount floats, this worker's alone
package func winogradOutputTransform(_ transformed: UnsafePointer<Float>, channels: Range<Int>, channelCount: Int,
                             tileRows: Range<Int>, tileStride: Int, grid: WinogradGrid,
                             into output: UnsafeMutablePointer<Float>, span: RowSpan,
                             work: UnsafeMutablePointer<Float>,
                             epilogue: (_ channel: Int, _ row: UnsafeMutablePointer<Float>, _ y: Int) -> Void) {
    let positionStride = winogradPositionStride(channels: channelCount, count: tileStride)
    let m = grid.tile.output
    for c in channels {
        for r in tileRows {
            let firstRow = grid.rows.lowerBound &+ m &* r
            let rowsHere = min(m, grid.rows.upperBound &- firstRow)
            let base = transformed + (c &* tileStride &+ (r &- tileRows.lowerBound) &* grid.tilesX)
            cgemm_winograd_output(Int32(m), base, positionStride, Int32(grid.tilesX), Int32(grid.width),
                                  Int32(rowsHere), output + span.offset(channel: c, row: firstRow), grid.width, work)
            for i in 0 ..< rowsHere {
                epilogue(c, output + span.offset(channel: c, row: firstRow &+ i), firstRow &+ i)
            }
        }
    }
}

// The kernels of Winograd's minimal filtering algorithm F(4×4, 3×3) for the 3x3 pad-1 convolutions: the transforms of
// kernels (here), input tiles and output tiles (their loops here, their arithmetic in C, `cgemm_winograd_input` and
// `cgemm_winograd_output`, in AVX2 vectors where the processor has them). The multiplications in between are GEMMs
// (see `Convolution`).
//
// A 4×4 output tile Y of a 3x3 correlation of a 6×6 input tile d with a kernel g is Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A.
// The matrices come from the Toom–Cook construction on the points 0, 1, −1, −2, −1/2 and ∞, with the rows of G and Bᵀ
// scaled so that Bᵀ is integral:
//
//        ⎡ 1  1  1   1    1    0 ⎤         ⎡ 1/2     0     0  ⎤         ⎡ 2   5   0  −5  −2   0 ⎤
//   Aᵀ = ⎢ 0  1 −1  −2  −1/2   0 ⎥    G =  ⎢ 1/18  1/18  1/18 ⎥    Bᵀ = ⎢ 0   2   7   7   2   0 ⎥
//        ⎢ 0  1  1   4   1/4   0 ⎥         ⎢−1/2   1/2  −1/2  ⎥         ⎢ 0  −2  −3   3   2   0 ⎥
//        ⎣ 0  1 −1  −8  −1/8   1 ⎦         ⎢ 1/18 −1/9   2/9  ⎥         ⎢ 0  −1  −2   1   2   0 ⎥
//                                          ⎢ 16/9 −8/9   4/9  ⎥         ⎢ 0  −2  −1   2   1   0 ⎥
//                                          ⎣  0     0    1/2  ⎦         ⎣ 0  −2  −5   0   5   2 ⎦
//
// The point set is closed under a ↦ 1/a, which makes G of the kernel turned by 180° a scaled permutation of G's rows:
// G·J = D·P·G with P swapping rows 0↔5 and 3↔4 and D = diag(1, 1, 1, 1/8, 8, 1). So the input gradient, the
// correlation with the turned and transposed kernel, uses the forward pass's transformed kernel, position π(ξ),
// transposed and scaled by a power of two: no second copy of the kernels. (Lavin's points 0, ±1, ±2, ∞ are not closed
// under a ↦ 1/a; these are about as accurate in float32.)
//
// Layouts: a transformed kernel is (36, outChannels, inChannels) with each position's plane cut into panels of R output
// channels, (outChannels / R, inChannels, R), position ξ = 6·i + k for row i and column k of the 6×6 tile: R = 8 is
// the order `cgemm_panels` reads, R = 1 the plain (outChannels, inChannels) that OpenBLAS reads. A band
// of tiles is (36, channels, count): position, channel, then the band's tiles row by row, in `WinogradPanels`.

import CGEMM

/// The side of an output tile and of an input tile, and the number of positions of a transformed tile.
package let winogradTile = 4
package let winogradInputTile = 6
package let winogradPositions = 36

/// π: the position of the forward kernel that gives position ξ's row or column of the turned kernel.
package let winogradTurned = [5, 1, 2, 4, 3, 0]
/// D: the scale of each row of G·J relative to the row of G it is (see above).
package let winogradTurnedScale: [Float] = [1, 1, 1, 0.125, 8, 1]

/// U[ξ, o, i] = (G g[o, i] Gᵀ)[ξ] for the output channels `outputs`, computed in float64 and rounded once to float32.
/// Fast enough (nothing allocated on the heap; at 512², the 8 transforms an evaluation of the layers whose kernels are
/// not kept take 4–5 % of its processor time, mostly in writing the 36 planes) for a network to redo it each time a
/// layer runs: a block of input channels has its taps gathered tap by tap into a small buffer, so that four
/// consecutive input channels go through the transforms as the lanes of vectors loaded and stored whole, and the block
/// is written out position by position (36 planes a megabyte apart would otherwise fight over the same cache sets).
/// - kernel: (outChannels, inChannels, 3, 3)
/// - transformed: (36, outChannels / panelRows, inChannels, panelRows); panelRows divides outChannels
package func winogradTransformKernel(_ kernel: UnsafePointer<Float>, outChannels: Int, inChannels: Int, outputs: Range<Int>,
                             panelRows: Int, into transformed: UnsafeMutablePointer<Float>) {
    typealias V = SIMD4<Double>
    /// G · (a, b, c)ᵀ, lane by lane.
    @inline(__always)
    func g(_ a: V, _ b: V, _ c: V) -> (V, V, V, V, V, V) {
        (a * 0.5, (a + b + c) * (1.0 / 18), (b - a - c) * 0.5, (a - 2 * b + 4 * c) * (1.0 / 18),
         (16 * a - 8 * b + 4 * c) * (1.0 / 9), c * 0.5)
    }
    let plane = outChannels &* inChannels
    let block = 32
    withUnsafeTemporaryAllocation(of: Double.self, capacity: 9 &* block) { taps in
        withUnsafeTemporaryAllocation(of: Float.self, capacity: winogradPositions &* block) { buffer in
            // (9, block): the block's kernels tap by tap; (36, block): their transforms, position by position.
            let tap = taps.baseAddress!, tile = buffer.baseAddress!
            tap.initialize(repeating: 0, count: 9 &* block)
            // A panel's output channels block by block, so that the lines of a block's panel rows are completed while
            // they are in the first-level cache.
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
                            // G g, column by column: c.r = (G g)[r, kx].
                            let c0 = g(load(0), load(3), load(6)), c1 = g(load(1), load(4), load(7))
                            let c2 = g(load(2), load(5), load(8))
                            @inline(__always)
                            func row(_ r: Int, _ a: V, _ b: V, _ c: V) {
                                // (G g Gᵀ)[r, ·] = G · (row r of G g).
                                let u = g(a, b, c)
                                let base = UnsafeMutableRawPointer(tile + (r &* 6 &* block &+ j))
                                let stride = block &* MemoryLayout<Float>.stride
                                base.storeBytes(of: SIMD4<Float>(u.0), as: SIMD4<Float>.self)
                                base.storeBytes(of: SIMD4<Float>(u.1), toByteOffset: stride, as: SIMD4<Float>.self)
                                base.storeBytes(of: SIMD4<Float>(u.2), toByteOffset: 2 &* stride, as: SIMD4<Float>.self)
                                base.storeBytes(of: SIMD4<Float>(u.3), toByteOffset: 3 &* stride, as: SIMD4<Float>.self)
                                base.storeBytes(of: SIMD4<Float>(u.4), toByteOffset: 4 &* stride, as: SIMD4<Float>.self)
                                base.storeBytes(of: SIMD4<Float>(u.5), toByteOffset: 5 &* stride, as: SIMD4<Float>.self)
                            }
                            row(0, c0.0, c1.0, c2.0); row(1, c0.1, c1.1, c2.1); row(2, c0.2, c1.2, c2.2)
                            row(3, c0.3, c1.3, c2.3); row(4, c0.4, c1.4, c2.4); row(5, c0.5, c1.5, c2.5)
                            j &+= 4
                        }
                        let panel = o / panelRows
                        let column = transformed
                            + (panel &* panelRows &* inChannels &+ first &* panelRows &+ o &- panel &* panelRows)
                        for position in 0 ..< winogradPositions {
                            let source = tile + position &* block, target = column + position &* plane
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

/// The geometry of a Winograd pass over a map: where its tiles sit and how a band of them is stored.
package struct WinogradGrid {
    /// The map rows being computed; tile row r covers rows rows.lowerBound + 4r ..< + 4.
    package let rows: Range<Int>
    /// The input rows that may be read: the rows next to `rows` that exist in the map. Others count as zero.
    package let inputRows: Range<Int>
    package let height: Int
    package let width: Int
    /// Tiles per tile row, and tile rows.
    package let tilesX: Int
    package let tilesY: Int

    package init(rows: Range<Int>, height: Int, width: Int) {
        self.rows = rows
        self.height = height
        self.width = width
        inputRows = max(0, rows.lowerBound &- 1) ..< min(height, rows.upperBound &+ 1)
        tilesX = (width &+ 3) >> 2
        tilesY = (rows.count &+ 3) >> 2
    }

    /// Tiles per tile row in a band's numbering: tilesX rounded up to a multiple of 8, so that the transforms, which
    /// take eight tiles at a time, never split a group of eight between tile rows or between panels.
    package var rowTiles: Int { (tilesX &+ 7) & ~7 }

    /// Floats between the phase arrays of the per-worker work area (see `winogradInputTransform`).
    package var phaseStride: Int { rowTiles &+ 8 }

    /// Floats of the per-worker work area.
    package var workCount: Int { 24 &* phaseStride &+ winogradPositions &* 8 }
}

/// How the transformed tiles of a band are stored for the GEMMs that read them, position by position: (36, channels,
/// count) cut into panels of `width` tiles, each panel stored channel by channel, (channels, w) with w = width or, in
/// the last panel, the tiles that remain: the B operand of `cgemm_panels`. A single panel is the plain row-major
/// (channels, count) that OpenBLAS reads.
package struct WinogradPanels {
    /// Tiles per panel: a multiple of 8.
    package let width: Int
    /// Floats per channel and position: the band's tiles (a multiple of 8).
    package let count: Int

    /// Panels for `tiles` tiles (a multiple of 8) read by `cgemm_panels`.
    package static func cgemm(tiles: Int) -> WinogradPanels {
        WinogradPanels(width: Int(CGEMM_PANEL_COLUMNS), count: tiles)
    }

    /// One panel of `tiles` tiles (a multiple of 8), rounded up to a cache line when there are many.
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
/// t = grid.rowTiles · (r − tileRows.lowerBound) + x for the tile in column x of tile row r.
/// - input: (channels, span.rows, span.width), holding grid.inputRows
/// - transformed: (36, channels, panels.count), stored in `panels`
/// - work: grid.workCount floats, this worker's alone
package func winogradInputTransform(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid, channels: Range<Int>,
                            channelCount: Int, tileRows: Range<Int>, panels: WinogradPanels,
                            into transformed: UnsafeMutablePointer<Float>, work: UnsafeMutablePointer<Float>) {
    let positionStride = channelCount &* panels.count
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>?.self, capacity: 6) { rows in
        for c in channels {
            for r in tileRows {
                // The six input rows of tile row r, nil outside the map.
                for j in 0 ..< 6 {
                    let y = grid.rows.lowerBound &+ 4 &* r &- 1 &+ j
                    rows[j] = grid.inputRows.contains(y) ? input + span.offset(channel: c, row: y) : nil
                }
                cgemm_winograd_input(rows.baseAddress!, Int32(grid.width), Int32(grid.tilesX), Int32(grid.phaseStride),
                                     work, transformed, positionStride, Int32(panels.width), Int32(panels.count),
                                     Int32(c), Int32(channelCount),
                                     Int32((r &- tileRows.lowerBound) &* grid.rowTiles))
            }
        }
    }
}

/// Writes the output tiles Aᵀ M A of the channels `channels` for the band's tile rows `tileRows` into the map rows
/// they cover within grid.rows, then runs `epilogue(channel, row)` on each row written.
/// - transformed: (36, channels, tileStride), as the GEMMs left it, tiles numbered as `winogradInputTransform` does
/// - output: (channels, span.rows, span.width), holding grid.rows
/// - work: grid.workCount floats, this worker's alone
package func winogradOutputTransform(_ transformed: UnsafePointer<Float>, channels: Range<Int>, channelCount: Int,
                             tileRows: Range<Int>, tileStride: Int, grid: WinogradGrid,
                             into output: UnsafeMutablePointer<Float>, span: RowSpan,
                             work: UnsafeMutablePointer<Float>,
                             epilogue: (_ channel: Int, _ row: UnsafeMutablePointer<Float>, _ y: Int) -> Void) {
    let positionStride = channelCount &* tileStride
    for c in channels {
        for r in tileRows {
            let firstRow = grid.rows.lowerBound &+ 4 &* r
            let rowsHere = min(4, grid.rows.upperBound &- firstRow)
            let base = transformed + (c &* tileStride &+ (r &- tileRows.lowerBound) &* grid.rowTiles)
            cgemm_winograd_output(base, positionStride, Int32(grid.tilesX), Int32(grid.width), Int32(rowsHere),
                                  output + span.offset(channel: c, row: firstRow), grid.width, work)
            for i in 0 ..< rowsHere {
                epilogue(c, output + span.offset(channel: c, row: firstRow &+ i), firstRow &+ i)
            }
        }
    }
}

// The kernels of Winograd's minimal filtering algorithm F(4×4, 3×3) for the 3x3 pad-1 convolutions: the transforms of
// kernels, input tiles and output tiles. The multiplications in between are GEMMs (see `Convolution`).
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
/// Fast enough (about a nanosecond per (o, i) and core, nothing allocated on the heap) for a network to redo it each
/// time a layer runs: a block of input channels has its taps gathered tap by tap into a small buffer, so that four
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

@inline(__always)
private func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always)
private func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

@inline(__always)
private func load4(_ p: UnsafePointer<Float>) -> SIMD4<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD4<Float>.self)
}

@inline(__always)
private func store4(_ v: SIMD4<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD4<Float>.self)
}

/// Bᵀ d for eight tiles at once.
@inline(__always)
private func inputTransform(_ d0: SIMD8<Float>, _ d1: SIMD8<Float>, _ d2: SIMD8<Float>, _ d3: SIMD8<Float>,
                            _ d4: SIMD8<Float>, _ d5: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let d13 = d1 - d3, d24 = d4 - d2, s14 = d1 + d4, s23 = d2 + d3
    return (2 * (d0 - d4) + 5 * d13,
            2 * s14 + 7 * s23,
            2 * (d4 - d1) + 3 * (d3 - d2),
            d3 - d1 + 2 * d24,
            2 * (d3 - d1) + d24,
            2 * (d5 - d1) + 5 * d24)
}

/// Aᵀ m for eight tiles at once.
@inline(__always)
private func outputTransform(_ m0: SIMD8<Float>, _ m1: SIMD8<Float>, _ m2: SIMD8<Float>, _ m3: SIMD8<Float>,
                             _ m4: SIMD8<Float>, _ m5: SIMD8<Float>)
    -> (SIMD8<Float>, SIMD8<Float>, SIMD8<Float>, SIMD8<Float>) {
    let s12 = m1 + m2, d12 = m1 - m2
    return (m0 + s12 + m3 + m4,
            d12 - 2 * m3 - 0.5 * m4,
            s12 + 4 * m3 + 0.25 * m4,
            d12 - 8 * m3 - 0.125 * m4 + m5)
}

/// V[ξ, c, t] = (Bᵀ d B)[ξ] for the input tiles d of the channels `channels` and the tile rows `tileRows` of `grid`,
/// t = grid.rowTiles · (r − tileRows.lowerBound) + x for the tile in column x of tile row r.
/// - input: (channels, span.rows, span.width), holding grid.inputRows
/// - transformed: (36, channels, panels.count), stored in `panels`
/// - work: grid.workCount floats, this worker's alone
package func winogradInputTransform(_ input: UnsafePointer<Float>, span: RowSpan, grid: WinogradGrid, channels: Range<Int>,
                            channelCount: Int, tileRows: Range<Int>, panels: WinogradPanels,
                            into transformed: UnsafeMutablePointer<Float>, work: UnsafeMutablePointer<Float>) {
    let width = grid.width, tilesX = grid.tilesX, qs = grid.phaseStride
    let positionStride = channelCount &* panels.count
    let tmp = work + 24 &* qs
    for c in channels {
        for r in tileRows {
            // The six input rows of tile row r, each split by x + 1 mod 4: q[j, p, s] = row j at x = 4s + p − 1.
            for j in 0 ..< 6 {
                let q = work + j &* 4 &* qs
                let y = grid.rows.lowerBound &+ 4 &* r &- 1 &+ j
                q.update(repeating: 0, count: 4 &* qs)
                guard grid.inputRows.contains(y) else { continue }
                let row = input + span.offset(channel: c, row: y)
                var x = 0
                while x &+ 16 <= width {
                    // Sixteen values as a 4×4 transpose: v_i[p] = row[x + 4i + p] lands in phase p + 1 at s + i.
                    let s = x >> 2
                    let v0 = load4(row + x), v1 = load4(row + (x &+ 4))
                    let v2 = load4(row + (x &+ 8)), v3 = load4(row + (x &+ 12))
                    store4(SIMD4(v0[0], v1[0], v2[0], v3[0]), q + (qs &+ s))
                    store4(SIMD4(v0[1], v1[1], v2[1], v3[1]), q + (2 &* qs &+ s))
                    store4(SIMD4(v0[2], v1[2], v2[2], v3[2]), q + (3 &* qs &+ s))
                    store4(SIMD4(v0[3], v1[3], v2[3], v3[3]), q + (s &+ 1))
                    x &+= 16
                }
                while x &+ 4 <= width {
                    // x = 4s + p − 1 for p = 1, 2, 3, and p = 0 of s + 1.
                    let s = x >> 2
                    q[qs &+ s] = row[x]
                    q[2 &* qs &+ s] = row[x &+ 1]
                    q[3 &* qs &+ s] = row[x &+ 2]
                    q[s &+ 1] = row[x &+ 3]
                    x &+= 4
                }
                while x < width {
                    let p = (x &+ 1) & 3, s = (x &+ 1) >> 2
                    q[p &* qs &+ s] = row[x]
                    x &+= 1
                }
            }
            let first = (r &- tileRows.lowerBound) &* grid.rowTiles
            var t = 0
            while t < tilesX {
                // Eight tiles at a time, within the row's rowTiles: the lanes past tilesX hold the transforms of zeros and
                // the right edge, finite values whose products are never written out.
                for j in 0 ..< 6 {
                    let q = work + (j &* 4 &* qs &+ t)
                    let v = inputTransform(load(q), load(q + qs), load(q + 2 &* qs), load(q + 3 &* qs), load(q + 1),
                                           load(q + (qs &+ 1)))
                    let o = tmp + j &* 48
                    store(v.0, o); store(v.1, o + 8); store(v.2, o + 16)
                    store(v.3, o + 24); store(v.4, o + 32); store(v.5, o + 40)
                }
                let base = transformed + panels.offset(channel: c, channels: channelCount, tile: first &+ t)
                for k in 0 ..< 6 {
                    let s = tmp + k &* 8
                    let v = inputTransform(load(s), load(s + 48), load(s + 96), load(s + 144), load(s + 192),
                                           load(s + 240))
                    let o = base + k &* positionStride
                    store(v.0, o); store(v.1, o + 6 &* positionStride); store(v.2, o + 12 &* positionStride)
                    store(v.3, o + 18 &* positionStride); store(v.4, o + 24 &* positionStride)
                    store(v.5, o + 30 &* positionStride)
                }
                t &+= 8
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
    let width = grid.width, tilesX = grid.tilesX
    let positionStride = channelCount &* tileStride
    let tmp = work, line = work + 24 &* 8
    for c in channels {
        for r in tileRows {
            let firstRow = grid.rows.lowerBound &+ 4 &* r
            let rowsHere = min(4, grid.rows.upperBound &- firstRow)
            let base = transformed + (c &* tileStride &+ (r &- tileRows.lowerBound) &* grid.rowTiles)
            var t = 0
            while t < tilesX {
                // Columns first: z[i', k] = Σ_i Aᵀ[i', i] M[6i + k].
                for k in 0 ..< 6 {
                    let s = base + (k &* positionStride &+ t)
                    let z = outputTransform(load(s), load(s + 6 &* positionStride), load(s + 12 &* positionStride),
                                            load(s + 18 &* positionStride), load(s + 24 &* positionStride),
                                            load(s + 30 &* positionStride))
                    let o = tmp + k &* 8
                    store(z.0, o); store(z.1, o + 48); store(z.2, o + 96); store(z.3, o + 144)
                }
                let lanes = min(8, tilesX &- t)
                for i in 0 ..< rowsHere {
                    let s = tmp + i &* 48
                    let y = outputTransform(load(s), load(s + 8), load(s + 16), load(s + 24), load(s + 32),
                                            load(s + 40))
                    let row = output + (span.offset(channel: c, row: firstRow &+ i) &+ 4 &* t)
                    if lanes == 8 && 4 &* (t &+ 8) <= width {
                        // Tile l's four values, y.j[l], go to row[4l + j]: a transpose of the four vectors.
                        for lane in 0 ..< 8 {
                            store4(SIMD4(y.0[lane], y.1[lane], y.2[lane], y.3[lane]), row + 4 &* lane)
                        }
                        continue
                    }
                    store(y.0, line); store(y.1, line + 8); store(y.2, line + 16); store(y.3, line + 24)
                    if 4 &* (t &+ lanes) <= width {
                        for lane in 0 ..< lanes {
                            row[4 &* lane] = line[lane]
                            row[4 &* lane &+ 1] = line[8 &+ lane]
                            row[4 &* lane &+ 2] = line[16 &+ lane]
                            row[4 &* lane &+ 3] = line[24 &+ lane]
                        }
                    } else {
                        for x in 0 ..< width &- 4 &* t { row[x] = line[(x & 3) &* 8 &+ (x >> 2)] }
                    }
                }
                t &+= 8
            }
            for i in 0 ..< rowsHere {
                epilogue(c, output + span.offset(channel: c, row: firstRow &+ i), firstRow &+ i)
            }
        }
    }
}

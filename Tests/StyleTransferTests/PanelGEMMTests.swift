import CGEMM
import XCTest
@testable import StyleTransfer

final class PanelGEMMTests: XCTestCase {
    /// cgemm_panels against the float64 product written out from the layouts in cgemm.h, in both orders of A, for
    /// column counts that fill panels, leave a partial one (of a width that is or is not a multiple of 16) or stay
    /// under one, and depths that take one slice of the k
    /// loop or several (128 per slice); columns of C past n and rows of other panels are left alone.
    func testPanelProductMatchesTheLayouts() throws {
        try XCTSkipUnless(panelGEMMAvailable, "the processor has no AVX-512")
        let rows = Int(CGEMM_PANEL_ROWS), columns = Int(CGEMM_PANEL_COLUMNS)
        var rng = SplitMix64(seed: 31)
        for (m, n, k) in [(8, 48, 8), (16, 8, 24), (24, 100, 136), (8, 200, 264), (32, 56, 16), (16, 77, 8)] {
            let a = randomValues(m * k, using: &rng), b = randomValues(n * k, using: &rng)
            let ldc = n + 5
            for transposed in [false, true] {
                /// A[i][j] where the layouts of cgemm.h put it.
                func aValue(_ i: Int, _ j: Int) -> Float {
                    transposed ? a[(j / rows) * rows * m + i * rows + j % rows]
                        : a[(i / rows) * rows * k + j * rows + i % rows]
                }
                let alpha: Float = transposed ? 0.125 : 1
                var c = [Float](repeating: 7, count: m * ldc)
                a.withUnsafeBufferPointer { a in
                    b.withUnsafeBufferPointer { b in
                        c.withUnsafeMutableBufferPointer { c in
                            cgemm_panels(Int32(m), Int32(n), Int32(k), alpha, a.baseAddress!, transposed ? 1 : 0,
                                         b.baseAddress!, c.baseAddress!, ldc)
                        }
                    }
                }
                for i in 0 ..< m {
                    for l in 0 ..< ldc {
                        guard l < n else {
                            XCTAssertEqual(c[i * ldc + l], 7, "column \(l) past n written")
                            continue
                        }
                        var expected = 0.0, size = 0.0
                        for j in 0 ..< k {
                            let first = l / columns * columns, panelWidth = min(columns, n - first)
                            let term = Double(aValue(i, j)) * Double(b[first * k + j * panelWidth + l - first])
                            expected += term
                            size += abs(term)
                        }
                        expected *= Double(alpha)
                        XCTAssertEqual(Double(c[i * ldc + l]), expected, accuracy: 1e-6 * max(1, size),
                                       "\(m)x\(n)x\(k) transposed \(transposed) at \(i), \(l)")
                    }
                }
            }
        }
    }
}

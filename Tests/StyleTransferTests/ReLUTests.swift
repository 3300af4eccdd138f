import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The ReLU row kernels (`addBias(row:width:bias:reluMask:)` and `applyReLUMask(row:width:mask:)`) against the rule
/// written out, bit for bit, on every own kernel path: rows of several vectors, a partial last vector and rows shorter
/// than one, with values that land exactly on zero, negative zeros and values below it.
final class ReLUTests: XCTestCase {
    let widths = [1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 64, 70]
    /// Floats past each row, which must stay as they are.
    let guardCount = 9
    let guardValue: Float = 7.25

    func values(_ count: Int, using rng: inout SplitMix64) -> [Float] {
        (0 ..< count).map { _ in
            switch Int.random(in: 0 ..< 4, using: &rng) {
            case 0: Float(Int.random(in: -2 ... 2, using: &rng)) * 0.5  // lands on zero with the bias −0.5 or 0.5
            case 1: -0.0
            default: Float.random(in: -1 ... 1, using: &rng)
            }
        }
    }

    func testBiasAndReLURecordTheMask() throws {
        for path in supportedKernelPaths where path != .openblas {
            var rng = SplitMix64(seed: 41)
            for width in widths {
                for bias: Float in [0, 0.5, -0.5, 0.375] {
                    let input = values(width, using: &rng)
                    var row = input + [Float](repeating: guardValue, count: guardCount)
                    var mask = [UInt8](repeating: 0xA5, count: maskRowBytes(width: width) + 1)
                    try withKernelPath(path) {
                        row.withUnsafeMutableBufferPointer { row in
                            mask.withUnsafeMutableBufferPointer { mask in
                                addBias(row: row.baseAddress!, width: width, bias: bias, reluMask: mask.baseAddress!)
                            }
                        }
                    }
                    var expectedMask = [UInt8](repeating: 0, count: maskRowBytes(width: width))
                    let expected = input.enumerated().map { x, value -> Float in
                        let sum = value + bias
                        guard sum > 0 else { return 0 }
                        expectedMask[x / 8] |= 1 << UInt8(x % 8)
                        return sum
                    }
                    let what = "\(path) width \(width) bias \(bias)"
                    XCTAssertEqual(row.prefix(width).map(\.bitPattern), expected.map(\.bitPattern), what)
                    XCTAssertEqual(Array(row.suffix(guardCount)), [Float](repeating: guardValue, count: guardCount), what)
                    XCTAssertEqual(Array(mask.prefix(expectedMask.count)), expectedMask, what)
                    XCTAssertEqual(mask.last, 0xA5, "\(what): a byte past the mask was written")
                }
            }
        }
    }

    func testMaskZeroesTheGradientWhereTheReLUDidNotPass() throws {
        for path in supportedKernelPaths where path != .openblas {
            var rng = SplitMix64(seed: 42)
            for width in widths {
                let gradient = randomValues(width, using: &rng)
                let mask = (0 ..< maskRowBytes(width: width)).map { _ in UInt8.random(in: 0 ... 255, using: &rng) }
                var row = gradient + [Float](repeating: guardValue, count: guardCount)
                try withKernelPath(path) {
                    row.withUnsafeMutableBufferPointer { applyReLUMask(row: $0.baseAddress!, width: width, mask: mask) }
                }
                let expected = gradient.enumerated().map { x, g in mask[x / 8] & (1 << UInt8(x % 8)) != 0 ? g : 0 }
                XCTAssertEqual(row.prefix(width).map(\.bitPattern), expected.map(\.bitPattern), "\(path) width \(width)")
                XCTAssertEqual(Array(row.suffix(guardCount)), [Float](repeating: guardValue, count: guardCount))
            }
        }
    }
}

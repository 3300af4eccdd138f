import XCTest
@testable import Kernels
@testable import StyleTransfer

final class PoolingTests: XCTestCase {
    /// (channels, height, width), odd sizes and sizes that pool to nothing included.
    let shapes: [(Int, Int, Int)] = [(1, 1, 1), (2, 1, 4), (3, 2, 2), (2, 5, 7), (4, 8, 6), (1, 3, 1), (3, 7, 9), (5, 6, 3), (2, 6, 21), (3, 5, 16)]

    /// Values from a handful of levels, so that windows often hold equal values (ReLU outputs tie at zero).
    func tiedValues(_ count: Int, using rng: inout SplitMix64) -> [Float] {
        (0 ..< count).map { _ in Float(Int.random(in: -2 ... 3, using: &rng)) }
    }

    func naivePool(_ input: [Float], _ c: Int, _ h: Int, _ w: Int, max: Bool) -> (values: [Double], winners: [Int]) {
        var values: [Double] = [], winners: [Int] = []
        for ch in 0 ..< c {
            for oy in 0 ..< h / 2 {
                for ox in 0 ..< w / 2 {
                    let window = [(0, 0), (0, 1), (1, 0), (1, 1)].map { dy, dx in
                        input[(ch * h + 2 * oy + dy) * w + 2 * ox + dx]
                    }
                    if max {
                        var k = 0
                        for j in 1 ..< 4 where window[j] > window[k] { k = j }  // the first of equal values wins
                        values.append(Double(window[k]))
                        winners.append(k)
                    } else {
                        values.append(window.reduce(0.0) { $0 + Double($1) } / 4)
                    }
                }
            }
        }
        return (values, winners)
    }

    /// The winner of pooling window `k` (in (channels, height, width) order of the pooled map) as the choices hold it:
    /// two bits a window, rows of choiceRowBytes(width) bytes.
    func winner(_ choice: ByteBuffer, _ k: Int, width: Int) -> Int {
        let (row, x) = (k / width, k % width)
        return Int(choice.storage[row * choiceRowBytes(width: width) + x / 4] >> UInt8(2 * (x % 4))) & 3
    }

    /// The rows `rows` of records for a whole map, (channels, height, rowBytes), in a buffer of their own.
    func rowsOf(_ records: ByteBuffer, channels: Int, height: Int, rowBytes: Int, rows: Range<Int>) -> ByteBuffer {
        let copy = ByteBuffer(capacity: channels * rows.count * rowBytes)
        for c in 0 ..< channels {
            (copy.storage + c * rows.count * rowBytes).update(from: records.storage + (c * height + rows.lowerBound) * rowBytes,
                                                             count: rows.count * rowBytes)
        }
        return copy
    }

    /// On every own kernel path (rows of eight windows at a time in vectors, the rest one by one), and at widths of
    /// several vectors and a tail.
    func testMaxPoolForwardAndChoices() throws {
        for path in supportedKernelPaths where path != .openblas {
            var rng = SplitMix64(seed: 11)
            for (c, h, w) in shapes + [(2, 4, 70), (1, 3, 33)] {
                let input = tiedValues(c * h * w, using: &rng)
                let expected = naivePool(input, c, h, w, max: true)
                let output = Tensor(channels: 0, height: 0, width: 0, capacity: c * h * w)
                let choice = ByteBuffer(capacity: c * (h / 2) * choiceRowBytes(width: w / 2))
                try withKernelPath(path) {
                    Pooling.max.forward(Tensor(channels: c, height: h, width: w, values: input), into: output,
                                        choice: choice)
                }
                XCTAssertEqual([output.channels, output.height, output.width], [c, h / 2, w / 2])
                XCTAssertEqual(output.values.map(Double.init), expected.values, "\(path) max pool \(c)x\(h)x\(w)")
                XCTAssertEqual((0 ..< expected.winners.count).map { winner(choice, $0, width: w / 2) },
                               expected.winners, "\(path) winners \(c)x\(h)x\(w)")
            }
        }
    }

    func testAveragePoolForward() {
        var rng = SplitMix64(seed: 12)
        for (c, h, w) in shapes {
            let input = randomValues(c * h * w, using: &rng)
            let output = Tensor(channels: 0, height: 0, width: 0, capacity: c * h * w)
            Pooling.average.forward(Tensor(channels: c, height: h, width: w, values: input), into: output, choice: nil)
            assertClose(output.values, naivePool(input, c, h, w, max: false).values, relative: 1e-6,
                        "average pool \(c)x\(h)x\(w)")
        }
    }

    /// The backward passes against the chain rule written out: each input gets the gradient of the outputs whose
    /// window it won (max) or a quarter of its window's (average), zero in dropped rows and columns, and zero where
    /// the ReLU mask given for the input is clear. On every own kernel path (rows of four windows at a time in vectors,
    /// the rest one by one), and at widths of several vectors and a tail.
    func testBackwardWithAndWithoutReLUMask() throws {
        for path in supportedKernelPaths where path != .openblas {
            try withKernelPath(path) { try backwardWithAndWithoutReLUMask(path) }
        }
    }

    func backwardWithAndWithoutReLUMask(_ path: KernelPath) throws {
        var rng = SplitMix64(seed: 13)
        for pooling in Pooling.allCases {
            for (c, h, w) in shapes + [(2, 4, 70), (1, 3, 33), (2, 2, 16)] {
                let input = tiedValues(c * h * w, using: &rng)
                let (oh, ow) = (h / 2, w / 2)
                let gradOutput = randomValues(c * oh * ow, using: &rng)
                let choice = ByteBuffer(capacity: c * oh * choiceRowBytes(width: ow))
                let pooled = Tensor(channels: 0, height: 0, width: 0, capacity: c * h * w)
                pooling.forward(Tensor(channels: c, height: h, width: w, values: input), into: pooled, choice: choice)
                let mask = ByteBuffer(capacity: c * h * maskRowBytes(width: w))
                for k in 0 ..< mask.capacity { mask.storage[k] = UInt8.random(in: 0 ... 255, using: &rng) }
                let winners = naivePool(input, c, h, w, max: true).winners
                for useMask in [false, true] {
                    var expected = [Double](repeating: 0, count: c * h * w)
                    for ch in 0 ..< c {
                        for oy in 0 ..< oh {
                            for ox in 0 ..< ow {
                                let o = (ch * oh + oy) * ow + ox
                                for k in 0 ..< 4 where pooling == .average || winners[o] == k {
                                    let (y, x) = (2 * oy + k / 2, 2 * ox + k % 2)
                                    let share = pooling == .max ? 1.0 : 0.25
                                    if !useMask || maskBit(mask, row: ch * h + y, width: w, x: x) {
                                        expected[(ch * h + y) * w + x] = share * Double(gradOutput[o])
                                    }
                                }
                            }
                        }
                    }
                    let gradInput = Tensor(channels: c, height: h, width: w)
                    gradInput.assign(randomValues(c * h * w, using: &rng))  // must be overwritten everywhere
                    pooling.backward(Tensor(channels: c, height: oh, width: ow, values: gradOutput), choice: choice,
                                     height: h, width: w, into: gradInput, reluMask: useMask ? mask : nil)
                    XCTAssertEqual(gradInput.values.map(Double.init), expected,
                                   "\(path) \(pooling) backward \(c)x\(h)x\(w) mask \(useMask)")
                }
            }
        }
    }

    /// The stripe forms compute the rows asked from buffers holding just the rows they need, and nothing else.
    func testStripesMatchTheWholeMap() {
        var rng = SplitMix64(seed: 14)
        for pooling in Pooling.allCases {
            for (c, h, w) in [(2, 9, 7), (3, 8, 6), (1, 5, 1), (2, 10, 19)] {
                let input = tiedValues(c * h * w, using: &rng)
                let whole = Tensor(channels: c, height: h, width: w, values: input)
                let pooled = Tensor(channels: 0, height: 0, width: 0, capacity: c * h * w)
                let choice = ByteBuffer(capacity: c * (h / 2) * choiceRowBytes(width: w / 2))
                pooling.forward(whole, into: pooled, choice: choice)
                let mask = ByteBuffer(capacity: c * h * maskRowBytes(width: w))
                for k in 0 ..< mask.capacity { mask.storage[k] = UInt8.random(in: 0 ... 255, using: &rng) }
                let gradOutput = Tensor(channels: c, height: h / 2, width: w / 2,
                                        values: randomValues(c * (h / 2) * (w / 2), using: &rng))
                let wholeGradient = Tensor(channels: c, height: h, width: w)
                pooling.backward(gradOutput, choice: choice, height: h, width: w, into: wholeGradient, reluMask: mask)
                for first in 0 ..< h / 2 {
                    // Forward: pooled rows first ..< first + 1 from input rows 2·first ..< 2·first + 2.
                    let inSpan = RowSpan(first: 2 * first, rows: 2, height: h, width: w)
                    let stripe = Tensor(channels: c, height: 2, width: w)
                    for ch in 0 ..< c {
                        for y in 0 ..< 2 {
                            for x in 0 ..< w { stripe[ch, y, x] = whole[ch, 2 * first + y, x] }
                        }
                    }
                    let out = Tensor(channels: c, height: h / 2, width: w / 2)
                    // The stripe's choices in records of its own row.
                    let stripeChoice = ByteBuffer(capacity: c * choiceRowBytes(width: w / 2))
                    pooling.forward(rows: first ..< first + 1, input: stripe, inputSpan: inSpan, into: out,
                                    outputSpan: .whole(height: h / 2, width: w / 2),
                                    choice: .choices(stripeChoice, rows: first ..< first + 1, width: w / 2))
                    let unrecorded = Tensor(channels: c, height: h / 2, width: w / 2)
                    pooling.forward(rows: first ..< first + 1, input: stripe, inputSpan: inSpan, into: unrecorded,
                                    outputSpan: .whole(height: h / 2, width: w / 2), choice: nil)
                    for ch in 0 ..< c {
                        for x in 0 ..< w / 2 {
                            XCTAssertEqual(out[ch, first, x], pooled[ch, first, x], "\(pooling) forward row \(first)")
                            XCTAssertEqual(unrecorded[ch, first, x], pooled[ch, first, x], "\(pooling) forward row \(first) unrecorded")
                            let k = (ch * (h / 2) + first) * (w / 2) + x
                            if pooling == .max {
                                XCTAssertEqual(winner(stripeChoice, ch * (w / 2) + x, width: w / 2),
                                               winner(choice, k, width: w / 2))
                            }
                        }
                    }
                }
                for first in 0 ..< h {
                    for last in first + 1 ... h {
                        let span = RowSpan(first: first, rows: last - first, height: h, width: w)
                        let g = Tensor(channels: c, height: last - first, width: w)
                        pooling.backward(rows: first ..< last, gradOutput: gradOutput,
                                         gradOutputSpan: .whole(height: h / 2, width: w / 2),
                                         choice: .choices(choice, rows: 0 ..< h / 2, width: w / 2), into: g,
                                         gradInputSpan: span, reluMask: .mask(mask, rows: 0 ..< h, width: w))
                        // The same from only the pooled rows under first ..< last, in a stripe of the pooled map.
                        let pooledRows = min(h / 2, first / 2) ..< min(h / 2, (last + 1) / 2)
                        let pooledSpan = RowSpan(first: pooledRows.lowerBound, rows: pooledRows.count, height: h / 2,
                                                 width: w / 2)
                        let gradStripe = Tensor(channels: c, height: pooledRows.count, width: w / 2)
                        for ch in 0 ..< c {
                            for y in pooledRows {
                                for x in 0 ..< w / 2 { gradStripe[ch, y - pooledRows.lowerBound, x] = gradOutput[ch, y, x] }
                            }
                        }
                        // ... with the choices and the mask of those rows alone, in records of their own.
                        let stripeChoice = rowsOf(choice, channels: c, height: h / 2,
                                                  rowBytes: choiceRowBytes(width: w / 2), rows: pooledRows)
                        let stripeMask = rowsOf(mask, channels: c, height: h, rowBytes: maskRowBytes(width: w),
                                                rows: first ..< last)
                        let g2 = Tensor(channels: c, height: last - first, width: w)
                        pooling.backward(rows: first ..< last, gradOutput: gradStripe, gradOutputSpan: pooledSpan,
                                         choice: .choices(stripeChoice, rows: pooledRows, width: w / 2), into: g2,
                                         gradInputSpan: span, reluMask: .mask(stripeMask, rows: first ..< last, width: w))
                        for ch in 0 ..< c {
                            for y in first ..< last {
                                for x in 0 ..< w {
                                    XCTAssertEqual(g[ch, y - first, x], wholeGradient[ch, y, x],
                                                   "\(pooling) backward rows \(first)..<\(last)")
                                    XCTAssertEqual(g2[ch, y - first, x], wholeGradient[ch, y, x],
                                                   "\(pooling) backward rows \(first)..<\(last) from a stripe")
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

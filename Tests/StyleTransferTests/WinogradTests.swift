import CGEMM
import XCTest
@testable import Kernels
@testable import StyleTransfer

final class WinogradTests: XCTestCase {
    /// At VGG-19's channel counts, on ReLU-like (nonnegative) inputs, Winograd's F(4×4, 3×3) stays within 2·10⁻⁵ and
    /// F(6×6, 3×3) within 3·10⁻⁵ of the float64 direct convolution relative to the output's scale, forward and
    /// backward, in bands of several tile rows and of one, on every kernel path.
    func testAccuracyAtNetworkChannelCounts() throws {
        var rng = SplitMix64(seed: 7)
        for tile in WinogradTile.allCases {
        let tolerance = tile == .f4 ? 2e-5 : 3e-5
        for (ci, co, h, w) in [(64, 64, 13, 38), (256, 128, 9, 11), (512, 512, 6, 8)] {
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng).map { max($0, 0) * 100 }
            let gradOutput = randomValues(co * h * w, using: &rng)
            let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
            let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
            for (path, algorithm) in Self.pathsAndAlgorithms {
                try withKernelPath(path) {
                    let conv = Convolution(weights, threads: 2, algorithm: algorithm, tile: tile)
                    XCTAssertEqual(conv.usesPanelGEMM, algorithm == .winograd && path != .openblas)
                    for limit in [1, Int.max / 2] {
                        let scratch = Tensor(channels: 1, height: 1,
                                             width: conv.scratchCount(height: h, width: w, limit: limit))
                        let output = Tensor(channels: co, height: h, width: w)
                        conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output,
                                     reluMask: nil, scratch: scratch)
                        assertClose(output.values, forwardReference, relative: tolerance,
                                    "\(tile) \(path) \(algorithm) forward \(ci)→\(co) \(h)x\(w) limit \(limit)")
                        let gradInput = Tensor(channels: ci, height: h, width: w)
                        conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput),
                                           into: gradInput, inputMask: nil, scratch: scratch)
                        assertClose(gradInput.values, backwardReference, relative: tolerance,
                                    "\(tile) \(path) \(algorithm) backward \(ci)→\(co) \(h)x\(w) limit \(limit)")
                    }
                }
            }
        }
        }
    }

    /// Every kernel path the processor runs with the panel GEMM's algorithm, and the one path with OpenBLAS's: the
    /// products of `winogradOpenBLAS` do not depend on the path.
    private static let pathsAndAlgorithms: [(KernelPath, ConvolutionAlgorithm)] =
        supportedKernelPaths.map { ($0, .winograd) } + [(KernelPath.detected, .winogradOpenBLAS)]

    /// A scratch that holds two tile rows of a map five tile rows tall: bands of 2, 2 and 1 tile rows, the last
    /// laid out in panels of its own, with several panels per band for the panel GEMM; on every kernel path.
    func testShorterLastBand() throws {
        var rng = SplitMix64(seed: 8)
        for tile in WinogradTile.allCases {
        let (ci, co, h, w) = (16, 24, 5 * tile.output - 1, 150)
        let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
        let input = randomValues(ci * h * w, using: &rng)
        let gradOutput = randomValues(co * h * w, using: &rng)
        let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
        let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: weights)
        for (path, algorithm) in Self.pathsAndAlgorithms {
            try withKernelPath(path) {
                let conv = Convolution(weights, threads: 2, algorithm: algorithm, tile: tile)
                let scratch = Tensor(channels: 1, height: 1,
                                     width: conv.scratchCount(height: 2 * tile.output, width: w, limit: .max / 2))
                let output = Tensor(channels: co, height: h, width: w)
                conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output, reluMask: nil,
                             scratch: scratch)
                assertClose(output.values, forwardReference, relative: 2e-5, "\(tile) \(path) \(algorithm) forward")
                let gradInput = Tensor(channels: ci, height: h, width: w)
                conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput), into: gradInput,
                                   inputMask: nil, scratch: scratch)
                assertClose(gradInput.values, backwardReference, relative: 2e-5,
                            "\(tile) \(path) \(algorithm) backward")
            }
        }
        }
    }

    /// A map of many bands, which two workers then take whole each through all three steps in buffers of their own,
    /// gives the bits of one worker sharing nothing, forward and backward, on every kernel path and with bf16 pairs
    /// where the processor has them; and in single precision it is the convolution.
    func testPrivateBandsGiveTheBitsOfOneWorker() throws {
        var rng = SplitMix64(seed: 29)
        for tile in WinogradTile.allCases {
            let (ci, co) = (8, 16)
            let (h, w) = (24 * tile.output - 3, 48 * tile.output + 5)
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng)
            let gradOutput = randomValues(co * h * w, using: &rng)
            let forwardReference = naiveConvolution(input, height: h, width: w, weights: weights)
            var settings = supportedKernelPaths.filter { $0 != .openblas }.map { ($0, ProductPrecision.single) }
            if ProductPrecision.bf16.isSupported { settings.append((.avx512, .bf16)) }
            for (path, precision) in settings {
                try withKernelPath(path) {
                    var results: [[UInt32]] = []
                    for threads in [1, 2] {
                        let conv = Convolution(weights, threads: threads, algorithm: .winograd, precision: precision,
                                               tile: tile)
                        conv.winogradBandBytes = 1
                        let limit = conv.scratchCount(height: h, width: w, limit: .max / 2)
                        XCTAssertEqual(conv.winogradUsesPrivateBands(height: h, width: w, limit: limit), threads == 2,
                                       "\(tile) \(path) \(precision) \(threads) threads")
                        let scratch = Tensor(channels: 1, height: 1, width: limit)
                        let output = Tensor(channels: co, height: h, width: w)
                        conv.forward(Tensor(channels: ci, height: h, width: w, values: input), into: output,
                                     reluMask: nil, scratch: scratch)
                        let gradInput = Tensor(channels: ci, height: h, width: w)
                        conv.backwardInput(Tensor(channels: co, height: h, width: w, values: gradOutput),
                                           into: gradInput, inputMask: nil, scratch: scratch)
                        // bf16's accuracy is KernelPathTests.testBF16WinogradProductsOnlyWhereTheyRun's.
                        if threads == 2 && precision == .single {
                            assertClose(output.values, forwardReference, relative: 3e-5,
                                        "\(tile) \(path) forward")
                        }
                        results.append((output.values + gradInput.values).map(\.bitPattern))
                    }
                    XCTAssertEqual(results[1], results[0], "\(tile) \(path) \(precision)")
                }
            }
        }
    }

    /// With bf16 products, the kernel and the input tiles made in bfloat16 pairs give the bits of the float ones that
    /// the products round: forward and backward, both tiles, in bands of several panels with a shorter last one, a map
    /// whose width is no multiple of the tile's.
    func testTransformsToBF16PairsGiveTheSameBits() throws {
        try XCTSkipUnless(ProductPrecision.bf16.isSupported && KernelPath.current == .avx512,
                          "the processor has no AVX512_BF16")
        var rng = SplitMix64(seed: 23)
        for tile in WinogradTile.allCases {
            let (ci, co, h, w) = (16, 40, 5 * tile.output - 1, 150)
            let weights = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let input = randomValues(ci * h * w, using: &rng), gradOutput = randomValues(co * h * w, using: &rng)
            let results = [false, true].map { pairs in
                let (output, gradInput) = Self.forwardAndBackward(weights, precision: .bf16, tile: tile, pairs: pairs,
                                                                  input: input, gradient: gradOutput, height: h,
                                                                  width: w)
                return output + gradInput
            }
            XCTAssertGreaterThan(results[0].map { abs($0) }.max()!, 0)
            XCTAssertEqual(results[1].map(\.bitPattern), results[0].map(\.bitPattern), "\(tile)")
        }
    }

    /// With half-precision products, the input tiles written in half-precision pairs (each band's slices of 256
    /// channels scaled by the bound of their input rows) give what the float tiles give, each product scaling and
    /// rounding its own: forward and backward, both tiles, a band of several panels with a shorter last one, two slices
    /// of channels a thousand times apart, at magnitudes from 10⁻²⁰ to 10²⁰ of float's range (half precision's own
    /// reaches from 6 · 10⁻⁸ to 65504). Equal to within 10⁻⁴ of the largest value (they differ only where a scaled
    /// value falls below half precision's normal range), and within 3 % in norm of the float64 convolution.
    func testHalfPairsGiveWhatTheFloatTilesGive() throws {
        try XCTSkipUnless(ProductPrecision.half.isSupported && KernelPath.current == .avx512,
                          "the processor has no AVX512_FP16")
        var rng = SplitMix64(seed: 37)
        for tile in WinogradTile.allCases {
            let (ci, co, h, w) = (264, 16, 3 * tile.output - 1, 70)
            // No bias, which would not scale with the input.
            let random = randomConvWeights(inChannels: ci, outChannels: co, using: &rng)
            let weights = ConvLayerWeights(name: "conv", inChannels: ci, outChannels: co, kernel: random.kernel,
                                           bias: [Float](repeating: 0, count: co))
            var values = randomValues(ci * h * w, using: &rng)
            for index in 256 * h * w ..< values.count { values[index] *= 1000 }
            let gradient = randomValues(co * h * w, using: &rng)
            let expected = naiveConvolution(values, height: h, width: w, weights: weights)
            let expectedGradient = naiveConvolutionInputGradient(gradient, height: h, width: w, weights: weights)
            for magnitude: Float in [1, 1e-20, 1e20] {
                let results = [false, true].map { pairs in
                    let (output, gradInput) = Self.forwardAndBackward(
                        weights, precision: .half, tile: tile, pairs: pairs, input: values.map { $0 * magnitude },
                        gradient: gradient.map { $0 * magnitude }, height: h, width: w)
                    let label = "\(tile) \(magnitude) pairs \(pairs)"
                    XCTAssertLessThan(relativeError(output, expected.map { $0 * Double(magnitude) }), 3e-2, label)
                    XCTAssertLessThan(relativeError(gradInput, expectedGradient.map { $0 * Double(magnitude) }), 3e-2,
                                      label)
                    return output + gradInput
                }
                let largest = results[0].reduce(Float(0)) { max($0, abs($1)) }
                XCTAssertGreaterThan(largest, 0)
                for (pair, float) in zip(results[1], results[0]) {
                    XCTAssertLessThanOrEqual(abs(pair - float), 1e-4 * largest, "\(tile) \(magnitude)")
                }
            }
        }
    }

    /// The forward pass of `input` and the input gradient of `gradient` (height × width maps) through a Winograd
    /// convolution of `weights` asked for `precision` products (which must run) and `tile`, with its input tiles in
    /// pairs or in floats, in bands of two tile rows.
    private static func forwardAndBackward(_ weights: ConvLayerWeights, precision: ProductPrecision, tile: WinogradTile,
                                           pairs: Bool, input: [Float], gradient: [Float], height: Int, width: Int)
        -> (output: [Float], gradInput: [Float]) {
        let (ci, co) = (weights.inChannels, weights.outChannels)
        let conv = Convolution(weights, threads: 2, algorithm: .winograd, precision: precision, tile: tile)
        XCTAssertEqual(conv.productPrecision, precision)
        conv.usesPairs = pairs
        let scratch = Tensor(channels: 1, height: 1,
                             width: conv.scratchCount(height: 2 * tile.output, width: width, limit: .max / 2))
        let output = Tensor(channels: co, height: height, width: width)
        conv.forward(Tensor(channels: ci, height: height, width: width, values: input), into: output, reluMask: nil,
                     scratch: scratch)
        let gradInput = Tensor(channels: ci, height: height, width: width)
        conv.backwardInput(Tensor(channels: co, height: height, width: width, values: gradient), into: gradInput,
                           inputMask: nil, scratch: scratch)
        return (output.values, gradInput.values)
    }

    /// ‖actual − expected‖ / ‖expected‖.
    private func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
        let difference = zip(actual, expected).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
        return (difference / expected.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
    }

    /// The tile transforms (input, input in bfloat16 pairs and in half-precision pairs, output) give the same bits on
    /// every own kernel path, at widths that take the eight-tile register paths, their scalar tails, and a last group
    /// of fewer than eight tiles (tile rows of 2, 8, 9, 16, 17 and 38 tiles); they compute Bᵀ d B and Aᵀ M A of the
    /// matrices in Winograd.swift, with each value at its place; and each half-precision pair holds the float
    /// transform's values times the scale, rounded as Swift's Float16 rounds.
    func testTransformsGiveTheSameBitsOnEveryPath() throws {
        let paths = supportedKernelPaths.filter { $0 != .openblas }
        XCTAssertTrue(paths.contains(.portable))
        var rng = SplitMix64(seed: 31)
        for tile in WinogradTile.allCases {
            for width in [5, 31, 8 * tile.output + 3, 150, 8 * tile.output, 16 * tile.output, 16 * tile.output + 1] {
                let (channels, height) = (4, 2 * tile.output + 1)
                let grid = WinogradGrid(tile: tile, rows: 0 ..< height, height: height, width: width)
                let span = RowSpan.whole(height: height, width: width)
                let panels = WinogradPanels.cgemm(tiles: grid.tilesY * grid.tilesX)
                let input = randomValues(channels * height * width, using: &rng)
                let stride = winogradPositionStride(channels: channels, count: panels.count)
                let pairStride = winogradPositionStride(channels: channels / 2, count: panels.count)
                let products = randomValues(tile.positions * stride, using: &rng)
                var results: [[UInt32]] = []
                for path in paths {
                    try withKernelPath(path) {
                        var work = [Float](repeating: 0, count: grid.workCount)
                        var floats = [Float](repeating: 0, count: tile.positions * stride)
                        var pairs = [UInt32](repeating: 0, count: tile.positions * pairStride)
                        var halfPairs = [UInt32](repeating: 0, count: tile.positions * pairStride)
                        let halfScales: [Float] = [0.125]
                        var output = [Float](repeating: 0, count: channels * height * width)
                        input.withUnsafeBufferPointer { input in
                            winogradInputTransform(input.baseAddress!, span: span, grid: grid, channels: 0 ..< channels,
                                                   channelCount: channels, tileRows: 0 ..< grid.tilesY, panels: panels,
                                                   into: &floats, work: &work)
                            winogradInputTransformPairs(input.baseAddress!, span: span, grid: grid,
                                                        pairs: 0 ..< channels / 2, channelCount: channels,
                                                        tileRows: 0 ..< grid.tilesY, panels: panels, into: &pairs,
                                                        work: &work)
                            winogradInputTransformPairs(input.baseAddress!, span: span, grid: grid,
                                                        pairs: 0 ..< channels / 2, channelCount: channels,
                                                        tileRows: 0 ..< grid.tilesY, panels: panels, into: &halfPairs,
                                                        work: &work, halfScales: halfScales)
                        }
                        winogradOutputTransform(products, channels: 0 ..< channels, channelCount: channels,
                                                tileRows: 0 ..< grid.tilesY, tileStride: panels.count, grid: grid,
                                                into: &output, span: span, work: &work) { _, _, _ in }
                        results.append(floats.map(\.bitPattern) + pairs + halfPairs + output.map(\.bitPattern))
                        guard path == paths[0] else { return }
                        let (transformed, places) = Self.inputTransformReference(input, grid: grid, channels: channels)
                        assertClose(places.map { floats[$0.position * stride
                                                        + panels.offset(channel: $0.channel, channels: channels,
                                                                        tile: $0.tile)] },
                                    transformed, relative: 1e-6, "\(tile) \(width) input")
                        // Channel c's value in the low (even c) or high half of its pair's word.
                        let halves = places.map { place -> Float in
                            let word = pairs[place.position * pairStride
                                             + panels.offset(channel: place.channel / 2, channels: channels / 2,
                                                             tile: place.tile)]
                            return Float(bitPattern: place.channel % 2 == 0 ? word << 16 : word & 0xFFFF_0000)
                        }
                        assertClose(halves, transformed, relative: 1.0 / 128, "\(tile) \(width) input pairs")
                        for place in places {
                            let word = halfPairs[place.position * pairStride
                                                 + panels.offset(channel: place.channel / 2, channels: channels / 2,
                                                                 tile: place.tile)]
                            let float = floats[place.position * stride
                                               + panels.offset(channel: place.channel, channels: channels,
                                                               tile: place.tile)]
                            XCTAssertEqual(place.channel % 2 == 0 ? word & 0xFFFF : word >> 16,
                                           UInt32(Float16(float * halfScales[0]).bitPattern),
                                           "\(tile) \(width) half pair at \(place)")
                        }
                        assertClose(output, Self.outputTransformReference(products, grid: grid, channels: channels,
                                                                          tileStride: panels.count),
                                    relative: 1e-6, "\(tile) \(width) output")
                    }
                }
                for (path, result) in zip(paths, results) {
                    XCTAssertEqual(result, results[0], "\(tile) width \(width): \(path) against \(paths[0])")
                }
            }
        }
    }

    /// cgemm_winograd_input_gain is the most Bᵀ d B can grow the largest magnitude of d: the square of the largest sum
    /// of magnitudes of a row of the matrices in Winograd.swift, reached by the tile whose values have the signs of
    /// that position's coefficients. And winogradHalfTileScales scales each slice of 256 channels so that that bound
    /// on its band's tiles lies in [2³, 2⁴): over only the input rows the band's tiles read, the channels of other
    /// slices (a thousand times larger here) and the rows of other bands (ten thousand times) left out, and over all
    /// of a slice's channels when the workers share fewer than a slice.
    func testInputGainAndHalfTileScales() {
        for tile in WinogradTile.allCases {
            let (alpha, bT) = (tile.input, Self.bTMatrices[tile]!)
            let sums = bT.map { $0.reduce(0) { $0 + abs($1) } }, largestSum = sums.max()!
            let gain = cgemm_winograd_input_gain(Int32(tile.output))
            XCTAssertEqual(Double(gain), largestSum * largestSum, "\(tile)")
            // One tile of a map α − 2 square (its rows and columns −1 … α − 2, the first and last outside, zeros) with
            // the signs of position (widest, widest), magnitude 3, for a widest row whose first and last coefficients
            // are zero: the transform's value there is gain · 3.
            let widest = sums.indices.first { sums[$0] == largestSum && bT[$0][0] == 0 && bT[$0][alpha - 1] == 0 }!
            let side = alpha - 2
            let grid = WinogradGrid(tile: tile, rows: 0 ..< side, height: side, width: side)
            let panels = WinogradPanels.cgemm(tiles: 1)
            let input = (0 ..< side * side).map { index -> Float in
                let (u, v) = (index / side + 1, index % side + 1)
                return bT[widest][u] * bT[widest][v] < 0 ? -3 : 3
            }
            var work = [Float](repeating: 0, count: grid.workCount)
            var floats = [Float](repeating: 0, count: tile.positions * winogradPositionStride(channels: 1, count: 1))
            input.withUnsafeBufferPointer {
                winogradInputTransform($0.baseAddress!, span: .whole(height: side, width: side), grid: grid,
                                       channels: 0 ..< 1, channelCount: 1, tileRows: 0 ..< 1, panels: panels,
                                       into: &floats, work: &work)
            }
            let position = widest * alpha + widest
            XCTAssertEqual(abs(floats[position * winogradPositionStride(channels: 1, count: 1)]), 3 * gain, "\(tile)")

            // Scales: 264 channels (two slices), 4 tile rows, the band of tile rows 1 ..< 3.
            let (channels, width, m) = (264, 20, tile.output)
            let height = 4 * m
            let bandGrid = WinogradGrid(tile: tile, rows: 0 ..< height, height: height, width: width)
            var map = [Float](repeating: 0, count: channels * height * width)
            for c in 0 ..< channels {
                for y in 0 ..< height {
                    for x in 0 ..< width {
                        // Inside the band's rows (m − 1 ..< 3m + 1): 0.5 in the first slice, up to 500 in the second;
                        // elsewhere 5000.
                        let inside = (m - 1 ..< 3 * m + 1).contains(y)
                        map[(c * height + y) * width + x] = !inside ? 5000 : c < 256 ? 0.5 : Float(c - 255) * 500 / 8
                    }
                }
            }
            map[(3 * height + m - 1) * width + 7] = -0.75  // the first slice's largest magnitude, on the band's first row
            var scales = [Float](repeating: 0, count: 2)
            map.withUnsafeBufferPointer {
                winogradHalfTileScales($0.baseAddress!, span: .whole(height: height, width: width), grid: bandGrid,
                                       channelCount: channels, tileRows: 1 ..< 3, workers: 2, into: &scales)
            }
            for (s, largest) in [Float(0.75), 500].enumerated() {
                let bound = largest * gain * scales[s]
                XCTAssertTrue(bound >= 8 && bound < 16, "\(tile) slice \(s): \(largest) · \(gain) · \(scales[s])")
                XCTAssertEqual(scales[s], Float(sign: .plus, exponent: scales[s].exponent, significand: 1))
            }
            // Fewer channels than a slice, shared between two workers: the largest in the second worker's share.
            var few = [Float](repeating: 0.25, count: 40 * height * width)
            few[(30 * height + 2 * m) * width + 3] = 6
            var scale: Float = 0
            few.withUnsafeBufferPointer {
                winogradHalfTileScales($0.baseAddress!, span: .whole(height: height, width: width), grid: bandGrid,
                                       channelCount: 40, tileRows: 1 ..< 3, workers: 2, into: &scale)
            }
            XCTAssertTrue(6 * gain * scale >= 8 && 6 * gain * scale < 16, "\(tile): 6 · \(gain) · \(scale)")
        }
    }

    /// Bᵀ d B of every tile of every channel in float64, d the input around the tile (zero outside the map), each value
    /// with its position, channel and tile (numbered as in a band).
    private static func inputTransformReference(_ input: [Float], grid: WinogradGrid, channels: Int)
        -> (values: [Double], places: [(position: Int, channel: Int, tile: Int)]) {
        let (m, alpha, bT) = (grid.tile.output, grid.tile.input, Self.bTMatrices[grid.tile]!)
        var values: [Double] = [], places: [(position: Int, channel: Int, tile: Int)] = []
        for r in 0 ..< grid.tilesY {
            for x in 0 ..< grid.tilesX {
                for c in 0 ..< channels {
                    func d(_ u: Int, _ v: Int) -> Double {
                        let (y, column) = (m * r - 1 + u, m * x - 1 + v)
                        guard (0 ..< grid.height).contains(y), (0 ..< grid.width).contains(column) else { return 0 }
                        return Double(input[(c * grid.height + y) * grid.width + column])
                    }
                    for position in 0 ..< alpha * alpha {
                        let (i, k) = (position / alpha, position % alpha)
                        var sum = 0.0
                        for u in 0 ..< alpha { for v in 0 ..< alpha { sum += bT[i][u] * d(u, v) * bT[k][v] } }
                        values.append(sum)
                        places.append((position, c, r * grid.tilesX + x))
                    }
                }
            }
        }
        return (values, places)
    }

    /// Aᵀ M A of every tile in float64, each output value placed at its row and column of the map.
    private static func outputTransformReference(_ products: [Float], grid: WinogradGrid, channels: Int,
                                                 tileStride: Int) -> [Double] {
        let (m, alpha, aT) = (grid.tile.output, grid.tile.input, Self.aTMatrices[grid.tile]!)
        let stride = winogradPositionStride(channels: channels, count: tileStride)
        var output = [Double](repeating: 0, count: channels * grid.height * grid.width)
        for c in 0 ..< channels {
            for r in 0 ..< grid.tilesY {
                for x in 0 ..< grid.tilesX {
                    let t = r * grid.tilesX + x
                    for i in 0 ..< m {
                        for j in 0 ..< m {
                            let (y, column) = (m * r + i, m * x + j)
                            guard y < grid.height, column < grid.width else { continue }
                            var sum = 0.0
                            for u in 0 ..< alpha {
                                for v in 0 ..< alpha {
                                    sum += aT[i][u] * Double(products[(u * alpha + v) * stride + c * tileStride + t])
                                        * aT[j][v]
                                }
                            }
                            output[(c * grid.height + y) * grid.width + column] = sum
                        }
                    }
                }
            }
        }
        return output
    }

    /// The transformed kernel serves the input gradient through the turned positions: G·J = D·P·G exactly.
    func testTurnedKernelIsAScaledPermutation() {
        let kernel: [Float] = (0 ..< 9).map { Float($0 * $0 % 7) - 2.5 }
        let turned: [Float] = kernel.reversed()
        for tile in WinogradTile.allCases {
            let side = tile.input
            var u = [Float](repeating: 0, count: tile.positions), v = u
            kernel.withUnsafeBufferPointer {
                winogradTransformKernel($0.baseAddress!, tile: tile, outChannels: 1, inChannels: 1, outputs: 0 ..< 1,
                                        panelRows: 1, into: &u)
            }
            turned.withUnsafeBufferPointer {
                winogradTransformKernel($0.baseAddress!, tile: tile, outChannels: 1, inChannels: 1, outputs: 0 ..< 1,
                                        panelRows: 1, into: &v)
            }
            for i in 0 ..< side {
                for k in 0 ..< side {
                    let expected = tile.turnedScale[i] * tile.turnedScale[k] * u[tile.turned[i] * side + tile.turned[k]]
                    XCTAssertEqual(v[i * side + k], expected, accuracy: 1e-6 * max(1, abs(expected)),
                                   "\(tile) position \(i), \(k)")
                }
            }
        }
    }

    /// G of each algorithm, as the comment in Winograd.swift writes it.
    private static let gMatrices: [WinogradTile: [[Double]]] = [
        .f4: [[0.5, 0, 0], [1.0 / 18, 1.0 / 18, 1.0 / 18], [-0.5, 0.5, -0.5], [1.0 / 18, -1.0 / 9, 2.0 / 9],
              [16.0 / 9, -8.0 / 9, 4.0 / 9], [0, 0, 0.5]],
        .f6: [[0.25, 0, 0], [-1.0 / 18, -1.0 / 18, -1.0 / 18], [-1.0 / 18, 1.0 / 18, -1.0 / 18],
              [1.0 / 360, 1.0 / 180, 1.0 / 90], [1.0 / 360, -1.0 / 180, 1.0 / 90], [16.0 / 45, 8.0 / 45, 4.0 / 45],
              [16.0 / 45, -8.0 / 45, 4.0 / 45], [0, 0, 0.25]],
    ]

    /// Aᵀ and Bᵀ as the comment in Winograd.swift writes them.
    private static let aTMatrices: [WinogradTile: [[Double]]] = [
        .f4: [[1, 1, 1, 1, 1, 0], [0, 1, -1, -2, -0.5, 0], [0, 1, 1, 4, 0.25, 0], [0, 1, -1, -8, -0.125, 1]],
        .f6: [[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0.5, -0.5, 0], [0, 1, 1, 4, 4, 0.25, 0.25, 0],
              [0, 1, -1, 8, -8, 0.125, -0.125, 0], [0, 1, 1, 16, 16, 1.0 / 16, 1.0 / 16, 0],
              [0, 1, -1, 32, -32, 1.0 / 32, -1.0 / 32, 1]],
    ]
    private static let bTMatrices: [WinogradTile: [[Double]]] = [
        .f4: [[2, 5, 0, -5, -2, 0], [0, 2, 7, 7, 2, 0], [0, -2, -3, 3, 2, 0], [0, -1, -2, 1, 2, 0], [0, -2, -1, 2, 1, 0],
              [0, -2, -5, 0, 5, 2]],
        .f6: [[4, 0, -21, 0, 21, 0, -4, 0], [0, 4, 4, -17, -17, 4, 4, 0], [0, -4, 4, 17, -17, -4, 4, 0],
              [0, 2, 1, -10, -5, 8, 4, 0], [0, -2, 1, 10, -5, -8, 4, 0], [0, 4, 8, -5, -10, 1, 2, 0],
              [0, -4, 8, 5, -10, -1, 2, 0], [0, -4, 0, 21, 0, -21, 0, 4]],
    ]

    /// Aᵀ and Bᵀ of F(6×6, 3×3) as the comment in Winograd.swift writes them: with G above, Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A is
    /// the correlation of d with g, in float64 on random tiles (so the matrices the C transforms compute are the ones
    /// the comment gives, and G is their partner).
    func testF6MatricesComputeTheCorrelation() {
        let (aT, bT, g) = (Self.aTMatrices[.f6]!, Self.bTMatrices[.f6]!, Self.gMatrices[.f6]!)
        var rng = SplitMix64(seed: 13)
        let d = randomValues(64, using: &rng).map(Double.init), k = randomValues(9, using: &rng).map(Double.init)
        func product(_ a: [[Double]], _ b: [[Double]]) -> [[Double]] {
            a.map { row in (0 ..< b[0].count).map { j in zip(row, b).reduce(0) { $0 + $1.0 * $1.1[j] } } }
        }
        func transpose(_ a: [[Double]]) -> [[Double]] { (0 ..< a[0].count).map { j in a.map { $0[j] } } }
        let tile = (0 ..< 8).map { Array(d[8 * $0 ..< 8 * $0 + 8]) }, kernel = (0 ..< 3).map { Array(k[3 * $0 ..< 3 * $0 + 3]) }
        let u = product(product(g, kernel), transpose(g)), v = product(product(bT, tile), transpose(bT))
        let y = product(product(aT, zip(u, v).map { zip($0, $1).map(*) }), transpose(aT))
        for i in 0 ..< 6 {
            for j in 0 ..< 6 {
                var expected = 0.0
                for ky in 0 ..< 3 { for kx in 0 ..< 3 { expected += tile[i + ky][j + kx] * kernel[ky][kx] } }
                XCTAssertEqual(y[i][j], expected, accuracy: 1e-12, "output \(i), \(j)")
            }
        }
    }

    /// The kernel transform against G g Gᵀ in float64 written out with the matrices of the comment in Winograd.swift,
    /// for channel counts that leave partial vectors and partial blocks, and for a slice of the output channels, in the
    /// plain order and in panels of 8 and 16 output channels.
    func testKernelTransformMatchesTheMatrices() {
        var rng = SplitMix64(seed: 11)
        for tile in WinogradTile.allCases {
            let gMatrix = Self.gMatrices[tile]!, side = tile.input
            for (co, ci, panelRows) in [(3, 1, 1), (2, 37, 1), (5, 70, 1), (8, 37, 8), (24, 70, 8), (32, 9, 16)] {
                let kernel = randomValues(co * ci * 9, using: &rng)
                let plane = co * ci
                var transformed = [Float](repeating: .nan, count: tile.positions * plane)
                let outputs = co > 2 ? 1 ..< co - 1 : 0 ..< co
                kernel.withUnsafeBufferPointer { k in
                    transformed.withUnsafeMutableBufferPointer { t in
                        winogradTransformKernel(k.baseAddress!, tile: tile, outChannels: co, inChannels: ci,
                                                outputs: outputs, panelRows: panelRows, into: t.baseAddress!)
                    }
                }
                for o in 0 ..< co {
                    for i in 0 ..< ci {
                        for r in 0 ..< side {
                            for c in 0 ..< side {
                                let value = transformed[(r * side + c) * plane + (o / panelRows) * panelRows * ci
                                                        + i * panelRows + o % panelRows]
                                guard outputs.contains(o) else {
                                    XCTAssertTrue(value.isNaN, "channel \(o) outside the slice was written")
                                    continue
                                }
                                var expected = 0.0
                                for ky in 0 ..< 3 {
                                    for kx in 0 ..< 3 {
                                        expected += gMatrix[r][ky] * Double(kernel[(o * ci + i) * 9 + ky * 3 + kx])
                                            * gMatrix[c][kx]
                                    }
                                }
                                XCTAssertEqual(Double(value), expected, accuracy: 1e-6 * max(1, abs(expected)),
                                               "\(tile) \(co)x\(ci) o \(o) i \(i) position \(r), \(c)")
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every Winograd layer of VGG-19 with its real weights (its first 64 output channels, to keep the float64
    /// reference quick), on its real input (a 12×14 crop of the photo's maps at 128×96, made with im2col, or the whole
    /// map where it is smaller) and a random output gradient: F(6×6, 3×3) stays within 10⁻⁵ of the float64 direct
    /// convolution (in norm, forward and backward), as F(4×4, 3×3) does. With bf16 products, where the processor runs
    /// them, the operands' rounding dominates both: F(6×6) forward stays within 2 % and within twice F(4×4)'s error,
    /// and backward, on white noise (which the transforms amplify most), within 8 % and 3 times F(4×4)'s.
    func testF6AccuracyOnEveryLayer() throws {
        let weights = try projectWeights()
        let (width, height) = (128, 96)
        let small = try ReferenceTests.readPPM(ReferenceTests.fixtures.appendingPathComponent("chelsea-64x48.ppm"),
                                               width: 64, height: 48)
        let photo = resample(small, channels: 3, height: 48, width: 64, toHeight: height, toWidth: width)
        // Each convolution's input: the ReLU before it, or the pooling at the end of the block before.
        let inputs = ["relu1_1", "pool1", "relu2_1", "pool2", "relu3_1", "relu3_2", "relu3_3", "pool3", "relu4_1",
                      "relu4_2", "relu4_3", "pool4"]
        let convolutions = ["conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "conv4_1",
                            "conv4_2", "conv4_3", "conv4_4", "conv5_1"]
        let maps = try VGG19(weights: weights, convolution: .im2col)
            .activations(image: photo, height: height, width: width, layers: Set(inputs))
        func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
            let difference = zip(actual, expected).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
            return (difference / expected.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
        }
        var rng = SplitMix64(seed: 14)
        let precisions: [ProductPrecision] = ProductPrecision.bf16.isSupported && KernelPath.current == .avx512
            ? [.single, .bf16] : [.single]
        for (name, inputName) in zip(convolutions, inputs) {
            let whole = try XCTUnwrap(weights.layer(named: name)), wholeMap = try XCTUnwrap(maps[inputName])
            let outputs = min(64, whole.outChannels), channels = whole.inChannels
            let layer = ConvLayerWeights(name: name, inChannels: channels, outChannels: outputs,
                                         kernel: Array(whole.kernel.prefix(outputs * channels * 9)),
                                         bias: Array(whole.bias.prefix(outputs)))
            let (h, w) = (min(12, wholeMap.height), min(14, wholeMap.width))
            let (top, left) = ((wholeMap.height - h) / 2, (wholeMap.width - w) / 2)
            var crop = [Float](repeating: 0, count: channels * h * w)
            for c in 0 ..< channels {
                for y in 0 ..< h {
                    for x in 0 ..< w {
                        crop[(c * h + y) * w + x] = wholeMap.values[(c * wholeMap.height + top + y) * wholeMap.width + left + x]
                    }
                }
            }
            let map = Tensor(channels: channels, height: h, width: w, values: crop)
            let gradOutput = randomValues(layer.outChannels * h * w, using: &rng)
            let forwardReference = naiveConvolution(map.values, height: h, width: w, weights: layer)
            let backwardReference = naiveConvolutionInputGradient(gradOutput, height: h, width: w, weights: layer)
            for precision in precisions {
                var errors: [WinogradTile: (Double, Double)] = [:]
                for tile in WinogradTile.allCases {
                    let conv = Convolution(layer, threads: 2, precision: precision, tile: tile)
                    let scratch = Tensor(channels: 1, height: 1, width: conv.scratchCount(height: h, width: w, limit: 1 << 22))
                    let output = Tensor(channels: layer.outChannels, height: h, width: w)
                    conv.forward(map, into: output, reluMask: nil, scratch: scratch)
                    let gradInput = Tensor(channels: layer.inChannels, height: h, width: w)
                    conv.backwardInput(Tensor(channels: layer.outChannels, height: h, width: w, values: gradOutput),
                                       into: gradInput, inputMask: nil, scratch: scratch)
                    errors[tile] = (relativeError(output.values, forwardReference),
                                    relativeError(gradInput.values, backwardReference))
                }
                let (f4, f6) = (errors[.f4]!, errors[.f6]!)
                let what = "\(name) \(h)x\(w) \(precision): F(4×4) \(f4), F(6×6) \(f6)"
                if precision == .single {
                    XCTAssertLessThan(max(f6.0, f6.1), 1e-5, what)
                    XCTAssertLessThan(max(f4.0, f4.1), 1e-5, what)
                } else {
                    XCTAssertLessThan(f6.0, min(2e-2, 2 * f4.0), what)
                    XCTAssertLessThan(f6.1, min(8e-2, 3 * f4.1), what)
                }
            }
        }
    }

    /// Convolutions sharing one slot for their transformed kernels give the same bits as convolutions that keep their
    /// own, in any order of use, and remake a kernel only when another convolution used the slot in between.
    func testSharedKernelSlotGivesTheKeptKernelsResults() {
        var rng = SplitMix64(seed: 12)
        let (h, w) = (9, 10)
        let layers = [randomConvWeights(inChannels: 16, outChannels: 24, using: &rng),
                      randomConvWeights(inChannels: 24, outChannels: 8, using: &rng)]
        let slot = TransformedKernelSlot(capacity: 64 * 16 * 24)
        let shared = layers.map { Convolution($0, threads: 2, algorithm: .winograd, kernelSlot: slot) }
        let kept = layers.map { Convolution($0, threads: 2, algorithm: .winograd) }
        let scratch = Tensor(channels: 1, height: 1, width: 1 << 20)
        let input = Tensor(channels: 16, height: h, width: w, values: randomValues(16 * h * w, using: &rng))
        func run(_ convs: [Convolution]) -> [Float] {
            let middle = Tensor(channels: 24, height: h, width: w), output = Tensor(channels: 8, height: h, width: w)
            convs[0].forward(input, into: middle, reluMask: nil, scratch: scratch)
            convs[1].forward(middle, into: output, reluMask: nil, scratch: scratch)
            let back = Tensor(channels: 24, height: h, width: w), image = Tensor(channels: 16, height: h, width: w)
            convs[1].backwardInput(output, into: back, inputMask: nil, scratch: scratch)
            convs[0].backwardInput(back, into: image, inputMask: nil, scratch: scratch)
            return middle.values + output.values + back.values + image.values
        }
        let expected = run(kept)
        XCTAssertEqual(run(shared), expected)
        // Forward 0, 1, backward 1 (still there), 0: three fills; the second round starts with 0 still there: two.
        XCTAssertEqual(slot.fills, 3)
        XCTAssertEqual(run(shared), expected)
        XCTAssertEqual(slot.fills, 5)
        XCTAssertEqual(slot.allocatedBytes, 64 * 16 * 24 * 4)
        XCTAssertEqual(shared.map(\.allocatedBytes), [0, 0])
        // Kept instead, they give the same bits again, fill the slot no more, and free their kernels when let go.
        for convolution in shared { convolution.keepsKernel = true }
        XCTAssertEqual(run(shared), expected)
        XCTAssertEqual(slot.fills, 5)
        XCTAssertEqual(shared.map(\.allocatedBytes), [64 * 16 * 24 * 4, 64 * 24 * 8 * 4])
        for convolution in shared { convolution.keepsKernel = false }
        XCTAssertEqual(shared.map(\.allocatedBytes), [0, 0])
        XCTAssertEqual(run(shared), expected)
    }
}

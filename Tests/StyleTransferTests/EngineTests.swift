import XCTest
@testable import Kernels
@testable import StyleTransfer

/// The one engine over row spans: its geometry and plans as pure code, and every layer as a loss in stripes against
/// whole maps.
final class EngineTests: XCTestCase {
    private func image(width: Int, height: Int, seed: UInt64) -> RGBImage {
        var rng = SplitMix64(seed: seed)
        return RGBImage(width: width, height: height,
                        pixels: (0 ..< 3 * width * height).map { _ in Float.random(in: 0 ... 1, using: &rng) })
    }

    /// Each of conv1_1 … pool5 as the content layer and the style layer at once, at a size where its block runs in
    /// stripes: each loss term and the image gradient agree with whole maps to 1e-5. With im2col, whose products
    /// run one map row at a time, a stripe's activations are the whole map's bit for bit, so that no ReLU or pooling
    /// choice can flip between the two runs and the comparison measures the engine alone.
    func testEveryLayerAsALossInStripesMatchesWholeMaps() throws {
        let (width, height) = (Stylizer.minimumSide, 72)
        let content = image(width: width, height: height, seed: 1)
        let style = image(width: 23, height: 41, seed: 2)
        let size = Stylizer.Size(width: width, height: height)
        let point = image(width: width, height: height, seed: 3).pixels
        for layer in VGGLayer.all {
            var results: [(terms: LossTerms, gradient: [Float])] = []
            // Whole maps, the first layer kept or recomputed; one striped segment through the layer's block, its masks
            // recorded by each stripe's replay or whole by the forward pass; below block 1, also a second striped
            // segment for the layer's block, from the whole map the first ends with.
            var stripings: [Striping] = [.wholeMaps, .wholeMapsRecomputingFirstLayer,
                                         .stripes(rows: 8, blocks: layer.block),
                                         .segments([StripedSegment(rows: 8, throughBlock: layer.block, recordsWhole: true)])]
            if layer.block > 1 {
                stripings.append(.segments([StripedSegment(rows: 8, throughBlock: layer.block - 1),
                                            StripedSegment(rows: max(2, (height >> (layer.block - 1)) / 4),
                                                           throughBlock: layer.block)]))
            }
            for striping in stripings {
                var options = Options()
                options.contentLayers = [Options.WeightedLayer(layer)]
                options.styleLayers = [Options.WeightedLayer(layer)]
                options.contentWeight = 1
                options.styleWeight = 1e3
                let stylizer = try Stylizer(weights: randomVGGWeights, options: options, styles: [style],
                                            convolution: .im2col)
                stylizer.network.striping = striping
                let problem = try stylizer.problem(content: content, size: size)
                var gradient = [Float](repeating: 0, count: point.count)
                _ = try point.withUnsafeBufferPointer { x in
                    try gradient.withUnsafeMutableBufferPointer { try problem.evaluate(x, gradient: $0) }
                }
                let stripes = stylizer.network.stripeCounts
                switch striping {
                case .wholeMaps, .wholeMapsRecomputingFirstLayer: XCTAssertEqual(stripes, [1], "\(layer): whole")
                case .segments(let segments):
                    XCTAssertEqual(stripes.count, segments.count, "\(layer): \(segments.count) segments")
                    XCTAssertTrue(stripes.allSatisfy { $0 > 1 }, "\(layer): \(stripes) stripes")
                case .budget: XCTFail("no budget here")
                }
                results.append((problem.lastTerms, gradient))
            }
            let whole = results[0]
            XCTAssertGreaterThan(whole.terms.content, 0, "\(layer)")
            XCTAssertGreaterThan(whole.terms.style, 0, "\(layer)")
            for (k, striped) in results.enumerated().dropFirst() {
                let label = "\(layer) \(stripings[k])"
                XCTAssertEqual(striped.terms.content, whole.terms.content, accuracy: 1e-5 * whole.terms.content, label)
                XCTAssertEqual(striped.terms.style, whole.terms.style, accuracy: 1e-5 * whole.terms.style, label)
                assertClose(striped.gradient, whole.gradient.map(Double.init), relative: 1e-5, "\(label) gradient")
            }
        }
    }

    /// The gradient at the map between two segments is written over that map, unless a loss reads it: with relu3_1's
    /// losses alone, and with pool2's too, a second segment in stripes (its gradient settling row by row) or whole
    /// matches whole maps to 1e-5.
    func testSegmentsHandTheirGradientBackOverTheMapBetweenThem() throws {
        let (width, height) = (Stylizer.minimumSide, 72)
        let content = image(width: width, height: height, seed: 4)
        let style = image(width: 31, height: 27, seed: 5)
        let point = image(width: width, height: height, seed: 6).pixels
        let relu3_1 = VGGLayer("relu3_1")!, pool2 = VGGLayer("pool2")!
        for layers in [[relu3_1], [relu3_1, pool2]] {
            var results: [(terms: LossTerms, gradient: [Float])] = []
            let stripings: [Striping] = [
                .wholeMaps,
                .segments([StripedSegment(rows: 8, throughBlock: 2), StripedSegment(rows: 4, throughBlock: 3)]),
                .segments([StripedSegment(rows: 8, throughBlock: 2), StripedSegment(rows: height, throughBlock: 3)]),
            ]
            for striping in stripings {
                let layout = Layout(height: height, width: width, layers: Set(layers), striping: striping,
                                    maxPooling: true, scratchFloats: { _, _, _ in 0 })
                XCTAssertEqual(layout.sharesBoundary, striping == .wholeMaps ? [] : [layers.count == 1], "\(layers)")
                var options = Options()
                options.contentLayers = layers.map { Options.WeightedLayer($0) }
                options.styleLayers = layers.map { Options.WeightedLayer($0) }
                options.styleWeight = 1e3
                let stylizer = try Stylizer(weights: randomVGGWeights, options: options, styles: [style],
                                            convolution: .im2col)
                stylizer.network.striping = striping
                let problem = try stylizer.problem(content: content, size: Stylizer.Size(width: width, height: height))
                var gradient = [Float](repeating: 0, count: point.count)
                _ = try point.withUnsafeBufferPointer { x in
                    try gradient.withUnsafeMutableBufferPointer { try problem.evaluate(x, gradient: $0) }
                }
                XCTAssertEqual(stylizer.network.stripeCounts.count, striping == .wholeMaps ? 1 : 2)
                results.append((problem.lastTerms, gradient))
            }
            let whole = results[0]
            for (k, striped) in results.enumerated().dropFirst() {
                let label = "\(layers) \(stripings[k])"
                XCTAssertEqual(striped.terms.content, whole.terms.content, accuracy: 1e-5 * whole.terms.content, label)
                XCTAssertEqual(striped.terms.style, whole.terms.style, accuracy: 1e-5 * whole.terms.style, label)
                assertClose(striped.gradient, whole.gradient.map(Double.init), relative: 1e-5, "\(label) gradient")
            }
        }
    }

    /// The stripes of a segment partition every map: the rows each step owns, the input rows whose gradient each
    /// stripe writes; each step computes at least the rows the next one reads and the rows it owns where a loss reads
    /// it; each backward step has the gradient rows it reads.
    func testSegmentGeometryCoversEveryMap() {
        let height = 75
        let shapes = VGG19Architecture.shapes(height: height, width: 9, through: VGG19Architecture.steps.count - 1)
        let heights = shapes.map(\.height)
        var rng = SplitMix64(seed: 5)
        for (first, end, rows) in [(0, 0, 4), (0, 4, 8), (0, 9, 6), (0, 20, 16), (5, 9, 3), (0, 20, 200), (10, 13, 1)] {
            let requested = heights.indices.map { _ in rng.next() % 3 == 0 }
            let inputHeight = first == 0 ? height : heights[first - 1]
            for receives in [false, true] {
                let geometry = SegmentGeometry(first: first, end: end, stripeRows: rows, inputHeight: inputHeight,
                                               heights: heights, requested: requested, receivesGradient: receives)
                let label = "steps \(first)…\(end) stripes of \(rows)"
                XCTAssertEqual(geometry.count, rows >= inputHeight ? 1 : (inputHeight + geometry.stripeRows - 1) / geometry.stripeRows, label)
                for step in first - 1 ... end {
                    var next = 0
                    for stripe in 0 ..< geometry.count {
                        let owned = geometry.ownedRows(step: step, stripe: stripe)
                        XCTAssertEqual(owned.lowerBound, owned.isEmpty ? owned.lowerBound : next, "\(label) step \(step)")
                        next = max(next, owned.upperBound)
                    }
                    XCTAssertEqual(next, step < first ? inputHeight : heights[step], "\(label) step \(step) covered")
                }
                func holds(_ outer: Range<Int>, _ inner: Range<Int>) -> Bool {
                    inner.isEmpty || (outer.lowerBound <= inner.lowerBound && inner.upperBound <= outer.upperBound)
                }
                // The rows of the segment's input each stripe's gradient reaches, counted over the stripes.
                var reached = [Int](repeating: 0, count: inputHeight)
                for stripe in 0 ..< geometry.count {
                    let need = geometry.forwardRows(stripe: stripe)
                    let back = geometry.backwardRows(stripe: stripe)
                    XCTAssertEqual(back.computed, need)
                    XCTAssertEqual(back.input, geometry.count == 1 ? 0 ..< inputHeight
                                                                   : geometry.inputRows(step: first, for: need[0]))
                    for row in back.input { reached[row] += 1 }
                    for step in first ... end {
                        let i = step - first
                        if step < end {
                            let read = geometry.inputRows(step: step + 1, for: need[i + 1])
                            XCTAssertTrue(holds(need[i], read), "\(label) stripe \(stripe) step \(step) forward")
                        }
                        if requested[step] {
                            XCTAssertTrue(holds(need[i], geometry.ownedRows(step: step, stripe: stripe)))
                        }
                        // Each step's backward pass computes its input's gradient on the rows the forward pass
                        // computed there (at the segment's input, the rows it reaches), reading its output's gradient
                        // on the padded rows, which hold the rows computed there.
                        let gradientIn = i == 0 ? back.input : need[i - 1]
                        XCTAssertTrue(holds(back.padded[i], geometry.gradientRows(step: step, for: gradientIn)),
                                      "\(label) stripe \(stripe) step \(step) backward reads")
                        XCTAssertTrue(holds(back.padded[i], need[i]), "\(label) stripe \(stripe) step \(step) padded")
                        // The gradient computed at the input reaches every row the output's gradient touches.
                        let touched = geometry.isConvolution[i]
                            ? (need[i].isEmpty ? 0 ..< 0 : max(0, need[i].lowerBound - 1) ..< min(geometry.inputHeight(of: step), need[i].upperBound + 1))
                            : 2 * need[i].lowerBound ..< 2 * need[i].upperBound
                        XCTAssertTrue(holds(gradientIn, touched), "\(label) stripe \(stripe) step \(step) reach")
                    }
                }
                // Every row the first step reads gets its gradient (a pooling's dropped odd row is zero beforehand).
                let read = geometry.inputRows(step: first, for: 0 ..< heights[first])
                XCTAssertTrue(read.allSatisfy { reached[$0] >= 1 }, "\(label): every input row gets its gradient")
                // Rows settle in order, from the top to the bottom of the input, each once no later stripe's gradient
                // reaches it, within a window that holds every row a stripe adds to before it settles.
                let settled = geometry.settledRows, window = geometry.settlingRows
                XCTAssertEqual(settled.first, 0, label)
                XCTAssertEqual(settled.last, inputHeight, label)
                XCTAssertEqual(settled, settled.sorted(), label)
                for stripe in 0 ..< geometry.count {
                    let input = geometry.backwardRows(stripe: stripe).input
                    XCTAssertTrue(holds(settled[stripe] ..< settled[stripe] + window, input), "\(label) stripe \(stripe)")
                    XCTAssertLessThanOrEqual(settled[stripe + 1], settled[stripe] + window, "\(label) stripe \(stripe)")
                    for later in stripe + 1 ..< geometry.count {
                        XCTAssertGreaterThanOrEqual(geometry.backwardRows(stripe: later).input.lowerBound,
                                                    settled[stripe + 1], "\(label) stripe \(later) reads a settled row")
                    }
                }
            }
        }
    }

    /// Whole maps keep the first layer's outputs the losses read (relu1_1, and conv1_1 before its ReLU) for the
    /// backward pass, at the price of those maps; recomputing them from the image saves exactly that, costs the first
    /// layer's work again, and is what a budget between the two gets.
    func testWholeMapsKeepOrRecomputeTheFirstLayer() {
        let scratch = { (_: Int, h: Int, w: Int) in 64 * h * w }
        let (height, width) = (40, 56)
        let plane = 64 * height * width
        for (layers, maps) in [(["relu1_1", "relu3_1"], 1), (["conv1_1", "relu1_1", "relu2_1"], 2),
                               (["relu1_2", "relu2_1"], 0)] {
            let read = Set(layers.map { VGGLayer($0)! })
            let kept = Layout(height: height, width: width, layers: read, striping: .wholeMaps, maxPooling: true,
                              scratchFloats: scratch)
            let recomputed = Layout(height: height, width: width, layers: read,
                                    striping: .wholeMapsRecomputingFirstLayer, maxPooling: true, scratchFloats: scratch)
            XCTAssertFalse(kept.recomputesFirstLayer)
            XCTAssertTrue(recomputed.recomputesFirstLayer)
            XCTAssertEqual(kept.keptFloats[0], maps * plane, "\(layers)")
            XCTAssertEqual(recomputed.keptFloats[0], 0, "\(layers)")
            XCTAssertEqual(Array(kept.keptFloats.dropFirst()), Array(recomputed.keptFloats.dropFirst()), "\(layers)")
            XCTAssertEqual(kept.bytes - recomputed.bytes, maps * plane * MemoryLayout<Float>.stride, "\(layers)")
            var passes = 0
            recomputed.forEachPass { pass in
                if !pass.recomputed.isEmpty {
                    XCTAssertEqual(pass.step, 0)
                    XCTAssertEqual(pass.recomputed, 0 ..< height)
                    passes += 1
                }
            }
            XCTAssertEqual(passes, maps > 0 ? 1 : 0, "\(layers)")
            if maps > 0 {
                XCTAssertLessThan(kept.cost, recomputed.cost, "\(layers)")
                let between = Layout.planned(height: height, width: width, layers: read, budget: kept.bytes - 1,
                                             maxPooling: true, scratchFloats: scratch)
                XCTAssertTrue(between.recomputesFirstLayer, "\(layers): \(between.summary)")
                XCTAssertTrue(between.summary.hasSuffix(" whole (the first layer recomputed for the backward pass)"),
                              between.summary)
                XCTAssertEqual(between.segments.map(\.count), [1], "\(layers)")
                XCTAssertEqual(between.bytes, recomputed.bytes, "\(layers)")
            } else {
                XCTAssertEqual(kept.cost, recomputed.cost, "\(layers)")
                XCTAssertEqual(kept.bytes, recomputed.bytes, "\(layers)")
            }
            let ample = Layout.planned(height: height, width: width, layers: read, budget: kept.bytes, maxPooling: true,
                                       scratchFloats: scratch)
            XCTAssertEqual(ample.keptFloats[0], maps * plane, "\(layers): \(ample.summary)")
            XCTAssertFalse(ample.summary.contains("recomputed"), ample.summary)
            XCTAssertEqual(recomputed.summary.contains("recomputed"), maps > 0, recomputed.summary)
        }
    }

    /// A budget gets the cheapest layout that fits it: whole maps when they fit, stripes as it shrinks, never more
    /// bytes than the budget while anything fits, and the fewest bytes when nothing does.
    func testPlannedLayoutsFitTheirBudget() {
        let layers = Set(Options().styleLayers.map(\.layer) + Options().contentLayers.map(\.layer))
        let scratch = { (_: Int, h: Int, w: Int) in 64 * h * w }
        let (height, width) = (300, 200)
        let whole = Layout(height: height, width: width, layers: layers, striping: .wholeMaps, maxPooling: true,
                           scratchFloats: scratch)
        let least = Layout.planned(height: height, width: width, layers: layers, budget: 1, maxPooling: true,
                                   scratchFloats: scratch)
        XCTAssertLessThan(least.bytes, whole.bytes / 2)
        var previous = whole
        for budget in [Int.max, whole.bytes, whole.bytes * 3 / 4, whole.bytes / 2, least.bytes, least.bytes - 1, 1] {
            let planned = Layout.planned(height: height, width: width, layers: layers, budget: budget, maxPooling: true,
                                         scratchFloats: scratch)
            if budget >= whole.bytes {
                XCTAssertEqual(planned.segments.map(\.count), [1], "budget \(budget)")
            }
            if budget >= least.bytes {
                XCTAssertLessThanOrEqual(planned.bytes, budget, "budget \(budget): \(planned.summary)")
            } else {
                XCTAssertEqual(planned.bytes, least.bytes, "budget \(budget): \(planned.summary)")
            }
            XCTAssertGreaterThanOrEqual(planned.cost, previous.cost, "budget \(budget)")
            XCTAssertLessThanOrEqual(planned.bytes, previous.bytes, "budget \(budget)")
            previous = planned
        }
        XCTAssertGreaterThan(previous.segments[0].count, 1)
    }
}

import Kernels

/// The one place feature maps go from the network to whatever reads them: content targets (whole maps), style
/// targets (Gram matrices and means) and the losses of an evaluation. The network hands each layer over whole or in stripes of
/// rows (see `FeatureMap.rows`); the collector checks that each layer's stripes arrive in order and cover the map
/// exactly once, and gives its consumers nothing but complete layers: a whole map, a finished Gram matrix, or a call
/// to `onComplete` once the last stripe of a layer has been added to the per-stripe consumers.
public struct FeatureCollector {
    /// The rows of each expected layer seen so far, 0 ..< next.
    private var nextRow: [VGGLayer: Int] = [:]
    /// The height of each expected layer's whole map.
    private let heights: [VGGLayer: Int]
    /// Whole maps being assembled: (channels, height, width) of the layer.
    private var maps: [VGGLayer: Tensor] = [:]
    /// Gram matrices being accumulated.
    private var grams: [VGGLayer: GramAccumulator] = [:]

    /// A collector for one forward pass over an image of height × width that assembles the whole maps of `maps`, the
    /// Gram matrices of `grams`, and checks the coverage of every layer in `stripes` (those whose stripes the caller
    /// consumes itself through `add(_:each:)`).
    public init(maps: Set<VGGLayer> = [], grams: Set<VGGLayer> = [], stripes: Set<VGGLayer> = [], height: Int, width: Int) {
        var heights: [VGGLayer: Int] = [:]
        for layer in maps.union(grams).union(stripes) {
            let shape = VGG19Architecture.shape(of: layer, height: height, width: width)
            heights[layer] = shape.height
            nextRow[layer] = 0
            if maps.contains(layer) {
                self.maps[layer] = Tensor(channels: shape.channels, height: shape.height, width: shape.width)
            }
            if grams.contains(layer) { self.grams[layer] = GramAccumulator(channels: shape.channels, means: true) }
        }
        self.heights = heights
    }

    /// Takes one stripe (or the whole) of a layer from the forward pass. Layers not expected are passed over.
    public mutating func add(_ map: FeatureMap) {
        add(map) { _ in } onComplete: { _ in }
    }

    /// Takes one stripe of a layer, hands it to `each` (for consumers that accumulate over stripes), and calls
    /// `onComplete(layer)` when it was the layer's last.
    public mutating func add(_ map: FeatureMap, each: (FeatureMap) -> Void, onComplete: (VGGLayer) -> Void) {
        guard let next = nextRow[map.layer] else { return }
        precondition(map.height == heights[map.layer]!, "\(map.layer) arrives at another height than expected")
        precondition(map.rows.lowerBound == next && map.rows.upperBound <= map.height,
                     "\(map.layer) rows \(map.rows) arrive out of order (next row \(next))")
        precondition(map.values.height == map.rows.count, "\(map.layer) stripe holds other rows than it says")
        if let whole = maps[map.layer] {
            precondition(whole.channels == map.channels && whole.width == map.width)
            copyRows(of: map.values, span: RowSpan(first: map.rows.lowerBound, rows: map.rows.count, height: map.height,
                                                   width: map.width),
                     rows: map.rows, intoWhole: whole)
        }
        if grams[map.layer] != nil {
            let plane = map.values.planeSize
            grams[map.layer]!.add(UnsafeBufferPointer(map.values.buffer), pixels: plane, stride: plane)
        }
        each(map)
        nextRow[map.layer] = map.rows.upperBound
        if map.rows.upperBound == map.height { onComplete(map.layer) }
    }

    /// Whether every row of `layer` has arrived.
    public func isComplete(_ layer: VGGLayer) -> Bool {
        nextRow[layer].map { $0 == heights[layer]! } ?? false
    }

    /// The whole maps assembled; every layer must be complete.
    public func finishedMaps() -> [VGGLayer: Tensor] {
        for layer in maps.keys { precondition(isComplete(layer), "\(layer) is incomplete") }
        return maps
    }

    /// The Gram matrices G = F Fᵀ / N, (channels, channels), and the mean features; every layer must be complete.
    public func finishedStyleTargets() -> [VGGLayer: StyleTarget] {
        grams.reduce(into: [:]) { result, entry in
            precondition(isComplete(entry.key), "\(entry.key) is incomplete")
            result[entry.key] = StyleTarget(gram: entry.value.gram(), mean: entry.value.mean())
        }
    }

    /// Forgets what was seen, for another forward pass of the same size; keeps the storage.
    public mutating func restart() {
        for layer in nextRow.keys { nextRow[layer] = 0 }
        for layer in grams.keys { grams[layer]!.reset() }
    }
}

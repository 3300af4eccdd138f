/// VGG-19's architecture as published (Simonyan & Zisserman): the one table that the network, the options' validation
/// and the weights loader share.
///
/// Sixteen 3x3 convolutions in five blocks of 2, 2, 4, 4, 4 layers and 64, 128, 256, 512, 512 channels, each followed
/// by a ReLU, with a 2x2 pooling after each block. The network runs as a sequence of steps, each named after its
/// output: `reluB_N` (convolution `convB_N` with its ReLU) and `poolB`.
public enum VGG19Architecture {
    /// (convolutions, channels) of each block.
    public static let blocks: [(convolutions: Int, channels: Int)] = [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)]

    /// The convolutions in network order: (name, inChannels, outChannels).
    public static let convolutions: [(name: String, inChannels: Int, outChannels: Int)] = {
        var rows: [(name: String, inChannels: Int, outChannels: Int)] = []
        var channels = 3
        for (block, (count, width)) in blocks.enumerated() {
            for conv in 1 ... count {
                rows.append((name: "conv\(block + 1)_\(conv)", inChannels: channels, outChannels: width))
                channels = width
            }
        }
        return rows
    }()

    /// One step of the network: a convolution with its ReLU, or a pooling.
    struct Step {
        enum Kind: Equatable {
            /// The convolution's index in `convolutions`.
            case convolution(Int)
            case pool
        }

        /// The layer the step outputs: `reluB_N` or `poolB`.
        let output: VGGLayer
        let kind: Kind
        /// The block, 1 … 5.
        let block: Int

        var isConvolution: Bool { kind != .pool }
    }

    /// Every step in network order: a pooling ends each block.
    static let steps: [Step] = {
        var steps: [Step] = []
        var k = 0
        for (index, block) in blocks.enumerated() {
            for number in 1 ... block.convolutions {
                steps.append(Step(output: VGGLayer(.relu, block: index + 1, number: number), kind: .convolution(k),
                                  block: index + 1))
                k += 1
            }
            steps.append(Step(output: VGGLayer(.pool, block: index + 1, number: 0), kind: .pool, block: index + 1))
        }
        return steps
    }()

    /// The output shape of each step through `last` for an image of height × width.
    static func shapes(height: Int, width: Int, through last: Int) -> [(channels: Int, height: Int, width: Int)] {
        var shapes: [(channels: Int, height: Int, width: Int)] = []
        var shape = (channels: 3, height: height, width: width)
        for step in steps[...last] {
            switch step.kind {
            case .convolution(let k):
                shape.channels = convolutions[k].outChannels
            case .pool:
                shape = (shape.channels, shape.height / 2, shape.width / 2)
            }
            shapes.append(shape)
        }
        return shapes
    }

    /// The shape of `layer`'s output for an image of height × width.
    public static func shape(of layer: VGGLayer, height: Int, width: Int) -> (channels: Int, height: Int, width: Int) {
        shapes(height: height, width: width, through: layer.step)[layer.step]
    }

    /// Multiply-adds of step `step` per row of its output, for maps `width` wide at the step's resolution.
    static func multiplyAddsPerRow(step: Int, width: Int) -> Int {
        guard case .convolution(let k) = steps[step].kind else { return 0 }
        return convolutions[k].inChannels * convolutions[k].outChannels * 9 * width
    }

    /// Multiply-adds of the forward pass from the image through `layer` at height × width. The backward pass to the
    /// image costs the same.
    public static func multiplyAdds(through layer: VGGLayer, height: Int, width: Int) -> Int {
        let shapes = self.shapes(height: height, width: width, through: layer.step)
        return (0 ... layer.step).reduce(0) { $0 + multiplyAddsPerRow(step: $1, width: shapes[$1].width) * shapes[$1].height }
    }
}

/// A layer of VGG-19 whose output the losses may read: `convB_N` (a convolution's output with its bias, before the
/// ReLU), `reluB_N` after it, or `poolB`. Parsed once from its name, when the options are checked.
public struct VGGLayer: Hashable, Comparable, Sendable, CustomStringConvertible {
    public enum Kind: Int, Sendable {
        case conv, relu, pool
    }

    public let kind: Kind
    /// The block, 1 … 5.
    public let block: Int
    /// The convolution within its block, 1 …; 0 for a pooling.
    public let number: Int

    init(_ kind: Kind, block: Int, number: Int) {
        self.kind = kind
        self.block = block
        self.number = number
    }

    /// The layer called `name`, or nil when VGG-19 has no such layer.
    public init?(_ name: String) {
        guard let layer = VGGLayer.all.first(where: { $0.name == name }) else { return nil }
        self = layer
    }

    /// Every layer in network order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, … pool5.
    public static let all: [VGGLayer] = VGG19Architecture.steps.flatMap { step -> [VGGLayer] in
        step.isConvolution ? [VGGLayer(.conv, block: step.block, number: step.output.number), step.output] : [step.output]
    }

    /// The name the options and the manual use.
    public var name: String {
        switch kind {
        case .conv: "conv\(block)_\(number)"
        case .relu: "relu\(block)_\(number)"
        case .pool: "pool\(block)"
        }
    }

    public var description: String { name }

    /// The index of the step that makes this layer in `VGG19Architecture.steps`.
    var step: Int { Self.stepIndex[kind == .conv ? VGGLayer(.relu, block: block, number: number) : self]! }

    /// Whether the layer is a convolution's output before its ReLU.
    var isBeforeReLU: Bool { kind == .conv }

    private static let stepIndex: [VGGLayer: Int] = Dictionary(
        uniqueKeysWithValues: VGG19Architecture.steps.enumerated().map { ($1.output, $0) })

    /// Network order; a convolution's output comes before its ReLU's.
    public static func < (a: VGGLayer, b: VGGLayer) -> Bool {
        (a.step, a.kind == .conv ? 0 : 1) < (b.step, b.kind == .conv ? 0 : 1)
    }
}

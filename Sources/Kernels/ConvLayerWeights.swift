/// The weights of one 3x3 convolution layer of VGG-19, dequantized to float32.
public struct ConvLayerWeights: Sendable {
    /// Layer name in the network's own naming, e.g. `conv1_1`.
    public let name: String
    public let inChannels: Int
    public let outChannels: Int
    /// (outChannels, inChannels, 3, 3), row-major.
    public let kernel: [Float]
    /// (outChannels)
    public let bias: [Float]

    public init(name: String, inChannels: Int, outChannels: Int, kernel: [Float], bias: [Float]) {
        precondition(kernel.count == outChannels * inChannels * 9 && bias.count == outChannels)
        self.name = name
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.kernel = kernel
        self.bias = bias
    }
}

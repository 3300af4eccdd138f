import Foundation
import Kernels
import StyleTransfer

/// A command-line value pamstyle refuses; the text names the option and repeats the value.
struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The largest working size, `-size`, in pixels on the longer side.
let largestSize = 16384

/// The largest `-max-pixels`: 16384² = 268,435,456, the pixels of the largest working size. An image is held
/// as float samples, 12 bytes a pixel (16 with alpha), and its result as many again, so an image at this
/// limit needs more than 6 GiB for itself and its result alone.
let largestMaxPixels = largestSize * largestSize

extension Command {
    /// Every check of a value and every rule across options, in one place, before any work starts.
    func options() throws -> Options {
        guard !styleFiles.isEmpty else {
            throw UsageError("no style image given (usage: pamstyle [options] STYLEFILE... < content.pnm)")
        }
        guard !styleFiles.contains("") else {
            throw UsageError("a style image's file name is empty ('')")
        }
        guard !initialization.isEmpty else {
            throw UsageError("-init must be content, random or an image file; you specified ''")
        }
        for (option, name) in [("-weights", weights), ("-checkpoint", checkpoint)] where name?.isEmpty == true {
            throw UsageError("\(option) needs a file name; you specified ''")
        }
        guard let statistic = StyleStatistic(rawValue: styleLoss) else {
            throw UsageError("-style-loss must be gram or w2; you specified '\(styleLoss)'")
        }
        var options = Options(styleLoss: statistic)
        options.contentWeight = try nonNegative(contentWeight, "-content-weight")
        if let styleWeight { options.styleWeight = try nonNegative(styleWeight, "-style-weight") }
        options.tvWeight = try nonNegative(tvWeight, "-tv-weight")
        options.layoutWeight = try nonNegative(layoutWeight, "-layout-weight")
        options.contentLayers = try layerList(contentLayers, "-content-layers")
        if let styleLayers { options.styleLayers = try layerList(styleLayers, "-style-layers") }
        if let styleBlend {
            let weights = try numberList(styleBlend, "-style-blend")
            guard weights.count == styleFiles.count else {
                throw UsageError("-style-blend has \(weights.count) weight\(weights.count == 1 ? "" : "s") "
                    + "('\(styleBlend)') for \(styleFiles.count) style image\(styleFiles.count == 1 ? "" : "s")")
            }
            guard weights.contains(where: { $0 > 0 }) else {
                throw UsageError("-style-blend needs at least one positive weight; you specified '\(styleBlend)'")
            }
            options.styleBlend = weights
        }
        if let styleMasks {
            let files = styleMasks.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            guard files.count == styleFiles.count else {
                throw UsageError("-style-masks has \(files.count) mask\(files.count == 1 ? "" : "s") ('\(styleMasks)') "
                    + "for \(styleFiles.count) style image\(styleFiles.count == 1 ? "" : "s"); give one per style image")
            }
            guard !files.contains("") else {
                throw UsageError("-style-masks: a mask's file name is empty (in '\(styleMasks)')")
            }
        }
        if changeMask?.isEmpty == true {
            throw UsageError("-change-mask needs a file name; you specified ''")
        }
        options.styleScale = try positive(styleScale, "-style-scale", atMost: 8)

        guard let kind = Options.OptimizerKind(rawValue: optimizer) else {
            throw UsageError("-optimizer must be lbfgs or adam; you specified '\(optimizer)'")
        }
        options.optimizer = kind
        options.iterations = try count(iterations, "-iterations", from: 0)
        options.scaleIterations = try count(scaleIterations, "-scale-iterations", from: 0)
        if let scales { options.scales = try count(scales, "-scales", from: 1, to: 8) }
        options.learningRate = try positive(learningRate, "-learning-rate")
        options.history = try count(history, "-history", from: 1, to: 100)
        options.seed = seed
        if initialization == "random" {
            options.initialization = .random
        }

        if size == "native" {
            options.size = nil
        } else {
            guard let pixels = Int(size) else {
                throw UsageError("-size must be a number of pixels or native; you specified '\(size)'")
            }
            options.size = try count(pixels, "-size", from: Stylizer.minimumSide, to: largestSize)
        }
        options.memory = try count(memory, "-memory", from: 64, to: 1 << 20) << 20
        guard let poolingKind = ["max": Pooling.max, "avg": .average, "average": .average][pooling] else {
            throw UsageError("-pooling must be max or avg; you specified '\(pooling)'")
        }
        options.pooling = poolingKind
        guard let paddingKind = Padding(rawValue: padding) else {
            throw UsageError("-padding must be zero or reflect; you specified '\(padding)'")
        }
        options.padding = paddingKind
        options.margin = try count(margin, "-margin", from: 0, to: 1024)
        if let colors {
            guard let mode = Options.Colors(rawValue: colors) else {
                throw UsageError("-colors must be style, luminance or match; you specified '\(colors)'")
            }
            guard !preserveColors || mode == .luminance else {
                throw UsageError("-preserve-colors means -colors luminance, which contradicts -colors \(colors)")
            }
            options.colors = mode
        } else if preserveColors {
            options.colors = .luminance
        }
        options.temporal = temporal
        if let temporalWeight {
            options.temporalWeight = try nonNegative(temporalWeight, "-temporal-weight")
            guard temporal else { throw UsageError("-temporal-weight applies only with -temporal") }
        }
        if let timeLimit {
            guard timeLimit.isFinite, timeLimit > 0 else {
                throw UsageError("-time-limit must be a positive number of seconds; you specified \(timeLimit)")
            }
            options.timeLimit = timeLimit
        }
        let checkpointEvery = try count(checkpointEvery, "-checkpoint-every", from: 1)
        options.checkpointEvery = checkpoint == nil ? 0 : checkpointEvery
        options.maxPixels = try count(maxPixels, "-max-pixels", from: 1, to: largestMaxPixels)
        if let threads { options.threads = try count(threads, "-threads", from: 1, to: 256) }
        if precision != "auto" {
            guard let chosen = ProductPrecision(rawValue: precision) else {
                throw UsageError("-precision must be auto, single, bf16 or half; you specified '\(precision)'")
            }
            guard chosen.isSupported else {
                throw UsageError(chosen == .bf16
                    ? "-precision bf16 needs AVX-512 with BF16 (AVX512_BF16), which this processor lacks"
                    : "-precision half needs AVX-512 with FP16 (AVX512_FP16), which this processor lacks")
            }
            options.precision = chosen
        }
        if quiet && verbose {
            throw UsageError("-quiet and -verbose contradict each other; give one of them")
        }
        return options
    }

    /// The `-style-masks` files, one per style file, or nil.
    var styleMaskFiles: [String]? {
        styleMasks.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    /// Where each image starts, once the `-init` file (if any) has been read by the caller.
    var initializationFile: String? {
        ["content", "random"].contains(initialization) ? nil : initialization
    }
}

private func nonNegative(_ value: Float, _ option: String) throws -> Float {
    guard value.isFinite, value >= 0 else {
        throw UsageError("\(option) must be a nonnegative number; you specified \(value)")
    }
    return value
}

private func positive(_ value: Float, _ option: String, atMost limit: Float = .greatestFiniteMagnitude) throws -> Float {
    guard value.isFinite, value > 0, value <= limit else {
        let range = limit == .greatestFiniteMagnitude ? "a positive number" : "a positive number up to \(limit)"
        throw UsageError("\(option) must be \(range); you specified \(value)")
    }
    return value
}

private func count(_ value: Int, _ option: String, from low: Int, to high: Int = .max) throws -> Int {
    guard value >= low, value <= high else {
        let range = high == .max ? "at least \(low)" : "from \(low) to \(high)"
        throw UsageError("\(option) must be \(range); you specified \(value)")
    }
    return value
}

private func numberList(_ text: String, _ option: String) throws -> [Float] {
    try text.split(separator: ",", omittingEmptySubsequences: false).map { item in
        guard let value = Float(item.trimmingCharacters(in: .whitespaces)), value.isFinite, value >= 0 else {
            throw UsageError("\(option): '\(item)' is not a nonnegative number (in '\(text)')")
        }
        return value
    }
}

/// Parses `relu4_2` or `relu3_1:0.5,relu4_1` into named, weighted layers the network has.
private func layerList(_ text: String, _ option: String) throws -> [Options.WeightedLayer] {
    var layers: [Options.WeightedLayer] = []
    for item in text.split(separator: ",", omittingEmptySubsequences: false) {
        let parts = item.split(separator: ":", omittingEmptySubsequences: false)
        let name = String(parts[0]).trimmingCharacters(in: .whitespaces)
        guard let layer = VGGLayer(name) else {
            throw UsageError("\(option): '\(name)' is not a VGG-19 layer (conv1_1 ... conv5_4, relu1_1 ... relu5_4, pool1 ... pool5)")
        }
        var weight: Float = 1
        if parts.count == 2 {
            guard let value = Float(parts[1]), value.isFinite, value >= 0 else {
                throw UsageError("\(option): the weight '\(parts[1])' of \(name) is not a nonnegative number")
            }
            weight = value
        } else if parts.count > 2 {
            throw UsageError("\(option): '\(item)' is not LAYER or LAYER:WEIGHT")
        }
        guard !layers.contains(where: { $0.layer == layer }) else {
            throw UsageError("\(option): \(name) is listed twice in '\(text)'")
        }
        layers.append(Options.WeightedLayer(layer, weight))
    }
    return layers
}

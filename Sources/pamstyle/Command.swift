import ArgumentParser
import Foundation
import StyleTransfer

/// A netpbm-style option name: `-name`, with `--name` accepted too.
private func netpbm(_ name: String) -> NameSpecification {
    [.customLong(name, withSingleDash: true), .customLong(name)]
}

/// The command line of pamstyle. It only collects and checks values; `options()` turns them into the
/// core's `Options`, and nothing downstream sees the arguments.
struct Command: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pamstyle",
        abstract: "Repaint Netpbm images in the style of other images (neural style transfer, VGG-19).",
        usage: "pamstyle [options] STYLEFILE [STYLEFILE...] < content.pnm > stylized.pnm",
        discussion: """
            Reads a stream of PBM/PGM/PPM/PAM images on standard input and writes one stylized image per \
            input image on standard output, with the input's dimensions: PPM, or PAM RGB_ALPHA when the \
            input has an alpha channel (kept unchanged). Options take one dash or two, and a value either \
            as the next word or after '='. The manual, pamstyle(1), says more.
            """,
        // No short -h name: ArgumentParser would read an unknown -word holding an h as a cluster of short flags and
        // print the help. A lone -h is taken as -help before parsing.
        helpNames: [.customLong("help", withSingleDash: true), .long]
    )

    @Argument(help: ArgumentHelp("Style images: Netpbm files (the first image of each is used).",
                                 valueName: "STYLEFILE"))
    var styleFiles: [String] = []

    // Balance of the loss terms.
    @Option(name: netpbm("content-weight"), help: "Weight of the content loss.")
    var contentWeight: Float = Options().contentWeight
    @Option(name: netpbm("style-weight"), help: ArgumentHelp(
        "Weight of the style loss (default: \(Command.describe(Options.defaultStyleWeight(for: .gram))) with -style-loss "
            + "gram, \(Command.describe(Options.defaultStyleWeight(for: .w2))) with w2).", valueName: "style-weight"))
    var styleWeight: Float?
    @Option(name: netpbm("tv-weight"), help: "Weight of the total-variation (smoothness) loss.")
    var tvWeight: Float = Options().tvWeight
    @Option(name: netpbm("layout-weight"), help: ArgumentHelp(
        "Weight of the layout loss: the luminance, blurred, held to the input's (0: none).", valueName: "w"))
    var layoutWeight: Float = Options().layoutWeight

    // Layers and styles.
    @Option(name: netpbm("content-layers"), help: ArgumentHelp(
        "Content layers, comma-separated, each with an optional weight (relu4_2:1).", valueName: "list"))
    var contentLayers: String = Command.describe(Options().contentLayers)
    @Option(name: netpbm("style-layers"), help: ArgumentHelp(
        "Style layers, comma-separated, each with an optional weight (relu3_1:0.5; default: "
            + "\(Command.describe(Options.defaultStyleLayers(for: .gram))) with -style-loss gram, "
            + "\(Command.describe(Options.defaultStyleLayers(for: .w2))) with w2).", valueName: "list"))
    var styleLayers: String?
    @Option(name: netpbm("style-loss"), help: ArgumentHelp(
        "What the style loss matches at each style layer: gram (Gram matrices) or w2 (means and covariances, "
            + "Wasserstein-2).", valueName: "gram|w2"))
    var styleLoss: String = Options().styleLoss.rawValue
    @Option(name: netpbm("style-blend"), help: ArgumentHelp(
        "Weights of the style images, comma-separated, one per STYLEFILE (default: equal).", valueName: "list"))
    var styleBlend: String?
    @Option(name: netpbm("style-masks"), help: ArgumentHelp(
        "Masks, comma-separated, one per STYLEFILE in their order (PGM or any Netpbm image, resized to each input "
            + "image): where in the image each style applies, 0 to 1.", valueName: "file,..."))
    var styleMasks: String?
    @Option(name: netpbm("change-mask"), help: ArgumentHelp(
        "A mask (PGM or any Netpbm image, resized to each input image) of where the image may change: 0 keeps the "
            + "input, 1 is free.", valueName: "file"))
    var changeMask: String?
    @Option(name: netpbm("style-scale"), help: "Size of the style images relative to the working size.")
    var styleScale: Float = Options().styleScale

    // Optimization.
    @Option(name: netpbm("optimizer"), help: "lbfgs or adam.")
    var optimizer: String = Options().optimizer.rawValue
    @Option(name: netpbm("iterations"), help: "Iterations at the working size (above 768 pixels: at the largest size up to 768, half as many at each size above).")
    var iterations: Int = Options().iterations
    @Option(name: netpbm("scale-iterations"), help: "Iterations at each smaller size of the coarse-to-fine schedule.")
    var scaleIterations: Int = Options().scaleIterations
    @Option(name: netpbm("scales"), help: ArgumentHelp(
        "Number of sizes in the coarse-to-fine schedule (1: working size only; default: as many as the size needs).",
        valueName: "n"))
    var scales: Int?
    @Option(name: netpbm("learning-rate"), help: "Adam's step size, in pixel units of 0...255.")
    var learningRate: Float = Options().learningRate
    @Option(name: netpbm("history"), help: "L-BFGS history length.")
    var history: Int = Options().history
    @Option(name: netpbm("init"), help: ArgumentHelp("Start from: content, random, or an image FILE.",
                                                     valueName: "content|random|FILE"))
    var initialization: String = "content"
    @Option(name: netpbm("seed"), help: "Seed of the random start.")
    var seed: UInt64 = Options().seed

    // Size and network.
    @Option(name: netpbm("size"), help: ArgumentHelp(
        "Working size: the longest side, in pixels, or native for each image's own size.", valueName: "pixels|native"))
    var size: String = Options().size.map(String.init) ?? "native"
    @Option(name: netpbm("memory"), help: ArgumentHelp(
        "Memory for one image, in MiB, the program's own included: the network runs in stripes to stay within it.", valueName: "MiB"))
    var memory: Int = Options().memory >> 20
    @Option(name: netpbm("pooling"), help: "max or avg.")
    var pooling: String = "max"
    @Option(name: netpbm("padding"), help: ArgumentHelp(
        "What the network's first convolution sees beyond the image's edges: zero (the mean color, as VGG-19 was "
            + "trained) or reflect (the image mirrored).", valueName: "zero|reflect"))
    var padding: String = Options().padding.rawValue
    @Option(name: netpbm("margin"), help: ArgumentHelp(
        "Pixels of the image mirrored around it that the network sees, so that its deeper layers' zero padding lies "
            + "beyond them (0: none).", valueName: "pixels"))
    var margin: Int = Options().margin
    @Option(name: netpbm("colors"), help: ArgumentHelp(
        "The result's colors: style (the style's palette), luminance (the style on the luminance only, the content's "
            + "colors kept), or match (the style's colors matched to the content's first) (default: style).",
        valueName: "style|luminance|match"))
    var colors: String?
    @Flag(name: netpbm("preserve-colors"), help: "The same as -colors luminance.")
    var preserveColors = false
    @Option(name: netpbm("weights"), help: ArgumentHelp("The VGG-19 weights file.", valueName: "file"))
    var weights: String?

    // Streams, limits and reporting.
    @Flag(name: netpbm("temporal"), help: ArgumentHelp(
        "Video: each image with the size of the one before follows it; it starts from the previous result moved "
            + "along the optical flow and is held to it where the flow is reliable."))
    var temporal = false
    @Option(name: netpbm("temporal-weight"), help: ArgumentHelp(
        "Weight of the temporal loss with -temporal, 0 for the moved start only (default: "
            + "\(Int(Options().temporalWeight))).",
        valueName: "weight"))
    var temporalWeight: Float?
    @Option(name: netpbm("max-pixels"), help: "Refuse input, style and -init images (style images also as resized) with more pixels than this.")
    var maxPixels: Int = 16_777_216
    @Option(name: netpbm("time-limit"), help: ArgumentHelp(
        "Plan each image's schedule to take this many seconds, stop there, and write the best result so far.",
        valueName: "seconds"))
    var timeLimit: Double?
    @Option(name: netpbm("checkpoint"), help: ArgumentHelp(
        "Write the current image to this file every -checkpoint-every iterations.", valueName: "file"))
    var checkpoint: String?
    @Option(name: netpbm("checkpoint-every"), help: "Iterations between checkpoints.")
    var checkpointEvery: Int = 50
    @Option(name: netpbm("threads"), help: "Threads for the network (default: all cores).")
    var threads: Int?
    @Option(name: netpbm("precision"), help: ArgumentHelp(
        "Precision of the convolutions' products (and with bf16 or half the Gram losses'): single, bf16 (AVX512_BF16 only), half (AVX512_FP16 only), or auto: the fastest of them here.",
        valueName: "auto|single|bf16|half"))
    var precision: String = "auto"
    @Flag(name: netpbm("quiet"), help: "No progress and no messages but errors.")
    var quiet = false
    @Flag(name: netpbm("verbose"), help: "Print the loss terms as the optimization goes, and how each size runs (stripes, memory, kernels).")
    var verbose = false
    @Flag(name: netpbm("version"), help: "Print the version and exit.")
    var version = false

    /// A weight as the manual writes it: 3, not 3.0.
    static func describe(_ weight: Float) -> String {
        weight == weight.rounded() && abs(weight) < 1e9 ? String(Int(weight)) : "\(weight)"
    }

    static func describe(_ layers: [Options.WeightedLayer]) -> String {
        layers.map { $0.weight == 1 ? $0.name : "\($0.name):\($0.weight)" }.joined(separator: ",")
    }
}

/// The version `-version` prints.
let pamstyleVersion = "1.0"

extension Command {
    /// Parses the process's arguments. `-help` prints the help and exits 0; any other problem is one
    /// line on standard error, "pamstyle: ...", and exit status 1.
    static func parseOrExitOneLine() -> Command {
        do {
            return try parse(CommandLine.arguments.dropFirst().map { $0 == "-h" ? "-help" : $0 })
        } catch {
            if exitCode(for: error) == .success {
                exit(withError: error)
            }
            let lines = message(for: error).split(separator: "\n")
            let text = lines.first.map(String.init) ?? "invalid command line"
            FileHandle.standardError.write(Data("pamstyle: \(text)\n".utf8))
            Foundation.exit(1)
        }
    }
}

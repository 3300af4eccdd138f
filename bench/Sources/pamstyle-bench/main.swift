// pamstyle-bench: seconds per evaluation of the VGG-19 engine (forward to relu5_1 reading the default loss layers,
// then the gradient back to the image), GFLOP/s of the direct convolution's count, and peak RSS, one JSON object per
// size (and algorithm) on stdout.
//
//   pamstyle-bench [--weights PATH | --random-weights] [--conv ALGORITHM,...|both] [--sizes 256,512,1024]
//                  [--repeats 5] [--warmup 1] [--pooling max|average] [--scratch-mb 32] [--threads N]
//                  [--memory-mb N | --stripe-rows N [--striped-blocks 1…5]] [--kept-kernel-mb N|all]
//                  [--compare-striped-blocks 1…5] [--compare-kept-kernel-mb N|all] [--verbose]
//
// The weights are found as pamstyle finds them unless --weights or --random-weights is given (the timing does not
// depend on the values). --conv lists the convolution algorithms to time side by side, alternating evaluations:
// winograd (products in the AVX-512 panel GEMM where it runs), winograd-openblas (every product in OpenBLAS) and
// im2col; both means im2col,winograd. Each algorithm after the first gets its speedup over the first.
//
// Peak RSS (VmHWM) belongs to the whole process: with several sizes, run them in ascending order (the default), or
// one size per invocation for exact figures. --verbose adds a per-layer time breakdown on stderr.
//
// --kept-kernel-mb bounds the Winograd-transformed kernels the network keeps (the rest are transformed as their layer
// runs; VGG19's default when not given). The network plans its stripes within --memory-mb as pamstyle does (pamstyle's
// default budget when not given), unless --stripe-rows and --striped-blocks (default 2) fix them. The --compare-… options add a second network with those settings (the others as the first's), timed in
// turns with the first, and the ratio of their times (peak RSS is then the two networks' together).

import Foundation
import StyleTransfer

struct BenchOptions {
    var sizes = [256, 512, 1024]
    var repeats = 5
    var warmup = 1
    var randomWeights = false
    var weightsPath: String?
    var algorithms: [ConvolutionAlgorithm] = [.winograd]
    var pooling = Pooling.max
    var scratchMB = 32
    var threads: Int?
    /// The first blocks in stripes of this many rows; nil: as pamstyle runs the network, within `memoryBytes`.
    var stripeRows: Int?
    var memoryBytes = Options().memory
    var keptKernelBytes = VGG19.defaultKeptKernelBytes
    var comparedKeptKernelBytes: Int?
    /// With `stripeRows`, the blocks in stripes (2 when not given).
    var stripedBlocks: Int?
    var comparedStripedBlocks: Int?
    var verbose = false
}

enum BenchError: LocalizedError {
    case usage(String)

    var errorDescription: String? {
        switch self {
        case .usage(let message): return message
        }
    }
}

func parseOptions(_ arguments: [String]) throws -> BenchOptions {
    var options = BenchOptions()
    var rest = arguments[...]
    func value(_ option: String) throws -> String {
        guard let value = rest.popFirst() else { throw BenchError.usage("\(option) needs a value") }
        return value
    }
    func positive(_ option: String) throws -> Int {
        let text = try value(option)
        guard let number = Int(text), number > 0 else {
            throw BenchError.usage("\(option) must be a positive integer; you specified \(text)")
        }
        return number
    }
    while let argument = rest.popFirst() {
        switch argument {
        case "--sizes":
            let text = try value(argument)
            let sizes = text.split(separator: ",").map { Int($0) }
            guard !sizes.isEmpty, sizes.allSatisfy({ ($0 ?? 0) >= 16 }) else {
                throw BenchError.usage("--sizes must list sizes of at least 16, like 256,512; you specified \(text)")
            }
            options.sizes = sizes.map { $0! }
        case "--repeats": options.repeats = try positive(argument)
        case "--warmup": options.warmup = try Int(value(argument)).flatMap { $0 >= 0 ? $0 : nil }
            ?? { throw BenchError.usage("--warmup must be a nonnegative integer") }()
        case "--scratch-mb": options.scratchMB = try positive(argument)
        case "--threads": options.threads = try positive(argument)
        case "--stripe-rows": options.stripeRows = try positive(argument)
        case "--memory-mb": options.memoryBytes = try positive(argument) << 20
        case "--striped-blocks", "--compare-striped-blocks":
            let text = try value(argument)
            guard let blocks = Int(text), (1 ... 5).contains(blocks) else {
                throw BenchError.usage("\(argument) must be 1 … 5; you specified \(text)")
            }
            if argument == "--striped-blocks" { options.stripedBlocks = blocks } else { options.comparedStripedBlocks = blocks }
        case "--kept-kernel-mb", "--compare-kept-kernel-mb":
            let text = try value(argument)
            guard let bytes = text == "all" ? Int.max : Int(text).flatMap({ $0 >= 0 ? $0 << 20 : nil }) else {
                throw BenchError.usage("\(argument) must be a nonnegative integer or all; you specified \(text)")
            }
            if argument == "--kept-kernel-mb" { options.keptKernelBytes = bytes } else { options.comparedKeptKernelBytes = bytes }
        case "--pooling":
            let text = try value(argument)
            guard let pooling = Pooling(rawValue: text) else {
                throw BenchError.usage("--pooling must be max or average; you specified \(text)")
            }
            options.pooling = pooling
        case "--random-weights": options.randomWeights = true
        case "--weights": options.weightsPath = try value(argument)
        case "--conv":
            let text = try value(argument)
            let algorithms = text == "both" ? [.im2col, .winograd]
                : text.split(separator: ",").compactMap { ConvolutionAlgorithm(rawValue: String($0)) }
            guard !algorithms.isEmpty, text == "both" || algorithms.count == text.split(separator: ",").count else {
                throw BenchError.usage("--conv must list winograd, winograd-openblas or im2col, or be both; you specified \(text)")
            }
            options.algorithms = algorithms
        case "--verbose": options.verbose = true
        default: throw BenchError.usage("unknown option \(argument)")
        }
    }
    if options.randomWeights && options.weightsPath != nil {
        throw BenchError.usage("give --weights or --random-weights, not both")
    }
    return options
}

/// Uniform random weights with He initialization's variance and VGG-19's shapes.
func randomWeights(seed: UInt64) -> VGGWeights {
    var rng = SplitMix64(seed: seed)
    return VGGWeights(layers: VGG19.convolutionTable.map { row in
        let scale = (6 / Float(row.inChannels * 9)).squareRoot()
        let kernel = (0 ..< row.outChannels * row.inChannels * 9).map { _ in Float.random(in: -scale ... scale, using: &rng) }
        let bias = (0 ..< row.outChannels).map { _ in Float.random(in: -0.1 ... 0.1, using: &rng) }
        return ConvLayerWeights(name: row.name, inChannels: row.inChannels, outChannels: row.outChannels,
                                kernel: kernel, bias: bias)
    })
}

/// The process's peak resident set (VmHWM) in MiB, from /proc/self/status.
func peakRSSMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "") else { return .nan }
    return kilobytes / 1024
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func json(_ fields: [(String, Any)]) -> String {
    "{" + fields.map { key, value in
        switch value {
        case let number as Double: return "\"\(key)\": \(String(format: "%.4f", number))"
        default: return "\"\(key)\": \(value)"
        }
    }.joined(separator: ", ") + "}"
}

/// How one network under test is built.
struct Settings {
    var algorithm: ConvolutionAlgorithm
    var keptKernelBytes: Int
    var stripedBlocks: Int
    /// Whether this is the network of a --compare-… option (timed beside the main one, not reported as the result).
    var compared = false
}

/// One network under test and the times of its evaluations at the current size.
final class Subject {
    let settings: Settings
    let net: VGG19
    var forwardTimes: [Double] = []
    var totalTimes: [Double] = []
    var transforms: [Int] = []
    var layerTotals: [String: (forward: [Double], backward: [Double])] = [:]

    init(settings: Settings, net: VGG19) {
        self.settings = settings
        self.net = net
    }
}

func run(_ options: BenchOptions) throws {
    let layers = Set((Options().contentLayers + Options().styleLayers).map(\.layer))
    let weights: VGGWeights
    if options.randomWeights {
        weights = randomWeights(seed: 1)
    } else {
        weights = try VGGWeights.load(from: VGGWeights.locate(explicit: options.weightsPath,
                                                              environment: ProcessInfo.processInfo.environment,
                                                              executablePath: VGGWeights.runningExecutablePath))
    }
    var settings: [Settings] = []
    for algorithm in options.algorithms {
        let stripedBlocks = options.stripedBlocks ?? 2
        settings.append(Settings(algorithm: algorithm, keptKernelBytes: options.keptKernelBytes,
                                 stripedBlocks: stripedBlocks))
        if options.comparedKeptKernelBytes != nil || options.comparedStripedBlocks != nil {
            settings.append(Settings(algorithm: algorithm,
                                     keptKernelBytes: options.comparedKeptKernelBytes ?? options.keptKernelBytes,
                                     stripedBlocks: options.comparedStripedBlocks ?? stripedBlocks,
                                     compared: true))
        }
    }
    let subjects = try settings.map { settings in
        let striping = options.stripeRows.map { Striping.stripes(rows: $0, blocks: settings.stripedBlocks) }
            ?? .budget(bytes: options.memoryBytes)
        let net = try VGG19(weights: weights, pooling: options.pooling, scratchBytes: options.scratchMB << 20,
                            threads: options.threads, striping: striping, convolution: settings.algorithm,
                            keptKernelBytes: settings.keptKernelBytes)
        net.recordsLayerTimes = options.verbose
        return Subject(settings: settings, net: net)
    }
    for size in options.sizes {
        var rng = SplitMix64(seed: UInt64(size))
        let image = (0 ..< 3 * size * size).map { _ in Float.random(in: 0 ... 1, using: &rng) }
        var gradient = [Float](repeating: 0, count: image.count)
        for subject in subjects {
            subject.net.prepare(height: size, width: size, layers: layers)
            subject.forwardTimes = []
            subject.totalTimes = []
            subject.transforms = []
            subject.layerTotals = [:]
        }
        // The subjects take turns, so that a load from other processes falls on all of them alike.
        for iteration in 0 ..< options.warmup + options.repeats {
            for subject in subjects {
                let net = subject.net
                let transformsBefore = net.kernelTransforms
                let start = now()
                net.forward(image: image, height: size, width: size, layers: layers) { _ in }
                let middle = now()
                // A stand-in loss: ∂L/∂activation = 10⁻³ · activation, a pass over each map as a real loss makes.
                net.backward(into: &gradient) { activation, g in
                    let a = activation.values.buffer, d = g.buffer
                    for k in 0 ..< d.count { d[k] += 1e-3 * a[k] }
                }
                let end = now()
                guard iteration >= options.warmup else { continue }
                subject.forwardTimes.append(middle - start)
                subject.totalTimes.append(end - start)
                subject.transforms.append(net.kernelTransforms - transformsBefore)
                for time in net.layerTimes {
                    subject.layerTotals[time.layer, default: ([], [])].forward.append(time.forwardSeconds)
                    subject.layerTotals[time.layer, default: ([], [])].backward.append(time.backwardSeconds)
                }
            }
        }
        let flops = 2.0 * 2.0 * Double(VGG19.multiplyAdds(through: "relu5_1", height: size, width: size))
        for subject in subjects {
            let net = subject.net
            let seconds = median(subject.totalTimes)
            let settings = subject.settings
            var fields: [(String, Any)] = [("size", size), ("conv", "\"\(settings.algorithm.rawValue)\""),
                                           ("seconds_per_eval", seconds),
                                           ("forward_seconds", median(subject.forwardTimes)),
                                           ("peak_rss_mb", peakRSSMegabytes()),
                                           ("direct_gflops", flops / seconds / 1e9),
                                           ("allocated_mb", Double(net.allocatedBytes) / 1048576),
                                           ("kernel_copies_mb", Double(net.kernelCopyBytes) / 1048576),
                                           ("kept_kernel_mb", settings.keptKernelBytes == Int.max ? "\"all\""
                                                : String(settings.keptKernelBytes >> 20)),
                                           ("kernel_transforms_per_eval", subject.transforms.max() ?? 0),
                                           ("repeats", options.repeats), ("threads", net.threads),
                                           ("memory_mb", options.stripeRows == nil ? "\(options.memoryBytes >> 20)" : "null"),
                                           ("layout", "\"\(subject.net.layoutSummary)\"")]
            if settings.compared { fields.append(("compared", "true")) }
            if !settings.compared, let reference = subjects.first(where: { !$0.settings.compared }),
               reference !== subject {
                fields.append(("speedup_vs_\(reference.settings.algorithm.rawValue)",
                               median(reference.totalTimes) / seconds))
            }
            if !settings.compared, let reference = subjects.first(where: {
                $0.settings.compared && $0.settings.algorithm == settings.algorithm
            }) {
                fields.append(("seconds_ratio_vs_compared", seconds / median(reference.totalTimes)))
            }
            FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
            if options.verbose {
                var report = "size \(size) \(subject.settings.algorithm.rawValue)"
                    + (subject.settings.compared ? " (compared)" : "") + ": layer, forward ms, backward ms (medians)\n"
                for name in VGG19.layerNames {
                    guard let times = subject.layerTotals[name] else { continue }
                    report += String(format: "  %-8@ %9.2f %9.2f\n", name as NSString, 1e3 * median(times.forward),
                                     1e3 * median(times.backward))
                }
                FileHandle.standardError.write(report.data(using: .utf8)!)
            }
        }
    }
}

do {
    try run(parseOptions(Array(CommandLine.arguments.dropFirst())))
} catch {
    FileHandle.standardError.write("pamstyle-bench: \(error.localizedDescription)\n".data(using: .utf8)!)
    exit(1)
}

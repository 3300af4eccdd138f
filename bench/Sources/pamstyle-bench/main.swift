// pamstyle-bench: seconds per evaluation of the VGG-19 engine (forward to relu5_1 reading the default loss layers,
// then the gradient back to the image), GFLOP/s of the direct convolution's count, and peak RSS, one JSON object per
// size (and algorithm and kernel path) on stdout.
//
//   pamstyle-bench [--weights PATH | --random-weights] [--conv ALGORITHM,...|both] [--kernels PATH,...]
//                  [--style-losses] [--sizes 256,512,1024]
//                  [--repeats 5] [--warmup 1] [--pooling max|average] [--scratch-mb 32] [--threads N]
//                  [--memory-mb N | --stripe-rows N [--striped-blocks 1…5]] [--kept-kernel-mb N|all]
//                  [--compare-striped-blocks 1…5] [--compare-kept-kernel-mb N|all] [--precision single|bf16]
//                  [--tile 4|6] [--compare-tile 4|6] [--verbose]
//   pamstyle-bench --products [--kernels PATH,...] [--repeats 5]
//   pamstyle-bench --job [--content PPM] [--style PPM] [--sizes 512,256x160] [--kernels PATH] [--repeats 5]
//                  [--warmup 1] [--threads N] [--weights PATH] [--precision single|bf16] [--tile 4|6] [--start PPM]
//   pamstyle-bench --peak [--threads N]
//   pamstyle-bench --flow [--content PPM] [--sizes 512x288] [--repeats 5] [--warmup 1] [--threads N]
//   pamstyle-bench --flow --pair FIRST.ppm SECOND.ppm --flo OUT.flo [--repeats 5] [--warmup 1] [--threads N]
//
// The weights are found as pamstyle finds them unless --weights or --random-weights is given (the timing does not
// depend on the values). --conv lists the convolution algorithms to time side by side, alternating evaluations:
// winograd (products in the project's panel GEMM, or in OpenBLAS on the openblas kernel path), winograd-openblas
// (every product in OpenBLAS) and im2col; both means im2col,winograd. --kernels lists the kernel paths to time side by
// side the same way (avx512, avx2, portable, openblas; default: the processor's own, `KernelPath.detected`), each
// forced for the whole evaluation. Each network after the first gets its speedup over the first.
//
// The stand-in loss adds 10⁻³ · activation at every loss layer; with --style-losses, the five style layers
// (relu1_1 … relu5_1) take the Gram style loss instead, as pamstyle computes it (Gram matrices stripe by stripe, the
// loss, its gradient), against a zero target, so that the time includes the Gram products.
//
// --products times the heavy products alone, single-threaded, on each path of --kernels and in OpenBLAS in turns:
// the panel GEMM at the Winograd layers' channel counts against cblas_sgemm, the Gram upper triangle of 4096 pixels
// against cblas_ssyrk, the Gram loss's gradient product against cblas_sgemm with β = 1; one JSON object per product
// and shape with the GFLOP/s of each, from the median of --repeats timings in the thread's processor time (and the
// panel GEMM with bfloat16 operands, cgemm_panels_bf16, where the processor has AVX512_BF16).
//
// --job times what pamstyle itself runs (Job.swift): at each size, the scale pamstyle would optimize there (default
// options, the content and style images given, examples/images/chelsea.ppm and scream.ppm by default), its objective
// (network, Gram and content losses, total variation) and its optimizer's steps; the products the evaluation needs,
// their rate, and its fraction of the machine's single-precision multiply-add peak, which the bench measures first.
// --peak prints that peak alone (and the BF16 dot products' peak and the half-precision multiply-adds' where the
// processor has them).
//
// --flow times OpticalFlow.estimate (Flow.swift) on frame pairs made from the luminance of the content image
// (examples/images/chelsea.ppm by default) moved by known motions (SyntheticMotion.standard: translations by
// (2.5, −1.25) and (11, 6), a 2° rotation and a 1.03 zoom), at 512x288 unless --sizes is given: per size and motion,
// the median seconds per call and the mean endpoint error in pixels over the frame less a border as wide as the motion.
// With --pair, the flow from the luminance of FIRST to that of SECOND (two images of one size, any Netpbm) instead,
// timed the same way and written to OUT.flo in the Middlebury format (the tag 202021.25, the width and height, then
// the displacements u, v of each pixel, row by row, in little-endian float32), for comparing with a reference flow
// (bench/stereo_flow.py).
//
// Besides the wall-clock seconds, processor_seconds_per_eval is the processor time of all the process's threads per
// evaluation (median): steadier than the wall clock while other processes share the cores, and it counts the time
// threads spend waiting busily.
//
// Peak RSS (VmHWM) belongs to the whole process: with several sizes, run them in ascending order (the default), or
// one size per invocation for exact figures. --verbose adds a per-layer time breakdown on stderr.
//
// --tile chooses the Winograd algorithm, F(4×4, 3×3) or F(6×6, 3×3); by default the one pamstyle takes for the
// precision (F(4×4) with bf16 products, F(6×6) otherwise).
//
// --kept-kernel-mb bounds the Winograd-transformed kernels the network keeps (the rest are transformed as their layer
// runs; VGG19's default when not given). The network plans its stripes within --memory-mb as pamstyle does (pamstyle's
// default budget when not given), unless --stripe-rows and --striped-blocks (default 2) fix them. The --compare-… options add a second network with those settings (the others as the first's), timed in
// turns with the first, and the ratio of their times (peak RSS is then the two networks' together).

import CBLAS
import CGEMM
import Foundation
import Kernels
import StyleTransfer

struct BenchOptions {
    /// (width, height) of each size measured.
    var sizes: [(width: Int, height: Int)] = [(256, 256), (512, 512), (1024, 1024)]
    var repeats = 5
    var warmup = 1
    var randomWeights = false
    var weightsPath: String?
    var algorithms: [ConvolutionAlgorithm] = [.winograd]
    var kernels = [KernelPath.detected]
    var styleLosses = false
    var products = false
    var pooling = Pooling.max
    var scratchMB = 32
    var threads: Int?
    /// The first blocks in stripes of this many rows; nil: as pamstyle runs the network, within `memoryBytes`.
    var stripeRows: Int?
    var memoryBytes = Options().memory
    /// nil: the network's default, the kernels of blocks 1 to 3.
    var keptKernelBytes: Int?
    var comparedKeptKernelBytes: Int?
    /// With `stripeRows`, the blocks in stripes (2 when not given).
    var stripedBlocks: Int?
    var comparedStripedBlocks: Int?
    var verbose = false
    var job = false
    var peak = false
    var flow = false
    /// With --flow: the two frames to estimate the flow between, and where to write it.
    var pair: (first: String, second: String)?
    var floPath: String?
    /// Whether --sizes was given (--flow has its own default size).
    var sizesGiven = false
    /// The Winograd products' precision; nil: `ProductPrecision.fastest` with --job (as pamstyle runs), single otherwise.
    var precision: ProductPrecision?
    /// The Winograd algorithm; nil: the one pamstyle takes for the precision (`Convolution.preferredTile`).
    var tile: WinogradTile?
    var comparedTile: WinogradTile?
    /// With --job: the image the evaluations start from instead of the content (at the size measured).
    var startPath: String?
    var contentPath = "examples/images/chelsea.ppm"
    var stylePath = "examples/images/scream.ppm"
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
            // N for N×N, or WxH.
            let sizes = text.split(separator: ",").map { item -> (width: Int, height: Int)? in
                let sides = item.split(separator: "x").compactMap { Int($0) }
                guard sides.count == (item.contains("x") ? 2 : 1), sides.allSatisfy({ $0 >= 16 }) else { return nil }
                return (sides[0], sides.count == 2 ? sides[1] : sides[0])
            }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 != nil }) else {
                throw BenchError.usage("--sizes must list sizes of at least 16, like 256,512,4096x3072; you specified \(text)")
            }
            options.sizes = sizes.map { $0! }
            options.sizesGiven = true
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
        case "--kernels":
            let text = try value(argument)
            let names = text.split(separator: ",").map(String.init)
            let paths = names.compactMap(KernelPath.init(rawValue:))
            guard !paths.isEmpty, paths.count == names.count else {
                throw BenchError.usage("--kernels must list avx512, avx2, portable or openblas; you specified \(text)")
            }
            if let missing = paths.first(where: { !$0.isSupported }) {
                throw BenchError.usage("--kernels \(missing.rawValue): "
                                       + (KernelPathError.unsupported(missing).errorDescription ?? ""))
            }
            options.kernels = paths
        case "--style-losses": options.styleLosses = true
        case "--products": options.products = true
        case "--job": options.job = true
        case "--peak": options.peak = true
        case "--flow": options.flow = true
        case "--pair":
            let first = try value(argument)
            options.pair = (first, try value(argument))
        case "--flo": options.floPath = try value(argument)
        case "--precision":
            let text = try value(argument)
            guard let precision = ProductPrecision(rawValue: text), precision.isSupported else {
                throw BenchError.usage("--precision must be single, bf16 (where the processor has AVX512_BF16) or half "
                                       + "(where it has AVX512_FP16); "
                                       + "you specified \(text)")
            }
            options.precision = precision
        case "--tile", "--compare-tile":
            let text = try value(argument)
            guard let side = Int(text), let tile = WinogradTile(rawValue: side) else {
                throw BenchError.usage("\(argument) must be 4 or 6 (Winograd F(4×4, 3×3) or F(6×6, 3×3)); you specified \(text)")
            }
            if argument == "--tile" { options.tile = tile } else { options.comparedTile = tile }
        case "--content": options.contentPath = try value(argument)
        case "--style": options.stylePath = try value(argument)
        case "--start": options.startPath = try value(argument)
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

/// The processor time of the whole process (user and system, every thread).
func processSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// The processor time of the calling thread: what a single-threaded product costs, even while other processes share
/// the cores.
func threadSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

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
    /// Forced while the network is made and while it runs.
    var kernels: KernelPath
    var keptKernelBytes: Int?
    var stripedBlocks: Int
    var tile: WinogradTile?
    /// Whether this is the network of a --compare-… option (timed beside the main one, not reported as the result).
    var compared = false
}

/// One network under test and the times of its evaluations at the current size.
final class Subject {
    let settings: Settings
    let net: VGG19
    var forwardTimes: [Double] = []
    var totalTimes: [Double] = []
    /// The process's processor time per evaluation.
    var processorTimes: [Double] = []
    var transforms: [Int] = []
    var layerTotals: [String: (forward: [Double], backward: [Double])] = [:]
    /// With --style-losses: the Gram style loss of each style layer at the current size.
    var styleLosses: [String: StyleLoss] = [:]

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
    for kernels in options.kernels {
        for algorithm in options.algorithms {
            let stripedBlocks = options.stripedBlocks ?? 2
            settings.append(Settings(algorithm: algorithm, kernels: kernels, keptKernelBytes: options.keptKernelBytes,
                                     stripedBlocks: stripedBlocks, tile: options.tile))
            if options.comparedKeptKernelBytes != nil || options.comparedStripedBlocks != nil
                || options.comparedTile != nil {
                settings.append(Settings(algorithm: algorithm, kernels: kernels,
                                         keptKernelBytes: options.comparedKeptKernelBytes ?? options.keptKernelBytes,
                                         stripedBlocks: options.comparedStripedBlocks ?? stripedBlocks,
                                         tile: options.comparedTile ?? options.tile, compared: true))
            }
        }
    }
    let styleLayers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    let subjects = try settings.map { settings in
        try KernelPath.force(settings.kernels)
        let striping = options.stripeRows.map { Striping.stripes(rows: $0, blocks: settings.stripedBlocks) }
            ?? .budget(bytes: options.memoryBytes)
        let net = try VGG19(weights: weights, pooling: options.pooling, scratchBytes: options.scratchMB << 20,
                            threads: options.threads, striping: striping, convolution: settings.algorithm,
                            keptKernelBytes: settings.keptKernelBytes, precision: options.precision ?? .single,
                            tile: settings.tile)
        net.recordsLayerTimes = options.verbose
        return Subject(settings: settings, net: net)
    }
    for (width, height) in options.sizes {
        let size = width == height ? "\(width)" : "\"\(width)x\(height)\""
        var rng = SplitMix64(seed: UInt64(width * height))
        let image = (0 ..< 3 * width * height).map { _ in Float.random(in: 0 ... 1, using: &rng) }
        var gradient = [Float](repeating: 0, count: image.count)
        for subject in subjects {
            subject.net.prepare(height: height, width: width, layers: layers)
            if options.styleLosses {
                for layer in styleLayers {
                    let channels = VGG19.shape(of: layer, height: 1, width: 1).channels
                    var loss = StyleLoss(target: [Float](repeating: 0, count: channels * channels), channels: channels)
                    loss.precision = subject.net.precision
                    subject.styleLosses[layer] = loss
                }
            }
            subject.forwardTimes = []
            subject.totalTimes = []
            subject.processorTimes = []
            subject.transforms = []
            subject.layerTotals = [:]
        }
        // The subjects take turns, so that a load from other processes falls on all of them alike.
        for iteration in 0 ..< options.warmup + options.repeats {
            for subject in subjects {
                let net = subject.net
                try KernelPath.force(subject.settings.kernels)
                let transformsBefore = net.kernelTransforms
                let processorStart = processSeconds()
                let start = now()
                net.forward(image: image, height: height, width: width, layers: layers) { map in
                    guard subject.styleLosses[map.layer.name] != nil else { return }
                    let plane = map.values.planeSize
                    subject.styleLosses[map.layer.name]!.accumulator.add(UnsafeBufferPointer(map.values.buffer),
                                                                    pixels: plane, stride: plane)
                    if map.rows.upperBound == map.height { _ = subject.styleLosses[map.layer.name]!.finish() }
                }
                let middle = now()
                // A stand-in loss: ∂L/∂activation = 10⁻³ · activation, a pass over each map as a real loss makes; or
                // the style loss's gradient.
                net.backward(image: image, into: &gradient) { activation, g in
                    if let loss = subject.styleLosses[activation.layer.name] {
                        let plane = activation.values.planeSize
                        loss.addGradient(features: UnsafeBufferPointer(activation.values.buffer), pixels: plane,
                                         featureStride: plane, weight: 1, into: g.buffer, gradientStride: plane)
                        return
                    }
                    let a = activation.values.buffer, d = g.buffer
                    for k in 0 ..< d.count { d[k] += 1e-3 * a[k] }
                }
                let end = now()
                let processorEnd = processSeconds()
                guard iteration >= options.warmup else { continue }
                subject.forwardTimes.append(middle - start)
                subject.totalTimes.append(end - start)
                subject.processorTimes.append(processorEnd - processorStart)
                subject.transforms.append(net.kernelTransforms - transformsBefore)
                for time in net.layerTimes {
                    subject.layerTotals[time.layer, default: ([], [])].forward.append(time.forwardSeconds)
                    subject.layerTotals[time.layer, default: ([], [])].backward.append(time.backwardSeconds)
                }
            }
        }
        let flops = 2.0 * 2.0 * Double(VGG19.multiplyAdds(through: "relu5_1", height: height, width: width))
        for subject in subjects {
            let net = subject.net
            let seconds = median(subject.totalTimes)
            let settings = subject.settings
            var fields: [(String, Any)] = [("size", size), ("conv", "\"\(settings.algorithm.rawValue)\""),
                                           ("kernels", "\"\(settings.kernels.rawValue)\""),
                                           ("precision", "\"\(net.precision.rawValue)\""), ("tile", net.tile.output),
                                           ("style_losses", options.styleLosses),
                                           ("seconds_per_eval", seconds),
                                           ("forward_seconds", median(subject.forwardTimes)),
                                           ("processor_seconds_per_eval", median(subject.processorTimes)),
                                           ("peak_rss_mb", peakRSSMegabytes()),
                                           ("direct_gflops", flops / seconds / 1e9),
                                           ("allocated_mb", Double(net.allocatedBytes) / 1048576),
                                           ("kernel_copies_mb", Double(net.kernelCopyBytes) / 1048576),
                                           ("kept_kernel_mb", settings.keptKernelBytes.map { $0 == Int.max ? "\"all\""
                                                : String($0 >> 20) } ?? "\"blocks 1-3\""),
                                           ("kernel_transforms_per_eval", subject.transforms.max() ?? 0),
                                           ("repeats", options.repeats), ("threads", net.threads),
                                           ("memory_mb", options.stripeRows == nil ? "\(options.memoryBytes >> 20)" : "null"),
                                           ("layout", "\"\(subject.net.layoutSummary)\"")]
            if settings.compared { fields.append(("compared", "true")) }
            if !settings.compared, let reference = subjects.first(where: { !$0.settings.compared }),
               reference !== subject {
                let name = reference.settings.algorithm.rawValue
                    + (options.kernels.count > 1 ? "_\(reference.settings.kernels.rawValue)" : "")
                fields.append(("speedup_vs_\(name)", median(reference.totalTimes) / seconds))
                fields.append(("processor_speedup_vs_\(name)",
                               median(reference.processorTimes) / median(subject.processorTimes)))
            }
            if !settings.compared, let reference = subjects.first(where: {
                $0.settings.compared && $0.settings.algorithm == settings.algorithm
                    && $0.settings.kernels == settings.kernels
            }) {
                fields.append(("seconds_ratio_vs_compared", seconds / median(reference.totalTimes)))
            }
            FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
            if options.verbose {
                var report = "size \(size) \(subject.settings.algorithm.rawValue) \(subject.settings.kernels.rawValue)"
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

// MARK: - Products alone

/// The GFLOP/s of each of `bodies`, which do `flops` floating-point operations each: the median over `repeats` timings
/// (in thread processor time) of as many calls as take about 0.1 s, the bodies timed in turns.
func gigaflops(_ bodies: [() -> Void], flops: Double, repeats: Int) -> [Double] {
    for body in bodies { body() }
    let start = threadSeconds()
    bodies[0]()
    let calls = max(1, Int(0.1 / max(threadSeconds() - start, 1e-6)))
    var times = [[Double]](repeating: [], count: bodies.count)
    for _ in 0 ..< repeats {
        for (index, body) in bodies.enumerated() {
            let start = threadSeconds()
            for _ in 0 ..< calls { body() }
            times[index].append((threadSeconds() - start) / Double(calls))
        }
    }
    return times.map { flops / median($0) / 1e9 }
}

/// --products: the panel GEMM, the Gram upper triangle and the Gram gradient product on one thread, on each of the
/// own kernel paths in `options.kernels` and in OpenBLAS.
func runProducts(_ options: BenchOptions) throws {
    let paths = options.kernels.filter { $0 != .openblas }
    guard !paths.isEmpty else { throw BenchError.usage("--products needs an own kernel path in --kernels") }
    let saved = openblas_get_num_threads()
    openblas_set_num_threads(1)
    defer { openblas_set_num_threads(saved) }
    var rng = SplitMix64(seed: 5)
    func values(_ count: Int) -> [Float] { (0 ..< count).map { _ in Float.random(in: -1 ... 1, using: &rng) } }
    func report(_ product: String, _ shape: [(String, Int)], _ rates: [Double], bf16: Double? = nil) {
        var fields: [(String, Any)] = [("product", "\"\(product)\"")] + shape.map { ($0.0, $0.1 as Any) }
        if let bf16 { fields.append(("bf16_gflops", bf16)) }
        for (path, rate) in zip(paths, rates) { fields.append(("\(path.rawValue)_gflops", rate)) }
        fields.append(("openblas_gflops", rates.last!))
        for (path, rate) in zip(paths, rates) { fields.append(("\(path.rawValue)_vs_openblas", rate / rates.last!)) }
        FileHandle.standardOutput.write((json(fields) + "\n").data(using: .utf8)!)
    }
    /// One body per own path, forcing it, then OpenBLAS's.
    func bodies(own: @escaping () -> Void, openBLAS: @escaping () -> Void) -> [() -> Void] {
        paths.map { path in { try! KernelPath.force(path); own() } } + [openBLAS]
    }
    defer { try? KernelPath.force(KernelPath.detected) }
    // The Winograd products: (channels, tiles) · (channels, tiles), the tile counts of a band.
    let tiles = 240
    for channels in [64, 128, 256, 512] {
        let a = values(channels * channels), b = values(channels * tiles)
        var c = [Float](repeating: 0, count: channels * tiles)
        let rates = a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    let (a, b, c) = (a.baseAddress!, b.baseAddress!, c.baseAddress!)
                    let n = Int32(tiles), m = Int32(channels)
                    return gigaflops(bodies(own: { cgemm_panels(m, n, m, 1, a, 0, b, c, tiles) }, openBLAS: {
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1, a, m, b, n, 0, c, n)
                    }), flops: 2 * Double(channels * channels * tiles), repeats: options.repeats)
                }
            }
        }
        // The same product with bfloat16 operands, where the processor has AVX512_BF16.
        let bf16 = !ProductPrecision.bf16.isSupported ? nil : a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    let (a, b, c) = (a.baseAddress!, b.baseAddress!, c.baseAddress!)
                    let n = Int32(tiles), m = Int32(channels)
                    return gigaflops([{ cgemm_panels_bf16(m, n, m, 1, a, 0, b, c, tiles) }],
                                     flops: 2 * Double(channels * channels * tiles), repeats: options.repeats)[0]
                }
            }
        }
        report("panel_gemm", [("m", channels), ("n", tiles), ("k", channels)], rates, bf16: bf16)
    }
    // The Gram matrices and their gradients: (channels, 4096 pixels).
    let pixels = GramAccumulator.chunkPixels
    for channels in [64, 128, 256, 512] {
        let f = values(channels * pixels), r = values(channels * channels)
        var g = [Float](repeating: 0, count: channels * channels)
        var work = [Float](repeating: 0, count: cgemm_gram_work_count(Int32(channels)))
        var packed = [Float](repeating: 0, count: cgemm_packed_count(Int32(channels), Int32(channels)))
        var gradient = [Float](repeating: 0, count: channels * pixels)
        let m = Int32(channels), n = Int32(pixels)
        let (gram, product) = f.withUnsafeBufferPointer { f in
            g.withUnsafeMutableBufferPointer { g in
                work.withUnsafeMutableBufferPointer { work in
                    r.withUnsafeBufferPointer { r in
                        packed.withUnsafeMutableBufferPointer { packed in
                            gradient.withUnsafeMutableBufferPointer { gradient in
                                let (f, g, work, r) = (f.baseAddress!, g.baseAddress!, work.baseAddress!, r.baseAddress!)
                                let (packed, gradient) = (packed.baseAddress!, gradient.baseAddress!)
                                cgemm_pack(m, m, r, channels, 0, packed)
                                let gram = gigaflops(bodies(own: { cgemm_gram_upper(m, n, f, pixels, g, channels, work) },
                                                            openBLAS: {
                                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, n, 1, f, n, 0, g, m)
                                }), flops: Double(channels * (channels + 1) * pixels), repeats: options.repeats)
                                let product = gigaflops(bodies(own: {
                                    cgemm_multiply(m, n, m, 1e-9, packed, f, pixels, 1, gradient, pixels)
                                }, openBLAS: {
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1e-9, r, m, f, n, 1,
                                                gradient, n)
                                }), flops: 2 * Double(channels * channels * pixels), repeats: options.repeats)
                                return (gram, product)
                            }
                        }
                    }
                }
            }
        }
        report("gram_upper", [("channels", channels), ("pixels", pixels)], gram)
        report("gram_gradient", [("channels", channels), ("pixels", pixels)], product)
    }
}

do {
    let options = try parseOptions(Array(CommandLine.arguments.dropFirst()))
    if options.products {
        try runProducts(options)
    } else if options.job {
        try runJob(options)
    } else if options.peak {
        runPeak(options)
    } else if options.flow {
        try runFlow(options)
    } else {
        try run(options)
    }
} catch {
    FileHandle.standardError.write("pamstyle-bench: \(error.localizedDescription)\n".data(using: .utf8)!)
    exit(1)
}
